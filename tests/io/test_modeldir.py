"""Model directories: round trip, atomic writes, and one-line errors on every bad input."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from astroreco.errors import InputError
from astroreco.io import modeldir
from astroreco.io.modeldir import (FILES, MODEL_FORMAT, MODEL_FORMAT_VERSION, load_model_dir,
                                   load_state, read_model_config, save_model_dir)

CONFIG = {"detector": "tpc", "architecture": {"name": "mlp", "hidden": 6},
          "preprocessing": {"scale": [1.5, 2.0]}, "training": {"epochs": 3}}
CARD = "# Toy model\n\nA two-layer perceptron, trained on nothing in particular. µ ✓\n"


def _net(hidden: int = 6, out: int = 2) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, hidden), nn.BatchNorm1d(hidden), nn.Tanh(),
                        nn.Linear(hidden, out))
    net[1].running_mean.uniform_()  # buffers travel too
    net[1].num_batches_tracked += 7
    return net.eval()


@pytest.fixture
def saved(tmp_path):
    net = _net()
    path = save_model_dir(tmp_path / "models" / "toy", net.state_dict(), CONFIG, CARD)
    return path, net


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_round_trip(saved, tmp_path):
    path, net = saved
    assert path == tmp_path / "models" / "toy"
    assert sorted(p.name for p in path.iterdir()) == sorted(FILES)
    assert (path / "card.md").read_text() == CARD
    state, config = load_model_dir(path, detector="tpc")
    for k, v in CONFIG.items():
        assert config[k] == v
    assert config["format"] == MODEL_FORMAT
    assert config["format_version"] == MODEL_FORMAT_VERSION
    assert "astroreco_version" in config
    assert read_model_config(path) == config
    own = net.state_dict()
    assert state.keys() == own.keys()
    for k in own:
        assert state[k].dtype == own[k].dtype and torch.equal(state[k], own[k])
    other = _net()
    for p in other.parameters():
        p.data.normal_()
    load_state(other, state, path)
    x = torch.randn(5, 3)
    with torch.no_grad():
        assert torch.equal(other(x), net(x))
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp dirs


def test_shared_weights_round_trip(tmp_path):
    """A module used twice (tied weights) appears under two names in the state dict."""
    shared = nn.Linear(2, 2)
    net = nn.ModuleDict({"a": shared, "b": nn.Sequential(shared)})
    path = save_model_dir(tmp_path / "tied", net.state_dict(), CONFIG, CARD)
    state, _ = load_model_dir(path)
    assert torch.equal(state["a.weight"], state["b.0.weight"])
    load_state(net, state, path)


@pytest.mark.parametrize("name", FILES)
def test_missing_file_is_named(saved, name):
    path, _ = saved
    (path / name).unlink()
    with pytest.raises(InputError, match=f"missing {name}") as exc:
        load_model_dir(path)
    assert str(path) in _one_line(exc)


def test_missing_directory(tmp_path):
    with pytest.raises(InputError, match="model directory not found"):
        load_model_dir(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="model directory not found"):
        read_model_config(tmp_path / "file")


def test_wrong_detector(saved):
    path, _ = saved
    with pytest.raises(InputError, match="detector 'tpc', expected one for 'ixpe'") as exc:
        load_model_dir(path, detector="ixpe")
    _one_line(exc)
    read_model_config(path, detector="tpc")


def _edit_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("changes, message", [
    (dict(format_version=99), "model format version 99, this astroreco reads 1"),
    (dict(format_version="1"), "model format version 1"),
    (dict(format="something-else"), "not an astroreco model configuration"),
])
def test_wrong_format(saved, changes, message):
    path, _ = saved
    _edit_config(path, **changes)
    with pytest.raises(InputError, match=message) as exc:
        load_model_dir(path)
    _one_line(exc)


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", "\"a string\"", b"\xff\xfe\x00"])
def test_invalid_config_json(saved, text):
    path, _ = saved
    if isinstance(text, bytes):
        (path / "config.json").write_bytes(text)
    else:
        (path / "config.json").write_text(text)
    with pytest.raises(InputError, match="config.json") as exc:
        read_model_config(path)
    _one_line(exc)


@pytest.mark.parametrize("corrupt", [
    lambda b: b"",
    lambda b: b"not a safetensors file at all",
    lambda b: b[:len(b) // 2],
    lambda b: b[:8] + b"!" + b[9:],
    lambda b: (10 ** 12).to_bytes(8, "little") + b[8:],
])
def test_corrupt_weights(saved, corrupt):
    path, _ = saved
    weights = path / "weights.safetensors"
    weights.write_bytes(corrupt(weights.read_bytes()))
    with pytest.raises(InputError, match="weights.safetensors: unreadable") as exc:
        load_model_dir(path)
    _one_line(exc)


def test_load_state_missing_and_unexpected_keys(saved):
    path, _ = saved
    state, _ = load_model_dir(path)
    bigger = nn.Sequential(*_net(), nn.Linear(2, 1))  # expects 4.weight, 4.bias too
    with pytest.raises(InputError, match=r"missing \['4.bias', '4.weight'\], unexpected \[\]"):
        load_state(bigger, state, path)
    smaller = nn.Sequential(*list(_net())[:3])  # has no 3.weight, 3.bias
    with pytest.raises(InputError, match=r"missing \[\], unexpected \['3.bias', '3.weight'\]"
                       ) as exc:
        load_state(smaller, state, path)
    assert str(path) in _one_line(exc)


def test_load_state_shape_mismatch_names_the_weight(saved):
    path, _ = saved
    state, _ = load_model_dir(path)
    wider = _net(hidden=8)
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    message = (r"weight 0\.(weight has shape \(6, 3\)|bias has shape \(6,\)), "
               r"the configured architecture expects \(8")
    with pytest.raises(InputError, match=message) as exc:
        load_state(wider, state, path)
    _one_line(exc)
    # nothing was loaded
    assert all(torch.equal(before[k], v) for k, v in wider.state_dict().items())


def test_existing_directory_needs_overwrite(saved):
    path, net = saved
    with pytest.raises(InputError, match="directory exists"):
        save_model_dir(path, net.state_dict(), CONFIG, CARD)
    assert (path / "card.md").read_text() == CARD
    save_model_dir(path, _net(hidden=4).state_dict(), {**CONFIG, "note": "v2"}, "# v2\n",
                   overwrite=True)
    state, config = load_model_dir(path)
    assert config["note"] == "v2" and state["0.weight"].shape == (4, 3)
    assert (path / "card.md").read_text() == "# v2\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["toy"]


def test_config_needs_detector(tmp_path):
    with pytest.raises(InputError, match="'detector'"):
        save_model_dir(tmp_path / "m", _net().state_dict(), {"architecture": "mlp"}, CARD)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("state, config", [
    ({"w": torch.zeros(2), "bad": [1.0, 2.0]}, CONFIG),   # not a tensor
    ({"w": torch.zeros(2)}, {**CONFIG, "x": object()}),    # not JSON-able
])
def test_failed_save_leaves_nothing(tmp_path, state, config):
    target = tmp_path / "out" / "model"
    with pytest.raises((AttributeError, TypeError)):
        save_model_dir(target, state, config, CARD)
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no half-written temp directory


def test_failed_overwrite_keeps_the_old_directory(saved):
    path, net = saved
    with pytest.raises(AttributeError):
        save_model_dir(path, {"w": "not a tensor"}, CONFIG, CARD, overwrite=True)
    state, _ = load_model_dir(path)
    assert state.keys() == net.state_dict().keys()
    assert sorted(p.name for p in path.parent.iterdir()) == ["toy"]


def test_interrupted_save_leaves_nothing(tmp_path, monkeypatch):
    """Even a KeyboardInterrupt after every file was written removes the temp dir."""
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(modeldir.os, "chmod", boom)
    with pytest.raises(KeyboardInterrupt):
        save_model_dir(tmp_path / "m", _net().state_dict(), CONFIG, CARD)
    assert list(tmp_path.iterdir()) == []


def test_written_directory_is_readable_by_others(saved):
    path, _ = saved
    assert os.stat(path).st_mode & 0o755 == 0o755


def test_load_network_builds_loads_and_reports_bad_entries(tmp_path):
    from dataclasses import dataclass

    from astroreco.io.modeldir import load_network

    @dataclass
    class Cfg:
        hidden: int = 6

    net = _net()
    good = save_model_dir(tmp_path / "good", net.state_dict(),
                          {"detector": "tpc", "network": {"hidden": 6}}, CARD)
    cfg, model = load_network(good, "tpc", Cfg, lambda c: _net(c.hidden))
    assert cfg.hidden == 6 and not model.training
    x = torch.randn(4, 3)
    assert torch.equal(model(x), net(x))
    missing = save_model_dir(tmp_path / "missing", net.state_dict(), {"detector": "tpc"}, CARD)
    with pytest.raises(InputError, match="no 'network' entry") as e:
        load_network(missing, "tpc", Cfg, lambda c: _net(c.hidden))
    _one_line(e)
    odd = save_model_dir(tmp_path / "odd", net.state_dict(),
                         {"detector": "tpc", "network": {"hidden": 6, "colour": 1}}, CARD)
    with pytest.raises(InputError, match="not a tpc network configuration"):
        load_network(odd, "tpc", Cfg, lambda c: _net(c.hidden))
    # overrides replace entries; None leaves them
    with pytest.raises(InputError, match="weights do not match|has shape"):
        load_network(good, "tpc", Cfg, lambda c: _net(c.hidden), overrides={"hidden": 5})
    assert load_network(good, "tpc", Cfg, lambda c: _net(c.hidden),
                        overrides={"hidden": None})[0].hidden == 6


def test_history_lines():
    from astroreco.io.modeldir import history_lines

    assert history_lines([]) == []
    lines = history_lines([{"epoch": 0, "train_loss": 1.5, "val_loss": 1.25},
                           {"epoch": 1, "val_loss": 0.5}])
    assert lines == ["| epoch | train loss | val loss |", "|---|---|---|",
                     "| 0 | 1.5000 | 1.2500 |", "| 1 | nan | 0.5000 |", ""]
