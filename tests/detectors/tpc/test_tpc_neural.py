"""The TPC networks: every architecture runs on real voxel events, trains, saves, reloads and
reconstructs; the training source augments consistently."""

import json

import numpy as np
import pytest
import torch

from astroreco.detectors.tpc.neural import (NeuralReconstructor, TpcNetConfig, build_loss,
                                            build_model, network_inputs)
from astroreco.detectors.tpc.nonml import principal_axis
from astroreco.detectors.tpc.pipeline import read_voxels, reconstruct, simulate
from astroreco.detectors.tpc.train import TpcSource, train
from astroreco.errors import InputError
from astroreco.nn.sparse import available_backends
from astroreco.training import OptimConfig, TrainConfig

SMALL = dict(layers=(("subm", 4, 3), ("conv", 8, 3, 2), ("pool", 2), ("conv", 8, 3, 2)),
             trunk=(16,), branch=(8,), voxel_group=4)


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    path = tmp_path_factory.mktemp("tpc") / "ev.h5"
    simulate(path, n_events=48, energy="40", sigma="160:466", seed=7, progress=False)
    return path


@pytest.mark.parametrize("arch", ["hcn", "rcn", "gaussian"])
def test_every_architecture_gives_finite_loss_and_gradients(events, arch):
    torch.manual_seed(0)
    cfg = TpcNetConfig(architecture=arch, backend="torch", **SMALL)
    model, loss = build_model(cfg), build_loss(cfg)
    src = TpcSource(events, 0, 16, cfg)
    batch = {k: torch.from_numpy(v) for k, v in src.load(0, 16).items()}
    total = loss(model(batch), batch)["loss"]
    total.backward()
    assert torch.isfinite(total)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_paper_network_has_the_seed_shape():
    model = build_model(TpcNetConfig.paper(backend="torch"))
    assert model.backbone.n_features == 2160
    assert model.trunk[0].in_features == 2160 and model.trunk[0].out_features == 500
    head = model.heads["direction"]
    widths = [m.out_features for m in head.direction.branch if isinstance(m, torch.nn.Linear)]
    assert widths == [200, 50]


def test_source_augmentation_moves_voxels_and_direction_together(events):
    cfg = TpcNetConfig(voxel_group=1, backend="torch")
    src = TpcSource(events, 0, 48, cfg)
    plain = src.load(0, 48)
    aug = src.load(0, 48, rng=np.random.default_rng(3))
    assert not np.allclose(plain["direction"], aug["direction"])
    # the principal axis of each track makes the same angle with its direction before and
    # after the symmetry: voxels and truth moved together
    dots = {}
    for name, x in (("plain", plain), ("aug", aug)):
        d = []
        for k in range(48):
            n = x["n_voxels"][k]
            c = x["coords"][k, :n].astype(float)
            q = x["values"][k, :n].astype(float)
            d.append(abs(principal_axis(c - q @ c / q.sum(), q) @ x["direction"][k]))
        dots[name] = np.array(d)
    assert np.allclose(dots["plain"], dots["aug"], atol=1e-5)
    assert np.median(dots["plain"]) > 0.5
    assert np.array_equal(np.sort(plain["n_voxels"]), np.sort(aug["n_voxels"]))


def test_source_rejects_bad_rows(events):
    with pytest.raises(InputError, match="outside"):
        TpcSource(events, 40, 60, TpcNetConfig())


