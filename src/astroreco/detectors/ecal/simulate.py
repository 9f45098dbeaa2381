r"""Electromagnetic showers in the AMS-02-like ECAL, from the incident particle to an image.

Per event (compiled with numba but for the fiducial cut; one random stream per event):

1. **Kinematics.**  Energy fixed or drawn from :math:`E^{-1}` between limits (the seed's
   2.5-4000 GeV spectrum), polar angle ``theta`` uniform in :math:`\cos\theta` between limits
   (155-180 deg by default; any range in (90, 180] is allowed), azimuth uniform, incident
   point uniform over the front face.  The geometry's fiducial cut
   (:meth:`~astroreco.detectors.ecal.geometry.EcalGeometry.fiducial`: entry and exit at least
   2 cells from the sides) is applied and failing events are dropped; ``n_simulated`` counts
   them all.
2. **Shower start.**  Electrons and positrons start showering at the front face: at this
   level of description the electromagnetic showers of e+ and e- are indistinguishable and
   are simulated alike (only the truth code differs).  A photon first converts after a depth
   drawn from an exponential of mean 9/7 X0 along its path; its shower starts there.
3. **Longitudinal profile.**  The shower's own depth of maximum ``T`` and shape ``alpha``
   are drawn with GFlash's correlated fluctuations (:mod:`astroreco.physics.shower`,
   optionally with the sampling-calorimeter corrections).  Each layer is cut into
   ``slices_per_layer`` slices; a slice between depths ``z1 < z2`` receives
   :math:`E\,[P(\alpha, \beta t_2) - P(\alpha, \beta t_1)]` with
   :math:`t = z / (\cos\vartheta\,X_0) - t_{start}` the depth along the inclined axis
   (:math:`\vartheta` = 180 deg - theta).  Energy beyond the last layer leaks out the back.
4. **Lateral profile.**  In each slice the GFlash core + tail profile, evaluated at the
   slice's ``tau = t / T`` (so its width follows the shower's own development), is
   integrated over the cells of the layer's measured coordinate (the fibres integrate the
   other one) around the axis position at the slice's mid-depth, with the closed-form strip
   CDF :func:`~astroreco.physics.shower.strip_cdf`.  The projection of the profile onto the
   layer plane stretches it along the azimuth: the radii are scaled by
   :math:`\sqrt{1 + (dx/dz)^2}` (x layers) or :math:`\sqrt{1 + (dy/dz)^2}` (y layers).
   Energy outside the 72 cells leaks out of the sides.
5. **Response, per cell** (MeV on the electromagnetic scale: a contained shower's cells sum
   to about ``E``): a Gamma-distributed sampling fluctuation of mean :math:`E_{cell}` and
   variance :math:`s^2 E_{cell}` (GeV units, ``s = sampling_term``), times the cell's gain
   (a fixed detector property drawn once from ``detector_seed``: ``1 + gain_spread N(0, 1)``,
   0 for dead cells), plus Gaussian noise; cells below ``threshold_mev`` read 0.

What comes out.  The shower maximum ``T`` grows like ``ln E`` (GFlash: ``ln(E/E_c) - 0.812``,
about -0.35 X0 for the sampling correction of the AMS-like stack); photons peak ~9/7 X0
deeper.  Normalised to the energy deposited in the cells, the summed energy has the
resolution ``sqrt(s^2 / E + c^2)`` with the sampling term ``s`` and a constant term ``c`` from
the per-cell gains, ``gain_spread * sqrt(sum_i f_i^2)`` over the cell fractions ``f_i``
(about 0.2 ``gain_spread``: a shower spreads over many cells).  The raw sum also carries the
rear leakage of the 17 X0 stack and its fluctuations, which GFlash's correlated ``(T, alpha)``
fluctuations produce (vertical showers: 3% +- 2% at 10 GeV, 7% +- 3% at 100 GeV, 16% +- 5% at
1 TeV), and which dominate its spread above ~20 GeV.  Not modelled: the ionisation of the
primary before its shower develops (the Gamma profile starts at zero), shower-to-shower
fluctuations of the lateral profile beyond those that follow ``T``, and fibre attenuation.

Implementation notes.  Cells whose sampled signal is provably below 1 keV (a draw of
a tiny-shape Gamma) are treated as noise-only; a noise-only cell passes the threshold with
the Gaussian tail probability and then takes a value drawn from that tail (exact, and much
cheaper than a normal per cell).  Event ``k`` of run ``seed`` uses the random stream
:func:`astroreco.rng.seed_stream` ``(seed, k)`` only, so results do not depend on chunking or
threads.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numba
import numpy as np

from astroreco import rng
from astroreco.detectors.ecal.geometry import EcalGeometry
from astroreco.errors import InputError
from astroreco.physics.shower import (
    PHOTON_CONVERSION_X0,
    SamplingCorrection,
    gamma_p_lg,
    longitudinal_moments,
    radial_kernel,
    shower_shape,
)

#: particle name -> PDG code stored in the truth
PARTICLES = {"e-": 11, "e+": -11, "gamma": 22}

#: the seed's spectrum (GeV, E^-1) and angular range (deg, uniform in cos theta)
DEFAULT_ENERGY_GEV = (2.5, 4000.0)
DEFAULT_THETA_DEG = (155.0, 180.0)

#: GFlash sampling correction of the AMS-02-like lead/scintillating-fibre stack: per 18.5 mm
#: superlayer 11 lead foils of 1 mm and 10 fibre layers, i.e. a sampling period of 1.85 mm
#: (1.1 mm lead, 0.75 mm fibres and glue), X0_eff = 9.6 mm, Z = 82 (lead), 5.7 (polystyrene):
#: F_S = 5.2, e/mip = 0.65.
AMS_SAMPLING = SamplingCorrection.from_layers(x0_eff_mm=9.6, passive_mm=1.1, active_mm=0.75,
                                              z_passive=82.0, z_active=5.7)

#: per-event truth, (name, dtype, unit, description)
TRUTH_FIELDS = (
    ("event_id", "i8", "", "event index within the run (reproducible from seed and index)"),
    ("particle", "i4", "", "PDG code: 11 e-, -11 e+, 22 gamma"),
    ("energy_gev", "f8", "GeV", "energy of the incident particle"),
    ("theta_deg", "f8", "deg", "polar angle of the axis (180 = vertically down)"),
    ("phi_deg", "f8", "deg", "azimuth of the axis, from +x towards +y, in [0, 360)"),
    ("x0_mm", "f8", "mm", "incident point on the front face, x"),
    ("y0_mm", "f8", "mm", "incident point on the front face, y"),
    ("start_x0", "f4", "X0", "shower start: depth along the axis from the front face "
                             "(0 for e+-, the conversion depth for photons)"),
    ("t_max_x0", "f4", "X0", "the shower's own depth of maximum T, from its start"),
    ("alpha", "f4", "", "shape parameter of the shower's Gamma profile"),
    ("deposited_gev", "f4", "GeV", "true energy deposited in the calorimeter's cells, "
                                   "before the response"),
    ("leakage_fraction", "f4", "", "fraction of the energy leaking out (back and sides)"),
)

#: a sampled cell signal below this is treated as 0 (the cell is noise-only)
_NEGLIGIBLE_MEV = 1e-3


@dataclass(frozen=True)
class EcalSimConfig:
    """Detector and response settings of the shower simulation.

    Attributes
    ----------
    geometry : EcalGeometry
        Cells, layers and the effective material (X0, R_M, E_c, Z).
    sampling_term : float
        Stochastic term ``s`` of the resolution, ``s / sqrt(E / GeV)`` (0.105 = 10.5%).
    gain_spread : float
        Relative spread of the cell gains (a fixed miscalibration drawn once from
        ``detector_seed``).  Its effect on the summed energy is ``gain_spread`` times
        ``sqrt(sum_i f_i^2)`` of the cell fractions ``f_i``, i.e. a constant term well below
        ``gain_spread`` itself; the GFlash leakage fluctuations add a larger one at high
        energy.
    noise_mev : float
        Gaussian noise per cell (MeV).
    threshold_mev : float
        Cells below this read 0 (MeV).
    dead_fraction : float
        Fraction of dead cells (read 0), drawn once from ``detector_seed``.
    detector_seed : int
        Seed of the detector's gains and dead cells.
    slices_per_layer : int
        Sub-steps through a layer's thickness (the axis of an inclined shower moves within
        a layer, up to 4.3 mm at 25 deg; each slice has its own axis position and ``tau``).
        The longitudinal energy is exact whatever the number; 2 (default) to 4.
    sampling : SamplingCorrection or None
        GFlash's sampling-calorimeter corrections (default: the AMS-like lead/fibre stack);
        ``None`` treats the stack as a homogeneous medium.
    """

    geometry: EcalGeometry = field(default_factory=EcalGeometry)
    sampling_term: float = 0.105
    gain_spread: float = 0.015
    noise_mev: float = 1.0
    threshold_mev: float = 5.0
    dead_fraction: float = 0.0
    detector_seed: int = 0
    slices_per_layer: int = 2
    sampling: SamplingCorrection | None = AMS_SAMPLING

    def __post_init__(self):
        if not isinstance(self.geometry, EcalGeometry):
            raise InputError(f"geometry: expected an EcalGeometry, got "
                             f"{type(self.geometry).__name__}")
        for name in ("sampling_term", "gain_spread", "noise_mev", "threshold_mev"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise InputError(f"{name}: expected a finite value >= 0, got {v!r}")
        if not (isinstance(self.dead_fraction, (int, float)) and 0 <= self.dead_fraction < 1):
            raise InputError(f"dead_fraction: expected a value in [0, 1), got "
                             f"{self.dead_fraction!r}")
        if not _is_int(self.detector_seed) or self.detector_seed < 0:
            raise InputError(f"detector_seed: expected an integer >= 0, got "
                             f"{self.detector_seed!r}")
        if not _is_int(self.slices_per_layer) or not 1 <= self.slices_per_layer <= 16:
            raise InputError(f"slices_per_layer: expected an integer in 1..16, got "
                             f"{self.slices_per_layer!r}")
        if self.sampling is not None and not isinstance(self.sampling, SamplingCorrection):
            raise InputError("sampling: expected a SamplingCorrection or None")

    @classmethod
    def variant(cls, **changes) -> "EcalSimConfig":
        """The *detector variant*, the stand-in for the gap between simulation and the real
        detector: cells miscalibrated by 5% (gains from another detector seed), 1% dead
        cells and twice the noise.  ``changes`` override any field."""
        base = dict(gain_spread=0.05, dead_fraction=0.01, noise_mev=2.0, detector_seed=1)
        base.update(changes)
        return cls(**base)

    def replace(self, **changes) -> "EcalSimConfig":
        """A copy with ``changes`` applied."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ShowerBatch:
    """Simulated showers that passed the fiducial cut.

    Attributes
    ----------
    images : np.ndarray
        ``(n, n_layers, n_cells)`` float32 cell energies (MeV, electromagnetic scale).
    truth : dict
        ``name -> (n,)`` arrays, :data:`TRUTH_FIELDS`.
    n_simulated : int
        Showers simulated, including those the fiducial cut dropped.
    """

    images: np.ndarray
    truth: dict
    n_simulated: int

    def __len__(self) -> int:
        return len(self.images)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_range(value, name: str, low: float, high: float, low_open: bool, what: str):
    """A float or a (low, high) pair within the allowed interval -> (lo, hi)."""
    if isinstance(value, (tuple, list, np.ndarray)):
        vals = tuple(value)
        if len(vals) != 2:
            raise InputError(f"{name}: expected a number or a (low, high) pair, got {value!r}")
    else:
        vals = (value, value)
    try:
        lo, hi = (float(v) for v in vals)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a number or a (low, high) pair, got "
                         f"{value!r}") from None
    ok = all(np.isfinite((lo, hi))) and lo <= hi and hi <= high
    ok = ok and (lo > low if low_open else lo >= low)
    if not ok:
        raise InputError(f"{name}: expected {what} (low <= high), got {value!r}")
    return lo, hi


