"""The analysis's background model, renormalised on each patch.

A Fermi-LAT analysis never takes the interstellar emission model (IEM) as exact: in every
region of interest the normalisation of the diffuse emission is a free parameter of the
likelihood fit.  :func:`refit_background` does the same on a patch: per energy bin, the
background model is scaled to the counts observed away from the detected sources (outside
a disc of :func:`mask_radii_pix` around each).  An IEM that is too bright or too faint in
a patch then no longer biases the source fluxes measured over it; what the scale cannot
mend is a difference in the model's shape within the patch.
"""

from __future__ import annotations

import json

import numpy as np

from astroreco.errors import InputError

#: scales are bounded: a patch dominated by sources cannot push the background far
SCALE_BOUNDS = (0.5, 2.0)
#: a bin whose unmasked background model holds fewer expected counts keeps scale 1
MIN_MODEL_COUNTS = 100.0
#: defaults of the detection chain: the PSF containment of the discs left out around
#: detections, their largest radius and the smoothing of the scale map (degrees)
MASK_CONTAINMENT, MASK_MAX_DEG, SMOOTH_DEG = 0.9, 2.5, 1.0


def refit_patches(counts, background, found, kernels, pixel_deg: float,
                  smooth_deg: float | None = SMOOTH_DEG) -> np.ndarray:
    """:func:`refit_background` with the chain's defaults: discs of
    :data:`MASK_CONTAINMENT` of the PSF (``kernels``: per energy bin, as
    :func:`~astroreco.detectors.sky.pipeline.psf_kernels` gives them) up to
    :data:`MASK_MAX_DEG`, scale maps smoothed over ``smooth_deg``."""
    radii, smooth = _chain_settings(kernels, pixel_deg, smooth_deg)
    return refit_background(counts, background, found, radii, smooth_pix=smooth)[0]


def _chain_settings(kernels, pixel_deg: float, smooth_deg: float | None = SMOOTH_DEG):
    """The chain's disc radii and smoothing, in pixels."""
    radii = mask_radii_pix(kernels, MASK_CONTAINMENT, max_pix=MASK_MAX_DEG / pixel_deg)
    return radii, None if smooth_deg is None else smooth_deg / pixel_deg


def mask_radii_pix(kernels, containment: float = 0.9, max_pix: float | None = None
                   ) -> np.ndarray:
    """Per energy bin, the radius (pixels) holding ``containment`` of the PSF kernel's sum
    (:func:`~astroreco.detectors.sky.pipeline.psf_kernels`), at least 1.5 pixels and at
    most ``max_pix``."""
    if not 0.0 < containment < 1.0:
        raise InputError(f"containment: expected a value in (0, 1), got {containment!r}")
    out = []
    for k in kernels:
        k = np.asarray(k, np.float64)
        h = k.shape[0] // 2
        yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
        r = np.hypot(xx, yy).ravel()
        order = np.argsort(r)
        frac = np.cumsum(k.ravel()[order]) / k.sum()
        out.append(max(1.5, float(r[order][np.searchsorted(frac, containment)])))
    out = np.asarray(out)
    return out if max_pix is None else np.minimum(out, float(max_pix))