def test_train_save_reload_reconstruct(events, tmp_path):
    """A short run writes a model directory that reconstructs like the trained network."""
    cfg = TpcNetConfig(architecture="hcn", backend="torch", **SMALL)
    config = TrainConfig(max_epochs=2, batch_size=8, patience=2, progress=False, threads=1,
                         chunk_size=64, optim=OptimConfig(lr=1e-3, warmup_steps=2))
    s = train(events, tmp_path / "run", net=cfg, config=config, val_fraction=0.25)
    assert s["epochs"] == 2 and np.isfinite(s["best_val_loss"])
    model_dir = tmp_path / "run" / "model"
    card = (model_dir / "card.md").read_text()
    assert "HCN" in card and "recoils of 40 keV" in card
    assert json.loads((model_dir / "config.json").read_text())["detector"] == "tpc"
    net = NeuralReconstructor(model_dir, backend="torch")
    offsets, coords, values = read_voxels(events, 0, 10)
    r = net.reconstruct(offsets, coords, values)
    d = np.stack([r["dir_x"], r["dir_y"], r["dir_z"]], 1)
    assert np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-5)
    assert np.all(r["kappa"] > 0) and np.all(r["status"] == 0)
    # the reconstructor is the network: same directions as a direct forward pass
    x = {k: torch.from_numpy(v) for k, v in network_inputs(offsets, coords, values,
                                                             net.config).items()}
    with torch.no_grad():
        vec, kappa = net.model(x)["direction"]
    assert np.allclose(d, vec.numpy(), atol=1e-5)
    assert np.allclose(r["kappa"], kappa.numpy(), rtol=1e-5)
    # test-time averaging over the 48 symmetries stays a unit vector with a finite kappa
    r48 = NeuralReconstructor(model_dir, backend="torch", tta=48).reconstruct(offsets, coords,
                                                                               values)
    d48 = np.stack([r48["dir_x"], r48["dir_y"], r48["dir_z"]], 1)
    assert np.allclose(np.linalg.norm(d48, axis=1), 1, atol=1e-5)
    assert np.all(np.isfinite(r48["kappa"]))
    # and through the pipeline, stored under /reco/<name>
    summary = reconstruct(events, method="nn", name="hcn", model=model_dir, backend="torch",
                          progress=False)
    assert summary["name"] == "hcn" and summary["efficiency"] == 1.0
    # the evaluation sets the calibration test against its own noise
    from astroreco.detectors.tpc.evaluate import evaluate

    k = evaluate(events, tmp_path / "eval", n_bins=3, min_count=5,
                 null_draws=12)["kappa_methods"]["hcn"]
    null = k["calibration_null"]
    assert k["calibration_bins_checked"] >= 1 and null["draws"] == 12
    assert 0.0 <= null["p_value"] <= 1.0 and 0.0 <= null["fraction_beyond_tolerance"] <= 1.0
    assert 0.0 < null["median_max_deviation"] <= null["q90_max_deviation"]
    mixed = k["calibration_null_with_flips"]
    assert mixed["draws"] == 12 and 0 <= mixed["flips_expected"]
    # the fitted rate accounts for the events beyond 90 deg
    seen, expected = mixed["beyond_90deg"], mixed["beyond_90deg_expected"]
    assert abs(seen - expected) <= 3 * np.sqrt(seen + 1) + 1


def test_subvoxel_network_starts_from_a_summed_one(events, tmp_path):
    """--init from a network on summed voxels: the sub-voxel network computes the same
    before its first step, and trains and reconstructs with its 8 input channels."""
    from astroreco.detectors.tpc.train import _load_init

    cfg = TpcNetConfig(architecture="hcn", backend="torch", **{**SMALL, "voxel_group": 2})
    config = TrainConfig(max_epochs=1, batch_size=8, patience=2, progress=False, threads=1,
                         chunk_size=64, optim=OptimConfig(lr=1e-3, warmup_steps=2))
    train(events, tmp_path / "summed", net=cfg, config=config, val_fraction=0.25)
    sub = TpcNetConfig(**{**cfg.to_dict(), "subvoxels": True})
    model = build_model(sub)
    _load_init(model, sub, tmp_path / "summed" / "model")
    model.eval()
    plain = NeuralReconstructor(tmp_path / "summed" / "model", backend="torch")
    offsets, coords, values = read_voxels(events, 0, 12)
    with torch.no_grad():
        d0, k0 = plain.model({k: torch.from_numpy(v) for k, v in network_inputs(
            offsets, coords, values, cfg, symmetry=5).items()})["direction"]
        d1, k1 = model({k: torch.from_numpy(v) for k, v in network_inputs(
            offsets, coords, values, sub, symmetry=5).items()})["direction"]
    assert torch.allclose(d0, d1, atol=1e-5) and torch.allclose(k0, k1, rtol=1e-4)
    s = train(events, tmp_path / "sub", net=sub, config=config, val_fraction=0.25,
              init=tmp_path / "summed" / "model")
    assert np.isfinite(s["best_val_loss"])
    card = (tmp_path / "sub" / "model" / "card.md").read_text()
    assert "8 voxels of 500 um as channels" in card
    r = NeuralReconstructor(tmp_path / "sub" / "model", backend="torch", tta=2).reconstruct(
        offsets, coords, values)
    assert np.all(np.isfinite(r["kappa"])) and np.all(r["status"] == 0)
    # a summed network cannot start from a sub-voxel one: a one-line mismatch
    with pytest.raises(InputError, match="shape"):
        _load_init(build_model(cfg), cfg, tmp_path / "sub" / "model")


