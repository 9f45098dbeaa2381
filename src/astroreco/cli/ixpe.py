"""``astroreco ixpe simulate|train|reconstruct|spurious|evaluate|info``."""

from __future__ import annotations

import json

import click

from astroreco.cli.options import (device_option, out_option, overwrite_option, quiet_option,
                                   seed_option, workers_option)


@click.group()
def ixpe():
    """IXPE Gas Pixel Detector: photoelectron tracks -> emission angle and impact point."""


@ixpe.command()
@out_option("Event file to write (HDF5).")
@click.option("--n-events", "-n", type=int, required=True, help="Photons to simulate.")
@click.option("--energy", default="4", show_default=True,
              help="Photon energy in keV: '4' (a line) or '2:8' (uniform).")
@click.option("--polarization-degree", "--pd", type=float, default=0.0, show_default=True,
              help="Polarization degree in [0, 1].")
@click.option("--polarization-angle", "--pa", type=float, default=0.0, show_default=True,
              help="Polarization angle (deg), counter-clockwise from the detector x axis.")
@click.option("--spot-radius", type=float, default=1.0, show_default=True,
              help="Radius (mm) of the uniformly illuminated beam spot.")
@click.option("--chunk-size", type=int, default=50_000, show_default=True,
              help="Events per shard (does not change the events).")
@click.option("--scheduler", default=None, help="Address of a dask scheduler (a cluster).")
@seed_option()
@workers_option()
@overwrite_option()
@quiet_option()
def simulate(out, n_events, energy, polarization_degree, polarization_angle, spot_radius,
             chunk_size, scheduler, seed, workers, overwrite, quiet):
    """Simulate photoelectron tracks (physics to pixels) into an HDF5 event file."""
    from astroreco.detectors.ixpe.pipeline import simulate as run

    summary = run(out, n_events=n_events, energy=energy,
                  polarization_degree=polarization_degree,
                  polarization_angle_deg=polarization_angle, seed=seed,
                  spot_radius_mm=spot_radius, workers=workers, scheduler=scheduler,
                  chunk_size=chunk_size, overwrite=overwrite, progress=not quiet)
    click.echo(json.dumps(summary))


@ixpe.command()
@click.argument("events", type=click.Path())
@out_option("Run directory: checkpoints, logs and the trained model in OUT/model.")
@click.option("--architecture", default="multitask", show_default=True,
              type=click.Choice(["multitask", "vgg_multihead", "vgg16_multihead",
                                 "resnet34_impact"]),
              help="multitask: angle+kappa, impact point, energy; vgg*: the seed's M-head "
                   "angle ensemble (CPU / paper scale); resnet34_impact: the seed's impact "
                   "model.")
@click.option("--representation", default="hexagonal", show_default=True,
              type=click.Choice(["hexagonal", "cartesian"]),
              help="Tracks on the hexagonal lattice (axial) or resampled to squares (2x).")
@click.option("--image-size", type=int, default=24, show_default=True,
              help="Crop side in hexagonal pixels.")
@click.option("--widths", default="16,32,64", show_default=True,
              help="Channel widths of the compact backbone.")
@click.option("--stem", type=int, default=1, show_default=True,
              help="Full-resolution conv blocks of the compact backbone (cost grows fast).")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True, help="Peak learning rate.")
@click.option("--patience", type=int, default=3, show_default=True,
              help="Early stopping on the validation loss.")
@click.option("--val-fraction", type=float, default=0.05, show_default=True,
              help="Last fraction of EVENTS kept for validation.")
@click.option("--max-steps-per-epoch", type=int, default=None,
              help="Cap the optimiser steps per epoch (quick runs).")
@click.option("--devices", type=int, default=1, show_default=True,
              help="Processes (CPU) or GPUs; > 1 trains with DDP.")
@click.option("--tta", type=click.Choice(["1", "2", "3", "6", "12"]), default="3",
              show_default=True, help="Lattice symmetries averaged at inference.")
@click.option("--pretrained", type=click.Path(), default=None,
              help="resnet34_impact: torchvision-format ResNet-34 weights on disk (e.g. "
                   "ImageNet) to start from; only the last layer is trained unless "
                   "--fine-tune all.")
@click.option("--fine-tune", type=click.Choice(["last", "all"]), default="last",
              show_default=True, help="With --pretrained: which layers train.")
@click.option("--angle-loss", type=click.Choice(["nll", "cosine"]), default="nll",
              show_default=True,
              help="multitask: what trains the mean emission angle: the von Mises NLL, or "
                   "the cosine loss (every event alike; kappa still from the NLL).")
@click.option("--init", "init", type=click.Path(), default=None,
              help="Start from this trained model directory (fine-tuning); the network "
                   "(architecture, crop, widths, tta) is the model's.")
