"""``astroreco ixpe simulate|reconstruct|evaluate|info``."""

from __future__ import annotations

import json

import click

from astroreco.cli.options import (out_option, overwrite_option, quiet_option, seed_option,
                                   workers_option)


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
@click.option("--method", default="moments", show_default=True,
              help="Reconstruction method: moments.")
@click.option("--fits", type=click.Path(), default=None,
              help="Also write an IXPE Level-2 FITS event file (for ixpeobssim xpbin).")
@overwrite_option()
@quiet_option()
def reconstruct(events, method, fits, overwrite, quiet):
    """Reconstruct EVENTS; results go under /reco/METHOD in the same file."""
    from astroreco.detectors.ixpe.pipeline import reconstruct as run

    click.echo(json.dumps(run(events, method=method, fits=fits, overwrite=overwrite,
                              progress=not quiet)))


@ixpe.command()
@click.argument("events", nargs=-1, required=True, type=click.Path())
@out_option("Directory for metrics.json, plots and report.html.")
@click.option("--method", "methods", multiple=True,
              help="Method(s) to score (default: every stored one).")
def evaluate(events, out, methods):
    """Score the reconstructions of EVENTS against the truth, side by side."""
    from astroreco.detectors.ixpe.evaluate import evaluate as run

    metrics = run(list(events), out_dir=out, methods=list(methods) or None)
    click.echo(f"{len(metrics['rows'])} rows -> {out}/metrics.json, {out}/report.html")


@ixpe.command()
@click.argument("events", type=click.Path())
def info(events):
    """Print what an event file holds."""
    from astroreco.detectors.ixpe.pipeline import describe

    click.echo(describe(events))
