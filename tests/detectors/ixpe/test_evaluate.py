"""evaluate(): every method side by side, kappa calibration, impact RMSE and the ratios to
the moments analysis, on tiny simulated files with a fake neural reconstruction."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from astroreco.detectors.ixpe import neural
from astroreco.detectors.ixpe.evaluate import evaluate, fit_angles
from astroreco.detectors.ixpe.pipeline import EVENT_SCHEMA, reconstruct, simulate
from astroreco.io.store import EventFile, write_reconstruction
from astroreco.stats.directional import expected_modulation, wrap_half_pi

N_EMPTY = 3  # events given the "empty track" status: NaN angle, kappa and weight


def _fake_nn(path, seed):
    """A calibrated neural reconstruction made from the truth: 2(phi - phi_true) drawn from a
    von Mises of the stored kappa, impact point with 30 um Gaussian noise."""
    rng = np.random.default_rng(seed)
    with EventFile(path, EVENT_SCHEMA) as ef:
        truth = ef.truth()
        offsets, _ = ef.hits()
    n = truth["phi"].size
    kappa = rng.gamma(2.0, 0.8, n)
    resid = stats.vonmises.rvs(kappa, random_state=rng) / 2.0
    sigma = 0.03
    table = {
        "phi": wrap_half_pi(truth["phi"] + resid),  # modulo pi, as the network returns it
        "kappa": kappa, "weight": expected_modulation(kappa),
        "phi_spread": np.full(n, 0.1),
        "x_mm": truth["x_mm"] + rng.normal(0, sigma, n),
        "y_mm": truth["y_mm"] + rng.normal(0, sigma, n),
        "sigma_x_mm": np.full(n, sigma), "sigma_y_mm": np.full(n, sigma),
        "energy_kev": truth["energy_kev"] + rng.normal(0, 0.3, n),
        "sigma_energy_kev": np.full(n, 0.3),
        "n_pixels": np.diff(offsets), "status": np.zeros(n),
    }
    table["status"][:N_EMPTY] = 1
    for name, dtype, _, _ in neural.OUTPUT_FIELDS:
        table[name] = np.asarray(table[name]).astype(dtype)
        if dtype == "f4":
            table[name][:N_EMPTY] = np.nan
    write_reconstruction(path, "nn", table, fields=neural.OUTPUT_FIELDS,
                         config={"method": "nn", "config": {"fake": True}})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    pol, unpol = d / "pol.h5", d / "unpol.h5"
    simulate(pol, n_events=2400, energy="3,6", polarization_degree=1.0,
             polarization_angle_deg=30.0, seed=31, progress=False)
    simulate(unpol, n_events=800, energy="4", seed=32, progress=False)
    for i, path in enumerate((pol, unpol)):
        reconstruct(path, progress=False)
        _fake_nn(path, 40 + i)
    return pol, unpol


@pytest.fixture(scope="module")
def result(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return evaluate(list(files), out_dir=out, methods=["nn", "moments"]), out


def test_fit_angles_keep_the_modulation():
    rng = np.random.default_rng(0)
    phi = wrap_half_pi(stats.vonmises.rvs(1.0, loc=1.0, size=4000, random_state=rng) / 2)
    folded = fit_angles(phi)
    assert (folded < -np.pi / 2).mean() == pytest.approx(0.5, abs=0.01)
    np.testing.assert_allclose(np.cos(2 * folded), np.cos(2 * phi), atol=1e-12)


def test_rows_and_side_by_side(result):
    metrics, out = result
    rows = metrics["rows"]
    assert {(r["file"], r["method"]) for r in rows} == {
        (f, m) for f in ("pol", "unpol") for m in ("nn", "moments")}
    pol = [r for r in rows if r["file"] == "pol"]
    assert sorted({r["energy_kev"] for r in pol}) == [3.0, 6.0]
    for r in pol:
        # the fit agrees with the Stokes estimate also for angles known modulo pi
        assert abs(r["mu_fit"] - r["mu"]) < 4 * r["mu_err"] + 0.02, r
        for key in ("rmse_x_mm", "rmse_y_mm", "rmse_xy_mm", "mdp99", "mdp99_weighted",
                    "n_eff"):
            assert r[key] is not None and math.isfinite(r[key]), (key, r)
        assert r["mdp99_weighted"] > 0 and r["n_eff"] <= r["n_reconstructed"]
    nn = [r for r in pol if r["method"] == "nn"]
    # the empty tracks (NaN weight) are excluded, not propagated
    assert sum(r["n_events"] - r["n_reconstructed"] for r in nn) == N_EMPTY
    for r in nn:
        assert r["rmse_x_mm"] == pytest.approx(0.03, rel=0.15)
    unpol = [r for r in rows if r["file"] == "unpol"]
    assert all("amplitude_2" in r and "amplitude_6_err" in r for r in unpol)


def test_kappa_calibration_block(result):
    metrics, _ = result
    blocks = metrics["kappa_calibration"]
    assert {(b["file"], b["method"]) for b in blocks} == {("pol", "nn"), ("unpol", "nn")}
    for b in blocks:
        assert b["n_excluded"] == 0  # NaN rows never reach the calibration
        assert b["bins"] and all(x["n"] >= 200 for x in b["bins"])
        assert abs(b["ratio"] - 1.0) < 4 * b["ratio_err"]  # the fake is calibrated
        for x in b["bins"]:
            assert abs(x["pull"]) < 4.5
    pol = next(b for b in blocks if b["file"] == "pol")
    assert [e["energy_kev"] for e in pol["by_energy"]] == [3.0, 6.0]


def test_comparison_plots_report_and_strict_json(result):
    metrics, out = result
    cmp = metrics["comparison"]
    assert {(c["file"], c["energy_kev"]) for c in cmp} == {
        ("pol", 3.0), ("pol", 6.0), ("unpol", 4.0)}
    for c in cmp:
        assert c["method"] == "nn" and c["versus"] == "moments"
        assert 0 < c["rmse_x_ratio"] < 1 and 0 < c["rmse_y_ratio"] < 1
    assert all("mu_ratio" in c and "mdp99_ratio" in c for c in cmp if c["file"] == "pol")
    for name in ("kappa_calibration.png", "impact_rmse.png", "mu_vs_energy.png",
                 "modulation_curves_pol.png", "spurious_modulation.png", "report.html"):
        assert (out / name).stat().st_size > 0, name
    html = (out / "report.html").read_text()
    assert "Ratios to the moments" in html and "Calibration of kappa" in html

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    text = (out / "metrics.json").read_text()
    assert json.loads(text, parse_constant=no_constants)["rows"]
