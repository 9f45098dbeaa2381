"""Fit of the modulation curve ``A + B cos^2(phi - phi0)`` to a histogram of emission angles.

The binned least-squares alternative to the Stokes estimate of
:func:`astroreco.detectors.ixpe.stokes.modulation_factor`, as in the modulation-curve plots
of the IXPE literature; the Stokes estimate gives its starting values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from astroreco.detectors.ixpe.stokes import _weights, polarization
from astroreco.errors import InputError
from astroreco.stats.directional import check_angles, wrap_half_pi


@dataclass(frozen=True, eq=False)
class ModulationFit:
    """Outcome of :func:`fit_modulation_curve`.

    Attributes
    ----------
    a, a_err, b, b_err : float
        Fitted ``A`` and ``B`` of ``A + B cos^2(phi - phi0)`` (counts, or summed weights, per
        bin) and their errors.
    phi0, phi0_err : float
        Fitted phase in ``(-pi/2, pi/2]`` radians and its error.
    mu, mu_err : float
        Modulation ``B / (2A + B)`` and its error propagated from the fit covariance.
    chi2 : float
        Chi-square of the fit.
    ndof : int
        Degrees of freedom, ``n_bins - 3``.
    bin_edges : numpy.ndarray
        ``n_bins + 1`` edges over ``[-pi, pi]`` (radians).
    counts, count_errors : numpy.ndarray
        Histogram contents and the errors used in the fit.
    """

    a: float
    a_err: float
    b: float
    b_err: float
    phi0: float
    phi0_err: float
    mu: float
    mu_err: float
    chi2: float
    ndof: int
    bin_edges: np.ndarray
    counts: np.ndarray
    count_errors: np.ndarray

    def model(self, phi):
        """The fitted curve ``A + B cos^2(phi - phi0)`` at angles ``phi`` (radians)."""
        phi = np.asarray(phi, dtype=np.float64)
        return self.a + self.b * np.cos(phi - self.phi0) ** 2

    def to_dict(self, include_histogram: bool = False) -> dict:
        """The scalar results as plain Python numbers; the histogram as lists on request."""
        names = ("a", "a_err", "b", "b_err", "phi0", "phi0_err", "mu", "mu_err", "chi2")
        out = {name: float(getattr(self, name)) for name in names}
        out["ndof"] = int(self.ndof)
        if include_histogram:
            out["bin_edges"] = [float(x) for x in self.bin_edges]
            out["counts"] = [float(x) for x in self.counts]
            out["count_errors"] = [float(x) for x in self.count_errors]
        return out


def _binned_model(lo, hi):
    """``A + B cos^2(phi - phi0)`` averaged over bins ``[lo, hi)``, and its Jacobian."""
    width = hi - lo

    def model(_x, a, b, phi0):
        s = (np.sin(2.0 * (hi - phi0)) - np.sin(2.0 * (lo - phi0))) / (2.0 * width)
        return a + 0.5 * b * (1.0 + s)

    def jac(_x, a, b, phi0):
        s = (np.sin(2.0 * (hi - phi0)) - np.sin(2.0 * (lo - phi0))) / (2.0 * width)
        ds = -(np.cos(2.0 * (hi - phi0)) - np.cos(2.0 * (lo - phi0))) / width
        return np.column_stack([np.ones_like(lo), 0.5 * (1.0 + s), 0.5 * b * ds])

    return model, jac


def fit_modulation_curve(phi, *, n_bins=100, weights=None) -> ModulationFit:
    """Fit the histogram of emission angles with ``A + B cos^2(phi - phi0)``.

    The angles are wrapped to ``[-pi, pi)`` (the curve has period pi, so this is exact) and
    histogrammed in ``n_bins`` equal bins of width ``h``; the model averaged over each bin
    ``[lo, hi)``, ``A + B/2 (1 + (sin 2(hi - phi0) - sin 2(lo - phi0)) / (2h))`` (which is
    ``A + B cos^2(phi_c - phi0)`` at the bin centre up to a factor ``sin(h)/h`` on the
    modulated term), is fitted by least squares
    (:func:`scipy.optimize.curve_fit`, ``absolute_sigma=True``) with the errors
    ``sqrt(max(n_k, 1))`` (or ``sqrt(sum w^2)`` per bin for weighted events, at least the mean
    ``w^2`` of one event).  The starting values come from the Stokes estimate.  Then::

        mu = B / (2A + B)
        sigma_mu^2 = g C g^T,  g = (-2B, 2A, 0) / (2A + B)^2

    with ``C`` the fit covariance.  A fit with ``B < 0`` is mapped to the equivalent
    ``A + B, -B, phi0 + pi/2``.  Least squares with data-derived errors is biased by about one
    count per bin; use well-filled bins (hundreds of counts) or :func:`~astroreco.detectors.ixpe.stokes.modulation_factor`.

    Parameters
    ----------
    phi : array_like
        Emission angles in radians.
    n_bins : int, optional
        Number of bins over ``[-pi, pi)``, at least 4.
    weights : array_like, optional
        Non-negative per-event weights.

    Returns
    -------
    ModulationFit
    """
    shape = np.shape(phi)
    phi = check_angles(phi)
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 4:
        raise InputError(f"n_bins: expected an integer >= 4, got {n_bins!r}")
    n_bins = int(n_bins)
    w = _weights(weights, shape)
    wrapped = np.mod(phi + np.pi, 2.0 * np.pi) - np.pi
    edges = np.linspace(-np.pi, np.pi, n_bins + 1)
    if weights is None:
        counts = np.histogram(wrapped, bins=edges)[0].astype(np.float64)
        errors = np.sqrt(np.maximum(counts, 1.0))
    else:
        counts = np.histogram(wrapped, bins=edges, weights=w)[0]
        sumw2 = np.histogram(wrapped, bins=edges, weights=w * w)[0]
        floor = float(np.mean(w * w))
        errors = np.sqrt(np.maximum(sumw2, floor))

    start = polarization(phi, weights=w)
    m0 = min(start.pd, 0.99)
    mean_count = float(counts.mean())
    p0 = (mean_count * (1.0 - m0), 2.0 * mean_count * m0, start.pa)
    model, jac = _binned_model(edges[:-1], edges[1:])
    popt, pcov = optimize.curve_fit(model, edges[:-1], counts, p0=p0, sigma=errors,
                                    absolute_sigma=True, jac=jac, method="lm")
    a, b, phi0 = (float(x) for x in popt)
    if b < 0.0:
        transform = np.array([[1.0, 1.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
        a, b, phi0 = a + b, -b, phi0 + 0.5 * np.pi
        pcov = transform @ pcov @ transform.T
    chi2 = float(np.sum(((counts - model(None, a, b, phi0)) / errors) ** 2))
    denom = 2.0 * a + b
    mu = b / denom
    grad = np.array([-2.0 * b, 2.0 * a, 0.0]) / denom**2
    mu_var = float(grad @ pcov @ grad)
    perr = np.sqrt(np.clip(np.diag(pcov), 0.0, None))
    return ModulationFit(a=a, a_err=float(perr[0]), b=b, b_err=float(perr[1]),
                         phi0=float(wrap_half_pi(phi0)), phi0_err=float(perr[2]),
                         mu=mu, mu_err=math.sqrt(max(mu_var, 0.0)), chi2=chi2,
                         ndof=n_bins - 3, bin_edges=edges, counts=counts, count_errors=errors)
