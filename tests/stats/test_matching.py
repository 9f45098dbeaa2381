"""One-to-one matching of detections to true positions within a distance cut."""

import itertools

import numpy as np
import pytest

from astroreco.errors import InputError
from astroreco.stats.matching import match_sources


def check_one_to_one(m, xt, yt, xd, yd, max_dist):
    assert len(set(m["true_index"])) == len(m["true_index"])
    assert len(set(m["det_index"])) == len(m["det_index"])
    d = np.hypot(np.asarray(xt)[m["true_index"]] - np.asarray(xd)[m["det_index"]],
                 np.asarray(yt)[m["true_index"]] - np.asarray(yd)[m["det_index"]])
    np.testing.assert_allclose(m["distance"], d)
    assert np.all(m["distance"] <= max_dist)
    assert np.all(np.diff(m["true_index"]) > 0)
    assert sorted([*m["true_index"], *m["unmatched_true"]]) == list(range(len(xt)))
    assert sorted([*m["det_index"], *m["unmatched_det"]]) == list(range(len(xd)))


def brute_force(xt, yt, xd, yd, max_dist):
    """(most pairs, least summed distance) over every one-to-one pairing."""
    d = np.hypot(np.subtract.outer(xt, xd), np.subtract.outer(yt, yd))
    best = (0, 0.0)
    n_t, n_d = d.shape
    for k in range(1, min(n_t, n_d) + 1):
        for rows in itertools.combinations(range(n_t), k):
            for cols in itertools.permutations(range(n_d), k):
                dist = d[list(rows), list(cols)]
                if np.all(dist <= max_dist) and (k, -dist.sum()) > (best[0], -best[1]):
                    best = (k, dist.sum())
    return best


def test_docstring_example_and_cut():
    m = match_sources([0, 10], [0, 0], [10.5, 0.2, 30], [0, 0, 0], max_dist=1)
    assert m["true_index"].tolist() == [0, 1] and m["det_index"].tolist() == [1, 0]
    np.testing.assert_allclose(m["distance"], [0.2, 0.5])
    assert m["unmatched_det"].tolist() == [2] and m["unmatched_true"].size == 0
    m = match_sources([0, 10], [0, 0], [10.5, 0.2, 30], [0, 0, 0], max_dist=0.3)
    assert m["true_index"].tolist() == [0] and m["unmatched_true"].tolist() == [1]
    m = match_sources([0], [0], [1.0], [0], max_dist=1.0)  # inclusive cut
    assert m["det_index"].tolist() == [0]


def test_two_detections_near_one_source_match_once():
    m = match_sources([5.0], [5.0], [5.1, 4.8], [5.0, 5.0], max_dist=2)
    assert m["det_index"].tolist() == [0] and m["unmatched_det"].tolist() == [1]


def test_optimal_beats_greedy_on_a_chain():
    """Greedy takes the closest pair (t1, d0) and leaves t0 alone; optimal matches both."""
    xt, yt = [0.0, 1.0], [0.0, 0.0]
    xd, yd = [0.9, 1.8], [0.0, 0.0]
    greedy = match_sources(xt, yt, xd, yd, max_dist=1.0, method="greedy")
    assert greedy["true_index"].tolist() == [1] and greedy["det_index"].tolist() == [0]
    best = match_sources(xt, yt, xd, yd, max_dist=1.0)
    assert best["true_index"].tolist() == [0, 1] and best["det_index"].tolist() == [0, 1]


@pytest.mark.parametrize("seed", range(12))
def test_optimal_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_t, n_d = rng.integers(1, 6), rng.integers(1, 6)
    xt, yt = rng.uniform(0, 4, (2, n_t))
    xd, yd = rng.uniform(0, 4, (2, n_d))
    max_dist = rng.uniform(0.5, 2.0)
    m = match_sources(xt, yt, xd, yd, max_dist)
    check_one_to_one(m, xt, yt, xd, yd, max_dist)
    n_best, total = brute_force(xt, yt, xd, yd, max_dist)
    assert len(m["true_index"]) == n_best
    assert m["distance"].sum() == pytest.approx(total, abs=1e-12)
    g = match_sources(xt, yt, xd, yd, max_dist, method="greedy")
    check_one_to_one(g, xt, yt, xd, yd, max_dist)
    assert len(g["true_index"]) <= n_best


def test_large_catalogues_match_shifted_copy():
    rng = np.random.default_rng(1)
    xt, yt = rng.uniform(0, 1000, (2, 3000))
    order = rng.permutation(3000)
    xd, yd = xt[order] + rng.normal(0, 0.05, 3000), yt[order] + rng.normal(0, 0.05, 3000)
    m = match_sources(xt, yt, xd, yd, max_dist=0.5)
    check_one_to_one(m, xt, yt, xd, yd, 0.5)
    assert np.mean(order[m["det_index"]] == m["true_index"]) > 0.99


def test_empty_inputs():
    for xt, xd in (([], [1.0]), ([1.0], []), ([], [])):
        m = match_sources(xt, xt, xd, xd, max_dist=1)
        assert m["true_index"].size == 0 and m["distance"].size == 0
        assert m["unmatched_true"].size == len(xt) and m["unmatched_det"].size == len(xd)


@pytest.mark.parametrize("args, needle", [
    (([0, 1], [0], [0], [0], 1), "x_true/y_true"),
    (([0], [0], [np.nan], [0], 1), "x_det/y_det: NaN"),
    (([[0]], [[0]], [0], [0], 1), "1-D"),
    (([0], [0], [0], [0], -1), "max_dist"),
    (([0], [0], [0], [0], np.inf), "max_dist"),
])
def test_bad_input(args, needle):
    with pytest.raises(InputError, match=needle):
        match_sources(*args)
    with pytest.raises(InputError, match="method"):
        match_sources([0], [0], [0], [0], 1, method="hungarian")
