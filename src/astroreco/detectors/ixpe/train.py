"""Training the IXPE networks: tracks and truth as tensors, the training run, the model card.

:class:`IxpeSource` turns rows of a simulated event file into crops (with a random lattice
symmetry per event when augmenting) and targets in the crop frame; :func:`train` runs the
detector-agnostic :func:`astroreco.training.fit` on it and writes the model directory that
:class:`astroreco.detectors.ixpe.neural.NeuralReconstructor` reads.
"""

from __future__ import annotations

import numpy as np

from astroreco.detectors.ixpe.geometry import IXPE_GRID
from astroreco.detectors.ixpe.images import (N_SYMMETRIES, ImageConfig, track_images,
                                             transform_angle, transform_vector)
from astroreco.detectors.ixpe.neural import (ENERGY_SCALE_KEV, IxpeNetConfig, build_loss,
                                             build_model)
from astroreco.io.store import select_rows


class IxpeSource:
    """Training events from rows ``[start, stop)`` of an IXPE event file.

    Tracks become crops (augmented by a random lattice symmetry per event when a generator
    is given) with the truth expressed in the crop frame.
    """

    def __init__(self, path, start: int, stop: int, image: ImageConfig):
        from astroreco.detectors.ixpe.pipeline import EVENT_SCHEMA
        from astroreco.io.store import EventFile
        from astroreco.training.run import check_rows

        with EventFile(path, EVENT_SCHEMA) as ef:
            check_rows(ef, path, start, stop)
            ef.truth(["phi", "x_mm", "y_mm", "energy_kev"], 0, 1)  # fails clearly if absent
        self.path = str(path)
        self.start = int(start)
        self.n_events = int(stop - start)
        self.image = image

    def load(self, start, stop, rows=None, rng=None) -> dict:
        from astroreco.detectors.ixpe.pipeline import EVENT_SCHEMA
        from astroreco.io.store import EventFile

        with EventFile(self.path, EVENT_SCHEMA) as ef:
            offsets, hits = ef.hits(self.start + start, self.start + stop)
            truth = ef.truth(["phi", "x_mm", "y_mm", "energy_kev"], self.start + start,
                             self.start + stop)
        if rows is not None:
            offsets, hits = select_rows(offsets, hits, rows)
            truth = {k: v[rows] for k, v in truth.items()}
        n = len(offsets) - 1
        g = rng.integers(0, N_SYMMETRIES, n) if rng is not None else np.zeros(n, np.int64)
        images, centres = track_images(offsets, hits["col"], hits["row"], hits["charge"],
                                       self.image, symmetry=g)
        phi = transform_angle(truth["phi"].astype(np.float64), g)
        dx, dy = transform_vector(truth["x_mm"] - centres["x_mm"],
                                  truth["y_mm"] - centres["y_mm"], g)
        pitch = IXPE_GRID.pitch_mm
        return {"image": images,
                "phi": phi.astype(np.float32),
                "direction": np.stack([np.cos(phi), np.sin(phi)], 1).astype(np.float32),
                "impact": np.stack([dx / pitch, dy / pitch], 1).astype(np.float32),
                "energy": (truth["energy_kev"][:, None] / ENERGY_SCALE_KEV).astype(np.float32)}


