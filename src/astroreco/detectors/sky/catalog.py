"""Source catalogs (FITS) and DS9 region files of the sky detector.

Source catalog
--------------
A ``CATALOG`` binary table, columns in :data:`CATALOG_COLUMNS` (every one with ``TUNIT``, empty
for dimensionless ones).  Names are ``<prefix> Glll.lll+bb.bbb``: galactic longitude and
latitude in degrees, truncated (not rounded) to 0.001 deg, as IAU names are, e.g.
``ARC G005.123-01.234``.  RA/DEC are ICRS.  Missing optional columns read back as NaN
(``EXT_CLASS``: -1).

DS9 regions
-----------
Plain-text DS9 version 4.1 files in the galactic frame: one circle per source (radius in
arcsec) labelled with the source name.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from astropy.io import fits

from astroreco import __version__
from astroreco.detectors.sky.fitsio import (_STRUCTURAL, _hdu_names, _load_fits, _now,
                                            _write_fits)
from astroreco.errors import InputError
from astroreco.io.store import atomic_path

__all__ = ["CATALOG_COLUMNS", "CatalogData", "source_names", "write_catalog", "read_catalog",
           "write_regions"]

# --------------------------------------------------------------------------------------
# Source catalog
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CatalogColumn:
    """One catalog column: name, FITS format, unit ('' = dimensionless), description."""

    name: str
    format: str
    unit: str
    description: str


CATALOG_COLUMNS: tuple[CatalogColumn, ...] = (
    CatalogColumn("NAME", "24A", "", "Name: <prefix> Glll.lll+bb.bbb (truncated)"),
    CatalogColumn("GLON", "D", "deg", "Galactic longitude [0, 360)"),
    CatalogColumn("GLAT", "D", "deg", "Galactic latitude"),
    CatalogColumn("RA", "D", "deg", "Right ascension (ICRS)"),
    CatalogColumn("DEC", "D", "deg", "Declination (ICRS)"),
    CatalogColumn("POS_ERR", "E", "deg", "Position error, 68% containment radius"),
    CatalogColumn("POS_ERR_95", "E", "deg", "Position error, 95% containment radius"),
    CatalogColumn("FLUX", "E", "ph cm-2 s-1", "Photon flux S(1-100 GeV)"),
    CatalogColumn("FLUX_ERR", "E", "ph cm-2 s-1", "1-sigma error of FLUX"),
    CatalogColumn("P_AGN", "E", "", "Probability of the AGN class"),
    CatalogColumn("P_PSR", "E", "", "Probability of the pulsar class"),
    CatalogColumn("EXT_CLASS", "I", "", "Extension class 0/1/2 (-1 unknown)"),
    CatalogColumn("P_EXT0", "E", "", "Probability of class 0: sigma < 0.1 deg"),
    CatalogColumn("P_EXT1", "E", "", "Probability of class 1: 0.1-0.3 deg"),
    CatalogColumn("P_EXT2", "E", "", "Probability of class 2: sigma > 0.3 deg"),
    CatalogColumn("DETECTION", "E", "", "Detection score (sigma for classical)"),
    CatalogColumn("X_PIX", "E", "pix", "0-based pixel column in the input map"),
    CatalogColumn("Y_PIX", "E", "pix", "0-based pixel row in the input map"),
)
_COLUMN = {c.name: c for c in CATALOG_COLUMNS}
_ALIASES = {"l_deg": "GLON", "b_deg": "GLAT", "ra_deg": "RA", "dec_deg": "DEC",
            "significance": "DETECTION", "score": "DETECTION",
            "x_pix": "X_PIX", "y_pix": "Y_PIX"}
_PROBABILITIES = ("P_AGN", "P_PSR", "P_EXT0", "P_EXT1", "P_EXT2")
_NAME_LENGTH = 24


class CatalogData(NamedTuple):
    """What :func:`read_catalog` returns: unpacks as ``columns, header``."""

    columns: dict[str, np.ndarray]
    header: dict[str, Any]


def source_names(l_deg, b_deg, prefix: str = "ARC") -> np.ndarray:
    """Names ``<prefix> Glll.lll+bb.bbb`` (truncated to 0.001 deg); repeats get a, b, ...

    >>> source_names([5.1239], [-1.2341]).tolist()
    ['ARC G005.123-01.234']
    """
    lon = np.mod(np.asarray(l_deg, np.float64), 360.0)
    lat = np.asarray(b_deg, np.float64)
    names = []
    for lo, la in zip(np.floor(lon * 1000 + 1e-6) / 1000, lat):
        sign = "-" if la < 0 else "+"
        la = np.floor(abs(la) * 1000 + 1e-6) / 1000
        names.append(f"{prefix} G{lo:07.3f}{sign}{la:06.3f}")
    total = Counter(names)
    seen: Counter = Counter()
    for i, name in enumerate(list(names)):
        if total[name] > 1:
            names[i] = name + "abcdefghijklmnopqrstuvwxyz"[seen[name] % 26]
            seen[name] += 1
    return np.array(names, dtype=str)


def _canonical(table) -> dict[str, np.ndarray]:
    if isinstance(table, CatalogData):
        table = table.columns
    if not isinstance(table, Mapping):
        raise InputError(f"table: expected a dict of arrays, got {type(table).__name__}")
    out: dict[str, np.ndarray] = {}
    for key, values in table.items():
        name = _ALIASES.get(str(key).lower(), str(key).upper())
        if name not in _COLUMN:
            raise InputError(f"table: unknown column {key!r} (expected some of "
                             f"{', '.join(_COLUMN)} or {', '.join(_ALIASES)})")
        if name in out:
            raise InputError(f"table: column {name} given twice (as {key!r} and an alias)")
        array = np.asarray(values)
        if array.ndim != 1:
            raise InputError(f"table[{key!r}]: expected a 1-D array, got shape {array.shape}")
        out[name] = array
    lengths = {k: v.shape[0] for k, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise InputError(f"table: columns of different lengths {lengths}")
    return out


def _positions(cols: dict, frame: str, where: str):
    """Fill GLON/GLAT and RA/DEC from the pair of ``frame``; returns the row count."""
    from astropy.coordinates import SkyCoord

    pair = ("GLON", "GLAT") if frame == "galactic" else ("RA", "DEC")
    missing = [c for c in pair if c not in cols]
    if missing:
        raise InputError(f"{where}: frame {frame!r} needs column(s) {', '.join(missing)}")
    try:
        lon, lat = (np.asarray(cols[c], np.float64) for c in pair)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {pair[0]}/{pair[1]} must be numbers") from None
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
        raise InputError(f"{where}: {pair[0]}/{pair[1]} must be finite")
    if np.any(np.abs(lat) > 90):
        raise InputError(f"{where}: {pair[1]} outside [-90, 90] deg")
    coords = SkyCoord(lon, lat, unit="deg", frame=frame)
    gal, icrs = coords.galactic, coords.icrs
    cols["GLON"], cols["GLAT"] = gal.l.wrap_at("360d").deg, gal.b.deg
    cols["RA"], cols["DEC"] = icrs.ra.wrap_at("360d").deg, icrs.dec.deg
    return lon.size


def _float_column(cols, name, n) -> np.ndarray:
    if name not in cols:
        return np.full(n, np.nan)
    try:
        return np.asarray(cols[name], np.float64)
    except (TypeError, ValueError):
        raise InputError(f"table[{name!r}]: expected numbers") from None


def write_catalog(path, table, wcs_frame: str = "galactic", *, method: str = "unknown",
                  name_prefix: str = "ARC", overwrite: bool = False) -> Path:
    """Write a source catalog as a FITS binary table ``CATALOG`` (see :data:`CATALOG_COLUMNS`).

    Parameters
    ----------
    table : dict of 1-D arrays (or a :class:`CatalogData`)
        Column name (any case) -> values; also accepts ``l_deg``, ``b_deg``, ``ra_deg``,
        ``dec_deg``, ``significance``, ``x_pix``, ``y_pix`` (the classical result).
        Positions in degrees; the other frame is computed with astropy.
    wcs_frame : {'galactic', 'icrs', 'fk5'}
        Frame of the given positions: GLON/GLAT for galactic, RA/DEC otherwise.
    method, name_prefix
        Reconstruction method (METHOD keyword) and the prefix of generated names.
    """
    if wcs_frame not in ("galactic", "icrs", "fk5"):
        raise InputError(f"wcs_frame: {wcs_frame!r}, expected 'galactic', 'icrs' or 'fk5'")
    for key, text in (("method", method), ("name_prefix", name_prefix)):
        if not isinstance(text, str) or not (text.isascii() and text.isprintable()):
            raise InputError(f"{key}: expected a printable ASCII string, got {text!r}")
    cols = _canonical(table)
    n = _positions(cols, wcs_frame, "table")
    arrays: dict[str, np.ndarray] = {}
    for spec in CATALOG_COLUMNS:
        if spec.name == "NAME":
            names = (source_names(cols["GLON"], cols["GLAT"], name_prefix)
                     if "NAME" not in cols else np.asarray(cols["NAME"]).astype(str))
            bad = [s for s in names if len(s) > _NAME_LENGTH or not s.isascii()
                   or not s.isprintable()]
            if bad:
                raise InputError(f"table['NAME']: {bad[0]!r} is not printable ASCII of <= "
                                 f"{_NAME_LENGTH} characters")
            arrays["NAME"] = names
        elif spec.name == "EXT_CLASS":
            ext = _float_column(cols, "EXT_CLASS", n)
            ext = np.where(np.isnan(ext), -1, ext)
            if not np.all(np.isin(ext, (-1, 0, 1, 2))):
                raise InputError("table['EXT_CLASS']: expected 0, 1, 2 (or -1/NaN: unknown)")
            arrays["EXT_CLASS"] = ext.astype(np.int16)
        else:
            arrays[spec.name] = _float_column(cols, spec.name, n)
    for name in _PROBABILITIES:
        p = arrays[name]
        if np.any((p < 0) | (p > 1)):
            raise InputError(f"table[{name!r}]: probabilities outside [0, 1]")
    for name in ("POS_ERR", "POS_ERR_95", "FLUX_ERR"):
        if np.any(arrays[name] < 0):
            raise InputError(f"table[{name!r}]: negative values")

    fits_cols = [fits.Column(name=s.name, format=s.format, array=arrays[s.name],
                             unit=s.unit or None,
                             null=-1 if s.name == "EXT_CLASS" else None)
                 for s in CATALOG_COLUMNS]
    hdu = fits.BinTableHDU.from_columns(fits_cols, name="CATALOG")
    for i, spec in enumerate(CATALOG_COLUMNS, start=1):
        hdu.header.comments[f"TTYPE{i}"] = spec.description
        hdu.header.set(f"TUNIT{i}", spec.unit, after=f"TFORM{i}")
    primary = fits.PrimaryHDU()
    for h in (primary.header, hdu.header):
        h["CREATOR"] = (f"astroreco {__version__}", "Software that wrote this file")
        h["METHOD"] = (method, "Detection / reconstruction method")
        h["FORMAT"] = ("astroreco-catalog", "File format")
        h["CAT_VER"] = (1, "Catalog format version")
        h["RADESYS"] = ("ICRS", "Frame of RA/DEC")
        h["DATE"] = (_now(), "File creation date (UTC)")
    return _write_fits(fits.HDUList([primary, hdu]), path, overwrite)


def read_catalog(path) -> CatalogData:
    """Read a catalog written by :func:`write_catalog` (or any table with GLON/GLAT or RA/DEC).

    Reads the ``CATALOG`` extension, else the first binary table.  Every column of
    :data:`CATALOG_COLUMNS` is returned; missing ones are NaN (``EXT_CLASS`` -1, ``NAME``
    generated).  Extra columns of the file are returned as they are.
    """
    path = Path(path)
    hdul = _load_fits(path)
    tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
    hdu = next((h for h in tables if h.name == "CATALOG"), tables[0] if tables else None)
    if hdu is None:
        raise InputError(f"{path}: no binary table (HDUs: {_hdu_names(hdul)})")
    raw = {name.upper(): np.array(hdu.data[name]) for name in hdu.columns.names}
    frame = "galactic" if {"GLON", "GLAT"} <= raw.keys() else "icrs"
    columns = {k: (v.astype(v.dtype.newbyteorder("=")) if v.dtype.byteorder == ">" else v)
               for k, v in raw.items()}
    n = _positions(columns, frame, f"{path}: {hdu.name}")
    for spec in CATALOG_COLUMNS:
        if spec.name in columns:
            continue
        if spec.name == "NAME":
            columns["NAME"] = source_names(columns["GLON"], columns["GLAT"])
        elif spec.name == "EXT_CLASS":
            columns["EXT_CLASS"] = np.full(n, -1, np.int16)
        else:
            columns[spec.name] = np.full(n, np.nan)
    columns["NAME"] = np.char.strip(np.asarray(columns["NAME"]).astype(str))
    header = {k: v for k, v in hdu.header.items()
              if not _STRUCTURAL.match(k) and not re.match(r"^T(TYPE|FORM|UNIT|NULL)\d+$", k)}
    return CatalogData(columns, header)


# --------------------------------------------------------------------------------------
# DS9 regions
# --------------------------------------------------------------------------------------

def write_regions(path, table, *, color: str = "green", radius: str | float = "POS_ERR",
                  fallback_radius_deg: float = 0.1, overwrite: bool = False) -> Path:
    """Write a DS9 region file (galactic frame): a labelled circle per source.

    Parameters
    ----------
    table : dict of 1-D arrays or CatalogData
        Positions as GLON/GLAT (or ``l_deg``/``b_deg``; RA/DEC are converted), optional NAME.
    radius : column name or float
        Circle radius: a column in degrees (``POS_ERR``, ``POS_ERR_95``) or a fixed radius in
        degrees.  Rows where the column is missing or NaN get ``fallback_radius_deg``.
    color : str
        DS9 colour name or ``#rrggbb``.
    """
    if not isinstance(color, str) or not re.fullmatch(r"[A-Za-z]+|#[0-9A-Fa-f]{6}", color):
        raise InputError(f"color: {color!r}, expected a DS9 colour name or #rrggbb")
    if not (np.isfinite(fallback_radius_deg) and fallback_radius_deg > 0):
        raise InputError(f"fallback_radius_deg: {fallback_radius_deg!r}, expected > 0")
    cols = _canonical(table)
    frame = "galactic" if {"GLON", "GLAT"} <= cols.keys() else "icrs"
    n = _positions(cols, frame, "table")
    if isinstance(radius, str):
        key = _ALIASES.get(radius.lower(), radius.upper())
        if key not in _COLUMN:
            raise InputError(f"radius: unknown column {radius!r}")
        r = _float_column(cols, key, n)
        label = f"{key} (deg)"
    else:
        if not (np.isfinite(radius) and radius > 0):
            raise InputError(f"radius: {radius!r}, expected a column name or a radius > 0 deg")
        r, label = np.full(n, float(radius)), f"{float(radius)} deg"
    r = np.where(np.isfinite(r) & (r > 0), r, fallback_radius_deg)
    names = (np.asarray(cols["NAME"]).astype(str) if "NAME" in cols
             else source_names(cols["GLON"], cols["GLAT"]))
    lines = ["# Region file format: DS9 version 4.1",
             f"# astroreco {__version__}: {n} sources, radius {label}",
             f'global color={color} width=1 font="helvetica 10 normal roman"',
             "galactic"]
    for lon, lat, rad, name in zip(cols["GLON"], cols["GLAT"], r, names):
        text = re.sub(r"[{}\n]", "", str(name).strip())
        lines.append(f'circle({lon:.6f},{lat:.6f},{rad * 3600:.3f}") # text={{{text}}}')
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file name")
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="ascii", errors="replace")
    return path