@click.option("--resume", is_flag=True, help="Continue the run in OUT from its last epoch.")
@device_option()
@seed_option()
@overwrite_option()
@quiet_option()
@click.pass_context
def train(ctx, events, out, architecture, representation, image_size, widths, stem, epochs,
          batch_size, lr, patience, val_fraction, max_steps_per_epoch, devices, tta, pretrained,
          fine_tune, angle_loss, init, resume, device, seed, overwrite, quiet):
    """Train a network on simulated EVENTS (with truth)."""
    import sys

    from astroreco.detectors.ixpe.images import ImageConfig
    from astroreco.detectors.ixpe.neural import IxpeNetConfig
    from astroreco.detectors.ixpe.train import train as run
    from astroreco.errors import InputError
    from astroreco.training import OptimConfig, TrainConfig

    if init is not None:
        from click.core import ParameterSource

        from astroreco.io.modeldir import read_model_config

        given = [f"--{name.replace('_', '-')}" for name in
                 ("architecture", "representation", "image_size", "widths", "stem", "tta",
                  "pretrained") if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
        if given:
            raise InputError(f"--init {init}: the network is the model's; drop {', '.join(given)}")
        net = IxpeNetConfig(**{**read_model_config(init, "ixpe")["network"],
                               "angle_loss": angle_loss})
    else:
        try:
            widths = tuple(int(w) for w in widths.split(","))
        except ValueError:
            raise InputError(f"--widths {widths!r}: expected comma-separated integers") from None
        net = IxpeNetConfig(architecture=architecture, widths=widths, stem=stem, tta=int(tta),
                            pretrained=pretrained, fine_tune=fine_tune, angle_loss=angle_loss,
                            image=ImageConfig(representation=representation, size=image_size))
    config = TrainConfig(max_epochs=epochs, batch_size=batch_size, patience=patience,
                         seed=seed, accelerator="gpu" if device.startswith("cuda") else "cpu",
                         devices=devices, progress=not quiet,
                         max_steps_per_epoch=max_steps_per_epoch, optim=OptimConfig(lr=lr))
    summary = run(events, out, net=net, config=config, val_fraction=val_fraction,
                  resume=resume, overwrite=overwrite, init=init,
                  command="astroreco ixpe train " + " ".join(sys.argv[3:]))
    click.echo(json.dumps(summary))


@ixpe.command()
@click.argument("events", type=click.Path())
@click.option("--method", default="moments", show_default=True,
              help="Reconstruction method: moments or nn (the neural network).")
@click.option("--model", "model_dir", type=click.Path(), default=None,
              help="Model directory for --method nn (default: the shipped model).")
@click.option("--tta", type=click.Choice(["1", "2", "3", "6", "12"]), default=None,
              help="Lattice symmetries averaged (default: the model's setting).")
@click.option("--fits", type=click.Path(), default=None,
              help="Also write an IXPE Level-2 FITS event file (for ixpeobssim xpbin).")
@click.option("--spurious", type=click.Path(), default=None,
              help="With --fits: subtract this spurious-modulation calibration of METHOD "
                   "('astroreco ixpe spurious') from the Level-2 Q and U.")
@device_option()
@overwrite_option()
@quiet_option()
def reconstruct(events, method, model_dir, tta, fits, spurious, device, overwrite, quiet):
    """Reconstruct EVENTS; results go under /reco/METHOD in the same file."""
    from astroreco.detectors.ixpe.pipeline import reconstruct as run

    click.echo(json.dumps(run(events, method=method, model=model_dir,
                              tta=None if tta is None else int(tta), device=device,
                              fits=fits, spurious=spurious, overwrite=overwrite,
                              progress=not quiet)))


@ixpe.command("spurious")
@click.argument("events", type=click.Path())
@out_option("Calibration file to write (JSON).")
@click.option("--method", default="moments", show_default=True,
              help="Reconstruction the calibration is for.")
def spurious_cmd(events, out, method):
    """Measure the spurious modulation of METHOD on unpolarized EVENTS (calibration)."""
    from astroreco.detectors.ixpe.spurious import measure_from_file

    cal = measure_from_file(events, method=method, out=out)
    click.echo(json.dumps({"file": out, **cal.to_dict()}))


@ixpe.command()
@click.argument("events", nargs=-1, required=True, type=click.Path())
@out_option("Directory for metrics.json, plots and report.html.")
@click.option("--method", "methods", multiple=True,
              help="Method(s) to score (default: every stored one).")
@click.option("--spurious", "spurious_files", multiple=True, type=click.Path(),
              help="Spurious-modulation calibration(s) from 'astroreco ixpe spurious' "
                   "(one per method), measured on other unpolarized events.")
def evaluate(events, out, methods, spurious_files):
    """Score the reconstructions of EVENTS against the truth, side by side."""
    from astroreco.detectors.ixpe.evaluate import evaluate as run
    from astroreco.detectors.ixpe.spurious import SpuriousCalibration

    cals = [SpuriousCalibration.load(f) for f in spurious_files]
    metrics = run(list(events), out_dir=out, methods=list(methods) or None,
                  spurious={c.method: c for c in cals} or None)
    click.echo(f"{len(metrics['rows'])} rows -> {out}/metrics.json, {out}/report.html")


@ixpe.command()
@click.argument("events", type=click.Path())
def info(events):
    """Print what an event file holds."""
    from astroreco.detectors.ixpe.pipeline import describe

    click.echo(describe(events))
