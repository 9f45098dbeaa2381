"""The IXPE neural reconstruction: what the networks see, learn and return.

This module knows the detector (tracks, truth, lattice symmetries) and composes the
detector-agnostic pieces of :mod:`astroreco.nn`, :mod:`astroreco.losses` and
:mod:`astroreco.training`.  Architectures (``IxpeNetConfig.architecture``):

``multitask`` (default)
    A compact CNN on the hexagonal crop with four heads: emission angle as a von Mises
    distribution of 2 phi (mean and concentration kappa), impact point and energy with
    Gaussian uncertainties.  Optionally the predicted impact point feeds the angle head.
    Per-event weights for the weighted Stokes analysis are I1(kappa)/I0(kappa), the
    expected modulation of the event.
``vgg_multihead`` / ``vgg16_multihead``
    The seed paper's emission-direction model: an M-head (M = 8) VGG ensemble sharing all
    but the last block, cosine loss with stochastic multiple-choice weighting; heads are
    averaged at inference and their spread is the uncertainty.  CPU scale / paper scale.
``resnet34_impact``
    The seed paper's impact-point model: a torchvision-compatible ResNet-34 with an MSE
    loss (ImageNet weights a user has on disk can be loaded, see ``pretrained``).

Training (the event source, ``train`` and the model card) lives in
:mod:`astroreco.detectors.ixpe.train`.  Targets are expressed in the (possibly
rotated/reflected) crop frame: ``phi`` (rad),
``direction`` (cos phi, sin phi), ``impact`` (offset from the crop-centre pixel, in units of
the pixel pitch) and ``energy`` (keV / 10).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from astroreco.detectors.ixpe.geometry import IXPE_GRID
from astroreco.detectors.ixpe.images import (N_SYMMETRIES, ImageConfig, inverse_angle,
                                             inverse_vector, track_centres, track_images)
from astroreco.errors import InputError
from astroreco.io.modeldir import LoadedNetwork
from astroreco.stats.directional import concentration_from_modulation, expected_modulation

ARCHITECTURES = ("multitask", "vgg_multihead", "vgg16_multihead", "resnet34_impact")
ENERGY_SCALE_KEV = 10.0
#: symmetry subsets averaged at inference, by count (3 = the 120-degree rotations, which
#: already cancel any spurious cos 2phi and cos 4phi response of the network)
TTA_SYMMETRIES = {1: (0,), 2: (0, 6), 3: (0, 2, 4), 6: (0, 1, 2, 3, 4, 5),
                  12: tuple(range(N_SYMMETRIES))}


@dataclass
class IxpeNetConfig:
    """Architecture, preprocessing and loss weights of an IXPE network.

    Attributes
    ----------
    architecture : str
        One of :data:`ARCHITECTURES`.
    image : ImageConfig
        Crop representation and size.
    widths : tuple of int
        Channel widths of the compact backbone.
    n_features : int
        Width of the shared feature vector.
    stem : int
        Full-resolution conv blocks of the compact backbone.
    impact_to_angle : bool
        Feed the predicted impact point to the angle head (multitask).
    weights : dict
        Loss weights of the multitask terms (angle, impact, energy).
    n_heads : int
        Ensemble heads (VGG models).
    best_weight : float
        Loss weight of the best head (stochastic multiple-choice learning).
    tta : int
        Lattice symmetries averaged at inference (1, 2, 3, 6 or 12).
    pretrained : str or None
        ``resnet34_impact`` only: a torchvision-format ResNet-34 state dict on disk (e.g.
        ImageNet weights) loaded before training (recorded for provenance; inference loads
        the trained weights only).
    fine_tune : str
        With ``pretrained``: ``last`` trains only the final layer (the seed paper's
        transfer learning), ``all`` trains everything.
    angle_loss : str
        Multitask: what trains the mean emission angle, ``nll`` (the von Mises NLL) or
        ``cosine`` (the cosine loss, with kappa from the NLL); see
        :class:`astroreco.losses.VonMisesLoss`.
    """

    architecture: str = "multitask"
    image: ImageConfig = field(default_factory=ImageConfig)
    widths: tuple = (16, 32, 64)
    n_features: int = 128
    stem: int = 1
    impact_to_angle: bool = True
    weights: dict = field(default_factory=lambda: {"angle": 1.0, "impact": 1.0,
                                                    "energy": 0.5})
    n_heads: int = 8
    best_weight: float = 0.9
    tta: int = 3
    pretrained: str | None = None
    fine_tune: str = "last"
    angle_loss: str = "nll"

    def __post_init__(self):
        if isinstance(self.image, dict):
            self.image = ImageConfig(**self.image)
        self.widths = tuple(self.widths)
        if self.architecture not in ARCHITECTURES:
            raise InputError(f"architecture {self.architecture!r}: expected one of "
                             f"{', '.join(ARCHITECTURES)}")
        if self.pretrained is not None and self.architecture != "resnet34_impact":
            raise InputError("pretrained weights: only for architecture resnet34_impact")
        if self.fine_tune not in ("last", "all"):
            raise InputError(f"fine_tune {self.fine_tune!r}: expected 'last' or 'all'")
        if self.angle_loss not in ("nll", "cosine"):
            raise InputError(f"angle_loss {self.angle_loss!r}: expected 'nll' or 'cosine'")
        if self.tta not in TTA_SYMMETRIES:
            raise InputError(f"tta {self.tta}: expected one of "
                             f"{', '.join(map(str, TTA_SYMMETRIES))}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


def build_model(cfg: IxpeNetConfig) -> torch.nn.Module:
    """The network of ``cfg`` (randomly initialised)."""
    from astroreco.nn import backbones, heads
    from astroreco.nn.models import EnsembleDirectionNet, MultiTaskNet, RegressionNet

    c, h, w = cfg.image.shape
    hexagonal = cfg.image.representation == "hexagonal"
    if cfg.architecture == "multitask":
        body = backbones.CompactConvNet(c, h, widths=cfg.widths, n_features=cfg.n_features,
                                        hexagonal=hexagonal, stem=cfg.stem)
        extra = 2 if cfg.impact_to_angle else 0
        return MultiTaskNet(body, {
            "impact": heads.GaussianHead(body.n_features, 2),
            "energy": heads.GaussianHead(body.n_features, 1),
            "angle": heads.AngleHead(body.n_features + extra),
        }, feed={"angle": ["impact"]} if cfg.impact_to_angle else None)
    if cfg.architecture == "vgg_multihead":
        return EnsembleDirectionNet(backbones.vgg_multihead_cpu(
            c, h, 2, n_heads=cfg.n_heads, hexagonal=hexagonal))
    if cfg.architecture == "vgg16_multihead":
        return EnsembleDirectionNet(backbones.vgg16_multihead(
            c, h, 2, n_heads=cfg.n_heads, hexagonal=hexagonal))
    return RegressionNet(backbones.resnet34(num_outputs=2, in_channels=c), output="impact")


def build_loss(cfg: IxpeNetConfig) -> torch.nn.Module:
    """The task loss matching :func:`build_model`."""
    from astroreco import losses
    from astroreco.training.tasks import TaskLoss, Term

    if cfg.architecture == "multitask":
        wt = cfg.weights
        angle = losses.VonMisesLoss(harmonic=2, mean_loss=cfg.angle_loss)
        return TaskLoss([Term("angle", "phi", angle, wt["angle"]),
                         Term("impact", "impact", losses.GaussianNLLLoss(), wt["impact"]),
                         Term("energy", "energy", losses.GaussianNLLLoss(), wt["energy"])])
    if cfg.architecture in ("vgg_multihead", "vgg16_multihead"):
        return TaskLoss([Term("direction", "direction", losses.MultipleChoiceLoss(
            losses.CosineLoss(), best_weight=cfg.best_weight))])
    return TaskLoss([Term("impact", "impact", losses.MSELoss())])


#: what :class:`NeuralReconstructor` returns, per event
OUTPUT_FIELDS = (
    ("phi", "f4", "rad", "emission angle, counter-clockwise from +x (mod pi for polarimetry)"),
    ("kappa", "f4", "", "von Mises concentration of 2 phi, of the mixture of the averaged "
     "symmetries (NaN for models without it)"),
    ("weight", "f4", "", "per-event weight for the weighted Stokes analysis, I1/I0(kappa)"),
    ("phi_spread", "f4", "rad", "circular spread of 2 phi over ensemble heads and "
     "symmetries (multitask: of the mixture of their densities), / 2"),
    ("x_mm", "f4", "mm", "impact point x"),
    ("y_mm", "f4", "mm", "impact point y"),
    ("sigma_x_mm", "f4", "mm", "predicted impact-point uncertainty in x"),
    ("sigma_y_mm", "f4", "mm", "predicted impact-point uncertainty in y"),
    ("energy_kev", "f4", "keV", "predicted photon energy"),
    ("sigma_energy_kev", "f4", "keV", "predicted energy uncertainty"),
    ("n_pixels", "i4", "", "pixels in the track"),
    ("status", "u1", "", "1: empty track (no prediction)"),
)


class NeuralReconstructor(LoadedNetwork):
    """Batch reconstruction with a trained IXPE model directory.

    Parameters
    ----------
    model_dir : path-like
        A directory written by :func:`train` (``weights.safetensors``, ``config.json``,
        ``card.md``); the shipped default when None.
    device : str
        torch device (``cpu``, ``cuda``, ...).
    batch_size : int
        Tracks per forward pass.
    tta : int, optional
        Lattice symmetries averaged (1, 2, 3, 6, 12); the model's configured value when None.
    """

    fields = OUTPUT_FIELDS
    status_bits = {1: "empty"}

    def __init__(self, model_dir=None, *, device: str = "cpu", batch_size: int = 2048,
                 tta: int | None = None):
        if tta is not None and tta not in TTA_SYMMETRIES:
            raise InputError(f"tta {tta}: expected one of "
                             f"{', '.join(map(str, TTA_SYMMETRIES))}")
        model_dir = default_model_dir() if model_dir is None else model_dir
        super().__init__(model_dir, "ixpe", IxpeNetConfig, build_model, device=device,
                         batch_size=batch_size, overrides={"tta": tta})

    @torch.inference_mode()
    def _forward(self, images):
        out = {}
        for s in range(0, len(images), self.batch_size):
            x = torch.from_numpy(images[s:s + self.batch_size]).to(self.device)
            for k, v in self.model({"image": x}).items():
                out.setdefault(k, []).append(v)
        return {k: _cat(v) for k, v in out.items()}

    def reconstruct(self, offsets, col, row, charge) -> dict:
        """Per-event results (:data:`OUTPUT_FIELDS`) of ragged tracks."""
        offsets = np.asarray(offsets, np.int64)
        charge = np.asarray(charge)
        if charge.size and not np.all(np.isfinite(charge)):
            raise InputError("charge: expected finite pixel charges, found NaN or inf")
        n = len(offsets) - 1
        n_pix = np.diff(offsets).astype(np.int32)
        cfg = self.config
        centres = track_centres(offsets, col, row, charge, cfg.image)
        syms = TTA_SYMMETRIES[cfg.tta]
        sum2 = np.zeros((n, 2))
        xy = np.zeros((n, 2))
        var_xy = np.zeros((n, 2))
        energy = np.zeros(n)
        var_e = np.zeros(n)
        pitch = IXPE_GRID.pitch_mm
        for g in syms:
            images, _ = track_images(offsets, col, row, charge, cfg.image, symmetry=g,
                                     centres=centres)
            out = self._forward(images)
            if "angle" in out:
                vec, k = out["angle"]
                psi = np.arctan2(vec[:, 1], vec[:, 0])
                phi = inverse_angle(0.5 * psi, g)
                # first trigonometric moment of this pass's von Mises density of 2 phi
                a = expected_modulation(np.clip(k, 0, None))
                sum2 += a[:, None] * np.stack([np.cos(2 * phi), np.sin(2 * phi)], 1)
            if "direction" in out:
                d = out["direction"]  # (N, M, 2)
                phi = inverse_angle(np.arctan2(d[..., 1], d[..., 0]), g)  # (N, M)
                sum2 += np.stack([np.cos(2 * phi), np.sin(2 * phi)], -1).sum(1)
            if "impact" in out:
                imp = out["impact"]
                mean, log_var = imp if isinstance(imp, tuple) else (imp, None)
                dx, dy = inverse_vector(mean[:, 0] * pitch, mean[:, 1] * pitch, g)
                xy += np.stack([dx, dy], 1)
                if log_var is not None:
                    v = np.exp(log_var) * pitch ** 2
                    # diagonal covariance in the crop frame, rotated back (a reflection
                    # does not mix x and y): var_x = c^2 v_x' + s^2 v_y', and vice versa
                    c2 = np.cos(g % 6 * np.pi / 3) ** 2
                    var_xy += np.stack([c2 * v[:, 0] + (1 - c2) * v[:, 1],
                                        (1 - c2) * v[:, 0] + c2 * v[:, 1]], 1)
            if "energy" in out:
                mean, log_var = out["energy"]
                energy += mean[:, 0] * ENERGY_SCALE_KEV
                var_e += np.exp(log_var[:, 0]) * ENERGY_SCALE_KEV ** 2
        m = len(syms)
        nan = np.full(n, np.nan)
        result = {"n_pixels": n_pix, "status": (n_pix == 0).astype(np.uint8)}
        if cfg.architecture != "resnet34_impact":
            n_votes = m * (cfg.n_heads if cfg.architecture.startswith("vgg") else 1)
            r = np.hypot(sum2[:, 0], sum2[:, 1]) / n_votes
            result["phi"] = 0.5 * np.arctan2(sum2[:, 1], sum2[:, 0])
            # circular standard deviation of 2 phi, halved
            result["phi_spread"] = 0.5 * np.sqrt(-2 * np.log(np.clip(r, 1e-12, 1.0)))
        else:
            result["phi"] = result["phi_spread"] = nan
        if cfg.architecture == "multitask":
            # the passes' densities are mixed (averaged): the mixture's mean resultant length
            # is its expected modulation, and kappa the von Mises one with that value
            m1 = np.hypot(sum2[:, 0], sum2[:, 1]) / m
            result["weight"] = m1
            result["kappa"] = concentration_from_modulation(m1)
        else:
            result["kappa"] = nan
            result["weight"] = np.where(np.isfinite(result["phi"]), 1.0, np.nan)
        if cfg.architecture in ("multitask", "resnet34_impact"):
            result["x_mm"] = centres["x_mm"] + xy[:, 0] / m
            result["y_mm"] = centres["y_mm"] + xy[:, 1] / m
        else:
            result["x_mm"] = result["y_mm"] = nan
        if cfg.architecture == "multitask":
            result["sigma_x_mm"] = np.sqrt(var_xy[:, 0] / m)
            result["sigma_y_mm"] = np.sqrt(var_xy[:, 1] / m)
            result["energy_kev"] = energy / m
            result["sigma_energy_kev"] = np.sqrt(var_e / m)
        else:
            for k in ("sigma_x_mm", "sigma_y_mm", "energy_kev", "sigma_energy_kev"):
                result[k] = nan
        empty = n_pix == 0
        for name, dtype, _, _ in OUTPUT_FIELDS:
            result[name] = np.asarray(result[name]).astype(dtype)
            if dtype == "f4":
                result[name][empty] = np.nan
        return result


def _cat(parts):
    if isinstance(parts[0], (tuple, list)):
        return tuple(_cat([p[i] for p in parts]) for i in range(len(parts[0])))
    return torch.cat(parts).float().cpu().numpy().astype(np.float64)


def default_model_dir():
    """The shipped default model (see :func:`astroreco.io.modeldir.shipped_model_dir`)."""
    from astroreco.io.modeldir import shipped_model_dir

    return shipped_model_dir("ixpe")
