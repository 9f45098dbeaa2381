"""The learned kappa map: it recovers concentrations a feature carries, round-trips through
JSON, and rejects malformed maps and inputs with one-line errors."""

import json

import numpy as np
import pytest

from astroreco.errors import InputError
from astroreco.nn.vmf_calibrator import (apply_vmf_calibrator, check_vmf_calibrator,
                                         fit_vmf_calibrator)
from astroreco.stats.vmf_calibration import sample_vmf_angle, vmf_calibration


def _sample(rng, kappa):
    """Unit vectors drawn from vMF(mu = z, kappa) on S2, and the mean direction z."""
    w = np.cos(sample_vmf_angle(kappa, rng))
    phi = rng.uniform(0, 2 * np.pi, len(kappa))
    s = np.sqrt(np.clip(1.0 - w * w, 0.0, None))
    truth = np.stack([s * np.cos(phi), s * np.sin(phi), w], 1)
    return np.tile([0.0, 0.0, 1.0], (len(kappa), 1)), truth


def _events(seed, n):
    """A 'network' whose kappa (constant 10, with noise) knows nothing; the true kappa
    follows a measured feature x: kappa = exp(2 + 1.2 x)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.5, 1.5, n)
    true_kappa = np.exp(2.0 + 1.2 * x)
    direction, truth = _sample(rng, true_kappa)
    raw = 10.0 * np.exp(0.05 * rng.standard_normal(n))
    return np.stack([np.log(raw), x], 1), direction, truth, true_kappa


@pytest.fixture(scope="module")
def fitted():
    f, d, t, _ = _events(1, 4000)
    return fit_vmf_calibrator(f, d, t, ["log_kappa", "x"], members=2, hidden=16,
                              max_epochs=80, patience=10, lr=1e-2, seed=3, progress=False)


def test_the_map_recovers_the_kappa_the_feature_carries(fitted):
    f, d, t, true_kappa = _events(2, 4000)  # fresh events, never fitted
    k = apply_vmf_calibrator(fitted, f)
    ratio = k / true_kappa
    assert 0.85 < np.median(ratio) < 1.15
    assert np.quantile(np.abs(np.log(ratio)), 0.9) < 0.3
    angle = np.arccos(np.clip((d * t).sum(1), -1, 1))
    rows = vmf_calibration(angle, k, n_bins=5)
    assert all(abs(r["ratio"] - 1.0) < 0.2 for r in rows), [r["ratio"] for r in rows]
    # the raw kappa alone could not: one value for every event
    raw_rows = vmf_calibration(angle, np.exp(f[:, 0]), n_bins=5)
    assert max(abs(r["ratio"] - 1.0) for r in raw_rows) > 0.5


def test_the_map_round_trips_through_json_and_is_reproducible(fitted):
    again = check_vmf_calibrator(json.loads(json.dumps(fitted)))
    f, *_ = _events(5, 50)
    assert np.array_equal(apply_vmf_calibrator(again, f), apply_vmf_calibrator(fitted, f))
    assert fitted["kind"] == "mlp" and len(fitted["members"]) == 2
    assert fitted["fit"]["events"] == 4000
    f, d, t, _ = _events(1, 600)
    a = fit_vmf_calibrator(f, d, t, ["a", "b"], members=1, max_epochs=3, seed=9,
                           progress=False)
    b = fit_vmf_calibrator(f, d, t, ["a", "b"], members=1, max_epochs=3, seed=9,
                           progress=False)
    assert a["members"] == b["members"]


def test_extreme_features_give_bounded_finite_kappa(fitted):
    f = np.array([[-50.0, -1e6], [50.0, 1e6], [0.0, 0.0]])
    k = apply_vmf_calibrator(fitted, f)
    assert np.all(np.isfinite(k)) and np.all(k > 0) and np.all(k <= np.exp(8.0))


def test_bad_maps_and_inputs_are_refused(fitted):
    with pytest.raises(InputError, match="kind"):
        check_vmf_calibrator({**fitted, "kind": "spline"})
    with pytest.raises(InputError, match="expected 'kind'"):
        check_vmf_calibrator({"kind": "mlp"})
    with pytest.raises(InputError, match="layers"):
        check_vmf_calibrator({**fitted, "hidden": 7})
    bad = json.loads(json.dumps(fitted))
    bad["members"][0][0][1][0] = float("nan")
    with pytest.raises(InputError, match="finite"):
        check_vmf_calibrator(bad)
    with pytest.raises(InputError, match=r"shape \(n, 2\)"):
        apply_vmf_calibrator(fitted, np.zeros((3, 3)))
    with pytest.raises(InputError, match=r"non-finite values in features \['x'\]"):
        apply_vmf_calibrator(fitted, np.array([[1.0, np.nan]]))
    f, d, t, _ = _events(1, 100)
    with pytest.raises(InputError, match="enough"):
        fit_vmf_calibrator(f, d, t, ["a", "b"], progress=False)
    with pytest.raises(InputError, match="directions"):
        fit_vmf_calibrator(f, d[:5], t, ["a", "b"], progress=False)
    with pytest.raises(InputError, match="members"):
        fit_vmf_calibrator(f, d, t, ["a", "b"], members=0, progress=False)


def test_balance_weights_level_the_histogram():
    from astroreco.nn.vmf_calibrator import balance_weights

    rng = np.random.default_rng(5)
    v = np.concatenate([rng.normal(0.0, 0.3, 9000), rng.uniform(-3.0, 3.0, 1000)])
    np.testing.assert_array_equal(balance_weights(v, 0.0), np.ones(v.size))
    for power in (0.5, 1.0):
        w = balance_weights(v, power, n_bins=20)
        assert w.mean() == pytest.approx(1.0) and np.all(w > 0)
        # rare values weigh more: the tail's share of the total weight grows with the power
        tail = np.abs(v) > 1.5
        assert w[tail].sum() / w.sum() > tail.mean()
    # power 1: every occupied bin carries the same total weight
    w = balance_weights(v, 1.0, n_bins=20)
    which = np.clip(np.digitize(v, np.histogram_bin_edges(v, 20)) - 1, 0, 19)
    per_bin = np.bincount(which, w)[np.bincount(which) > 0]
    np.testing.assert_allclose(per_bin, per_bin[0], rtol=1e-9)
    np.testing.assert_array_equal(balance_weights(np.full(5, 2.0), 1.0), np.ones(5))
    for bad, power in ((np.array([1.0, np.nan]), 1.0), (v, -1.0), (np.zeros(0), 1.0)):
        with pytest.raises(InputError, match="balance"):
            balance_weights(bad, power)


def test_a_balanced_fit_still_recovers_the_kappa_and_records_its_weighting():
    f, d, t, true_kappa = _events(2, 3000)
    cal = fit_vmf_calibrator(f, d, t, ["log_kappa", "x"], members=1, hidden=16,
                             max_epochs=60, patience=10, lr=1e-2, seed=4, balance=0.5,
                             balance_by="x", progress=False)
    assert cal["fit"]["balance"] == 0.5 and cal["fit"]["balance_by"] == "x"
    k = apply_vmf_calibrator(check_vmf_calibrator(cal), f)
    assert np.median(np.abs(np.log(k / true_kappa))) < 0.2
    with pytest.raises(InputError, match="balance_by"):
        fit_vmf_calibrator(f, d, t, ["log_kappa", "x"], balance=0.5, balance_by="y",
                           progress=False)
