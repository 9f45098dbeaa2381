r"""Energy-dependent point-spread functions (PSF) of gamma-ray telescopes, detector-agnostic.

Angles in degrees, energies in GeV.  The PSF is a density on the sky, per deg^2, in the
flat-sky approximation (radii of a few degrees at most, where it is accurate to ~0.1%).

**King profile** (the Fermi-LAT form, e.g. Ackermann et al. 2013, ApJS 203, 4, eq. 5):

.. math:: K(r) = \frac{1}{2\pi\sigma^2}\left(1 - \frac{1}{\gamma}\right)
          \left(1 + \frac{r^2}{2\gamma\sigma^2}\right)^{-\gamma},
          \qquad C(r) = \int_0^r 2\pi r' K(r')\,dr'
          = 1 - \left(1 + \frac{r^2}{2\gamma\sigma^2}\right)^{1-\gamma}

so the radius holding a fraction ``q`` is
:math:`r_q = \sigma\sqrt{2\gamma\left[(1 - q)^{1/(1-\gamma)} - 1\right]}`.  The ratio
:math:`r_{95}/r_{68}` depends on :math:`\gamma` only: 1.62 for a Gaussian
(:math:`\gamma\to\infty`), 2.13 for :math:`\gamma = 3`, 3.62 for :math:`\gamma = 1.8` and 4.17
for :math:`\gamma = 1.7`.  The LAT PSF has heavy tails (PHYSICS.md: :math:`r_{95}/r_{68}
\sim 4`): :data:`FERMI_KING_GAMMA` = 1.8 is used, so :math:`r_{95}/r_{68} = 3.62`.  A
Cherenkov-telescope PSF is closer to a Gaussian: :data:`CTA_KING_GAMMA` = 3
(:math:`r_{95}/r_{68} = 2.13`).

**68% containment radius versus energy**:

- Fermi-LAT, P8 SOURCE, front+back (PHYSICS.md):
  :math:`\theta_{68}(E) = \sqrt{(4.8^\circ (E/100\,\mathrm{MeV})^{-0.8})^2 + (0.10^\circ)^2}`,
  i.e. 2.0 deg at 0.3 GeV, 0.77 deg at 1 GeV, 0.16 deg at 10 GeV (:func:`fermi_theta68`).
- CTA-like (South array): :math:`\theta_{68}(E) = \sqrt{(0.092^\circ (E/100\,\mathrm{GeV})^
  {-0.243})^2 + (0.04^\circ)^2}`: 0.13 deg at 30 GeV, 0.10 deg at 100 GeV, 0.05 deg at 10 TeV,
  0.044 deg at 100 TeV (:func:`cta_theta68`).  The numbers follow, approximately, the public
  CTA performance curves (angular resolution of the southern array, ~0.1 deg at 100 GeV
  improving to ~0.05 deg at 10 TeV); they are not taken from a specific IRF file.

**Energy bins.**  Over a bin :math:`[E_1, E_2]` the PSF is the average of the King profiles at
the nodes of a Gauss-Legendre rule in :math:`\ln E`, weighted by a power-law photon spectrum
:math:`E^{-\Gamma}` (:meth:`PsfModel.for_band`): a :class:`KingMixture` with one component per
node.  Its containment is the weighted sum of the component containments.

**Pixel kernels.**  :func:`pixel_kernel` integrates a PSF over the pixels of a square grid
around a source at a sub-pixel offset (midpoint rule on a supersampled grid), drops what lies
beyond a truncation radius ``R`` and rescales the kernel to sum to the analytic containment
:math:`C(R)`.  :func:`pixel_kernel_bank` gives the raw pixel integrals for a whole set of
sub-pixel offsets at once (summed-area table over one fine grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import brentq

from astroreco.errors import InputError

#: King tail index of the Fermi-LAT-like PSF: r95/r68 = 3.62 (heavy tails).
FERMI_KING_GAMMA = 1.8
#: King tail index of the CTA-like PSF: r95/r68 = 2.13 (closer to a Gaussian, 1.62).
CTA_KING_GAMMA = 3.0

__all__ = [
    "FERMI_KING_GAMMA", "CTA_KING_GAMMA", "king_pdf", "king_containment", "king_radius",
    "king_sigma_for_r68", "king_r95_over_r68", "fermi_theta68", "cta_theta68", "KingMixture",
    "PsfModel", "PSF_MODELS", "psf_model", "pixel_kernel", "pixel_kernel_bank",
]


def _check_gamma(gamma):
    if not (np.isfinite(gamma) and gamma > 1):
        raise InputError(f"gamma: expected a King tail index > 1, got {gamma!r}")


def king_pdf(r_deg, sigma_deg, gamma):
    r"""King density per deg^2 at radius ``r_deg`` (broadcasting).

    .. math:: K(r) = \frac{1 - 1/\gamma}{2\pi\sigma^2}
              \left(1 + \frac{r^2}{2\gamma\sigma^2}\right)^{-\gamma}
    """
    _check_gamma(gamma)
    r = np.asarray(r_deg, dtype=float)
    s2 = np.asarray(sigma_deg, dtype=float) ** 2
    return (1.0 - 1.0 / gamma) / (2 * np.pi * s2) * (1.0 + r * r / (2 * gamma * s2)) ** -gamma


def king_containment(r_deg, sigma_deg, gamma):
    r"""Fraction of a King PSF within radius ``r_deg``:
    :math:`C(r) = 1 - (1 + r^2 / (2\gamma\sigma^2))^{1-\gamma}`."""
    _check_gamma(gamma)
    r = np.asarray(r_deg, dtype=float)
    s2 = np.asarray(sigma_deg, dtype=float) ** 2
    return 1.0 - (1.0 + r * r / (2 * gamma * s2)) ** (1.0 - gamma)


def king_radius(fraction, sigma_deg, gamma):
    r"""Radius (deg) holding ``fraction`` of a King PSF:
    :math:`r_q = \sigma\sqrt{2\gamma[(1-q)^{1/(1-\gamma)} - 1]}`.

    Examples
    --------
    >>> round(float(king_radius(0.68, king_sigma_for_r68(1.0, 1.8), 1.8)), 6)
    1.0
    """
    _check_gamma(gamma)
    q = np.asarray(fraction, dtype=float)
    if np.any((q < 0) | (q >= 1)):
        raise InputError(f"fraction: expected values in [0, 1), got {fraction!r}")
    u = (1.0 - q) ** (1.0 / (1.0 - gamma)) - 1.0
    return np.asarray(sigma_deg, dtype=float) * np.sqrt(2 * gamma * u)


def king_sigma_for_r68(r68_deg, gamma):
    """King ``sigma`` (deg) whose 68% containment radius is ``r68_deg``."""
    return np.asarray(r68_deg, dtype=float) / king_radius(0.68, 1.0, gamma)


def king_r95_over_r68(gamma: float) -> float:
    """``r95 / r68`` of a King profile (independent of sigma): 3.62 for gamma = 1.8."""
    return float(king_radius(0.95, 1.0, gamma) / king_radius(0.68, 1.0, gamma))


def _check_energy(energy_gev):
    e = np.asarray(energy_gev, dtype=float)
    if np.any(~np.isfinite(e) | (e <= 0)):
        raise InputError(f"energy_gev: expected finite energies > 0 (GeV), got {energy_gev!r}")
    return e


def fermi_theta68(energy_gev):
    r"""Fermi-LAT P8-like 68% containment radius (deg), front+back:
    :math:`\sqrt{(4.8^\circ (E/0.1\,\mathrm{GeV})^{-0.8})^2 + (0.1^\circ)^2}`.

    Examples
    --------
    >>> [round(float(fermi_theta68(e)), 2) for e in (0.3, 1.0, 10.0)]
    [2.0, 0.77, 0.16]
    """
    e = _check_energy(energy_gev)
    return np.hypot(4.8 * (e / 0.1) ** -0.8, 0.10)


def cta_theta68(energy_gev):
    r"""CTA-like (southern array) 68% containment radius (deg):
    :math:`\sqrt{(0.092^\circ (E/100\,\mathrm{GeV})^{-0.243})^2 + (0.04^\circ)^2}`.

    Examples
    --------
    >>> [round(float(cta_theta68(e)), 3) for e in (100.0, 10_000.0)]
    [0.1, 0.05]
    """
    e = _check_energy(energy_gev)
    return np.hypot(0.092 * (e / 100.0) ** -0.243, 0.04)


@dataclass(frozen=True)
class KingMixture:
    """A weighted sum of King profiles sharing one tail index (an energy-bin PSF).

    Attributes
    ----------
    sigma_deg : tuple of float
        Component widths (deg).
    weight : tuple of float
        Component weights (normalised to sum to 1 on construction).
    gamma : float
        King tail index of every component.
    """

    sigma_deg: tuple
    weight: tuple
    gamma: float

    def __post_init__(self):
        _check_gamma(self.gamma)
        s = np.atleast_1d(np.asarray(self.sigma_deg, dtype=float))
        w = np.atleast_1d(np.asarray(self.weight, dtype=float))
        if s.shape != w.shape or s.ndim != 1 or len(s) == 0:
            raise InputError("sigma_deg, weight: expected two 1-D sequences of equal length")
        if np.any(~np.isfinite(s) | (s <= 0)):
            raise InputError(f"sigma_deg: expected widths > 0 (deg), got {self.sigma_deg!r}")
        if np.any(~np.isfinite(w) | (w < 0)) or w.sum() <= 0:
            raise InputError(f"weight: expected weights >= 0 with a positive sum, got "
                             f"{self.weight!r}")
        object.__setattr__(self, "sigma_deg", tuple(s.tolist()))
        object.__setattr__(self, "weight", tuple((w / w.sum()).tolist()))

    @classmethod
    def single(cls, sigma_deg: float, gamma: float) -> "KingMixture":
        """One King profile."""
        return cls((sigma_deg,), (1.0,), gamma)

    @classmethod
    def from_r68(cls, r68_deg: float, gamma: float) -> "KingMixture":
        """One King profile with the given 68% containment radius."""
        return cls.single(float(king_sigma_for_r68(r68_deg, gamma)), gamma)

    def _sw(self, r):
        r = np.asarray(r, dtype=float)
        s = np.asarray(self.sigma_deg).reshape((-1,) + (1,) * r.ndim)
        w = np.asarray(self.weight).reshape(s.shape)
        return r, s, w

    def pdf(self, r_deg):
        """Density per deg^2 at radius ``r_deg`` (any shape)."""
        r, s, w = self._sw(r_deg)
        return (w * king_pdf(r, s, self.gamma)).sum(axis=0)

    def containment(self, r_deg):
        """Fraction within radius ``r_deg`` (any shape)."""
        r, s, w = self._sw(r_deg)
        return (w * king_containment(r, s, self.gamma)).sum(axis=0)

    def radius(self, fraction: float) -> float:
        """Radius (deg) holding ``fraction`` (root of the containment)."""
        if not 0 < fraction < 1:
            raise InputError(f"fraction: expected a value in (0, 1), got {fraction!r}")
        hi = float(np.max(king_radius(fraction, np.asarray(self.sigma_deg), self.gamma)))
        lo = float(np.min(king_radius(fraction, np.asarray(self.sigma_deg), self.gamma)))
        if hi - lo <= 1e-12 * hi:
            return hi
        return brentq(lambda r: float(self.containment(r)) - fraction, lo, hi, xtol=1e-10 * hi)

    @property
    def r68_deg(self) -> float:
        return self.radius(0.68)


@dataclass(frozen=True)
class PsfModel:
    """An energy-dependent King PSF: ``theta68(E)`` and a fixed tail index.

    Attributes
    ----------
    name : str
        ``"fermi"`` or ``"cta"`` for the built-in models (:data:`PSF_MODELS`).
    gamma : float
        King tail index.
    theta68_fn : callable
        ``energy_gev -> theta68_deg``, vectorised.
    """

    name: str
    gamma: float
    theta68_fn: Callable

    def theta68(self, energy_gev):
        """68% containment radius (deg) at ``energy_gev``."""
        return self.theta68_fn(energy_gev)

    def at(self, energy_gev: float) -> KingMixture:
        """The PSF at one energy."""
        return KingMixture.from_r68(float(self.theta68(energy_gev)), self.gamma)

    def for_band(self, e_lo_gev: float, e_hi_gev: float, index: float = 2.2,
                 n_nodes: int = 8) -> KingMixture:
        r"""PSF of the energy bin ``[e_lo, e_hi]`` for a photon spectrum :math:`E^{-\Gamma}`.

        The King profiles at ``n_nodes`` Gauss-Legendre nodes in :math:`\ln E`, weighted by
        :math:`E^{1-\Gamma} w_i` (the spectrum times the Jacobian :math:`dE = E\,d\ln E`).
        """
        if not (0 < e_lo_gev < e_hi_gev and np.isfinite(e_hi_gev)):
            raise InputError(f"energy band: expected 0 < e_lo < e_hi (GeV), got "
                             f"({e_lo_gev!r}, {e_hi_gev!r})")
        x, w = np.polynomial.legendre.leggauss(n_nodes)
        a, b = math.log(e_lo_gev), math.log(e_hi_gev)
        ln_e = 0.5 * (a + b) + 0.5 * (b - a) * x
        energy = np.exp(ln_e)
        weight = w * np.exp((1.0 - index) * (ln_e - ln_e.mean()))
        sigma = king_sigma_for_r68(self.theta68(energy), self.gamma)
        return KingMixture(tuple(sigma), tuple(weight), self.gamma)


#: Built-in PSF models by name.
PSF_MODELS = {
    "fermi": PsfModel("fermi", FERMI_KING_GAMMA, fermi_theta68),
    "cta": PsfModel("cta", CTA_KING_GAMMA, cta_theta68),
}


def psf_model(name: str) -> PsfModel:
    """The built-in PSF model ``name`` (``"fermi"`` or ``"cta"``)."""
    if name not in PSF_MODELS:
        raise InputError(f"psf: unknown PSF model {name!r}, expected one of "
                         f"{sorted(PSF_MODELS)}")
    return PSF_MODELS[name]


def _check_kernel_args(pixel_deg, half_size, supersample):
    if not (np.isfinite(pixel_deg) and pixel_deg > 0):
        raise InputError(f"pixel_deg: expected a pixel size > 0 (deg), got {pixel_deg!r}")
    if int(half_size) != half_size or half_size < 0:
        raise InputError(f"half_size: expected an integer >= 0, got {half_size!r}")
    if int(supersample) != supersample or supersample < 1:
        raise InputError(f"supersample: expected an integer >= 1, got {supersample!r}")


def pixel_kernel(psf: KingMixture, pixel_deg: float, half_size: int,
                 offset: tuple[float, float] = (0.0, 0.0), supersample: int = 8,
                 radius_deg: float | None = None) -> np.ndarray:
    r"""PSF integrated over the pixels of a square ``(2h+1, 2h+1)`` grid.

    The source sits at ``offset = (dx, dy)`` pixels from the centre of the middle pixel
    (index ``[h, h]``; rows are ``y``, columns ``x``).  Each pixel is integrated with the
    midpoint rule on ``supersample x supersample`` sub-pixels; sub-pixels farther than
    ``radius_deg`` (default: ``(h + 1/2)`` pixels, the inscribed circle) from the source are
    dropped, and the kernel is rescaled to sum to the analytic containment
    :math:`C(R)` of ``psf`` within that radius.

    Returns
    -------
    np.ndarray
        ``(2h+1, 2h+1)`` fractions of the source's photons per pixel.
    """
    _check_kernel_args(pixel_deg, half_size, supersample)
    h, s = int(half_size), int(supersample)
    radius = (h + 0.5) * pixel_deg if radius_deg is None else float(radius_deg)
    if not radius > 0:
        raise InputError(f"radius_deg: expected a radius > 0 (deg), got {radius_deg!r}")
    sub = (np.arange(s) + 0.5) / s - 0.5
    u = (np.arange(-h, h + 1)[:, None] + sub[None, :]).ravel()          # ((2h+1) s,)
    dx = (u - offset[0]) * pixel_deg
    dy = (u - offset[1]) * pixel_deg
    r2 = dy[:, None] ** 2 + dx[None, :] ** 2
    vals = np.where(r2 <= radius * radius, psf.pdf(np.sqrt(r2)), 0.0)
    n = 2 * h + 1
    kernel = vals.reshape(n, s, n, s).sum(axis=(1, 3))                  # (2h+1, 2h+1)
    total = kernel.sum()
    if total <= 0:
        raise InputError("pixel_kernel: the truncation radius holds no sub-pixel")
    return kernel * (float(psf.containment(radius)) / total)


def pixel_kernel_bank(psf: KingMixture, pixel_deg: float, half_size: int,
                      n_phase: int = 16, supersample: int = 2) -> np.ndarray:
    r"""Raw pixel integrals of the PSF for ``n_phase x n_phase`` sub-pixel source offsets.

    Offsets are the centres of ``n_phase`` equal slices of a pixel,
    :math:`\delta_a = (a + 1/2)/P - 1/2`, ``a = 0 .. P-1``, on each axis.  One fine grid of
    step ``1 / (P * supersample)`` pixel is evaluated once; each pixel integral is a block sum
    of it, read from a summed-area table.  No truncation, no rescaling.

    Returns
    -------
    np.ndarray
        ``(P, P, 2h+1, 2h+1)``: ``[a_y, a_x]`` is the kernel of a source at offset
        ``(delta[a_x], delta[a_y])`` from the centre of the middle pixel.
    """
    _check_kernel_args(pixel_deg, half_size, supersample)
    if int(n_phase) != n_phase or n_phase < 1:
        raise InputError(f"n_phase: expected an integer >= 1, got {n_phase!r}")
    h, p, m = int(half_size), int(n_phase), 2 * ((int(supersample) + 1) // 2)  # m even
    step = 1.0 / (p * m)                                       # fine cell (pixels)
    k_max = (h + 1) * p * m
    centres = (np.arange(-k_max, k_max) + 0.5) * step * pixel_deg  # fine cell midpoints (deg)
    r = np.sqrt(centres[:, None] ** 2 + centres[None, :] ** 2)
    fine = psf.pdf(r) * (step * pixel_deg) ** 2
    table = np.zeros((2 * k_max + 1, 2 * k_max + 1))
    table[1:, 1:] = fine.cumsum(0).cumsum(1)
    # relative to the source, pixel j of phase a starts at j - 1/2 - delta_a = j - (a + 1/2)/P
    # pixels, i.e. at fine cell j P m - a m - m/2 (m even: on a fine-cell edge)
    j = np.arange(-h, h + 1)
    a = np.arange(p)
    start = (j[None, :] * p * m - a[:, None] * m - m // 2) + k_max              # (P, K)
    stop = start + p * m
    y0, y1 = start[:, :, None, None], stop[:, :, None, None]
    x0, x1 = start[None, None], stop[None, None]
    block = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]        # (P,K,P,K)
    return block.transpose(0, 2, 1, 3)
