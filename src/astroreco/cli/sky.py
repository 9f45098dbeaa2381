"""``astroreco sky simulate|export|train|detect|detect-patches``.

``detect`` reads a Fermi-style counts cube (FITS) and writes a source catalog (FITS) and DS9
regions; ``detect-patches`` runs the same detection on every patch of a patch file (HDF5)
and stores the detections in it, under ``/reco/NAME``; ``train`` trains the neural detector
(the U-Net) on a patch file.
"""

from __future__ import annotations

import json

import click

from astroreco.cli.options import (device_option, out_option, overwrite_option, quiet_option,
                                   seed_option)

_METHOD_HELP = ("sep, photutils or peaks (classical, with the background model) or nn (the "
                "neural detector, counts only).")
_THRESHOLD_HELP = ("Classical: significance in sigma [5]; nn: probability threshold of the "
                   "centre finder [the model's].")
_MODEL_HELP = "nn: model directory [the shipped detector, models/sky/detector]."


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
    from astroreco.detectors.sky.cubes import export_cube

    click.echo(json.dumps(export_cube(patches, index, out, background_out,
                                      overwrite=overwrite)))


@sky.command()
@click.argument("cube", type=click.Path())
@click.option("--background", type=click.Path(), default=None,
              help="Background-model cube (expected counts; same shape, WCS, EBOUNDS): "
                   "required by the classical methods.")
@click.option("--method", default="sep", show_default=True, help=_METHOD_HELP)
@click.option("--threshold", type=float, default=None, help=_THRESHOLD_HELP)
@click.option("--psf", default="fermi", show_default=True,
              help="Classical: PSF model of the kernels, fermi or cta.")
@click.option("--model", type=click.Path(), default=None, help=_MODEL_HELP)
@click.option("--refiner", type=click.Path(), default=None,
              help="nn: position/flux ensemble (model directory): position errors and "
                   "fluxes in the catalog (needs --background).")
@click.option("--extension-model", type=click.Path(), default=None,
              help="nn: extension classifier (model directory; needs --background).")
@click.option("--no-background-refit", is_flag=True,
              help="nn: give the per-source networks the background cube as it is, not "
                   "renormalised to the counts away from the detections.")
@out_option("Source catalog to write (FITS).")
@click.option("--regions", type=click.Path(), default=None,
              help="Also write the sources as DS9 regions (galactic).")
@overwrite_option()
def detect(cube, background, method, threshold, psf, model, refiner, extension_model,
           no_background_refit, out, regions, overwrite):
    """Detect point sources in a counts CUBE (FITS); print a JSON summary."""
    from astroreco.detectors.sky.cubes import detect_cube

    click.echo(json.dumps(detect_cube(cube, background=background, method=method,
                                      threshold=threshold, psf=psf, model=model,
                                      refiner=refiner, extension=extension_model,
                                      refit_background=not no_background_refit,
                                      out_catalog=out, out_regions=regions,
                                      overwrite=overwrite)))


@sky.command("detect-patches")
@click.argument("patches", type=click.Path())
@click.option("--method", default="sep", show_default=True, help=_METHOD_HELP)
@click.option("--threshold", type=float, default=None, help=_THRESHOLD_HELP)
@click.option("--model", type=click.Path(), default=None, help=_MODEL_HELP)
@click.option("--centres", type=click.Choice(["log", "kmeans"]), default=None,
              help="nn: centres from the probability map by Laplacian of Gaussian or "
                   "k-means [the model's].")
@click.option("--refiner", type=click.Path(), default=None,
              help="nn: position/flux ensemble (model directory, e.g. models/sky/refine): "
                   "refined positions with errors, fluxes.")
@click.option("--extension-model", type=click.Path(), default=None,
              help="nn: extension classifier (model directory).")
@click.option("--class-model", type=click.Path(), default=None,
              help="nn: AGN/pulsar classifier (model directory, e.g. models/sky/class; "
                   "patches simulated with --time-bins).")
@click.option("--background-model", type=click.Path(), default=None,
              help="Take the background model from this patch file of the same patches "
                   "(e.g. simulated with the same seed and the other --iem) instead of the "
                   "true one (classical methods; the per-source networks of nn).")
@click.option("--no-background-refit", is_flag=True,
              help="nn: give the per-source networks the background model as it is, not "
                   "renormalised on each patch to the counts away from the detections.")
@click.option("--name", default=None, help="Name under /reco (default: the method).")
@quiet_option()
def detect_patches(patches, method, threshold, model, centres, refiner, extension_model,
                   class_model, background_model, no_background_refit, name, quiet):
    """Detect point sources in every patch of PATCHES (HDF5), stored under /reco/NAME."""
    from astroreco.detectors.sky.pipeline import detect_classical, detect_neural

    if method == "nn":
        result = detect_neural(patches, model=model, name=name or "nn", centres=centres,
                               threshold=threshold, refiner=refiner,
                               extension=extension_model, source_class=class_model,
                               background_model=background_model,
                               refit_background=not no_background_refit,
                               progress=not quiet)
    else:
        result = detect_classical(patches, method=method,
                                  threshold=5.0 if threshold is None else threshold,
                                  name=name, background_model=background_model,
                                  progress=not quiet)
    click.echo(json.dumps(result))