# --- compiled kernels ------------------------------------------------------------------------

@numba.njit(cache=True)
def _draw_kinematics(seed, first, e_lo, e_hi, cos_lo, cos_hi, half_width, states,
                     energy, theta_deg, phi_deg, x0, y0):
    """Kinematics of events ``first .. first + n - 1``; leaves each event's stream state
    (after these draws) in ``states[i]`` for the shower kernel."""
    log_ratio = math.log(e_hi / e_lo)
    for i in range(states.shape[0]):
        st = states[i]
        rng.seed_stream(st, seed, first + i)
        energy[i] = e_lo * math.exp(log_ratio * rng.uniform(st))
        c = cos_lo + (cos_hi - cos_lo) * rng.uniform(st)
        theta_deg[i] = math.degrees(math.acos(min(max(c, -1.0), 1.0)))
        phi_deg[i] = 360.0 * rng.uniform(st)
        x0[i] = half_width * (2.0 * rng.uniform(st) - 1.0)
        y0[i] = half_width * (2.0 * rng.uniform(st) - 1.0)


@numba.njit(cache=True, error_model="numpy")
def _one_shower(state, e_gev, theta_deg, phi_deg, x0, y0, is_photon,
                edges, measures_x, layer_mm, x0_mm, rm_mm, ec_mev, z_eff, n_slices,
                sampled, inv_fs, one_minus_ehat,
                gains, gain_max, s2_gev, noise_mev, thr_mev, p_noise_pass, a_noise,
                image, mean, acc, pbound):
    """One shower into ``image`` (n_layers, n_cells) float32 (MeV); returns the truth
    ``(start_x0, t_max, alpha, deposited_gev)``."""
    n_layers, n_cells = image.shape
    incl = math.radians(180.0 - theta_deg)
    cos_i = math.cos(incl)
    tan_i = math.tan(incl)
    phi = math.radians(phi_deg)
    dxdz = tan_i * math.cos(phi)
    dydz = tan_i * math.sin(phi)

    # start and longitudinal shape
    t_start = PHOTON_CONVERSION_X0 * rng.exponential(state) if is_photon else 0.0
    ln_y = math.log(e_gev * 1000.0 / ec_mev)
    m_t, m_a, s_t, s_a, rho = longitudinal_moments(ln_y, z_eff, sampled, inv_fs,
                                                   one_minus_ehat)
    z1 = rng.normal_ziggurat(state)
    z2 = rng.normal_ziggurat(state)
    t_max, alpha = shower_shape(m_t, m_a, s_t, s_a, rho, z1, z2)
    beta = (alpha - 1.0) / t_max
    lga = math.lgamma(alpha)

    # cumulative longitudinal fraction at the slice boundaries
    dz = layer_mm / n_slices
    x0_per_mm = 1.0 / (cos_i * x0_mm)
    n_b = n_layers * n_slices + 1
    for k in range(n_b):
        t = k * dz * x0_per_mm - t_start
        pbound[k] = gamma_p_lg(alpha, beta * t, lga) if t > 0.0 else 0.0

    # lateral integration over the cells of each layer's measured coordinate
    ln_e = math.log(e_gev)
    stretch_x = math.sqrt(1.0 + dxdz * dxdz)
    stretch_y = math.sqrt(1.0 + dydz * dydz)
    deposited = 0.0
    for lay in range(n_layers):
        for b in range(n_cells + 1):
            acc[b] = 0.0
        filled = False
        for s in range(n_slices):
            j = lay * n_slices + s
            frac = pbound[j + 1] - pbound[j]
            if frac <= 1e-13:
                continue
            filled = True
            ta = max(j * dz * x0_per_mm - t_start, 0.0)
            tb = (j + 1) * dz * x0_per_mm - t_start
            rc, rt, p = radial_kernel(0.5 * (ta + tb) / t_max, ln_e, z_eff, sampled, inv_fs,
                                      one_minus_ehat)
            zmid = (j + 0.5) * dz
            if measures_x[lay]:
                u0 = x0 + zmid * dxdz
                scale = rm_mm * stretch_x
            else:
                u0 = y0 + zmid * dydz
                scale = rm_mm * stretch_y
            rc2 = (rc * scale) ** 2
            rt2 = (rt * scale) ** 2
            wc = 0.5 * e_gev * frac * p
            wt = 0.5 * e_gev * frac * (1.0 - p)
            for b in range(n_cells + 1):
                u = edges[b] - u0
                uu = u * u
                acc[b] += wc * u / math.sqrt(uu + rc2) + wt * u / math.sqrt(uu + rt2)
        for c in range(n_cells):
            m = max(acc[c + 1] - acc[c], 0.0) if filled else 0.0
            mean[lay, c] = m
            deposited += m

    # response
    theta_mev = 1000.0 * s2_gev  # Gamma scale of the sampling fluctuation (MeV)
    # log of the largest U^(1/k) that can still give a signal above _NEGLIGIBLE_MEV
    log_cut = math.log(_NEGLIGIBLE_MEV / (40.0 * max(theta_mev * gain_max, 1e-300)))
    for lay in range(n_layers):
        for c in range(n_cells):
            g = gains[lay, c]
            if g == 0.0:
                image[lay, c] = 0.0
                continue
            m_mev = 1000.0 * mean[lay, c]
            signal = 0.0
            if m_mev > 0.0:
                if s2_gev > 0.0:
                    k = m_mev / theta_mev
                    if k >= 1.0:
                        signal = rng.gamma_given_normal(state, k, rng.normal_ziggurat(state)) * theta_mev * g
                    else:
                        # Gamma(k) = Gamma(k + 1) U^(1/k), and Gamma(k + 1 <= 2) < 40 but for
                        # a probability ~1e-16: U < exp(k log_cut) proves the signal below
                        # _NEGLIGIBLE_MEV.  exp(x) is bracketed by 1 + x and 1 + x + x^2/2
                        # (x <= 0), so the exponential is rarely needed.
                        u = rng.uniform(state)
                        x = k * log_cut
                        lower = 1.0 + x
                        if u < lower:
                            continue_signal = False
                        elif u > lower + 0.5 * x * x:
                            continue_signal = True
                        else:
                            continue_signal = u >= math.exp(x)
                        if continue_signal:
                            signal = (rng.gamma_given_normal(state, k + 1.0, rng.normal_ziggurat(state))
                                      * u ** (1.0 / k) * theta_mev * g)
                else:
                    signal = m_mev * g
            if signal > 0.0 or noise_mev == 0.0:
                v = signal + noise_mev * rng.normal_ziggurat(state) if noise_mev > 0.0 else signal
                image[lay, c] = v if v >= thr_mev else 0.0
            else:
                # noise only: passes the threshold with the Gaussian tail probability
                if rng.uniform(state) < p_noise_pass:
                    image[lay, c] = noise_mev * rng.normal_tail(state, a_noise)
                else:
                    image[lay, c] = 0.0
    return t_start, t_max, alpha, deposited


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _simulate_showers(states, energy, theta_deg, phi_deg, x0, y0, is_photon,
                      edges, measures_x, layer_mm, x0_mm, rm_mm, ec_mev, z_eff, n_slices,
                      sampled, inv_fs, one_minus_ehat,
                      gains, gain_max, s2_gev, noise_mev, thr_mev, p_noise_pass, a_noise,
                      images, start, t_max, alpha, deposited):
    n_events, n_layers, n_cells = images.shape
    for i in numba.prange(n_events):
        mean = np.empty((n_layers, n_cells))
        acc = np.empty(n_cells + 1)
        pbound = np.empty(n_layers * n_slices + 1)
        state = states[i].copy()
        r = _one_shower(state, energy[i], theta_deg[i], phi_deg[i], x0[i], y0[i], is_photon,
                        edges, measures_x, layer_mm, x0_mm, rm_mm, ec_mev, z_eff, n_slices,
                        sampled, inv_fs, one_minus_ehat,
                        gains, gain_max, s2_gev, noise_mev, thr_mev, p_noise_pass, a_noise,
                        images[i], mean, acc, pbound)
        start[i] = r[0]
        t_max[i] = r[1]
        alpha[i] = r[2]
        deposited[i] = r[3]


