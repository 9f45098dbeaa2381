r"""Parameterised electromagnetic showers (GFlash), independent of any detector.

Units: depths ``t`` in radiation lengths X0, radii ``r`` in Moliere radii R_M, energies in
GeV (the critical energy in MeV).  The parameterisation is the one of G. Grindhammer and
S. Peters, *The parameterized simulation of electromagnetic showers in homogeneous and
sampling calorimeters*, hep-ex/0001020 (1993/2000), "GFlash" below.

The energy of a shower of energy ``E`` factorises into a longitudinal and a radial density,
:math:`dE(t, r) = E\,f(t)\,dt\,f(r)\,dr` (uniform in azimuth):

- **Longitudinal** (GFlash section 2): a Gamma density
  :math:`f(t) = \beta (\beta t)^{\alpha - 1} e^{-\beta t} / \Gamma(\alpha)` with depth of
  maximum :math:`T = (\alpha - 1)/\beta`, measured from the shower start.  Each shower has its
  own ``(T, alpha)``: ``(ln T, ln alpha)`` is a correlated Gaussian pair whose means, widths
  and correlation depend on ``y = E / E_c`` and on the effective ``Z``
  (:func:`longitudinal_parameters`).  The energy between two depths is a difference of
  regularised incomplete gamma functions, :func:`gamma_p` / :func:`layer_fraction`.
- **Radial** (GFlash section 3): a core and a tail, each
  :math:`2 r R^2 / (r^2 + R^2)^2`, with radii and core weight depending on the relative depth
  :math:`\tau = t / T` and on ``ln E`` (:func:`radial_parameters`, :func:`radial_profile`).
  Integrated along one transverse coordinate (a fibre or a strip), one component has the
  closed-form CDF of :func:`strip_cdf`.
- **Sampling calorimeters** (GFlash section 4): shifts of ``T``, ``alpha`` and of the radial
  parameters that depend on the sampling frequency :math:`F_S` and on :math:`\hat e =
  e/\mathrm{mip}`, held by :class:`SamplingCorrection` (optional everywhere).

The scalar functions marked *numba kernel* are ``numba.njit`` compiled and take plain floats,
so compiled simulators call them in their hot loops; the other functions are their
vectorised (NumPy-broadcasting) counterparts for Python callers and tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from astroreco.errors import InputError

# --- GFlash coefficients ---------------------------------------------------------------------
# Homogeneous media, individual showers: <ln T>, <ln alpha>, their widths and correlation.
_LNT_OFFSET = -0.812                       # <ln T> = ln(ln y - 0.812)
_LNA_A, _LNA_B, _LNA_C = 0.81, 0.458, 2.26  # <ln alpha> = ln(0.81 + (0.458 + 2.26/Z) ln y)
_SIG_T_HOM = (-1.4, 1.26)                  # 1/sigma(ln T) = -1.4 + 1.26 ln y
_SIG_A_HOM = (-0.58, 0.86)                 # 1/sigma(ln alpha) = -0.58 + 0.86 ln y
_RHO_HOM = (0.705, -0.023)                 # rho = 0.705 - 0.023 ln y
# Sampling calorimeters, individual showers
_SAM_T1, _SAM_T2 = -0.55, -0.69            # <T> shift: t1 / F_S + t2 (1 - e_hat)
_SAM_A1 = -0.476                           # <alpha> shift: a1 / F_S
_SIG_T_SAM = (-2.5, 1.25)
_SIG_A_SAM = (-0.82, 0.79)
_RHO_SAM = (0.784, -0.023)
# Radial profile, homogeneous media (E in GeV)
_RC = (0.0251, 0.00319, 0.1162, -0.000381)          # z1 = c0 + c1 ln E, z2 = c2 + c3 Z
_RT = (0.659, -0.00309, 0.645, -2.59, 0.3585, 0.0421)  # k1 = .. Z, k2, k3, k4 = .. ln E
_PC = (2.632, -0.00094, 0.401, 0.00187, 1.313, -0.0686)  # p1 = .. Z, p2 = .. Z, p3 = .. ln E
# Radial profile, sampling corrections
_SAM_RC = (-0.0203, 0.0397)                # R_C += c1 (1 - e_hat) + c2 / F_S exp(-tau)
_SAM_RT = (-0.14, -0.495)                  # R_T += t1 (1 - e_hat) + t2 / F_S exp(-tau)
_SAM_PC = (0.348, -0.642)                  # p += (1 - e_hat) (p1 + p2 / F_S exp(-(tau-1)^2))
#: lower bounds applied to a drawn shower, as in GFlash's own generator
MIN_T_MAX_X0 = 1.0
MIN_ALPHA = 1.1
#: mean depth (X0) at which a photon converts: 9/7 X0
PHOTON_CONVERSION_X0 = 9.0 / 7.0


@dataclass(frozen=True)
class SamplingCorrection:
    r"""GFlash's corrections for a sampling calorimeter (hep-ex/0001020, section 4).

    A sampling structure of passive layers (thickness :math:`d_p`, atomic number
    :math:`Z_p`) and active layers (:math:`d_a`, :math:`Z_a`) shortens and narrows the
    showers compared to a homogeneous medium of the same effective X0, Z, E_c and R_M.
    GFlash parameterises this with the sampling frequency and the electron-to-mip ratio

    .. math:: F_S = \frac{X_{0,\mathrm{eff}}}{d_a + d_p}, \qquad
              \hat e = \frac{e}{\mathrm{mip}} = \frac{1}{1 + 0.007\,(Z_p - Z_a)}

    Individual showers (means of the logarithms):

    .. math:: \langle\ln T\rangle_{sam} = \ln\left(e^{\langle\ln T\rangle_{hom}}
              - 0.55\,F_S^{-1} - 0.69\,(1 - \hat e)\right), \qquad
              \langle\ln\alpha\rangle_{sam} = \ln\left(e^{\langle\ln\alpha\rangle_{hom}}
              - 0.476\,F_S^{-1}\right)

    with widths :math:`\sigma(\ln T) = (-2.5 + 1.25 \ln y)^{-1}`,
    :math:`\sigma(\ln\alpha) = (-0.82 + 0.79 \ln y)^{-1}` and correlation
    :math:`\rho = 0.784 - 0.023 \ln y`.  Radial parameters:

    .. math:: R_C \mathrel{+}= -0.0203 (1 - \hat e) + 0.0397\,F_S^{-1} e^{-\tau}, \quad
              R_T \mathrel{+}= -0.14 (1 - \hat e) - 0.495\,F_S^{-1} e^{-\tau}, \quad
              p \mathrel{+}= (1 - \hat e)\left(0.348 - 0.642\,F_S^{-1}
              e^{-(\tau - 1)^2}\right)

    Attributes
    ----------
    sampling_frequency : float
        :math:`F_S`, sampling layers per effective radiation length.
    e_over_mip : float
        :math:`\hat e`, in (0, 1].
    """

    sampling_frequency: float
    e_over_mip: float

    def __post_init__(self):
        if not (np.isfinite(self.sampling_frequency) and self.sampling_frequency > 0):
            raise InputError(f"sampling_frequency: expected a finite value > 0, got "
                             f"{self.sampling_frequency}")
        if not 0 < self.e_over_mip <= 1:
            raise InputError(f"e_over_mip: expected a value in (0, 1], got {self.e_over_mip}")

    @classmethod
    def from_layers(cls, x0_eff_mm: float, passive_mm: float, active_mm: float,
                    z_passive: float, z_active: float) -> "SamplingCorrection":
        """The correction of a stack of passive and active layers (thicknesses in mm).

        Examples
        --------
        >>> s = SamplingCorrection.from_layers(9.6, 1.0, 0.85, 82.0, 5.6)
        >>> round(s.sampling_frequency, 2), round(s.e_over_mip, 3)
        (5.19, 0.652)
        """
        return cls(sampling_frequency=x0_eff_mm / (passive_mm + active_mm),
                   e_over_mip=1.0 / (1.0 + 0.007 * (z_passive - z_active)))

    def kernel_args(self) -> tuple[bool, float, float]:
        """``(sampled, 1 / F_S, 1 - e_hat)``, the plain floats the numba kernels take."""
        return True, 1.0 / self.sampling_frequency, 1.0 - self.e_over_mip


def _kernel_args(sampling: SamplingCorrection | None) -> tuple[bool, float, float]:
    return (False, 0.0, 0.0) if sampling is None else sampling.kernel_args()


# --- longitudinal ----------------------------------------------------------------------------

@numba.njit(cache=True)
def longitudinal_moments(ln_y, z_eff, sampled, inv_fs, one_minus_ehat):
    """Numba kernel: ``(mean ln T, mean ln alpha, sigma ln T, sigma ln alpha, rho)``.

    ``ln_y = ln(E / E_c)``; ``sampled`` selects GFlash's sampling-calorimeter set, shifted by
    ``inv_fs`` (:math:`1/F_S`) and ``one_minus_ehat`` (:math:`1 - \\hat e`); see
    :func:`longitudinal_parameters` for the formulas.  Valid for ``ln y`` above ~3
    (E > 0.2 GeV for E_c ~ 10 MeV); the means are floored at ``T, alpha >= 0.1``.
    """
    t_hom = ln_y + _LNT_OFFSET
    a_hom = _LNA_A + (_LNA_B + _LNA_C / z_eff) * ln_y
    if sampled:
        t_mean = t_hom + _SAM_T1 * inv_fs + _SAM_T2 * one_minus_ehat
        a_mean = a_hom + _SAM_A1 * inv_fs
        sig_t = 1.0 / (_SIG_T_SAM[0] + _SIG_T_SAM[1] * ln_y)
        sig_a = 1.0 / (_SIG_A_SAM[0] + _SIG_A_SAM[1] * ln_y)
        rho = _RHO_SAM[0] + _RHO_SAM[1] * ln_y
    else:
        t_mean = t_hom
        a_mean = a_hom
        sig_t = 1.0 / (_SIG_T_HOM[0] + _SIG_T_HOM[1] * ln_y)
        sig_a = 1.0 / (_SIG_A_HOM[0] + _SIG_A_HOM[1] * ln_y)
        rho = _RHO_HOM[0] + _RHO_HOM[1] * ln_y
    # the fits hold for ln y >~ 3; keep the widths finite and positive below that
    sig_t = min(max(sig_t, 0.0), 0.5) if sig_t > 0 else 0.5
    sig_a = min(max(sig_a, 0.0), 0.5) if sig_a > 0 else 0.5
    rho = min(max(rho, -1.0), 1.0)
    return (math.log(max(t_mean, 0.1)), math.log(max(a_mean, 0.1)), sig_t, sig_a, rho)


@numba.njit(cache=True)
def shower_shape(mean_ln_t, mean_ln_alpha, sigma_ln_t, sigma_ln_alpha, rho, z1, z2):
    """Numba kernel: ``(T, alpha)`` of one shower from two independent standard normals.

    .. math:: \\ln T = \\mu_T + \\sigma_T z_1, \\qquad
              \\ln\\alpha = \\mu_\\alpha + \\sigma_\\alpha
              \\left(\\rho z_1 + \\sqrt{1 - \\rho^2}\\, z_2\\right)

    floored at ``T >= 1`` X0 and ``alpha >= 1.1`` (as GFlash's generator does) so that
    ``beta = (alpha - 1) / T`` stays positive.
    """
    ln_t = mean_ln_t + sigma_ln_t * z1
    ln_a = mean_ln_alpha + sigma_ln_alpha * (rho * z1 + math.sqrt(1.0 - rho * rho) * z2)
    return max(math.exp(ln_t), MIN_T_MAX_X0), max(math.exp(ln_a), MIN_ALPHA)


@dataclass(frozen=True)
class LongitudinalParameters:
    """Distribution of ``(ln T, ln alpha)`` per energy; arrays of the energies' shape."""

    mean_ln_t: np.ndarray
    mean_ln_alpha: np.ndarray
    sigma_ln_t: np.ndarray
    sigma_ln_alpha: np.ndarray
    rho: np.ndarray


@numba.njit(cache=True)
def _moments_array(ln_y, z_eff, sampled, inv_fs, one_minus_ehat):
    out = np.empty((5, ln_y.size))
    for i in range(ln_y.size):
        m = longitudinal_moments(ln_y[i], z_eff, sampled, inv_fs, one_minus_ehat)
        for k in range(5):
            out[k, i] = m[k]
    return out


def _energies(energy_gev, name="energy_gev") -> np.ndarray:
    e = np.asarray(energy_gev, dtype=np.float64)
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise InputError(f"{name}: expected finite energies > 0 GeV")
    return e


def longitudinal_parameters(energy_gev, *, critical_mev: float, z_eff: float,
                            sampling: SamplingCorrection | None = None
                            ) -> LongitudinalParameters:
    r"""GFlash's distribution of the individual-shower parameters ``(ln T, ln alpha)``.

    Homogeneous media (hep-ex/0001020, section 2.2), with :math:`y = E / E_c`:

    .. math:: \langle\ln T\rangle = \ln(\ln y - 0.812), \qquad
              \langle\ln\alpha\rangle = \ln\left(0.81 + (0.458 + 2.26/Z)\ln y\right)

    .. math:: \sigma(\ln T) = (-1.4 + 1.26 \ln y)^{-1}, \quad
              \sigma(\ln\alpha) = (-0.58 + 0.86 \ln y)^{-1}, \quad
              \rho(\ln T, \ln\alpha) = 0.705 - 0.023 \ln y

    With ``sampling`` the sampling-calorimeter set of :class:`SamplingCorrection` is used.

    Parameters
    ----------
    energy_gev : float or array
        Shower energies (GeV).
    critical_mev : float
        Critical energy :math:`E_c` of the (effective) medium (MeV).
    z_eff : float
        Effective atomic number.
    sampling : SamplingCorrection, optional
        Sampling-calorimeter corrections; ``None`` for a homogeneous medium.

    Returns
    -------
    LongitudinalParameters
        Means, widths and correlation, each of the shape of ``energy_gev``.

    Examples
    --------
    >>> p = longitudinal_parameters(100.0, critical_mev=8.3, z_eff=62.0)
    >>> round(float(np.exp(p.mean_ln_t)), 2)  # ln(100 GeV / 8.3 MeV) - 0.812
    8.58
    """
    e = _energies(energy_gev)
    if not (critical_mev > 0 and z_eff > 0):
        raise InputError("critical_mev and z_eff: expected values > 0")
    ln_y = np.log(e * 1000.0 / critical_mev)
    out = _moments_array(np.ascontiguousarray(ln_y.ravel()), float(z_eff),
                         *_kernel_args(sampling))
    out = out.reshape((5, *e.shape))
    return LongitudinalParameters(*(out[k] for k in range(5)))


def draw_longitudinal(energy_gev, generator: np.random.Generator, *, critical_mev: float,
                      z_eff: float, sampling: SamplingCorrection | None = None):
    """Draw individual showers: ``(T, alpha, beta)`` arrays of the shape of ``energy_gev``.

    ``T`` is the depth of maximum (X0, from the shower start), ``beta = (alpha - 1) / T``
    (1/X0); see :func:`longitudinal_parameters` and :func:`shower_shape`.
    """
    p = longitudinal_parameters(energy_gev, critical_mev=critical_mev, z_eff=z_eff,
                                sampling=sampling)
    z1 = generator.standard_normal(p.rho.shape)
    z2 = generator.standard_normal(p.rho.shape)
    ln_t = p.mean_ln_t + p.sigma_ln_t * z1
    ln_a = p.mean_ln_alpha + p.sigma_ln_alpha * (p.rho * z1 + np.sqrt(1 - p.rho**2) * z2)
    t_max = np.maximum(np.exp(ln_t), MIN_T_MAX_X0)
    alpha = np.maximum(np.exp(ln_a), MIN_ALPHA)
    return t_max, alpha, (alpha - 1.0) / t_max


# --- incomplete gamma ------------------------------------------------------------------------

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 1000


@numba.njit(cache=True)
def gamma_p_lg(a, x, lgamma_a):
    r"""Numba kernel: :func:`gamma_p` with :math:`\ln\Gamma(a)` supplied (``lgamma_a``), for
    loops that evaluate one ``a`` many times."""
    if x <= 0.0:
        return 0.0
    log_pref = a * math.log(x) - x - lgamma_a
    if x < a + 1.0:
        # power series: P = x^a e^-x / Gamma(a + 1) * sum_n x^n / ((a+1)...(a+n))
        term = 1.0 / a
        total = term
        ap = a
        for _ in range(_MAX_ITER):
            ap += 1.0
            term *= x / ap
            total += term
            if term < total * _EPS:
                break
        return min(total * math.exp(log_pref), 1.0)
    # continued fraction of Q = 1 - P (modified Lentz): Q = x^a e^-x / Gamma(a) * 1/(x+1-a-
    #   1(1-a)/(x+3-a- 2(2-a)/(x+5-a- ...)))
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return max(1.0 - math.exp(log_pref) * h, 0.0)


@numba.njit(cache=True)
def gamma_p(a, x):
    r"""Numba kernel: regularised lower incomplete gamma function, ``a > 0``, ``x >= 0``.

    .. math:: P(a, x) = \frac{1}{\Gamma(a)} \int_0^x s^{a-1} e^{-s}\,ds

    the CDF of a Gamma(a) variable.  Power series for ``x < a + 1``, continued fraction of
    :math:`Q = 1 - P` (modified Lentz) otherwise, both to double precision (the standard
    numerical recipe; agrees with ``scipy.special.gammainc`` to ~1e-14).
    """
    return gamma_p_lg(a, x, math.lgamma(a))


@numba.njit(cache=True)
def _gamma_p_array(a, x):
    out = np.empty(a.size)
    for i in range(a.size):
        out[i] = gamma_p(a[i], x[i])
    return out


def gamma_p_array(a, x) -> np.ndarray:
    """:func:`gamma_p` over broadcast arrays (float64 of the broadcast shape).

    Examples
    --------
    >>> round(float(gamma_p_array(1.0, 1.0)), 10)  # 1 - exp(-1)
    0.6321205588
    """
    a, x = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(x, np.float64))
    if np.any(~(a > 0)) or np.any(~(x >= 0)):
        raise InputError("gamma_p: expected a > 0 and x >= 0")
    out = _gamma_p_array(np.ascontiguousarray(a.ravel()), np.ascontiguousarray(x.ravel()))
    return out.reshape(a.shape)


