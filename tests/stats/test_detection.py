"""Counting figures of detection and classification (astroreco.stats.detection)."""

import itertools

import numpy as np
import pytest

from astroreco.errors import InputError
from astroreco.stats.detection import (binned_fraction, classification_figures,
                                       confusion_matrix, f1_score, fraction,
                                       precision_recall_curve, pull_summary, quantile,
                                       wilson_interval)


def test_wilson_interval_contains_the_fraction():
    for n in range(1, 400):
        for k in (0, n // 3, n):
            lo, hi = wilson_interval(k, n)
            assert 0 <= lo <= k / n <= hi <= 1
            assert hi - lo > 0
    assert wilson_interval(0, 0) == (None, None)


def test_wilson_interval_covers_at_its_level():
    # exact binomial coverage of the 68.3 % interval at p = 0.3, n = 50
    from scipy.stats import binom

    n, p = 50, 0.3
    covered = sum(binom.pmf(k, n, p) for k in range(n + 1)
                  if wilson_interval(k, n)[0] <= p <= wilson_interval(k, n)[1])
    assert 0.62 < covered < 0.75


def test_fraction_and_f1_say_none_without_events():
    assert fraction(3, 4) == 0.75 and fraction(3, 0) is None
    assert f1_score(None, 0.5) is None and f1_score(0.0, 0.0) is None
    assert np.isclose(f1_score(0.5, 1.0), 2 / 3)
    assert quantile([], 0.5) is None and quantile([1.0, 3.0], 0.5) == 2.0


def brute_force_operating_point(rank, tp, hit, n_true, target):
    best = None
    for t in sorted(set(rank), reverse=True):
        sel = rank >= t
        purity, recall = tp[sel].mean(), hit[sel].sum() / n_true
        if purity >= target and (best is None or recall > best[1]):
            best = (t, recall, purity, int(sel.sum()))
    return best


def test_operating_point_is_the_brute_force_one():
    rng = np.random.default_rng(4)
    for trial in range(20):
        n = int(rng.integers(5, 60))
        rank = rng.integers(0, 12, n).astype(float)       # ties on purpose
        tp = rng.random(n) < 0.2 + 0.06 * rank
        hit = tp & (rng.random(n) < 0.8)
        n_true = int(hit.sum()) + int(rng.integers(0, 5))
        for target in (0.5, 0.8, 0.95):
            curve, op = precision_recall_curve(rank, tp, hit, max(n_true, 1), target)
            ref = brute_force_operating_point(rank, tp, hit, max(n_true, 1), target)
            if ref is None:
                assert op["threshold"] is None and op["recall"] is None
            else:
                assert (op["threshold"], op["n_detections"]) == (ref[0], ref[3])
                assert np.isclose(op["recall"], ref[1]) and np.isclose(op["purity"], ref[2])
            # the curve walks down the distinct thresholds with growing selections
            assert np.all(np.diff(curve["threshold"]) < 0)
            assert np.all(np.diff(curve["n_detections"]) > 0)


def test_precision_recall_curve_is_thinned_to_max_points():
    rank = np.arange(1000.0)
    curve, op = precision_recall_curve(rank, np.ones(1000, bool), np.ones(1000, bool), 1000,
                                       0.9, max_points=50)
    assert len(curve["threshold"]) == 50
    assert curve["threshold"][0] == 999 and curve["threshold"][-1] == 0
    assert op["recall"] == 1.0 and op["n_detections"] == 1000


def test_binned_fraction_counts_per_bin():
    values = np.array([0.5, 1.5, 1.5, 2.5, 2.5, 2.5, 9.0, -1.0, 3.0])
    passed = np.array([1, 1, 0, 1, 1, 0, 1, 1, 1], bool)
    b = binned_fraction(values, passed, [0, 1, 2, 3])
    assert b["n"] == [1, 2, 3] and b["k"] == [1, 1, 2]     # 9, -1 and the top edge: outside
    assert b["fraction"] == [1.0, 0.5, 2 / 3]
    assert np.isclose(b["error"][1], np.sqrt(0.25 / 2))
    assert all(lo <= f <= hi for lo, f, hi in zip(b["lo"], b["fraction"], b["hi"]))
    empty = binned_fraction([], [], [0, 1])
    assert empty["fraction"] == [None] and empty["lo"] == [None]


def test_pull_summary_of_unit_normal_pulls():
    rng = np.random.default_rng(1)
    p = np.r_[rng.standard_normal(20000), np.nan, np.inf]
    s = pull_summary(p)
    assert s["n"] == 20000
    assert abs(s["mean"]) < 0.03 and abs(s["std"] - 1) < 0.02 and s["fraction_beyond_5"] == 0
    assert pull_summary([np.nan]) == {"n": 0, "mean": None, "std": None}


def test_confusion_matrix_rows_true_columns_predicted():
    true = np.array([0, 0, 1, 2, 2, 2, -1, 3])
    pred = np.array([0, 1, 1, 2, 0, 2, 0, 0])
    mat = confusion_matrix(true, pred, 3)
    expected = np.zeros((3, 3), int)
    for t, p in zip(true, pred):
        if 0 <= t < 3 and 0 <= p < 3:
            expected[t, p] += 1
    np.testing.assert_array_equal(mat, expected)
    assert mat.sum() == 6      # the unknown labels (-1, 3) are left out
    for t, p in itertools.product(range(3), repeat=2):
        assert mat[t, p] == np.sum((true == t) & (pred == p))


def test_classification_figures():
    f = classification_figures(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]),
                               np.array([0, 1, 1]), ("agn", "psr"))
    assert f["accuracy"] == pytest.approx(2 / 3) and f["confusion"] == [[1, 0], [1, 1]]
    assert f["balanced_accuracy"] == pytest.approx(0.75)
    assert f["recall"] == [1.0, 0.5] and f["precision"] == [0.5, 1.0]
    assert f["majority_accuracy"] == pytest.approx(2 / 3)
    # a class never predicted has no precision; one never present no recall
    g = classification_figures(np.array([[0.9, 0.1, 0.0]] * 2), np.array([0, 1]),
                               ("a", "b", "c"))
    assert g["precision"] == [0.5, None, None] and g["recall"] == [1.0, 0.0, None]
    assert g["balanced_accuracy"] == pytest.approx(0.5)


def test_classification_figures_reject_bad_labels_and_shapes():
    with pytest.raises(InputError, match="labels: expected integers in 0..1"):
        classification_figures(np.ones((2, 2)), np.array([0, 2]), ("a", "b"))
    with pytest.raises(InputError, match=r"probs: expected shape \(2, 3\)"):
        classification_figures(np.ones((2, 2)), np.array([0, 1]), ("a", "b", "c"))
