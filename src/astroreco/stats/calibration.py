"""Calibration of predicted angular concentrations against the truth.

A reconstruction that returns, per event, a von Mises density of the ``h``-th harmonic of the
angle (IXPE: ``h = 2``, the emission angle is only known modulo pi),

.. math:: p(\\phi) \\propto \\exp\\big(\\kappa_i \\cos h(\\phi - \\hat\\phi_i)\\big),

predicts for the residual ``d_i = \\hat\\phi_i - \\phi_i`` the expected harmonic

.. math:: E[\\cos h d_i] = A(\\kappa_i) = I_1(\\kappa_i) / I_0(\\kappa_i),

the expected modulation of the event (:func:`~astroreco.stats.directional.expected_modulation`).
Events are grouped by predicted ``kappa`` into bins of equal counts; in each bin the predicted
mean ``mean A(kappa_i)`` is compared with the measured mean ``mean cos h d_i`` (standard error
``std(cos h d_i) / sqrt(n)``), and the measured concentration ``A^{-1}(measured)`` with the
predicted one.  A calibrated reconstruction has ``measured / predicted = 1`` in every bin; an
over-confident one (kappa too large) has ratios below 1.

The same test on the sphere (3D directions, von Mises-Fisher) is
:mod:`astroreco.stats.vmf_calibration`.

Nothing here knows a detector: the functions take residual angles (radians) and
concentrations (dimensionless).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

from astroreco.errors import InputError
from astroreco.stats.directional import expected_modulation

__all__ = ["expected_modulation_derivative", "inverse_expected_modulation",
           "kappa_calibration"]


def expected_modulation_derivative(kappa):
    """Derivative of ``A(kappa) = I1(kappa) / I0(kappa)``.

    .. math:: A'(\\kappa) = 1 - A(\\kappa) / \\kappa - A(\\kappa)^2, \\qquad A'(0) = 1/2 .

    Parameters
    ----------
    kappa : float or array_like
        Concentrations, finite and >= 0.

    Returns
    -------
    float or numpy.ndarray
        Values in ``(0, 1/2]``, a float for a scalar input.
    """
    k = np.asarray(kappa, dtype=np.float64)
    a = np.asarray(expected_modulation(k), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(k > 1e-8, 1.0 - a / np.where(k > 1e-8, k, 1.0) - a * a, 0.5)
    if d.ndim == 0:
        return float(d)
    return d


def inverse_expected_modulation(a: float) -> float:
    """The concentration ``kappa >= 0`` with ``I1(kappa) / I0(kappa) = a``.

    Solved with :func:`scipy.optimize.brentq` on ``[0, kappa_hi]``, where ``kappa_hi`` starts
    at ``2 / (1 - a) + 2`` (above the root: ``A(k) ~ 1 - 1/(2k)`` for large ``k``) and is
    doubled until it brackets the root.

    Parameters
    ----------
    a : float
        Mean harmonic ``E[cos h d]``.

    Returns
    -------
    float
        ``0`` for ``a <= 0`` (no measurable concentration), ``inf`` for ``a >= 1``, else the
        root.

    Raises
    ------
    InputError
        ``a`` is NaN.
    """
    a = float(a)
    if math.isnan(a):
        raise InputError("a: expected a mean cosine, got NaN")
    if a <= 0.0:
        return 0.0
    if a >= 1.0:
        return math.inf
    hi = 2.0 / (1.0 - a) + 2.0
    while expected_modulation(hi) < a:
        hi *= 2.0
    return float(optimize.brentq(lambda k: expected_modulation(k) - a, 0.0, hi,
                                 xtol=1e-12, rtol=1e-10))


def _clean(residual, kappa):
    d = np.asarray(residual, dtype=np.float64).ravel()
    k = np.asarray(kappa, dtype=np.float64).ravel()
    if d.shape != k.shape:
        raise InputError(f"kappa: expected one value per residual ({d.size}), got {k.size}")
    ok = np.isfinite(d) & np.isfinite(k)
    if np.any(k[ok] < 0.0):
        raise InputError("kappa: expected non-negative concentrations")
    return d[ok], k[ok], int(d.size - ok.sum())


def _bin_row(cos_h, kappa):
    """Predicted and measured expected modulation and concentration of one bin."""
    n = cos_h.size
    pred = expected_modulation(kappa)
    predicted = float(pred.mean())
    measured = float(cos_h.mean())
    measured_err = float(cos_h.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    kappa_fit = inverse_expected_modulation(measured)
    # error of A^-1(measured) from the derivative of A at the solution
    if 0.0 < kappa_fit < math.inf:
        kappa_fit_err = measured_err / expected_modulation_derivative(kappa_fit)
    else:
        kappa_fit_err = math.inf
    kappa_equiv = inverse_expected_modulation(predicted)
    ratio = measured / predicted if predicted > 0 else math.inf
    return {
        "n": int(n),
        "kappa_min": float(kappa.min()), "kappa_max": float(kappa.max()),
        "kappa_mean": float(kappa.mean()), "kappa_equivalent": kappa_equiv,
        "predicted": predicted, "measured": measured, "measured_err": measured_err,
        "ratio": ratio,
        "ratio_err": measured_err / predicted if predicted > 0 else math.inf,
        "pull": (measured - predicted) / measured_err if measured_err > 0 else math.inf,
        "kappa_fit": kappa_fit, "kappa_fit_err": kappa_fit_err,
        "kappa_ratio": kappa_fit / kappa_equiv if kappa_equiv > 0 else math.inf,
    }


def kappa_calibration(residual, kappa, *, harmonic: int = 2, n_bins: int = 10,
                      min_count: int = 200) -> dict:
    """Compare predicted von Mises concentrations with the measured spread of residuals.

    Events with a finite residual and ``kappa`` are sorted by ``kappa`` and split into
    ``n_bins`` bins of (nearly) equal counts -- quantile bins, robust to ties -- with at least
    ``min_count`` events each (fewer bins when there are not enough events).  In each bin,
    with ``c_i = cos(h d_i)``::

        predicted     = mean A(kappa_i),            A = I1 / I0
        measured      = mean c_i,                   measured_err = std(c_i) / sqrt(n)
        ratio         = measured / predicted,       ratio_err = measured_err / predicted
        pull          = (measured - predicted) / measured_err
        kappa_fit     = A^-1(measured)              (brentq; 0 if measured <= 0)
        kappa_fit_err = measured_err / A'(kappa_fit)
        kappa_equivalent = A^-1(predicted)          (the bin's predicted concentration,
                                                     comparable with kappa_fit)

    and ``kappa_mean`` is the plain mean of the predicted ``kappa`` (``kappa_equivalent`` is
    below it by Jensen's inequality when the bin is wide).  The summary over bins with at
    least ``min_count`` events: ``chi2 = sum pull^2`` with ``ndof`` = number of such bins and
    its p-value, ``max_abs_ratio_dev = max |ratio - 1|``, ``max_abs_pull = max |pull|``
    (``max_abs_ratio_dev`` is dominated by noise in low-``kappa`` bins, where ``predicted``
    is small: judge it with ``ratio_err``), and over all events the global
    ``ratio = mean c_i / mean A(kappa_i)`` with its error.

    Parameters
    ----------
    residual : array_like
        Reconstructed minus true angle, radians (any branch: only ``cos(h d)`` enters).
    kappa : array_like
        Predicted concentrations of the ``h``-th harmonic, >= 0, one per residual.  Events
        with a non-finite residual or ``kappa`` are ignored (counted in ``n_excluded``).
    harmonic : int, optional
        ``h``; 2 for a polarimeter (angles modulo pi).
    n_bins : int, optional
        Number of quantile bins (upper limit), >= 1.
    min_count : int, optional
        Least number of events per bin, >= 2.

    Returns
    -------
    dict
        ``harmonic``, ``n``, ``n_excluded``, ``min_count``, ``bins`` (list of per-bin dicts as
        above, in increasing ``kappa``), ``chi2``, ``ndof``, ``p_value``,
        ``max_abs_ratio_dev``, ``max_abs_pull``, ``ratio``, ``ratio_err``, ``predicted``,
        ``measured``, ``measured_err`` (plain Python numbers).

    Raises
    ------
    InputError
        Mismatched lengths, negative ``kappa``, bad ``harmonic``/``n_bins``/``min_count``, or
        fewer than ``2`` usable events.
    """
    for name, value, low in (("harmonic", harmonic, 1), ("n_bins", n_bins, 1),
                             ("min_count", min_count, 2)):
        if isinstance(value, bool) or int(value) != value or value < low:
            raise InputError(f"{name}: expected an integer >= {low}, got {value!r}")
    d, k, n_excluded = _clean(residual, kappa)
    n = d.size
    if n < 2:
        raise InputError(f"kappa_calibration: expected at least 2 events with a finite residual "
                         f"and kappa, got {n}")
    cos_h = np.cos(int(harmonic) * d)
    order = np.argsort(k, kind="stable")
    n_use = max(1, min(int(n_bins), n // int(min_count)))
    bins = [_bin_row(cos_h[idx], k[idx]) for idx in np.array_split(order, n_use)]
    good = [b for b in bins if b["n"] >= min_count and math.isfinite(b["pull"])]
    chi2 = float(sum(b["pull"] ** 2 for b in good))
    ndof = len(good)
    predicted = float(expected_modulation(k).mean())
    measured = float(cos_h.mean())
    measured_err = float(cos_h.std(ddof=1) / math.sqrt(n))
    return {
        "harmonic": int(harmonic), "n": int(n), "n_excluded": n_excluded,
        "min_count": int(min_count), "bins": bins,
        "chi2": chi2, "ndof": ndof,
        "p_value": float(stats.chi2.sf(chi2, ndof)) if ndof else math.nan,
        "max_abs_ratio_dev": max((abs(b["ratio"] - 1.0) for b in good), default=math.nan),
        "max_abs_pull": max((abs(b["pull"]) for b in good), default=math.nan),
        "predicted": predicted, "measured": measured, "measured_err": measured_err,
        "ratio": measured / predicted if predicted > 0 else math.inf,
        "ratio_err": measured_err / predicted if predicted > 0 else math.inf,
    }
