"""``astroreco sky train`` (detector and per-source networks) and detection with them."""

from __future__ import annotations

import json

import pytest
import torch
from clirun import assert_user_error, run

from astroreco.detectors.sky.catalog import read_catalog
from astroreco.detectors.sky.pipeline import read_detections


def _last_json(result):
    return json.loads(result.output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("cli_sky_nn")
    run(["sky", "simulate", "-o", d / "p.h5", "-n", 16, "--seed", 4, "-q"])
    return d


def test_train_detect_with_per_source_networks(patches, tmp_path):
    p = patches / "p.h5"
    common = ["--epochs", 1, "--batch-size", 8, "--threads", 1, "-q"]
    s = _last_json(run(["sky", "train", p, "-o", tmp_path / "det", *common]))
    assert s["n_train"] + s["n_val"] == 16
    s = _last_json(run(["sky", "train", p, "-o", tmp_path / "ref", "--task", "refine",
                        "--members", 1, *common]))
    assert len(s["members"]) == 1
    s = _last_json(run(["sky", "train", p, "-o", tmp_path / "ext", "--task", "extension",
                        "--dihedral", "--cutout-size", 20, "--label-min-flux", 2e-10,
                        "--class-weights", "1,2,3", *common]))
    net = json.loads((tmp_path / "ext" / "model" / "config.json").read_text())["network"]
    assert net["dihedral"] and net["size"] == 20 and net["min_flux"] == 2e-10
    assert net["class_weights"] == [1.0, 2.0, 3.0]
    det = tmp_path / "det" / "model"
    s = _last_json(run(["sky", "detect-patches", p, "--method", "nn", "--model", det,
                        "--refiner", tmp_path / "ref" / "model", "--extension-model",
                        tmp_path / "ext" / "model", "--threshold", 0.05, "-q"]))
    table = read_detections(p, "nn")
    assert s["n_detections"] == len(table["x_pix"])
    assert {"pos_sigma_deg", "flux", "p_ext0", "ext_class"} <= set(table)
    cube, bkg, cat = tmp_path / "c.fits", tmp_path / "b.fits", tmp_path / "cat.fits"
    run(["sky", "export", p, "--index", 0, "-o", cube, "--background-out", bkg])
    s = _last_json(run(["sky", "detect", cube, "--background", bkg, "--method", "nn",
                        "--model", det, "--refiner", tmp_path / "ref" / "model",
                        "--threshold", 0.05, "-o", cat]))
    assert s["n_sources"] == len(read_catalog(cat).columns["FLUX"])


def test_train_bad_input(patches, tmp_path):
    assert_user_error(run(["sky", "train", tmp_path / "none.h5", "-o", tmp_path / "r", "-q"],
                          ok=False), "none.h5")
    assert_user_error(run(["sky", "train", patches / "p.h5", "-o", tmp_path / "r", "--task",
                           "class", "--epochs", 1, "-q"], ok=False), "time")
    assert_user_error(run(["sky", "train", patches / "p.h5", "-o", tmp_path / "r",
                           "--dihedral", "--epochs", 1, "-q"], ok=False), "--dihedral")
    assert_user_error(run(["sky", "train", patches / "p.h5", "-o", tmp_path / "r", "--task",
                           "extension", "--cutout-size", 18, "--epochs", 1, "-q"], ok=False),
                      "size")
    assert_user_error(run(["sky", "train", patches / "p.h5", "-o", tmp_path / "r",
                           "--cutout-size", 32, "--epochs", 1, "-q"], ok=False), "--cutout-size")
    for weights, what in (("1,x,1", "comma-separated numbers"), ("1,1", "class_weights")):
        assert_user_error(run(["sky", "train", patches / "p.h5", "-o", tmp_path / "r",
                               "--task", "extension", "--class-weights", weights, "--epochs",
                               1, "-q"], ok=False), what)
