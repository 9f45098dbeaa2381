r"""Gamma-ray point-source physics, detector-agnostic: spectra, source counts, populations.

Energies in GeV, photon fluxes in ph cm^-2 s^-1, angles in degrees.  The flux of a source is
:math:`S = S(1\text{-}100\,\mathrm{GeV})`, its photon flux between 1 and 100 GeV (the seed's
and 4FGL's ``Flux1000``).  Diffuse emission (isotropic, interstellar) is in
:mod:`astroreco.physics.diffuse`.

**Spectra** (shapes, unnormalised; 4FGL conventions with natural logarithms):

- LogParabola: :math:`dN/dE \propto (E/E_0)^{-\alpha - \beta \ln(E/E_0)}` (:func:`logparabola`);
- power law with a super-exponential cutoff:
  :math:`dN/dE \propto (E/1\,\mathrm{GeV})^{-\Gamma} \exp(-(E/E_c)^b)`, ``b = 2/3``
  (:func:`plsec`).

Band fluxes :math:`\int_{E_1}^{E_2} dN/dE\,dE` come from :func:`integrate_bands`: composite
Gauss-Legendre in :math:`\ln E` (5 nodes per sub-interval of at most 0.5 in :math:`\ln E`, all
bands sharing one node set), vectorised over sources; relative accuracy better than 1e-6
for the shapes above (tested against ``scipy.integrate.quad``).

**Source counts** (:class:`SourceCounts`): a broken power law
:math:`dN/dS \propto (S/S_b)^{-n_1}` above the break, :math:`(S/S_b)^{-n_2}` below, with the
high-latitude 1-10 GeV values of PHYSICS.md, :math:`n_1 = 3.1`, :math:`n_2 = 1.97`,
:math:`S_b = 2.1\times10^{-8}` ph cm^-2 s^-1 in 1-10 GeV.  Fluxes are *sampled directly in*
:math:`S(1\text{-}100\,\mathrm{GeV})` by inverse CDF between ``s_min`` and ``s_max``; the
break is converted once, through the mean AGN spectrum (LogParabola 2.14, 0.09, 1.7 GeV):
:math:`S_b(1\text{-}100) = 1.043 \times S_b(1\text{-}10) = 2.19\times10^{-8}`
(:data:`BREAK_FLUX`).  The slopes are unchanged by a fixed band conversion.

**Populations** (the spectral parameters of each source; positions are drawn by the
simulator, which knows the patch):

- :class:`AgnPopulation`: isotropic; LogParabola with :math:`\alpha \sim N(2.14, 0.38)`,
  :math:`\beta \sim N(0.09, 0.05)` clipped at 0, pivot log-normal around 1.7 GeV; variable:
  log-normal flux per time bin with a per-source :math:`\sigma_v` drawn from an exponential
  of mean 0.3.
- :class:`PulsarPopulation`: the Galactic population, surface density
  :math:`\propto e^{-|b|/h}` per solid angle with ``h = 7.37 deg`` (median :math:`|b|` = 5.0
  deg), uniform in longitude; PLSuperExpCutoff with :math:`\Gamma \sim N(1.0, 0.3)`,
  :math:`E_c` log-normal around 3 GeV, ``b = 2/3``; steady.  Optionally extended.
- :class:`ExtensionClasses`: Gaussian extension classes C0 (point-like, sigma = 0; the
  seed's sigma < 0.1 deg), C1 (sigma uniform in 0.1-0.3 deg), C2 (log-uniform in 0.3-1 deg).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from astroreco.errors import InputError

__all__ = [
    "CLASS_CODES", "FLUX_BAND_GEV", "S_REF", "BREAK_FLUX", "logparabola", "plsec",
    "integrate_bands", "logparabola_band_flux", "plsec_band_flux", "power_law_integral",
    "SourceCounts",
    "AgnPopulation", "PulsarPopulation", "ExtensionClasses", "light_curves",
]

#: Source class -> integer code of the truth tables.
CLASS_CODES = {"agn": 0, "psr": 1}
#: The band of the source flux S (GeV).
FLUX_BAND_GEV = (1.0, 100.0)
#: Reference flux of the population densities: number per deg^2 with S > S_REF.
S_REF = 1e-10
#: PHYSICS.md dN/dS break, 1-10 GeV (ph cm^-2 s^-1).
BREAK_FLUX_1_10 = 2.1e-8


def _finite_positive(value, name):
    v = np.asarray(value, dtype=float)
    if np.any(~np.isfinite(v) | (v <= 0)):
        raise InputError(f"{name}: expected finite values > 0, got {value!r}")
    return v


# --- spectra ---------------------------------------------------------------------------------

def logparabola(energy_gev, alpha, beta, pivot_gev):
    r"""LogParabola shape :math:`(E/E_0)^{-\alpha - \beta\ln(E/E_0)}` (1 at the pivot)."""
    x = np.log(np.asarray(energy_gev, dtype=float) / pivot_gev)
    return np.exp(-(alpha + beta * x) * x)


def plsec(energy_gev, index, ecut_gev, b=2.0 / 3.0):
    r"""Super-exponential cutoff shape :math:`E^{-\Gamma}\exp(-(E/E_c)^b)` (E in GeV)."""
    e = np.asarray(energy_gev, dtype=float)
    return np.exp(-index * np.log(e) - (e / ecut_gev) ** b)


@lru_cache(maxsize=64)
def _band_nodes(bands: tuple, max_step: float, order: int):
    """Shared nodes ``(N,)`` (GeV) and weights ``(B, N)`` of the bands' integrals."""
    x, w = np.polynomial.legendre.leggauss(order)
    nodes, rows = [], []
    for e1, e2 in bands:
        a, b = math.log(e1), math.log(e2)
        n_sub = max(1, math.ceil((b - a) / max_step - 1e-9))
        edges = np.linspace(a, b, n_sub + 1)
        half = 0.5 * np.diff(edges)
        t = (0.5 * (edges[:-1] + edges[1:]))[:, None] + half[:, None] * x[None, :]
        nodes.append(t.ravel())
        rows.append((half[:, None] * w[None, :]).ravel() * np.exp(t.ravel()))  # dE = E dt
    all_t = np.concatenate(nodes)
    weights = np.zeros((len(bands), len(all_t)))
    start = 0
    for i, row in enumerate(rows):
        weights[i, start:start + len(row)] = row
        start += len(row)
    return np.exp(all_t), weights


