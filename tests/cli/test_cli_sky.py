"""``astroreco sky simulate|export|detect|detect-patches`` end to end, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clirun import assert_user_error, run

from astroreco.detectors.sky.catalog import read_catalog
from astroreco.detectors.sky.fitsio import read_counts_cube
from astroreco.detectors.sky.pipeline import read_detections, read_patches


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli_sky") / "patches.h5"
    s = json.loads(run(["sky", "simulate", "-o", path, "-n", 4, "--seed", 2, "-q"]).output)
    assert s["n_patches"] == 4 and s["n_sources_in_patch"] > 0
    return path


def test_simulate_export_detect(patches, tmp_path):
    cube, bkg = tmp_path / "cube.fits", tmp_path / "bkg.fits"
    s = json.loads(run(["sky", "export", patches, "--index", 1, "-o", cube,
                        "--background-out", bkg]).output)
    assert s["patch_id"] == 1
    c = read_counts_cube(cube, bkg)
    np.testing.assert_array_equal(c.counts, read_patches(patches, 1, 2).counts[0])
    cat, reg = tmp_path / "catalog.fits", tmp_path / "out.reg"
    s = json.loads(run(["sky", "detect", cube, "--background", bkg, "--method", "peaks",
                        "--threshold", 5, "-o", cat, "--regions", reg]).output)
    assert s["n_sources"] == len(read_catalog(cat).columns["GLON"]) > 0
    assert reg.read_text().count("circle(") == s["n_sources"]
    s = json.loads(run(["sky", "detect-patches", patches, "--method", "sep", "--name",
                        "sep_cli", "-q"]).output)
    assert s["name"] == "sep_cli" and s["n_patches"] == 4
    assert len(read_detections(patches, "sep_cli")["x_pix"]) == s["n_detections"]


def test_time_bins_option(tmp_path):
    path = tmp_path / "t.h5"
    s = json.loads(run(["sky", "simulate", "-o", path, "-n", 1, "--time-bins", 2, "--iem",
                        "B", "--mode", "asimov", "-q"]).output)
    assert (s["n_time_bins"], s["iem"], s["mode"]) == (2, "B", "asimov")
    assert read_patches(path).time_counts.shape == (1, 2, 6, 64, 64)


def test_sky_bad_input(patches, tmp_path):
    cube, bkg = tmp_path / "cube.fits", tmp_path / "bkg.fits"
    run(["sky", "export", patches, "--index", 0, "-o", cube, "--background-out", bkg])
    cat = tmp_path / "cat.fits"
    assert_user_error(run(["sky", "detect", cube, "-o", cat], ok=False),
                      "cube.fits", "background")
    assert_user_error(run(["sky", "detect", tmp_path / "nope.fits", "--background", bkg,
                           "-o", cat], ok=False), "nope.fits")
    assert_user_error(run(["sky", "detect", cube, "--background", bkg, "--method", "dao",
                           "-o", cat], ok=False), "--method", "dao")
    assert_user_error(run(["sky", "detect", cube, "--method", "nn", "--model",
                           tmp_path / "nomodel", "-o", cat], ok=False), "nomodel")
    assert_user_error(run(["sky", "detect", patches, "--background", bkg, "-o", cat],
                          ok=False), "detect-patches")
    assert_user_error(run(["sky", "detect-patches", patches, "--method", "wavelet", "-q"],
                          ok=False), "wavelet")
    assert_user_error(run(["sky", "detect-patches", tmp_path / "none.h5", "-q"], ok=False),
                      "none.h5")
    assert_user_error(run(["sky", "simulate", "-o", tmp_path / "x.h5", "-n", 0, "-q"],
                          ok=False), "--n-patches")
    assert_user_error(run(["sky", "simulate", "-o", tmp_path / "x.h5", "-n", 1, "--preset",
                           "hess", "-q"], ok=False), "--preset")
    assert_user_error(run(["sky", "simulate", "-o", patches, "-n", 1, "-q"], ok=False),
                      "exists", "--overwrite")
    assert_user_error(run(["sky", "export", patches, "--index", 0, "-o", cube], ok=False),
                      "exists")
    assert_user_error(run(["sky", "export", patches, "--index", 9, "-o", tmp_path / "c.fits"],
                          ok=False), "--index 9")
    assert not (tmp_path / "x.h5").exists() and not cat.exists()


def test_evaluate(patches, tmp_path):
    run(["sky", "detect-patches", patches, "--method", "sep", "--name", "sep_eval", "-q"])
    out = tmp_path / "eval"
    r = run(["sky", "evaluate", patches, "-o", out, "--name", "sep_eval", "--match-radius",
             0.3, "--flux-threshold", 4e-10])
    s = json.loads(r.output.strip().splitlines()[-1])
    assert set(s["methods"]) == {"sep_eval"}
    m = s["methods"]["sep_eval"]
    assert m["n_detections"] == len(read_detections(patches, "sep_eval")["x_pix"])
    assert m["purity"] is None or 0 <= m["purity"] <= 1
    assert (s["match_radius_deg"], s["flux_threshold"]) == (0.3, 4e-10)
    stored = json.loads((out / "evaluation.json").read_text())
    assert stored["methods"]["sep_eval"]["counts"]["n_detections"] == m["n_detections"]
    assert (out / "report.html").is_file() and s["n_plots"] == len(list(out.glob("*.png")))
    assert_user_error(run(["sky", "evaluate", patches, "-o", out, "--name", "nope"], ok=False),
                      "nope", "patches.h5")
    assert_user_error(run(["sky", "evaluate", patches, "-o", out, "--match-radius", 0],
                          ok=False), "--match-radius")
    assert_user_error(run(["sky", "evaluate", patches, "-o", out, "--flux-threshold", -1],
                          ok=False), "--flux-threshold")


def test_refit_background_writes_a_copy(patches, tmp_path):
    out = tmp_path / "refit.h5"
    summary = json.loads(run(["sky", "refit-background", patches, "-o", out, "-q"])
                         .output.splitlines()[-1])
    assert summary["n_patches"] == 4 and len(summary["scale_mean"]) == 6
    before, after = read_patches(patches), read_patches(out)
    assert np.array_equal(before.counts, after.counts)
    ratio = after.background / before.background
    assert np.all(np.isfinite(ratio)) and np.all((ratio >= 0.5) & (ratio <= 2.0))
    assert not np.allclose(ratio, 1.0)
    assert_user_error(run(["sky", "refit-background", patches, "-o", out, "-q"], ok=False),
                      "file exists")
    assert_user_error(run(["sky", "refit-background", patches, "-o", tmp_path / "x.h5",
                           "--min-flux", "-1", "-q"], ok=False), "--min-flux")


def test_calibrate_flux_errors_names_a_missing_model(patches, tmp_path):
    assert_user_error(run(["sky", "calibrate-flux-errors", tmp_path / "nope", patches, "-q"],
                          ok=False), "nope")
