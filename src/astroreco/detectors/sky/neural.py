r"""The neural source detector of seed 002: a multi-input U-Net marks source pixels, the
centres come from its probability map by Laplacian of Gaussian or k-means.

Input (:func:`network_inputs`): the counts cube of a patch, one map per energy bin,
``log(1 + counts)``.  No background model enters: the network has to tell sources from the
interstellar emission by their shape (PSF-sized peaks in every energy bin), which is what
lets a model trained on one interstellar emission model (IEM A) be tested on another
(IEM B), as in the seed.

Target (:func:`source_masks`): a disc of ``mask_radius_pix`` pixels around every true
source inside the patch with a flux :math:`S(1\text{-}100\,\mathrm{GeV})` of at least
``label_min_flux``.  Fainter sources are left unlabelled (background): at the CPU scale
they are buried in the Poisson noise, and marking them teaches the network to fire on
fluctuations.

Network (:func:`build_model`): :class:`~astroreco.nn.unet.MultiInputUNet`, one branch per
energy bin (the seed's "modified U-Net"), logits of one source-probability map.  Loss:
binary cross-entropy + soft Dice (:class:`~astroreco.losses.BCEDiceLoss`), with a positive
weight since source pixels are about 1% of a map.  Training augments with the eight
symmetries of the square (rotations by 90 degrees and flips): the sky has no preferred
orientation at the scale of a patch.

Detection (:class:`NeuralDetector`): ``sigmoid(logits)`` per pixel, then
:func:`~astroreco.detectors.sky.localize.centres_log` (default) or
:func:`~astroreco.detectors.sky.localize.centres_kmeans`, and the WCS of the patch for
``(l, b)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from astroreco.errors import InputError
from astroreco.io.modeldir import LoadedNetwork

SCALES = ("cpu", "paper")
CENTRES = ("log", "kmeans")
#: one row per neural detection (ragged per patch)
NN_RECO_FIELDS = (
    ("x_pix", "f8", "pix", "0-based column in the patch"),
    ("y_pix", "f8", "pix", "0-based row in the patch"),
    ("l_deg", "f8", "deg", "Galactic longitude, [0, 360)"),
    ("b_deg", "f8", "deg", "Galactic latitude"),
    ("score", "f8", "", "source probability at the peak (log) or summed over the cluster "
                        "(kmeans)"),
)


@dataclass
class SkyNetConfig:
    """Input, target, network and centre-finding settings of the neural detector.

    Attributes
    ----------
    n_energy : int
        Energy bins of the counts cube (one U-Net branch each).
    n_pix : int
        Patch width in pixels (a multiple of ``2**depth``).
    scale : str
        ``cpu`` (:meth:`MultiInputUNet.cpu_scale`, ~124k parameters) or ``paper`` (31M).
    branch_width, width, depth : int or None
        Override the scale's widths.
    mask_radius_pix : float
        Radius of the labelled disc around a source (pixels).
    label_min_flux : float
        Sources with a lower :math:`S(1\\text{-}100\\,\\mathrm{GeV})` are not labelled.
    pos_weight : float
        Weight of the source pixels in the cross-entropy.
    dice_weight : float
    centres : str
        ``log`` or ``kmeans``.
    threshold : float
        Probability threshold of the centre finder (``log``: at the peak pixel;
        ``kmeans``: of the pixels clustered).
    min_separation_pix : float
        ``log``: smallest distance between two centres.
    """

    n_energy: int = 6
    n_pix: int = 64
    scale: str = "cpu"
    branch_width: int | None = None
    width: int | None = None
    depth: int | None = None
    mask_radius_pix: float = 1.5
    label_min_flux: float = 1e-10
    pos_weight: float = 5.0
    dice_weight: float = 1.0
    centres: str = "log"
    threshold: float = 0.3
    min_separation_pix: float = 2.0

    def __post_init__(self):
        if self.scale not in SCALES:
            raise InputError(f"scale {self.scale!r}: expected one of {', '.join(SCALES)}")
        if self.centres not in CENTRES:
            raise InputError(f"centres {self.centres!r}: expected one of "
                             f"{', '.join(CENTRES)}")
        for name in ("n_energy", "n_pix"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"{name}: expected a positive integer, got {v!r}")
        for name in ("mask_radius_pix", "label_min_flux", "pos_weight",
                     "min_separation_pix"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise InputError(f"{name}: expected a positive number, got {v!r}")
        if not 0 <= self.threshold < 1:
            raise InputError(f"threshold: expected a probability in [0, 1), got "
                             f"{self.threshold!r}")
        if self.n_pix % 2 ** self.widths()["depth"]:
            raise InputError(f"n_pix {self.n_pix}: expected a multiple of "
                             f"2**depth = {2 ** self.widths()['depth']}")

    def widths(self) -> dict:
        """``branch_width``, ``width``, ``depth`` of the U-Net: the scale's, overridden."""
        base = ({"branch_width": 4, "width": 8, "depth": 3} if self.scale == "cpu" else
                {"branch_width": 16, "width": 64, "depth": 4})
        return {k: base[k] if getattr(self, k) is None else int(getattr(self, k))
                for k in base}

    def to_dict(self) -> dict:
        return asdict(self)


