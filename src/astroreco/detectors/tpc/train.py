"""Training the TPC networks: voxel events as padded tensors, the training run, the card.

:class:`TpcSource` turns rows of a TPC event file (recoils or arrows) into the padded
network inputs of :func:`astroreco.detectors.tpc.neural.network_inputs`, with a random cube
symmetry per event when augmenting, and the truth direction in the same frame;
:func:`train` runs the detector-agnostic :func:`astroreco.training.fit` on it and writes
the model directory that :class:`~astroreco.detectors.tpc.neural.NeuralReconstructor`
reads.
"""

from __future__ import annotations

import math

import numpy as np

from astroreco.detectors.tpc.neural import (SYMMETRIES, TpcNetConfig, build_loss, build_model,
                                            network_inputs, symmetry_matrix)

TRUTH = ["dir_x", "dir_y", "dir_z"]


class TpcSource:
    """Training events from rows ``[start, stop)`` of a TPC event file."""

    def __init__(self, path, start: int, stop: int, net: TpcNetConfig):
        from astroreco.detectors.tpc.pipeline import EVENT_SCHEMA
        from astroreco.io.store import EventFile
        from astroreco.training.run import check_rows

        with EventFile(path, EVENT_SCHEMA) as ef:
            check_rows(ef, path, start, stop)
            ef.truth(TRUTH, 0, 1)  # fails clearly if absent
            offsets = ef.hits(start, stop, names=["electrons"])[0]
        self.path = str(path)
        self.start = int(start)
        self.n_events = int(stop - start)
        self.net = net
        # every batch is padded to the file range's largest event (grouping only shrinks)
        self.pad_to = int(np.diff(offsets).max())

    def load(self, start, stop, rows=None, rng=None) -> dict:
        from astroreco.detectors.tpc.pipeline import EVENT_SCHEMA, read_voxels
        from astroreco.io.store import EventFile, select_rows

        offsets, coords, values = read_voxels(self.path, self.start + start, self.start + stop)
        with EventFile(self.path, EVENT_SCHEMA) as ef:
            truth = ef.truth(TRUTH, self.start + start, self.start + stop)
        if rows is not None:
            offsets, hits = select_rows(offsets, {"c": coords, "v": values}, rows)
            coords, values = hits["c"], hits["v"]
            truth = {k: v[rows] for k, v in truth.items()}
        n = len(offsets) - 1
        direction = np.stack([truth[k] for k in TRUTH], axis=1).astype(np.float64)
        if rng is not None:
            sym = rng.integers(0, len(SYMMETRIES), n)
            for s in np.unique(sym):
                direction[sym == s] = direction[sym == s] @ symmetry_matrix(s).T
        else:
            sym = None
        inputs = network_inputs(offsets, coords, values, self.net, symmetry=sym,
                                pad_to=self.pad_to)
        inputs["direction"] = direction.astype(np.float32)
        return inputs


def train(events, out, *, net: TpcNetConfig | None = None, config=None,
          val_fraction: float = 0.1, val_events=None, resume: bool = False,
          overwrite: bool = False, init=None, command: str | None = None) -> dict:
    """Train a TPC network on simulated events and write the model directory ``out/model``.

    Parameters
    ----------
    events : path-like
        TPC event file with truth (recoils from ``astroreco tpc simulate`` or arrows).
    out : path-like
        Run directory: checkpoints, CSV logs and the final ``model/``.
    net : TpcNetConfig
        Architecture and input representation (default: the CPU-scale HCN).
    config : astroreco.training.TrainConfig
        Epochs, batch size, optimiser, seed, devices.
    val_fraction : float
        Last fraction of ``events`` kept for validation (when ``val_events`` is None).
    val_events : path-like, optional
        A separate validation file.
    resume, overwrite : bool
        See :func:`astroreco.training.fit`.
    init : path-like, optional
        A trained TPC model directory to start from (same architecture).
    command : str, optional
        The command line that ran this, recorded in the model card.
    """
    from astroreco.detectors.tpc.pipeline import EVENT_SCHEMA
    from astroreco.training import TrainConfig
    from astroreco.training.run import sources_from_files, train_and_save

    net = net or TpcNetConfig()
    config = config or TrainConfig()
    train_src, val_src, sim_config = sources_from_files(
        lambda path, a, b: TpcSource(path, a, b, net), EVENT_SCHEMA, events,
        val_events=val_events, val_fraction=val_fraction)
    model = build_model(net)
    if init is not None:
        _load_init(model, net, init)
    return train_and_save(model, build_loss(net), train_src, val_src, out, config=config,
                          detector="tpc", network=net.to_dict(), card=model_card,
                          events=events, val_events=val_events, simulation=sim_config,
                          init=init, command=command, resume=resume, overwrite=overwrite)


def _load_init(model, net: TpcNetConfig, init) -> None:
    """Load the weights of the model directory ``init`` into ``model`` (of ``net``).

    A network on summed voxels can start one on their sub-voxel channels
    (``net.subvoxels``, same grouping): the sum is the channels' sum, so its first
    convolution copied to every channel makes the new network compute exactly what the old
    one did, and training goes on from there.
    """
    from astroreco.io.modeldir import load_model_dir, load_state

    state, config = load_model_dir(init, detector="tpc")
    old = config.get("network") or {}
    if net.subvoxels and not old.get("subvoxels", False) \
            and old.get("voxel_group") == net.voxel_group:
        own = model.state_dict()
        first = next(k for k, v in own.items() if k.endswith("weight") and v.ndim == 5)
        w, want = state.get(first), own[first].shape
        # (anything else is left to load_state, which names the mismatch)
        if w is not None and w.shape == want[:1] + (1,) + want[2:]:
            state = {**state, first: w.expand(want).contiguous()}
    load_state(model, state, init)


