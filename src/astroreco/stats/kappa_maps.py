"""Maps that recalibrate von Mises-Fisher concentrations, fitted on validation events.

A network's predicted ``kappa`` is brought to the spread of its directions by maximum
likelihood on events never used for training or testing: a scale (:func:`vmf_kappa_scale`,
temperature scaling), a power (:func:`vmf_kappa_power_map`) and a linear map in
``log kappa`` with per-event features (:func:`vmf_kappa_feature_map`, applied by
:func:`apply_kappa_feature_map`).  Whether a map worked is :mod:`astroreco.stats.
vmf_calibration`'s test.  Nothing here knows a detector.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize

from astroreco.errors import InputError
from astroreco.stats.vmf_calibration import _clean_vmf

__all__ = ["vmf_kappa_scale", "vmf_kappa_power_map", "vmf_kappa_feature_map",
           "apply_kappa_feature_map"]


def vmf_kappa_scale(angle, kappa, bounds=(1e-2, 1e2)) -> float:
    """The factor ``s`` that makes ``s * kappa`` the best von Mises-Fisher concentrations
    for the observed angles to the predicted mean (temperature scaling, fitted on
    validation events, never on the test events it is judged on).

    Maximises ``sum log C3(s k_i) + s k_i cos(theta_i)``, with
    ``log C3(k) = log k - k - log(1 - exp(-2k)) - log 2 pi``.  ``s > 1``: the predictions
    were under-confident.
    """
    from scipy import optimize

    a, k = _clean_vmf(angle, kappa)
    cos = np.cos(a)

    def nll(log_s):
        sk = np.exp(log_s) * k
        log_c3 = np.log(sk) - sk - np.log(-np.expm1(-2.0 * sk)) - math.log(2 * math.pi)
        return -float(np.mean(log_c3 + sk * cos))

    lo, hi = (math.log(b) for b in bounds)
    res = optimize.minimize_scalar(nll, bounds=(lo, hi), method="bounded",
                                   options={"xatol": 1e-6})
    return float(np.exp(res.x))


def _vmf_log_c3(k):
    """``log C3(k)``, stable for every ``k > 0``."""
    return np.log(k) - k - np.log(-np.expm1(-2.0 * k)) - math.log(2 * math.pi)


def vmf_kappa_power_map(angle, kappa, *, power: bool = True,
                        bounds=((-5.0, 5.0), (0.2, 3.0))) -> tuple[float, float]:
    """The map ``kappa -> exp(a) * kappa**b`` that makes the predictions the best von
    Mises-Fisher concentrations for the observed angles (maximum likelihood, as
    :func:`vmf_kappa_scale`; ``power=False`` keeps ``b = 1``, a pure scale).

    ``b < 1`` shrinks the spread of ``kappa``: the network ranked its events but its largest
    ``kappa`` were over-confident relative to its smallest.  Fit on validation events, never
    on the test events the map is judged on.  Returns ``(a, b)``.
    """
    a, k = _clean_vmf(angle, kappa)
    cos, log_k = np.cos(a), np.log(k)

    def nll(p):
        sk = np.exp(np.clip(p[0] + p[1] * log_k, -700.0, 700.0))
        return -float(np.mean(_vmf_log_c3(sk) + sk * cos))

    s = math.log(vmf_kappa_scale(a, k))
    if not power:
        return s, 1.0
    res = optimize.minimize(nll, [s, 1.0], method="L-BFGS-B", bounds=bounds)
    return float(res.x[0]), float(res.x[1])


def _feature_design(kappa, features):
    log_k = np.log(np.asarray(kappa, np.float64))
    cols = [np.ones_like(log_k), log_k]
    if features is not None:
        f = np.asarray(features, np.float64).reshape(len(log_k), -1)
        for j in range(f.shape[1]):
            cols += [f[:, j], f[:, j] * log_k]
    return np.stack(cols, 1)


def apply_kappa_feature_map(kappa, coef, features=None):
    """``kappa`` after :func:`vmf_kappa_feature_map`'s coefficients ``coef``."""
    x = _feature_design(kappa, features)
    c = np.asarray(coef, np.float64)
    if x.shape[1] != c.size:
        raise InputError(f"kappa map: {c.size} coefficients for {x.shape[1]} terms "
                         "(1, log kappa and 2 per feature)")
    with np.errstate(over="ignore"):
        return np.exp(np.clip(x @ c, -700.0, 700.0))


def vmf_kappa_feature_map(angle, kappa, features=None, *, ridge: float = 1e-4) -> list:
    r"""Maximum-likelihood map of the predicted ``kappa`` that may depend on per-event
    features (measured quantities, standardised), a generalised temperature scaling:

    .. math:: \log \kappa' = c_0 + c_1 \log\kappa + \sum_j f_j (c_{2j+2} + c_{2j+3}
              \log\kappa)

    maximising ``sum log C3(kappa'_i) + kappa'_i cos(theta_i)`` (with a small ``ridge``
    penalty on the feature terms).  Without features it is :func:`vmf_kappa_power_map`.
    Fit on validation events, never on the test events it is judged on.  Returns the
    coefficients as a list (:func:`apply_kappa_feature_map` applies them).
    """
    a, k = _clean_vmf(angle, kappa)
    if features is not None:
        f = np.asarray(features, np.float64).reshape(len(k), -1)
        if not np.all(np.isfinite(f)):
            raise InputError("vmf_kappa_feature_map: expected finite features")
    x = _feature_design(k, features)
    cos = np.cos(a)
    a0, b0 = vmf_kappa_power_map(a, k)
    start = np.zeros(x.shape[1])
    start[:2] = a0, b0

    def nll(c):
        z = np.clip(x @ c, -50.0, 50.0)
        sk = np.exp(z)
        ll = _vmf_log_c3(sk) + sk * cos
        # d ll / d log kappa' = 1 - kappa' (1 + coth-like term) + kappa' cos
        dlog_c3 = 1.0 - sk * (1.0 + 2.0 * np.exp(-2.0 * sk) / -np.expm1(-2.0 * sk))
        g = -(x * (dlog_c3 + sk * cos)[:, None]).mean(0)
        g[2:] += 2.0 * ridge * c[2:]
        return -float(ll.mean()) + ridge * float(c[2:] @ c[2:]), g

    # bounded, so that a small or degenerate sample cannot give an absurd map: the power of
    # kappa in [0.1, 3], each feature term within +-2 per standard deviation
    bounds = [(-20.0, 20.0), (0.1, 3.0)] + [(-2.0, 2.0)] * (x.shape[1] - 2)
    start = np.clip(start, [b[0] for b in bounds], [b[1] for b in bounds])
    res = optimize.minimize(nll, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return [float(v) for v in res.x]
