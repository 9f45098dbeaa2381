"""TPC event files: simulate into the store, read the sparse voxels back, refuse bad voxels."""

from __future__ import annotations

import numpy as np
import pytest

from astroreco.detectors.tpc.pipeline import (check_voxels, parse_values, read_voxels,
                                              simulate)
from astroreco.errors import InputError
from astroreco.io.store import EventFile


def test_simulate_and_read_back(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    summary = simulate(a, n_events=12, energy="40,50", sigma="200", seed=3, chunk_size=5,
                       progress=False)
    simulate(b, n_events=12, energy="40,50", sigma="200", seed=3, chunk_size=12,
             progress=False)
    assert summary["n_simulated"] == 12 and 0 < summary["n_stored"] <= 12
    assert summary["mean_electrons"] > 1000
    offsets, coords, electrons = read_voxels(a)
    o2, c2, e2 = read_voxels(b)  # the chunking does not change the events
    np.testing.assert_array_equal(offsets, o2)
    np.testing.assert_array_equal(coords, c2)
    np.testing.assert_array_equal(electrons, e2)
    with EventFile(a) as ef:
        truth = ef.truth()
        assert set(np.unique(truth["energy_kev"])) <= {40.0, 50.0}
        np.testing.assert_array_equal(np.add.reduceat(electrons, offsets[:-1]),
                                      truth["n_electrons"])


def test_parse_values():
    assert parse_values("40", "energy") == ("fixed", (40.0,))
    assert parse_values("40,45,50", "energy") == ("choice", (40.0, 45.0, 50.0))
    assert parse_values("160:466", "sigma") == ("uniform", (160.0, 466.0))
    for bad in ("40:x", "50:40", "", "nan"):
        with pytest.raises(InputError, match="--energy"):
            parse_values(bad, "energy")
    with pytest.raises(InputError, match="--sigma"):
        simulate("unused.h5", n_events=1, sigma="200,300", progress=False)


def _good():
    offsets = np.array([0, 2, 3])
    coords = np.array([[1, 2, 3], [1, 2, 4], [5, 5, 5]])
    return offsets, coords, np.array([1.0, 2.0, 3.0], np.float32)


@pytest.mark.parametrize("edit, match", [
    (lambda o, c, v: (o, np.where(c == 5, 120, c), v), r"event 1 .*outside the 120\^3 grid"),
    (lambda o, c, v: (o, np.where(c == 5, -1, c), v), "outside"),
    (lambda o, c, v: (np.array([0, 3, 3]), c, v), "event 1 has no voxels"),
    (lambda o, c, v: (o, np.array([[1, 2, 3], [1, 2, 3], [5, 5, 5]]), v),
     "event 0 has duplicate voxel"),
    (lambda o, c, v: (o, c, np.array([1.0, np.nan, 3.0])), "event 0 has a non-finite"),
    (lambda o, c, v: (o, c, -v), "negative"),
    (lambda o, c, v: (o, c[:, :2], v), r"shape \(n, 3\)"),
    (lambda o, c, v: (o, c, v[:2]), "do not match"),
])
def test_bad_voxels_are_refused(edit, match):
    check_voxels(*_good(), 120)
    with pytest.raises(InputError, match=match):
        check_voxels(*edit(*_good()), 120)


def test_a_2d_file_given_to_the_3d_reader(tmp_path):
    from astroreco.detectors.ixpe.pipeline import simulate as simulate_ixpe

    ixpe = tmp_path / "ixpe.h5"
    simulate_ixpe(ixpe, n_events=5, seed=1, progress=False)
    with pytest.raises(InputError, match="detector 'ixpe'"):
        read_voxels(ixpe)