_WHAT = {"hcn": "the initial direction of electron recoils with a von Mises-Fisher "
                "concentration kappa (heteroscedastic, HCN)",
         "rcn": "the initial direction of electron recoils (cosine loss, RCN; no uncertainty)",
         "gaussian": "the initial direction of electron recoils as a 3-vector with a "
                     "Gaussian uncertainty"}


def _values(entry) -> str:
    if not isinstance(entry, dict):
        return "?"
    sep = {"uniform": ":", "choice": ","}.get(entry.get("kind"), ",")
    return sep.join(f"{v:g}" for v in entry.get("values", []))


def _simulation_label(sim: dict) -> str:
    if sim.get("source") == "arrows":
        return f"3D arrows, seed {sim.get('seed', '?')}"
    return (f"recoils of {_values(sim.get('energy_kev'))} keV, smearing "
            f"{_values(sim.get('sigma_um'))} um, seed {sim.get('seed', '?')}")


def _init_lines(stages) -> list:
    """Card lines for the earlier runs whose weights this one started from (oldest first)."""
    stages = stages if isinstance(stages, list) else [stages]
    return [f"- starting weights, stage {i + 1}: {it['epochs']} epochs, {it['train_seconds']} s "
            f"on `{it['events']}` ({it['n_train']} events), best validation loss "
            f"{it['best_val_loss']:.4f}; command `{it.get('command', '?')}`"
            for i, it in enumerate(stages)]


def _calibration_lines(net: dict, fit: dict | None) -> list[str]:
    if not fit:
        return []
    events = fit["events"] if isinstance(fit["events"], str) else "`, `".join(fit["events"])
    where = (f"fitted on {fit['n_events']} validation events (`{events}`; "
             f"`astroreco tpc calibrate`)")
    cal = net.get("kappa_calibration")
    if not cal:
        return [f"- kappa x {net['kappa_scale']:.3f}, {where}"]
    if cal.get("kind") == "mlp":
        held = ", ".join(f"{m['held_out_nll']:.4f}" for m in cal["fit"]["members"])
        return [f"- log kappa from an ensemble of {len(cal['members'])} networks "
                f"({cal['depth']} hidden layers of {cal['hidden']}, SiLU) on "
                f"{', '.join(cal['features'])}, trained by the vMF likelihood with the "
                f"directions held fixed, {where}; held-out NLL per network: {held}", ""]
    edges = [-math.inf, *cal["energy_edges_kev"], math.inf]
    feats = cal["features"]
    terms = "".join(f" + z_{f} (c + d log kappa)" for f in feats)
    lines = [f"- log kappa -> a + b log kappa{terms} per bin of measured energy (total "
             f"charge x W; z: the feature standardised in the bin), {where}:", "",
             "| measured energy (keV) | coefficients (a, b" + ", c, d" * len(feats) + ") |",
             "|---|---|"]
    for i, coef in enumerate(cal["coef"]):
        lo = "" if i == 0 else f"{edges[i]:.1f}"
        hi = "" if i == len(edges) - 2 else f"{edges[i + 1]:.1f}"
        span = f"< {hi}" if not lo else (f">= {lo}" if not hi else f"{lo}-{hi}")
        if not lo and not hi:
            span = "all"
        lines.append(f"| {span} | {', '.join(f'{c:.3f}' for c in coef)} |")
    return lines + [""]


def model_card(config: dict, history=(), measured: str = "") -> str:
    """Markdown model card: what the network is, what it was trained on, how to redo it."""
    from astroreco.io.modeldir import history_lines

    net = config["network"]
    tr = config["training"]
    sim = tr.get("simulation", {})
    g = net["voxel_group"]
    lines = [f"# TPC {net['architecture'].upper()} network", "",
             f"Reconstructs {_WHAT[net['architecture']]} from sparse 3D voxels of a "
             "He:CO2 70:30 gas TPC (seed 001).", "",
             "## Architecture and input", "",
             f"- input: voxels grouped {g}x{g}x{g} ({0.5 * g:g} mm, a {120 // g}^3 grid), "
             f"electrons / {net['charge_scale']:g}"
             + (f"; each grouped voxel's {g ** 3} voxels of 500 um as channels"
                if net.get("subvoxels") else ""),
             f"- sparse backbone {net['layers']}, trunk {net['trunk']}, branches "
             f"{net['branch']}; {tr.get('n_parameters', '?')} parameters",
             f"- test-time averaging over {net['tta']} cube symmetries",
             *_calibration_lines(net, tr.get("kappa_calibration")), "",
             "## Training", "",
             f"- data: `{tr['events']}`: {tr['n_train']} training and {tr['n_val']} "
             f"validation events ({_simulation_label(sim)})",
             f"- {tr['epochs']} epochs, {tr['steps']} steps, {tr['train_seconds']} s on "
             f"{tr['machine']} ({tr['threads']} threads); best validation loss "
             f"{tr['best_val_loss']:.4f}",
             *([f"- started from the weights of `{tr['init']}`"] if tr.get("init") else []),
             *(_init_lines(tr["init_training"]) if tr.get("init_training") else []),
             f"- command: `{tr.get('command') or 'astroreco tpc train ...'}`", ""]
    lines += history_lines(history)
    lines += ["## Measured against the classical references", "",
              measured or "Not measured yet: run `benchmarks/tpc.py`.", ""]
    return "\n".join(lines)