def refit_background(counts, background, found, radii_pix, smooth_pix: float | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The background model scaled per patch and energy bin to the counts outside the
    detected sources.

    Parameters
    ----------
    counts, background : array (n, E, H, W)
        Counts and the analysis's background model of ``n`` patches.
    found : list of dict
        Per patch the detections, with ``x_pix`` and ``y_pix`` arrays.
    radii_pix : array (E,)
        Radius of the disc left out around each detection, per energy bin.
    smooth_pix : float, optional
        With it, the scale varies over the patch: the ratio of the Gaussian-smoothed
        (sigma ``smooth_pix``) counts to the smoothed model, both outside the discs, where
        the smoothed model holds at least :data:`MIN_MODEL_COUNTS` counts, and the patch's
        single scale elsewhere.  It follows a model whose shape is off on scales larger
        than ``smooth_pix``.

    Returns
    -------
    background : np.ndarray
        ``(n, E, H, W)``, the model times its scale, in the model's dtype.
    scales : np.ndarray
        ``(n, E)`` the fitted scales: counts over model counts outside the discs, within
        :data:`SCALE_BOUNDS`; 1 where the unmasked model holds fewer than
        :data:`MIN_MODEL_COUNTS` counts.
    """
    counts = np.asarray(counts)
    background = np.asarray(background)
    if counts.ndim != 4 or background.shape != counts.shape:
        raise InputError(f"refit_background: expected counts and background of one shape "
                         f"(n, E, H, W), got {counts.shape} and {background.shape}")
    n, n_e, h, w = counts.shape
    radii = np.asarray(radii_pix, np.float64)
    if radii.shape != (n_e,) or not np.all(radii > 0):
        raise InputError(f"radii_pix: expected {n_e} positive radii, got {radii_pix!r}")
    if len(found) != n:
        raise InputError(f"found: expected detections of {n} patches, got {len(found)}")
    from scipy.ndimage import gaussian_filter

    yy, xx = np.mgrid[0:h, 0:w]
    scales = np.ones((n, n_e))
    out = background.astype(np.float64)
    for p in range(n):
        x = np.asarray(found[p]["x_pix"], np.float64)
        y = np.asarray(found[p]["y_pix"], np.float64)
        d2 = np.full((h, w), np.inf)
        for xi, yi in zip(x, y):
            d2 = np.minimum(d2, (xx - xi) ** 2 + (yy - yi) ** 2)
        for e in range(n_e):
            keep = d2 > radii[e] ** 2
            model = float(background[p, e][keep].sum(dtype=np.float64))
            if model >= MIN_MODEL_COUNTS:
                observed = float(counts[p, e][keep].sum(dtype=np.float64))
                scales[p, e] = np.clip(observed / model, *SCALE_BOUNDS)
            scale = scales[p, e]
            if smooth_pix:
                m = gaussian_filter(np.where(keep, background[p, e], 0.0).astype(np.float64),
                                    smooth_pix, mode="constant")
                c = gaussian_filter(np.where(keep, counts[p, e], 0.0).astype(np.float64),
                                    smooth_pix, mode="constant")
                enough = m * (4.0 * np.pi * smooth_pix ** 2) >= MIN_MODEL_COUNTS
                scale = np.where(enough, np.clip(c / np.where(enough, m, 1.0), *SCALE_BOUNDS),
                                 scale)
            out[p, e] *= scale
    return out.astype(background.dtype), scales


def refit_patch_file(path, out, *, min_flux: float = 1e-10, chunk_size: int = 500,
                     overwrite: bool = False, progress: bool = True) -> dict:
    """A copy of the patch file ``path`` whose background model is refitted as the detection
    chain refits it (:func:`refit_patches`), with the true sources of at least ``min_flux``
    (S(1-100 GeV), ph cm-2 s-1) in the patch standing in for the detections: training data
    for per-source networks that will see refitted backgrounds.  Written atomically."""
    import shutil

    import h5py

    from astroreco.detectors.sky.pipeline import (config_of, psf_kernels, read_patches,
                                                  read_truth)
    from astroreco.io.store import atomic_path
    from astroreco.progress import progress_bar

    if not (np.isfinite(min_flux) and min_flux > 0):
        raise InputError(f"--min-flux {min_flux!r}: expected a positive flux")
    config = config_of(path)
    radii, smooth = _chain_settings(psf_kernels(config), config.geometry.pixel_deg)
    scales = []
    with atomic_path(out, overwrite) as tmp:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+") as f:
            ds = f["events/background"]
            n = ds.shape[0]
            with progress_bar(f"refitting the background of {n} patches", total=n,
                              enabled=progress) as bar:
                for s in range(0, n, int(chunk_size)):
                    e = min(n, s + int(chunk_size))
                    data = read_patches(path, s, e)
                    t = read_truth(path, s, e)
                    keep = t["in_patch"] & (t["flux"] >= min_flux)
                    found = [{"x_pix": t["x_pix"][keep & (t["patch"] == p)],
                              "y_pix": t["y_pix"][keep & (t["patch"] == p)]}
                             for p in range(e - s)]
                    bkg, sc = refit_background(data.counts, data.background, found, radii,
                                               smooth_pix=smooth)
                    ds[s:e] = bkg
                    scales.append(sc)
                    bar.advance(e - s)
            f.attrs["background_refit"] = json.dumps({"source": str(path),
                                                      "min_flux": float(min_flux)})
    sc = np.concatenate(scales)
    return {"file": str(out), "source": str(path), "n_patches": int(n),
            "min_flux": float(min_flux), "scale_mean": [float(v) for v in sc.mean(0)],
            "scale_std": [float(v) for v in sc.std(0)]}