def layer_fraction(alpha, beta, t1, t2) -> np.ndarray:
    r"""Fraction of a Gamma profile's energy between depths ``t1 <= t2`` (X0, from the start).

    .. math:: \int_{t_1}^{t_2} f(t)\,dt = P(\alpha, \beta t_2) - P(\alpha, \beta t_1)

    Depths below 0 count as 0 (no energy before the shower starts).  Broadcasting.

    Examples
    --------
    >>> round(float(layer_fraction(2.0, 1.0, 0.0, np.inf)), 12)
    1.0
    """
    alpha, beta, t1, t2 = np.broadcast_arrays(*(np.asarray(v, np.float64)
                                                for v in (alpha, beta, t1, t2)))
    if np.any(t2 < t1):
        raise InputError("layer_fraction: expected t1 <= t2")
    if np.any(~(beta > 0)):
        raise InputError("layer_fraction: expected beta > 0")
    x1 = np.where(np.isinf(t1), np.inf, beta * np.maximum(t1, 0.0))
    x2 = np.where(np.isinf(t2), np.inf, beta * np.maximum(t2, 0.0))
    p1 = np.where(np.isinf(x1), 1.0, gamma_p_array(alpha, np.where(np.isinf(x1), 0.0, x1)))
    p2 = np.where(np.isinf(x2), 1.0, gamma_p_array(alpha, np.where(np.isinf(x2), 0.0, x2)))
    return p2 - p1


