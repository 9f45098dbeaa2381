"""``astroreco tpc simulate|train|reconstruct|tune|evaluate|arrows|calibrate``."""

from __future__ import annotations

import json

import click

from astroreco.cli.options import (device_option, out_option, overwrite_option, quiet_option,
                                   seed_option)


@click.group()
def tpc():
    """Directional gas TPC: electron recoils as sparse 3D voxels -> initial direction."""


@tpc.command()
@out_option("Event file to write (HDF5).")
@click.option("--n-events", "-n", type=int, required=True, help="Recoils to simulate.")
@click.option("--energy", default="40", show_default=True,
              help="Recoil energy in keV: '40', '40,45,50' (one per event) or '40:50'.")
@click.option("--sigma", default="160:466", show_default=True,
              help="Gaussian smearing per electron (um): '200' or '160:466' (per track).")
@click.option("--chunk-size", type=int, default=10_000, show_default=True,
              help="Events per write (does not change the events).")
@seed_option()
@overwrite_option()
@quiet_option()
def simulate(out, n_events, energy, sigma, chunk_size, seed, overwrite, quiet):
    """Simulate electron recoils (transport, smearing, rotation, 120^3 voxels)."""
    from astroreco.detectors.tpc.pipeline import simulate as run

    click.echo(json.dumps(run(out, n_events=n_events, energy=energy, sigma=sigma, seed=seed,
                              chunk_size=chunk_size, overwrite=overwrite,
                              progress=not quiet)))


@tpc.command()
@click.argument("events", type=click.Path())
@out_option("Run directory: checkpoints, logs and the trained model in OUT/model.")
@click.option("--architecture", default="hcn", show_default=True,
              type=click.Choice(["hcn", "rcn", "gaussian"]),
              help="hcn: direction + von Mises-Fisher kappa; rcn: direction, cosine loss; "
                   "gaussian: 3-vector with a Gaussian NLL.")
@click.option("--scale", default="cpu", show_default=True, type=click.Choice(["cpu", "paper"]),
              help="cpu: 1 mm voxels (60^3) and a small backbone, trains here in tens of "
                   "minutes; paper: the seed's 120^3 network and optimiser (a GPU job).")
@click.option("--val-events", type=click.Path(), default=None,
              help="Separate validation file (default: the last --val-fraction of EVENTS).")
@click.option("--val-fraction", type=float, default=0.1, show_default=True)
@click.option("--epochs", type=int, default=None,
              help="Maximum epochs [cpu: 12; paper: 200 (early stopping ends it)].")
@click.option("--batch-size", type=int, default=None, help="[cpu: 64; paper: 256]")
@click.option("--lr", type=float, default=None, help="Peak learning rate [cpu: 1e-3; paper: 1e-4].")
@click.option("--patience", type=int, default=None,
              help="Early stopping on the validation loss [cpu: 3; paper: 5].")
@click.option("--max-steps-per-epoch", type=int, default=None,
              help="Cap the optimiser steps per epoch (quick runs).")
@click.option("--devices", type=int, default=1, show_default=True,
              help="Processes (CPU) or GPUs; > 1 trains with DDP.")
@click.option("--backend", type=click.Choice(["auto", "spconv", "torch"]), default="auto",
              show_default=True, help="Sparse convolution backend (same weights).")
@click.option("--subvoxels", is_flag=True,
              help="cpu scale: each 1 mm voxel keeps its 8 voxels of 500 um as input "
                   "channels instead of their sum (with --init from a model on summed "
                   "voxels, its first convolution is copied to each channel).")
@click.option("--init", "init", type=click.Path(), default=None,
              help="Start from this trained TPC model directory (same network).")
