r"""Geometry of a gamma-ray sky patch: pixels, projection, energy bins.

A patch is a square image of ``n_pix x n_pix`` pixels of ``pixel_deg`` in Galactic
coordinates, centred on ``(l0, b0)``, as a Fermi-style counts cube: rows are latitude
(``y``, increasing with ``b``), columns are longitude (``x``, with ``CDELT1 < 0``: ``l``
*decreases* to the right, as on the sky).  Pixel coordinates are 0-based ``(x, y)`` =
(column, row), as numpy and astropy's ``pixel_to_world`` use them; the centre of the patch is
at ``((n - 1)/2, (n - 1)/2)``.

Projections (FITS WCS, Calabretta & Greisen 2002) with the reference point at the patch centre,
``CRVAL = (l0, b0)``:

- ``CAR`` (default): plate carree in the *native* frame, ``x = -CDELT1 (i - i_c)`` the native
  longitude and ``y`` the native latitude; with ``CRVAL2 = b0 != 0`` this is the oblique CAR
  that WCSLIB builds (the native equator passes through the centre, the native meridian is the
  local meridian), so pixels are nearly square on the sky at every latitude.  Pixel solid
  angle :math:`\Delta x\,[\sin(y + \Delta y/2) - \sin(y - \Delta y/2)]`.
- ``TAN``: gnomonic, solid angle :math:`\Delta x\Delta y / (1 + x^2 + y^2)^{3/2}`.

Direction of the intermediate point ``(x, y)`` (radians) in the local frame ``(c, e, n)``
(centre, east = increasing l, north): CAR :math:`\cos y\cos x\,c + \cos y\sin x\,e + \sin y\,n`;
TAN :math:`(c + x e + y n)/\sqrt{1 + x^2 + y^2}`.  These closed forms are what the simulator
uses (fast, vectorised); :meth:`SkyGeometry.wcs` gives the matching astropy ``WCS`` (tested to
agree to 1e-9 deg).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from astroreco.errors import InputError

__all__ = ["SkyGeometry", "PROJECTIONS"]

PROJECTIONS = ("CAR", "TAN")


def _default_edges():
    return tuple(float(v) for v in np.geomspace(0.3, 1000.0, 7))


@dataclass(frozen=True)
class SkyGeometry:
    """Pixels, projection and energy bins of a patch.

    Attributes
    ----------
    n_pix : int
        Pixels per side (square patch).
    size_deg : float
        Side of the patch (deg); ``pixel_deg = size_deg / n_pix``.
    energy_edges_gev : tuple of float
        Increasing energy bin edges (GeV); default 6 log-spaced bins from 0.3 GeV to 1 TeV.
    projection : str
        ``"CAR"`` or ``"TAN"``.
    """

    n_pix: int = 64
    size_deg: float = 10.0
    energy_edges_gev: tuple = _default_edges()
    projection: str = "CAR"

    def __post_init__(self):
        if not isinstance(self.n_pix, (int, np.integer)) or isinstance(self.n_pix, bool) \
                or self.n_pix < 4:
            raise InputError(f"n_pix: expected an integer >= 4, got {self.n_pix!r}")
        if not (isinstance(self.size_deg, (int, float)) and np.isfinite(self.size_deg)
                and 0 < self.size_deg <= 60):
            raise InputError(f"size_deg: expected a patch side in (0, 60] deg, got "
                             f"{self.size_deg!r}")
        try:
            edges = np.asarray(self.energy_edges_gev, dtype=float)
        except (TypeError, ValueError):
            raise InputError(f"energy_edges_gev: expected increasing energies (GeV), got "
                             f"{self.energy_edges_gev!r}") from None
        if edges.ndim != 1 or len(edges) < 2:
            raise InputError(f"energy_edges_gev: expected at least 2 edges (1 energy bin), got "
                             f"{self.energy_edges_gev!r}")
        if np.any(~np.isfinite(edges)) or edges[0] <= 0 or np.any(np.diff(edges) <= 0):
            raise InputError(f"energy_edges_gev: expected strictly increasing energies > 0 "
                             f"(GeV), got {self.energy_edges_gev!r}")
        object.__setattr__(self, "energy_edges_gev", tuple(edges.tolist()))
        if self.projection not in PROJECTIONS:
            raise InputError(f"projection: expected one of {PROJECTIONS}, got "
                             f"{self.projection!r}")

    # --- presets ----------------------------------------------------------------------------
    @classmethod
    def fermi(cls, **changes) -> "SkyGeometry":
        """Fermi-LAT-like: 64 x 64 pixels of 0.156 deg (10 x 10 deg), 6 bins 0.3 GeV-1 TeV."""
        return cls(**changes)

    @classmethod
    def cta(cls, **changes) -> "SkyGeometry":
        """CTA-like: 128 x 128 pixels of 0.04 deg (5.12 x 5.12 deg), 5 bins 30 GeV-100 TeV."""
        base = dict(n_pix=128, size_deg=5.12,
                    energy_edges_gev=tuple(float(v) for v in np.geomspace(30.0, 1e5, 6)))
        base.update(changes)
        return cls(**base)

    # --- sizes ------------------------------------------------------------------------------
    @property
    def pixel_deg(self) -> float:
        return self.size_deg / self.n_pix

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of an image."""
        return (self.n_pix, self.n_pix)

    @property
    def n_energy(self) -> int:
        return len(self.energy_edges_gev) - 1

    @property
    def energy_bands_gev(self) -> np.ndarray:
        """``(E, 2)`` lower and upper edges."""
        e = np.asarray(self.energy_edges_gev)
        return np.stack([e[:-1], e[1:]], axis=1)

    @property
    def energy_centres_gev(self) -> np.ndarray:
        """``(E,)`` geometric bin centres."""
        e = np.asarray(self.energy_edges_gev)
        return np.sqrt(e[:-1] * e[1:])

    # --- WCS --------------------------------------------------------------------------------
    def wcs(self, l_centre: float, b_centre: float):
        """The astropy ``WCS`` (2-D, ``GLON-xxx`` / ``GLAT-xxx``) of the patch at (l, b)."""
        from astropy.wcs import WCS

        w = WCS(naxis=2)
        w.wcs.ctype = [f"GLON-{self.projection}", f"GLAT-{self.projection}"]
        w.wcs.crval = [float(l_centre) % 360.0, float(b_centre)]
        w.wcs.crpix = [(self.n_pix + 1) / 2.0, (self.n_pix + 1) / 2.0]
        w.wcs.cdelt = [-self.pixel_deg, self.pixel_deg]
        w.wcs.cunit = ["deg", "deg"]
        w.wcs.set()
        return w

    # --- pixel <-> intermediate (native) coordinates ----------------------------------------
    def pixel_to_native(self, x_pix, y_pix):
        """Intermediate coordinates ``(x_deg, y_deg)`` of 0-based pixel coordinates."""
        c = (self.n_pix - 1) / 2.0
        return (-(np.asarray(x_pix, float) - c) * self.pixel_deg,
                (np.asarray(y_pix, float) - c) * self.pixel_deg)

    def native_to_pixel(self, x_deg, y_deg):
        """0-based pixel coordinates ``(x_pix, y_pix)`` of intermediate coordinates."""
        c = (self.n_pix - 1) / 2.0
        return c - np.asarray(x_deg, float) / self.pixel_deg, \
            c + np.asarray(y_deg, float) / self.pixel_deg

    def native_to_local(self, x_deg, y_deg) -> np.ndarray:
        """``(3, *shape)`` unit vectors in the local frame (centre, east, north)."""
        x, y = np.radians(x_deg), np.radians(y_deg)
        if self.projection == "CAR":
            cy = np.cos(y)
            return np.stack([cy * np.cos(x), cy * np.sin(x), np.sin(y)])
        norm = 1.0 / np.sqrt(1.0 + x * x + y * y)
        return np.stack([norm, x * norm, y * norm])

    def local_to_native(self, vec):
        """Intermediate ``(x_deg, y_deg)`` of local-frame unit vectors ``(3, ...)``.

        TAN points behind the tangent plane (``vec[0] <= 0``) give NaN.
        """
        v0, v1, v2 = vec
        if self.projection == "CAR":
            return np.degrees(np.arctan2(v1, v0)), np.degrees(np.arcsin(np.clip(v2, -1, 1)))
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(v0 > 0, 1.0 / v0, np.nan)
        return np.degrees(v1 * inv), np.degrees(v2 * inv)

    def native_solid_angle(self, x_deg, y_deg) -> np.ndarray:
        """Solid angle per deg^2 of the intermediate plane at ``(x, y)`` (sr deg^-2)."""
        d2 = math.radians(1.0) ** 2
        if self.projection == "CAR":
            return np.cos(np.radians(y_deg)) * d2 * np.ones(np.shape(x_deg))
        x, y = np.radians(x_deg), np.radians(y_deg)
        return d2 / (1.0 + x * x + y * y) ** 1.5

    # --- Galactic <-> pixel -----------------------------------------------------------------
    @staticmethod
    def local_axes(l_centre: float, b_centre: float) -> np.ndarray:
        """``(3, 3)`` rows: unit vectors c (centre), e (east), n (north) in Galactic xyz."""
        lr, br = math.radians(l_centre), math.radians(b_centre)
        cl, sl, cb, sb = math.cos(lr), math.sin(lr), math.cos(br), math.sin(br)
        return np.array([[cb * cl, cb * sl, sb], [-sl, cl, 0.0], [-sb * cl, -sb * sl, cb]])

    def pixel_to_galactic(self, x_pix, y_pix, l_centre: float, b_centre: float):
        """``(l_deg in [0, 360), b_deg)`` of 0-based pixel coordinates."""
        v = self.native_to_local(*self.pixel_to_native(x_pix, y_pix))
        g = np.tensordot(self.local_axes(l_centre, b_centre), v, axes=(0, 0))
        return np.degrees(np.arctan2(g[1], g[0])) % 360.0, \
            np.degrees(np.arcsin(np.clip(g[2], -1, 1)))

    def galactic_to_pixel(self, l_deg, b_deg, l_centre: float, b_centre: float):
        """0-based pixel coordinates ``(x_pix, y_pix)`` of Galactic positions."""
        lr, br = np.radians(l_deg), np.radians(b_deg)
        g = np.stack([np.cos(br) * np.cos(lr), np.cos(br) * np.sin(lr), np.sin(br)])
        v = np.tensordot(self.local_axes(l_centre, b_centre), g, axes=(1, 0))
        return self.native_to_pixel(*self.local_to_native(v))

    def solid_angle_sr(self) -> np.ndarray:
        """``(H, W)`` solid angle of each pixel (sr)."""
        idx = np.arange(self.n_pix, dtype=float)
        return self.pixel_solid_angle(idx[None, :], idx[:, None])

    def pixel_solid_angle(self, x_pix, y_pix) -> np.ndarray:
        """Solid angle (sr) of the pixels centred at ``(x_pix, y_pix)`` (broadcasting; any
        position, also outside the patch)."""
        x, y = self.pixel_to_native(x_pix, y_pix)
        x, y = np.broadcast_arrays(x, y)
        p = math.radians(self.pixel_deg)
        if self.projection == "CAR":
            yr = np.radians(y)
            return p * (np.sin(yr + p / 2) - np.sin(yr - p / 2))
        return self.native_solid_angle(x, y) * self.pixel_deg ** 2

    def to_dict(self) -> dict:
        d = asdict(self)
        d["energy_edges_gev"] = list(self.energy_edges_gev)
        d["pixel_deg"] = self.pixel_deg
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SkyGeometry":
        d = {k: v for k, v in d.items() if k != "pixel_deg"}
        d["energy_edges_gev"] = tuple(d.get("energy_edges_gev", _default_edges()))
        return cls(**d)