# --- radial ----------------------------------------------------------------------------------

@numba.njit(cache=True)
def radial_kernel(tau, ln_e, z_eff, sampled, inv_fs, one_minus_ehat):
    """Numba kernel: ``(R_C, R_T, p)`` (Moliere radii, Moliere radii, core weight in [0, 1])
    at relative depth ``tau = t / T`` for ``ln_e = ln(E / GeV)``; formulas in
    :func:`radial_parameters`.  Radii are floored at 1e-3 R_M."""
    z1 = _RC[0] + _RC[1] * ln_e
    z2 = _RC[2] + _RC[3] * z_eff
    r_core = z1 + z2 * tau
    k1 = _RT[0] + _RT[1] * z_eff
    k2 = _RT[2]
    k3 = _RT[3]
    k4 = _RT[4] + _RT[5] * ln_e
    r_tail = k1 * (math.exp(k3 * (tau - k2)) + math.exp(k4 * (tau - k2)))
    p1 = _PC[0] + _PC[1] * z_eff
    p2 = _PC[2] + _PC[3] * z_eff
    p3 = _PC[4] + _PC[5] * ln_e
    s = (p2 - tau) / p3
    p = p1 * math.exp(s - math.exp(s))
    if sampled:
        decay = inv_fs * math.exp(-tau)
        r_core += _SAM_RC[0] * one_minus_ehat + _SAM_RC[1] * decay
        r_tail += _SAM_RT[0] * one_minus_ehat + _SAM_RT[1] * decay
        p += one_minus_ehat * (_SAM_PC[0] + _SAM_PC[1] * inv_fs
                               * math.exp(-(tau - 1.0) * (tau - 1.0)))
    return max(r_core, 1e-3), max(r_tail, 1e-3), min(max(p, 0.0), 1.0)


