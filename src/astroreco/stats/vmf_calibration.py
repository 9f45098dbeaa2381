"""Calibration of von Mises-Fisher concentrations of 3D directions (the TPC seed's Figure 6).

A von Mises-Fisher estimate of concentration ``kappa`` on the sphere S^2 predicts the mean
angle to the truth (:func:`vmf_expected_angle`) and the mean cosine
``A_3(kappa) = coth kappa - 1/kappa`` (:func:`vmf_mean_cosine`); :func:`vmf_calibration`
compares both with the events, per bin of predicted ``kappa`` (equal counts, or the
equal-width bins of :func:`kappa_bin_edges`), and sets the result against the test's own
noise (:func:`vmf_calibration_null`, with head-tail flips :func:`fit_flip_probability`).
The maps that recalibrate ``kappa`` on validation events are :mod:`astroreco.stats.kappa_maps`.

The same test for angles known modulo ``2 pi / h`` (IXPE) is
:mod:`astroreco.stats.calibration`.  Nothing here knows a detector: the functions take
angles (radians) and concentrations (dimensionless).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special

from astroreco.errors import InputError

__all__ = ["vmf_calibration", "vmf_expected_angle", "vmf_kappa_from_mean_cosine",
           "vmf_mean_cosine", "vmf_mean_cosine_derivative", "kappa_bin_edges",
           "sample_vmf_angle", "vmf_calibration_null", "fit_flip_probability",
           "vmf_beyond_90"]


def _kappa_array(kappa):
    k = np.asarray(kappa, dtype=np.float64)
    if not np.all(np.isfinite(k)) or np.any(k < 0.0):
        raise InputError("kappa: expected finite non-negative concentrations")
    return k


def _as_output(x):
    return float(x) if np.ndim(x) == 0 else x


def vmf_expected_angle(kappa):
    r"""Mean angle (radians) between a von Mises-Fisher (S^2) sample and its mean direction.

    With the density of the angle :math:`p(\theta) = \kappa / (2 \sinh\kappa)\,
    e^{\kappa\cos\theta} \sin\theta` on :math:`[0, \pi]` (TPC seed, Section 4.3):

    .. math:: E[\theta] = \frac{\pi}{2 \sinh\kappa} \left(I_0(\kappa) - e^{-\kappa}\right)

    Computed without overflow: for ``kappa > 1`` as
    ``pi (i0e(k) - exp(-2k)) / (-expm1(-2k))`` (numerator and denominator divided by
    ``e^k``; tends to ``sqrt(pi / (2 kappa))``); for ``kappa <= 1`` as
    ``pi (-expm1(-k) + (I0(k) - 1)) / (2 sinh k)``, with ``I0(k) - 1 = k^2/4 + k^4/64`` below
    ``1e-2``, so that ``kappa -> 0`` gives ``pi / 2`` (a uniform direction) without
    cancellation.

    Parameters
    ----------
    kappa : float or array_like
        Concentrations, finite and >= 0.

    Returns
    -------
    float or numpy.ndarray
        Mean angles in ``(0, pi/2]`` radians, a float for a scalar input.

    Examples
    --------
    >>> round(vmf_expected_angle(0.0), 12) == round(math.pi / 2, 12)
    True
    >>> round(vmf_expected_angle(1e6) / math.sqrt(math.pi / 2e6), 6)
    1.0
    """
    k = _kappa_array(kappa)
    small = k <= 1.0
    ks = np.where(small, k, 1.0)
    kl = np.where(small, 2.0, k)
    i0m1 = np.where(ks < 1e-2, ks * ks / 4.0 + ks ** 4 / 64.0, special.i0(ks) - 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(ks > 0.0, np.pi * (-np.expm1(-ks) + i0m1) / (2.0 * np.sinh(ks)),
                       0.5 * np.pi)
    high = np.pi * (special.i0e(kl) - np.exp(-2.0 * kl)) / -np.expm1(-2.0 * kl)
    return _as_output(np.where(small, low, high))


# Langevin function coth k - 1/k and its derivative: Taylor series below this kappa
_SERIES_MAX = 0.1


def vmf_mean_cosine(kappa):
    r"""Mean cosine of the angle between a von Mises-Fisher (S^2) sample and its mean.

    .. math:: A_3(\kappa) = E[\cos\theta] = \coth\kappa - 1/\kappa

    (Mardia & Jupp 2000, Section 9.3.2; the Langevin function).  Below ``kappa = 0.1`` the
    series ``k/3 - k^3/45 + 2k^5/945 - k^7/4725 + 2k^9/93555`` (no cancellation), above it
    ``1/tanh(k) - 1/k`` (tends to ``1 - 1/kappa``, no overflow).

    Parameters
    ----------
    kappa : float or array_like
        Concentrations, finite and >= 0.

    Returns
    -------
    float or numpy.ndarray
        Values in ``[0, 1)``, a float for a scalar input.
    """
    k = _kappa_array(kappa)
    small = k < _SERIES_MAX
    ks = np.where(small, k, 0.0)
    k2 = ks * ks
    series = ks * (1 / 3 + k2 * (-1 / 45 + k2 * (2 / 945 + k2 * (-1 / 4725 + k2 * 2 / 93555))))
    kl = np.where(small, 1.0, k)
    return _as_output(np.where(small, series, 1.0 / np.tanh(kl) - 1.0 / kl))


def vmf_mean_cosine_derivative(kappa):
    r"""Derivative of :func:`vmf_mean_cosine`, the variance of ``cos theta`` under the vMF.

    .. math:: A_3'(\kappa) = 1/\kappa^2 - 1/\sinh^2\kappa, \qquad A_3'(0) = 1/3 ;

    the Fisher information of ``n`` angles to a known mean is ``n A_3'(kappa)``.  Series
    ``1/3 - k^2/15 + 2k^4/189 - k^6/675`` below ``kappa = 0.1``, and
    ``1/k^2 - 4 e^{-2k} / expm1(-2k)^2`` above (no overflow).
    """
    k = _kappa_array(kappa)
    small = k < _SERIES_MAX
    ks = np.where(small, k, 0.0)
    k2 = ks * ks
    series = 1 / 3 + k2 * (-1 / 15 + k2 * (2 / 189 - k2 / 675))
    kl = np.where(small, 1.0, k)
    large = 1.0 / (kl * kl) - 4.0 * np.exp(-2.0 * kl) / np.expm1(-2.0 * kl) ** 2
    return _as_output(np.where(small, series, large))


# above this kappa, A_3 = 1 - 1/kappa to within 2 e^{-2 kappa} < 1e-21: invert it exactly
_ASYMPTOTIC_KAPPA = 25.0


def vmf_kappa_from_mean_cosine(c):
    r"""Inverse of :func:`vmf_mean_cosine`: the ``kappa`` with ``coth kappa - 1/kappa = c``.

    For angles ``theta_i`` to a *known* mean direction this is the maximum-likelihood
    concentration: the score of :math:`\sum_i \log C_3(\kappa) + \kappa \cos\theta_i` vanishes
    at :math:`A_3(\kappa) = \overline{\cos\theta}`.  Solved by Newton's method from the
    approximation ``c (3 - c^2) / (1 - c^2)`` (Banerjee et al. 2005); ``A_3`` is increasing
    and concave, so the iterates approach the root from below after the first step.  Where
    ``c >= 1 - 1/25`` the root is ``1 / (1 - c)`` to double precision.

    Parameters
    ----------
    c : float or array_like
        Mean cosines.

    Returns
    -------
    float or numpy.ndarray
        ``0`` where ``c <= 0`` (no measurable concentration), ``inf`` where ``c >= 1``,
        ``nan`` where ``c`` is NaN, else the root; a float for a scalar input.
    """
    c = np.asarray(c, dtype=np.float64)
    inner = (c > 0.0) & (c < 1.0)
    ci = np.where(inner, c, 0.5)
    asym = ci >= 1.0 - 1.0 / _ASYMPTOTIC_KAPPA
    k = ci * (3.0 - ci * ci) / (1.0 - ci * ci)
    newton = ~asym
    for _ in range(100):
        f = np.asarray(vmf_mean_cosine(k)) - ci
        step = np.where(newton, f / np.asarray(vmf_mean_cosine_derivative(k)), 0.0)
        k = np.maximum(k - step, 0.1 * k)
        if np.all(np.abs(step) <= 1e-14 * k):
            break
    k = np.where(asym, 1.0 / (1.0 - ci), k)
    out = np.where(inner, k, np.where(c >= 1.0, np.inf, 0.0))
    out = np.where(np.isnan(c), np.nan, out)
    return _as_output(out)


def _clean_vmf(angle, kappa, where: str = "vmf_calibration"):
    a = np.asarray(angle, dtype=np.float64)
    k = np.asarray(kappa, dtype=np.float64)
    if a.ndim != 1 or k.shape != a.shape:
        raise InputError(f"{where}: expected angle and kappa as 1D arrays of one "
                         f"length, got shapes {a.shape} and {k.shape}")
    if a.size == 0:
        raise InputError(f"{where}: expected at least one event, got none")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(k))):
        raise InputError(f"{where}: expected finite angles and kappa, got NaN/inf")
    if np.any(k <= 0.0):
        raise InputError(f"{where}: expected kappa > 0 (binned in log kappa)")
    if np.any(a < 0.0) or np.any(a > np.pi):
        raise InputError(f"{where}: expected angles in [0, pi] radians")
    return a, k


def _vmf_row(angle, kappa, lo, hi, min_count, centre_kind="geometric"):
    n = angle.size
    if centre_kind == "midpoint":
        centre = 0.5 * (float(lo) + float(hi))
    else:  # the geometric mean, kept inside the bin (rounding can put it an ulp outside)
        centre = float(np.clip(np.exp(np.mean(np.log(kappa))), kappa.min(), kappa.max()))
    cos = np.cos(angle)
    mean_cos = float(np.mean(cos))
    k_equiv = float(vmf_kappa_from_mean_cosine(np.mean(vmf_mean_cosine(kappa))))
    k_fit = float(vmf_kappa_from_mean_cosine(mean_cos))
    flipped = angle > 0.5 * np.pi
    k_core = float(vmf_kappa_from_mean_cosine(np.mean(cos[~flipped]))) \
        if not flipped.all() else math.nan
    k_err = (1.0 / math.sqrt(n * vmf_mean_cosine_derivative(k_fit))
             if math.isfinite(k_fit) else math.inf)
    return {
        "n": int(n), "kappa_lo": float(lo), "kappa_hi": float(hi), "kappa_centre": centre,
        "mean_angle": float(angle.mean()),
        "mean_angle_err": float(angle.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf,
        "expected_angle": float(np.mean(vmf_expected_angle(kappa))),
        "mean_cos": mean_cos, "kappa_equivalent": k_equiv,
        "kappa_fit": k_fit, "kappa_fit_err": float(k_err),
        "ratio": k_fit / centre, "ratio_err": float(k_err) / centre,
        "ratio_equivalent": k_fit / k_equiv,
        "n_flipped": int(flipped.sum()), "kappa_fit_core": k_core,
        "ratio_core": k_core / centre,
        "enough": bool(n >= min_count),
    }


def vmf_calibration(angle, kappa, *, n_bins: int = 10, min_count: int = 200,
                    edges=None, centre: str = "geometric") -> list[dict]:
    r"""Compare predicted von Mises-Fisher concentrations with the angles to the truth.

    The TPC seed's calibration tests (its Figure 6).  Events are binned in ``kappa`` --
    ``n_bins`` bins of (nearly) equal counts by default (sorted by ``kappa``, so equal-count
    in ``log kappa`` as well), or the bins between the given ``edges``.  Per bin of ``n``
    events::

        kappa_centre   = exp(mean log kappa_i)           geometric mean of the bin, or
                         (lo + hi) / 2                   its midpoint (centre="midpoint")
        mean_angle     = mean theta_i,                   mean_angle_err = std / sqrt(n)
        expected_angle = mean vmf_expected_angle(kappa_i)
        mean_cos       = mean cos theta_i
        kappa_fit      = A_3^-1(mean_cos)                 maximum likelihood, known mean
        kappa_fit_err  = 1 / sqrt(n A_3'(kappa_fit))     from the Fisher information
        ratio          = kappa_fit / kappa_centre,       ratio_err = kappa_fit_err / centre
        kappa_equivalent = A_3^-1(mean A_3(kappa_i))     what kappa_fit is if calibrated
        ratio_equivalent = kappa_fit / kappa_equivalent
        n_flipped      = events with theta > pi/2 (read backwards, or turned hard early)
        kappa_fit_core = A_3^-1(mean cos theta_i of the others),  ratio_core = / centre
        enough         = n >= min_count

    with ``A_3(k) = coth k - 1/k``.  Fitting the distribution of ``cos theta_i`` with the
    vMF density, as the seed does, has the same maximum.  A calibrated model has
    ``ratio = 1``; an over-confident one (``kappa`` too large) ``ratio < 1``.  Within a wide
    bin ``kappa_fit`` tends to the harmonic mean of the ``kappa_i`` (``1 - A_3 ~ 1/kappa``),
    below the geometric one: by ``ln r / (sqrt(r) - 1/sqrt(r))`` for ``kappa`` spread
    uniformly in ``log`` over a factor ``r`` (3% at ``r = 2.3``, ten bins over ``0.5-2000``);
    ``kappa_fit / kappa_equivalent`` has no such bias.  Below ``kappa ~ 3``, where ``A_3``
    is nearly linear, ``kappa_fit`` tends to the arithmetic mean instead: the geometric mean
    of a bin reaching down to ``kappa ~ 0.01`` (the lowest of equal-width bins) sits far below
    it, which the seed's bin centre (``centre="midpoint"``, for equal-width ``edges``) does
    not.

    One event with its head and tail swapped (``theta ~ pi``) adds ``2 / n`` to
    ``1 - mean_cos``: at ``kappa = 40`` a flip rate of 0.3% lowers ``kappa_fit`` by a fifth.
    ``n_flipped`` and ``kappa_fit_core`` (the fit without them; biased high below
    ``kappa ~ 3``, where a calibrated vMF puts events beyond ``pi/2``) tell the core's
    calibration from the flips'.

    Parameters
    ----------
    angle : array_like
        ``(n,)`` angles between predicted and true directions, radians in ``[0, pi]``.
    kappa : array_like
        ``(n,)`` predicted concentrations, > 0.
    n_bins : int, optional
        Equal-count bins (when ``edges`` is not given), >= 1.
    min_count : int, optional
        Least number of events for a bin to count as ``enough``, >= 1.
    edges : array_like, optional
        Increasing positive bin edges in ``kappa``; events outside ``[edges[0], edges[-1]]``
        are left out, and so are bins with no event.
    centre : {"geometric", "midpoint"}
        The bin centre ``ratio`` compares with: the geometric mean of the bin's ``kappa``,
        or the midpoint of its edges (the seed's Figure 6b; needs ``edges``).

    Returns
    -------
    list of dict
        One row per bin, in increasing ``kappa``, with the keys above and ``kappa_lo``,
        ``kappa_hi`` (the bin's extent: its smallest and largest ``kappa``, or its edges);
        plain Python numbers (``kappa_fit`` is ``inf`` when every angle is 0).

    Raises
    ------
    InputError
        Mismatched lengths, no event, non-finite values, ``kappa <= 0``, angles outside
        ``[0, pi]``, bad ``n_bins``, ``min_count`` or ``edges``.
    """
    for name, value in (("n_bins", n_bins), ("min_count", min_count)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise InputError(f"{name}: expected an integer >= 1, got {value!r}")
    if centre not in ("geometric", "midpoint"):
        raise InputError(f"centre {centre!r}: expected 'geometric' or 'midpoint'")
    if centre == "midpoint" and edges is None:
        raise InputError("centre 'midpoint': expected bin edges")
    a, k = _clean_vmf(angle, kappa)
    if edges is None:
        order = np.argsort(k, kind="stable")
        parts = [idx for idx in np.array_split(order, min(int(n_bins), k.size)) if idx.size]
        return [_vmf_row(a[idx], k[idx], k[idx].min(), k[idx].max(), min_count)
                for idx in parts]
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)) or e[0] <= 0 \
            or np.any(np.diff(e) <= 0):
        raise InputError("edges: expected at least 2 increasing, finite, positive kappa values")
    which = np.clip(np.searchsorted(e, k, side="right") - 1, 0, e.size - 2)
    inside = (k >= e[0]) & (k <= e[-1])
    rows = []
    for b in range(e.size - 1):
        sel = inside & (which == b)
        if sel.any():
            rows.append(_vmf_row(a[sel], k[sel], e[b], e[b + 1], min_count, centre))
    return rows


def sample_vmf_angle(kappa, rng: np.random.Generator) -> np.ndarray:
    """Angles (radians) to the mean direction of one von Mises-Fisher (S^2) draw per
    ``kappa``: ``cos theta = 1 + log(1 + (1 - u) (exp(-2 kappa) - 1)) / kappa`` with ``u``
    uniform, written with ``log1p``/``expm1`` so that it stays exact down to ``kappa ~ 0``
    (where ``cos theta`` is uniform)."""
    k = np.maximum(_kappa_array(kappa), 1e-300)
    u = rng.random(k.shape)
    c = 1.0 + np.log1p((1.0 - u) * np.expm1(-2.0 * k)) / k
    return np.arccos(np.clip(c, -1.0, 1.0))


def vmf_calibration_null(kappa, *, n_draws: int = 200, seed: int = 0, flip_probability=None,
                         **calibration):
    """What :func:`vmf_calibration` finds for a perfectly calibrated model with these ``kappa``.

    The calibration test compares per-bin fits with their bin centres, and a bin of a few
    hundred events scatters: ``kappa_fit`` has a relative error of ``1 / sqrt(n)`` at large
    ``kappa``, and a wide bin's centre (``centre="midpoint"``) is not where an honest
    ``kappa_fit`` lands.  This draws ``n_draws`` sets of angles from the predicted
    distributions themselves (:func:`sample_vmf_angle`; the bins, which depend on ``kappa``
    alone, stay the same) and returns, per draw, the largest ``|ratio - 1|`` over the bins
    holding at least ``min_count`` events.  The observed largest deviation set against this
    distribution says whether a failing bin is more than the test's own noise.  The
    remaining keyword arguments (``n_bins``, ``min_count``, ``edges``, ``centre``) are
    :func:`vmf_calibration`'s.

    ``flip_probability`` (per event, e.g. :func:`fit_flip_probability`) makes the model a
    mixture: event ``i`` has its head and tail swapped (``theta -> pi - theta``) with
    probability ``p_i``, and the rest follow a vMF of the concentration that keeps the
    mixture's mean cosine at ``A_3(kappa_i)`` -- ``kappa_i`` still calibrated in the sense
    the test fits it, but a bin's few flips now scatter as a Poisson count, each moving
    ``kappa_fit`` by ``2 / n`` in ``1 - mean_cos``.  A ``p_i`` above ``(1 - A_3(kappa_i))
    / 2``, more flips than ``kappa_i`` leaves room for, is capped there (the core then
    exact).  The flips are drawn from their own stream: all-zero probabilities give the
    plain null's draws exactly, and the two nulls of one seed are paired.

    Returns
    -------
    ndarray
        ``(n_draws,)`` largest deviations; NaN where no bin holds ``min_count`` events.
    """
    if isinstance(n_draws, bool) or int(n_draws) != n_draws or n_draws < 1:
        raise InputError(f"n_draws: expected an integer >= 1, got {n_draws!r}")
    k = _kappa_array(kappa)
    rng = np.random.default_rng(seed)
    k_core, flip, flip_rng = k, None, None
    if flip_probability is not None:
        flip = np.asarray(flip_probability, np.float64)
        if flip.shape != k.shape:
            raise InputError(f"flip_probability: expected one value per kappa ({k.shape}), "
                             f"got shape {flip.shape}")
        bad = ~((flip >= 0) & (flip < 0.5))
        if bad.any():
            raise InputError(f"flip_probability: expected values in [0, 0.5), got "
                             f"{flip[bad][0]!r}")
        # the core's mean cosine is A_3(kappa) / (1 - 2p), at most 1 (an exact core)
        a3 = np.asarray(vmf_mean_cosine(k))
        flip = np.minimum(flip, 0.5 * (1.0 - a3))
        c = a3 / (1.0 - 2.0 * flip)
        k_core = np.where(c < 1.0 - 1e-12,
                          vmf_kappa_from_mean_cosine(np.minimum(c, 1.0 - 1e-12)), 1e12)
        flip_rng = np.random.default_rng([int(seed), 1])
    out = np.empty(int(n_draws))
    for i in range(int(n_draws)):
        angle = sample_vmf_angle(k_core, rng)
        if flip is not None:
            angle = np.where(flip_rng.random(k.size) < flip, np.pi - angle, angle)
        rows = vmf_calibration(angle, k, **calibration)
        dev = [abs(r["ratio"] - 1.0) for r in rows if r["enough"]]
        out[i] = max(dev) if dev else math.nan
    return out


def vmf_beyond_90(kappa, flip_probability=0.0):
    """Fraction of events more than 90 deg from the mean direction: ``1 / (e^kappa + 1)``
    for a vMF of concentration ``kappa`` (its own tail), ``f + (1 - 2 f) / (e^kappa + 1)``
    with head-tail flips of probability ``f``."""
    f = np.asarray(flip_probability, np.float64)
    return _as_output(f + (1.0 - 2.0 * f) * special.expit(-_kappa_array(kappa)))


def fit_flip_probability(angle, kappa):
    """The probability of a head-tail flip as a function of ``kappa``: a logistic
    regression on ``log kappa`` and its square, fitted by maximum likelihood to the events
    beyond ``pi/2``.  A calibrated vMF puts ``t = 1 / (e^kappa + 1)`` of its events there on
    its own; with flips of probability ``f`` the fraction is ``f + (1 - 2 f) t``, and ``f``
    alone is returned -- as a function ``kappa -> f`` (at most 0.49).

    For :func:`vmf_calibration_null`'s mixture; fitted on the events whose test it gives the
    noise of, it is a plug-in estimate of their flip rate, not a prediction.
    """
    a, k = _clean_vmf(angle, kappa, "fit_flip_probability")
    beyond = (a > 0.5 * np.pi).astype(np.float64)
    x = np.log(k)
    mu, sd = x.mean(), max(x.std(), 1e-12)
    z = (x - mu) / sd
    design = np.stack([np.ones_like(z), z, z * z], 1)
    tail = np.asarray(vmf_beyond_90(k))

    def nll_grad(w):
        f = special.expit(design @ w)
        q = np.clip(f + (1.0 - 2.0 * f) * tail, 1e-300, 1.0 - 1e-16)
        nll = -float(np.sum(beyond * np.log(q) + (1.0 - beyond) * np.log1p(-q)))
        dq = (1.0 - 2.0 * tail) * f * (1.0 - f)               # dq / d(design @ w)
        g = -(beyond / q - (1.0 - beyond) / (1.0 - q)) * dq
        return nll, design.T @ g

    rate = min(max(beyond.mean() - tail.mean(), 0.5 / k.size), 0.49)
    w0 = np.array([math.log(rate / (1 - rate)), 0.0, 0.0])
    w = optimize.minimize(nll_grad, w0, jac=True, method="L-BFGS-B").x

    def probability(kappa_new):
        zz = (np.log(_kappa_array(kappa_new)) - mu) / sd
        return np.minimum(special.expit(w[0] + w[1] * zz + w[2] * zz * zz), 0.49)

    return probability


def kappa_bin_edges(kappa, n_bins: int = 12, quantile: float = 0.99) -> np.ndarray:
    """Edges of equal-width ``kappa`` bins for the calibration test (the seed's Figure 6b):
    the round width (1, 2, 2.5 or 5 x 10^k) nearest to giving ``n_bins`` bins up to the
    ``quantile`` of ``kappa``, continued to the largest ``kappa``; the first edge is the
    smallest ``kappa`` (edges must be positive), so every event falls in a bin."""
    k = np.asarray(kappa, dtype=np.float64)
    if k.ndim != 1 or k.size == 0 or not np.all(np.isfinite(k)) or np.any(k <= 0):
        raise InputError("kappa_bin_edges: expected a non-empty 1D array of finite kappa > 0")
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise InputError(f"n_bins: expected an integer >= 1, got {n_bins!r}")
    if k.min() == k.max():
        return np.array([k.min(), k.min() * (1.0 + 1e-9) + 1e-300])
    top = float(np.quantile(k, quantile))
    raw = max(top / n_bins, 1e-12)
    mag = 10.0 ** math.floor(math.log10(raw))
    width = min((m * mag for m in (1.0, 2.0, 2.5, 5.0, 10.0)),
                key=lambda w: abs(math.log(w / raw)))
    hi = math.ceil(k.max() / width) * width
    edges = np.arange(0.0, hi + 0.5 * width, width)
    edges = edges[edges > k.min()]
    if edges.size == 0 or edges[-1] < k.max():
        edges = np.append(edges, k.max())
    return np.concatenate([[k.min()], edges])
