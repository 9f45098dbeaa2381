"""``astroreco ixpe simulate|reconstruct|evaluate|info`` end to end, and bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from clirun import assert_user_error as _assert_user_error
from clirun import run as _run

N = 300


def _simulate(out, seed=1, extra=()):
    return _run(["ixpe", "simulate", "-o", out, "-n", N, "--energy", "4", "--pd", "1",
                 "--seed", seed, "-q", *extra])


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """One simulated file (seed 1), never modified by the tests that use it."""
    d = tmp_path_factory.mktemp("sim")
    result = _simulate(d / "ev.h5")
    summary = json.loads(result.stdout)
    return d / "ev.h5", summary


def test_simulate_reconstruct_evaluate_info(tmp_path, monkeypatch, simulated):
    monkeypatch.chdir(tmp_path)
    result = _simulate("ev.h5")
    summary = json.loads(result.stdout)
    assert summary["n_simulated"] == N
    assert 0 < summary["n_stored"] <= N
    assert summary["trigger_efficiency"] == pytest.approx(summary["n_stored"] / N)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev.h5"]  # no temp file left

    result = _run(["ixpe", "reconstruct", "ev.h5", "-q", "--fits", "ev.fits"])
    reco = json.loads(result.stdout)
    assert reco["method"] == "moments"
    assert reco["n_events"] == summary["n_stored"]
    assert (tmp_path / "ev.fits").stat().st_size > 0
    with h5py.File("ev.h5", "r") as f:
        assert "moments" in f["reco"]
        assert f["reco/moments/phi"].shape == (summary["n_stored"],)

    result = _run(["ixpe", "evaluate", "ev.h5", "-o", "out"])
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rows"]
    assert {r["method"] for r in metrics["rows"]} == {"moments"}
    assert all(r["polarization_degree"] == 1.0 for r in metrics["rows"])
    assert any("mu" in r for r in metrics["rows"])
    pngs = sorted(out.glob("*.png"))
    assert pngs
    for p in pngs + [out / "report.html"]:
        assert p.stat().st_size > 0, p
    assert "moments" in (out / "report.html").read_text()

    result = _run(["ixpe", "info", "ev.h5"])
    info = json.loads(result.stdout)
    assert info["detector"] == "ixpe"
    assert info["n_events"] == summary["n_stored"]
    assert info["n_simulated"] == N
    assert info["methods"] == ["moments"]
    assert info["config"]

    # the same seed in another directory gives the same events
    ref, _ = simulated
    with h5py.File("ev.h5", "r") as a, h5py.File(ref, "r") as b:
        for name in ("events/offsets", "events/hits/col", "events/hits/charge"):
            np.testing.assert_array_equal(a[name][:], b[name][:])


def test_same_seed_same_events(tmp_path, simulated):
    ref, summary = simulated
    _simulate(tmp_path / "again.h5", seed=1)
    _simulate(tmp_path / "other.h5", seed=2)
    with h5py.File(ref, "r") as a, h5py.File(tmp_path / "again.h5", "r") as b:
        assert set(a["truth"]) == set(b["truth"]) and len(a["truth"]) > 0
        for k in a["truth"]:
            np.testing.assert_array_equal(a["truth"][k][:], b["truth"][k][:])
        for k in a["events/hits"]:
            np.testing.assert_array_equal(a["events/hits"][k][:], b["events/hits"][k][:])
        np.testing.assert_array_equal(a["events/offsets"][:], b["events/offsets"][:])
        np.testing.assert_array_equal(a["events/window"][:], b["events/window"][:])
    with h5py.File(ref, "r") as a, h5py.File(tmp_path / "other.h5", "r") as c:
        assert not np.array_equal(a["truth/phi"][:], c["truth/phi"][:])


@pytest.mark.parametrize("args, needle", [
    (["--pd", "1.5"], "polarization degree"),
    (["--energy", "0.1"], "energy"),
    (["--energy", "abc"], "--energy"),
    (["--energy", "2:1"], "energy"),
    (["-n", "0"], "--n-events"),
    (["--chunk-size", "0"], "--chunk-size"),
])
def test_simulate_bad_input(tmp_path, args, needle):
    base = {"-o": str(tmp_path / "x.h5"), "-n": "20", "--energy": "4", "--pd": "0"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    flat = [v for kv in base.items() for v in kv]
    result = _run(["ixpe", "simulate", *flat, "-q"], ok=False)
    _assert_user_error(result, needle)
    assert list(tmp_path.iterdir()) == []


def test_simulate_negative_seed_is_usage_error(tmp_path):
    result = _run(["ixpe", "simulate", "-o", tmp_path / "x.h5", "-n", 5, "--seed", -1, "-q"],
                  ok=False)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_reconstruct_missing_file(tmp_path):
    path = tmp_path / "missing.h5"
    result = _run(["ixpe", "reconstruct", path, "-q"], ok=False)
    _assert_user_error(result, "missing.h5")


def test_reconstruct_corrupt_file(tmp_path, simulated):
    ref, _ = simulated
    data = ref.read_bytes()
    bad = tmp_path / "bad.h5"
    bad.write_bytes(data[: len(data) // 2])
    result = _run(["ixpe", "reconstruct", bad, "-q"], ok=False)
    _assert_user_error(result, "bad.h5")
    text = tmp_path / "text.h5"
    text.write_text("hello\n")
    result = _run(["ixpe", "reconstruct", text, "-q"], ok=False)
    _assert_user_error(result, "text.h5")
    result = _run(["ixpe", "info", text], ok=False)
    _assert_user_error(result, "text.h5")


def test_evaluate_without_reconstruction(tmp_path, simulated):
    ref, _ = simulated
    result = _run(["ixpe", "evaluate", ref, "-o", tmp_path / "out"], ok=False)
    _assert_user_error(result, "no reconstruction", "reconstruct")


def test_simulate_existing_file_needs_overwrite(tmp_path):
    path = tmp_path / "ev.h5"
    path.write_bytes(b"precious")
    result = _run(["ixpe", "simulate", "-o", path, "-n", 30, "--seed", 3, "-q"], ok=False)
    _assert_user_error(result, "exists", "--overwrite")
    assert path.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev.h5"]
    _run(["ixpe", "simulate", "-o", path, "-n", 30, "--seed", 3, "-q", "--overwrite"])
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "astroreco-events"
        assert int(f.attrs["n_simulated"]) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev.h5"]


def test_unknown_method(tmp_path, simulated):
    ref, _ = simulated
    path = tmp_path / "ev.h5"
    path.write_bytes(ref.read_bytes())
    result = _run(["ixpe", "reconstruct", path, "--method", "magic", "-q"], ok=False)
    _assert_user_error(result, "magic", "moments")
    with h5py.File(path, "r") as f:
        assert list(f["reco"]) == []
    result = _run(["ixpe", "evaluate", path, "-o", tmp_path / "out", "--method", "magic"],
                  ok=False)
    _assert_user_error(result, "no reconstruction")


def test_train_then_reconstruct_and_evaluate_nn(tmp_path):
    ev = tmp_path / "ev.h5"
    _simulate(ev)
    run = tmp_path / "run"
    out = _run(["ixpe", "train", ev, "-o", run, "--image-size", "12", "--widths", "4,8,8",
                "--epochs", "1", "--batch-size", "32", "--max-steps-per-epoch", "3",
                "--val-fraction", "0.2", "-q"]).output
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["n_train"] == 240 and (run / "model" / "weights.safetensors").exists()
    # a second run into the same directory must say how to continue
    _assert_user_error(_run(["ixpe", "train", ev, "-o", run, "-q"], ok=False), "--resume")
    # fine-tuning starts from the trained weights, with the model's network
    tuned = tmp_path / "tuned"
    out = _run(["ixpe", "train", ev, "-o", tuned, "--init", run / "model", "--angle-loss",
                "nll", "--epochs", "1", "--batch-size", "32", "--max-steps-per-epoch", "1",
                "--val-fraction", "0.2", "-q"]).output
    cfg = json.loads((tuned / "model" / "config.json").read_text())
    assert cfg["network"]["widths"] == [4, 8, 8] and cfg["network"]["angle_loss"] == "nll"
    assert cfg["training"]["init"] == str(run / "model")
    assert "started from the weights of" in (tuned / "model" / "card.md").read_text()
    _assert_user_error(_run(["ixpe", "train", ev, "-o", tmp_path / "t2", "--init", run / "model",
                             "--widths", "8,8,8", "-q"], ok=False), "drop --widths")
    _run(["ixpe", "reconstruct", ev, "--method", "nn", "--model", run / "model", "--tta", "1",
          "-q"])
    _run(["ixpe", "reconstruct", ev, "-q"])
    report = tmp_path / "report"
    _run(["ixpe", "evaluate", ev, "-o", report, "--method", "moments", "--method", "nn"])
    rows = json.loads((report / "metrics.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"moments", "nn"}


def test_train_bad_options(tmp_path):
    ev = tmp_path / "ev.h5"
    _simulate(ev)
    _assert_user_error(_run(["ixpe", "train", ev, "-o", tmp_path / "r", "--widths", "a,b"],
                            ok=False), "--widths")
    _assert_user_error(_run(["ixpe", "train", ev, "-o", tmp_path / "r", "--image-size", "10"],
                            ok=False), "multiple of 4")
    _assert_user_error(_run(["ixpe", "reconstruct", ev, "--method", "nn", "--model",
                             tmp_path / "missing"], ok=False), "not found")


def test_spurious_calibration_then_evaluate(tmp_path):
    cal_ev, test_ev = tmp_path / "cal.h5", tmp_path / "test.h5"
    for path, seed in ((cal_ev, 3), (test_ev, 4)):
        _run(["ixpe", "simulate", "-o", path, "-n", 2000, "--energy", "2,4", "--seed", seed,
              "-q"])
        _run(["ixpe", "reconstruct", path, "-q"])
    cal = tmp_path / "cal.json"
    out = json.loads(_run(["ixpe", "spurious", cal_ev, "-o", cal]).output)
    assert out["method"] == "moments" and sum(out["n"]) > 1900 and len(out["q"]) >= 2
    report = tmp_path / "report"
    _run(["ixpe", "evaluate", test_ev, "-o", report, "--spurious", cal])
    rows = json.loads((report / "metrics.json").read_text())["rows"]
    assert all("amplitude_2_calibrated" in r for r in rows)
    # the Level-2 file carries the corrected Stokes parameters: their mean over the
    # calibration events themselves is zero per energy bin
    l2 = tmp_path / "cal.fits"
    _run(["ixpe", "reconstruct", cal_ev, "--fits", l2, "--spurious", cal, "-q"])
    from astroreco.detectors.ixpe.level2 import read_level2

    columns = read_level2(l2).columns
    # (events outside the edges use the nearest bin)
    k = np.clip(np.searchsorted(out["edges_kev"], columns["ENERGY"], side="right") - 1, 0,
                len(out["q"]) - 1)
    for b in np.unique(k):
        assert abs(columns["Q"][k == b].mean()) < 1e-4
        assert abs(columns["U"][k == b].mean()) < 1e-4
    assert np.allclose(columns["Q"] + np.array(out["q"])[k], 2 * np.cos(2 * columns["DETPHI"]),
                       atol=1e-5)
    _assert_user_error(_run(["ixpe", "reconstruct", cal_ev, "--spurious", cal], ok=False),
                       "give --fits")
    _assert_user_error(_run(["ixpe", "reconstruct", cal_ev, "--method", "nn", "--fits",
                             tmp_path / "nn.fits", "--spurious", cal], ok=False),
                       "measured for method 'moments', not 'nn'")
    # a polarized file is refused as a calibration source
    pol = tmp_path / "pol.h5"
    _simulate(pol)
    _run(["ixpe", "reconstruct", pol, "-q"])
    _assert_user_error(_run(["ixpe", "spurious", pol, "-o", tmp_path / "x.json"], ok=False),
                       "unpolarized")