class MapModel(torch.nn.Module):
    """``batch["counts"] -> {"mask": logits (N, 1, H, W)}``: the U-Net on a dict batch."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, batch: dict) -> dict:
        return {"mask": self.net(batch["counts"])}


def build_model(cfg: SkyNetConfig) -> torch.nn.Module:
    from astroreco.nn.unet import MultiInputUNet

    return MapModel(MultiInputUNet(cfg.n_energy, **cfg.widths()))


def build_loss(cfg: SkyNetConfig) -> torch.nn.Module:
    from astroreco.losses import BCEDiceLoss
    from astroreco.training.tasks import TaskLoss, Term

    return TaskLoss([Term("mask", "mask", BCEDiceLoss(cfg.dice_weight,
                                                      pos_weight=cfg.pos_weight))])


def check_counts(counts, cfg: SkyNetConfig | None = None, where: str = "counts") -> np.ndarray:
    """``(n, E, H, W)`` counts as float32; one-line errors for a wrong shape, NaNs or
    negative counts."""
    a = np.asarray(counts)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise InputError(f"{where}: expected counts (n, E, H, W) or (E, H, W), got shape "
                         f"{a.shape}")
    if cfg is not None and a.shape[1] != cfg.n_energy:
        raise InputError(f"{where}: {a.shape[1]} energy bins, the model was trained on "
                         f"{cfg.n_energy}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise InputError(f"{where}: expected numeric counts, got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        raise InputError(f"{where}: NaN or infinite counts")
    if a.size and a.min() < 0:
        raise InputError(f"{where}: negative counts (min {a.min():g})")
    return a


def network_inputs(counts) -> np.ndarray:
    """``log(1 + counts)``, float32, ``(n, E, H, W)``."""
    return np.log1p(check_counts(counts)).astype(np.float32)


def source_masks(truth: dict, n_patches: int, shape: tuple[int, int], cfg: SkyNetConfig
                 ) -> np.ndarray:
    """``(n, 1, H, W)`` float32 target maps: 1 within ``mask_radius_pix`` of the centre of
    every labelled source (in the patch, flux >= ``label_min_flux``), else 0.

    ``truth``: the flat source table of the patches (``patch`` = row 0..n-1, ``x_pix``,
    ``y_pix``, ``in_patch``, ``flux``), as :func:`~astroreco.detectors.sky.pipeline.read_truth`
    returns it.
    """
    h, w = shape
    masks = np.zeros((n_patches, 1, h, w), np.float32)
    keep = np.asarray(truth["in_patch"], bool) & (np.asarray(truth["flux"]) >=
                                                  cfg.label_min_flux)
    patch = np.asarray(truth["patch"])[keep]
    x, y = np.asarray(truth["x_pix"])[keep], np.asarray(truth["y_pix"])[keep]
    r = float(cfg.mask_radius_pix)
    half = int(np.ceil(r)) + 1
    offsets = np.arange(-half, half + 1)
    for p, sx, sy in zip(patch, x, y):
        cols = int(round(sx)) + offsets
        rows = int(round(sy)) + offsets
        inside = (rows[:, None] - sy) ** 2 + (cols[None, :] - sx) ** 2 <= r * r
        ok_r, ok_c = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
        sub = inside[np.ix_(ok_r, ok_c)]
        region = masks[p, 0][np.ix_(rows[ok_r], cols[ok_c])]
        masks[p, 0][np.ix_(rows[ok_r], cols[ok_c])] = np.maximum(region, sub)
    return masks


def dihedral(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Apply one random symmetry of the square per sample (the same to every array of the
    list: inputs and targets, shaped ``(n, ..., H, W)`` with ``H == W``)."""
    n = len(arrays[0])
    k = rng.integers(0, 4, n)
    flip = rng.random(n) < 0.5
    out = [a.copy() for a in arrays]
    for kk in range(4):
        for f in (False, True):
            sel = np.nonzero((k == kk) & (flip == f))[0]
            if sel.size == 0 or (kk == 0 and not f):
                continue
            for a, o in zip(arrays, out):
                t = np.rot90(a[sel], kk, axes=(-2, -1))
                if f:
                    t = t[..., ::-1]
                o[sel] = t
    return out


