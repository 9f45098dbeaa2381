"""IXPE Level-2 event files: write reconstructed events, read them back.

The format itself (columns, keywords, constants, PI and sky conversions) is declared in
:mod:`astroreco.detectors.ixpe.level2_format`; its public names are re-exported here.

The file layout follows the IXPE Level-2 format closely enough for the mission's science tool
ixpeobssim (``xpbin --algorithm PCUBE`` and the other binning algorithms) to read it:

* ``PRIMARY``: telescope/detector, timing and target keywords (see :data:`PRIMARY_KEYWORDS`);
* ``EVENTS``: one row per event, columns in :data:`EVENTS_COLUMNS`, the same keywords as the
  primary header, plus the sky WCS of the ``X``/``Y`` columns (``TCTYPn``, ``TCUNIn``,
  ``TCRPXn``, ``TCRVLn``, ``TCDLTn``) and ``TLMINn``/``TLMAXn`` limits;
* ``GTI``: one good-time interval, ``START``/``STOP``, covering the exposure.

What ixpeobssim 33 reads from such a file (``ixpeobssim.evt.event.xEventFile`` and the
PCUBE binning class):

* ``DETNAM``: its last character is the detector-unit id, which selects the IRF files
  (``DU1`` -> ``ixpe_d1_...``), hence ``DETNAM='DU1'``;
* every time keyword ``TSTART`` ... ``DEADAPP`` (copied into the output file, a missing one
  is a ``KeyError``) and ``LIVETIME`` (used for the energy flux);
* ``PI`` (the energy it uses is ``0.04 * PI + 0.02`` keV, not the ``ENERGY`` column),
  ``Q`` and ``U``;
* the ``GTI`` extension (copied to the output) with ``TSTART``/``TSTOP`` in its header;
* the ``EVENTS`` header WCS on ``X``/``Y`` (otherwise it logs an error and rebuilds a WCS from
  ``RA_OBJ``/``DEC_OBJ``).

The IRF name is not in the file: ixpeobssim only looks for it in a ``MONTE_CARLO`` extension,
which a reconstructed (non-simulated) file does not have, so pass ``--irfname`` to ``xpbin``.
The file name must end in ``.fits`` for ``xpbin``.

Conventions
-----------
* Per-event Stokes parameters are ``Q = 2 cos 2 phi`` and ``U = 2 sin 2 phi``, *not* divided by
  the modulation factor (PCUBE divides by the IRF modulation factor itself).
* No detector-unit rotation and no roll are applied: the sky frame of this file is the
  detector frame.  ``X`` grows with ``DETX`` and ``Y`` with ``DETY`` (tangent plane,
  :data:`FOCAL_LENGTH_MM`, :data:`SKY_PIXEL_ARCSEC` per pixel, the detector centre on the
  reference pixel at ``RA_OBJ``/``DEC_OBJ``).  The ``X`` column carries ``TCDLT < 0`` (RA grows
  towards -X, i.e. +X points West and +Y North as in ixpeobssim's focal-plane frame), so
  ``DETPHI``, ``Q``/``U`` and PCUBE's polarization angle ``PA`` are all measured counter-clockwise
  from the +X (= detector x) axis: PCUBE's ``PA`` in degrees equals ``degrees(phi0)``.  It is not
  the astronomical position angle measured from celestial north.
* ``TIME`` is mission elapsed time (seconds since ``MJDREFI + MJDREFF``, TT, i.e.
  2017-01-01T00:00:00 UTC).
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from astropy.io import fits

from astroreco.detectors.ixpe.level2_format import (DEFAULT_EXPOSURE_S, ENERGY_MAX_KEV,
                                                    EVENTS_COLUMNS, EVENTS_KEYWORDS,
                                                    FOCAL_LENGTH_MM, GTI_COLUMNS,
                                                    PRIMARY_KEYWORDS, REQUIRED_COLUMNS,
                                                    SKY_PIXEL_ARCSEC, _GTI_KEYWORDS,
                                                    ColumnSpec, KeywordSpec,
                                                    _met_to_utc_string,
                                                    _sky_wcs_column_kwargs,
                                                    detector_to_sky_pixels, energy_to_pi,
                                                    pi_to_energy)
from astroreco.errors import InputError

__all__ = [
    "ColumnSpec",
    "KeywordSpec",
    "EVENTS_COLUMNS",
    "GTI_COLUMNS",
    "PRIMARY_KEYWORDS",
    "EVENTS_KEYWORDS",
    "REQUIRED_COLUMNS",
    "Level2Data",
    "write_level2",
    "read_level2",
    "energy_to_pi",
    "pi_to_energy",
    "detector_to_sky_pixels",
    "FOCAL_LENGTH_MM",
    "SKY_PIXEL_ARCSEC",
]


# substrings of astropy's warnings about damaged files
_CORRUPTION_HINTS = ("truncated", "verification failed", "corrupt", "error validating header",
                     "extra bytes")

_STRUCTURAL_KEYWORDS = frozenset(
    {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "COMMENT", "HISTORY", ""}
)


# --------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------

def _as_1d_float(name: str, values) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: expected an array of numbers ({exc})") from None
    if array.ndim != 1:
        raise InputError(f"{name}: expected a 1-D array, got shape {array.shape}")
    return array


def _check_finite(name: str, array: np.ndarray) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(f"{name}: {int(bad.sum())} NaN/infinite value(s), first at index {first}")


def _check_length(name: str, array: np.ndarray, n: int) -> None:
    if array.shape[0] != n:
        raise InputError(f"{name}: length mismatch, {array.shape[0]} values for {n} events (phi)")


def _check_scalar(name: str, value, lo: float, hi: float, hi_open: bool = False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a number, got {value!r}") from None
    ok = np.isfinite(value) and lo <= value and (value < hi if hi_open else value <= hi)
    if not ok:
        bracket = ")" if hi_open else "]"
        raise InputError(f"{name}: {value!r} outside [{lo}, {hi}{bracket}")
    return value


def _check_output_path(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file name")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: file exists (pass overwrite=True to replace it)")
    if not path.parent.is_dir():
        raise InputError(f"{path}: output directory {path.parent} does not exist")


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------

def write_level2(path, *, phi, energy_kev, x_mm, y_mm, w_mom=None, time=None, status=None,
                 stokes=None, object_name: str = "SIM", ra_deg: float = 0.0, dec_deg: float = 0.0,
                 exposure_s: float | None = None, overwrite: bool = False) -> Path:
    """Write reconstructed events as an IXPE Level-2 event file; returns the path written.

    Parameters
    ----------
    path : str or Path
        Output file (name it ``*.fits`` for ixpeobssim).  Written atomically: into a hidden
        temporary file of the same directory, then renamed over ``path``.
    phi : array (n,)
        Reconstructed photoelectron emission angle (rad), detector frame, counter-clockwise
        from the detector x axis.  Gives DETPHI, Q = 2 cos 2phi and U = 2 sin 2phi.
    energy_kev : array (n,)
        Reconstructed energy, in (0, 15) keV.  Gives ENERGY and PI.
    x_mm, y_mm : array (n,)
        Reconstructed absorption point (mm, detector frame).  Give DETX/DETY and X/Y.
    w_mom : array (n,), optional
        Event weights (default 1).
    time : array (n,), optional
        Event times (MET, s), non-decreasing.  Default: evenly spread over the exposure,
        ``TSTART + (i + 0.5) * exposure / n`` with ``TSTART = 0``.
    status : integer array (n,), optional
        Status flags (default 0).
    stokes : (array (n,), array (n,)), optional
        Per-event ``(Q, U)`` to write instead of ``2 cos 2phi, 2 sin 2phi``: e.g. after the
        spurious-modulation correction (:meth:`SpuriousCalibration.stokes
        <astroreco.detectors.ixpe.spurious.SpuriousCalibration.stokes>`), as IXPE's Level-2
        files carry them.  DETPHI stays the reconstructed angle.
    object_name, ra_deg, dec_deg
        Target name and sky position (deg) of the detector centre (WCS reference).
    exposure_s : float, optional
        Length of the single good-time interval (s).  Default: the span of ``time`` when
        given, else 1000 s.  Must cover ``time``.
    overwrite : bool
        Replace an existing file.

    Raises
    ------
    InputError
        On inconsistent or invalid input, or an existing file without ``overwrite``.
    """
    path = Path(path)
    _check_output_path(path, overwrite)

    phi = _as_1d_float("phi", phi)
    n = phi.shape[0]
    energy = _as_1d_float("energy_kev", energy_kev)
    x_mm = _as_1d_float("x_mm", x_mm)
    y_mm = _as_1d_float("y_mm", y_mm)
    for name, array in (("energy_kev", energy), ("x_mm", x_mm), ("y_mm", y_mm)):
        _check_length(name, array, n)
    if w_mom is None:
        w_mom = np.ones(n)
    else:
        w_mom = _as_1d_float("w_mom", w_mom)
        _check_length("w_mom", w_mom, n)
    if status is None:
        status = np.zeros(n, dtype=np.int32)
    else:
        status = np.asarray(status)
        if status.ndim != 1:
            raise InputError(f"status: expected a 1-D array, got shape {status.shape}")
        _check_length("status", status, n)
        if not (np.issubdtype(status.dtype, np.integer) or status.dtype == np.bool_):
            raise InputError(f"status: expected integer flags, got dtype {status.dtype}")
        info = np.iinfo(np.int32)
        if n and (status.min() < info.min or status.max() > info.max):
            raise InputError("status: values do not fit in 32-bit integers")
        status = status.astype(np.int32)

    if stokes is None:
        q, u = 2.0 * np.cos(2.0 * phi), 2.0 * np.sin(2.0 * phi)
    else:
        if not isinstance(stokes, (tuple, list)) or len(stokes) != 2:
            raise InputError("stokes: expected a pair of arrays (Q, U)")
        q, u = _as_1d_float("stokes Q", stokes[0]), _as_1d_float("stokes U", stokes[1])
        _check_length("stokes Q", q, n)
        _check_length("stokes U", u, n)
    for name, array in (("phi", phi), ("energy_kev", energy), ("x_mm", x_mm),
                        ("y_mm", y_mm), ("w_mom", w_mom), ("stokes Q", q), ("stokes U", u)):
        _check_finite(name, array)
    outside = (energy <= 0.0) | (energy >= ENERGY_MAX_KEV)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise InputError(f"energy_kev: {int(outside.sum())} value(s) outside (0, 15) keV, "
                         f"first {float(energy[first])!r} at index {first}")

    if exposure_s is not None:
        exposure_s = _check_scalar("exposure_s", exposure_s, 0.0, np.inf, hi_open=True)
        if exposure_s <= 0.0:
            raise InputError(f"exposure_s: {exposure_s!r} must be > 0")
    if time is None:
        tstart = 0.0
        exposure = DEFAULT_EXPOSURE_S if exposure_s is None else exposure_s
        time = tstart + (np.arange(n) + 0.5) * (exposure / max(n, 1))
    else:
        time = _as_1d_float("time", time)
        _check_length("time", time, n)
        _check_finite("time", time)
        if n and np.any(np.diff(time) < 0.0):
            raise InputError("time: not sorted (Level-2 events are in time order)")
        tstart = float(time[0]) if n else 0.0
        span = float(time[-1] - time[0]) if n else 0.0
        if exposure_s is None:
            exposure = span
        elif span > exposure_s:
            raise InputError(f"time: spans {span!r} s, longer than exposure_s={exposure_s!r}")
        else:
            exposure = exposure_s
    tstop = tstart + exposure

    ra_deg = _check_scalar("ra_deg", ra_deg, 0.0, 360.0, hi_open=True)
    dec_deg = _check_scalar("dec_deg", dec_deg, -90.0, 90.0)
    if not isinstance(object_name, str):
        raise InputError(f"object_name: expected a string, got {type(object_name).__name__}")
    if not (object_name.isascii() and object_name.isprintable()):
        raise InputError(f"object_name: {object_name!r} is not printable ASCII (FITS header)")

    sky_x, sky_y = detector_to_sky_pixels(x_mm, y_mm)
    columns = {
        "TIME": time,
        "STATUS": status,
        "PI": energy_to_pi(energy),
        "ENERGY": energy,
        "W_MOM": w_mom,
        "DETX": x_mm,
        "DETY": y_mm,
        "X": sky_x,
        "Y": sky_y,
        "DETPHI": phi,
        "Q": q,
        "U": u,
    }
    values = {
        "TSTART": tstart,
        "TSTOP": tstop,
        "DATE-OBS": _met_to_utc_string(tstart),
        "DATE-END": _met_to_utc_string(tstop),
        "TELAPSE": exposure,
        "ONTIME": exposure,
        "LIVETIME": exposure,  # no dead time applied (DEADC = 1)
        "OBJECT": object_name,
        "RA_OBJ": ra_deg,
        "DEC_OBJ": dec_deg,
        "RA_PNT": ra_deg,
        "DEC_PNT": dec_deg,
        "DATE": _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
                .isoformat(timespec="seconds"),
    }
    hdul = _build_hdus(columns, values, ra_deg, dec_deg, [(tstart, tstop)])
    _write_atomically(hdul, path)
    return path


def _keyword_cards(specs, values) -> list[tuple[str, Any, str]]:
    cards = []
    for spec in specs:
        value = spec.value if spec.value is not None else values[spec.name]
        cards.append((spec.name, value, spec.comment))
    return cards


def _table_hdu(specs, arrays, name, extra_column_kwargs=None) -> fits.BinTableHDU:
    extra_column_kwargs = extra_column_kwargs or {}
    cols = []
    for spec in specs:
        array = np.asarray(arrays[spec.name])
        cols.append(fits.Column(name=spec.name, format=spec.format, unit=spec.unit,
                                array=array, **extra_column_kwargs.get(spec.name, {})))
    hdu = fits.BinTableHDU.from_columns(cols, name=name)
    for i, spec in enumerate(specs, start=1):
        hdu.header.comments[f"TTYPE{i}"] = spec.description
        if spec.limits is not None:
            hdu.header.set(f"TLMIN{i}", spec.limits[0], f"Minimum value of {spec.name}",
                           after=f"TFORM{i}")
            hdu.header.set(f"TLMAX{i}", spec.limits[1], f"Maximum value of {spec.name}",
                           after=f"TLMIN{i}")
    return hdu


def _build_hdus(columns, values, ra_deg, dec_deg, gtis) -> fits.HDUList:
    common = _keyword_cards(PRIMARY_KEYWORDS, values)
    primary = fits.PrimaryHDU()
    for card in common:
        primary.header.set(*card)

    events = _table_hdu(EVENTS_COLUMNS, columns, "EVENTS", _sky_wcs_column_kwargs(ra_deg, dec_deg))
    for card in _keyword_cards(EVENTS_KEYWORDS, values) + common:
        events.header.set(*card)

    starts, stops = (np.array(v, dtype=np.float64) for v in zip(*gtis))
    gti = _table_hdu(GTI_COLUMNS, {"START": starts, "STOP": stops}, "GTI")
    for card in _keyword_cards(_GTI_KEYWORDS, values) + common:
        gti.header.set(*card)
    return fits.HDUList([primary, events, gti])


def _write_atomically(hdul: fits.HDUList, path: Path) -> None:
    """Write ``hdul`` to a temporary file next to ``path``, sync it, rename it over ``path``.

    On any failure the temporary file is removed and ``path`` is left untouched.
    """
    # keep a compression suffix: astropy compresses according to the file name
    compression = next((s for s in (".gz", ".bz2") if path.name.endswith(s)), "")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp{compression}")
    try:
        hdul.writeto(tmp, overwrite=False, checksum=True)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------

class Level2Data(NamedTuple):
    """What :func:`read_level2` returns: unpacks as ``columns, header``."""

    columns: dict[str, np.ndarray]
    """EVENTS columns by name, native-byte-order numpy arrays."""
    header: dict[str, Any]
    """PRIMARY header keywords (no structural keywords, COMMENT or HISTORY)."""


def _native(array) -> np.ndarray:
    array = np.array(array)  # copy: detached from the file
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def read_level2(path) -> Level2Data:
    """Read an IXPE Level-2 event file: ``(columns, header)``.

    Checks that it is a complete, readable FITS file (checksums verified when present), that
    the PRIMARY header says ``TELESCOP='IXPE'``, and that an ``EVENTS`` binary table exists
    with the :data:`REQUIRED_COLUMNS`.  Every column of EVENTS is returned.

    Raises
    ------
    InputError
        One line naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    names: list[str] = []
    header: dict[str, Any] = {}
    present: list[str] = []
    columns: dict[str, np.ndarray] = {}
    events_is_table = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False, checksum=True) as hdul:
                for hdu in hdul:  # read (and checksum-verify) every HDU
                    _ = hdu.data
                names = [hdu.name for hdu in hdul]
                primary = hdul[0].header
                header = {key: primary[key] for key in primary.keys()
                          if key not in _STRUCTURAL_KEYWORDS}
                if "EVENTS" in names:
                    events = hdul["EVENTS"]
                    events_is_table = isinstance(events, fits.BinTableHDU)
                    if events_is_table:
                        present = list(events.columns.names)
                        columns = {name: _native(events.data[name]) for name in present}
        except Exception as exc:  # astropy raises OSError, ValueError, TypeError, ...
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{path}: not a readable FITS file ({message})") from None
    problems = []
    for w in caught:
        text = str(w.message)
        if any(s in text.lower() for s in _CORRUPTION_HINTS):
            problems.append(" ".join(line.strip() for line in text.splitlines()[1:2])
                            or text.splitlines()[0])
        else:  # not ours to swallow
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if problems:
        raise InputError(f"{path}: corrupt or truncated FITS file ({problems[0]})")
    if header.get("TELESCOP") != "IXPE":
        raise InputError(f"{path}: not an IXPE file (TELESCOP={header.get('TELESCOP')!r})")
    if "EVENTS" not in names:
        raise InputError(f"{path}: no EVENTS extension (found {', '.join(names)})")
    if not events_is_table:
        raise InputError(f"{path}: EVENTS extension is not a binary table")
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if missing:
        raise InputError(f"{path}: EVENTS lacks required column(s) {', '.join(missing)}")
    return Level2Data(columns, header)