@numba.njit(cache=True)
def _radial_array(tau, ln_e, z_eff, sampled, inv_fs, one_minus_ehat):
    out = np.empty((3, tau.size))
    for i in range(tau.size):
        r = radial_kernel(tau[i], ln_e[i], z_eff, sampled, inv_fs, one_minus_ehat)
        out[0, i] = r[0]
        out[1, i] = r[1]
        out[2, i] = r[2]
    return out


def radial_parameters(tau, energy_gev, *, z_eff: float,
                      sampling: SamplingCorrection | None = None):
    r"""GFlash's radial parameters ``(R_C, R_T, p)`` at relative depth ``tau = t / T``.

    Homogeneous media (hep-ex/0001020, section 3), ``E`` in GeV, radii in Moliere radii:

    .. math:: R_C = z_1 + z_2 \tau, \quad z_1 = 0.0251 + 0.00319 \ln E, \quad
              z_2 = 0.1162 - 0.000381 Z

    .. math:: R_T = k_1\left(e^{k_3(\tau - k_2)} + e^{k_4(\tau - k_2)}\right), \quad
              k_1 = 0.659 - 0.00309 Z,\ k_2 = 0.645,\ k_3 = -2.59,\
              k_4 = 0.3585 + 0.0421 \ln E

    .. math:: p = p_1 \exp\left(\frac{p_2 - \tau}{p_3}
              - e^{(p_2 - \tau)/p_3}\right), \quad p_1 = 2.632 - 0.00094 Z,\
              p_2 = 0.401 + 0.00187 Z,\ p_3 = 1.313 - 0.0686 \ln E

    plus the corrections of :class:`SamplingCorrection` when ``sampling`` is given.

    Because ``tau`` is measured with each shower's *own* ``T`` (:func:`shower_shape`), a
    shower that develops early is also narrow early on and wide at the back: the lateral
    width fluctuates with, and correlates with, the longitudinal development, as in full
    simulations.  (A profile with a fixed ``T`` makes the showers too alike.)

    Parameters
    ----------
    tau : float or array
        Depth over the shower's depth of maximum, ``t / T`` (both from the shower start).
    energy_gev : float or array
        Shower energy (GeV).
    z_eff : float
        Effective atomic number.
    sampling : SamplingCorrection, optional
        Sampling-calorimeter corrections.

    Returns
    -------
    (r_core, r_tail, p_core) : arrays of the broadcast shape
    """
    tau, e = np.broadcast_arrays(np.asarray(tau, np.float64), _energies(energy_gev))
    if np.any(~np.isfinite(tau)) or np.any(tau < 0):
        raise InputError("tau: expected finite values >= 0")
    out = _radial_array(np.ascontiguousarray(tau.ravel()),
                        np.ascontiguousarray(np.log(e).ravel()), float(z_eff),
                        *_kernel_args(sampling))
    return tuple(out[k].reshape(tau.shape) for k in range(3))