class NeuralDetector(LoadedNetwork):
    """Source detection with a trained sky model directory (the shipped default when
    ``model_dir`` is None).

    ``centres``/``threshold`` override the model's centre finder.
    """

    def __init__(self, model_dir=None, *, centres: str | None = None,
                 threshold: float | None = None, device: str = "cpu",
                 batch_size: int = 64):
        model_dir = default_model_dir() if model_dir is None else model_dir
        super().__init__(model_dir, "sky", SkyNetConfig, build_model, device=device,
                         batch_size=batch_size,
                         overrides={"centres": centres, "threshold": threshold})

    @torch.inference_mode()
    def probability(self, counts) -> np.ndarray:
        """``(n, H, W)`` source probability maps of ``(n, E, H, W)`` counts."""
        x = network_inputs(check_counts(counts, self.config))
        depth = self.config.widths()["depth"]
        if x.shape[-1] % 2 ** depth or x.shape[-2] % 2 ** depth:
            raise InputError(f"counts: maps of {x.shape[-2]} x {x.shape[-1]} pixels; the "
                             f"U-Net needs multiples of {2 ** depth}")
        out = []
        for s in range(0, len(x), self.batch_size):
            batch = {"counts": torch.from_numpy(x[s:s + self.batch_size]).to(self.device)}
            out.append(torch.sigmoid(self.model(batch)["mask"][:, 0]).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, *x.shape[-2:]), np.float32)

    def centres(self, prob_map) -> dict:
        """Centres of one probability map (pixels), by the configured method."""
        from astroreco.detectors.sky.localize import centres_kmeans, centres_log

        cfg = self.config
        if cfg.centres == "log":
            found = centres_log(prob_map, threshold=cfg.threshold,
                                min_separation_pix=cfg.min_separation_pix)
        else:
            found = centres_kmeans(prob_map, threshold=cfg.threshold)
        return {"x_pix": found["x_pix"], "y_pix": found["y_pix"], "score": found["score"]}

    def detect(self, counts, wcs_list) -> list[dict]:
        """Per patch, the detections (:data:`NN_RECO_FIELDS`) of ``(n, E, H, W)`` counts
        with one celestial WCS per patch."""
        from astroreco.detectors.sky.classical import pixel_to_galactic

        probs = self.probability(counts)
        if len(wcs_list) != len(probs):
            raise InputError(f"wcs_list: {len(wcs_list)} WCS for {len(probs)} patches")
        result = []
        for p, wcs in zip(probs, wcs_list):
            found = self.centres(np.clip(p.astype(np.float64), 0.0, 1.0))
            lon, lat = pixel_to_galactic(found["x_pix"], found["y_pix"], wcs)
            result.append({"x_pix": found["x_pix"], "y_pix": found["y_pix"],
                           "l_deg": lon, "b_deg": lat, "score": found["score"]})
        return result


#: columns added by the position/flux ensemble (:class:`~astroreco.detectors.sky.refine.Refiner`)
REFINE_FIELDS = (
    ("pos_sigma_deg", "f8", "deg", "1-sigma position error per axis (circular), aleatoric + "
                                   "epistemic"),
    ("flux", "f8", "ph cm-2 s-1", "S(1-100 GeV), median of the predicted log-normal"),
    ("flux_err", "f8", "ph cm-2 s-1", "1-sigma error of flux (delta method)"),
)
#: columns added by the AGN/pulsar classifier (:class:`~astroreco.detectors.sky.classify.Classifier`)
CLASS_FIELDS = (
    ("p_agn", "f8", "", "probability of the AGN class"),
    ("p_psr", "f8", "", "probability of the pulsar class"),
)
#: columns added by the extension classifier (:class:`~astroreco.detectors.sky.classify.Classifier`)
EXTENSION_FIELDS = (
    ("p_ext0", "f8", "", "probability of extension class 0 (sigma < 0.1 deg)"),
    ("p_ext1", "f8", "", "probability of extension class 1 (0.1-0.3 deg)"),
    ("p_ext2", "f8", "", "probability of extension class 2 (> 0.3 deg)"),
    ("ext_class", "i1", "", "most probable extension class"),
)


def catalog_columns(found: dict) -> dict:
    """Detections with the per-source columns renamed for
    :func:`~astroreco.detectors.sky.catalog.write_catalog` (``POS_ERR``/``POS_ERR_95`` the
    68%/95% radii from ``pos_sigma_deg``; flux, extension probabilities and class)."""
    from astroreco.detectors.sky.scoring import R68_SIGMA, R95_SIGMA

    out = {k: v for k, v in found.items()
           if k not in ("pos_sigma_deg", "flux", "flux_err", "ext_class", "p_agn", "p_psr")
           and not k.startswith("p_ext")}
    if "pos_sigma_deg" in found:
        out["POS_ERR"] = R68_SIGMA * np.asarray(found["pos_sigma_deg"])
        out["POS_ERR_95"] = R95_SIGMA * np.asarray(found["pos_sigma_deg"])
    for k, name in (("flux", "FLUX"), ("flux_err", "FLUX_ERR"), ("ext_class", "EXT_CLASS"),
                    ("p_agn", "P_AGN"), ("p_psr", "P_PSR"),
                    ("p_ext0", "P_EXT0"), ("p_ext1", "P_EXT1"), ("p_ext2", "P_EXT2")):
        if k in found:
            out[name] = found[k]
    return out


