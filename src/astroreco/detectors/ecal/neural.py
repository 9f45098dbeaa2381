"""ECAL networks: the seed's ResNet-18 on the 18 x 72 image with the deposited energy as an
extra input, for the inclination, the incident point, or both with uncertainties.

Three tasks (:data:`TASKS`), one backbone (:class:`~astroreco.nn.backbones.SmallImageResNet`,
17 convolutions and one dense layer as in the seed) with ``log10(E_dep / GeV)`` appended to
its features:

- ``angle``: ``theta / 180 deg`` (the seed's normalised target), loss
  :class:`~astroreco.losses.ResolutionWeightedMSELoss` with the resolution ``sigma(E)``
  expected at the event's energy (the seed's loss; ``sigma(E)`` found by iteration, see
  :mod:`astroreco.detectors.ecal.train`);
- ``position``: the incident point ``(x0, y0) / half width``, the same loss with
  ``sigma_x(E)``, ``sigma_y(E)``;
- ``multitask``: the slopes of the axis in the two projections and the incident point, each
  with a Gaussian uncertainty (:class:`~astroreco.losses.GaussianNLLLoss`): the step beyond
  the seed.  ``theta``, ``phi`` and their uncertainties follow from the slopes.

Input representation (:func:`network_inputs`): three channels, the cell energies as
fractions of the event's deposit (x n_layers), ``log(1 + E_cell / 1 MeV) / 10`` and the
fraction times the cell's coordinate (the first-moment map, from which a layer's centre of
gravity is a sum); training adds 1% Gaussian noise per cell (the seed's
calibration-precision augmentation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from astroreco.detectors.ecal.geometry import EcalGeometry
from astroreco.errors import InputError

TASKS = ("angle", "position", "multitask")
#: multitask targets: slopes in units of 0.2 and incident points in units of 200 mm, both
#: with a spread of about 1 over the seed's angles and the front face
SLOPE_UNITS = 5.0
POSITION_UNIT_MM = 200.0
#: input channels (:func:`network_inputs`)
N_CHANNELS = 3


@dataclass
class Resolution:
    """``sigma(E) = sqrt(a^2 / E + b^2)`` (E in GeV) per output, in the output's units
    (degrees for theta, mm for positions and ``1e-3`` for slopes)."""

    a: list = field(default_factory=lambda: [3.0])
    b: list = field(default_factory=lambda: [0.2])

    def __call__(self, energy_gev) -> np.ndarray:
        """``(n, D)`` resolutions at ``energy_gev`` ``(n,)``."""
        e = np.maximum(np.asarray(energy_gev, np.float64), 1e-3)[:, None]
        a, b = np.asarray(self.a, np.float64), np.asarray(self.b, np.float64)
        return np.sqrt(a[None, :] ** 2 / e + b[None, :] ** 2)


@dataclass
class EcalNetConfig:
    """Task, backbone and input settings of an ECAL network.

    Attributes
    ----------
    task : str
        One of :data:`TASKS`.
    width : int
        Backbone base width (64: the full ResNet-18; 8: the CPU scale).
    pool : str
        ``flatten`` (keeps positions, the default) or ``avg`` (torchvision-like).
    n_features : int
        Backbone output features.
    noise : float
        Relative Gaussian noise per cell added in training.
    resolution : dict, optional
        ``{"a": [...], "b": [...]}`` of the expected resolution :class:`Resolution` per
        output (``angle``: theta in deg; ``position``: x0, y0 in mm), for the seed's loss.
    energy_range_gev : tuple, optional
        Deposited energies the network was trained on; outside, results are flagged.
    geometry : dict
        The :class:`EcalGeometry` the images come from.
    """

    task: str = "multitask"
    width: int = 8
    pool: str = "flatten"
    n_features: int = 256
    noise: float = 0.01
    resolution: dict | None = None
    energy_range_gev: tuple | None = None
    geometry: dict = field(default_factory=lambda: EcalGeometry().to_dict())

    def __post_init__(self):
        if self.task not in TASKS:
            raise InputError(f"task {self.task!r}: expected one of {', '.join(TASKS)}")
        if self.width < 1 or self.n_features < 1:
            raise InputError("width and n_features: expected positive integers")
        if not 0 <= self.noise < 1:
            raise InputError(f"noise {self.noise}: expected a fraction in [0, 1)")
        if self.energy_range_gev is not None:
            self.energy_range_gev = tuple(float(v) for v in self.energy_range_gev)

    @property
    def geom(self) -> EcalGeometry:
        return EcalGeometry(**self.geometry)

    @property
    def n_outputs(self) -> int:
        return {"angle": 1, "position": 2, "multitask": 4}[self.task]

    @classmethod
    def paper(cls, task: str = "angle", **kw) -> "EcalNetConfig":
        """The seed's size: ResNet-18 widths (64-512)."""
        return cls(task=task, width=64, n_features=512, **kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["energy_range_gev"] is not None:
            d["energy_range_gev"] = list(d["energy_range_gev"])
        return d


def build_model(cfg: EcalNetConfig) -> torch.nn.Module:
    """Backbone + energy input + the task's head."""
    from astroreco.nn.backbones import SmallImageResNet
    from astroreco.nn.heads import GaussianHead
    from astroreco.nn.models import MultiTaskNet

    g = cfg.geom
    backbone = SmallImageResNet(N_CHANNELS, (g.n_layers, g.n_cells), width=cfg.width,
                                pool=cfg.pool,
                                n_features=cfg.n_features)
    f = cfg.n_features + 1 + cfg.geom.n_layers  # + log10(E) + the per-layer CoG
    if cfg.task == "multitask":
        # targets have unit spread: start the variances there
        head = GaussianHead(f, 4, log_var_range=(-18.0, 4.0), init_log_var=0.0)
    else:
        head = torch.nn.Linear(f, cfg.n_outputs)
    return MultiTaskNet(backbone, {"axis": head}, scalar_keys=("log_energy", "layer_cog"))


def build_loss(cfg: EcalNetConfig) -> torch.nn.Module:
    from astroreco.losses import GaussianNLLLoss, ResolutionWeightedMSELoss
    from astroreco.training.tasks import TaskLoss, Term

    loss = GaussianNLLLoss(beta=1.0) if cfg.task == "multitask" else \
        ResolutionWeightedMSELoss()
    return TaskLoss([Term("axis", "target", loss)])


def deposited_energy_gev(images) -> np.ndarray:
    """``(n,)`` summed cell energies (GeV) of ``(n, L, C)`` images in MeV."""
    return np.clip(np.asarray(images, np.float64), 0.0, None).sum(axis=(1, 2)) * 1e-3


def network_inputs(images, cfg: EcalNetConfig, rng: np.random.Generator | None = None) -> dict:
    """``image`` ``(n, 3, L, C)``, ``log_energy`` ``(n,)`` and ``layer_cog`` ``(n, L)`` (each
    layer's centre of gravity in units of 200 mm, 0 for an empty layer), float32 (see the
    module docstring); with ``rng``, ``cfg.noise`` relative Gaussian noise per cell first."""
    e = np.clip(np.asarray(images, np.float64), 0.0, None)
    if rng is not None and cfg.noise > 0:
        e = e * (1.0 + cfg.noise * rng.standard_normal(e.shape))
        e = np.clip(e, 0.0, None)
    total = e.sum(axis=(1, 2))
    frac = e / np.where(total > 0, total, 1.0)[:, None, None] * e.shape[1]
    # the first-moment map: summed over a layer it is that layer's centre of gravity, so the
    # network starts from what the classical method computes and learns the corrections
    u = (cfg.geom.cell_centres_mm() / POSITION_UNIT_MM)[None, None, :]
    image = np.stack([frac, np.log1p(e) / 10.0, frac * u], axis=1).astype(np.float32)
    log_energy = np.log10(np.maximum(total * 1e-3, 1e-3)).astype(np.float32)
    # the classical per-layer centres of gravity as extra inputs: the slopes and the incident
    # point are nearly linear in them, so the network refines the classical answer
    from astroreco.detectors.ecal.classical import layer_cog

    cog, _ = layer_cog(e, cfg.geom)
    layer_cog_units = np.nan_to_num(cog / POSITION_UNIT_MM).astype(np.float32)
    return {"image": image, "log_energy": log_energy, "layer_cog": layer_cog_units}


def axis_targets(truth: dict, cfg: EcalNetConfig) -> np.ndarray:
    """Network targets ``(n, D)`` from truth (``theta_deg``, ``phi_deg``, ``x0_mm``,
    ``y0_mm``): ``theta / 180``; ``(x0, y0) / half width``; or ``(s_x, s_y) /
    0.2`` and ``(x0, y0) / 200 mm`` with the slopes ``s = tan(180 - theta) (cos phi,
    sin phi)`` (targets of unit spread)."""
    half = cfg.geom.half_width_mm
    if cfg.task == "angle":
        return (np.asarray(truth["theta_deg"], np.float64) / 180.0)[:, None]
    xy = np.stack([truth["x0_mm"], truth["y0_mm"]], 1).astype(np.float64) / half
    if cfg.task == "position":
        return xy
    t = np.tan(np.radians(180.0 - np.asarray(truth["theta_deg"], np.float64)))
    phi = np.radians(np.asarray(truth["phi_deg"], np.float64))
    xy = np.stack([truth["x0_mm"], truth["y0_mm"]], 1).astype(np.float64) / POSITION_UNIT_MM
    return np.concatenate([SLOPE_UNITS * np.stack([t * np.cos(phi), t * np.sin(phi)], 1),
                           xy], 1)


def target_resolution(energy_gev, cfg: EcalNetConfig) -> np.ndarray:
    """``(n, D)`` expected resolutions in target units (``angle``/``position`` tasks)."""
    res = Resolution(**cfg.resolution) if cfg.resolution else default_resolution(cfg.task)
    s = res(energy_gev)
    return s / 180.0 if cfg.task == "angle" else s / cfg.geom.half_width_mm


def default_resolution(task: str) -> Resolution:
    """Starting resolution before the first iteration: the seed's ISS fit for theta
    (3.08 deg / sqrt(E) (+) 0.2 deg), and 8 mm / sqrt(E) (+) 0.5 mm for the incident point
    (its 10 GeV and 300 GeV figures)."""
    if task == "position":
        return Resolution(a=[4.5, 5.5], b=[0.5, 0.5])
    return Resolution(a=[3.08], b=[0.2])


def predictions_to_axis(out, cfg: EcalNetConfig) -> dict:
    """Network outputs (numpy, target units) -> ``theta_deg``, ``phi_deg``, ``x0_mm``,
    ``y0_mm`` and their ``sigma_*`` (NaN where the task does not give them)."""
    half = cfg.geom.half_width_mm
    n = len(out["mean"])
    nan = np.full(n, np.nan)
    res = {k: nan.copy() for k in ("theta_deg", "phi_deg", "x0_mm", "y0_mm",
                                   "sigma_theta_deg", "sigma_x0_mm", "sigma_y0_mm")}
    m = out["mean"]
    if cfg.task == "angle":
        res["theta_deg"] = np.minimum(m[:, 0] * 180.0, 180.0)
    elif cfg.task == "position":
        res["x0_mm"], res["y0_mm"] = m[:, 0] * half, m[:, 1] * half
    else:
        sx, sy = m[:, 0] / SLOPE_UNITS, m[:, 1] / SLOPE_UNITS
        t = np.hypot(sx, sy)
        res["theta_deg"] = 180.0 - np.degrees(np.arctan(t))
        res["phi_deg"] = np.degrees(np.arctan2(sy, sx)) % 360.0
        res["x0_mm"], res["y0_mm"] = m[:, 2] * POSITION_UNIT_MM, m[:, 3] * POSITION_UNIT_MM
        sd = np.sqrt(np.exp(out["log_var"]))
        # d theta / d s along the slope direction: 1 / (1 + t^2) (radians per unit slope)
        safe_t = np.where(t > 0, t, 1.0)
        ux = np.where(t > 0, sx / safe_t, 1.0)
        uy = np.where(t > 0, sy / safe_t, 0.0)
        sig_t = np.sqrt((ux * sd[:, 0]) ** 2 + (uy * sd[:, 1]) ** 2) / SLOPE_UNITS
        res["sigma_theta_deg"] = np.degrees(sig_t / (1.0 + t ** 2))
        res["sigma_x0_mm"] = sd[:, 2] * POSITION_UNIT_MM
        res["sigma_y0_mm"] = sd[:, 3] * POSITION_UNIT_MM
    return res


class NeuralReconstructor:
    """Batch reconstruction with a trained ECAL model directory (the shipped default when
    ``model_dir`` is None)."""

    def __init__(self, model_dir=None, *, device: str = "cpu", batch_size: int = 512):
        from astroreco.io.modeldir import load_network

        model_dir = default_model_dir() if model_dir is None else model_dir
        self.config, self.model = load_network(model_dir, "ecal", EcalNetConfig, build_model,
                                               device=device)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model_dir = str(model_dir)

    def config_dict(self) -> dict:
        return {"model_dir": self.model_dir, "network": self.config.to_dict()}

    @torch.inference_mode()
    def reconstruct(self, images) -> dict:
        """Per-event axis (see :func:`predictions_to_axis`) and ``out_of_range`` flags."""
        from astroreco.detectors.ecal.pipeline import check_images

        check_images(images, geometry=self.config.geom)
        inputs = network_inputs(images, self.config)
        means, log_vars = [], []
        for s in range(0, len(inputs["image"]), self.batch_size):
            batch = {k: torch.from_numpy(v[s:s + self.batch_size]).to(self.device)
                     for k, v in inputs.items()}
            out = self.model(batch)["axis"]
            if isinstance(out, tuple):
                means.append(out[0].double().cpu().numpy())
                log_vars.append(out[1].double().cpu().numpy())
            else:
                means.append(out.double().cpu().numpy())
        n_out = self.config.n_outputs
        out = {"mean": np.concatenate(means) if means else np.zeros((0, n_out))}
        if log_vars:
            out["log_var"] = np.concatenate(log_vars)
        res = predictions_to_axis(out, self.config)
        energy = deposited_energy_gev(images)
        lo_hi = self.config.energy_range_gev
        res["out_of_range"] = (np.zeros(len(energy), bool) if lo_hi is None else
                               (energy < lo_hi[0]) | (energy > lo_hi[1]))
        return res


def default_model_dir():
    """The shipped default model (see :func:`astroreco.io.modeldir.shipped_model_dir`)."""
    from astroreco.io.modeldir import shipped_model_dir

    return shipped_model_dir("ecal")
