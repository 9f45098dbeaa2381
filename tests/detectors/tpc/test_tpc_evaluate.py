"""TPC evaluation: the Non-ML grid search and the seed's Figure 5 and 6 plots."""

from __future__ import annotations

import numpy as np
import pytest

from astroreco.detectors.tpc import nonml, plots
from astroreco.detectors.tpc.pipeline import EVENT_SCHEMA, read_voxels, simulate
from astroreco.errors import InputError
from astroreco.io.store import EventFile
from astroreco.stats.vmf_calibration import vmf_calibration
from astroreco.stats.directional import cosine_distance, efficiency_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def validation(tmp_path_factory):
    path = tmp_path_factory.mktemp("tpc") / "val.h5"
    simulate(path, n_events=150, energy="40", sigma="443", seed=31, progress=False)
    offsets, coords, values = read_voxels(path)
    with EventFile(path, EVENT_SCHEMA) as ef:
        t = ef.truth(["dir_x", "dir_y", "dir_z"])
    truth = np.stack([t["dir_x"], t["dir_y"], t["dir_z"]], axis=1).astype(np.float64)
    return offsets, coords, values, truth


def _score(offsets, coords, values, truth, cfg):
    """Efficiency and mean cosine distance of the surviving tracks, by reconstruct."""
    out = nonml.reconstruct(offsets, coords, values, cfg)
    ok = out["status"] == 0
    pred = np.stack([out[f"dir_{c}"] for c in "xyz"], axis=1)
    return ok.mean(), cosine_distance(pred[ok], truth[ok]).mean()


def test_tuned_config_beats_the_default(validation):
    best, table = nonml.tune(*validation)
    assert isinstance(best, nonml.NonMLConfig)
    n_pairs = sum(a < b for a in nonml.DEFAULT_GRID["r_min"] for b in nonml.DEFAULT_GRID["r_max"])
    assert len(table) == n_pairs * len(nonml.DEFAULT_GRID["w0_cm"])
    eff_best, cd_best = _score(*validation, best)
    eff_default, cd_default = _score(*validation, nonml.NonMLConfig())
    assert eff_best > 0.10
    assert cd_best <= cd_default
    # the table holds what reconstruct gives for the same parameters
    for cfg, eff, cd in ((best, eff_best, cd_best),
                         (nonml.NonMLConfig(), eff_default, cd_default)):
        row = next(r for r in table
                   if (r["r_min"], r["r_max"], r["w0_cm"]) == (cfg.r_min, cfg.r_max, cfg.w0_cm))
        assert row["efficiency"] == pytest.approx(eff, abs=1e-12)
        assert row["cosine_distance"] == pytest.approx(cd, rel=1e-5)
        assert row["eligible"] and row["cosine_distance_truth_ht"] <= row["cosine_distance"]
    eligible = [r["cosine_distance"] for r in table if r["eligible"]]
    assert min(eligible) == pytest.approx(cd_best, rel=1e-5)


def test_tune_respects_min_efficiency_and_checks_input(validation):
    offsets, coords, values, truth = validation
    grid = {"r_min": (1.5, 2.3), "r_max": (3.0,), "w0_cm": (0.05, 0.4)}
    best, table = nonml.tune(offsets, coords, values, truth, grid=grid, min_efficiency=0.5)
    high = [r for r in table if r["r_min"] == 2.3]
    assert all(r["efficiency"] < 0.5 and not r["eligible"] for r in high)
    assert best.r_min == 1.5
    with pytest.raises(InputError, match="no grid point"):
        nonml.tune(offsets, coords, values, truth, grid={"r_min": (2.9,), "r_max": (3.0,),
                                                         "w0_cm": (0.05,)})
    with pytest.raises(InputError, match="r_min < r_max"):
        nonml.tune(offsets, coords, values, truth, grid={"r_min": (3,), "r_max": (2,),
                                                         "w0_cm": (0.05,)})
    with pytest.raises(InputError, match="keys"):
        nonml.tune(offsets, coords, values, truth, grid={"r_min": (1,)})
    with pytest.raises(InputError, match="truth_directions"):
        nonml.tune(offsets, coords, values, truth[:-1])
    with pytest.raises(InputError, match="min_efficiency"):
        nonml.tune(offsets, coords, values, truth, min_efficiency=1.0)


