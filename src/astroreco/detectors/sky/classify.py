r"""Per-source classifiers of seed 002 on cut-outs around a detected position.

Two tasks (:data:`TASKS`):

- ``extension``: point-like / extended classes C0 (sigma < 0.1 deg), C1 (0.1-0.3 deg),
  C2 (> 0.3 deg) from the cut-out of the counts (the inputs of
  :func:`~astroreco.detectors.sky.sources.source_inputs`: per energy bin the excess
  significance, counts and background, an in-map mask; the sub-pixel offset and aperture
  sums as side inputs).  A 2D CNN (:class:`~astroreco.nn.backbones.CompactConvNet`) +
  MLP -> 3 logits.  In this simulator only the pulsar population is extended (C1/C2 are
  rare: a few % of the Galactic sources); train on low-latitude patches, or with
  ``extension__fractions=...`` to have enough extended examples.  Measured (300 training,
  100 independent test patches at |b| < 10 deg, 10 epochs) with extension fractions
  (0.4, 0.35, 0.25): balanced accuracy 0.59 (recall C0 0.66, C1 0.44, C2 0.67); with the
  default fractions (0.95, 0.04, 0.01), 8 epochs: 0.47 (48 C1 and 7 C2 test sources).
- ``class``: AGN (0) vs pulsar (1) from cut-outs of the counts per time bin and energy bin,
  the excess significance ``asinh((N_t - B/T) / sqrt(B/T + 1))`` of shape ``(T, E, S, S)``
  (:func:`~astroreco.detectors.sky.sources.time_cutouts`; patch files simulated with
  ``n_time_bins > 0``; seed: 10 time bins, 6 energy bins).  A small 3D CNN
  (:class:`TimeEnergyConvNet`) with the energy bins as channels and 3x3x3 convolutions
  over (time, row, column): two stride-2 steps in space only, then the features are
  averaged over space and summarised over time by their mean and standard deviation
  (variability: an AGN flares, a pulsar is steady; the spectrum: a pulsar's cutoff),
  which makes the network independent of the number of time bins and, up to the zero
  padding at the first and last bins, of when a flare happens; the aperture sums are
  appended before the MLP.  By default the 2D branch of the extension task on the
  time-integrated cut-out runs beside it (features concatenated; ``branches``): measured
  on 100 independent |b| < 10 deg patches after training on 300 (14 epochs), AGN/pulsar
  accuracy 0.694 with both branches, 0.684 with the 2D cut-out alone, 0.657 with the 3D
  cube alone (always "pulsar": 0.536).

With ``dihedral`` (:class:`~astroreco.detectors.sky.sources.CutoutConfig`) a classifier
is trained on the 8 symmetric views of each cut-out (reflections about the start pixel and
the transpose, :func:`~astroreco.detectors.sky.sources.cutout_view`; one drawn per source
and epoch) and its probabilities are averaged over the 8 views, so that they do not depend
on the orientation of the pixel grid.

Both are trained with a class-weighted cross-entropy (:class:`~astroreco.losses.
CrossEntropyLoss`); the weights default to the inverse class frequencies of the training
sources, ``w_c = N / (C n_c)`` capped at :attr:`ClassifyConfig.max_class_weight`, so the
rare classes count as much as the common one.  :class:`Classifier` returns the softmax
probabilities.  The model directory is the engine's (``out/model``: weights, config,
card, with the validation figures added).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from astroreco.detectors.sky.sources import (CUTOUT_VIEWS, FLUX_UNIT, CutoutConfig, SourceRows,
                                             batch_inputs, cutout_view, time_cutouts)
from astroreco.errors import InputError
from astroreco.io.modeldir import LoadedNetwork
from astroreco.nn.classifiers import CutoutClassifierNet, TimeEnergyConvNet
from astroreco.stats.detection import classification_figures

__all__ = ["BRANCHES", "CLASS_NAMES", "TASKS", "ClassifyConfig", "Classifier",
           "CutoutClassifierNet", "TimeEnergyConvNet",
           "build_classifier", "build_loss", "classification_figures", "classifier_card",
           "source_figures",
           "inverse_frequency_weights", "train_classifier"]

TASKS = ("extension", "class")
#: names of the classes of each task, in target order
CLASS_NAMES = {"extension": ("C0", "C1", "C2"), "class": ("agn", "psr")}
#: input branches a task may use (:func:`build_classifier`)
BRANCHES = {"extension": ("image",), "class": ("cube", "image")}


@dataclass
class ClassifyConfig(CutoutConfig):
    """Cut-outs, selection (:class:`~astroreco.detectors.sky.sources.CutoutConfig`) and
    the classifier network.

    Attributes
    ----------
    task : str
        ``extension`` or ``class``.
    n_energy, n_time_bins : int
        Of the patches (set from the training file; ``n_time_bins`` None until then).
    widths : (int, int, int)
        Channels of the CNN's resolution levels.
    n_features : int
        2D: width of the CNN's dense layer (3D: ``2 * widths[2]``, mean and std over time).
    hidden : tuple of int
        MLP before the logits.
    class_weights : list of float or None
        Cross-entropy weights; None: inverse class frequencies of the training sources
        (filled in by :func:`train_classifier` and stored with the model).
    max_class_weight : float
        Cap of the automatic weights (relative to a balanced set's 1).
    branches : tuple of str
        Inputs (:func:`build_classifier`): ``("image",)`` for ``extension``; for ``class``
        ``("cube",)`` (the 3D CNN over time x energy alone), ``("image",)`` (the
        time-integrated 2D cut-out only) or both.  Empty: the task's default (``image``;
        ``cube`` + ``image``, the best measured), see :attr:`inputs`.
    """

    task: str = "extension"
    n_energy: int = 6
    n_time_bins: int | None = None
    widths: tuple = (8, 16, 32)
    n_features: int = 64
    hidden: tuple = (64,)
    class_weights: list | None = None
    max_class_weight: float = 50.0
    branches: tuple = ()

    def __post_init__(self):
        super().__post_init__()
        if self.task not in TASKS:
            raise InputError(f"task {self.task!r}: expected one of {', '.join(TASKS)}")
        self.widths = tuple(int(w) for w in self.widths)
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.size % 4:
            raise InputError(f"size: expected a multiple of 4 (the CNN halves it twice), "
                             f"got {self.size}")
        if len(self.widths) != 3 or min(self.widths) < 1:
            raise InputError(f"widths: expected 3 positive integers, got {self.widths}")
        self.branches = tuple(str(b) for b in self.branches)
        allowed = BRANCHES[self.task]
        if not set(self.inputs) <= set(allowed) or len(set(self.inputs)) != len(self.inputs):
            raise InputError(f"branches {self.branches}: expected distinct entries of "
                             f"{allowed} for task {self.task!r}")
        if "cube" in self.inputs and self.n_time_bins is not None and self.n_time_bins < 1:
            raise InputError("task 'class' with the cube branch: expected n_time_bins >= 1 "
                             "(patches simulated with time bins)")
        if self.class_weights is not None:
            self.class_weights = [float(w) for w in self.class_weights]
            if len(self.class_weights) != self.n_classes:
                raise InputError(f"class_weights: expected {self.n_classes} values for task "
                                 f"{self.task!r}, got {len(self.class_weights)}")

    @property
    def inputs(self) -> tuple:
        """The branches used: ``branches``, or the task's default when empty."""
        return self.branches or (("image",) if self.task == "extension" else
                                 ("cube", "image"))

    @property
    def n_classes(self) -> int:
        return len(CLASS_NAMES[self.task])