# --- Python API ------------------------------------------------------------------------------

class ShowerSimulator:
    """GFlash-parameterised showers in the ECAL; the detector's gains are drawn once.

    Examples
    --------
    >>> sim = ShowerSimulator(EcalSimConfig())
    >>> batch = sim.simulate(8, energy_gev=50.0, theta_deg=180.0, seed=1)
    >>> batch.images.shape[1:], batch.images.dtype.name, batch.n_simulated
    ((18, 72), 'float32', 8)
    """

    def __init__(self, config: EcalSimConfig | None = None):
        self.config = config or EcalSimConfig()
        g = self.config.geometry
        gen = np.random.default_rng([int(self.config.detector_seed), 0xECA1])
        gains = 1.0 + self.config.gain_spread * gen.standard_normal((g.n_layers, g.n_cells))
        dead = gen.random((g.n_layers, g.n_cells)) < self.config.dead_fraction
        #: ``(n_layers, n_cells)`` relative gain of every cell, 0 for dead cells
        self.gains = np.where(dead, 0.0, np.maximum(gains, 0.0))

    @property
    def dead_cells(self) -> np.ndarray:
        """``(n_layers, n_cells)`` bool: the dead cells."""
        return self.gains == 0.0

    def simulate(self, n_events: int, *, energy_gev=DEFAULT_ENERGY_GEV,
                 theta_deg=DEFAULT_THETA_DEG, particle: str = "e-", seed: int = 0,
                 first_index: int = 0) -> ShowerBatch:
        """Simulate events ``first_index .. first_index + n_events - 1`` of run ``seed``.

        Parameters
        ----------
        n_events : int
            Showers to simulate (>= 1); those failing the fiducial cut are dropped.
        energy_gev : float or (low, high)
            Fixed energy, or limits of an E^-1 spectrum (GeV, > 0).
        theta_deg : float or (low, high)
            Fixed polar angle, or limits of a distribution uniform in cos(theta); within
            (90, 180] deg (180 = vertically down).
        particle : str
            ``"e-"``, ``"e+"`` or ``"gamma"``.
        seed, first_index : int
            Run seed and global index of the first event (>= 0).  Event ``k`` depends only
            on ``(seed, k)`` and the detector.

        Returns
        -------
        ShowerBatch
        """
        if not _is_int(n_events) or n_events < 1:
            raise InputError(f"n_events: expected an integer >= 1, got {n_events!r}")
        if not _is_int(seed) or seed < 0:
            raise InputError(f"seed: expected an integer >= 0, got {seed!r}")
        if not _is_int(first_index) or first_index < 0:
            raise InputError(f"first_index: expected an integer >= 0, got {first_index!r}")
        e_lo, e_hi = _check_range(energy_gev, "energy_gev", 0.0, np.inf, True,
                                  "a finite energy > 0 GeV or (low, high)")
        th_lo, th_hi = _check_range(theta_deg, "theta_deg", 90.0, 180.0, True,
                                    "an angle in (90, 180] deg or (low, high)")
        if particle not in PARTICLES:
            raise InputError(f"particle: expected one of {', '.join(PARTICLES)}, got "
                             f"{particle!r}")
        cfg = self.config
        g = cfg.geometry
        n = int(n_events)

        states = np.empty((n, 4), np.uint64)
        energy, theta, phi, x0, y0 = (np.empty(n) for _ in range(5))
        # cos(theta) is increasing as theta decreases: theta_hi gives the low cosine
        _draw_kinematics(int(seed), int(first_index), e_lo, e_hi,
                         math.cos(math.radians(th_hi)), math.cos(math.radians(th_lo)),
                         g.half_width_mm, states, energy, theta, phi, x0, y0)
        keep = np.flatnonzero(g.fiducial(x0, y0, theta, phi))
        m = len(keep)

        images = np.empty((m, g.n_layers, g.n_cells), np.float32)
        start, t_max, alpha, deposited = (np.empty(m) for _ in range(4))
        if m:
            sampled, inv_fs, omeh = (cfg.sampling.kernel_args() if cfg.sampling is not None
                                     else (False, 0.0, 0.0))
            a_noise = cfg.threshold_mev / cfg.noise_mev if cfg.noise_mev > 0 else np.inf
            p_noise_pass = 0.5 * math.erfc(a_noise / math.sqrt(2.0)) if cfg.noise_mev > 0 \
                else 0.0
            _simulate_showers(
                np.ascontiguousarray(states[keep]), energy[keep], theta[keep], phi[keep],
                x0[keep], y0[keep], particle == "gamma",
                g.cell_edges_mm(), g.measures_x(), g.layer_mm, g.x0_mm, g.moliere_mm,
                g.critical_mev, g.z_eff, int(cfg.slices_per_layer),
                sampled, inv_fs, omeh,
                self.gains, float(self.gains.max()), cfg.sampling_term ** 2,
                float(cfg.noise_mev),
                float(cfg.threshold_mev), p_noise_pass, float(min(a_noise, 1e300)),
                images, start, t_max, alpha, deposited)
        values = {
            "event_id": int(first_index) + keep, "particle": np.full(m, PARTICLES[particle]),
            "energy_gev": energy[keep], "theta_deg": theta[keep], "phi_deg": phi[keep],
            "x0_mm": x0[keep], "y0_mm": y0[keep], "start_x0": start, "t_max_x0": t_max,
            "alpha": alpha, "deposited_gev": deposited,
            "leakage_fraction": 1.0 - deposited / energy[keep],
        }
        truth = {name: np.asarray(values[name], dtype=dtype)
                 for name, dtype, *_ in TRUTH_FIELDS}
        return ShowerBatch(images=images, truth=truth, n_simulated=n)
