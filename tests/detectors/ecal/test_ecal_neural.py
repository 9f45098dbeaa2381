"""ECAL networks: targets and their inverse, tiny training runs of the three tasks, the
reconstructor, the resolution iteration, the out-of-range flag."""

import json

import numpy as np
import pytest

from astroreco.detectors.ecal.neural import (EcalNetConfig, NeuralReconstructor,
                                             axis_targets, network_inputs,
                                             predictions_to_axis, reference_from_inputs)
from astroreco.detectors.ecal.pipeline import read_images, reconstruct, simulate
from astroreco.detectors.ecal.train import fit_resolution, train
from astroreco.errors import InputError
from astroreco.training import OptimConfig, TrainConfig

TINY = dict(width=2, n_features=16)


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    d = tmp_path_factory.mktemp("ecal_nn")
    simulate(d / "train.h5", n_events=400, energy="20:200", seed=5, progress=False)
    simulate(d / "val.h5", n_events=200, energy="20:200", seed=6, progress=False)
    return d


def _config(epochs=1):
    return TrainConfig(max_epochs=epochs, batch_size=32, patience=2, progress=False,
                       threads=1, chunk_size=256, optim=OptimConfig(lr=1e-3, warmup_steps=2))


def test_targets_and_predictions_are_inverse():
    rng = np.random.default_rng(0)
    truth = {"theta_deg": rng.uniform(155, 180, 50), "phi_deg": rng.uniform(0, 360, 50),
             "x0_mm": rng.uniform(-300, 300, 50), "y0_mm": rng.uniform(-300, 300, 50)}
    ref = {"slope_x": rng.normal(0, 0.2, 50), "slope_y": rng.normal(0, 0.2, 50),
           "x0_mm": rng.uniform(-300, 300, 50), "y0_mm": rng.uniform(-300, 300, 50)}
    for task, crop in [(t, c) for t in ("angle", "position", "multitask") for c in (0, 16)]:
        cfg = EcalNetConfig(task=task, crop_cells=crop, **TINY)
        t = axis_targets(truth, cfg, ref if crop else None)
        out = {"mean": t, "log_var": np.zeros_like(t)}
        back = predictions_to_axis(out, cfg, ref if crop else None)
        if task != "position":
            assert np.allclose(back["theta_deg"], truth["theta_deg"])
        if task != "angle":
            assert np.allclose(back["x0_mm"], truth["x0_mm"])
        if task == "multitask":
            vertical = truth["theta_deg"] > 179.999
            assert np.allclose(back["phi_deg"][~vertical], truth["phi_deg"][~vertical])
            assert np.all(back["sigma_theta_deg"] > 0)


def test_cropped_network_needs_its_reference():
    cfg = EcalNetConfig(task="multitask", crop_cells=16, **TINY)
    truth = {"theta_deg": np.array([170.0]), "phi_deg": np.array([10.0]),
             "x0_mm": np.array([1.0]), "y0_mm": np.array([2.0])}
    with pytest.raises(InputError, match="reference axis"):
        axis_targets(truth, cfg)
    with pytest.raises(InputError, match="crop_cells 2"):
        EcalNetConfig(crop_cells=2)


def test_crop_follows_the_reference_axis(events):
    """The crop keeps the shower: every layer's energy inside a 16-cell window around the
    centre-of-gravity axis, the maximum near the middle; the offset channel is the cell
    position relative to that axis."""
    from astroreco.detectors.ecal.classical import centre_of_gravity, layer_cog
    from astroreco.detectors.ecal.geometry import EcalGeometry

    g = EcalGeometry()
    images = read_images(events / "train.h5", 0, 64)
    cfg = EcalNetConfig(crop_cells=16, **TINY)
    a = network_inputs(images, cfg)
    assert a["image"].shape == (64, 4, 18, 16)
    kept = a["image"][:, 0].sum(axis=(1, 2)) / 18.0        # fractions x n_layers, summed
    assert np.all(kept > 0.97)
    ref = reference_from_inputs(a)
    cog = centre_of_gravity(images)
    assert np.allclose(ref["x0_mm"], cog["x0_mm"], atol=1e-3)
    assert np.allclose(ref["slope_y"], cog["slope_y"], atol=1e-6)
    # layer centre of gravity relative to the axis, in cells, from the crop's channels
    img = a["image"][:, :, 8]          # layer 8 measures x
    rel = (img[:, 3].sum(1) / img[:, 0].sum(1)) * 8.0
    pos, _ = layer_cog(images, g)
    u_ref = ref["x0_mm"] + ref["slope_x"] * g.layer_z_mm()[8]
    full = (images[:, 8] * g.cell_centres_mm()).sum(1) / images[:, 8].sum(1)
    diff = np.abs(rel - (full - u_ref) / g.cell_mm)   # exact unless noise lies outside
    assert diff.mean() < 0.02 and diff.max() < 0.1
    assert np.allclose(a["layer_cog"][:, 8], (pos[:, 8] - u_ref) / g.cell_mm, atol=1e-4)
    # an empty event gets a finite reference and finite inputs
    empty = network_inputs(np.zeros((1, 18, 72)), cfg)
    assert all(np.isfinite(v).all() for v in empty.values())