def build_classifier(cfg: ClassifyConfig) -> nn.Module:
    """:class:`CutoutClassifierNet` with the branches of ``cfg.inputs``: ``image`` (2D
    :class:`~astroreco.nn.backbones.CompactConvNet` on the cut-out, with the ``offset``
    side input) and/or ``cube`` (:class:`TimeEnergyConvNet`); the ``aperture`` sums are
    always a side input."""
    from astroreco.nn.backbones import CompactConvNet

    branches, keys, n_scalar = {}, [], cfg.n_energy
    if "image" in cfg.inputs:
        branches["image"] = CompactConvNet(3 * cfg.n_energy + 1, cfg.size, widths=cfg.widths,
                                           n_features=cfg.n_features, hexagonal=False)
        keys.append("offset")
        n_scalar += 2
    if "cube" in cfg.inputs:
        branches["cube"] = TimeEnergyConvNet(cfg.n_energy, cfg.widths)
    return CutoutClassifierNet(branches, n_scalar, keys + ["aperture"], cfg.hidden,
                               cfg.n_classes)


def build_loss(cfg: ClassifyConfig) -> nn.Module:
    from astroreco.losses import CrossEntropyLoss
    from astroreco.training.tasks import TaskLoss, Term

    return TaskLoss([Term("logits", "target", CrossEntropyLoss(cfg.class_weights))])


