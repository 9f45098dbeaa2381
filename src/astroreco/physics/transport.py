r"""Electron transport in gas: one Monte Carlo engine for the ixpe and tpc detectors.

The electron slows down continuously between discrete elastic collisions (a
single-scattering, continuous-slowing-down Monte Carlo):

- **Energy loss**: relativistic Bethe collision stopping power for electrons (ICRU Report 37,
  Rohrlich-Carlson form, no density effect in a gas) with the Joy & Luo (1989, Scanning 11,
  176) low-energy modification of the mean excitation energy, :math:`I' = I / (1 + k I / E)`,
  :math:`k = 0.85`:

  .. math:: S(E) = \frac{2 \pi r_e^2 m c^2 n_e}{\beta^2}
            \left[\ln\frac{\tau^2 (\tau + 2)}{2 (I'/m c^2)^2} + F(\tau)\right],\quad
            F = 1 - \beta^2 + \frac{\tau^2/8 - (2\tau + 1)\ln 2}{(\tau + 1)^2}

- **Elastic scattering**: screened Rutherford angular distribution per atom species,
  :math:`d\sigma/d\Omega \propto Z(Z+1) / (1 - \cos\theta + 2\eta)^2`, with the screening
  parameter :math:`\eta` of each element set so that the total cross section
  :math:`\sigma = \pi A / (\eta (1 + \eta))`, :math:`A = Z(Z+1) r_e^2 (mc^2)^2/(p c\beta)^2`,
  equals the Browning et al. (1994, J. Appl. Phys. 76, 2016) fit to Mott total cross
  sections, :math:`\sigma = 3\times10^{-18} Z^{1.7} / (E + 0.005 Z^{1.7} E^{1/2}
  + 0.0007 Z^2 E^{-1/2})` cm^2 (E in keV).  Species are chosen in proportion to
  :math:`n_i \sigma_i`.
- **Ionisation**: the number of electrons is Gaussian with mean :math:`E_{dep}/W` and
  variance :math:`F E_{dep}/W`; electrons are placed along the path in proportion to the
  energy deposited (stratified sampling).

Physics tables are precomputed on a logarithmic energy grid; the stepping loop is compiled
with numba (``nogil``, so threads run in parallel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from astroreco import rng
from astroreco.errors import InputError
from astroreco.physics.gas import Gas

ELECTRON_MASS_KEV = 510.99895
CLASSICAL_RADIUS_CM = 2.8179403262e-13
JOY_LUO_K = 0.85
#: tabulation range of the physics tables (keV)
GRID_MIN_KEV = 0.01
GRID_MAX_KEV = 2000.0
GRID_POINTS = 800
#: largest fractional energy loss in one continuous step
MAX_STEP_LOSS = 0.05


def _beta2_pc2(energy_kev):
    """(beta^2, (pc)^2 in keV^2) of an electron of kinetic energy ``energy_kev``."""
    tot = energy_kev + ELECTRON_MASS_KEV
    pc2 = energy_kev * (energy_kev + 2.0 * ELECTRON_MASS_KEV)
    return pc2 / tot**2, pc2


def stopping_power_kev_cm(gas: Gas, energy_kev):
    """Collision stopping power (keV/cm) of ``gas`` for electrons, Bethe + Joy-Luo."""
    e = np.asarray(energy_kev, dtype=np.float64)
    beta2, _ = _beta2_pc2(e)
    tau = e / ELECTRON_MASS_KEV
    i_kev = gas.mean_excitation_ev * 1e-3
    i_eff = i_kev / (1.0 + JOY_LUO_K * i_kev / e)
    n_e = gas.electrons_per_g * gas.density_g_cm3
    f = 1.0 - beta2 + (tau**2 / 8.0 - (2.0 * tau + 1.0) * math.log(2.0)) / (tau + 1.0) ** 2
    bracket = np.log(tau**2 * (tau + 2.0) / (2.0 * (i_eff / ELECTRON_MASS_KEV) ** 2)) + f
    s = 2.0 * math.pi * CLASSICAL_RADIUS_CM**2 * ELECTRON_MASS_KEV * n_e / beta2 * bracket
    return np.maximum(s, 1e-12)


def browning_cross_section_cm2(z, energy_kev):
    """Total elastic cross section (cm^2) per atom, Browning et al. (1994) fit to Mott."""
    e = np.asarray(energy_kev, dtype=np.float64)
    z17 = z**1.7
    return 3e-18 * z17 / (e + 0.005 * z17 * np.sqrt(e) + 0.0007 * z**2 / np.sqrt(e))


def screening_parameter(z, energy_kev):
    """Screening parameter eta such that the screened Rutherford total cross section
    equals :func:`browning_cross_section_cm2`."""
    e = np.asarray(energy_kev, dtype=np.float64)
    beta2, pc2 = _beta2_pc2(e)
    a = z * (z + 1.0) * CLASSICAL_RADIUS_CM**2 * ELECTRON_MASS_KEV**2 / (pc2 * beta2)
    ratio = math.pi * a / browning_cross_section_cm2(z, e)  # = eta (1 + eta)
    return 0.5 * (np.sqrt(1.0 + 4.0 * ratio) - 1.0)


@dataclass(frozen=True)
class TransportTables:
    """Physics tables of one gas on a log-energy grid (arrays passed to compiled code)."""

    log_e0: float
    dlog_e: float
    stop_kev_cm: np.ndarray      # (n_grid,)
    sigma_per_cm: np.ndarray     # (n_grid,) macroscopic elastic cross section
    species_cdf: np.ndarray      # (n_elements, n_grid) cumulative species probability
    eta: np.ndarray              # (n_elements, n_grid) screening parameters

    @classmethod
    def for_gas(cls, gas: Gas) -> "TransportTables":
        e = np.geomspace(GRID_MIN_KEV, GRID_MAX_KEV, GRID_POINTS)
        stop = stopping_power_kev_cm(gas, e)
        partial = np.array([n * browning_cross_section_cm2(el.z, e)
                            for n, el in zip(gas.atom_density_cm3, gas.elements)])
        sigma = partial.sum(axis=0)
        cdf = np.cumsum(partial, axis=0) / sigma
        cdf[-1] = 1.0
        eta = np.array([screening_parameter(el.z, e) for el in gas.elements])
        return cls(math.log(GRID_MIN_KEV), math.log(e[1] / e[0]), stop, sigma,
                   np.ascontiguousarray(cdf), np.ascontiguousarray(eta))

    def as_tuple(self):
        return (self.log_e0, self.dlog_e, self.stop_kev_cm, self.sigma_per_cm,
                self.species_cdf, self.eta)


@numba.njit(cache=True, inline="always")
def _interp(tab, log_e0, dlog_e, e):
    x = (math.log(e) - log_e0) / dlog_e
    i = int(x)
    n = tab.shape[0]
    if i < 0:
        return tab[0]
    if i >= n - 1:
        return tab[n - 1]
    f = x - i
    return tab[i] * (1.0 - f) + tab[i + 1] * f


@numba.njit(cache=True, inline="always")
def _interp_row(tab, row, log_e0, dlog_e, e):
    x = (math.log(e) - log_e0) / dlog_e
    i = int(x)
    n = tab.shape[1]
    if i < 0:
        return tab[row, 0]
    if i >= n - 1:
        return tab[row, n - 1]
    f = x - i
    return tab[row, i] * (1.0 - f) + tab[row, i + 1] * f


@numba.njit(cache=True, inline="always")
def rotate(ux, uy, uz, cos_t, phi):
    """Direction (ux, uy, uz) turned by polar angle acos(cos_t) and azimuth phi."""
    sin_t = math.sqrt(max(0.0, 1.0 - cos_t * cos_t))
    cp = math.cos(phi)
    sp = math.sin(phi)
    if abs(uz) > 0.99999:
        nx = sin_t * cp
        ny = sin_t * sp
        nz = cos_t if uz > 0 else -cos_t
    else:
        s = math.sqrt(1.0 - uz * uz)
        nx = sin_t * (ux * uz * cp - uy * sp) / s + ux * cos_t
        ny = sin_t * (uy * uz * cp + ux * sp) / s + uy * cos_t
        nz = -sin_t * cp * s + uz * cos_t
    norm = math.sqrt(nx * nx + ny * ny + nz * nz)
    return nx / norm, ny / norm, nz / norm


@numba.njit(cache=True, nogil=True)
def transport(e0, x, y, z, ux, uy, uz, tables, cutoff_kev, state, path, n_path):
    """Track one electron; append its path to ``path`` and return the new point count.

    Parameters
    ----------
    e0 : float
        Kinetic energy (keV).
    x, y, z : float
        Start point (cm).
    ux, uy, uz : float
        Unit start direction.
    tables : tuple
        :meth:`TransportTables.as_tuple`.
    cutoff_kev : float
        Energy below which the electron stops and deposits what is left.
    state : uint64[4]
        Random stream (:mod:`astroreco.rng`).
    path : float64[(capacity, 5)]
        Rows (x, y, z, cumulative deposited energy keV, segment start flag).  A row with flag
        1 starts a new segment: no energy is deposited between it and the row before.
    n_path : int
        Rows already used in ``path``.

    Returns
    -------
    int
        Rows used after this electron; ``-1`` when ``path`` is full (retry with more room).
    """
    log_e0, dlog_e, stop_tab, sig_tab, cdf_tab, eta_tab = tables
    cap = path.shape[0]
    if n_path >= cap:
        return -1
    cum = path[n_path - 1, 3] if n_path > 0 else 0.0
    path[n_path, 0] = x
    path[n_path, 1] = y
    path[n_path, 2] = z
    path[n_path, 3] = cum
    path[n_path, 4] = 1.0
    n = n_path + 1
    e = e0
    n_species = cdf_tab.shape[0]
    while e > cutoff_kev:
        sigma = _interp(sig_tab, log_e0, dlog_e, e)
        s = -math.log(rng.uniform(state)) / sigma
        stop = _interp(stop_tab, log_e0, dlog_e, e)
        s_max = MAX_STEP_LOSS * e / stop
        scatter = True
        if s > s_max:
            s = s_max
            scatter = False
        stop_mid = _interp(stop_tab, log_e0, dlog_e, max(e - 0.5 * stop * s, cutoff_kev))
        de = stop_mid * s
        if e - de <= cutoff_kev:
            de = e - cutoff_kev
            s = de / stop_mid
            scatter = False
        x += s * ux
        y += s * uy
        z += s * uz
        e -= de
        cum += de
        if n >= cap:
            return -1
        path[n, 0] = x
        path[n, 1] = y
        path[n, 2] = z
        path[n, 3] = cum
        path[n, 4] = 0.0
        n += 1
        if scatter:
            u = rng.uniform(state)
            k = 0
            while k < n_species - 1 and u > _interp_row(cdf_tab, k, log_e0, dlog_e, e):
                k += 1
            eta = _interp_row(eta_tab, k, log_e0, dlog_e, e)
            r = rng.uniform(state)
            cos_t = 1.0 - 2.0 * eta * r / (1.0 + eta - r)
            ux, uy, uz = rotate(ux, uy, uz, cos_t, 2.0 * math.pi * rng.uniform(state))
    # what is left below the cut-off is deposited where the electron stops
    path[n - 1, 3] = cum + e
    return n


@numba.njit(cache=True, nogil=True)
def local_deposit(x, y, z, energy_kev, path, n_path):
    """Append a point deposit of ``energy_kev`` at (x, y, z) to ``path``; -1 when full."""
    if n_path + 2 > path.shape[0]:
        return -1
    cum = path[n_path - 1, 3] if n_path > 0 else 0.0
    for j in range(2):
        path[n_path + j, 0] = x
        path[n_path + j, 1] = y
        path[n_path + j, 2] = z
        path[n_path + j, 4] = 1.0 if j == 0 else 0.0
    path[n_path, 3] = cum
    path[n_path + 1, 3] = cum + energy_kev
    return n_path + 2


@numba.njit(cache=True, nogil=True)
def n_ionisation_electrons(e_dep_kev, w_ev, fano, state):
    """Number of ionisation electrons for a deposit: Gaussian, mean E/W, variance F E/W."""
    mean = e_dep_kev * 1000.0 / w_ev
    k = int(math.floor(mean + math.sqrt(fano * mean) * rng.normal(state) + 0.5))
    return max(k, 0)


@numba.njit(cache=True, nogil=True)
def place_electrons(path, n_path, n_electrons, state, out):
    """Place ``n_electrons`` along ``path`` in proportion to the deposited energy.

    Electron j sits at cumulative energy (j + u_j)/N of the total (stratified sampling);
    positions are interpolated along the segment that holds it.  ``out`` (capacity, 3)
    receives the positions; returns the number written (min of N and capacity).
    """
    total = path[n_path - 1, 3]
    n_out = min(n_electrons, out.shape[0])
    i = 0
    for j in range(n_out):
        target = (j + rng.uniform(state)) / n_electrons * total
        while i < n_path - 2 and path[i + 1, 3] < target:
            i += 1
        e_a = path[i, 3]
        e_b = path[i + 1, 3]
        f = 0.0 if e_b <= e_a else (target - e_a) / (e_b - e_a)
        f = min(max(f, 0.0), 1.0)
        for c in range(3):
            out[j, c] = path[i, c] + f * (path[i + 1, c] - path[i, c])
    return n_out


@dataclass
class TrackPath:
    """Path of one electron: points (cm) and cumulative deposited energy (keV)."""

    points_cm: np.ndarray        # (n, 3)
    cumulative_kev: np.ndarray   # (n,)

    @property
    def length_cm(self) -> float:
        return float(np.linalg.norm(np.diff(self.points_cm, axis=0), axis=1).sum())

    @property
    def deposited_kev(self) -> float:
        return float(self.cumulative_kev[-1])


class ElectronTransport:
    """Electron transport in one gas (tables built once; use it for many tracks).

    Parameters
    ----------
    gas : Gas
        The gas mixture.
    cutoff_kev : float
        Tracking cut-off; the remaining energy is deposited where the electron stops.

    Examples
    --------
    >>> from astroreco.physics.gas import dme
    >>> t = ElectronTransport(dme())
    >>> path = t.track(5.0, seed=1)
    >>> round(path.deposited_kev, 6)
    5.0
    """

    def __init__(self, gas: Gas, cutoff_kev: float = 0.05):
        if not 0.0 < cutoff_kev < 1.0:
            raise InputError(f"cutoff_kev must be in (0, 1) keV, got {cutoff_kev}")
        self.gas = gas
        self.cutoff_kev = float(cutoff_kev)
        self.tables = TransportTables.for_gas(gas)

    def stopping_power_kev_cm(self, energy_kev):
        return stopping_power_kev_cm(self.gas, energy_kev)

    def csda_range_cm(self, energy_kev: float) -> float:
        """CSDA range (cm): integral of dE / S(E) from the cut-off to ``energy_kev``."""
        e = np.geomspace(1e-3, energy_kev, 4000)
        return float(np.trapezoid(1.0 / self.stopping_power_kev_cm(e), e))

    def track(self, energy_kev, *, seed, index=0, start_cm=(0.0, 0.0, 0.0),
              direction=(0.0, 0.0, 1.0)) -> TrackPath:
        """Transport one electron (reproducible from ``seed`` and ``index``)."""
        if not (np.isfinite(energy_kev) and 0.0 < energy_kev < GRID_MAX_KEV):
            raise InputError(f"electron energy must be in (0, {GRID_MAX_KEV}) keV, "
                             f"got {energy_kev}")
        d = np.asarray(direction, dtype=np.float64)
        d = d / np.linalg.norm(d)
        state = np.empty(4, dtype=np.uint64)
        rng.seed_stream(state, int(seed), int(index))
        cap = 4096
        while True:
            path = np.empty((cap, 5))
            n = transport(float(energy_kev), *map(float, start_cm), *map(float, d),
                          self.tables.as_tuple(), self.cutoff_kev, state, path, 0)
            if n > 0:
                return TrackPath(path[:n, :3].copy(), path[:n, 3].copy())
            cap *= 4
            rng.seed_stream(state, int(seed), int(index))

    def ionisation(self, path: TrackPath, *, seed, index=0) -> np.ndarray:
        """Ionisation electrons (cm) of a path: (N, 3), N ~ Gaussian(E/W, F E/W)."""
        state = np.empty(4, dtype=np.uint64)
        rng.seed_stream(state, int(seed), int(index))
        n_e = n_ionisation_electrons(path.deposited_kev, self.gas.w_ev, self.gas.fano, state)
        buf = np.empty((len(path.cumulative_kev), 5))
        buf[:, :3] = path.points_cm
        buf[:, 3] = path.cumulative_kev
        buf[:, 4] = 0.0
        out = np.empty((n_e, 3))
        if n_e == 0:
            return out
        place_electrons(buf, buf.shape[0], n_e, state, out)
        return out
