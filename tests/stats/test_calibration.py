"""Calibration of predicted von Mises concentrations (astroreco.stats.calibration)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from astroreco.errors import InputError
from astroreco.stats.calibration import (expected_modulation_derivative,
                                         inverse_expected_modulation, kappa_calibration)
from astroreco.stats.directional import expected_modulation


def _residuals(kappa, seed):
    """Residual angles whose doubled value is von Mises(kappa): the IXPE (harmonic 2) case."""
    rng = np.random.default_rng(seed)
    return stats.vonmises.rvs(kappa, random_state=rng) / 2.0


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(11)
    kappa = rng.gamma(2.0, 0.8, 20_000)  # a spread of concentrations, as a network predicts
    return _residuals(kappa, 12), kappa


@pytest.mark.parametrize("a", [1e-6, 0.05, 0.3, 0.5, 0.8, 0.95, 0.999])
def test_inverse_expected_modulation_round_trip(a):
    k = inverse_expected_modulation(a)
    assert k > 0
    assert expected_modulation(k) == pytest.approx(a, rel=1e-8, abs=1e-12)


def test_inverse_expected_modulation_limits():
    assert inverse_expected_modulation(0.0) == 0.0
    assert inverse_expected_modulation(-0.2) == 0.0
    assert inverse_expected_modulation(1.0) == math.inf
    with pytest.raises(InputError):
        inverse_expected_modulation(float("nan"))


def test_derivative_matches_finite_difference():
    k = np.array([0.0, 0.01, 0.5, 2.0, 10.0, 50.0])
    h = 1e-6
    numeric = (special.i1e(k + h) / special.i0e(k + h)
               - special.i1e(np.maximum(k - h, 0)) / special.i0e(np.maximum(k - h, 0))) \
        / (k + h - np.maximum(k - h, 0))
    np.testing.assert_allclose(expected_modulation_derivative(k), numeric, rtol=1e-4)
    assert expected_modulation_derivative(0.0) == 0.5


def test_calibrated_input_gives_ratio_one(sample):
    resid, kappa = sample
    cal = kappa_calibration(resid, kappa)
    assert cal["harmonic"] == 2 and cal["n"] == kappa.size and cal["n_excluded"] == 0
    assert len(cal["bins"]) == 10 and cal["ndof"] == 10
    assert all(b["n"] >= 200 for b in cal["bins"])
    # bins are ordered in kappa and do not overlap
    for lo, hi in zip(cal["bins"][:-1], cal["bins"][1:]):
        assert lo["kappa_max"] <= hi["kappa_min"]
    for b in cal["bins"]:
        assert abs(b["ratio"] - 1.0) < 4 * b["ratio_err"], b
        assert abs(b["pull"]) < 4
        assert abs(b["kappa_fit"] - b["kappa_equivalent"]) < 4 * b["kappa_fit_err"], b
    assert abs(cal["ratio"] - 1.0) < 3 * cal["ratio_err"]
    assert cal["p_value"] > 1e-3


def test_overconfident_kappa_is_detected(sample):
    resid, kappa = sample
    cal = kappa_calibration(resid, 3.0 * kappa)
    assert cal["ratio"] < 0.8 and (1.0 - cal["ratio"]) > 10 * cal["ratio_err"]
    assert cal["p_value"] < 1e-10
    assert cal["max_abs_ratio_dev"] > 0.2
    # the fitted concentration recovers the true one: about a third of the claimed kappa
    top = cal["bins"][-1]
    assert top["kappa_fit"] < 0.6 * top["kappa_equivalent"]


def test_harmonic_one_and_nan_handling():
    rng = np.random.default_rng(3)
    kappa = np.full(3000, 2.0)
    resid = stats.vonmises.rvs(kappa, random_state=rng)
    resid[:10] = np.nan
    kappa[10:15] = np.nan
    cal = kappa_calibration(resid, kappa, harmonic=1, n_bins=4, min_count=500)
    assert cal["n"] == 2985 and cal["n_excluded"] == 15
    assert len(cal["bins"]) == 4  # ties in kappa still give equal-count bins
    assert abs(cal["ratio"] - 1.0) < 4 * cal["ratio_err"]


def test_few_events_give_fewer_bins():
    resid = _residuals(np.ones(700), 5)
    cal = kappa_calibration(resid, np.ones(700), n_bins=10, min_count=200)
    assert len(cal["bins"]) == 3


@pytest.mark.parametrize("kwargs", [dict(harmonic=0), dict(n_bins=0), dict(min_count=1),
                                    dict(harmonic=1.5)])
def test_bad_arguments(kwargs):
    with pytest.raises(InputError):
        kappa_calibration(np.zeros(10), np.ones(10), **kwargs)


def test_bad_input():
    with pytest.raises(InputError):
        kappa_calibration(np.zeros(10), np.ones(9))
    with pytest.raises(InputError):
        kappa_calibration(np.zeros(10), -np.ones(10))
    with pytest.raises(InputError):
        kappa_calibration([np.nan, 0.0], [1.0, 1.0])