def radial_profile(r, r_core, r_tail, p_core) -> np.ndarray:
    r"""GFlash radial density (per unit radius, normalised to 1 over ``r`` in [0, inf)).

    .. math:: f(r) = p \frac{2 r R_C^2}{(r^2 + R_C^2)^2}
              + (1 - p) \frac{2 r R_T^2}{(r^2 + R_T^2)^2}

    Each component is the radial density of the 2D distribution
    :math:`R^2 / (\pi (r^2 + R^2)^2)`; its CDF is :math:`r^2 / (r^2 + R^2)`, so half the
    component lies within ``R``.  Units of ``r`` are those of the radii.
    """
    r = np.asarray(r, np.float64)
    rc2 = np.asarray(r_core, np.float64) ** 2
    rt2 = np.asarray(r_tail, np.float64) ** 2
    p = np.asarray(p_core, np.float64)
    return (p * 2 * r * rc2 / (r * r + rc2) ** 2
            + (1 - p) * 2 * r * rt2 / (r * r + rt2) ** 2)


def radial_containment(r, r_core, r_tail, p_core) -> np.ndarray:
    """Fraction of the energy within radius ``r`` of the axis (the CDF of
    :func:`radial_profile`): ``p r^2/(r^2+R_C^2) + (1-p) r^2/(r^2+R_T^2)``."""
    r2 = np.asarray(r, np.float64) ** 2
    p = np.asarray(p_core, np.float64)
    return (p * r2 / (r2 + np.asarray(r_core, np.float64) ** 2)
            + (1 - p) * r2 / (r2 + np.asarray(r_tail, np.float64) ** 2))


