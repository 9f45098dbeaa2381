"""Resolution and linearity of a regression against the truth, in bins of energy.

The calorimeter physicist's summary of a reconstruction: in each energy bin, a Gaussian fit
to the core of the residuals gives the resolution ``sigma`` (and the mean, the linearity);
``sigma(E)`` is then fitted with

.. math:: \\sigma(E) = \\sqrt{a^2 / E + b^2}

(the stochastic term ``a`` from shower fluctuations, the constant term ``b`` from
granularity and calibration), with the parameter errors from the fit covariance.
Nothing here knows a detector: residuals and energies in any units.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize

from astroreco.errors import InputError

__all__ = ["binned_resolution", "fit_stochastic_constant", "gaussian_core_fit"]


def gaussian_core_fit(residual, n_sigma: float = 2.5, max_iter: int = 10) -> dict:
    """Mean and width of the Gaussian core of ``residual``: iterated fits in
    ``mean +- n_sigma sigma`` of a truncated Gaussian (moments corrected for the
    truncation), starting from the median and 1.4826 x the median absolute deviation.

    Returns ``mean``, ``sigma``, their standard errors ``mean_err``, ``sigma_err`` and the
    fraction of events inside the final window (``core_fraction``).
    """
    from scipy import stats

    r = np.asarray(residual, np.float64)
    r = r[np.isfinite(r)]
    if r.size < 10:
        raise InputError(f"gaussian_core_fit: expected at least 10 finite residuals, "
                         f"got {r.size}")
    mean = float(np.median(r))
    sigma = float(1.4826 * np.median(np.abs(r - mean))) or float(r.std()) or 1e-12
    # variance of a Gaussian truncated at +-k sigma, relative to sigma^2
    k = n_sigma
    shrink = 1.0 - 2.0 * k * stats.norm.pdf(k) / (2.0 * stats.norm.cdf(k) - 1.0)
    inside = r
    for _ in range(max_iter):
        inside = r[np.abs(r - mean) <= k * sigma]
        if inside.size < 5:
            break
        new_mean = float(inside.mean())
        new_sigma = float(inside.std() / math.sqrt(shrink)) or sigma
        done = abs(new_sigma - sigma) < 1e-4 * sigma and abs(new_mean - mean) < 1e-4 * sigma
        mean, sigma = new_mean, new_sigma
        if done:
            break
    n = max(inside.size, 2)
    return {"mean": mean, "sigma": sigma, "mean_err": sigma / math.sqrt(n),
            "sigma_err": sigma / math.sqrt(2.0 * (n - 1)),
            "core_fraction": inside.size / r.size, "n": int(r.size)}


def binned_resolution(energy, residual, edges) -> list[dict]:
    """:func:`gaussian_core_fit` of ``residual`` in each energy bin ``[edges[i],
    edges[i+1])``; bins with fewer than 10 events are left out.  Each row also has
    ``e_lo``, ``e_hi``, ``e_mean`` (the bin's mean energy) and ``e_eff = 1 / mean(1/E)``,
    the energy at which ``a^2/E + b^2`` equals the bin's mean variance (fit against it)."""
    e = np.asarray(energy, np.float64)
    r = np.asarray(residual, np.float64)
    if e.shape != r.shape:
        raise InputError(f"binned_resolution: energy {e.shape} and residual {r.shape} differ")
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (e >= lo) & (e < hi) & np.isfinite(r)
        if sel.sum() < 10:
            continue
        rows.append({"e_lo": float(lo), "e_hi": float(hi), "e_mean": float(e[sel].mean()),
                     "e_eff": float(1.0 / np.mean(1.0 / e[sel])),
                     **gaussian_core_fit(r[sel])})
    return rows


def fit_stochastic_constant(e_mean, sigma, sigma_err) -> dict:
    """Least-squares fit of ``sigma(E) = sqrt(a^2/E + b^2)`` to per-bin resolutions.

    Returns ``a``, ``b``, ``a_err``, ``b_err`` (from the covariance, scaled by the reduced
    chi-square when it exceeds 1), ``chi2`` and ``ndof``.
    """
    e = np.asarray(e_mean, np.float64)
    s = np.asarray(sigma, np.float64)
    ds = np.maximum(np.asarray(sigma_err, np.float64), 1e-12)
    if e.size < 2:
        raise InputError("fit_stochastic_constant: expected at least 2 energy bins")

    def model(x, a, b):
        return np.sqrt(a * a / x + b * b)

    p0 = (max(s[0] * math.sqrt(e[0]), 1e-6), max(s[-1] * 0.5, 1e-6))
    popt, pcov = optimize.curve_fit(model, e, s, p0=p0, sigma=ds, absolute_sigma=True,
                                    maxfev=20000)
    chi2 = float((((model(e, *popt) - s) / ds) ** 2).sum())
    ndof = max(e.size - 2, 1)
    scale = max(chi2 / ndof, 1.0)
    err = np.sqrt(np.clip(np.diag(pcov) * scale, 0.0, None))
    return {"a": float(abs(popt[0])), "b": float(abs(popt[1])), "a_err": float(err[0]),
            "b_err": float(err[1]), "chi2": chi2, "ndof": int(ndof)}
