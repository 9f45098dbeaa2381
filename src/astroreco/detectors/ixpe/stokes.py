"""Event-by-event Stokes analysis of photoelectron emission angles.

The conventions follow Kislat et al. (2015), Astropart. Phys. 68, 45 and ixpeobssim.  All
angles are in radians.  An event with emission angle ``phi`` carries the Stokes parameters

.. math::

    Q_i = 2 \\cos 2\\phi_i / \\mu_i, \\qquad U_i = 2 \\sin 2\\phi_i / \\mu_i,

where ``mu_i`` is the modulation factor (dimensionless, in (0, 1]); without a modulation
factor the division is skipped, which is the same as ``mu = 1``.  With per-event weights
``w_i`` (default 1)

.. math::

    I = \\sum w_i, \\quad W_2 = \\sum w_i^2, \\quad Q = \\sum w_i Q_i, \\quad
    U = \\sum w_i U_i, \\quad q = Q / I, \\quad u = U / I,

    \\mathrm{PD} = \\sqrt{q^2 + u^2}, \\quad \\mathrm{PA} = \\tfrac12 \\operatorname{atan2}(U, Q),
    \\quad N_\\mathrm{eff} = I^2 / W_2 .

For a sample drawn from the modulation curve ``1 + m cos(2(phi - phi0))`` one has
``E[2 cos 2 phi] = m cos 2 phi0``, so the undivided (``mu = None``) PD estimates the modulation
amplitude ``m`` and the divided one estimates the polarization degree ``m / mu``.

Per-event modulation factors and weights enter the error formulas through one *effective*
modulation factor, the weighted root-mean-square of ``1 / mu_i``:

.. math::

    \\mu_\\mathrm{eff}^{-2} = \\sum w_i^2 \\mu_i^{-2} \\Big/ \\sum w_i^2 ,

which is exact for the variance of ``q`` and ``u`` (``Var Q_i = 2/mu_i^2 - q^2``) and reduces
to ``mu`` for a scalar modulation factor and to 1 without one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from astroreco.errors import InputError
from astroreco.stats.directional import check_angles, wrap_half_pi
# directional statistics that the IXPE analysis uses, re-exported under this module's name
from astroreco.stats.directional import (epsilon_10, epsilon_within,  # noqa: F401
                                         expected_modulation, sample_modulated_angles,
                                         spurious_modulation)

__all__ = [
    "MDP99_FACTOR",
    "ModulationResult",
    "PolarizationResult",
    "epsilon_10",
    "epsilon_within",
    "expected_modulation",
    "mdp99",
    "modulation_factor",
    "polarization",
    "sample_modulated_angles",
    "spurious_modulation",
    "stokes",
]

#: ``sqrt(-4 ln 0.01)`` rounded as in the literature: the 99% confidence MDP coefficient.
MDP99_FACTOR = 4.29


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------

def _modulation_factors(mu, n):
    """``mu`` as a float or a float64 array of length ``n``; every value in (0, 1]."""
    if mu is None:
        return None
    arr = np.asarray(mu, dtype=np.float64)
    if arr.ndim == 0:
        value = float(arr)
        if not 0.0 < value <= 1.0:
            raise InputError(f"mu: expected a modulation factor in (0, 1], got {value}")
        return value
    arr = arr.ravel()
    if arr.size != n:
        raise InputError(f"mu: expected a scalar or {n} per-event values, got {arr.size}")
    ok = (arr > 0.0) & (arr <= 1.0)  # False for NaN too
    if not np.all(ok):
        bad = int(np.count_nonzero(~ok))
        raise InputError(f"mu: expected modulation factors in (0, 1], got {bad} value(s) outside")
    return arr


def _weights(weights, shape):
    """``weights`` as a flat float64 array (ones when None) of the angles' ``shape``.

    ``shape`` may be an int (a flat array of that length).  Finite, >= 0, with a positive sum.
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    n = math.prod(shape)
    if weights is None:
        return np.ones(n)
    arr = np.asarray(weights, dtype=np.float64)
    if arr.shape != shape:
        raise InputError(f"weights: expected shape {shape}, one per angle, got {arr.shape}")
    arr = arr.ravel()
    if not np.all(np.isfinite(arr)):
        raise InputError("weights: expected finite values, got NaN/inf")
    if np.any(arr < 0.0):
        bad = int(np.count_nonzero(arr < 0.0))
        raise InputError(f"weights: expected non-negative values, got {bad} negative value(s)")
    if not arr.sum() > 0.0:
        raise InputError("weights: expected a positive sum, got all zero weights")
    return arr


