"""Training the sky source detector: patches as tensors, the run, the model card.

:class:`PatchSource` turns rows of a patch file (``astroreco sky simulate``) into the U-Net's
input and target maps (:mod:`astroreco.detectors.sky.neural`); :func:`train` runs the
detector-agnostic training engine and writes the model directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astroreco.detectors.sky.neural import (SkyNetConfig, build_loss, build_model, dihedral,
                                            network_inputs, source_masks)
from astroreco.errors import InputError


class PatchSource:
    """Training patches from rows ``[start, stop)`` of a patch file."""

    def __init__(self, path, start: int, stop: int, net: SkyNetConfig):
        from astroreco.detectors.sky.pipeline import PATCH_SCHEMA
        from astroreco.io.store import EventFile
        from astroreco.training.run import check_rows

        with EventFile(path, PATCH_SCHEMA) as ef:
            check_rows(ef, path, start, stop, "patches")
            shape = ef.per_event("counts", 0, 1).shape[1:]
        if shape != (net.n_energy, net.n_pix, net.n_pix):
            raise InputError(f"{path}: patches of shape {shape}, the network is configured "
                             f"for {(net.n_energy, net.n_pix, net.n_pix)}")
        self.path, self.start, self.n_events, self.net = str(path), int(start), \
            int(stop - start), net

    def load(self, start, stop, rows=None, rng=None) -> dict:
        from astroreco.detectors.sky.pipeline import read_patches, read_truth

        a, b = self.start + start, self.start + stop
        counts = read_patches(self.path, a, b).counts
        truth = read_truth(self.path, a, b)
        masks = source_masks(truth, len(counts), counts.shape[-2:], self.net)
        x = network_inputs(counts)
        if rows is not None:
            x, masks = x[rows], masks[rows]
        if rng is not None:
            x, masks = dihedral([x, masks], rng)
        return {"counts": np.ascontiguousarray(x), "mask": np.ascontiguousarray(masks)}


def train(events, out, *, net: SkyNetConfig | None = None, config=None, val_events=None,
          val_fraction: float = 0.1, init=None, resume: bool = False,
          overwrite: bool = False, command: str | None = None) -> dict:
    """Train the U-Net source detector and write the model directory ``out/model``.

    Parameters
    ----------
    events, val_events : path-like
        Patch files with truth (``astroreco sky simulate``); without ``val_events`` the
        last ``val_fraction`` of ``events`` validates.
    out : path-like
        Run directory (checkpoints, logs, ``model/``).
    net : SkyNetConfig
        Network, target and centre finder (default: the CPU scale).
    config : astroreco.training.TrainConfig
    init : path-like, optional
        A trained sky detector of the same network to start from.
    """
    from astroreco.detectors.sky.pipeline import PATCH_SCHEMA, config_of
    from astroreco.io.modeldir import load_model_dir, load_state
    from astroreco.training import TrainConfig
    from astroreco.training.run import sources_from_files, train_and_save

    config = config or TrainConfig()
    sim = config_of(events)
    g = sim.geometry
    net = net or SkyNetConfig(n_energy=g.n_energy, n_pix=g.n_pix)
    if (net.n_energy, net.n_pix) != (g.n_energy, g.n_pix):
        raise InputError(f"{events}: patches of {g.n_energy} energy bins x {g.n_pix} pixels, "
                         f"the network is configured for {net.n_energy} x {net.n_pix}")
    train_src, val_src, simulation = sources_from_files(
        lambda path, a, b: PatchSource(path, a, b, net), PATCH_SCHEMA, events,
        val_events=val_events, val_fraction=val_fraction)
    model = build_model(net)
    if init is not None:
        load_state(model, load_model_dir(init, detector="sky")[0], init)
    return train_and_save(model, build_loss(net), train_src, val_src, Path(out),
                          config=config, detector="sky", network=net.to_dict(),
                          card=model_card, events=events, val_events=val_events,
                          simulation=simulation, init=init, command=command, resume=resume,
                          overwrite=overwrite)


def model_card(config: dict, history=(), measured: str = "") -> str:
    """Markdown model card of a sky detector."""
    from astroreco.io.modeldir import history_lines

    net = config["network"]
    tr = config["training"]
    sim = tr.get("simulation", {})
    cfg = SkyNetConfig(**net)
    w = cfg.widths()
    lines = ["# Sky source detector (multi-input U-Net)", "",
             "Marks the pixels of gamma-ray point sources in a counts cube "
             f"({net['n_energy']} energy bins, {net['n_pix']} x {net['n_pix']} pixels); the "
             f"source centres come from the probability map by "
             f"{'Laplacian of Gaussian' if net['centres'] == 'log' else 'k-means'} "
             f"(threshold {net['threshold']}) (seed 002).", "",
             "## Architecture and input", "",
             f"- one convolutional branch per energy bin ({w['branch_width']} channels "
             f"each), then a U-Net of width {w['width']} and depth {w['depth']} "
             f"({net['scale']} scale); {tr.get('n_parameters', '?')} parameters",
             "- input: log(1 + counts) per energy bin; no background model (the network "
             "is meant to be tested on another interstellar emission model)",
             f"- target: discs of {net['mask_radius_pix']} pixels around the true sources "
             f"with S(1-100 GeV) >= {net['label_min_flux']:g} ph cm-2 s-1",
             f"- loss: binary cross-entropy (source-pixel weight {net['pos_weight']}) + "
             f"{net['dice_weight']} x soft Dice; the 8 symmetries of the square as "
             "augmentation", "",
             "## Training", "",
             f"- data: `{tr['events']}`: {tr['n_train']} training and {tr['n_val']} "
             f"validation patches (preset {sim.get('preset', '?')}, IEM "
             f"{sim.get('simulation', {}).get('iem', '?')}, seed {sim.get('seed', '?')})",
             f"- {tr['epochs']} epochs, {tr['steps']} steps, {tr['train_seconds']} s on "
             f"{tr['machine']} ({tr['threads']} threads); best validation loss "
             f"{tr['best_val_loss']:.4f}",
             f"- command: `{tr.get('command') or 'astroreco sky train ...'}`",
             *([f"- centre finder: {tr['centre_finder_choice']}"]
               if tr.get("centre_finder_choice") else []), ""]
    lines += history_lines(history)
    if measured:
        lines += ["## Measured against the classical baseline", "", measured]
    return "\n".join(lines) + "\n"
