"""``astroreco ecal simulate|scurve|intercalibrate|train|reconstruct|evaluate``."""

from __future__ import annotations

import json

import click

from astroreco.cli.options import (device_option, out_option, overwrite_option, quiet_option,
                                   seed_option)


@click.group()
def ecal():
    """AMS-02-like sampling calorimeter: 18 x 72 shower images -> inclination and incident
    point."""


@ecal.command()
@out_option("Event file to write (HDF5).")
@click.option("--n-events", "-n", type=int, required=True,
              help="Showers to simulate (those failing the fiducial cut are not stored).")
@click.option("--energy", default="2.5:4000", show_default=True,
              help="GeV: '10' (fixed) or '2.5:4000' (drawn from E^-1).")
@click.option("--theta", default="155:180", show_default=True,
              help="Polar angle in degrees (180: vertically down): '180' or '155:180'.")
@click.option("--particle", type=click.Choice(["e-", "e+", "gamma"]), default="e-",
              show_default=True)
@click.option("--variant", is_flag=True,
              help="The detector variant (miscalibrated and dead cells, more noise): the "
                   "stand-in for the sim-to-real gap.")
@click.option("--chunk-size", type=int, default=20_000, show_default=True,
              help="Showers per write (does not change the showers).")
@seed_option()
@overwrite_option()
@quiet_option()
def simulate(out, n_events, energy, theta, particle, variant, chunk_size, seed, overwrite,
             quiet):
    """Simulate electromagnetic showers (GFlash profiles, sampling fluctuations, noise)."""
    from astroreco.detectors.ecal.pipeline import simulate as run

    click.echo(json.dumps(run(out, n_events=n_events, energy=energy, theta=theta,
                              particle=particle, variant=variant, seed=seed,
                              chunk_size=chunk_size, overwrite=overwrite,
                              progress=not quiet)))


@ecal.command()
@out_option("S-curve table to write (JSON).")
@click.option("--n-events", "-n", type=int, default=100_000, show_default=True)
@seed_option(default=7)
@overwrite_option()
@quiet_option()
def scurve(out, n_events, seed, overwrite, quiet):
    """Derive the neighbour-cell-ratio S-curve table from simulated electrons."""
    from astroreco.detectors.ecal.pipeline import make_scurve

    click.echo(json.dumps(make_scurve(out, n_events=n_events, seed=seed, overwrite=overwrite,
                                      progress=not quiet)))


@ecal.command()
@click.argument("events", type=click.Path())
@click.option("--method", type=click.Choice(["cog", "cell_ratio", "nn"]), default="cog",
              show_default=True)
@click.option("--name", default=None, help="Name under /reco (default: the method).")
@click.option("--model", type=click.Path(), default=None,
              help="nn: model directory (default: the shipped models/ecal).")
@click.option("--scurve", type=click.Path(), default=None,
              help="cell_ratio: S-curve table (default: the shipped one).")
@click.option("--calibration", type=click.Path(), default=None,
              help="Cell gains and dead cells from 'astroreco ecal intercalibrate', applied "
                   "to the images first.")
@device_option()
@quiet_option()
def reconstruct(events, method, name, model, scurve, calibration, device, quiet):
    """Reconstruct the shower axis of every event in EVENTS (stored under /reco/NAME)."""
    from astroreco.detectors.ecal.pipeline import reconstruct as run

    click.echo(json.dumps(run(events, method=method, name=name, model=model, scurve=scurve,
                              calibration=calibration, device=device, progress=not quiet)))


@ecal.command()
@click.argument("data", type=click.Path())
@click.option("--reference", type=click.Path(), required=True,
              help="Simulated showers of the same particles, spectrum and angles, with the "
                   "calibration the reconstructions assume (astroreco ecal simulate).")
@out_option("Cell calibration to write (JSON).")
@click.option("--min-energy", type=float, default=20.0, show_default=True,
              help="GeV: only showers depositing more are averaged.")
@overwrite_option()
@quiet_option()
def intercalibrate(data, reference, out, min_energy, overwrite, quiet):
    """Measure every cell's gain and find the dead cells from the showers in DATA, against
    a simulated REFERENCE (mean fraction of the shower energy per cell)."""
    from astroreco.detectors.ecal.calibration import intercalibrate as run
    from astroreco.io.store import check_output_path

    check_output_path(out, overwrite)  # before a million showers are read, not after
    cal = run(data, reference, min_energy_gev=min_energy, progress=not quiet)
    cal.save(out, overwrite=overwrite)
    click.echo(json.dumps({"file": str(out), **cal.summary()}))


