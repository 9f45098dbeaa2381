"""The IXPE neural reconstruction: a tiny network trained in seconds, end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from astroreco.detectors.ixpe import neural
from astroreco.detectors.ixpe import train as ixpe_train
from astroreco.detectors.ixpe.images import ImageConfig
from astroreco.detectors.ixpe.pipeline import reconstruct, simulate
from astroreco.errors import InputError
from astroreco.io.store import EventFile
from astroreco.training import OptimConfig, TrainConfig

TINY = dict(widths=(4, 8, 8), n_features=16, image=ImageConfig(size=12))


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    path = tmp_path_factory.mktemp("nn") / "events.h5"
    simulate(path, n_events=600, energy="3:6", polarization_degree=1.0, seed=11,
             progress=False)
    return path


@pytest.fixture(scope="module")
def trained(events, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(max_epochs=1, batch_size=64, progress=False, max_steps_per_epoch=4,
                      optim=OptimConfig(lr=1e-3, warmup_steps=1))
    summary = ixpe_train.train(events, out, net=neural.IxpeNetConfig(**TINY), config=cfg,
                           val_fraction=0.2)
    return summary


def test_source_targets_follow_the_symmetry(events):
    src = ixpe_train.IxpeSource(events, 0, 50, ImageConfig(size=12))
    plain = src.load(0, 50)
    aug = src.load(0, 50, None, np.random.default_rng(1))
    assert plain["image"].shape == (50, 1, 12, 12)
    assert np.allclose(np.hypot(*plain["direction"].T), 1, atol=1e-6)
    # a symmetry moves the impact offset but keeps its length, and keeps the energy
    assert np.allclose(np.hypot(*aug["impact"].T), np.hypot(*plain["impact"].T), atol=1e-5)
    assert np.array_equal(aug["energy"], plain["energy"])
    assert not np.allclose(aug["phi"], plain["phi"])
    rows = np.array([3, 7, 20])
    sub = src.load(0, 50, rows)
    assert np.array_equal(sub["image"], plain["image"][rows])
    with pytest.raises(InputError, match="outside"):
        ixpe_train.IxpeSource(events, 0, 10_000, ImageConfig(size=12))


def test_select_rows():
    offsets = np.array([0, 2, 5, 6])
    hits = {"a": np.arange(6)}
    off, h = ixpe_train.select_rows(offsets, hits, np.array([0, 2]))
    assert list(off) == [0, 2, 3] and list(h["a"]) == [0, 1, 5]


def test_train_writes_a_model_directory(trained):
    model = trained["model"]
    cfg = json.loads((__import__("pathlib").Path(model) / "config.json").read_text())
    assert cfg["detector"] == "ixpe" and cfg["network"]["architecture"] == "multitask"
    assert cfg["training"]["n_train"] == 480 and cfg["training"]["n_val"] == 120
    card = (__import__("pathlib").Path(model) / "card.md").read_text()
    assert "480 training" in card and "Measured against the moments analysis" in card


def test_init_needs_the_same_architecture(events, trained, tmp_path):
    cfg = TrainConfig(max_epochs=1, batch_size=64, progress=False, max_steps_per_epoch=1)
    net = neural.IxpeNetConfig(**{**TINY, "widths": (4, 8, 16)})
    with pytest.raises(InputError, match="do not match|has shape"):
        ixpe_train.train(events, tmp_path / "r", net=net, config=cfg, init=trained["model"])
    with pytest.raises(InputError, match="angle_loss 'l1'"):
        neural.IxpeNetConfig(angle_loss="l1")


def test_reconstruct_with_nn(events, trained, tmp_path):
    path = tmp_path / "events.h5"
    shutil.copy(events, path)
    summary = reconstruct(path, method="nn", model=trained["model"], progress=False)
    assert summary["n_events"] == 600
    with EventFile(path) as ef:
        r = ef.reco("nn")
        truth = ef.truth()
    assert set(r) == {f[0] for f in neural.OUTPUT_FIELDS}
    assert np.all(np.isfinite(r["phi"])) and np.all(np.abs(r["phi"]) <= np.pi / 2 + 1e-6)
    assert np.all(r["kappa"] > 0) and np.all((r["weight"] >= 0) & (r["weight"] < 1))
    assert np.all(r["sigma_x_mm"] > 0)
    # the impact point is the crop centre plus a (small, untrained) offset: near the truth
    assert np.median(np.abs(r["x_mm"] - truth["x_mm"])) < 0.5


def test_tta_averages_symmetries(events, trained):
    with EventFile(events) as ef:
        off, h = ef.hits(0, 40)
    one = neural.NeuralReconstructor(trained["model"], tta=1)
    r1 = one.reconstruct(off, h["col"], h["row"], h["charge"])
    r3 = neural.NeuralReconstructor(trained["model"], tta=3).reconstruct(
        off, h["col"], h["row"], h["charge"])
    assert not np.allclose(r1["phi"], r3["phi"])
    # tta=3 is invariant (up to float error) under a 120-degree rotation of the tracks
    from astroreco.detectors.ixpe import images as im

    centres = im.track_centres(off, h["col"], h["row"], h["charge"], one.config.image)
    n = np.diff(off)
    rc = np.repeat(centres["row"], n)
    qc = np.repeat(centres["col"], n) - (rc + (rc & 1)) // 2
    r0 = h["row"].astype(np.int64)
    q0 = h["col"].astype(np.int64) - (r0 + (r0 & 1)) // 2
    m = im.SYMMETRY_MATRICES[2]
    dq = m[0, 0] * (q0 - qc) + m[0, 1] * (r0 - rc)
    dr = m[1, 0] * (q0 - qc) + m[1, 1] * (r0 - rc)
    row = rc + dr
    col = qc + dq + (row + (row & 1)) // 2
    rot = neural.NeuralReconstructor(trained["model"], tta=3).reconstruct(off, col, row,
                                                                          h["charge"])
    d = np.angle(np.exp(2j * (rot["phi"] - r3["phi"] - 2 * np.pi / 3))) / 2
    assert np.max(np.abs(d)) < 1e-3
    assert np.allclose(rot["kappa"], r3["kappa"], rtol=1e-3)


def test_bad_model_directories(trained, tmp_path, events):
    model = __import__("pathlib").Path(trained["model"])
    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    (bad / "card.md").unlink()
    with pytest.raises(InputError, match="missing card.md"):
        neural.NeuralReconstructor(bad)
    other = tmp_path / "other"
    shutil.copytree(model, other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "detector": "tpc"}))
    with pytest.raises(InputError, match="detector 'tpc'"):
        neural.NeuralReconstructor(other)
    # a configuration whose input size does not match the weights
    cfg["network"]["image"]["size"] = 24
    size = tmp_path / "size"
    shutil.copytree(model, size)
    (size / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="shape"):
        neural.NeuralReconstructor(size)
    with pytest.raises(InputError, match="not found"):
        neural.NeuralReconstructor(tmp_path / "nowhere")
    with pytest.raises(InputError, match="tta"):
        neural.NeuralReconstructor(model, tta=4)
    # a network entry of another kind, and none at all
    for name, network in (("alien", {"n_layers": 3}), ("none", None)):
        bad = tmp_path / name
        shutil.copytree(model, bad)
        (bad / "config.json").write_text(json.dumps({**cfg, "network": network}))
        with pytest.raises(InputError, match="'network'"):
            neural.NeuralReconstructor(bad)
    # tta given at load time replaces the configured one
    assert neural.NeuralReconstructor(model, tta=2).config.tta == 2
    rec = neural.NeuralReconstructor(model)
    with pytest.raises(InputError, match="NaN"):
        rec.reconstruct(np.array([0, 2]), np.array([5, 6]), np.array([5, 5]),
                        np.array([1.0, np.nan]))


def test_empty_track_is_flagged(trained):
    rec = neural.NeuralReconstructor(trained["model"])
    r = rec.reconstruct(np.array([0, 0, 2]), np.array([5, 6]), np.array([5, 5]),
                        np.array([100.0, 300.0]))
    assert list(r["status"]) == [1, 0] and np.isnan(r["phi"][0]) and np.isfinite(r["phi"][1])


@pytest.mark.parametrize("arch", ["vgg_multihead", "resnet34_impact"])
def test_other_architectures_build_and_score(arch, events):
    net = neural.IxpeNetConfig(architecture=arch, image=ImageConfig(size=16))
    model = neural.build_model(net)
    loss = neural.build_loss(net)
    batch = {k: torch.from_numpy(v) for k, v in
             ixpe_train.IxpeSource(events, 0, 8, net.image).load(0, 8).items()}
    terms = loss(model(batch), batch)
    assert torch.isfinite(terms["loss"])
    terms["loss"].backward()


def test_resnet34_impact_starts_from_torchvision_weights(events, tmp_path):
    """The seed's transfer learning: ImageNet-format weights on disk, only fc trains."""
    from astroreco.nn.backbones import resnet34

    weights = tmp_path / "resnet34_imagenet.pth"
    torch.manual_seed(0)
    torch.save(resnet34().state_dict(), weights)
    net = neural.IxpeNetConfig(architecture="resnet34_impact", image=ImageConfig(size=16),
                               pretrained=str(weights))
    cfg = TrainConfig(max_epochs=1, batch_size=16, progress=False, max_steps_per_epoch=2,
                      optim=OptimConfig(lr=1e-3, warmup_steps=1))
    summary = ixpe_train.train(events, tmp_path / "run", net=net, config=cfg, val_fraction=0.05)
    state = __import__("safetensors.torch", fromlist=["load_file"]).load_file(
        str(tmp_path / "run" / "model" / "weights.safetensors"))
    ref = torch.load(weights, weights_only=True)
    # the frozen layers are the file's (conv1 averaged over RGB), fc was trained
    assert torch.allclose(state["backbone.layer3.1.conv2.weight"], ref["layer3.1.conv2.weight"])
    assert torch.allclose(state["backbone.conv1.weight"],
                          ref["conv1.weight"].mean(1, keepdim=True))
    assert state["backbone.fc.weight"].shape == (2, 512)
    rec = neural.NeuralReconstructor(summary["model"], tta=1)
    with EventFile(events) as ef:
        off, h = ef.hits(0, 20)
    r = rec.reconstruct(off, h["col"], h["row"], h["charge"])
    assert np.all(np.isfinite(r["x_mm"])) and np.all(np.isnan(r["phi"]))
    with pytest.raises(InputError, match="resnet34_impact"):
        neural.IxpeNetConfig(pretrained=str(weights))
