"""Directional statistics shared by every detector: angle checks, wrapping, reconstruction
efficiency within a tolerance, harmonic (spurious-modulation) analysis, the expected
modulation of a von Mises estimate, sampling of modulated angles, and the cosine distance
of 3D directions.

All angles are in radians.  Moved out of the IXPE Stokes module because nothing here is
specific to one detector; :mod:`astroreco.detectors.ixpe.stokes` re-exports these names.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from astroreco.errors import InputError


def check_angles(phi, name="phi"):
    """``phi`` as a flat float64 array; non-empty and finite."""
    arr = np.asarray(phi, dtype=np.float64).ravel()
    if arr.size == 0:
        raise InputError(f"{name}: expected at least one angle, got an empty array")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise InputError(f"{name}: expected finite angles in radians, got {bad} NaN/inf value(s)")
    return arr


def wrap_half_pi(angle):
    """Wrap angles (radians) to ``(-pi/2, pi/2]``: the period of a polarization direction."""
    return 0.5 * np.pi - np.mod(0.5 * np.pi - np.asarray(angle, dtype=np.float64), np.pi)



# --------------------------------------------------------------------------------------------
# Reconstruction quality, systematics, helpers
# --------------------------------------------------------------------------------------------

def epsilon_within(phi_reco, phi_true, tolerance_deg=10.0):
    """Fraction of events reconstructed within a tolerance of the true emission angle.

    The difference is taken modulo pi (a track direction and its reverse give the same
    polarization information): ``d = phi_reco - phi_true`` wrapped to ``(-pi/2, pi/2]``, and an
    event counts when ``|d| <= tolerance``.  With ``f`` that fraction of ``N`` events the
    binomial error is ``sqrt(f (1 - f) / N)``.

    Parameters
    ----------
    phi_reco, phi_true : array_like
        Reconstructed and true emission angles in radians, of equal shape.
    tolerance_deg : float, optional
        Tolerance in degrees, in (0, 90]; default 10.

    Returns
    -------
    fraction, error : float
    """
    reco = check_angles(phi_reco, "phi_reco")
    true = check_angles(phi_true, "phi_true")
    if reco.size != true.size or np.shape(phi_reco) != np.shape(phi_true):
        raise InputError(f"phi_true: expected the shape of phi_reco {np.shape(phi_reco)}, "
                         f"got {np.shape(phi_true)}")
    tol = float(tolerance_deg)
    if not 0.0 < tol <= 90.0:
        raise InputError(f"tolerance_deg: expected a value in (0, 90] degrees, got {tol}")
    d = wrap_half_pi(reco - true)
    n = reco.size
    frac = float(np.count_nonzero(np.abs(d) <= math.radians(tol))) / n
    return frac, math.sqrt(frac * (1.0 - frac) / n)


def epsilon_10(phi_reco, phi_true):
    """:func:`epsilon_within` with the 10 degree tolerance; returns ``(fraction, error)``."""
    return epsilon_within(phi_reco, phi_true, 10.0)


def spurious_modulation(phi, *, harmonics=(2, 4, 6)) -> dict:
    """Harmonic amplitudes of an (expected unpolarized) angle distribution.

    For each harmonic ``k``::

        C_k = mean cos(k phi),  S_k = mean sin(k phi)
        amplitude_k = 2 sqrt(C_k^2 + S_k^2)
        error_k = sqrt(2 / N),  significance_k = amplitude_k / error_k
        p_value_k = exp(-N amplitude_k^2 / 4)         (Rayleigh test)
        phase_k = atan2(S_k, C_k) / k                  (radians, a maximum of the term)

    ``amplitude_k`` is the ``a`` of a density ``1 + a cos(k (phi - phase_k))``.  ``k = 2`` is
    the polarization modulation itself (spurious modulation when the source is unpolarized);
    ``k = 6`` picks up the hexagonal pixel grid, whose artefacts repeat every 60 degrees.  From
    noise alone the amplitude follows a Rayleigh distribution of mean ``sqrt(pi / N)``.

    Parameters
    ----------
    phi : array_like
        Emission angles in radians.
    harmonics : sequence of int, optional
        Positive harmonic numbers.

    Returns
    -------
    dict
        ``n``, ``noise_mean_amplitude`` and, for each ``k``, ``amplitude_k``,
        ``amplitude_err_k``, ``significance_k``, ``p_value_k``, ``phase_k`` (plain floats).
    """
    phi = check_angles(phi)
    ks = list(harmonics)
    if not ks or any(isinstance(k, bool) or int(k) != k or k < 1 for k in ks):
        raise InputError(f"harmonics: expected positive integers, got {harmonics!r}")
    n = phi.size
    err = math.sqrt(2.0 / n)
    out = {"n": float(n), "noise_mean_amplitude": math.sqrt(math.pi / n)}
    for k in ks:
        k = int(k)
        c = float(np.mean(np.cos(k * phi)))
        s = float(np.mean(np.sin(k * phi)))
        amp = 2.0 * math.hypot(c, s)
        out[f"amplitude_{k}"] = amp
        out[f"amplitude_err_{k}"] = err
        out[f"significance_{k}"] = amp / err
        out[f"p_value_{k}"] = math.exp(-n * amp * amp / 4.0)
        out[f"phase_{k}"] = math.atan2(s, c) / k
    return out


def expected_modulation(kappa):
    """Modulation retained by a von Mises angle estimate of concentration ``kappa``.

    A reconstruction that predicts the density ``exp(kappa cos 2(phi - phi_hat))`` for the
    emission angle keeps, on average, a fraction

    .. math:: E[\\cos 2(\\phi - \\hat\\phi)] = I_1(\\kappa) / I_0(\\kappa)

    of the modulation; it is the optimal per-event weight of a neural reconstruction
    (Peirson et al. 2021).  Computed as ``i1e(kappa) / i0e(kappa)``, the exponentially scaled
    Bessel functions, so it stays finite for any finite ``kappa`` (it tends to
    ``1 - 1 / (2 kappa)`` for large ``kappa`` and ``kappa / 2`` for small).

    Parameters
    ----------
    kappa : float or array_like
        Concentrations, finite and >= 0 (dimensionless).

    Returns
    -------
    float or numpy.ndarray
        Values in ``[0, 1)``, a float for a scalar input.
    """
    arr = np.asarray(kappa, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0.0):
        raise InputError("kappa: expected finite non-negative concentrations")
    ratio = special.i1e(arr) / special.i0e(arr)
    if arr.ndim == 0:
        return float(ratio)
    return ratio


def sample_modulated_angles(n, mu, phi0, rng):
    """Draw angles from the modulation curve ``1 + mu cos(2 (phi - phi0))`` on ``[-pi, pi)``.

    Uniform proposals are accepted with probability ``(1 + mu cos 2(phi - phi0)) / (1 + mu)``.
    A 100% polarized beam seen with modulation factor ``mu`` (or a source of polarization
    degree ``p`` with ``mu * p``) gives this curve.

    Parameters
    ----------
    n : int
        Number of angles, >= 0.
    mu : float
        Modulation amplitude in [0, 1].
    phi0 : float
        Phase (polarization angle) in radians.
    rng : numpy.random.Generator
        Random generator, e.g. ``np.random.default_rng(seed)``.

    Returns
    -------
    numpy.ndarray
        ``n`` angles in radians.
    """
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise InputError(f"n: expected a non-negative integer, got {n!r}")
    n = int(n)
    mu = float(mu)
    if not 0.0 <= mu <= 1.0:
        raise InputError(f"mu: expected a modulation amplitude in [0, 1], got {mu}")
    phi0 = float(phi0)
    if not math.isfinite(phi0):
        raise InputError(f"phi0: expected a finite angle in radians, got {phi0}")
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    out = np.empty(n)
    filled = 0
    while filled < n:
        need = n - filled
        batch = int(need * (1.0 + mu) * 1.1) + 16
        cand = rng.uniform(-np.pi, np.pi, batch)
        keep = rng.uniform(0.0, 1.0 + mu, batch) < 1.0 + mu * np.cos(2.0 * (cand - phi0))
        acc = cand[keep][:need]
        out[filled:filled + acc.size] = acc
        filled += acc.size
    return out


_KAPPA_GRID = np.geomspace(1e-6, 1e5, 4001)
_A_GRID = special.i1e(_KAPPA_GRID) / special.i0e(_KAPPA_GRID)


def concentration_from_modulation(a):
    """Vectorised inverse of :func:`expected_modulation`: ``kappa`` with ``I1/I0(kappa) = a``.

    Interpolated in ``log kappa`` on a dense grid (relative error below 1e-5 over
    ``1e-6 <= kappa <= 1e5``); ``a <= 0`` gives 0 and ``a`` beyond the grid uses the
    asymptote ``kappa = 1 / (2 (1 - a))``.

    Parameters
    ----------
    a : array_like
        Mean resultant lengths in ``[0, 1)``.

    Returns
    -------
    numpy.ndarray
        Concentrations (NaN where ``a`` is NaN).
    """
    a = np.asarray(a, dtype=np.float64)
    out = np.exp(np.interp(a, _A_GRID, np.log(_KAPPA_GRID)))
    high = a > _A_GRID[-1]
    out[high] = 0.5 / np.clip(1.0 - a[high], 1e-300, None)
    out[a <= 0] = 0.0
    out[np.isnan(a)] = np.nan
    return out


def cosine_distance(pred, truth) -> np.ndarray:
    """``1 - cos`` between predicted and true direction vectors, per row (any length > 0).

    The TPC seed paper's figure of merit: 0 for the right direction, 1 on average for a
    random one, 2 for the opposite one.
    """
    p = np.asarray(pred, np.float64)
    t = np.asarray(truth, np.float64)
    if p.shape != t.shape or p.ndim != 2:
        raise InputError(f"cosine_distance: expected two (n, d) arrays of one shape, got "
                         f"{p.shape} and {t.shape}")
    return 1.0 - np.sum(p * t, axis=1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(t, axis=1))


def efficiency_curve(cos_dist, score, cuts) -> dict:
    """Mean cosine distance left after dropping the events with the lowest score.

    The TPC seed's Figure 5: for each cut fraction ``f``, the ``round(f n)`` events with the
    lowest ``score`` (e.g. the predicted concentration ``kappa``: the least certain) are
    dropped (among equal scores, the later events first), and the mean of ``cos_dist`` over
    the rest is taken.
    At least one event is always kept.

    Parameters
    ----------
    cos_dist : array_like
        ``(n,)`` per-event cosine distances (:func:`cosine_distance`), finite.
    score : array_like
        ``(n,)`` per-event scores, finite; higher means more trusted.
    cuts : array_like
        Fractions of events to drop, each in ``[0, 1)``.

    Returns
    -------
    dict
        ``cut`` (the fractions), ``mean_cos_dist`` and ``n_kept``: arrays of ``len(cuts)``.

    Examples
    --------
    >>> c = efficiency_curve([0.9, 0.1, 0.5, 0.3], [1.0, 4.0, 2.0, 3.0], [0.0, 0.25, 0.5])
    >>> [round(float(x), 6) for x in c["mean_cos_dist"]], c["n_kept"].tolist()
    ([0.45, 0.3, 0.2], [4, 3, 2])
    """
    d = np.asarray(cos_dist, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    f = np.atleast_1d(np.asarray(cuts, dtype=np.float64))
    if d.ndim != 1 or s.shape != d.shape or d.size == 0:
        raise InputError(f"efficiency_curve: expected cos_dist and score as non-empty 1D "
                         f"arrays of one length, got shapes {d.shape} and {s.shape}")
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(s))):
        raise InputError("efficiency_curve: expected finite cos_dist and score, got NaN/inf")
    if f.ndim != 1 or f.size == 0 or not np.all((f >= 0.0) & (f < 1.0)):
        raise InputError(f"cuts: expected fractions in [0, 1), got {np.asarray(cuts).tolist()}")
    n = d.size
    ranked = d[np.argsort(-s, kind="stable")]  # most trusted first
    kept_sum = np.cumsum(ranked)
    n_kept = np.maximum(n - np.rint(f * n).astype(np.int64), 1)
    return {"cut": f, "mean_cos_dist": kept_sum[n_kept - 1] / n_kept, "n_kept": n_kept}