def _as_bands(bands_gev) -> tuple:
    b = np.asarray(bands_gev, dtype=float)
    if b.ndim == 1:
        if len(b) < 2:
            raise InputError("bands_gev: expected at least 2 energy edges")
        b = np.stack([b[:-1], b[1:]], axis=1)
    if b.ndim != 2 or b.shape[1] != 2:
        raise InputError(f"bands_gev: expected edges (B+1,) or bands (B, 2), got shape "
                         f"{b.shape}")
    if np.any(~np.isfinite(b)) or np.any(b[:, 0] <= 0) or np.any(b[:, 1] <= b[:, 0]):
        raise InputError(f"bands_gev: expected 0 < E1 < E2 (GeV) in every band, got "
                         f"{b.tolist()}")
    return tuple(map(tuple, b.tolist()))


def integrate_bands(dnde, bands_gev, max_step: float = 0.5, order: int = 5) -> np.ndarray:
    r"""Integrals :math:`\int_{E_1}^{E_2} dN/dE\,dE` over several bands.

    Parameters
    ----------
    dnde : callable
        ``energy_gev (N,) -> (..., N)``: the spectra of any number of sources at the nodes.
    bands_gev : array_like
        Energy edges ``(B+1,)`` (consecutive bins) or bands ``(B, 2)``, GeV.
    max_step, order : float, int
        Sub-interval width in ``ln E`` and Gauss-Legendre order.

    Returns
    -------
    np.ndarray
        ``(..., B)`` band integrals (the units of ``dnde`` times GeV).
    """
    energy, weights = _band_nodes(_as_bands(bands_gev), float(max_step), int(order))
    return np.asarray(dnde(energy)) @ weights.T


def logparabola_band_flux(alpha, beta, pivot_gev, bands_gev) -> np.ndarray:
    """Band integrals ``(n, B)`` of LogParabola shapes with parameters ``(n,)``."""
    a, b, p = (np.atleast_1d(np.asarray(v, dtype=float))[:, None]
               for v in (alpha, beta, pivot_gev))
    return integrate_bands(lambda e: logparabola(e[None, :], a, b, p), bands_gev)


def plsec_band_flux(index, ecut_gev, b, bands_gev) -> np.ndarray:
    """Band integrals ``(n, B)`` of PLSuperExpCutoff shapes with parameters ``(n,)``."""
    g, c, bb = (np.atleast_1d(np.asarray(v, dtype=float))[:, None] for v in (index, ecut_gev, b))
    return integrate_bands(lambda e: plsec(e[None, :], g, c, bb), bands_gev)