def characterise(found: list[dict], counts, background, wcs_list, pixel_deg: float, *,
                 refiner=None, extension=None, source_class=None,
                 time_counts=None) -> list[dict]:
    """Per-patch detections (:meth:`NeuralDetector.detect`) refined by the position/flux
    ensemble and classified by extension, from cut-outs of ``counts`` and ``background``
    ``(n, E, H, W)`` (the analysis's background model).

    ``refiner``: a :class:`~astroreco.detectors.sky.refine.Refiner` (positions replaced by
    the refined ones, ``(l, b)`` recomputed; :data:`REFINE_FIELDS` added); ``extension``:
    a :class:`~astroreco.detectors.sky.classify.Classifier` of the ``extension`` task
    (:data:`EXTENSION_FIELDS`, at the refined positions); ``source_class``: one of the
    ``class`` task (:data:`CLASS_FIELDS`), which needs ``time_counts`` ``(n, T, E, H, W)``.
    Any may be None.
    """
    from astroreco.detectors.sky.classical import pixel_to_galactic

    if refiner is None and extension is None and source_class is None:
        return found
    sizes = [len(f["x_pix"]) for f in found]
    if not sum(sizes):
        fields = (REFINE_FIELDS if refiner is not None else ()) + \
            (EXTENSION_FIELDS if extension is not None else ()) + \
            (CLASS_FIELDS if source_class is not None else ())
        return [{**f, **{k: np.zeros(0, dt) for k, dt, *_ in fields}} for f in found]
    patch = np.repeat(np.arange(len(found)), sizes)
    x = np.concatenate([f["x_pix"] for f in found]).astype(np.float64)
    y = np.concatenate([f["y_pix"] for f in found]).astype(np.float64)
    extra = {}
    if refiner is not None:
        r = refiner.predict_batch(counts, background, patch, x, y)
        x, y = r["x_pix"], r["y_pix"]
        extra.update(pos_sigma_deg=r["pos_sigma_pix"] * pixel_deg, flux=r["flux"],
                     flux_err=r["flux_err"])
    if extension is not None:
        if getattr(extension.config, "task", None) != "extension":
            raise InputError(f"{extension.model_dir}: not an extension classifier")
        probs = extension.predict_batch(counts, background, patch, x, y)
        extra.update({f"p_ext{k}": probs[:, k] for k in range(3)},
                     ext_class=np.argmax(probs, axis=1).astype(np.int8))
    if source_class is not None:
        if getattr(source_class.config, "task", None) != "class":
            raise InputError(f"{source_class.model_dir}: not an AGN/pulsar classifier")
        if time_counts is None:
            raise InputError("the AGN/pulsar classifier needs patches with time bins "
                             "(astroreco sky simulate --time-bins 10)")
        probs = source_class.predict_batch(counts, background, patch, x, y, time_counts)
        extra.update(p_agn=probs[:, 0], p_psr=probs[:, 1])
    out = []
    for i, f in enumerate(found):
        sel = patch == i
        row = {**f, "x_pix": x[sel], "y_pix": y[sel], **{k: v[sel] for k, v in extra.items()}}
        if refiner is not None and sel.any():
            row["l_deg"], row["b_deg"] = pixel_to_galactic(x[sel], y[sel], wcs_list[i])
        out.append(row)
    return out


def default_model_dir():
    """The shipped default detector (see :func:`astroreco.io.modeldir.shipped_model_dir`)."""
    from astroreco.io.modeldir import shipped_model_dir

    return shipped_model_dir("sky") / "detector"


def default_refiner_dir():
    """The shipped position/flux ensemble (``models/sky/refine``)."""
    from astroreco.io.modeldir import shipped_model_dir

    return shipped_model_dir("sky") / "refine"


def default_extension_dir():
    """The shipped extension classifier (``models/sky/extension``)."""
    from astroreco.io.modeldir import shipped_model_dir

    return shipped_model_dir("sky") / "extension"


def default_class_dir():
    """The shipped AGN/pulsar classifier (``models/sky/class``)."""
    from astroreco.io.modeldir import shipped_model_dir

    return shipped_model_dir("sky") / "class"