@click.option("--resume", is_flag=True, help="Continue the run in OUT from its last epoch.")
@device_option()
@seed_option()
@overwrite_option()
@quiet_option()
def train(events, out, architecture, scale, val_events, val_fraction, epochs, batch_size, lr,
          patience, max_steps_per_epoch, devices, backend, subvoxels, init, resume, device,
          seed, overwrite, quiet):
    """Train a sparse 3D network on simulated EVENTS (recoils or arrows, with truth)."""
    import sys

    from astroreco.detectors.tpc.neural import TpcNetConfig
    from astroreco.detectors.tpc.train import train as run
    from astroreco.errors import InputError
    from astroreco.io.modeldir import read_model_config
    from astroreco.training import OptimConfig, TrainConfig

    extra = {"subvoxels": True} if subvoxels else {}
    if subvoxels and scale == "paper":
        raise InputError("--subvoxels: for --scale cpu (the paper's network sees the 500 um "
                         "voxels themselves)")
    if init is not None:
        net = TpcNetConfig(**{**read_model_config(init, "tpc")["network"], "backend": backend,
                              **extra})
    elif scale == "paper":
        net = TpcNetConfig.paper(architecture, backend=backend)
    else:
        net = TpcNetConfig.cpu(architecture, backend=backend, **extra)
    paper = scale == "paper"
    optim = OptimConfig(lr=lr or (1e-4 if paper else 1e-3),
                        **({"betas": (0.94, 0.999), "eps": 1e-7, "schedule": "constant",
                            "weight_decay": 0.0, "warmup_steps": 0} if paper else {}))
    config = TrainConfig(max_epochs=epochs or (200 if paper else 12),
                         batch_size=batch_size or (256 if paper else 64),
                         patience=patience or (5 if paper else 3), seed=seed,
                         accelerator="gpu" if device.startswith("cuda") else "cpu",
                         devices=devices, progress=not quiet,
                         max_steps_per_epoch=max_steps_per_epoch, optim=optim,
                         chunk_size=4096)
    summary = run(events, out, net=net, config=config, val_fraction=val_fraction,
                  val_events=val_events, resume=resume, overwrite=overwrite, init=init,
                  command="astroreco tpc train " + " ".join(sys.argv[3:]))
    click.echo(json.dumps(summary))


@tpc.command()
@click.argument("events", type=click.Path())
@click.option("--method", default="nonml", show_default=True,
              type=click.Choice(["nonml", "nonml_truth_ht", "best_expected", "nn"]),
              help="nonml: the seed's 3D moments; nonml_truth_ht / best_expected: references "
                   "that use the simulation truth; nn: a trained network.")
@click.option("--name", default=None, help="Store under /reco/NAME (default: the method).")
@click.option("--model", "model_dir", type=click.Path(), default=None,
              help="Model directory for --method nn (default: the shipped model).")
@click.option("--nonml-params", default=None, metavar="R_MIN,R_MAX,W0_CM",
              help="Non-ML parameters (default 1.5,3,0.05), e.g. tuned ones.")
@click.option("--epsilon", type=float, default=0.3, show_default=True,
              help="Best-Expected sphere radius (cm).")
@click.option("--tta", type=click.Choice(["1", "2", "4", "8", "48"]), default=None,
              help="nn: cube symmetries averaged (default: the model's setting).")
@click.option("--backend", type=click.Choice(["auto", "spconv", "torch"]), default=None,
              help="nn: sparse convolution backend (default: the model's).")
@device_option()
@quiet_option()
def reconstruct(events, method, name, model_dir, nonml_params, epsilon, tta, backend, device,
                quiet):
    """Reconstruct EVENTS; results go under /reco/NAME in the same file."""
    from astroreco.detectors.tpc.pipeline import reconstruct as run
    from astroreco.errors import InputError

    nonml = None
    if nonml_params is not None:
        try:
            r_min, r_max, w0 = (float(v) for v in nonml_params.split(","))
        except ValueError:
            raise InputError(f"--nonml-params {nonml_params!r}: expected R_MIN,R_MAX,W0_CM"
                             ) from None
        nonml = {"r_min": r_min, "r_max": r_max, "w0_cm": w0}
    click.echo(json.dumps(run(events, method=method, name=name, model=model_dir, nonml=nonml,
                              epsilon_cm=epsilon, tta=None if tta is None else int(tta),
                              backend=backend, device=device, progress=not quiet)))


@tpc.command()
@click.argument("events", type=click.Path())
@out_option("JSON file for the tuned parameters and the scans.")
@click.option("--min-efficiency", type=float, default=0.10, show_default=True,
              help="Non-ML settings keeping fewer tracks are not considered (the seed's 10%).")