#: dN/dS break in S(1-100 GeV): the 1-10 GeV break through the mean AGN spectrum.
BREAK_FLUX = float(BREAK_FLUX_1_10 * np.divide(*logparabola_band_flux(
    2.14, 0.09, 1.7, [FLUX_BAND_GEV, (1.0, 10.0)])[0]))


# --- source counts ---------------------------------------------------------------------------

def power_law_integral(lo, hi, n):
    """Integral of s^-n between lo and hi (numpy arrays; n = 1 is the logarithm)."""
    if abs(n - 1.0) < 1e-12:
        return np.log(hi / lo)
    return (hi ** (1 - n) - lo ** (1 - n)) / (1 - n)


def _pl_inverse(u, lo, hi, n):
    """Inverse CDF of s^-n on [lo, hi] at u in [0, 1)."""
    if abs(n - 1.0) < 1e-12:
        return lo * (hi / lo) ** u
    a, b = lo ** (1 - n), hi ** (1 - n)
    return (a + u * (b - a)) ** (1 / (1 - n))


@dataclass(frozen=True)
class SourceCounts:
    r"""Broken power-law :math:`dN/dS` in :math:`S(1\text{-}100\,\mathrm{GeV})`.

    Attributes
    ----------
    s_min, s_max : float
        Flux range of the simulated sources (ph cm^-2 s^-1).
    s_break : float
        Break flux (default :data:`BREAK_FLUX`, 2.19e-8).
    slope_above, slope_below : float
        :math:`n_1` (above the break, 3.1) and :math:`n_2` (below, 1.97).
    """

    s_min: float = 1e-11
    s_max: float = 1e-7
    s_break: float = BREAK_FLUX
    slope_above: float = 3.1
    slope_below: float = 1.97

    def __post_init__(self):
        for name in ("s_min", "s_max", "s_break"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise InputError(f"{name}: expected a flux > 0 (ph cm^-2 s^-1), got {v!r}")
        if not self.s_min < self.s_max:
            raise InputError(f"s_min, s_max: expected s_min < s_max, got {self.s_min!r}, "
                             f"{self.s_max!r}")
        for name in ("slope_above", "slope_below"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v)):
                raise InputError(f"{name}: expected a finite slope, got {v!r}")
        if not self.slope_above > 1:
            raise InputError(f"slope_above: expected > 1 (a finite number of bright sources), "
                             f"got {self.slope_above!r}")

    def _segments(self, lo, hi):
        """[(lo, hi, slope, weight)] of the two pieces within [lo, hi]; dN/dS continuous."""
        sb, out = self.s_break, []
        for a, b, n in ((lo, min(hi, sb), self.slope_below), (max(lo, sb), hi, self.slope_above)):
            if b > a:
                out.append((a, b, n, sb ** n * power_law_integral(a, b, n)))
        return out

    def integral(self, lo: float, hi: float) -> float:
        """:math:`\\int_{lo}^{hi} dN/dS\\,dS` with :math:`dN/dS = (S/S_b)^{-n}` (``hi`` may
        be ``inf``)."""
        return float(sum(w for *_, w in self._segments(lo, hi)))

    def expected_number(self, density_ref: float, s_ref: float = S_REF) -> float:
        """Number with ``s_min < S < s_max`` when ``density_ref`` sources have ``S > s_ref``
        (any flux above)."""
        return density_ref * self.integral(self.s_min, self.s_max) / self.integral(
            s_ref, math.inf)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` fluxes drawn by inverse CDF between ``s_min`` and ``s_max``."""
        segs = self._segments(self.s_min, self.s_max)
        u = rng.random(n)
        pick = rng.random(n)
        w = np.array([s[3] for s in segs])
        which = np.searchsorted(np.cumsum(w) / w.sum(), pick, side="right")
        which = np.minimum(which, len(segs) - 1)
        out = np.empty(n)
        for k, (a, b, slope, _) in enumerate(segs):
            sel = which == k
            out[sel] = _pl_inverse(u[sel], a, b, slope)
        return out


# --- populations -----------------------------------------------------------------------------

def _check_fields(obj, positive=(), nonneg=()):
    for name in positive:
        v = getattr(obj, name)
        if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
            raise InputError(f"{name}: expected a finite value > 0, got {v!r}")
    for name in nonneg:
        v = getattr(obj, name)
        if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
            raise InputError(f"{name}: expected a finite value >= 0, got {v!r}")


@dataclass(frozen=True)
class AgnPopulation:
    """Isotropic AGN (blazars) with LogParabola spectra.

    Attributes
    ----------
    density_deg2 : float
        Sources per deg^2 with ``S > S_REF`` (1e-10): 0.1, i.e. ~4100 over the sky, the order
        of the extragalactic sources of 4FGL.
    alpha_mean, alpha_sd, beta_mean, beta_sd : float
        Normal distributions of alpha (clipped to [1.2, 3.5]) and beta (clipped to [0, 0.5]).
    pivot_gev, pivot_ln_sd : float
        Log-normal pivot energy (clipped to [0.3, 10] GeV).
    variability_mean : float
        Mean of the exponential distribution of the log-normal flux scatter per time bin.
    """

    density_deg2: float = 0.1
    alpha_mean: float = 2.14
    alpha_sd: float = 0.38
    beta_mean: float = 0.09
    beta_sd: float = 0.05
    pivot_gev: float = 1.7
    pivot_ln_sd: float = 0.3
    variability_mean: float = 0.3

    def __post_init__(self):
        _check_fields(self, positive=("alpha_mean", "pivot_gev"),
                      nonneg=("density_deg2", "alpha_sd", "beta_sd", "pivot_ln_sd",
                              "variability_mean"))
        if not (isinstance(self.beta_mean, (int, float)) and np.isfinite(self.beta_mean)):
            raise InputError(f"beta_mean: expected a finite value, got {self.beta_mean!r}")

    def draw_spectra(self, rng: np.random.Generator, n: int) -> dict:
        """``alpha``, ``beta``, ``pivot_gev`` arrays ``(n,)``."""
        alpha = np.clip(rng.normal(self.alpha_mean, self.alpha_sd, n), 1.2, 3.5)
        beta = np.clip(rng.normal(self.beta_mean, self.beta_sd, n), 0.0, 0.5)
        pivot = np.clip(self.pivot_gev * np.exp(self.pivot_ln_sd * rng.standard_normal(n)),
                        0.3, 10.0)
        return {"alpha": alpha, "beta": beta, "pivot_gev": pivot}

    def draw_variability(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Per-source log-normal scatter ``sigma_v`` ``(n,)``."""
        return rng.exponential(self.variability_mean, n) if self.variability_mean > 0 else \
            np.zeros(n)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PulsarPopulation:
    r"""The Galactic population (pulsars), concentrated at low latitude.

    Surface density :math:`\rho(b) = \rho_0 e^{-|b|/h}` per solid angle, uniform in
    longitude.  With ``h = 7.37 deg`` the median :math:`|b|` is 5.0 deg (PHYSICS.md).

    Attributes
    ----------
    plane_density_deg2 : float
        :math:`\rho_0`: sources per deg^2 at b = 0 with ``S > S_REF``: 0.2, i.e. ~1000 over the
        sky (:meth:`all_sky_number`), a quarter of the AGN.
    b_scale_deg : float
        :math:`h` (deg).
    index_mean, index_sd : float
        Normal distribution of the photon index Gamma (clipped to [0, 3]).
    ecut_gev, ecut_ln_sd : float
        Log-normal cutoff energy.
    cutoff_b : float
        Super-exponential index ``b`` (2/3).
    """

    plane_density_deg2: float = 0.2
    b_scale_deg: float = 7.37
    index_mean: float = 1.0
    index_sd: float = 0.3
    ecut_gev: float = 3.0
    ecut_ln_sd: float = 0.5
    cutoff_b: float = 2.0 / 3.0

    def __post_init__(self):
        _check_fields(self, positive=("b_scale_deg", "ecut_gev", "cutoff_b"),
                      nonneg=("plane_density_deg2", "index_sd", "ecut_ln_sd"))
        if not (isinstance(self.index_mean, (int, float)) and np.isfinite(self.index_mean)):
            raise InputError(f"index_mean: expected a finite value, got {self.index_mean!r}")

    def relative_density(self, b_deg):
        """:math:`e^{-|b|/h}` (1 in the plane)."""
        return np.exp(-np.abs(np.asarray(b_deg, dtype=float)) / self.b_scale_deg)

    def all_sky_number(self) -> float:
        r"""Sources over the sky with ``S > S_REF``:
        :math:`4\pi\rho_0 (a + e^{-a\pi/2})/(1 + a^2)`, :math:`a = 1/h` (rad)."""
        a = 1.0 / math.radians(self.b_scale_deg)
        rho_sr = self.plane_density_deg2 * (180 / math.pi) ** 2
        return 4 * math.pi * rho_sr * (a + math.exp(-a * math.pi / 2)) / (1 + a * a)

    def median_abs_b(self) -> float:
        """Median |b| (deg) of the population: root of the latitude CDF."""
        a = 1.0 / math.radians(self.b_scale_deg)
        cdf = lambda x: (a - math.exp(-a * x) * (a * math.cos(x) - math.sin(x))) / (  # noqa: E731
            a + math.exp(-a * math.pi / 2))
        lo, hi = 0.0, math.pi / 2
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if cdf(mid) < 0.5 else (lo, mid)
        return math.degrees(0.5 * (lo + hi))

    def draw_spectra(self, rng: np.random.Generator, n: int) -> dict:
        """``gamma_index``, ``ecut_gev``, ``cutoff_b`` arrays ``(n,)``."""
        index = np.clip(rng.normal(self.index_mean, self.index_sd, n), 0.0, 3.0)
        ecut = self.ecut_gev * np.exp(self.ecut_ln_sd * rng.standard_normal(n))
        return {"gamma_index": index, "ecut_gev": ecut, "cutoff_b": np.full(n, self.cutoff_b)}

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ExtensionClasses:
    """Gaussian extension classes of the Galactic sources.

    Attributes
    ----------
    fractions : tuple of 3 floats
        Probabilities of C0 (point-like, sigma = 0), C1 and C2; normalised to sum to 1.
    c1_range_deg : tuple
        C1 sigma, uniform (default 0.1-0.3 deg).
    c2_range_deg : tuple
        C2 sigma, log-uniform (default 0.3-1 deg).
    """

    fractions: tuple = (0.95, 0.04, 0.01)
    c1_range_deg: tuple = (0.1, 0.3)
    c2_range_deg: tuple = (0.3, 1.0)

    def __post_init__(self):
        f = np.asarray(self.fractions, dtype=float)
        if f.shape != (3,) or np.any(~np.isfinite(f) | (f < 0)) or f.sum() <= 0:
            raise InputError(f"fractions: expected 3 values >= 0 (C0, C1, C2) with a positive "
                             f"sum, got {self.fractions!r}")
        object.__setattr__(self, "fractions", tuple((f / f.sum()).tolist()))
        for name in ("c1_range_deg", "c2_range_deg"):
            r = tuple(getattr(self, name))
            if len(r) != 2 or not (0 < r[0] <= r[1] and np.isfinite(r[1])):
                raise InputError(f"{name}: expected (low, high) with 0 < low <= high (deg), "
                                 f"got {getattr(self, name)!r}")
            object.__setattr__(self, name, tuple(float(v) for v in r))

    @property
    def max_sigma_deg(self) -> float:
        return self.c2_range_deg[1] if self.fractions[2] > 0 else (
            self.c1_range_deg[1] if self.fractions[1] > 0 else 0.0)

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Classes ``(n,)`` int8 in {0, 1, 2} and sigmas ``(n,)`` (deg, 0 for C0)."""
        cls = np.searchsorted(np.cumsum(self.fractions), rng.random(n), side="right")
        cls = np.minimum(cls, 2).astype(np.int8)
        u = rng.random(n)
        lo1, hi1 = self.c1_range_deg
        lo2, hi2 = self.c2_range_deg
        sigma = np.where(cls == 1, lo1 + (hi1 - lo1) * u,
                         np.where(cls == 2, lo2 * (hi2 / lo2) ** u, 0.0))
        return cls, sigma

    def to_dict(self) -> dict:
        return asdict(self)


def light_curves(rng: np.random.Generator, sigma_v, n_bins: int) -> np.ndarray:
    r"""Relative fluxes ``(n, n_bins)`` per time bin, log-normal with scatter ``sigma_v``.

    :math:`f_t \propto \exp(\sigma_v z_t)`, :math:`z_t \sim N(0, 1)`, rescaled so that each
    source's mean over the bins is exactly 1 (its flux ``S`` is the time average).
    """
    sigma_v = np.asarray(sigma_v, dtype=float)
    f = np.exp(sigma_v[:, None] * rng.standard_normal((len(sigma_v), n_bins)))
    return f / f.mean(axis=1, keepdims=True)
