"""ECAL event files, the classical axis methods, the evaluation and the CLI chain."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from astroreco.detectors.ecal import classical
from astroreco.detectors.ecal.geometry import EcalGeometry
from astroreco.detectors.ecal.pipeline import (EVENT_SCHEMA, check_images, make_scurve,
                                               read_images, reconstruct, simulate)
from astroreco.errors import InputError
from astroreco.io.store import EventFile

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cli"))
from clirun import assert_user_error, run  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ecal")
    simulate(d / "high.h5", n_events=1500, energy="300", seed=1, progress=False)
    simulate(d / "spectrum.h5", n_events=3000, seed=2, progress=False)
    make_scurve(d / "scurve.json", n_events=20000, progress=False)
    return d


def test_simulate_writes_images_and_truth(files):
    with EventFile(files / "high.h5", EVENT_SCHEMA) as ef:
        n = ef.n_events
        t = ef.truth()
        assert 0.6 * 1500 < n < 1500 and ef.n_simulated == 1500
    images = read_images(files / "high.h5")
    assert images.shape == (n, 18, 72) and images.min() >= 0
    assert np.allclose(t["energy_gev"], 300.0)
    g = EcalGeometry()
    assert g.fiducial(t["x0_mm"], t["y0_mm"], t["theta_deg"], t["phi_deg"]).all()
    # the same seed gives the same showers
    simulate(files / "again.h5", n_events=1500, energy="300", seed=1, progress=False)
    assert np.array_equal(read_images(files / "again.h5"), images)


def test_classical_methods_recover_the_axis(files):
    images = read_images(files / "high.h5")
    with EventFile(files / "high.h5", EVENT_SCHEMA) as ef:
        t = ef.truth()
    cog = classical.centre_of_gravity(images)
    table = classical.SCurve.load(files / "scurve.json")
    ratio = classical.cell_ratio(images, table)
    for r in (cog, ratio):
        assert not r["failed"].any()
        dtheta = r["theta_deg"] - t["theta_deg"]
        assert np.percentile(np.abs(dtheta), 68) < 1.0          # degrees at 300 GeV
        assert np.percentile(np.abs(r["x0_mm"] - t["x0_mm"]), 68) < 3.0
    # the S-curve removes the pull towards the cell centre: better positions than the CoG
    err = {k: np.percentile(np.abs(r["x0_mm"] - t["x0_mm"]), 68)
           for k, r in (("cog", cog), ("ratio", ratio))}
    assert err["ratio"] < 0.7 * err["cog"], err


def test_bad_images_and_tables_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="shape"):
        check_images(np.zeros((2, 18, 71)))
    bad = np.zeros((3, 18, 72))
    bad[1, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN.*event 1"):
        check_images(bad)
    bad[1, 0, 0] = -5.0
    with pytest.raises(InputError, match="negative"):
        check_images(bad)
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(InputError, match="S-curve"):
        classical.SCurve.load(tmp_path / "t.json")
    # an empty shower: the fit fails and says so, nothing crashes
    r = classical.centre_of_gravity(np.zeros((2, 18, 72)))
    assert r["failed"].all()
    with pytest.raises(InputError, match="energy"):
        simulate(tmp_path / "x.h5", n_events=10, energy="-3", progress=False)
    with pytest.raises(InputError, match="theta"):
        simulate(tmp_path / "x.h5", n_events=10, theta="a:b", progress=False)


def test_reconstruct_and_evaluate_side_by_side(files, tmp_path):
    from astroreco.detectors.ecal.evaluate import evaluate, table

    path = files / "spectrum.h5"
    reconstruct(path, method="cog", progress=False)
    reconstruct(path, method="cell_ratio", scurve=files / "scurve.json", progress=False)
    result = evaluate(path, tmp_path / "ev")
    assert set(result["methods"]) == {"cog", "cell_ratio"}
    q = result["methods"]["cog"]["quantities"]["theta"]
    assert q["fit"]["a"] > 0 and q["sigma_at_10gev"] > q["sigma_at_300gev"]
    assert "centre of gravity" in table(result)
    assert all(Path(p).is_file() for p in result["plots"])
    assert json.loads((tmp_path / "ev" / "evaluation.json").read_text())["methods"]


def test_cli_chain_and_user_errors(files, tmp_path):
    out = tmp_path / "cli.h5"
    run(["ecal", "simulate", "-o", out, "-n", 300, "--energy", "50", "--seed", 3, "-q"])
    run(["ecal", "reconstruct", out, "--method", "cog", "-q"])
    r = run(["ecal", "evaluate", out, "-o", tmp_path / "ev"])
    assert "centre of gravity" in r.output
    assert_user_error(run(["ecal", "simulate", "-o", out, "-n", 10, "-q"], ok=False), "exists")
    assert_user_error(run(["ecal", "reconstruct", tmp_path / "missing.h5", "-q"], ok=False),
                      "no such event file")
    assert_user_error(run(["ecal", "reconstruct", out, "--method", "cell_ratio", "--scurve",
                           tmp_path / "none.json", "-q"], ok=False), "S-curve")
