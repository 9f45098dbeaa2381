"""The TPC recoil simulator: reproducible, contained, charge conserved, isotropic."""

from __future__ import annotations

import numpy as np
import pytest

from astroreco.detectors.tpc.simulate import (RecoilSimulator, TpcConfig, random_rotation)
from astroreco.errors import InputError


@pytest.fixture(scope="module")
def sim():
    return RecoilSimulator()


def _directions(batch):
    return np.stack([batch.truth[f"dir_{c}"] for c in "xyz"], axis=1)


def test_seeded_simulation_is_reproducible(sim):
    a = sim.simulate(20, energy_kev=40.0, sigma_um=(160, 466), seed=5)
    b = sim.simulate(20, energy_kev=40.0, sigma_um=(160, 466), seed=5)
    np.testing.assert_array_equal(a.coords, b.coords)
    np.testing.assert_array_equal(a.values, b.values)
    for name in a.truth:
        np.testing.assert_array_equal(a.truth[name], b.truth[name])
    c = sim.simulate(20, energy_kev=40.0, sigma_um=(160, 466), seed=6)
    assert not np.array_equal(_directions(a), _directions(c))
    # an event does not depend on the events simulated before it
    tail = sim.simulate(5, energy_kev=40.0, sigma_um=(160, 466), seed=5, first=15)
    rows = np.isin(a.truth["event_id"], tail.truth["event_id"])
    np.testing.assert_array_equal(a.truth["dir_x"][rows], tail.truth["dir_x"])


def test_voxels_hold_every_electron_inside_the_grid(sim):
    batch = sim.simulate(30, energy_kev=40.0, sigma_um=443.0, seed=2)
    assert len(batch) == 30  # 40 keV tracks fit the 6 cm grid
    sums = np.add.reduceat(batch.values, batch.offsets[:-1])
    np.testing.assert_array_equal(sums, batch.truth["n_electrons"])
    assert batch.coords.min() >= 0 and batch.coords.max() < 120
    for k in range(len(batch)):
        c = batch.coords[batch.offsets[k]:batch.offsets[k + 1]].astype(np.int64)
        flat = (c[:, 0] * 120 + c[:, 1]) * 120 + c[:, 2]
        assert np.all(np.diff(flat) > 0)  # unique and sorted
        # centred on the centre of charge: the charge-weighted mean voxel is the grid centre
        w = batch.values[batch.offsets[k]:batch.offsets[k + 1]]
        centre = (c + 0.5).T @ w / w.sum() * 0.05
        np.testing.assert_allclose(centre, 3.0, atol=0.05 / 2 + 1e-3)
    assert np.all(batch.truth["sigma_um"] == np.float32(443.0))


def test_uncontained_tracks_are_dropped():
    small = RecoilSimulator(TpcConfig(grid_size=40))  # a 2 cm grid
    batch = small.simulate(10, energy_kev=40.0, sigma_um=200.0, seed=3)
    assert batch.n_simulated == 10 and len(batch) < 10


def test_directions_are_unit_and_isotropic(sim):
    rng = np.random.default_rng(0)
    rots = np.array([random_rotation(rng) for _ in range(4000)])
    np.testing.assert_allclose(rots @ rots.transpose(0, 2, 1), np.eye(3)[None].repeat(4000, 0),
                               atol=1e-12)
    assert np.allclose(np.linalg.det(rots), 1.0)
    z = rots[:, :, 2]
    # uniform on the sphere: every component has mean 0 and variance 1/3
    assert np.all(np.abs(z.mean(axis=0)) < 4 * np.sqrt(1 / 3 / 4000))
    assert np.all(np.abs(z.var(axis=0) - 1 / 3) < 0.03)
    batch = sim.simulate(10, energy_kev=40.0, sigma_um=200.0, seed=4)
    np.testing.assert_allclose(np.linalg.norm(_directions(batch), axis=1), 1.0, atol=1e-6)


def test_start_point_is_where_the_charge_begins(sim):
    """With no smearing, the electrons nearest the true start lie on the initial direction."""
    batch = sim.simulate(5, energy_kev=40.0, sigma_um=0.0, seed=8)
    for k in range(len(batch)):
        c = batch.coords[batch.offsets[k]:batch.offsets[k + 1]]
        start = np.array([batch.truth[f"start_{a}_cm"][k] for a in "xyz"])
        d = (c + 0.5) * 0.05 - start
        dist = np.linalg.norm(d, axis=1)
        near = (dist > 0.1) & (dist < 0.3)
        assert near.any()
        cos = (d[near] / dist[near, None]) @ _directions(batch)[k]
        assert np.median(cos) > 0.8


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_events=-1), "n_events"),
    (dict(n_events=2, energy_kev=np.nan), "energy_kev"),
    (dict(n_events=2, energy_kev=0.0), "energy_kev"),
    (dict(n_events=2, sigma_um=(300, 200)), "sigma_um"),
    (dict(n_events=2, sigma_um=-1.0), "sigma_um"),
    (dict(n_events=2, seed=-3), "seed"),
])
def test_bad_arguments(sim, kwargs, match):
    kwargs = {"seed": 1, **kwargs}
    with pytest.raises(InputError, match=match):
        sim.simulate(**kwargs)
    with pytest.raises(InputError, match="grid_size"):
        TpcConfig(grid_size=1)
