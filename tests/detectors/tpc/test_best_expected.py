"""Best-Expected: the truth start point and head-tail, a sphere, its principal axis."""

from __future__ import annotations

import numpy as np
import pytest

from astroreco.detectors.tpc import best_expected as be
from astroreco.detectors.tpc.simulate import RecoilSimulator
from astroreco.errors import InputError


def _parts(batch):
    return (batch.offsets, batch.coords, batch.values,
            np.stack([batch.truth[f"start_{c}_cm"] for c in "xyz"], axis=1),
            np.stack([batch.truth[f"dir_{c}"] for c in "xyz"], axis=1))


def test_straight_track_and_failures():
    d = np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
    pts = 3.0 + np.linspace(0, 1.5, 150)[:, None] * d
    coords = np.unique(np.floor(pts / 0.05).astype(np.int64), axis=0)
    q = np.ones(len(coords))
    r = be.reconstruct(np.array([0, len(q)]), coords, q, [3.0, 3.0, 3.0], [d], epsilon_cm=0.5)
    assert r["status"][0] == 0 and r["direction"][0] @ d > 0.99
    # the truth orients the axis
    r = be.reconstruct(np.array([0, len(q)]), coords, q, [3.0, 3.0, 3.0], [-d], epsilon_cm=0.5)
    assert r["direction"][0] @ d < -0.99
    # a sphere far from the track holds no voxel: no axis
    r = be.reconstruct(np.array([0, len(q)]), coords, q, [0.5, 0.5, 0.5], [d], epsilon_cm=0.2)
    assert r["status"][0] == 1 and np.isnan(r["direction"][0]).all()
    with pytest.raises(InputError, match="epsilon_cm"):
        be.reconstruct(np.array([0, len(q)]), coords, q, [3.0] * 3, [d], epsilon_cm=0)


def test_tuned_epsilon_beats_the_extremes_on_simulated_recoils():
    batch = RecoilSimulator().simulate(80, energy_kev=40.0, sigma_um=443.0, seed=41)
    tuned = be.tune_epsilon(*_parts(batch), grid_cm=(0.1, 0.3, 1.5))
    scan = {s["epsilon_cm"]: s["cosine_distance"] for s in tuned["scan"]}
    assert tuned["epsilon_cm"] == min(scan, key=scan.get)
    assert scan[tuned["epsilon_cm"]] < 0.2  # random directions give 1
    assert scan[tuned["epsilon_cm"]] <= min(scan[0.1], scan[1.5])