def strip_cdf(u, radius) -> np.ndarray:
    r"""CDF along one transverse coordinate of one radial component of radius ``R``.

    Integrating the 2D density :math:`R^2 / (\pi (r^2 + R^2)^2)` along ``v`` (a fibre)
    leaves the 1D density :math:`R^2 / (2 (u^2 + R^2)^{3/2})` of the other coordinate ``u``,
    whose CDF is

    .. math:: G(u) = \frac{1}{2}\left(1 + \frac{u}{\sqrt{u^2 + R^2}}\right)

    so a cell ``[u1, u2]`` (relative to the axis) holds ``G(u2) - G(u1)`` of the component.
    For a shower inclined by ``theta`` with azimuth ``phi`` relative to the measured axis the
    projection onto the layer plane stretches the profile along ``phi``; the component stays
    of this family with ``R`` scaled by ``sqrt(1 + tan^2(theta) cos^2(phi))``.

    Examples
    --------
    >>> float(strip_cdf(0.0, 1.0)), round(float(strip_cdf(1.0, 1.0)), 4)
    (0.5, 0.8536)
    """
    u = np.asarray(u, np.float64)
    radius = np.asarray(radius, np.float64)
    with np.errstate(invalid="ignore"):
        ratio = np.where(np.isinf(u), np.sign(u), u / np.sqrt(u * u + radius * radius))
    return 0.5 * (1.0 + ratio)


def strip_fraction(u1, u2, r_core, r_tail, p_core) -> np.ndarray:
    """Fraction of the two-component profile between ``u1`` and ``u2`` along one
    transverse coordinate (same units as the radii)."""
    p = np.asarray(p_core, np.float64)
    return (p * (strip_cdf(u2, r_core) - strip_cdf(u1, r_core))
            + (1 - p) * (strip_cdf(u2, r_tail) - strip_cdf(u1, r_tail)))
