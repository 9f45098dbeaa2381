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

Input representation (:func:`network_inputs`), two modes:

- **full image** (``crop_cells=0``, the seed's input and the paper-scale configuration):
  three channels over the 18 x 72 cells, the cell energies as fractions of the event's
  deposit (x n_layers), ``log(1 + E_cell / 1 MeV) / 10`` and the fraction times the cell's
  coordinate (the first-moment map, from which a layer's centre of gravity is a sum); the
  targets are the absolute quantities above.
- **crop around the classical axis** (``crop_cells > 0``, the CPU-scale default): the
  centre-of-gravity fit (:func:`~astroreco.detectors.ecal.classical.centre_of_gravity`)
  gives a reference axis; in every layer the ``crop_cells`` cells around the reference
  position are kept (zero outside the calorimeter), so an inclined shower becomes a
  straight column in an 18 x ``crop_cells`` image.  A fourth channel holds each cell's
  offset from the reference position (cells / half crop), so the sub-cell position of the
  shower is visible.  The targets are the *corrections* to the reference axis (slope
  differences in units of 0.01, position differences in mm; theta difference in degrees
  for the ``angle`` task).  A convolutional network regressing an absolute position over a
  648 mm face learns slowly on a CPU; a correction of a few mm to a centred shower is the
  local pattern (the S-curve of the neighbour-cell ratio, the lateral profile) that
  convolutions learn fast.

The reference axis, its per-layer centres of gravity relative to it and ``log10(E_dep)``
enter the head as scalars.  Training adds 1% Gaussian noise per cell (the seed's
calibration-precision augmentation) before the reference is computed, as it would be on
data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from astroreco.detectors.ecal.geometry import EcalGeometry
from astroreco.errors import InputError
from astroreco.io.modeldir import LoadedNetwork

TASKS = ("angle", "position", "multitask")
#: multitask targets: slopes in units of 0.2 and incident points in units of 200 mm, both
#: with a spread of about 1 over the seed's angles and the front face
SLOPE_UNITS = 5.0
POSITION_UNIT_MM = 200.0
#: crop mode: slope corrections in units of 0.01, position corrections in mm
RESIDUAL_SLOPE_UNIT = 0.01
RESIDUAL_POSITION_UNIT_MM = 1.0


def n_channels(crop_cells: int) -> int:
    """Input channels of :func:`network_inputs` (a fourth, the cell offsets, when cropped)."""
    return 4 if crop_cells else 3


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
    crop_cells : int
        0: the full 18 x 72 image and absolute targets (the seed's network); > 0: that many
        cells per layer around the centre-of-gravity axis, and corrections to that axis as
        targets (see the module docstring).
    noise : float
        Relative Gaussian noise per cell added in training (the seed's 1%).
    aug_gain_spread, aug_dead_fraction, aug_noise_mev : float
        Further training augmentation against the gap between simulation and detector:
        per-event random cell gains ``1 + aug_gain_spread N(0, 1)``, a random fraction of
        dead cells, and Gaussian noise (MeV) on the cells that read out.  0: off.
    nll_beta : float
        ``multitask``: the beta of the beta-NLL loss (0: the plain Gaussian NLL, which
        weights well-measured showers most; 1: MSE-like gradients for the means).
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
    crop_cells: int = 16
    noise: float = 0.01
    aug_gain_spread: float = 0.0
    aug_dead_fraction: float = 0.0
    aug_noise_mev: float = 0.0
    nll_beta: float = 1.0
    resolution: dict | None = None
    energy_range_gev: tuple | None = None
    geometry: dict = field(default_factory=lambda: EcalGeometry().to_dict())

    def __post_init__(self):
        if self.task not in TASKS:
            raise InputError(f"task {self.task!r}: expected one of {', '.join(TASKS)}")
        if self.width < 1 or self.n_features < 1:
            raise InputError("width and n_features: expected positive integers")
        if self.crop_cells != 0 and not 4 <= self.crop_cells <= self.geom.n_cells:
            raise InputError(f"crop_cells {self.crop_cells}: expected 0 (full image) or "
                             f"4-{self.geom.n_cells} cells")
        for name in ("noise", "aug_gain_spread", "aug_dead_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise InputError(f"{name} {getattr(self, name)}: expected a fraction in "
                                 "[0, 1)")
        if not self.aug_noise_mev >= 0:
            raise InputError(f"aug_noise_mev {self.aug_noise_mev}: expected >= 0")
        if not 0 <= self.nll_beta <= 1:
            raise InputError(f"nll_beta {self.nll_beta}: expected a value in [0, 1]")
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
        """The seed's size and input: ResNet-18 widths (64-512) on the full image."""
        kw.setdefault("crop_cells", 0)
        return cls(task=task, width=64, n_features=512, **kw)

    @property
    def image_shape(self) -> tuple:
        g = self.geom
        return (g.n_layers, self.crop_cells or g.n_cells)

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

    backbone = SmallImageResNet(n_channels(cfg.crop_cells), cfg.image_shape, width=cfg.width,
                                pool=cfg.pool, n_features=cfg.n_features)
    keys = _scalar_sizes(cfg)
    f = cfg.n_features + sum(keys.values())
    if cfg.task == "multitask":
        # targets have unit spread: start the variances there
        head = GaussianHead(f, 4, log_var_range=(-18.0, 4.0), init_log_var=0.0)
    else:
        head = torch.nn.Linear(f, cfg.n_outputs)
    return MultiTaskNet(backbone, {"axis": head}, scalar_keys=tuple(keys))


def _scalar_sizes(cfg: EcalNetConfig) -> dict:
    """Scalar inputs appended to the backbone features, and their sizes."""
    sizes = {"log_energy": 1, "layer_cog": cfg.geom.n_layers}
    if cfg.crop_cells:
        sizes["reference"] = 4
    return sizes


def build_loss(cfg: EcalNetConfig) -> torch.nn.Module:
    from astroreco.losses import GaussianNLLLoss, ResolutionWeightedMSELoss
    from astroreco.training.tasks import TaskLoss, Term

    loss = GaussianNLLLoss(beta=cfg.nll_beta) if cfg.task == "multitask" else \
        ResolutionWeightedMSELoss()
    return TaskLoss([Term("axis", "target", loss)])


def deposited_energy_gev(images) -> np.ndarray:
    """``(n,)`` summed cell energies (GeV) of ``(n, L, C)`` images in MeV."""
    return np.clip(np.asarray(images, np.float64), 0.0, None).sum(axis=(1, 2)) * 1e-3


def network_inputs(images, cfg: EcalNetConfig, rng: np.random.Generator | None = None) -> dict:
    """Network inputs of ``(n, L, C)`` images in MeV (see the module docstring), float32.

    ``image`` ``(n, channels, L, C or crop_cells)``, ``log_energy`` ``(n,)``, ``layer_cog``
    ``(n, L)`` (each layer's centre of gravity in units of 200 mm, or, cropped, relative to
    the reference axis in cells; 0 for an empty layer) and, cropped, ``reference`` ``(n, 4)``
    (the centre-of-gravity axis: slopes x 5 and incident point / 200 mm).  With ``rng``,
    ``cfg.noise`` relative Gaussian noise per cell first, and the ``aug_*`` augmentation
    when set.
    """
    from astroreco.detectors.ecal.classical import layer_cog

    g = cfg.geom
    e = np.clip(np.asarray(images, np.float64), 0.0, None)
    if rng is not None:
        e = _augment(e, cfg, rng)
    total = e.sum(axis=(1, 2))
    frac = e / np.where(total > 0, total, 1.0)[:, None, None] * e.shape[1]
    log_energy = np.log10(np.maximum(total * 1e-3, 1e-3)).astype(np.float32)
    # the classical per-layer centres of gravity as extra inputs: the slopes and the incident
    # point are nearly linear in them, so the network refines the classical answer
    cog, layer_e = layer_cog(e, g)
    if not cfg.crop_cells:
        # the first-moment map: summed over a layer it is that layer's centre of gravity
        u = (g.cell_centres_mm() / POSITION_UNIT_MM)[None, None, :]
        image = np.stack([frac, np.log1p(e) / 10.0, frac * u], axis=1).astype(np.float32)
        return {"image": image, "log_energy": log_energy,
                "layer_cog": np.nan_to_num(cog / POSITION_UNIT_MM).astype(np.float32)}
    ref = _reference_axis(cog, layer_e, g)
    u_ref = _reference_positions(ref, g)                              # (n, L) mm
    w = cfg.crop_cells
    # first cell of each layer's crop: the cell holding the reference, minus half the crop
    centre_cell = np.floor((u_ref + g.half_width_mm) / g.cell_mm).astype(np.int64)
    first = np.clip(centre_cell, -w, g.n_cells + w) - w // 2
    idx = first[..., None] + np.arange(w)                            # (n, L, w)
    inside = (idx >= 0) & (idx < g.n_cells)
    safe = np.clip(idx, 0, g.n_cells - 1)
    crop_frac = np.where(inside, np.take_along_axis(frac, safe, 2), 0.0)
    crop_log = np.where(inside, np.take_along_axis(np.log1p(e), safe, 2), 0.0) / 10.0
    cell_u = -g.half_width_mm + (idx + 0.5) * g.cell_mm
    offset = (cell_u - u_ref[..., None]) / g.cell_mm / (0.5 * w)     # about [-1, 1]
    image = np.stack([crop_frac, crop_log, offset, crop_frac * offset], 1).astype(np.float32)
    rel_cog = np.nan_to_num((cog - u_ref) / g.cell_mm)
    reference = np.stack([ref["slope_x"] * SLOPE_UNITS, ref["slope_y"] * SLOPE_UNITS,
                          ref["x0_mm"] / POSITION_UNIT_MM, ref["y0_mm"] / POSITION_UNIT_MM],
                         1)
    return {"image": image, "log_energy": log_energy,
            "layer_cog": rel_cog.astype(np.float32), "reference": reference.astype(np.float32)}


def _augment(e, cfg: EcalNetConfig, rng: np.random.Generator) -> np.ndarray:
    """Training augmentation of ``(n, L, C)`` cell energies (MeV): see :class:`EcalNetConfig`."""
    gain = 1.0
    if cfg.noise > 0:
        gain = 1.0 + cfg.noise * rng.standard_normal(e.shape)
    if cfg.aug_gain_spread > 0:
        gain = gain * (1.0 + cfg.aug_gain_spread * rng.standard_normal(e.shape))
    e = e * gain
    if cfg.aug_dead_fraction > 0:
        e = np.where(rng.random(e.shape) < cfg.aug_dead_fraction, 0.0, e)
    if cfg.aug_noise_mev > 0:
        e = np.where(e > 0, e + cfg.aug_noise_mev * rng.standard_normal(e.shape), 0.0)
    return np.clip(e, 0.0, None)


def _reference_axis(cog, layer_energy, g: EcalGeometry) -> dict:
    """The centre-of-gravity axis; where a projection has fewer than two measured layers,
    a vertical axis through the energy-weighted mean of that projection's layer centres of
    gravity (the middle of the face for an empty projection)."""
    from astroreco.detectors.ecal.classical import fit_axis

    ref = fit_axis(cog, layer_energy, g)
    for c, sel in (("x", g.measures_x()), ("y", ~g.measures_x())):
        w = np.where(np.isfinite(cog[:, sel]), layer_energy[:, sel], 0.0)
        sw = w.sum(1)
        mean = (w * np.nan_to_num(cog[:, sel])).sum(1) / np.where(sw > 0, sw, 1.0)
        bad = ~np.isfinite(ref[f"{c}0_mm"])
        ref[f"{c}0_mm"] = np.where(bad, mean, ref[f"{c}0_mm"])
        ref[f"slope_{c}"] = np.where(bad, 0.0, ref[f"slope_{c}"])
    return ref


def _reference_positions(ref: dict, g: EcalGeometry) -> np.ndarray:
    """``(n, L)`` the reference axis's coordinate (mm) in each layer's measured projection."""
    z = g.layer_z_mm()[None, :]
    ux = ref["x0_mm"][:, None] + ref["slope_x"][:, None] * z
    uy = ref["y0_mm"][:, None] + ref["slope_y"][:, None] * z
    return np.where(g.measures_x()[None, :], ux, uy)


def reference_from_inputs(inputs: dict) -> dict:
    """The reference axis (``slope_x``, ``slope_y``, ``x0_mm``, ``y0_mm``) back from the
    ``reference`` input of a cropped network."""
    r = np.asarray(inputs["reference"], np.float64)
    return {"slope_x": r[:, 0] / SLOPE_UNITS, "slope_y": r[:, 1] / SLOPE_UNITS,
            "x0_mm": r[:, 2] * POSITION_UNIT_MM, "y0_mm": r[:, 3] * POSITION_UNIT_MM}


def _theta_deg(slope_x, slope_y) -> np.ndarray:
    return 180.0 - np.degrees(np.arctan(np.hypot(slope_x, slope_y)))


def axis_targets(truth: dict, cfg: EcalNetConfig, reference: dict | None = None) -> np.ndarray:
    """Network targets ``(n, D)`` from truth (``theta_deg``, ``phi_deg``, ``x0_mm``,
    ``y0_mm``).

    Full image: ``theta / 180``; ``(x0, y0) / half width``; or ``(s_x, s_y) / 0.2`` and
    ``(x0, y0) / 200 mm`` with the slopes ``s = tan(180 - theta) (cos phi, sin phi)``
    (targets of unit spread).  Cropped (``reference`` from :func:`reference_from_inputs`):
    the differences truth - reference, theta in degrees, slopes in units of 0.01,
    positions in mm.
    """
    t = np.tan(np.radians(180.0 - np.asarray(truth["theta_deg"], np.float64)))
    phi = np.radians(np.asarray(truth["phi_deg"], np.float64))
    slopes = np.stack([t * np.cos(phi), t * np.sin(phi)], 1)
    xy = np.stack([truth["x0_mm"], truth["y0_mm"]], 1).astype(np.float64)
    if cfg.crop_cells:
        if reference is None:
            raise InputError("axis_targets: a cropped network needs the reference axis")
        ref_xy = np.stack([reference["x0_mm"], reference["y0_mm"]], 1)
        ref_s = np.stack([reference["slope_x"], reference["slope_y"]], 1)
        if cfg.task == "angle":
            theta_ref = _theta_deg(ref_s[:, 0], ref_s[:, 1])
            return (np.asarray(truth["theta_deg"], np.float64) - theta_ref)[:, None]
        d_xy = (xy - ref_xy) / RESIDUAL_POSITION_UNIT_MM
        if cfg.task == "position":
            return d_xy
        return np.concatenate([(slopes - ref_s) / RESIDUAL_SLOPE_UNIT, d_xy], 1)
    if cfg.task == "angle":
        return (np.asarray(truth["theta_deg"], np.float64) / 180.0)[:, None]
    if cfg.task == "position":
        return xy / cfg.geom.half_width_mm
    return np.concatenate([SLOPE_UNITS * slopes, xy / POSITION_UNIT_MM], 1)


def target_resolution(energy_gev, cfg: EcalNetConfig) -> np.ndarray:
    """``(n, D)`` expected resolutions in target units (``angle``/``position`` tasks)."""
    res = Resolution(**cfg.resolution) if cfg.resolution else default_resolution(cfg.task)
    s = res(energy_gev)
    if cfg.crop_cells:  # targets in degrees and mm
        return s / RESIDUAL_POSITION_UNIT_MM if cfg.task == "position" else s
    return s / 180.0 if cfg.task == "angle" else s / cfg.geom.half_width_mm


def default_resolution(task: str) -> Resolution:
    """Starting resolution before the first iteration: the seed's ISS fit for theta
    (3.08 deg / sqrt(E) (+) 0.2 deg), and 8 mm / sqrt(E) (+) 0.5 mm for the incident point
    (its 10 GeV and 300 GeV figures)."""
    if task == "position":
        return Resolution(a=[4.5, 5.5], b=[0.5, 0.5])
    return Resolution(a=[3.08], b=[0.2])


def predictions_to_axis(out, cfg: EcalNetConfig, reference: dict | None = None) -> dict:
    """Network outputs (numpy, target units; ``reference`` for a cropped network) ->
    ``theta_deg``, ``phi_deg``, ``x0_mm``, ``y0_mm`` and their ``sigma_*`` (NaN where the
    task does not give them)."""
    n = len(out["mean"])
    nan = np.full(n, np.nan)
    res = {k: nan.copy() for k in ("theta_deg", "phi_deg", "x0_mm", "y0_mm",
                                   "sigma_theta_deg", "sigma_x0_mm", "sigma_y0_mm")}
    m = np.asarray(out["mean"], np.float64)
    if cfg.crop_cells:
        if reference is None:
            raise InputError("predictions_to_axis: a cropped network needs the reference axis")
        ref_s = (reference["slope_x"], reference["slope_y"])
        if cfg.task == "angle":
            res["theta_deg"] = np.minimum(_theta_deg(*ref_s) + m[:, 0], 180.0)
            return res
        x0 = reference["x0_mm"] + m[:, 0 if cfg.task == "position" else 2] \
            * RESIDUAL_POSITION_UNIT_MM
        y0 = reference["y0_mm"] + m[:, 1 if cfg.task == "position" else 3] \
            * RESIDUAL_POSITION_UNIT_MM
        res["x0_mm"], res["y0_mm"] = x0, y0
        if cfg.task == "position":
            return res
        slope_scale, pos_scale = RESIDUAL_SLOPE_UNIT, RESIDUAL_POSITION_UNIT_MM
        sx = ref_s[0] + m[:, 0] * slope_scale
        sy = ref_s[1] + m[:, 1] * slope_scale
    elif cfg.task == "angle":
        res["theta_deg"] = np.minimum(m[:, 0] * 180.0, 180.0)
        return res
    elif cfg.task == "position":
        half = cfg.geom.half_width_mm
        res["x0_mm"], res["y0_mm"] = m[:, 0] * half, m[:, 1] * half
        return res
    else:
        slope_scale, pos_scale = 1.0 / SLOPE_UNITS, POSITION_UNIT_MM
        sx, sy = m[:, 0] * slope_scale, m[:, 1] * slope_scale
        res["x0_mm"], res["y0_mm"] = m[:, 2] * pos_scale, m[:, 3] * pos_scale
    t = np.hypot(sx, sy)
    res["theta_deg"] = 180.0 - np.degrees(np.arctan(t))
    res["phi_deg"] = np.degrees(np.arctan2(sy, sx)) % 360.0
    sd = np.sqrt(np.exp(np.asarray(out["log_var"], np.float64)))
    # d theta / d s along the slope direction: 1 / (1 + t^2) (radians per unit slope)
    safe_t = np.where(t > 0, t, 1.0)
    ux = np.where(t > 0, sx / safe_t, 1.0)
    uy = np.where(t > 0, sy / safe_t, 0.0)
    sig_t = np.sqrt((ux * sd[:, 0]) ** 2 + (uy * sd[:, 1]) ** 2) * slope_scale
    res["sigma_theta_deg"] = np.degrees(sig_t / (1.0 + t ** 2))
    res["sigma_x0_mm"] = sd[:, 2] * pos_scale
    res["sigma_y0_mm"] = sd[:, 3] * pos_scale
    return res


class NeuralReconstructor(LoadedNetwork):
    """Batch reconstruction with a trained ECAL model directory (the shipped default when
    ``model_dir`` is None)."""

    def __init__(self, model_dir=None, *, device: str = "cpu", batch_size: int = 512):
        model_dir = default_model_dir() if model_dir is None else model_dir
        super().__init__(model_dir, "ecal", EcalNetConfig, build_model, device=device,
                         batch_size=batch_size)

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
        ref = reference_from_inputs(inputs) if self.config.crop_cells else None
        res = predictions_to_axis(out, self.config, ref)
        energy = deposited_energy_gev(images)
        lo_hi = self.config.energy_range_gev
        res["out_of_range"] = (np.zeros(len(energy), bool) if lo_hi is None else
                               (energy < lo_hi[0]) | (energy > lo_hi[1]))
        return res


def default_model_dir():
    """The shipped default model (see :func:`astroreco.io.modeldir.shipped_model_dir`)."""
    from astroreco.io.modeldir import shipped_model_dir

    return shipped_model_dir("ecal")