def test_inputs_are_scale_free_and_augmented(events):
    images = read_images(events / "train.h5", 0, 8)
    cfg = EcalNetConfig(crop_cells=0, **TINY)
    a = network_inputs(images, cfg)
    b = network_inputs(images * 10.0, cfg)
    assert a["image"].shape == (8, 3, 18, 72)
    assert np.allclose(a["image"][:, [0, 2]], b["image"][:, [0, 2]], atol=1e-5)  # fractions
    assert np.allclose(b["log_energy"] - a["log_energy"], 1.0, atol=1e-5)
    # the first-moment channel over a layer's cells is that layer's centre of gravity
    from astroreco.detectors.ecal.geometry import EcalGeometry

    layer = images[0, 8].astype(float)
    cog = (layer * EcalGeometry().cell_centres_mm()).sum() / layer.sum()
    img = a["image"][0]
    assert img[2, 8].sum() / img[0, 8].sum() * 200.0 == pytest.approx(cog, abs=1e-3)
    noisy = network_inputs(images, cfg, np.random.default_rng(0))
    assert not np.allclose(noisy["image"], a["image"])


@pytest.mark.parametrize("task,crop", [("multitask", 16), ("angle", 16), ("position", 16),
                                       ("multitask", 0)])
def test_each_task_trains_and_reconstructs(events, tmp_path, task, crop):
    net = EcalNetConfig(task=task, crop_cells=crop, **TINY)
    summary = train(events / "train.h5", tmp_path / "run", net=net, config=_config(),
                    val_events=events / "val.h5")
    model = summary["model"]
    card = (tmp_path / "run" / "model" / "card.md").read_text()
    assert f"ECAL {task} network" in card
    images = read_images(events / "val.h5")
    r = NeuralReconstructor(model).reconstruct(images)
    expect = {"multitask": ["theta_deg", "phi_deg", "x0_mm", "sigma_x0_mm"],
              "angle": ["theta_deg"], "position": ["x0_mm", "y0_mm"]}[task]
    for k in expect:
        assert np.isfinite(r[k]).all(), k
    assert r["out_of_range"].mean() < 0.05   # same spectrum as the training showers
    # showers far outside the trained deposits are flagged (and a warning says so)
    r = NeuralReconstructor(model).reconstruct(images[:3] * 100.0)
    assert r["out_of_range"].all()


def test_out_of_range_is_flagged_in_the_file(events, tmp_path):
    net = EcalNetConfig(task="multitask", **TINY)
    model = train(events / "train.h5", tmp_path / "run", net=net, config=_config(),
                  val_events=events / "val.h5")["model"]
    simulate(tmp_path / "low.h5", n_events=100, energy="3", seed=9, progress=False)
    with pytest.warns(UserWarning, match="outside the range"):
        s = reconstruct(tmp_path / "low.h5", method="nn", model=model, progress=False)
    assert s["out_of_range"] > 0


def test_resolution_iteration_refits_sigma(events, tmp_path):
    net = EcalNetConfig(task="angle", **TINY)
    with pytest.raises(InputError, match="val-events"):
        train(events / "train.h5", tmp_path / "x", net=net, config=_config(), iterations=2)
    s = train(events / "train.h5", tmp_path / "run", net=net, config=_config(),
              val_events=events / "val.h5", iterations=2)
    assert [h["iteration"] for h in s["iterations"]] == [1, 2]
    cfg = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    res = cfg["network"]["resolution"]
    assert res is not None and res["a"][0] > 0
    assert len(cfg["training"]["resolution_iterations"]) == 2


def test_fit_resolution_recovers_a_and_b():
    rng = np.random.default_rng(1)
    e = np.exp(rng.uniform(np.log(2.5), np.log(4000), 50000))
    r = rng.normal(0, np.sqrt(2.0 ** 2 / e + 0.3 ** 2))
    a, b = fit_resolution(e, r)
    assert a == pytest.approx(2.0, rel=0.1) and b == pytest.approx(0.3, rel=0.1)


def test_detector_augmentation(events):
    """Dead cells, gain spread and noise are applied in training only, and checked."""
    images = read_images(events / "train.h5", 0, 16)
    cfg = EcalNetConfig(crop_cells=16, noise=0.0, aug_dead_fraction=0.5, **TINY)
    plain = network_inputs(images, cfg)
    dead = network_inputs(images, cfg, np.random.default_rng(1))
    lit = (plain["image"][:, 1] > 0).sum()
    assert 0.35 < (dead["image"][:, 1] > 0).sum() / lit < 0.65
    cfg = EcalNetConfig(crop_cells=0, noise=0.0, aug_gain_spread=0.05, **TINY)
    plain = network_inputs(images, cfg)     # full image: the cells do not move
    gain = network_inputs(images, cfg, np.random.default_rng(1))
    assert np.array_equal(gain["image"][:, 1] > 0, plain["image"][:, 1] > 0)
    assert not np.allclose(gain["image"][:, 1], plain["image"][:, 1])
    for bad in ({"aug_gain_spread": -0.1}, {"aug_dead_fraction": 1.0},
                {"aug_noise_mev": -1.0}, {"nll_beta": 2.0}):
        with pytest.raises(InputError, match=next(iter(bad))):
            EcalNetConfig(**bad)