def test_single_voxel_selection_fails_the_track():
    # three voxels on a line; only the far one lies in the start window
    coords = np.array([[10, 10, 10], [11, 10, 10], [20, 10, 10]])
    q = np.array([5.0, 5.0, 1.0])
    out = nonml.reconstruct(np.array([0, 3]), coords, q, nonml.NonMLConfig(r_min=1.0))
    assert out["status"][0] == nonml.FAILED


def _is_png(path):
    return path.read_bytes()[:8] == PNG_MAGIC


def test_efficiency_curve_plot(tmp_path):
    rng = np.random.default_rng(1)
    kappa = np.exp(rng.uniform(0, 5, 2000))
    cd = rng.exponential(1.0 / kappa)
    curve = efficiency_curve(cd, kappa, np.linspace(0, 0.5, 26))
    points = [{"label": "RCN", "cut": 0.0, "mean_cos_dist": 0.11},
              {"label": "Non-ML", "cut": 0.003, "mean_cos_dist": 0.153,
               "mean_cos_dist_truth_ht": 0.108},
              {"label": "Non-ML tuned", "cut": 0.05, "mean_cos_dist": 0.098,
               "mean_cos_dist_truth_ht": 0.071}]
    out = plots.plot_efficiency_curve(curve, points, tmp_path / "fig5.png",
                                      title="40 keV, 443 um",
                                      best_expected=float(curve["mean_cos_dist"][3]) - 1e-4)
    assert out == tmp_path / "fig5.png" and _is_png(out)
    # again over the existing file, without Best-Expected and points
    plots.plot_efficiency_curve(curve, [], out, title="again")
    assert _is_png(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig5.png"]  # no temp file left
    with pytest.raises(InputError, match="curve"):
        plots.plot_efficiency_curve({"cut": [0.0]}, points, tmp_path / "x.png", title="")
    with pytest.raises(InputError, match="points"):
        plots.plot_efficiency_curve(curve, [{"label": "RCN", "cut": 1.5,
                                             "mean_cos_dist": 0.1}], tmp_path / "x.png",
                                    title="")
    with pytest.raises(InputError, match="does not exist"):
        plots.plot_efficiency_curve(curve, points, tmp_path / "no" / "x.png", title="")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig5.png"]


def test_calibration_plot(tmp_path):
    rng = np.random.default_rng(2)
    kappa = np.exp(rng.uniform(0, 7, 3000))
    u = rng.uniform(size=kappa.size)
    angle = np.arccos(np.clip(1 + np.log(u + (1 - u) * np.exp(-2 * kappa)) / kappa, -1, 1))
    rows = vmf_calibration(angle, kappa, edges=[1.0, 3.0, 10.0, 30.0, 1100.0], min_count=500)
    assert [r["enough"] for r in rows] == [False, True, False, True]  # ~470, 515, 330, 1690
    out = plots.plot_calibration(angle, kappa, rows, tmp_path / "fig6.png")
    assert _is_png(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig6.png"]
    with pytest.raises(InputError, match="kappa"):
        plots.plot_calibration(angle, -kappa, rows, tmp_path / "x.png")
    with pytest.raises(InputError, match="one value per angle"):
        plots.plot_calibration(angle, kappa[:-1], rows, tmp_path / "x.png")
    with pytest.raises(InputError, match="rows"):
        plots.plot_calibration(angle, kappa, [], tmp_path / "x.png")
    with pytest.raises(InputError, match="angle"):
        plots.plot_calibration([np.nan], [1.0], rows, tmp_path / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig6.png"]