@pytest.mark.skipif("spconv" not in available_backends(), reason="spconv not installed")
def test_backends_agree_on_a_model(events):
    torch.manual_seed(1)
    cfg = TpcNetConfig(backend="torch")
    model = build_model(cfg)
    x = {k: torch.from_numpy(v) for k, v in
         network_inputs(*read_voxels(events, 0, 4), cfg).items()}
    with torch.no_grad():
        a = model(x)["direction"]
        from astroreco.nn.sparse import set_backend
        b = set_backend(model, "spconv")(x)["direction"]
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], rtol=1e-4)


def test_model_dir_errors(tmp_path):
    with pytest.raises(InputError):
        NeuralReconstructor(tmp_path / "missing")


def test_calibrate_kappa_stores_a_map_that_is_applied(events, tmp_path):
    from astroreco.detectors.tpc.calibrate import calibrate_kappa, calibration_features

    cfg = TpcNetConfig(architecture="hcn", backend="torch", **SMALL)
    config = TrainConfig(max_epochs=1, batch_size=8, patience=2, progress=False, threads=1,
                         chunk_size=64, optim=OptimConfig(lr=1e-3, warmup_steps=2))
    model_dir = train(events, tmp_path / "run", net=cfg, config=config,
                      val_fraction=0.25)["model"]
    offsets, coords, values = read_voxels(events, 0, 8)
    before = NeuralReconstructor(model_dir).reconstruct(offsets, coords, values)["kappa"]
    with pytest.raises(InputError, match="energy bin"):
        calibrate_kappa(model_dir, events, method="linear", n_events=24, energy_bins=2,
                        progress=False)
    with pytest.raises(InputError, match="unknown"):
        calibrate_kappa(model_dir, events, method="linear", n_events=24, features=["drift"],
                        progress=False)
    r = calibrate_kappa(model_dir, events, method="linear", n_events=24, energy_bins=1,
                        min_events=10, progress=False)
    cal = r["kappa_calibration"]
    assert r["n_events"] == 24 and r["events_per_bin"] == [24]
    assert cal["energy_edges_kev"] == [] and cal["features"] == ["voxels_per_kev"]
    assert len(cal["coef"]) == 1 and len(cal["coef"][0]) == 4
    stored = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert stored["network"]["kappa_calibration"] == cal
    after = NeuralReconstructor(model_dir).reconstruct(offsets, coords, values)["kappa"]
    z = (calibration_features(offsets, values)["voxels_per_kev"]
         - cal["feature_mean"][0][0]) / cal["feature_std"][0][0]
    c = cal["coef"][0]
    assert 0.1 <= c[1] <= 3.0 and abs(c[2]) <= 2.0 and abs(c[3]) <= 2.0  # bounded fit
    expected = np.exp(c[0] + c[1] * np.log(before) + z * (c[2] + c[3] * np.log(before)))
    assert np.allclose(after, np.maximum(expected, cfg.kappa_min), rtol=1e-4)
    # a second calibration fits the network's own kappa again, not the calibrated one
    again = calibrate_kappa(model_dir, events, method="linear", n_events=24, energy_bins=1,
                            min_events=10, progress=False)
    assert np.allclose(again["kappa_calibration"]["coef"][0], c, atol=1e-3)
    assert "per bin of measured energy" in model_card_of(tmp_path / "run" / "model")
    # without features: kappa -> s kappa^b
    plain = calibrate_kappa(model_dir, events, method="linear", n_events=24, energy_bins=1,
                            min_events=10, features=(), progress=False)["kappa_calibration"]
    assert plain["features"] == [] and len(plain["coef"][0]) == 2
    # the events' measured energy: their charge x W, 40 keV here
    assert np.allclose(calibration_features(offsets, values)["energy_kev"], 40.0, rtol=0.05)