def inverse_frequency_weights(labels, n_classes: int, cap: float) -> list:
    """``w_c = N / (C n_c)``, capped at ``cap``; ``cap`` for a class without examples."""
    n = np.bincount(np.asarray(labels, np.int64), minlength=n_classes).astype(float)
    w = np.where(n > 0, n.sum() / (n_classes * np.maximum(n, 1)), cap)
    return [float(v) for v in np.minimum(w, cap)]


# --- prediction ---------------------------------------------------------------------------

@torch.inference_mode()
def _probabilities(model, inputs: dict, cfg: ClassifyConfig, batch_size: int, device
                   ) -> np.ndarray:
    """Softmax probabilities; a model trained with ``cfg.dihedral`` averages them over the
    8 symmetric views of each cut-out."""
    keys = _keys(cfg)
    n = len(inputs[keys[0]])
    views = CUTOUT_VIEWS if cfg.dihedral else (None,)
    out = []
    for s in range(0, n, batch_size):
        # every input, not only the model's: a view corrects the aperture sums from the image
        part = {k: v[s:s + batch_size] for k, v in inputs.items() if k != "target"}
        p = 0.0
        for g in views:
            view = part if g is None else cutout_view(part, g)
            batch = {k: torch.from_numpy(np.ascontiguousarray(view[k])).to(device)
                     for k in keys}
            p = p + torch.softmax(model(batch)["logits"].double(), dim=1).cpu().numpy()
        out.append(p / len(views))
    return np.concatenate(out) if out else np.zeros((0, 0))


def _keys(cfg: ClassifyConfig):
    keys = ("image", "offset") if "image" in cfg.inputs else ()
    return keys + (("cube",) if "cube" in cfg.inputs else ()) + ("aperture",)


class Classifier(LoadedNetwork):
    """Class probabilities of sources from a trained classifier directory.

    Parameters
    ----------
    model_dir : path-like
        ``out/model`` of :func:`train_classifier`.
    """

    def __init__(self, model_dir, *, device: str = "cpu", batch_size: int = 1024):
        super().__init__(model_dir, "sky", _config_from_network, build_classifier,
                         device=device, batch_size=batch_size)

    @property
    def class_names(self) -> tuple:
        return CLASS_NAMES[self.config.task]

    def predict(self, counts, background, x_pix, y_pix, time_counts=None) -> np.ndarray:
        """``(k, C)`` probabilities of the sources at ``(x_pix, y_pix)`` of one patch:
        ``counts``, ``background`` ``(E, H, W)``; ``time_counts`` ``(T, E, H, W)`` for the
        ``class`` task."""
        counts = np.asarray(counts)
        if counts.ndim != 3:
            raise InputError(f"counts: expected an array (E, H, W), got shape {counts.shape}")
        x = np.asarray(x_pix, np.float64).reshape(-1)
        tc = None if time_counts is None else np.asarray(time_counts)[None]
        return self.predict_batch(counts[None], np.asarray(background)[None],
                                  np.zeros(x.size, np.int64), x, y_pix, tc)

    def predict_batch(self, counts, background, patch, x_pix, y_pix,
                      time_counts=None) -> np.ndarray:
        """:meth:`predict` for sources of several patches (``(n, ...)`` arrays, ``patch``
        the row of each source)."""
        cfg = self.config
        counts = np.asarray(counts)
        if counts.ndim != 4 or counts.shape[1] != cfg.n_energy:
            raise InputError(f"counts: expected an array (n, {cfg.n_energy}, H, W) (the "
                             f"model's energy bins), got shape {counts.shape}")
        x = np.asarray(x_pix, np.float64).reshape(-1)
        y = np.asarray(y_pix, np.float64).reshape(-1)
        inputs = batch_inputs(counts, background, patch, x, y, cfg.size)
        if "cube" in cfg.inputs:
            if time_counts is None:
                raise InputError("time_counts: the 'class' model needs the counts per time "
                                 "bin (T, E, H, W)")
            tc = np.asarray(time_counts)
            if tc.ndim != 5 or tc.shape[2] != cfg.n_energy:
                raise InputError(f"time_counts: expected (n, T, {cfg.n_energy}, H, W), got "
                                 f"shape {tc.shape}")
            inputs["cube"] = time_cutouts(tc, patch, x, y, cfg.size, background)
        return _probabilities(self.model, inputs, cfg, self.batch_size, self.device)

    def source_probabilities(self, events, start_patch: int = 0,
                             stop_patch: int | None = None) -> dict:
        """The class probabilities of the selected true sources of a patch file (fixed
        validation jitter), in the order of :class:`~astroreco.detectors.sky.sources.
        SourceRows`: ``probs`` ``(n, classes)``, ``labels`` (true classes) and ``log_flux``
        (``log10(S / FLUX_UNIT)``)."""
        src = SourceRows(events, start_patch, stop_patch, self.config, task=self.config.task,
                         cube="cube" in self.config.inputs)
        probs, labels = _source_probabilities(self.model, src, self.config, self.batch_size,
                                              self.device)
        return {"probs": probs, "labels": labels, "log_flux": np.asarray(src.log_flux)}

    def evaluate(self, events, start_patch: int = 0, stop_patch: int | None = None) -> dict:
        """:func:`source_figures` on the selected true sources of a patch file (fixed
        validation jitter)."""
        p = self.source_probabilities(events, start_patch, stop_patch)
        return source_figures(p["probs"], p["labels"], p["log_flux"], self.config.task)