@overwrite_option()
def tune(events, out, min_efficiency, overwrite):
    """Tune Non-ML (r_min, r_max, w0) and the Best-Expected radius on validation EVENTS."""
    from pathlib import Path

    import numpy as np

    from astroreco.detectors.tpc import best_expected, nonml
    from astroreco.detectors.tpc.pipeline import EVENT_SCHEMA, read_voxels
    from astroreco.io.store import EventFile, check_output_path

    check_output_path(out, overwrite)
    offsets, coords, values = read_voxels(events)
    with EventFile(events, EVENT_SCHEMA) as ef:
        t = ef.truth(["dir_x", "dir_y", "dir_z", "start_x_cm", "start_y_cm", "start_z_cm"])
    truth = np.stack([t["dir_x"], t["dir_y"], t["dir_z"]], 1)
    start = np.stack([t["start_x_cm"], t["start_y_cm"], t["start_z_cm"]], 1)
    cfg, scan = nonml.tune(offsets, coords, values, truth, min_efficiency=min_efficiency)
    be = best_expected.tune_epsilon(offsets, coords, values, start, truth)
    result = {"events": str(events), "nonml": cfg.to_dict(),
              "nonml_params": f"{cfg.r_min:g},{cfg.r_max:g},{cfg.w0_cm:g}",
              "epsilon_cm": be["epsilon_cm"], "nonml_scan": scan, "epsilon_scan": be["scan"]}
    tmp = Path(out).with_name(f".{Path(out).name}.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out)
    click.echo(json.dumps({k: result[k] for k in ("nonml_params", "epsilon_cm")}))


@tpc.command()
@click.argument("events", type=click.Path())
@out_option("Directory for evaluation.json and the plots.")
@click.option("--min-count", type=int, default=200, show_default=True,
              help="Calibration bins with fewer events are shown but not checked.")
@click.option("--bins", "n_bins", type=click.IntRange(min=1), default=12, show_default=True,
              help="About this many calibration bins in kappa.")
@click.option("--binning", type=click.Choice(["width", "count"]), default="width",
              show_default=True, help="Calibration bins of equal width or of equal counts.")
@click.option("--null-draws", type=click.IntRange(min=0), default=200, show_default=True,
              help="Draws from the predicted distributions that measure the calibration "
                   "test's own noise (0: skip).")
def evaluate(events, out, min_count, n_bins, binning, null_draws):
    """Score every reconstruction of EVENTS against the truth, side by side."""
    from astroreco.detectors.tpc.evaluate import evaluate as run, table

    click.echo(table(run(events, out, min_count=min_count, n_bins=n_bins,
                         binning=binning, null_draws=null_draws)))


@tpc.command()
@out_option("Directory for the arrows, the trained models and the evaluation.")
@click.option("--epochs", type=int, default=30, show_default=True,
              help="Maximum epochs (early stopping with patience 2 ends it).")
@click.option("--n-train", type=int, default=4000, show_default=True)
@click.option("--n-val", type=int, default=1000, show_default=True)
@click.option("--n-test", type=int, default=1000, show_default=True)
@click.option("--backend", type=click.Choice(["auto", "spconv", "torch"]), default="auto",
              show_default=True, help="Sparse convolution backend.")
@seed_option()
@quiet_option()
def arrows(out, epochs, n_train, n_val, n_test, backend, seed, quiet):
    """The 3D-arrows tutorial: generate arrows, train RCN and HCN, score the test arrows."""
    from astroreco.detectors.tpc.tutorial import run

    summary = run(out, epochs=epochs, n_train=n_train, n_val=n_val, n_test=n_test,
                  backend=backend, seed=seed, progress=not quiet)
    click.echo(summary.pop("table"))
    click.echo(json.dumps({k: summary[k] for k in ("cos_dist", "training")}))


@tpc.command()
@click.argument("model_dir", type=click.Path())
@click.argument("events", type=click.Path(), nargs=-1, required=True)
@click.option("--method", type=click.Choice(["mlp", "linear"]), default="mlp",
              show_default=True,
              help="mlp: small networks on the passes' agreement and the track shape; "
                   "linear: log kappa per bin of measured energy with the voxel density.")
@click.option("--n-events", type=int, default=None, help="Use the first N events of each file.")
@click.option("--energy-bins", type=click.IntRange(min=1), default=3, show_default=True,
              help="linear: bins of measured energy, each with its own kappa map.")
@click.option("--no-features", is_flag=True,
              help="linear: kappa -> s kappa^b per energy bin only, without the voxel density.")
@click.option("--members", type=click.IntRange(min=1), default=5, show_default=True,
              help="mlp: networks in the ensemble.")
@click.option("--balance", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="mlp: weigh events by the inverse density of the network's log kappa "
                   "to this power (0: all alike), so that the rare low-kappa tail counts "
                   "for more.")
@seed_option()
@device_option()
@quiet_option()
def calibrate(model_dir, events, method, n_events, energy_bins, no_features, members,
              balance, seed, device, quiet):
    """Fit the kappa map of MODEL_DIR on validation EVENTS (one or more files never used
    for training or testing) and store it in the model's config.json."""
    from astroreco.detectors.tpc.calibrate import calibrate_kappa

    features = () if no_features and method == "linear" else None
    result = calibrate_kappa(
        model_dir, list(events), method=method, n_events=n_events, device=device,
        energy_bins=energy_bins, features=features, members=members, seed=seed,
        balance=balance, progress=not quiet)
    # the networks' weights are in config.json; the summary names what was fitted
    cal = result["kappa_calibration"]
    if cal.get("kind") == "mlp":
        result["kappa_calibration"] = {k: cal[k] for k in ("kind", "features", "hidden",
                                                           "depth", "fit")}
    click.echo(json.dumps(result))
