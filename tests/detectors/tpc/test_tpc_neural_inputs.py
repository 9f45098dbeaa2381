"""Network inputs of the TPC networks: voxel grouping, cube symmetries, padding."""

import numpy as np
import pytest

from astroreco.detectors.tpc.neural import (GRID_SIZE, SYMMETRIES, TTA_SYMMETRIES, TpcNetConfig,
                                            apply_symmetry, group_voxels, network_inputs,
                                            symmetry_matrix)
from astroreco.errors import InputError


def _events(rng, n=4):
    sizes = rng.integers(5, 40, n)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    coords, values = [], []
    for s in sizes:
        c = np.unique(rng.integers(30, 90, (s * 2, 3)), axis=0)[:s]
        coords.append(c)
        values.append(rng.uniform(1, 10, len(c)))
    sizes = [len(c) for c in coords]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return offsets, np.concatenate(coords), np.concatenate(values)


def test_group_voxels_sums_charge_per_block():
    rng = np.random.default_rng(1)
    offsets, coords, values = _events(rng)
    o2, c2, v2 = group_voxels(offsets, coords, values, 2)
    assert len(o2) == len(offsets)
    for k in range(len(offsets) - 1):
        a, b = offsets[k], offsets[k + 1]
        a2, b2 = o2[k], o2[k + 1]
        assert v2[a2:b2].sum() == pytest.approx(values[a:b].sum(), rel=1e-5)
        # every coarse voxel holds exactly the charge of its fine voxels
        blocks = {}
        for c, v in zip(coords[a:b] // 2, values[a:b]):
            blocks[tuple(c)] = blocks.get(tuple(c), 0.0) + v
        got = {tuple(c): v for c, v in zip(c2[a2:b2], v2[a2:b2])}
        assert got.keys() == blocks.keys()
        for key in got:
            assert got[key] == pytest.approx(blocks[key], rel=1e-5)
    assert c2.max() < GRID_SIZE // 2
    same = group_voxels(offsets, coords, values, 1)
    assert np.array_equal(same[1], coords)


def test_subvoxel_channels_hold_each_voxel_of_a_block():
    rng = np.random.default_rng(4)
    offsets, coords, values = _events(rng)
    o2, c2, v2 = group_voxels(offsets, coords, values, 2, channels=True)
    o1, c1, v1 = group_voxels(offsets, coords, values, 2)
    assert v2.shape == (len(c1), 8) and np.array_equal(o1, o2) and np.array_equal(c1, c2)
    assert np.allclose(v2.sum(1), v1, rtol=1e-5)
    for k in range(len(offsets) - 1):
        lo = o2[k]
        where = {tuple(c): i for i, c in enumerate(c2[lo:o2[k + 1]], lo)}
        for c, v in zip(coords[offsets[k]:offsets[k + 1]], values[offsets[k]:offsets[k + 1]]):
            a, b, d = c % 2
            assert v2[where[tuple(c // 2)], (a * 2 + b) * 2 + d] == pytest.approx(v)
    # every voxel lands in one channel: as many non-zero channels as voxels
    assert np.count_nonzero(v2) == len(values)


@pytest.mark.parametrize("symmetry", [0, 7, 22, 45])
def test_subvoxel_inputs_are_the_inputs_of_the_transformed_event(symmetry):
    """A symmetry applied to the inputs equals the inputs of the event transformed on the
    120^3 grid: the channels move with the voxels inside each block."""
    rng = np.random.default_rng(5)
    offsets, coords, values = _events(rng)
    cfg = TpcNetConfig(subvoxels=True)
    x = network_inputs(offsets, coords, values, cfg, symmetry=symmetry)
    event = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    moved = apply_symmetry(coords, event, np.full(len(offsets) - 1, symmetry), GRID_SIZE)
    # sorted per event as a fresh event file's voxels are
    order = np.lexsort((moved[:, 2], moved[:, 1], moved[:, 0], event))
    y = network_inputs(offsets, moved[order], values[order], cfg)
    assert x["values"].shape[-1] == 8
    for k in range(len(offsets) - 1):
        n = x["n_voxels"][k]
        got = {tuple(c): tuple(v) for c, v in zip(x["coords"][k, :n], x["values"][k, :n])}
        want = {tuple(c): tuple(v) for c, v in zip(y["coords"][k, :n], y["values"][k, :n])}
        assert got == want
    # summed over the channels, the same as the plain grouped inputs under the symmetry
    plain = network_inputs(offsets, coords, values, TpcNetConfig(), symmetry=symmetry)
    for k in range(len(offsets) - 1):
        n = plain["n_voxels"][k]
        a = {tuple(c): v for c, v in zip(plain["coords"][k, :n], plain["values"][k, :n])}
        b = {tuple(c): v.sum() for c, v in zip(x["coords"][k, :n], x["values"][k, :n])}
        assert a.keys() == b.keys() and all(a[c] == pytest.approx(b[c]) for c in a)


@pytest.mark.parametrize("grid", [120, 60])
def test_symmetries_act_on_voxels_as_on_directions(grid):
    """c' - centre = M (c - centre) for every cube symmetry, centre = (grid - 1) / 2."""
    rng = np.random.default_rng(2)
    coords = rng.integers(0, grid, (50, 3))
    centre = (grid - 1) / 2
    for s in range(len(SYMMETRIES)):
        m = symmetry_matrix(s)
        assert np.allclose(m @ m.T, np.eye(3))
        got = apply_symmetry(coords, np.zeros(50, int), np.array([s]), grid)
        assert np.allclose(got - centre, (coords - centre) @ m.T)
        assert got.min() >= 0 and got.max() < grid
    assert np.array_equal(symmetry_matrix(0), np.eye(3))
    assert len({SYMMETRIES[s] for s in range(48)}) == 48
    for subset in TTA_SYMMETRIES.values():
        assert len(set(subset)) == len(subset)


def test_network_inputs_pad_and_scale():
    rng = np.random.default_rng(3)
    offsets, coords, values = _events(rng)
    cfg = TpcNetConfig(voxel_group=1, charge_scale=2.0)
    x = network_inputs(offsets, coords, values, cfg, pad_to=64)
    assert x["coords"].shape == (4, 64, 3) and x["values"].shape == (4, 64)
    assert np.array_equal(x["n_voxels"], np.diff(offsets))
    for k in range(4):
        n = x["n_voxels"][k]
        assert np.array_equal(x["coords"][k, :n], coords[offsets[k]:offsets[k + 1]])
        assert np.allclose(x["values"][k, :n], values[offsets[k]:offsets[k + 1]] / 2.0)
        assert not x["values"][k, n:].any()
    with pytest.raises(InputError, match="pad_to"):
        network_inputs(offsets, coords, values, cfg, pad_to=3)


@pytest.mark.parametrize("kw, match", [
    ({"architecture": "cnn"}, "architecture"), ({"voxel_group": 7}, "voxel_group"),
    ({"charge_scale": 0}, "charge_scale"), ({"tta": 3}, "tta"), ({"backend": "cuda"}, "backend"),
    ({"subvoxels": True, "voxel_group": 1}, "subvoxels"), ({"subvoxels": "yes"}, "subvoxels"),
])
def test_config_errors_are_one_line(kw, match):
    with pytest.raises(InputError, match=match) as err:
        TpcNetConfig(**kw)
    assert "\n" not in str(err.value)


def test_config_round_trips_through_json():
    import json

    for cfg in (TpcNetConfig(), TpcNetConfig.paper("rcn"), TpcNetConfig(subvoxels=True)):
        again = TpcNetConfig(**json.loads(json.dumps(cfg.to_dict())))
        assert again == cfg
    assert TpcNetConfig.paper().grid == 120 and TpcNetConfig().grid == 60
