"""Flux errors calibrated through the detection chain (astroreco.detectors.sky.flux_errors)."""

import json
import shutil

import numpy as np
import pytest

from astroreco.detectors.sky.flux_errors import (apply_flux_error_scale,
                                                 calibrate_flux_errors,
                                                 check_flux_error_scale, fit_flux_error_scale,
                                                 flux_error_factor)
from astroreco.detectors.sky.neural import default_refiner_dir
from astroreco.detectors.sky.refine import Refiner
from astroreco.errors import InputError


def _detections(rng, n=20_000):
    """Detected fluxes whose stated 10% errors are 2x too small for the faint half and 2x
    too large for the bright half."""
    s_true = 10.0 ** rng.uniform(-10.0, -8.0, n)
    stated = 0.1 * s_true
    actual = np.where(s_true < 1e-9, 2.0, 0.5) * stated
    return s_true + rng.normal(size=n) * actual, stated, s_true


def test_the_table_recovers_the_error_scale_and_unit_pulls():
    rng = np.random.default_rng(1)
    s_det, err, s_true = _detections(rng)
    table = fit_flux_error_scale(s_det, err, s_true, n_bins=8)
    assert len(table["scale"]) == 8 and sum(table["n"]) == s_det.size
    assert table["log10_flux"] == sorted(table["log10_flux"])
    assert table["scale"][0] == pytest.approx(2.0, rel=0.1)
    assert table["scale"][-1] == pytest.approx(0.5, rel=0.1)
    # applied to independent detections, the pulls are unit-wide at both ends
    s2, e2, t2 = _detections(np.random.default_rng(2))
    out = apply_flux_error_scale(table, {"flux": s2, "flux_err": e2, "x_pix": t2})
    np.testing.assert_array_equal(out["x_pix"], t2)   # other columns untouched
    pull = (s2 - t2) / out["flux_err"]
    for sel in (t2 < 3e-10, t2 > 3e-9):
        assert np.std(pull[sel]) == pytest.approx(1.0, abs=0.1)
    assert apply_flux_error_scale(None, {"flux": s2})["flux"] is s2


def test_factor_interpolates_and_holds_beyond_the_ends():
    table = check_flux_error_scale({"log10_flux": [-10.0, -9.0], "scale": [2.0, 1.0]})
    f = flux_error_factor(table, np.array([1e-12, 1e-10, 10 ** -9.5, 1e-9, 1e-6, 0.0]))
    np.testing.assert_allclose(f, [2.0, 2.0, 1.5, 1.0, 1.0, 2.0])


@pytest.mark.parametrize("table", [{"scale": [1.0]}, {"log10_flux": [-9.0], "scale": [0.0]},
                                   {"log10_flux": [-9.0, -10.0], "scale": [1.0, 1.0]},
                                   {"log10_flux": [], "scale": []},
                                   {"log10_flux": [-9.0], "scale": [float("nan")]}])
def test_bad_tables_are_refused(table):
    with pytest.raises(InputError, match="flux_error_scale"):
        check_flux_error_scale(table)


def test_bad_inputs_are_refused():
    with pytest.raises(InputError, match="equal lengths"):
        fit_flux_error_scale([1.0, 2.0], [1.0], [1.0, 2.0])
    with pytest.raises(InputError, match=">= 200"):
        fit_flux_error_scale(np.ones(50), np.ones(50), np.ones(50))
    with pytest.raises(InputError, match="n_bins"):
        fit_flux_error_scale(np.ones(500), np.ones(500), np.ones(500), n_bins=0)


def test_the_chain_calibration_is_stored_and_applied(tmp_path):
    from astroreco.detectors.sky import pipeline

    patches = tmp_path / "val.h5"
    pipeline.simulate(patches, n_patches=60, iem="A", seed=5, progress=False)
    refiner_dir = tmp_path / "refine"
    shutil.copytree(default_refiner_dir(), refiner_dir)
    table = calibrate_flux_errors(refiner_dir, patches, n_bins=3, progress=False)
    assert table["fit"]["n_pairs"] >= 200 and len(table["scale"]) >= 1
    assert table["fit"]["pull_std_before"] > 0 and np.isfinite(table["fit"]["pull_std_after"])
    stored = json.loads((refiner_dir / "config.json").read_text())["flux_error_scale"]
    assert stored["scale"] == table["scale"]
    # the calibrated ensemble's errors are the plain one's times the table's factor
    data = pipeline.read_patches(patches, 0, 1)
    x, y = np.array([20.0, 40.0]), np.array([30.0, 10.0])
    bare = Refiner(default_refiner_dir())
    bare.flux_error_scale = None     # the shipped ensemble carries a table of its own
    plain = bare.predict(data.counts[0], data.background[0], x, y)
    calibrated = Refiner(refiner_dir).predict(data.counts[0], data.background[0], x, y)
    factor = flux_error_factor(table, plain["flux"])
    np.testing.assert_allclose(calibrated["flux"], plain["flux"])
    for col in ("flux_err", "log10_flux_sigma", "flux_err_aleatoric"):
        np.testing.assert_allclose(calibrated[col], plain[col] * factor, rtol=1e-12)
    np.testing.assert_allclose(calibrated["pos_sigma_pix"], plain["pos_sigma_pix"])
    # a broken table in the model is a one-line error when the model is loaded
    stored_cfg = json.loads((refiner_dir / "config.json").read_text())
    stored_cfg["flux_error_scale"] = {"log10_flux": [-9.0], "scale": [-1.0]}
    (refiner_dir / "config.json").write_text(json.dumps(stored_cfg))
    with pytest.raises(InputError, match="config.json: flux_error_scale"):
        Refiner(refiner_dir)
