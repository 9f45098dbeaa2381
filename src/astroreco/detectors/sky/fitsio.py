"""Fermi-style counts cubes of the sky detector (read and written); the source catalogs and
DS9 regions are in :mod:`astroreco.detectors.sky.catalog`.

Counts cube (Fermi ``gtbin CCUBE`` style; read and written here)
-----------------------------------------------------------------
* ``PRIMARY``: image ``(energy, lat, lon)`` in numpy order (``NAXIS1`` = longitude).  Axes 1/2
  carry a celestial WCS, ``GLON-xxx``/``GLAT-xxx`` or ``RA---xxx``/``DEC--xxx`` (RADESYS
  ICRS or FK5), with a projection ``xxx`` in :data:`SUPPORTED_PROJECTIONS`.  Equatorial cubes
  are kept as they are (no resampling of counts); positions are converted to galactic with
  astropy when a catalog is made.  Axis 3 may carry any WCS: the energies come from EBOUNDS.
  Written with ``CTYPE3 = 'log_Energy'``, ``CRVAL3``/``CDELT3`` = log10(E / MeV) of the bin
  centres (informative only).
* ``EBOUNDS``: binary table, one row per energy plane, ``E_MIN``/``E_MAX`` (and ``CHANNEL``);
  unit from ``TUNIT`` (eV, keV, MeV, GeV, TeV), keV when absent, as gtbin writes them.  Bins
  must be contiguous.
* optional ``EXPOSURE`` image extension ``(energy, lat, lon)``, cm^2 s (astroreco's own).

A background model (expected counts, e.g. ``gtmodel`` output) is a second file of the same
layout: same image shape, same celestial WCS, and the same EBOUNDS when it has one.

"""

from __future__ import annotations

import datetime as _dt
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import wcs_to_celestial_frame

from astroreco import __version__
from astroreco.errors import InputError
from astroreco.io.store import atomic_path

__all__ = [
    "SUPPORTED_PROJECTIONS",
    "SkyCube",
    "read_counts_cube",
    "write_counts_cube",
    "write_background",
]

#: Projections accepted in a cube's WCS (all handled by astropy/wcslib; gtbin offers them).
SUPPORTED_PROJECTIONS = ("CAR", "TAN", "AIT", "ARC", "STG", "ZEA")
_CELESTIAL_PAIRS = {("GLON", "GLAT"), ("RA--", "DEC-")}
_ENERGY_TO_GEV = {"ev": 1e-9, "kev": 1e-6, "mev": 1e-3, "gev": 1.0, "tev": 1e3}
_STRUCTURAL = re.compile(r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|XTENSION|EXTNAME|"
                         r"COMMENT|HISTORY|CHECKSUM|DATASUM|BSCALE|BZERO|BUNIT|)$")
_WCS_KEY = re.compile(r"^(WCSAXES|CTYPE\d|CRPIX\d|CRVAL\d|CDELT\d|CUNIT\d|CROTA\d|PC\d_\d|"
                      r"CD\d_\d|PV\d_\d+|PS\d_\d+|LONPOLE|LATPOLE|RADESYS|EQUINOX|MJDREF|"
                      r"DATEREF|MJD-OBS)$")
_FITS_KEY = re.compile(r"^[A-Z0-9_-]{1,8}$")
_TRUNCATION_HINTS = ("truncated", "verification failed", "corrupt", "extra bytes")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------

def _check_cube_array(name: str, values, shape=None) -> np.ndarray:
    a = np.asarray(values)
    if a.dtype.kind not in "biuf":
        raise InputError(f"{name}: expected numbers, got dtype {a.dtype}")
    if a.dtype.kind == "b":
        a = a.astype(np.int32)
    if a.ndim != 3:
        raise InputError(f"{name}: expected a 3-D array (energy, lat, lon), got shape {a.shape}")
    if shape is not None and a.shape != tuple(shape):
        raise InputError(f"{name}: shape {a.shape} differs from the counts cube {tuple(shape)}")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(f"{name}: {int(bad.sum())} NaN/infinite value(s), "
                             f"first at (energy, y, x) = {first}")
    negative = a < 0
    if negative.any():
        first = tuple(int(i) for i in np.argwhere(negative)[0])
        raise InputError(f"{name}: {int(negative.sum())} negative value(s), "
                         f"first at (energy, y, x) = {first}")
    if a.dtype.byteorder not in ("=", "|"):
        a = a.astype(a.dtype.newbyteorder("="))
    return a


