"""``astroreco tpc simulate``."""

from __future__ import annotations

import json

import click

from astroreco.cli.options import out_option, overwrite_option, quiet_option, seed_option


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