@sky.command("refit-background")
@click.argument("patches", type=click.Path())
@out_option("Patch file to write (a copy with the refitted background model).")
@click.option("--min-flux", type=float, default=1e-10, show_default=True,
              help="True sources of at least this S(1-100 GeV) are masked, standing in for "
                   "the detections.")
@overwrite_option()
@quiet_option()
def refit_background_cmd(patches, out, min_flux, overwrite, quiet):
    """Copy PATCHES with the background model refitted as the detection chain refits it:
    training data for per-source networks that see refitted backgrounds."""
    from astroreco.detectors.sky.background import refit_patch_file

    click.echo(json.dumps(refit_patch_file(patches, out, min_flux=min_flux,
                                           overwrite=overwrite, progress=not quiet)))


@sky.command("calibrate-flux-errors")
@click.argument("refiner_dir", type=click.Path())
@click.argument("patches", type=click.Path())
@click.option("--model", default=None, type=click.Path(),
              help="Detector model directory [the shipped one].")
@click.option("--background-model", type=click.Path(), default=None,
              help="Patch file whose background is the analyst's model [the stored one].")
@click.option("--bins", "n_bins", type=click.IntRange(min=1), default=10, show_default=True,
              help="Bins of equal counts in the detected flux.")
@quiet_option()
def calibrate_flux_errors_cmd(refiner_dir, patches, model, background_model, n_bins, quiet):
    """Scale the flux errors of the ensemble REFINER_DIR so that they hold for detected
    sources: run the chain on validation PATCHES (with truth, never used for training or
    testing), and store the pull width per bin of detected flux in its config.json."""
    from astroreco.detectors.sky.flux_errors import calibrate_flux_errors

    click.echo(json.dumps(calibrate_flux_errors(refiner_dir, patches, model=model,
                                                background_model=background_model,
                                                n_bins=n_bins, progress=not quiet)))


@sky.command()
@click.argument("patches", type=click.Path())
@out_option("Run directory: checkpoints, logs and the trained model in OUT/model.")
@click.option("--val-patches", type=click.Path(), default=None,
              help="Separate validation file [the last 10% of PATCHES].")
@click.option("--task", type=click.Choice(["detect", "refine", "extension", "class"]),
              default="detect", show_default=True,
              help="detect: the U-Net source detector; refine: the deep ensemble of position "
                   "and flux from cut-outs; extension: C0/C1/C2 classifier; class: AGN vs "
                   "pulsar (needs patches simulated with --time-bins).")
@click.option("--members", type=int, default=5, show_default=True,
              help="refine: ensemble members (the seed used 15).")
@click.option("--scale", type=click.Choice(["cpu", "paper"]), default="cpu", show_default=True,
              help="cpu: ~124k parameters (branch width 4, U-Net width 8, depth 3); paper: "
                   "31M (16, 64, 4), a GPU job.")
@click.option("--label-min-flux", type=float, default=1e-10, show_default=True,
              help="Sources fainter than this S(1-100 GeV) (ph cm-2 s-1) are not labelled "
                   "(per-source tasks: not trained on).")
@click.option("--cutout-size", type=int, default=None,
              help="Per-source tasks: cut-out width in pixels [16; the shipped CTA-like "
                   "extension classifier: 32].")
@click.option("--class-weights", default=None,
              help="extension, class: cross-entropy weight per class, comma-separated "
                   "(e.g. 1,1,1) [inverse class frequencies of the training sources].")
@click.option("--dihedral", is_flag=True,
              help="extension, class: train on the 8 symmetric views of the cut-outs (one "
                   "drawn per source and epoch) and average the probabilities over them "
                   "when predicting.")
@click.option("--mask-radius", type=float, default=1.5, show_default=True,
              help="Radius of the labelled disc around a source (pixels).")
@click.option("--centres", type=click.Choice(["log", "kmeans"]), default="log",
              show_default=True, help="Default centre finder stored with the model.")
@click.option("--threshold", type=float, default=0.3, show_default=True,
              help="Default probability threshold of the centre finder.")
@click.option("--epochs", type=int, default=None, help="[cpu: 10; paper: 50]")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--patience", type=int, default=3, show_default=True)
@click.option("--max-steps-per-epoch", type=int, default=None)
@click.option("--threads", type=int, default=None, help="torch CPU threads [torch's default].")
@click.option("--init", "init", type=click.Path(), default=None,
              help="Start from this trained sky detector (same network).")