def _ratio(num, den):
    """``num / den`` as a float, ``inf`` where ``den`` is zero (no warning)."""
    if den <= 0.0:
        return math.inf
    return num / den


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PolarizationResult:
    """Outcome of :func:`polarization`.

    Attributes
    ----------
    n : int
        Number of events.
    i, w2 : float
        ``I = sum w`` and ``W2 = sum w^2``.
    n_eff : float
        Effective number of events ``I^2 / W2``.
    q, u : float
        Normalised Stokes parameters ``Q/I`` and ``U/I`` (dimensionless).
    q_err, u_err : float
        Their 1-sigma errors from the sample, ``sqrt(sum w^2 (Q_i - q)^2) / I``.
    pd, pd_err : float
        Polarization degree ``sqrt(q^2 + u^2)`` (a fraction, not percent) and its error.
    pa, pa_err : float
        Polarization angle ``atan2(U, Q) / 2`` in ``(-pi/2, pi/2]`` radians and its error.
    mdp99 : float
        Minimum detectable polarization at 99% confidence (fraction).
    """

    n: int
    i: float
    w2: float
    n_eff: float
    q: float
    u: float
    q_err: float
    u_err: float
    pd: float
    pd_err: float
    pa: float
    pa_err: float
    mdp99: float

    def to_dict(self) -> dict:
        """The fields as plain Python numbers (``n`` an int, the rest floats), for JSON."""
        out = {name: float(getattr(self, name)) for name in self.__dataclass_fields__}
        out["n"] = int(self.n)
        return out


@dataclass(frozen=True)
class ModulationResult:
    """Outcome of :func:`modulation_factor`.

    Attributes
    ----------
    mu, mu_err : float
        Modulation factor ``sqrt(Q^2 + U^2) / I`` of undivided Stokes parameters and its error.
    phi0, phi0_err : float
        Phase ``atan2(U, Q) / 2`` in ``(-pi/2, pi/2]`` radians and its error.
    n : int
        Number of events.
    n_eff : float
        Effective number of events ``I^2 / W2``.
    """

    mu: float
    mu_err: float
    phi0: float
    phi0_err: float
    n: int
    n_eff: float

    def to_dict(self) -> dict:
        """The fields as plain Python numbers, for JSON."""
        out = {name: float(getattr(self, name)) for name in self.__dataclass_fields__}
        out["n"] = int(self.n)
        return out


# --------------------------------------------------------------------------------------------
# Stokes analysis
# --------------------------------------------------------------------------------------------

def stokes(phi, mu=None):
    """Per-event Stokes parameters of emission angles.

    .. math:: q_i = 2 \\cos 2\\phi_i / \\mu, \\qquad u_i = 2 \\sin 2\\phi_i / \\mu

    Parameters
    ----------
    phi : array_like
        Emission angles in radians.
    mu : float or array_like, optional
        Modulation factor in (0, 1], scalar or one per event.  Without it the Stokes
        parameters are not divided (``mu = 1``).

    Returns
    -------
    q_i, u_i : numpy.ndarray
        Flat float64 arrays, dimensionless.

    Raises
    ------
    InputError
        Empty or non-finite ``phi``; ``mu`` outside (0, 1] or of the wrong length.
    """
    phi = check_angles(phi)
    mu = _modulation_factors(mu, phi.size)
    q_i = 2.0 * np.cos(2.0 * phi)
    u_i = 2.0 * np.sin(2.0 * phi)
    if mu is not None:
        q_i = q_i / mu
        u_i = u_i / mu
    return q_i, u_i


def _mdp_from_sums(w, mu):
    """``4.29 sqrt(sum w^2 / mu^2) / sum w`` (``mu`` None, scalar or per-event)."""
    i = float(w.sum())
    if mu is None:
        s2 = float(np.sum(w * w))
    else:
        s2 = float(np.sum((w / mu) ** 2))
    return MDP99_FACTOR * math.sqrt(s2) / i


