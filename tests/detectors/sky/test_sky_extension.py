"""The classical likelihood extension test of the sky sources."""

from __future__ import annotations

import numpy as np
import pytest

from astroreco.detectors.sky.classify import ClassifyConfig
from astroreco.detectors.sky.extension import (SIGMA_GRID_DEG, ExtensionFitter, classify,
                                               evaluate_sources, scan_sources, tune_threshold)
from astroreco.detectors.sky.pipeline import simulate
from astroreco.detectors.sky.simulate import SkySimConfig
from astroreco.errors import InputError


@pytest.fixture(scope="module")
def fitter():
    return ExtensionFitter(SkySimConfig.cta(), size=32)


def test_templates_hold_the_psf_and_widen_with_sigma(fitter):
    t = fitter.templates(0.2, -0.3)
    assert t.shape == (len(fitter.sigmas), 5, 32, 32) and np.all(t >= 0)
    point = t[0].sum(axis=(1, 2))
    assert np.all(point > 0.9) and np.all(point <= 1.0 + 1e-9)
    # wider Gaussians put more of the unit source outside the cut-out and less in the centre
    assert t[-1].sum() < t[0].sum() and t[-1][:, 16, 16].max() < t[0][:, 16, 16].min()


@pytest.mark.parametrize("sigma_true", [0.0, 0.2, 0.5])
def test_the_scan_finds_the_width_of_a_bright_source(fitter, sigma_true):
    rng = np.random.default_rng(7)
    k = int(np.argmin(np.abs(fitter.sigmas - sigma_true)))
    b = np.full((5, 32, 32), 0.5)
    mu = b + 400.0 * fitter.templates(0.1, 0.1)[k]
    ll = fitter.scan(rng.poisson(mu), b, 0.1, 0.1)
    best = fitter.sigmas[ll.argmax()]
    ts = 2 * (ll.max() - ll[0])
    assert abs(best - sigma_true) <= 0.05 + 0.2 * sigma_true
    if sigma_true == 0:
        assert ts < 9
    else:
        assert ts > 25
        assert classify([best], [ts], 16.0)[0] == (1 if sigma_true < 0.3 else 2)


def test_locate_finds_a_bright_point_source(fitter):
    rng = np.random.default_rng(9)
    b = np.full((5, 32, 32), 0.5)
    counts = rng.poisson(b + 300.0 * fitter.templates(0.5, -0.25, [0.0])[0])
    dx, dy = fitter.locate(counts, b, -0.2, 0.2)
    assert abs(dx - 0.5) <= 0.25 and abs(dy + 0.25) <= 0.25


def test_detection_ts_separates_a_source_from_empty_sky(fitter):
    rng = np.random.default_rng(11)
    b = np.full((1, 5, 64, 64), 0.5)
    mu = b.copy()
    mu[0, :, 8:40, 8:40] += 200.0 * fitter.templates(0.0, 0.0, [0.0])[0]
    fit = fitter.fit_sources(rng.poisson(mu), b, [0, 0], [24.0, 48.0], [24.0, 48.0])
    assert fit["ts_detection"].shape == (2,)
    assert fit["ts_detection"][0] > 100 and fit["ts_detection"][1] < 25


def test_classify_and_bad_input():
    np.testing.assert_array_equal(classify([0.05, 0.2, 0.5, 0.5], [30, 30, 30, 3], 16),
                                  [0, 1, 2, 0])
    with pytest.raises(InputError, match="starting with 0"):
        ExtensionFitter(SkySimConfig.cta(), sigmas=(0.1, 0.2))
    with pytest.raises(InputError, match="size"):
        ExtensionFitter(SkySimConfig.cta(), size=4)


def test_evaluate_and_tune_on_cta_patches(tmp_path):
    path = tmp_path / "cta.h5"
    simulate(path, n_patches=2, preset="cta", seed=41, progress=False)
    cfg = ClassifyConfig(task="extension", size=32, min_flux=3e-10)
    tuned = tune_threshold(path, cfg, thresholds=(0.0, 4.0, 16.0))
    assert set(tuned["accuracy"]) == {0.0, 4.0, 16.0} and tuned["n"] > 0
    assert tuned["accuracy"][tuned["ts_threshold"]] == max(tuned["accuracy"].values())
    fig = evaluate_sources(path, cfg, tuned["ts_threshold"])
    assert fig["n"] == tuned["n"]
    # read a patch at a time, the same fit
    whole, _ = scan_sources(path, cfg)
    one_by_one, _ = scan_sources(path, cfg, chunk_patches=1)
    for key in whole:
        np.testing.assert_array_equal(whole[key], one_by_one[key])
    with pytest.raises(InputError, match="chunk_patches"):
        scan_sources(path, cfg, chunk_patches=0)
    fit, src = scan_sources(path, cfg, free_position=True)
    assert fit["loglike"].shape == (src.n_events, len(SIGMA_GRID_DEG))
    assert np.all(np.abs(fit["x_pix"] - src.starts(np.arange(src.n_events), None)[:, 0])
                  <= 1.25)
    assert fig["point_vs_extended_accuracy"] == pytest.approx(
        tuned["accuracy"][tuned["ts_threshold"]])
    assert sum(r["n"] for r in fig["per_flux"]) == fig["n"]
    detected = evaluate_sources(path, cfg, tuned["ts_threshold"], min_ts=25.0)
    assert detected["n_selected_from"] == fig["n"]
    assert 0 < detected["n"] == int(np.sum(fit["ts_detection"] >= 25.0)) <= fig["n"]
    with pytest.raises(InputError, match="detection TS"):
        tune_threshold(path, cfg, min_ts=1e12)
    with pytest.raises(InputError, match="no true source"):
        evaluate_sources(path, ClassifyConfig(task="extension", size=32, min_flux=1e-5))
