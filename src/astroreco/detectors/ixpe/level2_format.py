"""The IXPE Level-2 format, declared once: columns, keywords, constants and conversions.

:mod:`astroreco.detectors.ixpe.level2` writes and reads files with these declarations; see
its docstring for what ixpeobssim needs from them.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

import numpy as np


# --------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ColumnSpec:
    """One binary-table column: name, FITS format code, unit, description, TLMIN/TLMAX."""

    name: str
    format: str
    unit: str | None
    description: str
    limits: tuple[int, int] | None = None


@dataclass(frozen=True)
class KeywordSpec:
    """One header keyword; ``value=None`` means the value is computed for each file."""

    name: str
    value: Any
    comment: str


#: Energy scale of the pulse-invariant channels (keV): E = PI_STEP_KEV * PI + PI_OFFSET_KEV.
PI_STEP_KEV = 0.04
PI_OFFSET_KEV = 0.02
PI_MIN = 0
PI_MAX = 374  # 375 channels over 0--15 keV
ENERGY_MAX_KEV = 15.0

#: Sky pixelisation of the X/Y columns, as in ixpeobssim's own event files
#: (ixpeobssim.evt.fmt: 600 x 600 pixels of 2.6 arcsec, reference pixel in the middle).
SKY_NUM_PIXELS = 600
SKY_PIXEL_ARCSEC = 2.6
SKY_REF_PIXEL = 0.5 * (SKY_NUM_PIXELS + 1)
#: Focal length of the IXPE mirror modules (mm), as in ixpeobssim.instrument.mma.
FOCAL_LENGTH_MM = 3997.0

#: The detector unit written in DETNAM/DET_ID (ixpeobssim picks the IRF files with it).
DU_ID = 1
_DU_PHYSICAL_NAME = {1: "DU_FM2", 2: "DU_FM3", 3: "DU_FM4"}

#: Mission epoch: MET 0 is 2017-01-01T00:00:00 UTC (MJDREF in TT; no leap second since).
MJDREFI = 57754
MJDREFF = 0.00080074074
_MET_EPOCH_UTC = _dt.datetime(2017, 1, 1)

DEFAULT_EXPOSURE_S = 1000.0

EVENTS_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("TIME", "D", "s", "Event time (MET, s since MJDREF)"),
    ColumnSpec("STATUS", "J", None, "Event status flags (0 = good)"),
    ColumnSpec("PI", "J", None, "Pulse invariant: E = 0.04 * PI + 0.02 keV", (PI_MIN, PI_MAX)),
    ColumnSpec("ENERGY", "E", "keV", "Reconstructed energy"),
    ColumnSpec("W_MOM", "E", None, "Event weight (moments analysis)"),
    ColumnSpec("DETX", "E", "mm", "Reconstructed absorption point X (GPD frame)"),
    ColumnSpec("DETY", "E", "mm", "Reconstructed absorption point Y (GPD frame)"),
    ColumnSpec("X", "E", "pixel", "Event X position (SKY frame)", (1, SKY_NUM_PIXELS)),
    ColumnSpec("Y", "E", "pixel", "Event Y position (SKY frame)", (1, SKY_NUM_PIXELS)),
    ColumnSpec("DETPHI", "E", "rad", "Photoelectron emission angle (GPD frame)"),
    ColumnSpec("Q", "E", None, "Event Q Stokes parameter 2cos(2phi)"),
    ColumnSpec("U", "E", None, "Event U Stokes parameter 2sin(2phi)"),
)

GTI_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("START", "D", "s", "GTI start time (MET)"),
    ColumnSpec("STOP", "D", "s", "GTI stop time (MET)"),
)

#: Columns a file must have to be read as an IXPE Level-2 event list (those ixpeobssim's
#: polarization binning uses).
REQUIRED_COLUMNS: tuple[str, ...] = ("TIME", "PI", "X", "Y", "Q", "U")

#: Keywords of the PRIMARY header (repeated in EVENTS and GTI, as in the mission files).
PRIMARY_KEYWORDS: tuple[KeywordSpec, ...] = (
    KeywordSpec("TELESCOP", "IXPE", "Telescope name"),
    KeywordSpec("INSTRUME", "GPD", "Instrument name"),
    KeywordSpec("DETNAM", f"DU{DU_ID}", "Logical detector unit (selects the IRFs)"),
    KeywordSpec("DET_ID", _DU_PHYSICAL_NAME[DU_ID], "Physical detector unit"),
    KeywordSpec("TSTART", None, "Observation start time (MET)"),
    KeywordSpec("TSTOP", None, "Observation end time (MET)"),
    KeywordSpec("DATE-OBS", None, "Observation start (UTC)"),
    KeywordSpec("DATE-END", None, "Observation end (UTC)"),
    KeywordSpec("TELAPSE", None, "TSTOP - TSTART"),
    KeywordSpec("TIMESYS", "TT", "Time system"),
    KeywordSpec("TIMEUNIT", "s", "Time unit"),
    KeywordSpec("TIMEREF", "LOCAL", "Time reference"),
    KeywordSpec("MJDREFI", MJDREFI, "MJD reference day 2017-01-01T00:00:00 UTC"),
    KeywordSpec("MJDREFF", MJDREFF, "Fraction of MJD ref (32.184 s + 37 leap s)"),
    KeywordSpec("TIMEZERO", 0.0, "Time offset"),
    KeywordSpec("ONTIME", None, "Sum of good time intervals (s)"),
    KeywordSpec("LIVETIME", None, "ONTIME corrected for dead time (s)"),
    KeywordSpec("DEADC", 1.0, "Dead time correction"),
    KeywordSpec("DEADAPP", False, "Has DEADC been applied to data"),
    KeywordSpec("OBJECT", None, "Name of observed object"),
    KeywordSpec("RA_OBJ", None, "[deg] R.A. of the object"),
    KeywordSpec("DEC_OBJ", None, "[deg] Dec. of the object"),
    KeywordSpec("RA_PNT", None, "[deg] R.A. of the pointing"),
    KeywordSpec("DEC_PNT", None, "[deg] Dec. of the pointing"),
    KeywordSpec("EQUINOX", 2000.0, "Equinox of celestial coordinates"),
    KeywordSpec("RADESYS", "FK5", "Celestial coordinate system"),
    KeywordSpec("FILE_LVL", "LV2", "File level"),
    KeywordSpec("CREATOR", "astroreco", "Software that wrote this file"),
    KeywordSpec("DATE", None, "File creation date (UTC)"),
)

#: Keywords only in the EVENTS header (besides the column-related ones).
EVENTS_KEYWORDS: tuple[KeywordSpec, ...] = (
    KeywordSpec("HDUCLASS", "OGIP", "Format conforms to OGIP standards"),
    KeywordSpec("HDUCLAS1", "EVENTS", "Extension contains events"),
)

_GTI_KEYWORDS: tuple[KeywordSpec, ...] = (
    KeywordSpec("HDUCLASS", "OGIP", "Format conforms to OGIP standards"),
    KeywordSpec("HDUCLAS1", "GTI", "Extension contains good time intervals"),
)

# --------------------------------------------------------------------------------------
# Conversions
# --------------------------------------------------------------------------------------

def energy_to_pi(energy_kev) -> np.ndarray:
    """PI channel of energies (keV): round((E - 0.02) / 0.04), clipped to [0, 374]."""
    channel = (np.asarray(energy_kev, dtype=np.float64) - PI_OFFSET_KEV) / PI_STEP_KEV
    return np.clip(np.floor(channel + 0.5), PI_MIN, PI_MAX).astype(np.int32)


def pi_to_energy(pi) -> np.ndarray:
    """Centre energy (keV) of PI channels (what ixpeobssim uses as the event energy)."""
    return np.asarray(pi, dtype=np.float64) * PI_STEP_KEV + PI_OFFSET_KEV


def detector_to_sky_pixels(x_mm, y_mm):
    """Sky pixel coordinates (X, Y), FITS 1-based, of detector positions (mm).

    Tangent plane: an offset d (mm) from the detector centre is an angle d / f (rad) on the
    sky; the detector centre falls on the reference pixel.  No rotation (DU angle, roll).
    """
    scale = np.degrees(1.0 / FOCAL_LENGTH_MM) * 3600.0 / SKY_PIXEL_ARCSEC  # pixel per mm
    x = SKY_REF_PIXEL + np.asarray(x_mm, dtype=np.float64) * scale
    y = SKY_REF_PIXEL + np.asarray(y_mm, dtype=np.float64) * scale
    return x, y


def _met_to_utc_string(met: float) -> str:
    return (_MET_EPOCH_UTC + _dt.timedelta(seconds=float(met))).isoformat(timespec="milliseconds")


def _sky_wcs_column_kwargs(ra_deg: float, dec_deg: float) -> dict[str, dict[str, Any]]:
    pixel_deg = SKY_PIXEL_ARCSEC / 3600.0
    return {
        "X": dict(coord_type="RA---TAN", coord_unit="deg", coord_ref_point=SKY_REF_PIXEL,
                  coord_ref_value=ra_deg, coord_inc=-pixel_deg),
        "Y": dict(coord_type="DEC--TAN", coord_unit="deg", coord_ref_point=SKY_REF_PIXEL,
                  coord_ref_value=dec_deg, coord_inc=pixel_deg),
    }