def _check_edges(values) -> np.ndarray:
    edges = np.asarray(values, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2:
        raise InputError(f"energy_edges_gev: expected a 1-D array of >= 2 edges, "
                         f"got shape {edges.shape}")
    if not np.all(np.isfinite(edges)) or np.any(edges <= 0):
        raise InputError("energy_edges_gev: expected finite positive energies")
    if np.any(np.diff(edges) <= 0):
        raise InputError("energy_edges_gev: not strictly increasing")
    return edges


def _check_wcs(name: str, wcs) -> str:
    """Validate a 2-D celestial WCS (lon on axis 1, lat on axis 2); returns the frame name."""
    if not isinstance(wcs, WCS):
        raise InputError(f"{name}: expected an astropy.wcs.WCS, got {type(wcs).__name__}")
    ctype = [c.upper() for c in wcs.wcs.ctype]
    if wcs.naxis != 2:
        raise InputError(f"{name}: expected a 2-D celestial WCS, got {wcs.naxis} axes")
    _check_ctypes(name, ctype[0], ctype[1])
    return wcs_to_celestial_frame(wcs).name


def _check_ctypes(where: str, ctype1: str, ctype2: str) -> None:
    if not ctype1 or not ctype2:
        raise InputError(f"{where}: no celestial WCS (CTYPE1/CTYPE2 missing)")
    if (ctype1[:4], ctype2[:4]) not in _CELESTIAL_PAIRS:
        raise InputError(f"{where}: CTYPE1/CTYPE2 = {ctype1!r}/{ctype2!r}, expected GLON/GLAT "
                         f"or RA/DEC with longitude on axis 1")
    for ctype in (ctype1, ctype2):
        projection = ctype[5:].strip() if len(ctype) > 5 and ctype[4] == "-" else ""
        if projection not in SUPPORTED_PROJECTIONS:
            raise InputError(f"{where}: projection of CTYPE {ctype!r} not supported "
                             f"(expected one of {', '.join(SUPPORTED_PROJECTIONS)})")


def _check_meta(meta) -> dict:
    if not isinstance(meta, Mapping):
        raise InputError(f"meta: expected a dict, got {type(meta).__name__}")
    for key, value in meta.items():
        if not isinstance(key, str) or not _FITS_KEY.match(key):
            raise InputError(f"meta: key {key!r} is not a FITS keyword (A-Z 0-9 _ -, <= 8)")
        if not isinstance(value, (str, bool, int, float, np.number)):
            raise InputError(f"meta[{key!r}]: expected a string or a number, "
                             f"got {type(value).__name__}")
        if isinstance(value, str) and not (value.isascii() and value.isprintable()):
            raise InputError(f"meta[{key!r}]: not printable ASCII")
    return dict(meta)


# --------------------------------------------------------------------------------------
# Counts cube
# --------------------------------------------------------------------------------------

@dataclass(eq=False)
class SkyCube:
    """A binned gamma-ray sky: counts ``(E, H, W)`` over a celestial WCS, energy bin edges.

    Attributes
    ----------
    counts : array (E, H, W)
        Photon counts per (energy bin, latitude row, longitude column); int or float, >= 0.
    wcs : astropy.wcs.WCS
        2-D celestial WCS of the last two axes (GLON/GLAT or RA/DEC, see the module doc).
    energy_edges_gev : array (E + 1,)
        Energy bin edges (GeV), strictly increasing.
    background : array (E, H, W), optional
        Expected background counts (the background model), >= 0.
    exposure : array broadcastable to (E, H, W), optional
        Exposure (cm^2 s), >= 0; stored broadcast to (E, H, W).
    meta : dict
        Extra header keywords (FITS keyword -> string or number).
    """

    counts: np.ndarray
    wcs: WCS
    energy_edges_gev: np.ndarray
    background: np.ndarray | None = None
    exposure: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.counts = _check_cube_array("counts", self.counts)
        shape = self.counts.shape
        self.energy_edges_gev = _check_edges(self.energy_edges_gev)
        if self.energy_edges_gev.size != shape[0] + 1:
            raise InputError(f"energy_edges_gev: {self.energy_edges_gev.size} edges for "
                             f"{shape[0]} energy planes (expected {shape[0] + 1})")
        self._frame = _check_wcs("wcs", self.wcs)
        if self.background is not None:
            self.background = _check_cube_array("background", self.background, shape)
            self.background = self.background.astype(np.float64, copy=False)
        if self.exposure is not None:
            exposure = np.asarray(self.exposure, dtype=np.float64)
            try:
                exposure = np.broadcast_to(exposure, shape).copy()
            except ValueError:
                raise InputError(f"exposure: shape {exposure.shape} does not broadcast to "
                                 f"the counts cube {shape}") from None
            self.exposure = _check_cube_array("exposure", exposure, shape)
        self.meta = _check_meta(self.meta)

    @property
    def frame(self) -> str:
        """Celestial frame of the WCS: ``'galactic'``, ``'icrs'`` or ``'fk5'``."""
        return self._frame

    @property
    def energy_centers_gev(self) -> np.ndarray:
        """Geometric bin centres (GeV), shape (E,)."""
        return np.sqrt(self.energy_edges_gev[:-1] * self.energy_edges_gev[1:])


def _load_fits(path: Path) -> fits.HDUList:
    """Every HDU of ``path``, read into memory; InputError if missing, unreadable, truncated."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False) as hdul:
                for hdu in hdul:
                    _ = hdu.data
        except Exception as exc:  # astropy raises OSError, ValueError, TypeError, ...
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{path}: not a readable FITS file ({message})") from None
    for w in caught:
        text = str(w.message)
        if any(hint in text.lower() for hint in _TRUNCATION_HINTS):
            raise InputError(f"{path}: corrupt or truncated FITS file ({text.splitlines()[0]})")
        if not issubclass(w.category, FITSFixedWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return hdul


def _hdu_names(hdul) -> str:
    return ", ".join(h.name or "?" for h in hdul)


def _primary_image(path: Path, hdul, what: str) -> np.ndarray:
    data = hdul[0].data
    if data is None or data.size == 0 or not isinstance(hdul[0], fits.PrimaryHDU):
        raise InputError(f"{path}: no image in the PRIMARY HDU (expected the {what} cube; "
                         f"HDUs: {_hdu_names(hdul)})")
    if data.ndim != 3:
        raise InputError(f"{path}: PRIMARY image has {data.ndim} axes, expected 3 "
                         f"(energy, lat, lon)")
    return np.array(data)


def _celestial_wcs(path: Path, header) -> WCS:
    _check_ctypes(f"{path}: PRIMARY", str(header.get("CTYPE1", "")).upper(),
                  str(header.get("CTYPE2", "")).upper())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            full = WCS(header)
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{path}: invalid WCS in PRIMARY ({message})") from None
    return full.sub([1, 2])


def _read_ebounds(path: Path, hdul, n_energy: int, required: bool = True):
    names = [h.name for h in hdul]
    if "EBOUNDS" not in names:
        if not required:
            return None
        raise InputError(f"{path}: no EBOUNDS extension (HDUs: {_hdu_names(hdul)})")
    hdu = hdul["EBOUNDS"]
    if not isinstance(hdu, fits.BinTableHDU):
        raise InputError(f"{path}: EBOUNDS is not a binary table")
    present = [c.upper() for c in hdu.columns.names]
    missing = [c for c in ("E_MIN", "E_MAX") if c not in present]
    if missing:
        raise InputError(f"{path}: EBOUNDS lacks column(s) {', '.join(missing)}")
    values = []
    for name in ("E_MIN", "E_MAX"):
        unit = (hdu.columns[name].unit or "keV").strip()
        if unit.lower() not in _ENERGY_TO_GEV:
            raise InputError(f"{path}: EBOUNDS {name} has TUNIT {unit!r}, expected eV, keV, "
                             f"MeV, GeV or TeV")
        values.append(np.asarray(hdu.data[name], np.float64) * _ENERGY_TO_GEV[unit.lower()])
    e_min, e_max = values
    if e_min.size != n_energy:
        raise InputError(f"{path}: EBOUNDS has {e_min.size} rows but the cube has "
                         f"{n_energy} energy planes")
    if not (np.all(np.isfinite(e_min)) and np.all(np.isfinite(e_max))
            and np.all(e_min > 0) and np.all(e_max > e_min)):
        raise InputError(f"{path}: EBOUNDS needs finite 0 < E_MIN < E_MAX in every row")
    if not np.allclose(e_min[1:], e_max[:-1], rtol=1e-5, atol=0):
        raise InputError(f"{path}: EBOUNDS bins are not contiguous (E_MIN[i+1] != E_MAX[i])")
    return np.append(e_min, e_max[-1])


def _meta(header) -> dict:
    return {k: header[k] for k in header.keys()
            if not _STRUCTURAL.match(k) and not _WCS_KEY.match(k)
            and _FITS_KEY.match(k) and isinstance(header[k], (str, bool, int, float))}


def _same_wcs(a: WCS, b: WCS) -> bool:
    return (list(a.wcs.ctype) == list(b.wcs.ctype)
            and np.allclose(a.wcs.crval, b.wcs.crval, rtol=0, atol=1e-9)
            and np.allclose(a.wcs.crpix, b.wcs.crpix, rtol=0, atol=1e-6)
            and np.allclose(a.pixel_scale_matrix, b.pixel_scale_matrix, rtol=1e-6, atol=0))


def read_counts_cube(path, background=None) -> SkyCube:
    """Read a Fermi-style counts cube (and optionally its background model) into a SkyCube.

    Parameters
    ----------
    path : str or Path
        Counts cube: PRIMARY image (energy, lat, lon) + EBOUNDS (see the module doc).
    background : str or Path, optional
        Background-model cube (expected counts) of the same shape, WCS and EBOUNDS.

    Raises
    ------
    InputError
        One line naming the file (and HDU/keyword) and what was expected.
    """
    path = Path(path)
    hdul = _load_fits(path)
    counts = _primary_image(path, hdul, "counts")
    wcs = _celestial_wcs(path, hdul[0].header)
    edges = _read_ebounds(path, hdul, counts.shape[0])
    exposure = None
    if "EXPOSURE" in [h.name for h in hdul]:
        exposure = hdul["EXPOSURE"].data
        if exposure is None or np.shape(exposure) != counts.shape:
            raise InputError(f"{path}: EXPOSURE image shape {np.shape(exposure)} differs "
                             f"from the counts cube {counts.shape}")
        exposure = np.array(exposure, dtype=np.float64)
    try:
        cube = SkyCube(counts, wcs, edges, exposure=exposure, meta=_meta(hdul[0].header))
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    if background is not None:
        cube.background = _read_background(Path(background), cube)
    return cube


def _read_background(path: Path, cube: SkyCube) -> np.ndarray:
    hdul = _load_fits(path)
    data = _primary_image(path, hdul, "background")
    if data.shape != cube.counts.shape:
        raise InputError(f"{path}: background shape {data.shape} differs from the counts "
                         f"cube {cube.counts.shape}")
    if not _same_wcs(_celestial_wcs(path, hdul[0].header), cube.wcs):
        raise InputError(f"{path}: background WCS (CTYPE/CRVAL/CRPIX/CDELT) differs from "
                         f"the counts cube's")
    edges = _read_ebounds(path, hdul, data.shape[0], required=False)
    if edges is not None and not np.allclose(edges, cube.energy_edges_gev, rtol=1e-5):
        raise InputError(f"{path}: background EBOUNDS differ from the counts cube's")
    try:
        return _check_cube_array("background", data).astype(np.float64)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def _image_header(cube: SkyCube, content: str, bunit: str) -> fits.Header:
    header = fits.Header()
    for key, value in cube.meta.items():
        if not _STRUCTURAL.match(key) and not _WCS_KEY.match(key):
            header[key] = value
    header.update(cube.wcs.to_header())
    header["WCSAXES"] = 3
    centres_mev = np.log10(cube.energy_centers_gev * 1e3)
    step = float(np.mean(np.diff(centres_mev))) if centres_mev.size > 1 else 1.0
    header["CTYPE3"] = ("log_Energy", "log10(E/MeV); exact bins in EBOUNDS")
    header["CRPIX3"] = 1.0
    header["CRVAL3"] = (float(centres_mev[0]), "log10(E/MeV) at the first bin centre")
    header["CDELT3"] = (step, "mean log10 step of the bin centres")
    header["BUNIT"] = bunit
    header["CONTENT"] = (content, "What the primary image holds")
    header["CREATOR"] = (f"astroreco {__version__}", "Software that wrote this file")
    header["DATE"] = (_now(), "File creation date (UTC)")
    return header


def _ebounds_hdu(edges_gev: np.ndarray) -> fits.BinTableHDU:
    n = edges_gev.size - 1
    cols = [fits.Column(name="CHANNEL", format="J", array=np.arange(1, n + 1)),
            fits.Column(name="E_MIN", format="D", unit="keV", array=edges_gev[:-1] * 1e6),
            fits.Column(name="E_MAX", format="D", unit="keV", array=edges_gev[1:] * 1e6)]
    hdu = fits.BinTableHDU.from_columns(cols, name="EBOUNDS")
    for key, value in (("HDUCLASS", "OGIP"), ("HDUCLAS1", "RESPONSE"), ("HDUCLAS2", "EBOUNDS"),
                       ("CHANTYPE", "PI"), ("DETCHANS", n)):
        hdu.header[key] = value
    return hdu


def _write_fits(hdul: fits.HDUList, path, overwrite: bool) -> Path:
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file name")
    with atomic_path(path, overwrite) as tmp:
        hdul.writeto(tmp, overwrite=True, checksum=True)
    return path


def _check_is_cube(cube) -> None:
    if not isinstance(cube, SkyCube):
        raise InputError(f"cube: expected a SkyCube, got {type(cube).__name__}")


def write_counts_cube(path, cube: SkyCube, overwrite: bool = False) -> Path:
    """Write ``cube.counts`` (+ EBOUNDS, + EXPOSURE if set) as a Fermi-style counts cube.

    Written atomically (temporary file, then rename); returns the path.  The background is
    not part of this file: see :func:`write_background`.
    """
    _check_is_cube(cube)
    hdus = [fits.PrimaryHDU(cube.counts, _image_header(cube, "COUNTS", "count")),
            _ebounds_hdu(cube.energy_edges_gev)]
    if cube.exposure is not None:
        header = cube.wcs.to_header()
        header["BUNIT"] = "cm2 s"
        hdus.append(fits.ImageHDU(cube.exposure, header, name="EXPOSURE"))
    return _write_fits(fits.HDUList(hdus), path, overwrite)


def write_background(path, cube: SkyCube, overwrite: bool = False) -> Path:
    """Write ``cube.background`` as a background-model cube (the counts-cube layout)."""
    _check_is_cube(cube)
    if cube.background is None:
        raise InputError("cube.background: None, no background model to write")
    hdus = [fits.PrimaryHDU(cube.background, _image_header(cube, "MODEL", "count")),
            _ebounds_hdu(cube.energy_edges_gev)]
    return _write_fits(fits.HDUList(hdus), path, overwrite)
