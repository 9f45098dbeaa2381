"""Training the ECAL networks: images as tensors, the seed's resolution iteration, the card.

:class:`EcalSource` turns rows of an ECAL event file into the inputs of
:func:`~astroreco.detectors.ecal.neural.network_inputs` and the task's targets (with the
expected resolution ``sigma(E)`` per event for the seed's loss).  :func:`train` runs the
detector-agnostic training engine; with ``iterations > 1`` it refits ``sigma(E)`` on the
network's own validation residuals and trains on from the weights it has, which is how the
seed obtains its ``sigma_true``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from astroreco.detectors.ecal.neural import (EcalNetConfig, Resolution, axis_targets,
                                             build_loss, build_model, deposited_energy_gev,
                                             network_inputs, reference_from_inputs,
                                             target_resolution)
from astroreco.errors import InputError

TRUTH = ["theta_deg", "phi_deg", "x0_mm", "y0_mm"]


class EcalSource:
    """Training events from rows ``[start, stop)`` of an ECAL event file."""

    def __init__(self, path, start: int, stop: int, net: EcalNetConfig):
        from astroreco.detectors.ecal.pipeline import EVENT_SCHEMA
        from astroreco.io.store import EventFile
        from astroreco.training.run import check_rows

        with EventFile(path, EVENT_SCHEMA) as ef:
            check_rows(ef, path, start, stop)
            ef.truth(TRUTH, 0, 1)  # fails clearly if absent
        self.path, self.start, self.n_events, self.net = str(path), int(start), \
            int(stop - start), net

    def load(self, start, stop, rows=None, rng=None) -> dict:
        from astroreco.detectors.ecal.pipeline import EVENT_SCHEMA, read_images
        from astroreco.io.store import EventFile

        images = read_images(self.path, self.start + start, self.start + stop)
        with EventFile(self.path, EVENT_SCHEMA) as ef:
            truth = ef.truth(TRUTH, self.start + start, self.start + stop)
        if rows is not None:
            images = images[rows]
            truth = {k: v[rows] for k, v in truth.items()}
        inputs = network_inputs(images, self.net, rng)
        ref = reference_from_inputs(inputs) if self.net.crop_cells else None
        target = axis_targets(truth, self.net, ref)
        if self.net.task != "multitask":
            sigma = target_resolution(deposited_energy_gev(images), self.net)
            target = np.concatenate([target, sigma], 1)
        inputs["target"] = target.astype(np.float32)
        return inputs


def fit_resolution(energy_gev, residual, n_bins: int = 10):
    """``(a, b)`` of ``sigma(E) = sqrt(a^2/E + b^2)`` from residuals: Gaussian-core widths
    in ``n_bins`` bins of equal counts (at least 40 events each where possible), fitted
    with :func:`~astroreco.stats.resolution.fit_stochastic_constant`."""
    from astroreco.stats.resolution import binned_resolution, fit_stochastic_constant

    e = np.asarray(energy_gev, np.float64)
    n_bins = max(2, min(int(n_bins), e.size // 40))
    edges = np.quantile(e, np.linspace(0, 1, n_bins + 1))
    edges[-1] = np.nextafter(edges[-1], np.inf)
    rows = binned_resolution(e, residual, edges)
    if len(rows) < 2:
        raise InputError("fit_resolution: fewer than 2 energy bins with 10 events")
    fit = fit_stochastic_constant([x["e_eff"] for x in rows], [x["sigma"] for x in rows],
                                  [x["sigma_err"] for x in rows])
    return fit["a"], fit["b"]


def _validation_resolution(model_dir, val_events, net: EcalNetConfig,
                           n_max: int = 50_000) -> Resolution:
    from astroreco.detectors.ecal.neural import NeuralReconstructor
    from astroreco.detectors.ecal.pipeline import EVENT_SCHEMA, read_images
    from astroreco.io.store import EventFile

    with EventFile(val_events, EVENT_SCHEMA) as ef:
        n = min(ef.n_events, n_max)
        truth = ef.truth(TRUTH, 0, n)
    images = read_images(val_events, 0, n)
    reco = NeuralReconstructor(model_dir).reconstruct(images)
    energy = deposited_energy_gev(images)
    if net.task == "angle":
        fits = [fit_resolution(energy, reco["theta_deg"] - truth["theta_deg"])]
    else:
        fits = [fit_resolution(energy, reco[f"{c}0_mm"] - truth[f"{c}0_mm"]) for c in "xy"]
    return Resolution(a=[f[0] for f in fits], b=[f[1] for f in fits])


def train(events, out, *, net: EcalNetConfig | None = None, config=None,
          val_events=None, val_fraction: float = 0.1, iterations: int = 1,
          init=None, resume: bool = False, overwrite: bool = False,
          command: str | None = None) -> dict:
    """Train an ECAL network and write the model directory ``out/model``.

    Parameters
    ----------
    events, val_events : path-like
        ECAL event files with truth (``astroreco ecal simulate``).
    out : path-like
        Run directory (checkpoints, logs, ``model/``); iteration ``k > 1`` runs in
        ``out/iter<k>`` and the final model is copied to ``out/model``.
    net : EcalNetConfig
        Task and network (default: the CPU-scale multitask network).
    config : astroreco.training.TrainConfig
        Epochs, batch size, optimiser, seed.
    iterations : int
        ``angle``/``position``: rounds of (train, refit ``sigma(E)`` on the validation
        residuals); each round starts from the previous weights.
    init : path-like, optional
        A trained ECAL model of the same task and network to start from.
    """
    import shutil

    from astroreco.detectors.ecal.pipeline import EVENT_SCHEMA
    from astroreco.io.store import EventFile
    from astroreco.training import TrainConfig
    from astroreco.training.run import sources_from_files, train_and_save

    net = net or EcalNetConfig()
    config = config or TrainConfig()
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 1:
        raise InputError(f"iterations: expected an integer >= 1, got {iterations!r}")
    if iterations > 1 and val_events is None:
        raise InputError("iterations > 1: give --val-events, the resolution is refitted on "
                         "them")
    if net.task == "multitask" and iterations > 1:
        raise InputError("iterations: the multitask network learns its own uncertainties; "
                         "use iterations=1")
    with EventFile(events, EVENT_SCHEMA) as ef:
        n = min(ef.n_events, 200_000)
        energy = deposited_energy_gev(ef.per_event("image", 0, n))
    net.energy_range_gev = (float(energy.min()), float(energy.max()))
    out = Path(out)
    history = []
    summary = None
    for it in range(int(iterations)):
        run_dir = out if it == 0 else out / f"iter{it + 1}"
        train_src, val_src, sim_config = sources_from_files(
            lambda path, a, b: EcalSource(path, a, b, net), EVENT_SCHEMA, events,
            val_events=val_events, val_fraction=val_fraction)
        model = build_model(net)
        if it == 0:
            start = init
        else:  # the previous round's model
            start = (out if it == 1 else out / f"iter{it}") / "model"
        if start is not None:
            from astroreco.io.modeldir import load_model_dir, load_state

            load_state(model, load_model_dir(start, detector="ecal")[0], start)
        summary = train_and_save(model, build_loss(net), train_src, val_src, run_dir,
                                 config=config, detector="ecal", network=net.to_dict(),
                                 card=model_card, events=events, val_events=val_events,
                                 simulation=sim_config, init=start, command=command,
                                 resume=resume, overwrite=overwrite)
        history.append({"iteration": it + 1, "resolution": net.resolution,
                        "best_val_loss": summary["best_val_loss"]})
        if it + 1 < iterations and "model" in summary:
            res = _validation_resolution(summary["model"], val_events, net)
            net.resolution = {"a": res.a, "b": res.b}
    if iterations > 1 and "model" in summary:
        final = Path(summary["model"])
        if final != out / "model":
            shutil.rmtree(out / "model", ignore_errors=True)
            shutil.copytree(final, out / "model")
        cfg_path = out / "model" / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["training"]["resolution_iterations"] = history
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
        summary["model"] = str(out / "model")
    summary["iterations"] = history
    return summary


_WHAT = {"angle": "the polar angle theta of the shower axis (the seed's network)",
         "position": "the incident point (x0, y0) on the front face (the seed's network)",
         "multitask": "the shower axis (slopes in both projections, hence theta and phi) "
                      "and the incident point, each with a Gaussian uncertainty"}


def model_card(config: dict, history=(), measured: str = "") -> str:
    """Markdown model card: what the network is, what it was trained on, how to redo it."""
    from astroreco.io.modeldir import history_lines

    net = config["network"]
    tr = config["training"]
    sim = tr.get("simulation", {})
    lines = [f"# ECAL {net['task']} network", "",
             f"Reconstructs {_WHAT[net['task']]} from the 18 x 72 cell image of an "
             "AMS-02-like sampling calorimeter, with the deposited energy as an extra input "
             "(seed 003).", "",
             "## Architecture and input", "",
             f"- ResNet-18 layout (17 convolutions + 1 dense layer), base width "
             f"{net['width']}, {net['pool']} pooling, {net['n_features']} features + "
             f"log10(E_dep/GeV); {tr.get('n_parameters', '?')} parameters",
             *([f"- input: {net['crop_cells']} cells per layer around the "
                "centre-of-gravity axis (energy fractions, log(1 + E/MeV), offsets from the "
                "axis); the network predicts corrections to that axis"]
               if net.get("crop_cells") else
               ["- input: the full image (cell energy fractions, log(1 + E/MeV), first "
                "moments)"]),
             f"- {net['noise']:.0%} Gaussian noise per cell in training",
             *([f"- detector augmentation in training: per-event gain spread "
                f"{net['aug_gain_spread']:.0%}, {net['aug_dead_fraction']:.0%} dead cells, "
                f"{net['aug_noise_mev']:g} MeV noise"]
               if net.get("aug_gain_spread") or net.get("aug_dead_fraction")
               or net.get("aug_noise_mev") else []),
             *([f"- expected resolution in the loss: a = {net['resolution']['a']}, "
                f"b = {net['resolution']['b']}"] if net.get("resolution") else []),
             *([f"- trained deposited energies: {net['energy_range_gev'][0]:.3g}-"
                f"{net['energy_range_gev'][1]:.4g} GeV (flagged outside)"]
               if net.get("energy_range_gev") else []), "",
             "## Training", "",
             f"- data: `{tr['events']}`: {tr['n_train']} training and {tr['n_val']} "
             f"validation showers (particle {sim.get('particle', '?')}, energy "
             f"{sim.get('energy_gev', '?')} GeV, theta {sim.get('theta_deg', '?')} deg, "
             f"seed {sim.get('seed', '?')})",
             f"- {tr['epochs']} epochs, {tr['steps']} steps, {tr['train_seconds']} s on "
             f"{tr['machine']} ({tr['threads']} threads); best validation loss "
             f"{tr['best_val_loss']:.4f}",
             f"- command: `{tr.get('command') or 'astroreco ecal train ...'}`", ""]
    if tr.get("stages"):
        seeds = ", ".join(str(st["seed"]) for st in tr["stages"] if "seed" in st)
        lines += ["Trained in stages, each starting from the previous weights on fresh "
                  f"showers (`astroreco ecal simulate -o trainK.h5 -n 250000 --seed S`, "
                  f"S = {seeds}; validation: seed {tr.get('val_seed', '?')}):", ""]
        lines += [f"{i}. `{st['command']}` ({st.get('note', '')}best validation loss "
                  f"{st['best_val_loss']:.4f})" for i, st in enumerate(tr["stages"], 1)]
        lines.append("")
    lines += history_lines(history)
    if measured:
        lines += ["## Measured against the classical methods", "", measured]
    return "\n".join(lines) + "\n"
