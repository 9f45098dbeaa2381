"""``astroreco sky simulate|export|detect|detect-patches``.

``detect`` reads a Fermi-style counts cube (FITS) and writes a source catalog (FITS) and DS9
regions; ``detect-patches`` runs the same classical detection on every patch of a patch file
(HDF5) and stores the detections in it, under ``/reco/NAME``.
"""

from __future__ import annotations

import json

import click

from astroreco.cli.options import out_option, overwrite_option, quiet_option, seed_option

_METHOD_HELP = "sep, photutils or peaks (nn: not available yet)."


@click.group()
def sky():
    """Gamma-ray sky maps (Fermi-LAT / CTA-like counts cubes) -> point-source catalogs."""


@sky.command()
@out_option("Patch file to write (HDF5).")
@click.option("--n-patches", "-n", type=int, required=True, help="Sky patches to simulate.")
@click.option("--preset", default="fermi", show_default=True,
              help="fermi (64 x 64 pixels of 0.156 deg, 6 bins 0.3 GeV-1 TeV, all sky) or cta "
                   "(128 x 128 of 0.04 deg, 5 bins 30 GeV-100 TeV, Galactic plane).")
@click.option("--iem", default="A", show_default=True,
              help="Interstellar emission model: A or B (train on one, test on the other).")
@click.option("--mode", default="poisson", show_default=True,
              help="poisson (counts) or asimov (the expected maps).")
@click.option("--time-bins", type=int, default=0, show_default=True,
              help="0: no time axis; T: T time bins (variable AGN light curves), stored as "
                   "/events/time_counts.")
@click.option("--chunk-size", type=int, default=128, show_default=True,
              help="Patches per write (does not change the patches).")
@seed_option()
@overwrite_option()
@quiet_option()
def simulate(out, n_patches, preset, iem, mode, time_bins, chunk_size, seed, overwrite, quiet):
    """Simulate sky patches: sources (AGN, pulsars), diffuse background, PSF, counts."""
    from astroreco.detectors.sky.pipeline import simulate as run

    click.echo(json.dumps(run(out, n_patches=n_patches, preset=preset, iem=iem, mode=mode,
                              n_time_bins=time_bins, seed=seed, chunk_size=chunk_size,
                              overwrite=overwrite, progress=not quiet)))


@sky.command()
@click.argument("patches", type=click.Path())
@click.option("--index", "-i", type=int, required=True, help="Patch (row) to export.")
@out_option("Counts cube to write (FITS: PRIMARY, EBOUNDS, EXPOSURE).")
@click.option("--background-out", type=click.Path(), default=None,
              help="Also write the patch's background model (expected counts) here.")
@overwrite_option()
def export(patches, index, out, background_out, overwrite):
    """Write one patch of PATCHES as a Fermi-style counts cube (+ background cube)."""
    from astroreco.detectors.sky.pipeline import export_cube

    click.echo(json.dumps(export_cube(patches, index, out, background_out,
                                      overwrite=overwrite)))


@sky.command()
@click.argument("cube", type=click.Path())
@click.option("--background", type=click.Path(), default=None,
              help="Background-model cube (expected counts; same shape, WCS, EBOUNDS): "
                   "required by the classical methods.")
@click.option("--method", default="sep", show_default=True, help=_METHOD_HELP)
@click.option("--threshold", type=float, default=5.0, show_default=True,
              help="Detection threshold on the significance map (sigma).")
@click.option("--psf", default="fermi", show_default=True,
              help="PSF model of the kernels: fermi or cta.")
@out_option("Source catalog to write (FITS).")
@click.option("--regions", type=click.Path(), default=None,
              help="Also write the sources as DS9 regions (galactic).")
@overwrite_option()
def detect(cube, background, method, threshold, psf, out, regions, overwrite):
    """Detect point sources in a counts CUBE (FITS); print a JSON summary."""
    from astroreco.detectors.sky.pipeline import detect_cube

    click.echo(json.dumps(detect_cube(cube, background=background, method=method,
                                      threshold=threshold, psf=psf, out_catalog=out,
                                      out_regions=regions, overwrite=overwrite)))


@sky.command("detect-patches")
@click.argument("patches", type=click.Path())
@click.option("--method", default="sep", show_default=True, help=_METHOD_HELP)
@click.option("--threshold", type=float, default=5.0, show_default=True,
              help="Detection threshold on the significance map (sigma).")
@click.option("--name", default=None, help="Name under /reco (default: the method).")
@quiet_option()
def detect_patches(patches, method, threshold, name, quiet):
    """Detect point sources in every patch of PATCHES (HDF5), stored under /reco/NAME."""
    from astroreco.detectors.sky.pipeline import detect_classical

    click.echo(json.dumps(detect_classical(patches, method=method, threshold=threshold,
                                           name=name, progress=not quiet)))
