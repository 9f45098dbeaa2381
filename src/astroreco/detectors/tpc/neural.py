"""The TPC neural reconstruction: what the sparse 3D networks see, learn and return.

This module knows the TPC (voxel grid, truth direction, the grid's symmetries) and composes
the detector-agnostic pieces of :mod:`astroreco.nn` (sparse 3D convolutions, heads),
:mod:`astroreco.losses` and :mod:`astroreco.training`.  Architectures
(``TpcNetConfig.architecture``), all on the seed's sparse backbone:

``hcn`` (default)
    Heteroscedastic: a unit direction and a concentration ``kappa`` on two MLP branches,
    trained with the von Mises-Fisher NLL (stable ``log C3``); ``kappa`` is the per-event
    uncertainty used for efficiency cuts.
``rcn``
    Regular: a unit direction trained with the cosine loss, no uncertainty.
``gaussian``
    A 3-vector with a diagonal Gaussian NLL (the related work's heteroscedastic
    regression); the direction is the normalised mean and ``kappa`` the equivalent
    concentration ``1 / mean(sigma^2)`` (a vMF of large ``kappa`` has variance
    ``1 / kappa`` along each tangent axis).

Input: the voxels of a track, optionally grouped ``g x g x g`` (electrons summed) onto a
coarser ``(120 / g)^3`` grid -- the CPU-scale configuration uses ``g = 2`` -- as padded
arrays (``coords``, ``values`` in units of ``charge_scale`` electrons, ``n_voxels``).  With
``subvoxels`` a grouped voxel keeps the charges of its ``g^3`` voxels as channels instead of
their sum (space to depth): the network runs on the coarse grid at its cost but sees the
500 um structure that sets where a track starts.
Augmentation and test-time averaging use the 48 symmetries of the cube (axis permutations
and reflections about the grid centre, where every track's centre of charge sits), which
map the grid onto itself exactly and the direction by the same signed permutation.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
import torch

from astroreco.detectors.tpc.calibrate import (_check_kappa_calibration, apply_kappa_calibration,
                                               calibration_features, pass_features,
                                               track_features)
from astroreco.errors import InputError
from astroreco.io.modeldir import LoadedNetwork

ARCHITECTURES = ("hcn", "rcn", "gaussian")
GRID_SIZE = 120

#: the 48 symmetries of the cube: (axis permutation, reflection signs)
SYMMETRIES = tuple((perm, signs) for perm in itertools.permutations(range(3))
                   for signs in itertools.product((1, -1), repeat=3))
#: symmetry subsets averaged at inference, by count
TTA_SYMMETRIES = {1: (0,), 2: (0, 7), 4: (0, 7, 10, 13), 8: (0, 7, 10, 13, 17, 22, 42, 45),
                  48: tuple(range(48))}


def _layers(spec) -> tuple:
    return tuple(tuple(layer) for layer in spec)


#: the seed paper's backbone on the full 120^3 grid (PHYSICS.md): 2160 features
PAPER_LAYERS = (("subm", 32, 7), ("subm", 40, 5), ("conv", 50, 6, 2), ("pool", 2),
                ("conv", 30, 3, 2), ("conv", 10, 3, 1), ("pool", 2))
#: a CPU-scale backbone for the 60^3 grid of 1 mm voxels (voxel_group 2): 4^3 x 16 features
CPU_LAYERS = (("subm", 16, 5), ("subm", 24, 3), ("conv", 32, 4, 2), ("pool", 2),
              ("conv", 32, 3, 2), ("conv", 16, 3, 1))


@dataclass
class TpcNetConfig:
    """Architecture, input representation and inference settings of a TPC network.

    Attributes
    ----------
    architecture : str
        One of :data:`ARCHITECTURES`.
    voxel_group : int
        Voxels grouped ``g x g x g`` before the network (1: the 500 um grid; 2: 1 mm).
    layers : tuple
        Sparse backbone layers (see :class:`astroreco.nn.sparse.SparseBackbone3d`).
    trunk : tuple of int
        Shared dense layers (ReLU) after the backbone.
    branch : tuple of int
        Widths of each head's own MLP branch.
    charge_scale : float
        Electrons per unit of network input.
    kappa_min : float
        Lower bound of the predicted concentration.
    backend : str
        Sparse convolution backend: ``auto``, ``spconv`` or ``torch`` (same weights).
    tta : int
        Cube symmetries averaged at inference (see :data:`TTA_SYMMETRIES`).
    kappa_scale : float
        Factor applied to the predicted ``kappa`` at inference (temperature scaling); 1 = as
        trained.  Models calibrated before ``kappa_calibration`` existed carry it.
    subvoxels : bool
        With ``voxel_group > 1``: each grouped voxel carries the charges of its
        ``voxel_group^3`` voxels as input channels (see :func:`group_voxels`) instead of their
        sum.
    kappa_calibration : dict, optional
        Map of the predicted ``kappa`` fitted on validation events after training
        (:func:`~astroreco.detectors.tpc.calibrate.calibrate_kappa`): a learned map
        (``{"kind": "mlp", ...}``, :mod:`astroreco.nn.vmf_calibrator`) or a linear one per
        bin of measured energy (``{"energy_edges_kev": [...], "features": [...],
        "feature_mean": [...], "feature_std": [...], "coef": [...]}``).  None:
        ``kappa_scale`` only.
    """

    architecture: str = "hcn"
    voxel_group: int = 2
    layers: tuple = CPU_LAYERS
    trunk: tuple = (256,)
    branch: tuple = (128, 32)
    charge_scale: float = 4.0
    kappa_min: float = 1e-3
    backend: str = "auto"
    tta: int = 1
    kappa_scale: float = 1.0
    kappa_calibration: dict | None = None
    subvoxels: bool = False

    def __post_init__(self):
        self.layers = _layers(self.layers)
        self.trunk = tuple(int(w) for w in self.trunk)
        self.branch = tuple(int(w) for w in self.branch)
        if self.architecture not in ARCHITECTURES:
            raise InputError(f"architecture {self.architecture!r}: expected one of "
                             f"{', '.join(ARCHITECTURES)}")
        if self.voxel_group < 1 or GRID_SIZE % self.voxel_group:
            raise InputError(f"voxel_group {self.voxel_group}: expected a divisor of "
                             f"{GRID_SIZE} (1, 2, 3, 4, ...)")
        if not isinstance(self.subvoxels, bool):
            raise InputError(f"subvoxels {self.subvoxels!r}: expected true or false")
        if self.subvoxels and self.voxel_group == 1:
            raise InputError("subvoxels: expected voxel_group > 1 (the voxels of a group "
                             "become its channels)")
        if not self.charge_scale > 0:
            raise InputError(f"charge_scale {self.charge_scale}: expected > 0")
        if len(self.branch) < 1:
            raise InputError("branch: expected at least one width")
        if self.backend not in ("auto", "spconv", "torch"):
            raise InputError(f"backend {self.backend!r}: expected auto, spconv or torch")
        if self.tta not in TTA_SYMMETRIES:
            raise InputError(f"tta {self.tta}: expected one of "
                             f"{', '.join(map(str, TTA_SYMMETRIES))}")
        if not (np.isfinite(self.kappa_scale) and self.kappa_scale > 0):
            raise InputError(f"kappa_scale {self.kappa_scale}: expected a finite value > 0")
        if self.kappa_calibration is not None:
            self.kappa_calibration = _check_kappa_calibration(self.kappa_calibration)

    @property
    def grid(self) -> int:
        return GRID_SIZE // self.voxel_group

    @property
    def in_channels(self) -> int:
        return self.voxel_group ** 3 if self.subvoxels else 1

    @classmethod
    def paper(cls, architecture: str = "hcn", **kw) -> "TpcNetConfig":
        """The seed paper's network: 120^3 grid, its backbone, trunk 500, branches 200-50."""
        return cls(architecture=architecture, voxel_group=1, layers=PAPER_LAYERS,
                   trunk=(500,), branch=(200, 50), **kw)

    @classmethod
    def cpu(cls, architecture: str = "hcn", **kw) -> "TpcNetConfig":
        """The CPU-scale network (the defaults)."""
        return cls(architecture=architecture, **kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [list(layer) for layer in self.layers]
        d["trunk"], d["branch"] = list(self.trunk), list(self.branch)
        return d


def build_model(cfg: TpcNetConfig) -> torch.nn.Module:
    """The network of ``cfg`` (randomly initialised)."""
    from astroreco.nn import heads
    from astroreco.nn.models import SparseMultiTaskNet
    from astroreco.nn.sparse import SparseBackbone3d

    g = cfg.grid
    backbone = SparseBackbone3d(cfg.layers, in_channels=cfg.in_channels, spatial_shape=(g, g, g),
                                backend=cfg.backend)
    trunk = heads.mlp(backbone.n_features, cfg.trunk, ("relu",) * len(cfg.trunk))
    n = trunk.n_features
    acts = ("relu",) * (len(cfg.branch) - 1)
    if cfg.architecture == "hcn":
        head = heads.BranchedDirectionKappaHead(
            n, 3, direction_widths=cfg.branch, direction_activations=acts + ("tanh",),
            kappa_widths=cfg.branch, kappa_activations=acts + ("relu",),
            kappa_min=cfg.kappa_min)
    elif cfg.architecture == "rcn":
        head = heads.BranchHead(n, cfg.branch, acts + ("tanh",),
                                lambda m: heads.DirectionHead(m, 3))
    else:
        head = heads.BranchHead(n, cfg.branch, acts + ("tanh",),
                                lambda m: heads.GaussianHead(m, 3, log_var_range=(-12.0, 2.0)))
    return SparseMultiTaskNet(backbone, {"direction": head}, spatial_shape=(g, g, g),
                              trunk=trunk)


def build_loss(cfg: TpcNetConfig) -> torch.nn.Module:
    """The task loss matching :func:`build_model`."""
    from astroreco import losses
    from astroreco.training.tasks import TaskLoss, Term

    loss = {"hcn": losses.VonMisesFisherLoss, "rcn": losses.CosineLoss,
            "gaussian": losses.GaussianNLLLoss}[cfg.architecture]()
    return TaskLoss([Term("direction", "direction", loss)])


# --------------------------------------------------------------------------------------------
# Inputs: grouping, symmetries, padding
# --------------------------------------------------------------------------------------------

def group_voxels(offsets, coords, values, group: int, *, channels: bool = False):
    """Sum voxels into ``group^3`` blocks: ``(offsets, coords, values)`` of the coarse grid.

    Events keep their order; within an event the coarse voxels are sorted by index.  With
    ``channels`` the block's voxels are not summed: ``values`` is ``(n_coarse, group^3)``,
    the voxel at offset ``(a, b, c)`` inside its block in channel ``(a * group + b) * group
    + c`` (0 where the block has no such voxel).
    """
    offsets = np.asarray(offsets, np.int64)
    coords = np.asarray(coords, np.int64)
    values = np.asarray(values, np.float32)
    if group == 1:
        return offsets, coords, values[:, None] if channels else values
    g = GRID_SIZE // group
    event = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    c = coords // group
    key = ((event * g + c[:, 0]) * g + c[:, 1]) * g + c[:, 2]
    uniq, inverse = np.unique(key, return_inverse=True)
    if channels:
        sub = coords % group
        summed = np.zeros((uniq.size, group ** 3), np.float32)
        # (the voxels of an event are distinct, so no two land on one channel of a block)
        summed[inverse, (sub[:, 0] * group + sub[:, 1]) * group + sub[:, 2]] = values
    else:
        summed = np.bincount(inverse, weights=values, minlength=uniq.size).astype(np.float32)
    ev = uniq // g ** 3
    rest = uniq % g ** 3
    new_coords = np.stack([rest // (g * g), rest // g % g, rest % g], axis=1)
    new_offsets = np.zeros(len(offsets), np.int64)
    np.cumsum(np.bincount(ev, minlength=len(offsets) - 1), out=new_offsets[1:])
    return new_offsets, new_coords, summed


def symmetry_matrix(index: int) -> np.ndarray:
    """The 3x3 signed permutation of cube symmetry ``index`` (0 = identity)."""
    perm, signs = SYMMETRIES[int(index)]
    m = np.zeros((3, 3))
    m[np.arange(3), perm] = signs
    return m


def apply_symmetry(coords, event, symmetry, grid: int):
    """Voxel indices of events under their cube symmetries (``symmetry[event]``).

    Axis ``a`` of the result is ``signs[a] * axis perm[a]`` of the input, a reflection
    ``i -> grid - 1 - i`` about the grid centre for a sign -1.
    """
    symmetry = np.asarray(symmetry)
    out = np.empty_like(coords)
    for s in np.unique(symmetry):
        rows = symmetry[event] == s
        perm, signs = SYMMETRIES[int(s)]
        c = coords[rows][:, list(perm)]
        for a in range(3):
            if signs[a] < 0:
                c[:, a] = grid - 1 - c[:, a]
        out[rows] = c
    return out


def network_inputs(offsets, coords, values, cfg: TpcNetConfig, *, symmetry=None,
                   pad_to: int | None = None) -> dict:
    """Padded network inputs ``coords (N, V, 3) int16``, ``values (N, V) f4``,
    ``n_voxels (N,) i4`` of voxel events (500 um grid indices and electrons).

    ``symmetry`` (int or ``(N,)``) applies cube symmetries (after grouping; with
    ``cfg.subvoxels`` before it, on the 120^3 grid, so that the channels move with the
    voxels); ``pad_to`` fixes ``V`` (at least the largest grouped event).  With
    ``cfg.subvoxels``, ``values`` is ``(N, V, voxel_group^3)``.
    """
    offsets = np.asarray(offsets, np.int64)
    n = len(offsets) - 1
    if symmetry is not None and cfg.subvoxels:
        fine = np.repeat(np.arange(n), np.diff(offsets))
        coords = apply_symmetry(np.asarray(coords, np.int64), fine,
                                np.broadcast_to(symmetry, (n,)), GRID_SIZE)
        symmetry = None
    offsets, coords, values = group_voxels(offsets, coords, values, cfg.voxel_group,
                                           channels=cfg.subvoxels)
    sizes = np.diff(offsets)
    event = np.repeat(np.arange(n), sizes)
    if symmetry is not None:
        coords = apply_symmetry(coords, event, np.broadcast_to(symmetry, (n,)), cfg.grid)
    v = int(sizes.max()) if n else 1
    if pad_to is not None:
        if pad_to < v:
            raise InputError(f"pad_to {pad_to}: an event has {v} voxels")
        v = int(pad_to)
    slot = np.arange(len(coords)) - np.repeat(offsets[:-1], sizes)
    c = np.zeros((n, v, 3), np.int16)
    q = np.zeros((n, v) + values.shape[1:], np.float32)
    c[event, slot] = coords
    q[event, slot] = values / cfg.charge_scale
    return {"coords": c, "values": q, "n_voxels": sizes.astype(np.int32)}


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------

#: what :class:`NeuralReconstructor` returns, per event
OUTPUT_FIELDS = (
    ("dir_x", "f4", "", "reconstructed initial direction, x (grid frame)"),
    ("dir_y", "f4", "", "reconstructed initial direction, y"),
    ("dir_z", "f4", "", "reconstructed initial direction, z"),
    ("kappa", "f4", "", "von Mises-Fisher concentration of the direction (NaN for rcn)"),
    ("n_voxels", "i4", "", "voxels of the track (500 um grid)"),
    ("status", "u1", "", "0: reconstructed"),
)


class NeuralReconstructor(LoadedNetwork):
    """Batch reconstruction with a trained TPC model directory.

    Parameters
    ----------
    model_dir : path-like
        A directory written by :func:`astroreco.detectors.tpc.train.train`; the shipped
        default when None.
    device : str
        torch device.
    batch_size : int
        Events per forward pass.
    tta : int, optional
        Cube symmetries averaged (see :data:`TTA_SYMMETRIES`); the model's value when None.
    backend : str, optional
        Sparse backend (``auto``, ``spconv``, ``torch``); the model's value when None.
    """

    fields = OUTPUT_FIELDS
    status_bits = {}

    def __init__(self, model_dir=None, *, device: str = "cpu", batch_size: int = 64,
                 tta: int | None = None, backend: str | None = None):
        model_dir = default_model_dir() if model_dir is None else model_dir
        super().__init__(model_dir, "tpc", TpcNetConfig, build_model, device=device,
                         batch_size=batch_size, overrides={"tta": tta, "backend": backend})

    @torch.inference_mode()
    def _forward(self, inputs: dict):
        vec, kappa = [], []
        n = len(inputs["n_voxels"])
        for s in range(0, n, self.batch_size):
            batch = {k: torch.from_numpy(v[s:s + self.batch_size]).to(self.device)
                     for k, v in inputs.items()}
            out = self.model(batch)["direction"]
            if self.config.architecture == "hcn":
                d, k = out
            elif self.config.architecture == "gaussian":
                mean, log_var = out
                d = torch.nn.functional.normalize(mean, dim=1)
                k = 1.0 / torch.exp(log_var).mean(dim=1)
            else:
                d, k = out, torch.full((len(out),), float("nan"))
            vec.append(d.double().cpu().numpy())
            kappa.append(k.double().cpu().numpy())
        return np.concatenate(vec), np.concatenate(kappa)

    def predict(self, offsets, coords, values, *, features: bool = False):
        """The network's direction and uncalibrated ``kappa`` (test-time passes combined)
        of sparse voxel events, and with ``features`` the per-event quantities a kappa map
        may use (:mod:`~astroreco.detectors.tpc.calibrate`: ``calibration_features``,
        ``track_features``, ``pass_features``, and ``log_kappa_mix``); else that dict holds
        only the first."""
        from astroreco.stats.vmf_calibration import vmf_kappa_from_mean_cosine, vmf_mean_cosine

        offsets = np.asarray(offsets, np.int64)
        n = len(offsets) - 1
        syms = TTA_SYMMETRIES[self.config.tta]
        total = np.zeros((n, 3))
        directions, kappas = [], []
        for s in syms:
            d, k = self._forward(network_inputs(offsets, coords, values, self.config,
                                                symmetry=s))
            d = d @ symmetry_matrix(s)  # back to the grid frame (the matrix is orthogonal)
            w = vmf_mean_cosine(k) if np.all(np.isfinite(k)) else np.ones(n)
            total += w[:, None] * d
            directions.append(d)
            kappas.append(k)
        norm = np.linalg.norm(total, axis=1)
        direction = total / np.where(norm > 0, norm, 1.0)[:, None]
        if len(syms) == 1:
            kappa = kappas[0]
        elif np.all(np.isfinite(kappas[0])):
            # the passes' densities are mixed (averaged): kappa of the vMF with the
            # mixture's mean resultant length
            kappa = vmf_kappa_from_mean_cosine(norm / len(syms))
        else:
            kappa = np.full(n, np.nan)
        measured = calibration_features(offsets, values)
        if features and np.all(np.isfinite(kappa)):
            measured.update(track_features(offsets, coords, values))
            measured.update(pass_features(np.stack(directions, 1), np.stack(kappas, 1)))
            measured["log_kappa_mix"] = np.log(np.maximum(kappa, 1e-12))
        return direction, kappa, measured

    def reconstruct(self, offsets, coords, values) -> dict:
        """Per-event results (:data:`OUTPUT_FIELDS`) of sparse voxel events."""
        cal = self.config.kappa_calibration
        direction, kappa, measured = self.predict(
            offsets, coords, values, features=cal is not None and cal.get("kind") == "mlp")
        n = len(kappa)
        out = {"dir_x": direction[:, 0], "dir_y": direction[:, 1], "dir_z": direction[:, 2],
               "kappa": np.maximum(apply_kappa_calibration(
                   kappa, measured, cal, self.config.kappa_scale), self.config.kappa_min),
               "n_voxels": np.diff(np.asarray(offsets, np.int64)),
               "status": np.zeros(n, np.uint8)}
        return {name: np.asarray(out[name]).astype(dtype) for name, dtype, *_ in OUTPUT_FIELDS}


def default_model_dir():
    """The shipped default model (see :func:`astroreco.io.modeldir.shipped_model_dir`)."""
    from astroreco.io.modeldir import shipped_model_dir

    return shipped_model_dir("tpc")