def _config_from_network(**net) -> ClassifyConfig:
    if net.get("task") not in TASKS:
        raise TypeError(f"no classifier task in {sorted(net)}")
    return ClassifyConfig.from_dict(net)


#: edges (ph cm^-2 s^-1, S(1-100 GeV)) of the flux bins the classifiers' figures are also
#: given in (not the detection scoring's bins, :data:`~astroreco.detectors.sky.scoring.FLUX_EDGES`)
FIGURE_FLUX_EDGES = (0.0, 1e-10, 3e-10, 1e-9, 3e-9, 1e-8, np.inf)


def _source_probabilities(model, src: SourceRows, cfg: ClassifyConfig, batch_size: int,
                          device, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    probs, labels = [], []
    for a in range(0, src.n_events, chunk):
        inputs = src.load(a, min(a + chunk, src.n_events))
        probs.append(_probabilities(model, inputs, cfg, batch_size, device))
        labels.append(inputs["target"])
    return np.concatenate(probs), np.concatenate(labels)


def source_figures(probs, labels, log_flux, task: str) -> dict:
    """:func:`classification_figures` of a task's sources, plus the same per bin of flux
    (:data:`FIGURE_FLUX_EDGES`; ``log_flux`` = ``log10(S / FLUX_UNIT)``) and, for the extension
    task, the point-like (C0) vs extended (C1, C2) accuracy."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.int64)
    fig = classification_figures(probs, labels, CLASS_NAMES[task])
    flux = FLUX_UNIT * 10.0 ** np.asarray(log_flux, np.float64)
    pred = probs.argmax(1)
    rows = []
    for lo, hi in zip(FIGURE_FLUX_EDGES[:-1], FIGURE_FLUX_EDGES[1:]):
        sel = (flux >= lo) & (flux < hi)
        if not sel.any():
            continue
        row = {"flux_lo": lo, "flux_hi": None if np.isinf(hi) else hi, "n": int(sel.sum()),
               "accuracy": float(np.mean(pred[sel] == labels[sel]))}
        if task == "extension":
            row["point_vs_extended_accuracy"] = float(np.mean((pred[sel] == 0)
                                                              == (labels[sel] == 0)))
            row["extended_fraction"] = float(np.mean(labels[sel] > 0))
        rows.append(row)
    fig["per_flux"] = rows
    if task == "extension":
        fig["point_vs_extended_accuracy"] = (float(np.mean((pred == 0) == (labels == 0)))
                                             if labels.size else float("nan"))
    return fig


# --- training -----------------------------------------------------------------------------

def train_classifier(events, out, *, task: str = "extension", cfg: ClassifyConfig | None = None,
                     config=None, val_events=None, val_fraction: float = 0.1,
                     command: str | None = None, overwrite: bool = False) -> dict:
    """Train a per-source classifier and write ``out/model`` (weights, config, card with the
    validation figures).

    Parameters
    ----------
    events, val_events : path-like
        Patch files with source truth (``n_time_bins > 0`` for ``task="class"``); without
        ``val_events`` the last ``val_fraction`` of the patches validate.
    task : str
        ``extension`` or ``class`` (overrides ``cfg.task``).
    cfg : ClassifyConfig
        Cut-outs, selection, network, class weights (None: inverse frequencies).
    config : astroreco.training.TrainConfig

    Returns
    -------
    dict
        The engine's run summary plus ``validation`` (:func:`classification_figures`) and
        ``class_weights``.
    """
    from astroreco.detectors.sky.pipeline import PATCH_SCHEMA, config_of
    from astroreco.io.modeldir import load_network
    from astroreco.io.store import EventFile
    from astroreco.training import TrainConfig
    from astroreco.training.run import split_sources, train_and_save

    if task not in TASKS:
        raise InputError(f"task {task!r}: expected one of {', '.join(TASKS)}")
    cfg = dataclasses.replace(cfg or ClassifyConfig(), task=task,
                              n_time_bins=config_of(events).n_time_bins,
                              n_energy=config_of(events).geometry.n_energy)
    config = config or TrainConfig()
    with EventFile(events, PATCH_SCHEMA) as ef:
        n_patches, simulation = ef.n_events, ef.config
    n_val = None
    if val_events is not None:
        vc = config_of(val_events)
        if vc.geometry.n_energy != cfg.n_energy or vc.n_time_bins != cfg.n_time_bins:
            raise InputError(f"{val_events}: energy or time bins differ from those of "
                             f"{events}")
        with EventFile(val_events, PATCH_SCHEMA) as ef:
            n_val = ef.n_events
    cube = "cube" in cfg.inputs
    train_src, val_src = split_sources(lambda p, a, b: SourceRows(p, a, b, cfg, task=task,
                                                                  cube=cube),
                                       events, n_patches, val_events=val_events,
                                       n_val_events=n_val, val_fraction=val_fraction)
    if val_src.n_events < 1:
        raise InputError(f"{val_events or events}: no validation source passes the selection")
    labels = train_src.ext_class if task == "extension" else train_src.cls
    if cfg.class_weights is None:
        cfg.class_weights = inverse_frequency_weights(labels, cfg.n_classes,
                                                      cfg.max_class_weight)
    with torch.random.fork_rng():
        torch.manual_seed(int(config.seed))
        model = build_classifier(cfg)
    counts = np.bincount(labels, minlength=cfg.n_classes).tolist()
    summary = train_and_save(model, build_loss(cfg), train_src, val_src, out, config=config,
                             detector="sky", network=cfg.to_dict(),
                             card=lambda mc, hist: classifier_card(mc, hist, counts),
                             events=events, val_events=val_events, simulation=simulation,
                             command=command, overwrite=overwrite)
    if "model" not in summary:
        return summary
    path = Path(summary["model"])
    _, model = load_network(path, "sky", _config_from_network, build_classifier)
    probs, labels = _source_probabilities(model, val_src, cfg, 1024, torch.device("cpu"))
    figures = source_figures(probs, labels, val_src.log_flux, cfg.task)
    mc = json.loads((path / "config.json").read_text())
    mc["validation"] = figures
    mc["training"]["n_train_per_class"] = counts
    (path / "config.json").write_text(json.dumps(mc, indent=2) + "\n")
    (path / "card.md").write_text(classifier_card(mc, json.loads(
        (Path(out) / "history.json").read_text()), counts, figures))
    summary.update(validation=figures, class_weights=cfg.class_weights)
    return summary


def classifier_card(model_config: dict, history=(), train_counts=(), figures=None) -> str:
    """Markdown model card of a per-source classifier."""
    net, tr = model_config["network"], model_config["training"]
    names = CLASS_NAMES[net["task"]]
    sim = tr.get("simulation") or {}
    s = sim.get("simulation", {}) if isinstance(sim, dict) else {}
    what = ("the extension class C0 (sigma < 0.1 deg) / C1 (0.1-0.3) / C2 (> 0.3 deg) of a "
            "detected source from a cut-out of its counts" if net["task"] == "extension" else
            "AGN vs pulsar from a cut-out of the counts per time bin and energy bin")
    parts = []
    used = net.get("branches") or (["image"] if net["task"] == "extension" else
                                   ["cube", "image"])
    if "image" in used:
        parts.append(f"2D CNN on the time-integrated cut-out (widths {net['widths']}, "
                     f"{net['n_features']} features) + offset")
    if "cube" in used:
        parts.append(f"3D CNN over (time, row, column) with the energy bins as channels "
                     f"(widths {net['widths']}), features averaged over space and summarised "
                     f"by mean and std over time")
    arch = " and ".join(parts) + f", + aperture sums, MLP {net['hidden']}"
    val = f"`{tr['val_events']}`" if tr.get("val_events") else "the last training patches"
    lines = [f"# Sky source classifier: {net['task']}", "",
             f"Predicts {what} (seed 002), as softmax probabilities over "
             f"{', '.join(names)}.", "",
             "## Architecture and input", "",
             f"- {arch}; {tr.get('n_parameters', '?')} parameters",
             f"- {net['size']} x {net['size']} pixel cut-outs around the detected position "
             f"(truth + {net['jitter_pix']} pixel Gaussian jitter in training); sources in "
             f"the map with S(1-100 GeV) >= {net['min_flux']:.3g} ph cm^-2 s^-1",
             *(["- trained on the 8 symmetric views of the cut-outs (reflections about the "
                "start pixel, transpose; one drawn per source and epoch); the probabilities "
                "are averaged over the 8 views"] if net.get("dihedral") else []),
             f"- class-weighted cross-entropy, weights {net['class_weights']} "
             f"(training sources per class {list(train_counts)})", "",
             "## Training", "",
             f"- data: `{tr['events']}`, {tr['n_train']} training and {tr['n_val']} "
             f"validation sources (validation: {val}; preset {sim.get('preset', '?')}, "
             f"|b| range {s.get('abs_b_range_deg', '?')} deg, time bins "
             f"{s.get('n_time_bins', 0)})",
             f"- {tr['epochs']} epochs, {tr['train_seconds']} s; best validation loss "
             f"{tr['best_val_loss']:.4f}",
             f"- command: `{tr.get('command') or 'train_classifier(...)'}`", ""]
    if figures:
        rec = ", ".join(f"{n} {'-' if r is None else f'{r:.3f}'}"
                        for n, r in zip(names, figures["recall"]))
        lines += ["## Measured on the validation sources", "",
                  f"- accuracy {figures['accuracy']:.3f} (always the most frequent class: "
                  f"{figures['majority_accuracy']:.3f}); balanced accuracy "
                  f"{figures['balanced_accuracy']:.3f}",
                  f"- recall per class: {rec}",
                  f"- confusion matrix (rows true, columns predicted): {figures['confusion']}",
                  *([f"- point-like (C0) vs extended (C1, C2) accuracy "
                     f"{figures['point_vs_extended_accuracy']:.3f}"]
                    if "point_vs_extended_accuracy" in figures else []), ""]
        rows = figures.get("per_flux") or []
        if rows:
            ext = "point_vs_extended_accuracy" in rows[0]
            lines += ["| S(1-100 GeV) (ph cm-2 s-1) | sources | accuracy |"
                      + (" point vs extended | extended fraction |" if ext else ""),
                      "|---|---|---|" + ("---|---|" if ext else "")]
            for r in rows:
                hi = "" if r["flux_hi"] is None else f"{r['flux_hi']:.0e}"
                cells = [f"{r['flux_lo']:.0e} - {hi}".rstrip(" -") + ("" if hi else " and up"),
                         str(r["n"]), f"{r['accuracy']:.3f}"]
                if ext:
                    cells += [f"{r['point_vs_extended_accuracy']:.3f}",
                              f"{r['extended_fraction']:.2f}"]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines) + "\n"
