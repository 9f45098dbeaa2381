r"""Diffuse gamma-ray emission, detector-agnostic: isotropic background and two analytic
interstellar emission models (IEM "A" and "B").

Intensities are per energy band, in ph cm^-2 s^-1 sr^-1; energies in GeV; Galactic
coordinates ``(l, b)`` in degrees (``l`` in any range, wrapped internally).

**Isotropic** (:func:`isotropic_integral`): the integral intensity :math:`I(>E)` goes through
the three values of PHYSICS.md, :math:`I(>0.1) = 1.19\times10^{-5}`,
:math:`I(>1) = 4.8\times10^{-7}`, :math:`I(>10) = 5.1\times10^{-8}`, as a power law between
them (log-log linear: integral indices 1.394 below 1 GeV, 0.974 in 1-10 GeV, i.e. photon
indices 2.39 and 1.97).  Above 10 GeV it continues with the isotropic background's published
high-energy shape (photon index 2.32, exponential cutoff at 279 GeV; Ackermann et al. 2015,
ApJ 799, 86): :math:`I(>E) = I(>10)\,(E/10)^{-1.32} e^{-(E-10)/279}`.  A band intensity is
:math:`I(>E_1) - I(>E_2)`, exact.

**Interstellar emission models.**  Each is a sum of components, a spatial template
(1 at its peak) times an amplitude times a LogParabola spectrum
:math:`(E/1\,\mathrm{GeV})^{-\alpha - \beta\ln E}`.  Amplitudes are in *isotropic units near
1 GeV*: the component's intensity in the reference band 0.8-1.25 GeV (0.2 dex around 1 GeV)
divided by the isotropic one there.  Both are normalised to PHYSICS.md: towards the Galactic
centre ~900x (A) and ~1100x (B) the isotropic near 1 GeV (the quoted range is 600-1300x),
~60x at b = 3.5 deg (l = 0), falling with |b| to ~2x at the poles.

- **A**: a thin disk :math:`e^{-|b|/1.2^\circ}` (amplitude 883) and a broad component
  :math:`e^{-|b|/10^\circ}` (14.6), each with a Gaussian longitude profile over a floor
  (widths 40 and 60 deg, floors 0.1 and 0.4), plus a uniform halo (2.0); one power law,
  photon index 2.5, for all.
- **B**: a thinner disk :math:`e^{-|b|/0.8^\circ}` (1016) with spiral-arm tangent bumps
  (l = +-31, +-50 deg) over a narrower longitude profile (30 deg), a broad component
  :math:`e^{-|b|/6^\circ}` (82), a plane-parallel slab :math:`\min(1, \sin 12^\circ/\sin|b|)`
  (4.0), five clumps at the positions of well-known molecular-cloud complexes (Cygnus,
  Carina, Ophiuchus, Orion, Taurus; Gaussians of 2-4 deg) and two bubble-like lobes at
  b = +-25 deg (Gaussians of 10 deg).  Spectra: LogParabolas with curvature
  :math:`\beta = 0.06` (:math:`\alpha` = 2.35 disk, 2.5 broad and slab), power laws 2.3
  (clumps) and 1.9 (lobes).

These are stand-ins with the right magnitudes and morphology classes, not fits to the LAT
data: their purpose is to train with one and test with the other (the seed's B1/B2).

**Residual cosmic rays** (:func:`cr_band_intensity`): Cherenkov telescopes keep a background
of misidentified hadrons.  It is modelled as an isotropic *equivalent* intensity (the rate
per solid angle divided by the effective area) with an integral power law
:math:`I(>E) = I_{1\,\mathrm{TeV}} (E/1\,\mathrm{TeV})^{-1.6}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from astroreco.errors import InputError
from astroreco.physics.gamma import integrate_bands, logparabola

__all__ = [
    "ISO_KNOTS_GEV", "ISO_INTEGRAL", "REF_BAND_GEV", "isotropic_integral",
    "isotropic_band_intensity", "cr_band_intensity", "Disk", "Slab", "Blob", "Uniform",
    "DiffuseComponent", "InterstellarModel", "IEM_MODELS", "iem_model",
]

#: Knots (GeV) and integral intensities I(>E) (ph cm^-2 s^-1 sr^-1) of PHYSICS.md.
ISO_KNOTS_GEV = (0.1, 1.0, 10.0)
ISO_INTEGRAL = (1.19e-5, 4.8e-7, 5.1e-8)
#: High-energy shape of the isotropic background above 10 GeV (Ackermann et al. 2015).
ISO_HE_INDEX = 2.32
ISO_HE_CUTOFF_GEV = 279.0
#: Reference band of the IEM amplitudes (GeV).
REF_BAND_GEV = (0.8, 1.25)


def isotropic_integral(energy_gev):
    """Isotropic integral intensity :math:`I(>E)` (ph cm^-2 s^-1 sr^-1), any shape."""
    e = np.asarray(energy_gev, dtype=float)
    if np.any(~np.isfinite(e) | (e <= 0)):
        raise InputError(f"energy_gev: expected finite energies > 0 (GeV), got {energy_gev!r}")
    lk, li = np.log(ISO_KNOTS_GEV), np.log(ISO_INTEGRAL)
    slope = np.diff(li) / np.diff(lk)                      # integral indices, negative
    le = np.log(e)
    low = li[0] + slope[0] * (le - lk[0])                  # extrapolated below 0.1 GeV too
    mid = li[1] + slope[1] * (le - lk[1])
    e10 = np.maximum(e, ISO_KNOTS_GEV[2])
    high = li[2] - (ISO_HE_INDEX - 1) * (np.log(e10) - lk[2]) - (e10 - ISO_KNOTS_GEV[2]) / \
        ISO_HE_CUTOFF_GEV
    return np.exp(np.where(e < ISO_KNOTS_GEV[1], low, np.where(e < ISO_KNOTS_GEV[2], mid, high)))


def isotropic_band_intensity(e_lo_gev, e_hi_gev):
    """Isotropic intensity (ph cm^-2 s^-1 sr^-1) between ``e_lo`` and ``e_hi`` (GeV)."""
    return isotropic_integral(e_lo_gev) - isotropic_integral(e_hi_gev)


def cr_band_intensity(e_lo_gev, e_hi_gev, i_above_1tev: float, integral_index: float = 1.6):
    """Residual cosmic-ray equivalent intensity between ``e_lo`` and ``e_hi`` (GeV), for
    ``i_above_1tev`` (ph-equivalent cm^-2 s^-1 sr^-1 above 1 TeV)."""
    lo, hi = (np.asarray(v, dtype=float) / 1000.0 for v in (e_lo_gev, e_hi_gev))
    return i_above_1tev * (lo ** -integral_index - hi ** -integral_index)


# --- spatial templates (value 1 at the peak) -------------------------------------------------

def _wrap180(l_deg):
    return (np.asarray(l_deg, dtype=float) + 180.0) % 360.0 - 180.0


@dataclass(frozen=True)
class Disk:
    r"""Exponential in latitude times a longitude profile:
    :math:`e^{-|b|/h}\,[f + \sum_i a_i e^{-(l - l_i)^2/(2 w_i^2)}]`, normalised to 1 at
    ``(0, 0)`` when ``floor + sum(a_i at l = 0) = 1``.

    Attributes
    ----------
    height_deg : float
        Scale height ``h`` (deg).
    floor : float
        Longitude-independent part ``f``.
    bumps : tuple of (amplitude, l_deg, width_deg)
        Gaussian longitude bumps (``l`` wrapped to [-180, 180)).
    """

    height_deg: float
    floor: float
    bumps: tuple

    def __call__(self, l_deg, b_deg, vec=None):
        lw = _wrap180(l_deg)
        prof = np.full(np.shape(lw), float(self.floor))
        for amp, lc, width in self.bumps:
            dl = _wrap180(lw - lc)
            prof = prof + amp * np.exp(-0.5 * (dl / width) ** 2)
        return prof * np.exp(-np.abs(b_deg) / self.height_deg)


@dataclass(frozen=True)
class Slab:
    r"""A plane-parallel slab seen from inside: :math:`\min(1, \sin b_c / \sin|b|)`."""

    b_cap_deg: float

    def __call__(self, l_deg, b_deg, vec=None):
        s = np.sin(np.radians(np.abs(b_deg)))
        return np.minimum(1.0, math.sin(math.radians(self.b_cap_deg)) / np.maximum(s, 1e-12))


@dataclass(frozen=True)
class Blob:
    """A Gaussian of angular width ``sigma_deg`` around ``(l_deg, b_deg)``."""

    l_deg: float
    b_deg: float
    sigma_deg: float

    def __call__(self, l_deg, b_deg, vec=None):
        if vec is None:
            vec = _unit(l_deg, b_deg)
        c = _unit(self.l_deg, self.b_deg)
        cos_d = c[0] * vec[0] + c[1] * vec[1] + c[2] * vec[2]
        d2 = 2.0 * (1.0 - cos_d)                     # chord^2 ~ angle^2 (rad^2)
        return np.exp(-0.5 * d2 / math.radians(self.sigma_deg) ** 2)


@dataclass(frozen=True)
class Uniform:
    """Constant 1."""

    def __call__(self, l_deg, b_deg, vec=None):
        return np.ones(np.shape(b_deg))


def _unit(l_deg, b_deg):
    lr, br = np.radians(l_deg), np.radians(b_deg)
    cb = np.cos(br)
    return np.stack([cb * np.cos(lr), cb * np.sin(lr), np.sin(br)])


@dataclass(frozen=True)
class DiffuseComponent:
    """A spatial template times a LogParabola spectrum (pivot 1 GeV).

    ``amplitude`` is the intensity at the template's peak in the reference band
    :data:`REF_BAND_GEV`, in units of the isotropic intensity there.
    """

    name: str
    template: object
    amplitude: float
    alpha: float
    beta: float = 0.0


@dataclass(frozen=True)
class InterstellarModel:
    """A Galactic interstellar emission model: a sum of :class:`DiffuseComponent`."""

    name: str
    components: tuple

    def templates(self, l_deg, b_deg, vec=None) -> np.ndarray:
        """``(n_comp, *shape)`` spatial templates at ``(l, b)``; ``vec`` ``(3, *shape)``, the
        Galactic unit vectors of the same points, saves recomputing them."""
        l_deg, b_deg = np.broadcast_arrays(np.asarray(l_deg, float), np.asarray(b_deg, float))
        vec = _unit(l_deg, b_deg) if vec is None else vec
        return np.stack([c.template(l_deg, b_deg, vec) for c in self.components])

    def band_spectra(self, energy_edges_gev) -> np.ndarray:
        """``(n_comp, B)``: intensity (ph cm^-2 s^-1 sr^-1) per unit template in each bin."""
        edges = np.asarray(energy_edges_gev, dtype=float)
        bands = np.concatenate([[REF_BAND_GEV], np.stack([edges[:-1], edges[1:]], 1)])
        a = np.array([c.alpha for c in self.components])[:, None]
        b = np.array([c.beta for c in self.components])[:, None]
        flux = integrate_bands(lambda e: logparabola(e[None, :], a, b, 1.0), bands)
        amp = np.array([c.amplitude for c in self.components])[:, None]
        iso_ref = isotropic_band_intensity(*REF_BAND_GEV)
        return amp * iso_ref * flux[:, 1:] / flux[:, :1]

    def band_intensity(self, l_deg, b_deg, energy_edges_gev) -> np.ndarray:
        """``(B, *shape)`` intensity (ph cm^-2 s^-1 sr^-1) in each energy bin at ``(l, b)``."""
        t = self.templates(l_deg, b_deg)
        return np.tensordot(self.band_spectra(energy_edges_gev), t, axes=(0, 0))


_IEM_A = InterstellarModel("A", (
    DiffuseComponent("disk", Disk(1.2, 0.1, ((0.9, 0.0, 40.0),)), 883.0, 2.5),
    DiffuseComponent("broad", Disk(10.0, 0.4, ((0.6, 0.0, 60.0),)), 14.6, 2.5),
    DiffuseComponent("halo", Uniform(), 2.0, 2.5),
))

_ARMS = ((0.25, 31.0, 4.0), (0.25, -31.0, 4.0), (0.2, 50.0, 5.0), (0.2, -50.0, 5.0))
_IEM_B = InterstellarModel("B", (
    DiffuseComponent("disk", Disk(0.8, 0.06, ((0.94, 0.0, 30.0),) + _ARMS), 1016.0, 2.35, 0.06),
    DiffuseComponent("broad", Disk(6.0, 0.3, ((0.7, 0.0, 45.0),)), 82.0, 2.5, 0.06),
    DiffuseComponent("slab", Slab(12.0), 4.0, 2.5, 0.06),
    DiffuseComponent("cygnus", Blob(80.0, 1.0, 3.0), 60.0, 2.3),
    DiffuseComponent("carina", Blob(287.5, -0.6, 2.0), 40.0, 2.3),
    DiffuseComponent("ophiuchus", Blob(355.0, 16.0, 3.0), 6.0, 2.3),
    DiffuseComponent("orion", Blob(209.0, -19.4, 4.0), 5.0, 2.3),
    DiffuseComponent("taurus", Blob(172.0, -15.0, 4.0), 4.0, 2.3),
    DiffuseComponent("lobe_north", Blob(0.0, 25.0, 10.0), 1.0, 1.9),
    DiffuseComponent("lobe_south", Blob(0.0, -25.0, 10.0), 1.0, 1.9),
))

#: The two interstellar emission models by name.
IEM_MODELS = {"A": _IEM_A, "B": _IEM_B}


def iem_model(name: str) -> InterstellarModel:
    """IEM ``"A"`` or ``"B"``."""
    if name not in IEM_MODELS:
        raise InputError(f"iem: unknown interstellar emission model {name!r}, expected one of "
                         f"{sorted(IEM_MODELS)}")
    return IEM_MODELS[name]
