"""``astroreco tpc simulate`` end to end, and bad input."""

from __future__ import annotations

import json

from clirun import assert_user_error, run


def test_simulate(tmp_path):
    out = tmp_path / "ev.h5"
    summary = json.loads(run(["tpc", "simulate", "-o", out, "-n", 6, "--energy", "40",
                              "--sigma", "443", "--seed", 2, "-q"]).output)
    assert summary["n_stored"] == 6 and summary["containment"] == 1.0
    assert 4.0 < summary["mean_length_cm"] < 6.0
    assert_user_error(run(["tpc", "simulate", "-o", out, "-n", 6, "-q"], ok=False),
                      "file exists")
    assert_user_error(run(["tpc", "simulate", "-o", tmp_path / "x.h5", "-n", 6, "--sigma",
                           "a", "-q"], ok=False), "--sigma 'a'")
    assert_user_error(run(["tpc", "simulate", "-o", tmp_path / "x.h5", "-n", 0, "-q"],
                          ok=False), "--n-events")


def test_tune_reconstruct_evaluate(tmp_path):
    ev = tmp_path / "val.h5"
    run(["tpc", "simulate", "-o", ev, "-n", 60, "--energy", "40", "--sigma", "443",
         "--seed", 4, "-q"])
    tuned = json.loads(run(["tpc", "tune", ev, "-o", tmp_path / "tune.json"]).output)
    r_min, r_max, w0 = map(float, tuned["nonml_params"].split(","))
    assert 0 <= r_min < r_max and w0 > 0 and tuned["epsilon_cm"] > 0
    scans = json.loads((tmp_path / "tune.json").read_text())
    assert len(scans["nonml_scan"]) > 10 and len(scans["epsilon_scan"]) > 3
    for method in ("nonml", "nonml_truth_ht", "best_expected"):
        s = json.loads(run(["tpc", "reconstruct", ev, "--method", method, "-q"]).output)
        assert s["name"] == method and s["n_events"] == 60 and 0.5 < s["efficiency"] <= 1
    s = json.loads(run(["tpc", "reconstruct", ev, "--method", "nonml", "--name",
                        "nonml_tuned", "--nonml-params", tuned["nonml_params"], "-q"]).output)
    assert s["name"] == "nonml_tuned"
    out = run(["tpc", "evaluate", ev, "-o", tmp_path / "eval"]).output
    assert "Non-ML tuned" in out and "Best-Expected" in out
    result = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    methods = result["methods"]
    assert set(methods) == {"nonml", "nonml_truth_ht", "best_expected", "nonml_tuned"}
    # the references that use the truth are better than the analysis they bound
    assert methods["nonml_truth_ht"]["cos_dist"] <= methods["nonml"]["cos_dist"]
    assert methods["best_expected"]["cos_dist"] < methods["nonml"]["cos_dist"]
    # the truth's head-tail is right by construction; the analysis's in most events only
    assert methods["nonml_truth_ht"]["head_tail_correct"] == 1.0
    assert methods["best_expected"]["head_tail_correct"] == 1.0
    assert 0.5 < methods["nonml"]["head_tail_correct"] < 1.0
    assert "head-tail right" in out
    assert result["set"] == "40 keV, 443 um"


def test_tpc_bad_input(tmp_path):
    ev = tmp_path / "ev.h5"
    run(["tpc", "simulate", "-o", ev, "-n", 5, "--seed", 1, "-q"])
    assert_user_error(run(["tpc", "evaluate", ev, "-o", tmp_path / "e"], ok=False),
                      "no reconstruction stored")
    assert_user_error(run(["tpc", "reconstruct", ev, "--nonml-params", "1,2", "-q"], ok=False),
                      "--nonml-params")
    assert_user_error(run(["tpc", "reconstruct", ev, "--nonml-params", "3,2,0.05", "-q"],
                          ok=False), "r_min < r_max")
    assert_user_error(run(["tpc", "reconstruct", ev, "--method", "nn", "--model",
                           tmp_path / "nope", "-q"], ok=False), "nope")
    assert_user_error(run(["tpc", "tune", tmp_path / "missing.h5", "-o", tmp_path / "t.json"],
                          ok=False), "missing.h5")
    # the output is checked before the tuning scans, not after them
    assert_user_error(run(["tpc", "tune", ev, "-o", tmp_path / "no_dir" / "t.json"],
                          ok=False), "does not exist")
    (tmp_path / "t.json").write_text("{}")
    assert_user_error(run(["tpc", "tune", ev, "-o", tmp_path / "t.json"], ok=False),
                      "file exists")


def test_arrows_tutorial_runs_end_to_end(tmp_path):
    """A tiny arrows run: both networks train, reconstruct the test arrows and are scored
    next to Non-ML (quality is a benchmark, not a test)."""
    out = run(["tpc", "arrows", "-o", tmp_path / "arrows", "--n-train", 48, "--n-val", 16,
               "--n-test", 16, "--epochs", 1, "--backend", "torch", "-q"]).output
    assert "RCN" in out and "HCN" in out and "Non-ML" in out
    summary = json.loads((tmp_path / "arrows" / "tutorial.json").read_text())
    assert set(summary["cos_dist"]) == {"rcn", "hcn", "nonml"}
    assert all(0 <= v <= 2 for v in summary["cos_dist"].values())
    assert summary["hcn_min_kappa"] > 0
    for arch in ("rcn", "hcn"):
        assert (tmp_path / "arrows" / arch / "model" / "weights.safetensors").is_file()
    # calibrating kappa needs more recoils than a tiny tutorial holds: a one-line error
    test = sorted((tmp_path / "arrows" / "arrows").glob("*test*.h5"))
    assert test, sorted(p.name for p in (tmp_path / "arrows" / "arrows").iterdir())
    assert_user_error(run(["tpc", "calibrate", tmp_path / "arrows" / "hcn" / "model", test[0],
                           "-q"], ok=False), "events for the kappa calibration")
    assert_user_error(run(["tpc", "calibrate", tmp_path / "arrows" / "rcn" / "model", test[0],
                           "-q"], ok=False), "RCN")


def test_train_with_subvoxel_channels(tmp_path):
    ev = tmp_path / "ev.h5"
    run(["tpc", "simulate", "-o", ev, "-n", 24, "--energy", "40", "--seed", 5, "-q"])
    out = run(["tpc", "train", ev, "-o", tmp_path / "run", "--subvoxels", "--epochs", 1,
               "--batch-size", 8, "--max-steps-per-epoch", 2, "--val-fraction", 0.25,
               "--backend", "torch", "-q"]).output
    s = json.loads(out.strip().splitlines()[-1])  # (lightning's log lines come before)
    assert s["epochs"] == 1
    net = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["network"]
    assert net["subvoxels"] is True and net["voxel_group"] == 2
    assert_user_error(run(["tpc", "train", ev, "-o", tmp_path / "r2", "--subvoxels",
                           "--scale", "paper", "-q"], ok=False), "--subvoxels")