@device_option()
@seed_option()
@overwrite_option()
@quiet_option()
def train(patches, out, val_patches, task, members, scale, label_min_flux, cutout_size,
          class_weights, dihedral, mask_radius, centres, threshold, epochs, batch_size, lr,
          patience, max_steps_per_epoch, threads, init, device, seed, overwrite, quiet):
    """Train a sky network on simulated PATCHES (with truth): the U-Net source detector or
    a per-source network (--task)."""
    import sys

    from astroreco.detectors.sky.neural import SkyNetConfig
    from astroreco.detectors.sky.pipeline import geometry_of
    from astroreco.detectors.sky.train import train as run
    from astroreco.errors import InputError
    from astroreco.training import OptimConfig, TrainConfig

    command = "astroreco sky train " + " ".join(sys.argv[3:])
    for flag, given in (("--dihedral", dihedral), ("--class-weights", class_weights)):
        if given and task not in ("extension", "class"):
            raise InputError(f"{flag}: for the classifiers (--task extension or class), "
                             f"not --task {task}")
    if cutout_size is not None and task == "detect":
        raise InputError("--cutout-size: for the per-source tasks (--task refine, extension "
                         "or class); the detector sees whole patches")
    cutout_size = 16 if cutout_size is None else cutout_size
    weights = None
    if class_weights is not None:
        try:
            weights = [float(w) for w in str(class_weights).split(",")]
        except ValueError:
            raise InputError(f"--class-weights {class_weights!r}: expected comma-separated "
                             f"numbers") from None
    if task != "detect":
        from astroreco.detectors.sky.classify import ClassifyConfig, train_classifier
        from astroreco.detectors.sky.refine import RefineConfig, train_refiner

        config = TrainConfig(max_epochs=epochs or 8, batch_size=batch_size, patience=patience,
                             seed=seed, progress=not quiet, threads=threads, chunk_size=4096,
                             accelerator="gpu" if device.startswith("cuda") else "cpu",
                             max_steps_per_epoch=max_steps_per_epoch,
                             optim=OptimConfig(lr=lr))
        if task == "refine":
            summary = train_refiner(patches, out,
                                    cfg=RefineConfig(members=members, size=cutout_size,
                                                     min_flux=label_min_flux),
                                    config=config, val_events=val_patches, command=command,
                                    overwrite=overwrite)
        else:
            summary = train_classifier(patches, out, task=task,
                                       cfg=ClassifyConfig(task=task, size=cutout_size,
                                                          min_flux=label_min_flux,
                                                          dihedral=dihedral,
                                                          class_weights=weights),
                                       config=config,
                                       val_events=val_patches, command=command,
                                       overwrite=overwrite)
        click.echo(json.dumps(summary, default=str))
        return
    g = geometry_of(patches)
    net = SkyNetConfig(n_energy=g.n_energy, n_pix=g.n_pix, scale=scale,
                       label_min_flux=label_min_flux, mask_radius_pix=mask_radius,
                       centres=centres, threshold=threshold)
    config = TrainConfig(max_epochs=epochs or (50 if scale == "paper" else 10),
                         batch_size=batch_size, patience=patience, seed=seed,
                         progress=not quiet, threads=threads, chunk_size=1024,
                         accelerator="gpu" if device.startswith("cuda") else "cpu",
                         max_steps_per_epoch=max_steps_per_epoch, optim=OptimConfig(lr=lr))
    summary = run(patches, out, net=net, config=config, val_events=val_patches, init=init,
                  overwrite=overwrite, command=command)
    click.echo(json.dumps(summary))


@sky.command()
@click.argument("patches", type=click.Path())
@out_option("Directory for evaluation.json, the plots and report.html.")
@click.option("--name", "names", multiple=True,
              help="Detections (/reco/NAME) to score; repeat for several (default: every "
                   "stored one).")
@click.option("--match-radius", type=float, default=0.3, show_default=True,
              help="Largest distance (deg) of a detection from its true source.")
@click.option("--flux-threshold", type=float, default=4e-10, show_default=True,
              help="S(1-100 GeV) (ph cm^-2 s^-1) above which the recall is quoted.")
def evaluate(patches, out, names, match_radius, flux_threshold):
    """Score the detections stored in PATCHES against the true sources, side by side;
    print a JSON summary."""
    from astroreco.detectors.sky.evaluate import evaluate as run

    r = run(patches, out, names=list(names) or None, match_radius_deg=match_radius,
            flux_threshold=flux_threshold)
    summary = {n: {"n_detections": m["counts"]["n_detections"], "purity": m["purity"],
                   "recall_above": m["recall_above"], "f1": m["f1"],
                   "best_recall": m["operating_point"]["recall"],
                   "best_threshold": m["operating_point"]["threshold"],
                   "r68_deg": m["localisation"]["r68_deg"],
                   "r95_deg": m["localisation"]["r95_deg"]}
               for n, m in r["methods"].items()}
    click.echo(json.dumps({"file": r["file"], "n_patches": r["n_patches"],
                           "match_radius_deg": r["options"]["match_radius_deg"],
                           "flux_threshold": r["options"]["flux_threshold"],
                           "evaluation": r["evaluation"],
                           "report": r["report"], "n_plots": len(r["plots"]),
                           "methods": summary}))
