"""``astroreco ecal simulate|reconstruct|train|evaluate`` end to end, and bad input."""

from __future__ import annotations

import json

from clirun import assert_user_error, run


def test_simulate_train_reconstruct_evaluate(tmp_path):
    train, val = tmp_path / "train.h5", tmp_path / "val.h5"
    s = json.loads(run(["ecal", "simulate", "-o", train, "-n", 300, "--energy", "20:200",
                        "--seed", 1, "-q"]).output)
    assert 0 < s["n_stored"] <= 300
    run(["ecal", "simulate", "-o", val, "-n", 150, "--energy", "20:200", "--seed", 2, "-q"])
    out = run(["ecal", "train", train, "-o", tmp_path / "run", "--val-events", val,
               "--width", 2, "--epochs", 1, "--batch-size", 32,
               "--max-steps-per-epoch", 3, "--detector-augment", 0.05, 0.01, 2,
               "--nll-beta", 0.5, "-q"]).output
    assert json.loads(out.strip().splitlines()[-1])["model"].endswith("model")
    cfg = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["network"]
    assert cfg["crop_cells"] == 16 and cfg["nll_beta"] == 0.5
    assert (cfg["aug_gain_spread"], cfg["aug_dead_fraction"], cfg["aug_noise_mev"]) == \
        (0.05, 0.01, 2.0)
    for method in ("cog", "cell_ratio"):
        run(["ecal", "reconstruct", val, "--method", method, "-q"])
    r = json.loads(run(["ecal", "reconstruct", val, "--method", "nn", "--model",
                        tmp_path / "run" / "model", "-q"]).output)
    assert r["name"] == "nn" and r["failed"] == 0
    text = run(["ecal", "evaluate", val, "-o", tmp_path / "eval"]).output
    for name in ("centre of gravity", "cell ratio", "ResNet"):
        assert name in text.lower() or name in text, name
    assert (tmp_path / "eval" / "evaluation.json").is_file()


def test_ecal_bad_input(tmp_path):
    ev = tmp_path / "ev.h5"
    run(["ecal", "simulate", "-o", ev, "-n", 20, "--energy", "50", "--seed", 3, "-q"])
    assert_user_error(run(["ecal", "train", ev, "-o", tmp_path / "r", "--crop-cells", 2,
                           "-q"], ok=False), "crop_cells 2")
    assert_user_error(run(["ecal", "train", ev, "-o", tmp_path / "r", "--nll-beta", 3,
                           "-q"], ok=False), "nll_beta")
    assert_user_error(run(["ecal", "reconstruct", ev, "--method", "nn", "--model",
                           tmp_path / "nope", "-q"], ok=False), "nope")


def test_intercalibrate_then_reconstruct(tmp_path):
    data, ref, cells = tmp_path / "var.h5", tmp_path / "nom.h5", tmp_path / "cells.json"
    run(["ecal", "simulate", "-o", data, "-n", 300, "--energy", "50:200", "--variant",
         "--seed", 7, "-q"])
    run(["ecal", "simulate", "-o", ref, "-n", 300, "--energy", "50:200", "--seed", 8, "-q"])
    s = json.loads(run(["ecal", "intercalibrate", data, "--reference", ref, "-o", cells,
                        "-q"]).output)
    assert s["cells"] == 18 * 72 and s["n_data"] > 0 and s["min_energy_gev"] == 20.0
    assert "use more showers" in s["warning"]  # 300 showers are far too few
    r = json.loads(run(["ecal", "reconstruct", data, "--method", "cog", "--name", "cal",
                        "--calibration", cells, "-q"]).output)
    assert r["name"] == "cal" and r["failed"] == 0
    assert_user_error(run(["ecal", "intercalibrate", data, "--reference", ref, "-o", cells,
                           "-q"], ok=False), "file exists")
    assert_user_error(run(["ecal", "reconstruct", data, "--calibration", ref, "-q"],
                          ok=False), "not JSON")
    assert_user_error(run(["ecal", "intercalibrate", data, "--reference", ref, "-o",
                           tmp_path / "c2.json", "--min-energy", 1e6, "-q"], ok=False),
                      "energy threshold")