def polarization(phi, *, mu=None, weights=None) -> PolarizationResult:
    """Polarization degree and angle of a sample of emission angles, with errors.

    With ``Q_i, U_i`` from :func:`stokes` and weights ``w`` (default 1)::

        I = sum w,  W2 = sum w^2,  q = sum w Q_i / I,  u = sum w U_i / I
        PD = sqrt(q^2 + u^2),  PA = atan2(U, Q) / 2,  N_eff = I^2 / W2

    Errors (Kislat et al. 2015, eq. 31-34, generalised to weights)::

        sigma_q = sqrt(sum w^2 (Q_i - q)^2) / I        (likewise sigma_u)
        sigma_PD = sqrt((2 - PD^2 mu_eff^2) / ((N_eff - 1) mu_eff^2))
        sigma_PA = sigma_PD / (2 PD)                    (radians)
        MDP99 = 4.29 sqrt(W2) / (mu_eff I) = 4.29 / (mu_eff sqrt(N_eff))

    ``mu_eff`` is ``mu`` for a scalar modulation factor, the weighted rms
    ``sqrt(sum w^2 / sum w^2 mu_i^-2)`` for per-event ones, and 1 without one; the Stokes
    parameters are then undivided, ``PD`` is the modulation amplitude and ``MDP99`` the
    minimum detectable amplitude.  ``2 - PD^2 mu_eff^2`` is clipped at zero (it can only go
    negative for samples more modulated than any physical source).  With ``N_eff <= 1`` or
    ``PD = 0`` the affected errors are ``inf``.

    Parameters
    ----------
    phi : array_like
        Emission angles in radians.
    mu : float or array_like, optional
        Modulation factor in (0, 1], scalar or one per event.
    weights : array_like, optional
        Non-negative per-event weights, one per angle.

    Returns
    -------
    PolarizationResult

    Raises
    ------
    InputError
        Empty input, NaN/inf angles, negative/NaN weights or a weights shape mismatch,
        ``mu <= 0`` or ``mu > 1``.
    """
    shape = np.shape(phi)
    phi = check_angles(phi)
    n = phi.size
    mu = _modulation_factors(mu, n)
    w = _weights(weights, shape)
    q_i, u_i = stokes(phi, mu)

    i = float(w.sum())
    w2 = float(np.sum(w * w))
    n_eff = i * i / w2
    q = float(np.dot(w, q_i)) / i
    u = float(np.dot(w, u_i)) / i
    q_err = math.sqrt(float(np.sum(w * w * (q_i - q) ** 2))) / i
    u_err = math.sqrt(float(np.sum(w * w * (u_i - u) ** 2))) / i

    mdp = _mdp_from_sums(w, mu)
    mu_eff = 1.0 if mu is None else math.sqrt(w2 / float(np.sum((w / mu) ** 2)))
    pd = math.hypot(q, u)
    pa = 0.5 * math.atan2(u, q)
    pd_var_num = max(2.0 - (pd * mu_eff) ** 2, 0.0)
    pd_err = math.sqrt(_ratio(pd_var_num, (n_eff - 1.0) * mu_eff**2))
    pa_err = _ratio(pd_err, 2.0 * pd)
    return PolarizationResult(n=n, i=i, w2=w2, n_eff=n_eff, q=q, u=u, q_err=q_err, u_err=u_err,
                              pd=pd, pd_err=pd_err, pa=float(wrap_half_pi(pa)), pa_err=pa_err,
                              mdp99=mdp)


def modulation_factor(phi, *, weights=None) -> ModulationResult:
    """Modulation factor of a sample from a 100% polarized beam.

    With undivided Stokes parameters ``Q_i = 2 cos 2phi_i``, ``U_i = 2 sin 2phi_i``::

        mu = sqrt(Q^2 + U^2) / I
        sigma_mu = sqrt((2 - mu^2) / (N_eff - 1))
        phi0 = atan2(U, Q) / 2,   sigma_phi0 = sigma_mu / (2 mu)   (radians)

    ``mu`` is biased high by about ``sigma_mu^2 / (2 mu)`` (the Rice bias), negligible when
    ``mu >> sigma_mu``.

    Parameters
    ----------
    phi : array_like
        Emission angles in radians.
    weights : array_like, optional
        Non-negative per-event weights.

    Returns
    -------
    ModulationResult
    """
    res = polarization(phi, weights=weights)
    return ModulationResult(mu=res.pd, mu_err=res.pd_err, phi0=res.pa, phi0_err=res.pa_err,
                            n=res.n, n_eff=res.n_eff)


def mdp99(mu, n=None, *, weights=None) -> float:
    """Minimum detectable polarization at 99% confidence.

    .. math:: \\mathrm{MDP}_{99} = 4.29 \\sqrt{\\sum w_i^2 / \\mu_i^2} \\Big/ \\sum w_i

    which is ``4.29 sqrt(W2) / (mu I)`` for a scalar ``mu`` and ``4.29 / (mu sqrt(N))``
    without weights.

    Parameters
    ----------
    mu : float or array_like
        Modulation factor in (0, 1], scalar or one per event.
    n : int, optional
        Number of events; needed with a scalar ``mu`` and no weights, otherwise it must agree
        with the length of ``mu``/``weights`` when given.
    weights : array_like, optional
        Non-negative per-event weights.

    Returns
    -------
    float
        MDP99 as a fraction (multiply by 100 for percent).
    """
    mu_arr = np.asarray(mu, dtype=np.float64)
    if weights is not None:
        length = int(np.size(weights))
    elif mu_arr.ndim > 0:
        length = int(mu_arr.size)
    else:
        length = None
    if n is not None:
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise InputError(f"n: expected a positive number of events, got {n!r}")
        n = int(n)
        if length is not None and length != n:
            raise InputError(f"n: got {n} but mu/weights hold {length} events")
    if length is None:
        if n is None:
            raise InputError("n: needed with a scalar mu and no weights")
        mu_val = _modulation_factors(mu_arr, n)
        return MDP99_FACTOR / (mu_val * math.sqrt(n))
    if length == 0:
        raise InputError("weights: expected at least one event, got an empty array")
    mu_val = _modulation_factors(mu_arr, length)
    w = _weights(weights, length if weights is None else np.shape(weights))
    return _mdp_from_sums(w, mu_val)