def train(events, out, *, net: IxpeNetConfig | None = None, config=None,
          val_fraction: float = 0.1, val_events=None, resume: bool = False,
          overwrite: bool = False, init=None, command: str | None = None) -> dict:
    """Train an IXPE network on simulated events and write the model directory ``out/model``.

    Parameters
    ----------
    events : path-like
        Simulated IXPE event file (truth needed).
    out : path-like
        Run directory: checkpoints, CSV logs and the final ``model/``.
    net : IxpeNetConfig
        Architecture and preprocessing (default: the multitask hexagonal network).
    config : astroreco.training.TrainConfig
        Epochs, batch size, optimiser, seed, devices.
    val_fraction : float
        Last fraction of ``events`` kept for validation (when ``val_events`` is None).
    val_events : path-like, optional
        A separate validation file.
    resume, overwrite : bool
        See :func:`astroreco.training.fit`.
    init : path-like, optional
        A trained IXPE model directory to start from (fine-tuning): its weights are loaded
        into the network of ``net``, whose architecture must match.
    command : str, optional
        The command line that ran this, recorded in the model card.
    """
    from astroreco.detectors.ixpe.pipeline import EVENT_SCHEMA
    from astroreco.training import TrainConfig
    from astroreco.training.run import sources_from_files, train_and_save

    net = net or IxpeNetConfig()
    config = config or TrainConfig()
    train_src, val_src, sim_config = sources_from_files(
        lambda path, a, b: IxpeSource(path, a, b, net.image), EVENT_SCHEMA, events,
        val_events=val_events, val_fraction=val_fraction)
    model = build_model(net)
    if init is not None:
        from astroreco.io.modeldir import load_model_dir, load_state

        load_state(model, load_model_dir(init, detector="ixpe")[0], init)
    if net.pretrained:
        from astroreco.nn.backbones import load_torchvision_weights

        load_torchvision_weights(model.backbone, net.pretrained, train=net.fine_tune)
    return train_and_save(model, build_loss(net), train_src, val_src, out, config=config,
                          detector="ixpe", network=net.to_dict(), card=model_card,
                          events=events, val_events=val_events, simulation=sim_config,
                          init=init, command=command, resume=resume, overwrite=overwrite)


def _spectrum_label(sim: dict) -> str:
    spec = sim.get("source", {}).get("spectrum", "?")
    return spec.get("label", str(spec)) if isinstance(spec, dict) else str(spec)


def model_card(config: dict, history=(), measured: str = "") -> str:
    """Markdown model card: what the network is, what it was trained on, how to redo it."""
    from astroreco.io.modeldir import history_lines

    net = config["network"]
    tr = config["training"]
    sim = tr.get("simulation", {})
    lines = [f"# IXPE {net['architecture']} network", "",
             "Reconstructs the photoelectron emission angle (von Mises on 2 phi with kappa), "
             "the impact point and the energy of IXPE Gas Pixel Detector tracks."
             if net["architecture"] == "multitask" else
             f"IXPE {net['architecture']} network.", "",
             "## Architecture and preprocessing", "",
             f"- input: {net['image']['representation']} crop, {net['image']['size']} "
             f"pixels, charge / {net['image']['charge_scale']:g} e-",
             f"- backbone widths {net['widths']}, stem {net.get('stem', 1)}, "
             f"{net['n_features']} features, "
             f"{tr.get('n_parameters', '?')} parameters",
             f"- impact point fed to the angle head: {net['impact_to_angle']}",
             f"- test-time averaging over {net['tta']} lattice symmetries", "",
             "## Training", "",
             f"- data: `{tr['events']}`: {tr['n_train']} training and {tr['n_val']} "
             f"validation tracks of {sim.get('n_events', '?')} simulated "
             f"({_spectrum_label(sim)}, polarization degree "
             f"{sim.get('source', {}).get('polarization_degree', '?')}, seed "
             f"{sim.get('seed', '?')}, default detector settings)",
             f"- {tr['epochs']} epochs, {tr['steps']} steps, {tr['train_seconds']} s on "
             f"{tr['machine']} ({tr['threads']} threads); best validation loss "
             f"{tr['best_val_loss']:.4f}",
             f"- mean emission angle trained with the {net.get('angle_loss', 'nll')} loss",
             *([f"- started from the weights of `{tr['init']}`"] if tr.get("init") else []),
             f"- command: `{tr.get('command') or 'astroreco ixpe train ...'}`", ""]
    lines += history_lines(history)
    lines += ["## Measured against the moments analysis", "",
              measured or "Not measured yet: run `benchmarks/ixpe_nn.py`.", ""]
    return "\n".join(lines)
