"""The arrows of the seed's simple case: reproducible, isotropic, contained, head-tail visible."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from astroreco.detectors.tpc.arrows import (ArrowShape, arrow_voxels, make_arrows,
                                            split_arrows, write_arrows)
from astroreco.detectors.tpc.pipeline import EVENT_SCHEMA, check_voxels, read_voxels
from astroreco.detectors.tpc.simulate import TRUTH_FIELDS
from astroreco.errors import InputError
from astroreco.io.store import EventFile


@pytest.fixture(scope="module")
def batch():
    return make_arrows(300, seed=11)


def _directions(b):
    return np.stack([b.truth[f"dir_{c}"] for c in "xyz"], axis=1).astype(np.float64)


def _along(b, k):
    """Voxel centres of arrow k minus their centroid (voxels), and the true direction."""
    x = b.coords[b.offsets[k]:b.offsets[k + 1]] + 0.5
    return x - x.mean(axis=0), _directions(b)[k]


def test_arrows_are_reproducible_whatever_the_chunking():
    a = make_arrows(12, seed=4)
    b = make_arrows(12, seed=4)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.coords, b.coords)
    for name, *_ in TRUTH_FIELDS:
        np.testing.assert_array_equal(a.truth[name], b.truth[name])
    tail = make_arrows(4, seed=4, first=8)  # event k depends on (seed, k) only
    np.testing.assert_array_equal(tail.truth["event_id"], [8, 9, 10, 11])
    np.testing.assert_array_equal(tail.coords, a.coords[a.offsets[8]:])
    np.testing.assert_array_equal(_directions(tail), _directions(a)[8:])
    assert not np.array_equal(_directions(make_arrows(12, seed=5)), _directions(a))


def test_same_seed_same_file(tmp_path):
    p, q = tmp_path / "a.h5", tmp_path / "b.h5"
    summary = write_arrows(p, n_events=25, seed=2, chunk_size=7, progress=False)
    write_arrows(q, n_events=25, seed=2, chunk_size=25, progress=False)
    assert summary["n_stored"] == 25 and 900 < summary["mean_voxels"] < 1100
    for x, y in zip(read_voxels(p), read_voxels(q)):
        np.testing.assert_array_equal(x, y)
    with EventFile(p, EVENT_SCHEMA) as ef, EventFile(q, EVENT_SCHEMA) as eg:
        assert ef.config == eg.config
        for name, col in ef.truth().items():
            np.testing.assert_array_equal(col, eg.truth()[name])
    with pytest.raises(InputError, match="exists"):
        write_arrows(p, n_events=2, progress=False)


def test_directions_are_isotropic():
    d = _directions(make_arrows(2000, seed=3))
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-6)
    # each component of the mean of n isotropic unit vectors has sigma sqrt(1 / (3 n))
    assert np.all(np.abs(d.mean(axis=0)) < 4 * np.sqrt(1 / (3 * len(d))))
    assert stats.kstest(d[:, 2], "uniform", args=(-1, 2)).pvalue > 1e-3     # cos theta
    phi = np.arctan2(d[:, 1], d[:, 0])
    assert stats.kstest(phi, "uniform", args=(-np.pi, 2 * np.pi)).pvalue > 1e-3


def test_voxels_inside_the_grid_unique_and_uniform(batch):
    check_voxels(batch.offsets, batch.coords, batch.values, 120)  # in grid, unique, non-empty
    assert batch.coords.min() >= 0 and batch.coords.max() < 120
    assert np.all(batch.values == 1.0)
    sizes = np.diff(batch.offsets)
    np.testing.assert_array_equal(sizes, batch.truth["n_electrons"])
    # as many voxel centres as the volume of the solid, to a few percent
    assert abs(sizes.mean() / ArrowShape().volume - 1) < 0.02
    np.testing.assert_allclose(batch.truth["length_cm"], 2.0)
    assert np.all(np.isnan(batch.truth["energy_kev"])) and np.all(batch.truth["sigma_um"] == 0)


def test_box_search_finds_every_voxel_inside_the_solid():
    shape = ArrowShape(shaft_length=20, shaft_radius=3, head_length=10, head_radius=7.5)
    d = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    coords, tail = arrow_voxels(d, shape, 64)
    x = np.stack(np.meshgrid(*[np.arange(64)] * 3, indexing="ij"), -1).reshape(-1, 3)
    p = x + 0.5 - tail
    u = p @ d
    r = np.sqrt(np.maximum((p * p).sum(1) - u * u, 0))
    inside = ((u >= 0) & (u <= 20) & (r <= 3)) | \
        ((u >= 20) & (u <= 30) & (r <= 7.5 * (30 - u) / 10))
    np.testing.assert_array_equal(coords, x[inside])


def test_centre_of_mass_at_the_grid_centre_and_tail_at_start(batch):
    shape = ArrowShape()
    start = np.stack([batch.truth[f"start_{c}_cm"] for c in "xyz"], 1) / 0.05  # voxels
    d = _directions(batch)
    for k in range(0, 300, 10):
        x = batch.coords[batch.offsets[k]:batch.offsets[k + 1]] + 0.5
        assert np.linalg.norm(x.mean(axis=0) - 60.0) < 1.0
        np.testing.assert_allclose(start[k] + shape.centroid * d[k], 60.0, atol=1e-4)
        u = (x - start[k]) @ d[k]     # voxel centres from the tail (u = 0) to the tip (40)
        assert -1e-4 < u.min() < 1.0 and 37.0 < u.max() < 40.0 + 1e-4


def test_head_side_is_visible_in_the_voxels(batch):
    for k in range(len(batch)):
        x, d = _along(batch, k)
        u = x @ d                          # (n,) position along the true direction (voxels)
        # the dense head is ahead of the centroid and the thin shaft trails behind it: the
        # tip is closer to the centroid than the tail is, and the third moment is negative
        assert u.max() + u.min() < 0
        assert np.mean(u ** 3) < 0


def test_principal_axis_parallel_to_the_truth(batch):
    worst = 0.0
    for k in range(len(batch)):
        x, d = _along(batch, k)
        axis = np.linalg.eigh(x.T @ x)[1][:, -1]
        worst = max(worst, np.degrees(np.arccos(min(1.0, abs(axis @ d)))))
    assert worst < 2.0


def test_split_files_are_disjoint_and_readable(tmp_path):
    paths = split_arrows(tmp_path / "arrows", n_train=8, n_val=3, n_test=2, seed=1,
                         progress=False)
    assert list(paths) == ["train", "val", "test"]
    ids = {}
    for name, path in paths.items():
        offsets, coords, values = read_voxels(path)
        with EventFile(path, EVENT_SCHEMA) as ef:
            ids[name] = ef.truth(["event_id"])["event_id"]
            assert ef.config["source"] == "arrows"
            assert ef.config["shape"] == ArrowShape().to_dict()
            assert ef.config["detector"]["grid_size"] == 120
            assert len(offsets) - 1 == ef.n_events == ef.n_simulated
    np.testing.assert_array_equal(np.concatenate(list(ids.values())), np.arange(13))
    whole = make_arrows(13, seed=1)
    offsets, coords, _ = read_voxels(paths["test"])
    np.testing.assert_array_equal(coords, whole.coords[whole.offsets[11]:])
    with pytest.raises(InputError, match="exists"):
        split_arrows(tmp_path / "arrows", n_train=8, n_val=3, n_test=2, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"shaft_length": 0}, "shaft_length"),
    ({"shaft_radius": float("nan")}, "shaft_radius"),
    ({"head_length": -3}, "head_length"),
    ({"head_radius": 2.0}, "head_radius: expected a number > shaft_radius"),
    ({"head_radius": "6"}, "head_radius"),
])
def test_bad_shape_is_refused(kwargs, match):
    with pytest.raises(InputError, match=match):
        ArrowShape(**kwargs)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(InputError, match="does not fit in the 40\\^3 grid"):
        make_arrows(1, seed=0, grid_size=40)
    with pytest.raises(InputError, match="n_events"):
        make_arrows(-1, seed=0)
    with pytest.raises(InputError, match="seed"):
        make_arrows(1, seed=1.5)
    with pytest.raises(InputError, match="n_events"):
        write_arrows(tmp_path / "x.h5", n_events=0, progress=False)
    assert not (tmp_path / "x.h5").exists()