def test_kappa_calibration_is_applied_per_energy_bin():
    from astroreco.detectors.tpc.calibrate import apply_kappa_calibration

    cal = {"energy_edges_kev": [42.5, 47.5], "coef": [[0.0, 1.0], [np.log(2.0), 1.0],
                                                        [0.0, 0.5]]}
    k = np.array([10.0, 10.0, 16.0, 16.0])
    measured = {"energy_kev": np.array([40.0, 45.0, 50.0, 47.5])}
    out = apply_kappa_calibration(k, measured, TpcNetConfig(kappa_calibration=cal)
                                  .kappa_calibration)
    assert np.allclose(out, [10.0, 20.0, 4.0, 4.0])
    assert np.allclose(apply_kappa_calibration(k, measured, None, 1.5), 1.5 * k)
    # a feature term: kappa x e^(z c) for standardised z
    cal = {"energy_edges_kev": [], "features": ["voxels_per_kev"], "feature_mean": [[10.0]],
           "feature_std": [[2.0]], "coef": [[0.0, 1.0, np.log(3.0), 0.0]]}
    cfg = TpcNetConfig(kappa_calibration=cal)
    out = apply_kappa_calibration(k, {"energy_kev": np.full(4, 40.0),
                                      "voxels_per_kev": np.array([10.0, 12.0, 8.0, 10.0])},
                                  cfg.kappa_calibration)
    assert np.allclose(out, [10.0, 30.0, 16.0 / 3.0, 16.0])
    for bad in ({"energy_edges_kev": [45.0], "coef": [[0.0, 1.0]]},
                {"energy_edges_kev": [], "coef": [[0.0]]},
                {"energy_edges_kev": [47.0, 45.0], "coef": [[0, 1], [0, 1], [0, 1]]},
                {"energy_edges_kev": [], "coef": [[0, 1, 0, 0]], "features": ["drift"],
                 "feature_mean": [[0]], "feature_std": [[1]]},
                {"energy_edges_kev": [], "coef": [[0, 1, 0, 0]],
                 "features": ["voxels_per_kev"], "feature_mean": [[0]],
                 "feature_std": [[0]]},
                {"coef": [[0.0, 1.0]]}):
        with pytest.raises(InputError, match="kappa_calibration"):
            TpcNetConfig(kappa_calibration=bad)


def test_measured_energy_handles_empty_events():
    from astroreco.detectors.tpc.calibrate import measured_energy_kev

    e = measured_energy_kev([0, 0, 2, 2], np.array([10.0, 20.0]))
    assert e[0] == 0 and e[2] == 0 and e[1] > 0


def test_learned_kappa_map_is_stored_and_applied(events, tmp_path):
    from astroreco.detectors.tpc.calibrate import NETWORK_FEATURES, calibrate_kappa
    from astroreco.nn.vmf_calibrator import apply_vmf_calibrator

    cfg = TpcNetConfig(architecture="hcn", backend="torch", tta=2, **SMALL)
    config = TrainConfig(max_epochs=1, batch_size=8, patience=2, progress=False, threads=1,
                         chunk_size=64, optim=OptimConfig(lr=1e-3, warmup_steps=2))
    model_dir = train(events, tmp_path / "run", net=cfg, config=config,
                      val_fraction=0.25)["model"]
    calib = tmp_path / "calib.h5"
    simulate(calib, n_events=500, energy="40,50", sigma="160:466", seed=8, progress=False)
    with pytest.raises(InputError, match="100 events for the kappa calibration"):
        calibrate_kappa(model_dir, [calib], n_events=100, progress=False)
    with pytest.raises(InputError, match="enough"):  # the networks' own split
        calibrate_kappa(model_dir, [calib], n_events=100, min_events=10, progress=False)
    with pytest.raises(InputError, match="unknown"):
        calibrate_kappa(model_dir, calib, features=["drift"], progress=False)
    with pytest.raises(InputError, match="method"):
        calibrate_kappa(model_dir, calib, method="spline", progress=False)
    r = calibrate_kappa(model_dir, [calib, events], members=2, min_events=200,
                        progress=False)
    cal = r["kappa_calibration"]
    per_file = json.loads((tmp_path / "run" / "model" / "config.json").read_text())[
        "training"]["kappa_calibration"]["events_per_file"]
    assert r["method"] == "mlp" and per_file[1] == 48 and r["n_events"] == sum(per_file)
    assert cal["kind"] == "mlp" and cal["features"] == list(NETWORK_FEATURES)
    stored = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert stored["network"]["kappa_calibration"]["members"] == cal["members"]
    net = NeuralReconstructor(model_dir)  # reloads and checks the stored map
    offsets, coords, values = read_voxels(calib, 0, 40)
    after = net.reconstruct(offsets, coords, values)["kappa"]
    _, raw, measured = net.predict(offsets, coords, values, features=True)
    f = np.stack([measured[name] for name in NETWORK_FEATURES], 1)
    assert np.allclose(after, np.maximum(apply_vmf_calibrator(cal, f), cfg.kappa_min),
                       rtol=1e-5)
    assert np.all(np.isfinite(after)) and not np.allclose(after, raw, rtol=1e-3)
    assert "ensemble of 2 networks" in model_card_of(tmp_path / "run" / "model")
    broken = json.loads(json.dumps(stored))
    broken["network"]["kappa_calibration"]["features"][0] = "drift"
    (tmp_path / "run" / "model" / "config.json").write_text(json.dumps(broken))
    with pytest.raises(InputError, match="unknown features"):
        NeuralReconstructor(model_dir)


