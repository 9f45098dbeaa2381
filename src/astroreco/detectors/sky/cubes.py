"""Fermi-style counts cubes in and out of the sky pipeline: a patch of a patch file as a
counts cube (+ background cube), and source detection on any such cube -> FITS catalog and
DS9 regions (classical or neural).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astroreco.detectors.sky.geometry import SkyGeometry
from astroreco.detectors.sky.pipeline import (MIN_ENERGY_GEV, PATCH_SCHEMA, REGION_RADIUS_DEG,
                                              _check_method, classical_bins, config_of,
                                              psf_kernels, read_patches)
from astroreco.errors import InputError
from astroreco.io.store import EventFile, check_output_path

__all__ = ["export_cube", "detect_cube"]


def _check_outputs(paths, overwrite: bool):
    """Fail before any work when an output exists (without overwrite) or repeats."""
    given = [Path(p) for p in paths if p is not None]
    if len({p.resolve() for p in given}) != len(given):
        raise InputError(f"{given[-1]}: the same file is given for two outputs")
    for p in given:
        check_output_path(p, overwrite)


def export_cube(path, index: int, out, background_out=None, *, overwrite: bool = False) -> dict:
    """Write patch ``index`` of ``path`` as a Fermi-style counts cube (EBOUNDS, EXPOSURE and
    the patch WCS), and optionally its background model as a second cube."""
    from astroreco.detectors.sky.fitsio import SkyCube, write_background, write_counts_cube

    _check_outputs([out, background_out], overwrite)
    with EventFile(path, PATCH_SCHEMA) as ef:
        n, meta = ef.n_events, ef.config
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
            or not 0 <= index < n:
        raise InputError(f"--index {index!r}: expected a patch index in 0..{n - 1} "
                         f"({path} holds {n} patches)")
    config = config_of(path)
    g = config.geometry
    data = read_patches(path, index, index + 1)
    l0, b0 = (float(v) for v in data.centres[0])
    cube = SkyCube(data.counts[0], g.wcs(l0, b0), np.asarray(g.energy_edges_gev),
                   background=data.background[0],
                   exposure=config.exposure_per_bin[:, None, None],
                   meta={"PATCHID": int(data.patch_id[0]), "SIMSEED": int(meta.get("seed", -1)),
                         "PRESET": str(meta.get("preset", "")), "IEM": config.iem,
                         "SIMMODE": config.mode, "PSFMODEL": config.psf})
    write_counts_cube(out, cube, overwrite=overwrite)
    if background_out is not None:
        write_background(background_out, cube, overwrite=overwrite)
    return {"file": str(path), "index": int(index), "patch_id": int(data.patch_id[0]),
            "l_deg": l0, "b_deg": b0, "shape": list(cube.counts.shape), "cube": str(out),
            "background": None if background_out is None else str(background_out)}


def _cube_geometry(cube, where) -> SkyGeometry:
    """A :class:`SkyGeometry` carrying the cube's pixel size and energy bins (for the PSF
    kernels: square pixels required)."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    try:
        sx, sy = (float(v) for v in proj_plane_pixel_scales(cube.wcs))
    except Exception:
        sx = sy = float("nan")
    if not (np.isfinite(sx) and np.isfinite(sy) and sx > 0 and sy > 0):
        raise InputError(f"{where}: pixel size not readable from the WCS (CDELT1/CDELT2 or "
                         f"CD matrix); expected square pixels in deg")
    if abs(sx - sy) > 1e-3 * max(sx, sy):
        raise InputError(f"{where}: pixels of {sx:g} x {sy:g} deg; expected square pixels "
                         f"(|CDELT1| = |CDELT2|) for the PSF kernels")
    projection = cube.wcs.wcs.ctype[0][5:].strip("-").strip()
    n_pix = max(4, min(max(cube.counts.shape[1:]), int(60.0 // sx)))
    return SkyGeometry(n_pix=n_pix, size_deg=n_pix * sx,
                       energy_edges_gev=tuple(cube.energy_edges_gev),
                       projection=projection if projection in ("CAR", "TAN") else "CAR")


def detect_cube(cube_path, *, background=None, method: str = "sep",
                threshold: float | None = None, out_catalog, out_regions=None,
                psf: str = "fermi", psf_index: float = 2.2, model=None, refiner=None,
                extension=None, min_energy_gev: float | None = MIN_ENERGY_GEV,
                refit_background: bool = True, overwrite: bool = False) -> dict:
    """Source detection on a Fermi-style counts cube; writes a FITS source catalog and,
    optionally, DS9 regions.

    Parameters
    ----------
    cube_path : path-like
        Counts cube (PRIMARY (E, lat, lon) + EBOUNDS, GLON/GLAT or RA/DEC WCS).
    background : path-like
        Background-model cube (expected counts), same shape, WCS and EBOUNDS: required by
        the classical methods, whose significance :math:`K*(N-B)/\\sqrt{K^2*B}` needs it;
        not used by ``nn``.
    method : str
        ``sep``, ``photutils``, ``peaks`` or ``nn`` (the neural detector).
    threshold : float, optional
        Classical: significance in sigma (default 5); ``nn``: the centre finder's
        probability threshold (default: the model's).
    psf, psf_index : str, float
        Classical: PSF model (``fermi``/``cta``) and photon index weighting it within a
        bin: the kernels of the cube's EBOUNDS and pixel size (:func:`psf_kernels`).
    min_energy_gev : float or None
        Classical: the energy bins from this energy enter the significance map
        (:func:`classical_bins`).
    model : path-like, optional
        ``nn``: the model directory (default: the shipped detector).  It was trained on
        maps of its simulation's pixel size and energy bins: give it cubes binned alike.
    refiner, extension : path-like, optional
        ``nn``: the position/flux ensemble and the extension classifier (model
        directories); they need the background cube.  The catalog then carries the
        position errors (68% and 95% radii), fluxes and extension probabilities.
    refit_background : bool
        ``nn``: renormalise the background cube to the counts away from the detections
        before the per-source networks see it
        (:func:`~astroreco.detectors.sky.background.refit_patches`).

    Returns
    -------
    dict
        Summary: inputs, outputs, sources found, highest detection score.
    """
    import h5py

    from astroreco.detectors.sky.catalog import write_catalog, write_regions
    from astroreco.detectors.sky.fitsio import read_counts_cube

    _check_method(method)
    cube_path = Path(cube_path)
    if cube_path.is_file() and h5py.is_hdf5(cube_path):
        raise InputError(f"{cube_path}: an HDF5 file, expected a FITS counts cube (for a "
                         f"patch file use `astroreco sky detect-patches`)")
    if method == "nn" and background is None and (refiner or extension):
        raise InputError(f"{cube_path}: the per-source networks (--refiner, "
                         f"--extension-model) need the background model (--background)")
    if background is None and method != "nn":
        raise InputError(f"{cube_path}: no background model: the classical significance "
                         f"needs the expected background counts (--background BKG.fits)")
    _check_outputs([out_catalog, out_regions], overwrite)
    cube = read_counts_cube(cube_path, background)
    if method == "nn":
        from astroreco.detectors.sky.neural import NeuralDetector

        from astroreco.detectors.sky.neural import catalog_columns, characterise

        detector = NeuralDetector(model, threshold=threshold)
        found = detector.detect(cube.counts[None], [cube.wcs])[0]
        if refiner is not None or extension is not None:
            from astroreco.detectors.sky.classify import Classifier
            from astroreco.detectors.sky.refine import Refiner

            from astroreco.detectors.sky.background import refit_patches

            geometry = _cube_geometry(cube, cube_path)
            bkg = cube.background[None]
            if refit_background:  # as detect_neural does for patch files
                bkg = refit_patches(cube.counts[None], bkg, [found],
                                    psf_kernels(geometry, psf=psf, psf_index=psf_index),
                                    geometry.pixel_deg)
            found = characterise(
                [found], cube.counts[None], bkg, [cube.wcs], geometry.pixel_deg,
                refiner=None if refiner is None else Refiner(refiner),
                extension=None if extension is None else Classifier(extension))[0]
        found = catalog_columns(found)
        threshold = detector.config.threshold
        score, label = found["score"], f"nn-{detector.config.centres}"
    else:
        from astroreco.detectors.sky.classical import classical_catalog

        threshold = 5.0 if threshold is None else threshold
        kernels = psf_kernels(_cube_geometry(cube, cube_path), psf=psf, psf_index=psf_index)
        found = classical_catalog(cube.counts, cube.background, kernels, cube.wcs, method,
                                  threshold=threshold,
                                  bins=classical_bins(cube.energy_edges_gev, min_energy_gev))
        score, label = found["significance"], f"classical-{method}"
    write_catalog(out_catalog, found, "galactic", method=label, overwrite=overwrite)
    if out_regions is not None:
        write_regions(out_regions, found,
                      radius="POS_ERR_95" if "POS_ERR_95" in found else REGION_RADIUS_DEG,
                      overwrite=overwrite)
    return {"cube": str(cube_path),
            "background": None if background is None else str(background),
            "method": method, "threshold": float(threshold), "n_sources": int(len(score)),
            "max_score": float(score.max()) if len(score) else None,
            "catalog": str(out_catalog),
            "regions": None if out_regions is None else str(out_regions)}