@ecal.command()
@click.argument("events", type=click.Path())
@out_option("Directory for evaluation.json and the plots.")
def evaluate(events, out):
    """Resolution and linearity vs energy of every reconstruction of EVENTS, side by side."""
    from astroreco.detectors.ecal.evaluate import evaluate as run, table

    click.echo(table(run(events, out)))


@ecal.command()
@click.argument("events", type=click.Path())
@out_option("Run directory: checkpoints, logs and the trained model in OUT/model.")
@click.option("--task", type=click.Choice(["multitask", "angle", "position"]),
              default="multitask", show_default=True,
              help="angle / position: the seed's networks (resolution-weighted loss); "
                   "multitask: both, with Gaussian uncertainties.")
@click.option("--scale", type=click.Choice(["cpu", "paper"]), default="cpu", show_default=True,
              help="cpu: base width 8; paper: the ResNet-18 widths and the seed's Adam "
                   "1e-3, batch 128, 80 epochs (a GPU job).")
@click.option("--width", type=int, default=None,
              help="Backbone base width [cpu: 8; paper: 64 (ResNet-18)].")
@click.option("--crop-cells", type=int, default=None,
              help="Cells per layer kept around the centre-of-gravity axis, the network "
                   "predicting corrections to it; 0: the full 18 x 72 image and absolute "
                   "targets, as the seed [cpu: 16; paper: 0].")
@click.option("--detector-augment", type=(float, float, float), default=None,
              metavar="GAIN DEAD NOISE_MEV",
              help="Training augmentation against the gap between simulation and detector: "
                   "per-event random cell gain spread, dead-cell fraction and noise (MeV), "
                   "e.g. 0.05 0.01 2 [off].")
@click.option("--nll-beta", type=float, default=None,
              help="multitask: beta of the beta-NLL loss, 0 (plain NLL) to 1 [1].")
@click.option("--val-events", type=click.Path(), default=None,
              help="Separate validation file (needed for --iterations > 1).")
@click.option("--iterations", type=int, default=1, show_default=True,
              help="angle/position: rounds of training and refitting sigma(E).")
@click.option("--epochs", type=int, default=None, help="[cpu: 8; paper: 80]")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--max-steps-per-epoch", type=int, default=None)
@click.option("--init", "init", type=click.Path(), default=None,
              help="Start from this trained ECAL model (same task and network).")
@device_option()
@seed_option()
@overwrite_option()
@quiet_option()
def train(events, out, task, scale, width, crop_cells, detector_augment, nll_beta, val_events,
          iterations, epochs, batch_size, lr, max_steps_per_epoch, init, device, seed,
          overwrite, quiet):
    """Train a ResNet on simulated EVENTS (with truth)."""
    import sys

    from astroreco.detectors.ecal.neural import EcalNetConfig
    from astroreco.detectors.ecal.train import train as run
    from astroreco.training import OptimConfig, TrainConfig

    kw = {} if crop_cells is None else {"crop_cells": crop_cells}
    if detector_augment is not None:
        kw.update(zip(("aug_gain_spread", "aug_dead_fraction", "aug_noise_mev"),
                      detector_augment))
    if nll_beta is not None:
        kw["nll_beta"] = nll_beta
    net = EcalNetConfig.paper(task, **kw) if scale == "paper" else \
        EcalNetConfig(task=task, **kw)
    if width is not None:
        net.width = width
    config = TrainConfig(max_epochs=epochs or (80 if scale == "paper" else 8),
                         batch_size=batch_size, seed=seed, progress=not quiet,
                         accelerator="gpu" if device.startswith("cuda") else "cpu",
                         max_steps_per_epoch=max_steps_per_epoch,
                         optim=OptimConfig(lr=lr))
    summary = run(events, out, net=net, config=config, val_events=val_events,
                  iterations=iterations, init=init, overwrite=overwrite,
                  command="astroreco ecal train " + " ".join(sys.argv[3:]))
    click.echo(json.dumps({k: v for k, v in summary.items() if k != "iterations"}))