def test_track_features_of_a_straight_track():
    from astroreco.detectors.tpc.calibrate import track_features

    coords = np.array([[i, 5, 5] for i in range(10)] + [[3, 3, 3], [3, 4, 3]])
    values = np.array([1.0] * 10 + [2.0, 6.0])
    f = track_features([0, 10, 12], coords, values)
    assert f["log_length"][0] == pytest.approx(0.5 * np.log(8.25))
    assert f["log_width"][0] < -10 and f["log_elongation"][0] > 10
    assert f["log_max_charge"] == pytest.approx(np.log([1.0, 6.0]))
    assert f["log_n_voxels"] == pytest.approx(np.log([10, 2]))
    assert f["log_length"][1] == pytest.approx(0.5 * np.log(0.25 * 0.75))


def model_card_of(model_dir):
    from astroreco.detectors.tpc.train import model_card

    config = json.loads((model_dir / "config.json").read_text())
    return model_card(config)


def _vmf_angles(k, rng):
    from astroreco.stats.vmf_calibration import sample_vmf_angle

    return sample_vmf_angle(k, rng)


def test_vmf_kappa_power_map_recovers_a_known_distortion():
    from astroreco.stats.kappa_maps import vmf_kappa_power_map

    rng = np.random.default_rng(1)
    k = np.exp(rng.uniform(np.log(3), np.log(80), 40000))
    angle = _vmf_angles(k, rng)
    a, b = vmf_kappa_power_map(angle, k)
    assert a == pytest.approx(0.0, abs=0.1) and b == pytest.approx(1.0, abs=0.03)
    # predictions kappa' = 0.5 kappa^1.5 are over-confident at the top: the map undoes it
    a, b = vmf_kappa_power_map(angle, 0.5 * k ** 1.5)
    assert b == pytest.approx(1 / 1.5, abs=0.03)
    assert a == pytest.approx(-np.log(0.5) / 1.5, abs=0.1)
    a, b = vmf_kappa_power_map(angle, 2 * k, power=False)
    assert b == 1.0 and np.exp(a) == pytest.approx(0.5, rel=0.03)


def test_vmf_kappa_feature_map_recovers_a_feature_dependent_distortion():
    from astroreco.stats.kappa_maps import apply_kappa_feature_map, vmf_kappa_feature_map

    rng = np.random.default_rng(3)
    k = np.exp(rng.uniform(np.log(3), np.log(80), 40000))
    f = rng.normal(size=k.size)
    true = np.exp(0.2 + 0.9 * np.log(k) + 0.3 * f - 0.1 * f * np.log(k))
    coef = vmf_kappa_feature_map(_vmf_angles(true, rng), k, f)
    assert np.allclose(coef, [0.2, 0.9, 0.3, -0.1], atol=0.05)
    assert np.allclose(apply_kappa_feature_map(k, coef, f), true, rtol=0.1)
    with pytest.raises(InputError, match="coefficients"):
        apply_kappa_feature_map(k, coef)
    with pytest.raises(InputError, match="finite"):
        vmf_kappa_feature_map(_vmf_angles(true, rng), k, np.full(k.size, np.nan))


def test_kappa_bin_edges_are_round_and_hold_every_event():
    from astroreco.stats.vmf_calibration import kappa_bin_edges, vmf_calibration

    rng = np.random.default_rng(2)
    k = rng.uniform(0.7, 61.0, 5000)
    e = kappa_bin_edges(k, n_bins=12)
    assert e[0] == k.min() and e[-1] >= k.max()
    assert np.allclose(np.diff(e[1:]), 5.0)
    rows = vmf_calibration(_vmf_angles(k, rng), k, edges=e)
    assert sum(r["n"] for r in rows) == k.size
    assert len(kappa_bin_edges(np.array([3.0]))) == 2
    with pytest.raises(InputError):
        kappa_bin_edges(np.array([0.0, 1.0]))


def test_vmf_kappa_scale_recovers_a_known_miscalibration():
    from astroreco.stats.kappa_maps import vmf_kappa_scale

    rng = np.random.default_rng(0)
    k = rng.uniform(5, 50, 20000)
    angle = _vmf_angles(k, rng)
    assert vmf_kappa_scale(angle, k) == pytest.approx(1.0, abs=0.03)
    assert vmf_kappa_scale(angle, k / 2) == pytest.approx(2.0, rel=0.03)
    assert vmf_kappa_scale(angle, 3 * k) == pytest.approx(1 / 3, rel=0.03)
    with pytest.raises(InputError):
        vmf_kappa_scale(angle, -k)
