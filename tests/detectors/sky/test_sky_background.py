"""Renormalising the analysis's background model on a patch: a model off by a factor, or by
a gradient, is brought back to the counts away from the sources; the sources themselves do
not pull it."""

import numpy as np
import pytest

from astroreco.detectors.sky.background import (SCALE_BOUNDS, mask_radii_pix,
                                                refit_background, refit_patches)
from astroreco.errors import InputError


def _patch(rng, level=(40.0, 8.0), n=64, sources=((20.0, 30.0, 4000.0),)):
    """True background (flat per bin), counts with bright Gaussian sources."""
    yy, xx = np.mgrid[0:n, 0:n]
    truth = np.stack([np.full((n, n), v) for v in level])[None]
    mean = truth.copy()
    for x, y, amp in sources:
        blob = np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 2.0 ** 2)
        mean[0] += amp * blob[None] / blob.sum()
    return rng.poisson(mean).astype(np.float32), truth.astype(np.float32)


def test_a_scaled_model_is_brought_back_and_sources_are_left_out():
    rng = np.random.default_rng(1)
    counts, truth = _patch(rng)
    found = [{"x_pix": np.array([20.0]), "y_pix": np.array([30.0])}]
    model = truth * np.array([1.3, 0.7], np.float32)[None, :, None, None]
    out, scales = refit_background(counts, model, found, [6.0, 6.0])
    assert out.dtype == np.float32 and out.shape == model.shape
    assert scales[0] == pytest.approx([1 / 1.3, 1 / 0.7], rel=0.02)
    assert np.allclose(out, truth, rtol=0.02)
    # without the disc around the source its counts would raise the background
    _, leaky = refit_background(counts, model, [{"x_pix": [], "y_pix": []}], [6.0, 6.0])
    assert leaky[0, 0] > scales[0, 0] * 1.005


def test_a_gradient_is_followed_with_a_smoothed_scale_map():
    rng = np.random.default_rng(2)
    counts, truth = _patch(rng, level=(200.0, 50.0), sources=())
    ramp = np.linspace(0.7, 1.3, 64)[None, None, None, :].astype(np.float32)
    model = truth * ramp
    found = [{"x_pix": np.zeros(0), "y_pix": np.zeros(0)}]
    flat, _ = refit_background(counts, model, found, [3.0, 3.0])
    smooth, _ = refit_background(counts, model, found, [3.0, 3.0], smooth_pix=5.0)
    inner = (slice(None), slice(None), slice(10, 54), slice(10, 54))
    err_flat = np.abs(flat[inner] / truth[inner] - 1).mean()
    err_smooth = np.abs(smooth[inner] / truth[inner] - 1).mean()
    assert err_flat > 0.1 and err_smooth < 0.04


def test_scales_are_bounded_and_faint_bins_keep_theirs():
    rng = np.random.default_rng(3)
    counts, truth = _patch(rng, level=(40.0, 0.005), sources=())
    model = truth * np.array([10.0, 3.0], np.float32)[None, :, None, None]
    _, scales = refit_background(counts, model, [{"x_pix": [], "y_pix": []}], [2.0, 2.0])
    assert scales[0, 0] == SCALE_BOUNDS[0]  # 10x too bright: clipped
    assert scales[0, 1] == 1.0  # 61 model counts in the bin: too few to fit


def test_mask_radii_follow_the_psf():
    k_narrow = np.zeros((9, 9))
    k_narrow[4, 4] = 1.0
    yy, xx = np.mgrid[-10:11, -10:11]
    k_wide = np.exp(-0.5 * (xx ** 2 + yy ** 2) / 4.0 ** 2)
    r = mask_radii_pix([k_narrow, k_wide], 0.9)
    assert r[0] == 1.5 and 7.0 < r[1] < 9.5  # 90% of a 2-D Gaussian: 2.15 sigma
    assert mask_radii_pix([k_wide], 0.9, max_pix=5.0)[0] == 5.0
    with pytest.raises(InputError, match="containment"):
        mask_radii_pix([k_wide], 1.5)


def test_refit_patches_uses_the_patch_psf():
    from astroreco.detectors.sky.pipeline import make_config, psf_kernels

    cfg = make_config("fermi")
    n_e = len(cfg.geometry.energy_edges_gev) - 1
    n = cfg.geometry.n_pix
    rng = np.random.default_rng(4)
    truth = np.full((1, n_e, n, n), 30.0, np.float32)
    counts = rng.poisson(truth).astype(np.float32)
    out = refit_patches(counts, 1.2 * truth, [{"x_pix": [10.0], "y_pix": [10.0]}],
                        psf_kernels(cfg), cfg.geometry.size_deg / n)
    assert np.abs(out / truth - 1).mean() < 0.03


def test_bad_input_is_refused():
    counts = np.zeros((1, 2, 8, 8), np.float32)
    found = [{"x_pix": [], "y_pix": []}]
    with pytest.raises(InputError, match="one shape"):
        refit_background(counts, counts[:, :1], found, [1.0, 1.0])
    with pytest.raises(InputError, match="radii_pix"):
        refit_background(counts, counts, found, [1.0])
    with pytest.raises(InputError, match="detections of 1 patches"):
        refit_background(counts, counts, found * 2, [1.0, 1.0])
