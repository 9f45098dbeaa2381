"""Electron recoils in a directional gas TPC, from transport to a sparse voxel grid (seed 001).

Per event, following the seed paper's preparation (section 4.1):

1. an electron of energy ``E`` starts at the origin along +z and is transported through the
   gas (He:CO2 70:30, 20 C, 760 Torr by default) by the shared engine,
   :class:`astroreco.physics.transport.ElectronTransport`, which also places its ionisation
   electrons (W, Fano);
2. every ionisation electron is smeared by an isotropic 3D Gaussian of width ``sigma``
   (drift diffusion): drawn per track from U(160, 466) um for training sets, fixed
   (200 or 443 um) for test sets;
3. the track is rotated by a uniformly random rotation; the rotated +z is the true initial
   direction, and the rotated origin the true start point;
4. the track is translated so that its centre of charge is at the grid centre;
5. electrons are binned into a 120^3 grid of 500 um voxels, index ``floor((x + 3 cm) /
   0.05 cm)``; a voxel's value is its number of electrons.  Tracks with any electron outside
   the grid are not contained and are dropped (``contained = False`` in the truth).

Events are reproducible from ``(seed, index)``: the transport, the smearing and the rotation
of event ``index`` depend on nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from astroreco.errors import InputError
from astroreco.physics.gas import he_co2
from astroreco.physics.transport import GRID_MAX_KEV, ElectronTransport

#: smearing range (um) of the training sets, the seed paper's extremes of Jaegle et al. 2019
TRAIN_SIGMA_UM = (160.0, 466.0)
#: fixed smearing (um) of the seed paper's low- and high-diffusion test sets
TEST_SIGMA_UM = (200.0, 443.0)

#: per-event truth, (name, dtype, unit, description)
TRUTH_FIELDS = (
    ("event_id", "i8", "", "event index within the run (reproducible from seed and index)"),
    ("energy_kev", "f4", "keV", "recoil energy"),
    ("sigma_um", "f4", "um", "Gaussian smearing applied to every ionisation electron"),
    ("dir_x", "f4", "", "true initial direction, x"),
    ("dir_y", "f4", "", "true initial direction, y"),
    ("dir_z", "f4", "", "true initial direction, z"),
    ("start_x_cm", "f4", "cm", "true start point, grid frame (grid from 0 to 6 cm)"),
    ("start_y_cm", "f4", "cm", "true start point, grid frame"),
    ("start_z_cm", "f4", "cm", "true start point, grid frame"),
    ("n_electrons", "i4", "", "ionisation electrons of the track"),
    ("length_cm", "f4", "cm", "path length of the recoil electron"),
)


@dataclass(frozen=True)
class TpcConfig:
    """Gas, grid and transport settings of the simulated TPC.

    Attributes
    ----------
    fraction_he, pressure_torr, temperature_c : float
        He:CO2 mixture (He fraction by volume), pressure and temperature.
    grid_size : int
        Voxels per side (120).
    voxel_cm : float
        Voxel side (0.05 cm = 500 um).
    cutoff_kev : float
        Transport cut-off of the recoil electron.
    """

    fraction_he: float = 0.7
    pressure_torr: float = 760.0
    temperature_c: float = 20.0
    grid_size: int = 120
    voxel_cm: float = 0.05
    cutoff_kev: float = 0.05

    def __post_init__(self):
        if self.grid_size < 2 or self.grid_size > 32767:
            raise InputError(f"grid_size: expected 2..32767 voxels, got {self.grid_size}")
        if not self.voxel_cm > 0:
            raise InputError(f"voxel_cm: expected > 0, got {self.voxel_cm}")

    @property
    def half_width_cm(self) -> float:
        return 0.5 * self.grid_size * self.voxel_cm

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RecoilBatch:
    """Simulated events: sparse voxels (COO, ragged per event) and truth.

    ``coords[offsets[k]:offsets[k+1]]`` are the ``(i, j, k)`` voxel indices of event ``k``
    (unique, sorted), ``values`` the electrons per voxel; ``truth`` one entry per event.
    """

    offsets: np.ndarray          # (n + 1,) int64
    coords: np.ndarray           # (n_voxels, 3) int16
    values: np.ndarray           # (n_voxels,) float32
    truth: dict                  # name -> (n,)
    n_simulated: int             # events simulated, contained or not

    def __len__(self) -> int:
        return len(self.offsets) - 1


def random_rotation(generator: np.random.Generator) -> np.ndarray:
    """A rotation matrix uniformly distributed on SO(3) (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(generator.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _check_sigma(sigma_um):
    if isinstance(sigma_um, (tuple, list)):
        if len(sigma_um) != 2 or not 0 <= sigma_um[0] <= sigma_um[1]:
            raise InputError(f"sigma_um: expected (low, high) with 0 <= low <= high, "
                             f"got {sigma_um!r}")
        return float(sigma_um[0]), float(sigma_um[1])
    s = float(sigma_um)
    if not (np.isfinite(s) and s >= 0):
        raise InputError(f"sigma_um: expected a finite value >= 0, got {sigma_um!r}")
    return s, s


def _check_energies(energy_kev, n_events):
    e = np.broadcast_to(np.asarray(energy_kev, dtype=np.float64), (n_events,))
    if not np.all(np.isfinite(e)) or np.any(e <= 0) or np.any(e >= GRID_MAX_KEV):
        raise InputError(f"energy_kev: expected energies in (0, {GRID_MAX_KEV:g}) keV")
    return e


class RecoilSimulator:
    """Electron recoils to voxels; the transport tables are built once.

    Examples
    --------
    >>> sim = RecoilSimulator()
    >>> batch = sim.simulate(4, energy_kev=40.0, sigma_um=200.0, seed=1)
    >>> batch.coords.shape[1], batch.values.dtype.name
    (3, 'float32')
    """

    def __init__(self, config: TpcConfig = TpcConfig()):
        self.config = config
        self.transport = ElectronTransport(
            he_co2(config.fraction_he, config.pressure_torr, config.temperature_c),
            cutoff_kev=config.cutoff_kev)

    def event(self, energy_kev: float, sigma_lo_hi, seed: int, index: int):
        """One event: (coords, values, truth dict), coords None when not contained."""
        cfg = self.config
        path = self.transport.track(energy_kev, seed=seed, index=2 * index)
        electrons = self.transport.ionisation(path, seed=seed, index=2 * index + 1)
        gen = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 7]))
        lo, hi = sigma_lo_hi
        sigma_um = gen.uniform(lo, hi) if hi > lo else lo
        smeared = electrons + gen.normal(0.0, sigma_um * 1e-4, electrons.shape)
        rot = random_rotation(gen)
        rotated = smeared @ rot.T
        centre = rotated.mean(axis=0) if len(rotated) else np.zeros(3)
        shift = cfg.half_width_cm - centre
        start = shift  # the track started at the origin
        direction = rot[:, 2]
        truth = {"energy_kev": energy_kev, "sigma_um": sigma_um,
                 "dir_x": direction[0], "dir_y": direction[1], "dir_z": direction[2],
                 "start_x_cm": start[0], "start_y_cm": start[1], "start_z_cm": start[2],
                 "n_electrons": len(electrons), "length_cm": path.length_cm}
        if len(rotated) == 0:
            return None, None, truth
        idx = np.floor((rotated + shift) / cfg.voxel_cm).astype(np.int64)
        if idx.min() < 0 or idx.max() >= cfg.grid_size:
            return None, None, truth
        flat = (idx[:, 0] * cfg.grid_size + idx[:, 1]) * cfg.grid_size + idx[:, 2]
        voxels, counts = np.unique(flat, return_counts=True)
        g = cfg.grid_size
        coords = np.stack([voxels // (g * g), (voxels // g) % g, voxels % g], axis=1)
        return coords.astype(np.int16), counts.astype(np.float32), truth

    def simulate(self, n_events: int, *, energy_kev=40.0, sigma_um=TRAIN_SIGMA_UM,
                 seed: int, first: int = 0, progress=None) -> RecoilBatch:
        """Simulate events ``first .. first + n_events - 1`` of run ``seed``.

        Parameters
        ----------
        n_events : int
            Events to simulate (contained ones are kept).
        energy_kev : float or array (n_events,)
            Recoil energy per event.
        sigma_um : float or (low, high)
            Fixed smearing, or the range of a per-track uniform draw.
        seed, first : int
            Run seed and index of the first event.
        progress : callable, optional
            Called with the number of events done since the last call.
        """
        if int(n_events) != n_events or n_events < 0:
            raise InputError(f"n_events: expected a non-negative integer, got {n_events!r}")
        if int(seed) != seed or seed < 0 or int(first) != first or first < 0:
            raise InputError("seed and first: expected non-negative integers")
        energies = _check_energies(energy_kev, n_events)
        sigma = _check_sigma(sigma_um)
        coords, values, offsets = [], [], [0]
        truth = {name: [] for name, *_ in TRUTH_FIELDS}
        for k in range(n_events):
            index = first + k
            c, v, t = self.event(float(energies[k]), sigma, seed, index)
            if progress is not None and (k + 1) % 1000 == 0:
                progress(1000)
            if c is None:
                continue
            coords.append(c)
            values.append(v)
            offsets.append(offsets[-1] + len(v))
            truth["event_id"].append(index)
            for name, val in t.items():
                truth[name].append(val)
        if progress is not None and n_events % 1000:
            progress(n_events % 1000)
        truth = {name: np.asarray(truth[name], dtype=dtype) for name, dtype, *_ in TRUTH_FIELDS}
        return RecoilBatch(
            offsets=np.asarray(offsets, dtype=np.int64),
            coords=np.concatenate(coords) if coords else np.zeros((0, 3), np.int16),
            values=np.concatenate(values) if values else np.zeros(0, np.float32),
            truth=truth, n_simulated=int(n_events))
