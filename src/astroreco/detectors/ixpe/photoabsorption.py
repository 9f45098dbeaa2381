"""The photon's part of the Gas Pixel Detector Monte Carlo: absorption and photoelectron.

Steps 1-3 of :mod:`astroreco.detectors.ixpe.simulate`: photoabsorption tables of the gas
(total coefficient, which element absorbs, its K binding energy, Auger energy and
fluorescence yield), the photon energy drawn from a tabulated spectrum, and the
photoelectron's direction from the K-shell cross-section

.. math:: \\frac{d\\sigma}{d\\Omega} \\propto
          \\frac{\\sin^2\\theta\\,[1 + P\\cos 2(\\phi - \\phi_0)]}{(1 - \\beta\\cos\\theta)^4}.

The samplers are compiled (numba) and draw from the per-event streams of
:mod:`astroreco.rng`; the event kernel in ``simulate`` calls them.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from astroreco import rng
from astroreco.detectors.ixpe.source import ENERGY_RANGE_KEV
from astroreco.physics.gas import Gas


def photo_tables(gas: Gas):
    """Photoabsorption tables of ``gas`` on a log-energy grid (a tuple for compiled code)."""
    e = np.geomspace(ENERGY_RANGE_KEV[0], ENERGY_RANGE_KEV[1], 400)
    mu = gas.photoabsorption_per_cm(e)  # (n_el, n)
    cdf = np.cumsum(mu, axis=0) / mu.sum(axis=0)
    cdf[-1] = 1.0
    els = gas.elements
    return (math.log(e[0]), math.log(e[1] / e[0]), np.ascontiguousarray(mu.sum(axis=0)),
            np.ascontiguousarray(cdf),
            np.array([el.k_binding_kev for el in els]),
            np.array([el.auger_kev for el in els]),
            np.array([el.fluorescence_yield for el in els]),
            np.array([el.z for el in els], dtype=np.int64))


@numba.njit(cache=True, inline="always")
def lin(tab, log_e0, dlog_e, e):
    """Linear interpolation of ``tab`` on the log-energy grid at ``e``."""
    x = (math.log(e) - log_e0) / dlog_e
    i = min(max(int(x), 0), tab.shape[0] - 2)
    f = x - i
    return tab[i] * (1.0 - f) + tab[i + 1] * f


@numba.njit(cache=True)
def sample_energy(state, grid, cdf):
    """Energy from a tabulated cumulative distribution (linear within a bin)."""
    u = rng.uniform(state)
    for i in range(1, grid.shape[0]):
        if u <= cdf[i] or i == grid.shape[0] - 1:
            w = cdf[i] - cdf[i - 1]
            f = 0.0 if w <= 0 else (u - cdf[i - 1]) / w
            return grid[i - 1] + f * (grid[i] - grid[i - 1])
    return grid[0]


@numba.njit(cache=True)
def sample_cos_theta(state, beta):
    """cos(theta) from sin^2(theta) / (1 - beta cos theta)^4 (per unit solid angle)."""
    c_star = 0.0 if beta < 1e-9 else (-1.0 + math.sqrt(1.0 + 8.0 * beta * beta)) / (2.0 * beta)
    fmax = (1.0 - c_star * c_star) / (1.0 - beta * c_star) ** 4 * 1.0001
    while True:
        c = 2.0 * rng.uniform(state) - 1.0
        if rng.uniform(state) * fmax <= (1.0 - c * c) / (1.0 - beta * c) ** 4:
            return c


@numba.njit(cache=True)
def sample_phi(state, degree, angle):
    """Azimuth from 1 + P cos 2(phi - phi0) on [-pi, pi)."""
    while True:
        phi = (2.0 * rng.uniform(state) - 1.0) * math.pi
        if rng.uniform(state) * (1.0 + degree) <= 1.0 + degree * math.cos(2.0 * (phi - angle)):
            return phi
