"""In-situ intercalibration of the ECAL cells against a simulated reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from astroreco.detectors.ecal import pipeline
from astroreco.detectors.ecal.calibration import (CellCalibration, add_responses,
                                                  calibration_from_responses, cell_response,
                                                  intercalibrate)
from astroreco.detectors.ecal.geometry import EcalGeometry
from astroreco.detectors.ecal.simulate import EcalSimConfig, ShowerSimulator
from astroreco.errors import InputError
from astroreco.io.store import EventFile


#: a small calorimeter for the synthetic showers
TOY = EcalGeometry(n_layers=10, n_cells=24)


def _toy(images):
    return cell_response(images, geometry=TOY)


def _showers(n, rng, shape=(10, 24)):
    """Smooth random 'showers' (MeV): a Gaussian profile per layer at a random centre."""
    cells = np.arange(shape[1])
    centre = rng.uniform(2, shape[1] - 3, n)
    width = rng.uniform(0.8, 2.0, n)
    prof = np.exp(-0.5 * ((cells[None, :] - centre[:, None]) / width[:, None]) ** 2)
    energy = rng.uniform(30e3, 300e3, n)
    return (energy[:, None, None] * prof[:, None, :] / prof.sum(1)[:, None, None]
            / shape[0] * np.ones((1, shape[0], 1)))


def test_cell_response_is_the_mean_fraction_above_the_threshold():
    small = EcalGeometry(n_layers=2, n_cells=6)
    im = np.zeros((3, 2, 6))
    im[0, :, :2] = [[10e3, 10e3], [0, 0]]        # 20 GeV: below a 25 GeV threshold
    im[1, :, :2] = [[30e3, 0], [0, 10e3]]        # 40 GeV
    im[2, :, :2] = [[0, 0], [50e3, 50e3]]        # 100 GeV
    r = cell_response(im, min_energy_gev=25.0, geometry=small)
    assert r.n_showers == 2
    np.testing.assert_allclose(r.mean[:, :2], [[0.375, 0.0], [0.25, 0.375]])
    assert np.all(r.mean[:, 2:] == 0) and np.all(r.error >= 0)
    with pytest.raises(InputError, match="expected images of shape"):
        cell_response(np.zeros((3, 4)))
    with pytest.raises(InputError, match="NaN"):
        cell_response(np.where(im > 0, np.nan, im), geometry=small)
    with pytest.raises(InputError, match="negative"):
        cell_response(-im, geometry=small)
    with pytest.raises(InputError, match="min_energy_gev"):
        cell_response(np.zeros((1, 18, 72)), min_energy_gev="lots")


def test_gains_and_dead_cells_are_recovered():
    rng = np.random.default_rng(1)
    ref = _showers(100_000, rng)
    gains = 1 + 0.05 * rng.standard_normal(ref.shape[1:])
    gains[1, 5] = 0.0
    data = _showers(100_000, np.random.default_rng(2)) * gains
    cal = calibration_from_responses(_toy(data), _toy(ref))
    assert cal.dead.sum() == 1 and cal.dead[1, 5]
    assert cal.gains[1, 5] == 0 and cal.calibrated.all()
    live = ~cal.dead
    true = gains / np.median(gains[live])
    err = cal.gains[live] / true[live] - 1
    # the raw spread is 5%; what remains is mostly statistics (the errors say how much;
    # the cell's own share of the summed energy compresses the ratio a little)
    assert np.std(err) < 0.02
    pull = err / cal.gain_errors[live]
    assert 0.5 < np.std(pull) < 3.0
    # applied, the data look like the reference again (dead cells stay 0)
    back = cal.apply(data)
    assert back[:, 1, 5].max() == 0
    r_back = _toy(back).mean[live] / _toy(ref).mean[live]
    r_data = _toy(data).mean[live] / _toy(ref).mean[live]
    assert np.std(r_back) < 0.5 * np.std(r_data)


def test_the_simulated_detector_variant_is_intercalibrated():
    """Against the truth of the simulator: the variant's dead cells and its gains relative
    to the nominal detector's, from 200,000 showers per sample (in the cells measured to
    better than 3%)."""
    kw = dict(energy_gev=200.0, theta_deg=(155.0, 180.0))
    var, nom = EcalSimConfig.variant(), EcalSimConfig()
    rd = rr = None
    for first in range(0, 200_000, 50_000):
        rd = add_responses(rd, cell_response(ShowerSimulator(var).simulate(
            50_000, seed=11, first_index=first, **kw).images))
        rr = add_responses(rr, cell_response(ShowerSimulator(nom).simulate(
            50_000, seed=12, first_index=first, **kw).images))
    cal = calibration_from_responses(rd, rr)
    g_var, g_nom = ShowerSimulator(var).gains, ShowerSimulator(nom).gains
    assert np.array_equal(cal.dead, (g_var == 0) & cal.calibrated)
    assert cal.dead.sum() >= 8
    good = cal.calibrated & ~cal.dead & (cal.gain_errors < 0.03)
    assert good.sum() > 300
    true = g_var / g_nom
    true = true / np.median(true[good])
    before = np.std(true[good] - 1)
    after = np.std(cal.gains[good] / true[good] - 1)
    assert before > 0.04 and after < 0.6 * before


def test_calibration_file_round_trip_and_bad_files(tmp_path):
    rng = np.random.default_rng(3)
    ref = _showers(3000, rng)
    cal = calibration_from_responses(_toy(ref * 1.1), _toy(ref), provenance={"data": "d.h5"})
    path = cal.save(tmp_path / "cells.json")
    back = CellCalibration.load(path)
    np.testing.assert_allclose(back.gains, cal.gains, atol=1e-6)
    assert np.array_equal(back.dead, cal.dead) and back.provenance["data"] == "d.h5"
    with pytest.raises(InputError, match="file exists"):
        cal.save(path)
    d = json.loads(path.read_text())
    for change, msg in ((dict(format="x"), "not an astroreco ECAL cell calibration"),
                        (dict(shape=[10, 23]), "gains of shape"),
                        (dict(gains=[[-1.0] * 24] * 10), "finite and >= 0"),
                        (dict(dead="x"), "malformed"),
                        (dict(dead=[[-1, -1]]), "malformed"),
                        (dict(provenance="abc"), "provenance")):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({**d, **change}))
        with pytest.raises(InputError, match=msg):
            CellCalibration.load(bad)
    (tmp_path / "t.json").write_text("{")
    with pytest.raises(InputError, match="not JSON"):
        CellCalibration.load(tmp_path / "t.json")
    with pytest.raises(InputError, match="cannot read"):
        CellCalibration.load(tmp_path / "missing.json")
    with pytest.raises(InputError, match="10 x 24 cells"):
        cal.apply(np.zeros((2, 18, 72)))
    with pytest.raises(InputError, match="10 x 24 cells"):
        cal.apply(np.zeros(5))
    with pytest.raises(InputError, match="not the same calorimeter"):
        calibration_from_responses(cell_response(np.ones((5, 2, 6)) * 1e5,
                                                 geometry=EcalGeometry(n_layers=2, n_cells=6)),
                                   _toy(ref))
    with pytest.raises(InputError, match="dead_ratio"):
        calibration_from_responses(_toy(ref), _toy(ref), dead_ratio="x")


def test_too_few_showers_warn_in_the_summary():
    rng = np.random.default_rng(4)
    gains = 1 + 0.02 * rng.standard_normal((10, 24))
    cal = calibration_from_responses(_toy(_showers(30, rng) * gains), _toy(_showers(30, rng)))
    assert "use more showers" in cal.summary()["warning"]


def test_reconstruct_with_a_calibration_file(tmp_path):
    data, ref = tmp_path / "var.h5", tmp_path / "nom.h5"
    pipeline.simulate(data, n_events=400, energy="50:200", variant=True, seed=5,
                      progress=False)
    pipeline.simulate(ref, n_events=400, energy="50:200", seed=6, progress=False)
    cal = intercalibrate(data, ref, progress=False)
    cal.save(tmp_path / "cells.json")
    s = pipeline.reconstruct(data, method="cog", name="cog_cal",
                             calibration=tmp_path / "cells.json", progress=False)
    assert s["failed"] == 0
    with EventFile(data, pipeline.EVENT_SCHEMA) as ef:
        cfg = json.loads(ef.reco_attrs("cog_cal")["config"])
    assert cfg["cell_calibration"]["file"].endswith("cells.json")
    from astroreco.detectors.ecal.evaluate import score
    pipeline.reconstruct(data, method="cog", name="cog_again", progress=False)
    labels = {m: s["label"] for m, s in score(data).items()}
    assert labels == {"cog_cal": "centre of gravity (cog_cal), cells intercalibrated",
                      "cog_again": "centre of gravity (cog_again)"}
    with pytest.raises(InputError, match="energy threshold"):
        intercalibrate(data, ref, min_energy_gev=1e5, progress=False)
