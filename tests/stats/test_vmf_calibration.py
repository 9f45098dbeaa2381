"""von Mises-Fisher (S^2) calibration and the efficiency curve (astroreco.stats)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy import integrate

from astroreco.errors import InputError
from astroreco.stats.vmf_calibration import (sample_vmf_angle, vmf_calibration,
                                             vmf_calibration_null, vmf_expected_angle,
                                             vmf_kappa_from_mean_cosine, vmf_mean_cosine,
                                             vmf_mean_cosine_derivative)
from astroreco.stats.directional import efficiency_curve


def _angle_moment(kappa, power):
    """E[f(theta)] under p(theta) = k / (2 sinh k) e^{k cos theta} sin theta, by quadrature.

    f = theta for ``power='theta'``, cos theta for ``'cos'``; written with e^{k (cos - 1)}
    and integrated over the region holding the density (60 / sqrt(k) wide for large k).
    """
    norm = kappa / -math.expm1(-2.0 * kappa)

    def density(t):
        return norm * math.exp(kappa * (math.cos(t) - 1.0)) * math.sin(t)

    f = (lambda t: t) if power == "theta" else math.cos
    upper = min(math.pi, 60.0 / math.sqrt(kappa))
    return integrate.quad(lambda t: f(t) * density(t), 0.0, upper, epsabs=1e-16, epsrel=1e-12,
                          limit=200)[0]


@pytest.mark.parametrize("kappa", [1e-6, 1e-3, 0.1, 0.7, 1.0, 3.0, 10.0, 100.0, 1e4])
def test_expected_angle_matches_numerical_integration(kappa):
    assert vmf_expected_angle(kappa) == pytest.approx(_angle_moment(kappa, "theta"),
                                                      rel=1e-9)


def test_expected_angle_limits_and_no_overflow():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        k = np.array([0.0, 1e-300, 1e-12, 1.0, 1e3, 1e8])
        e = vmf_expected_angle(k)
    assert isinstance(e, np.ndarray) and isinstance(vmf_expected_angle(2.0), float)
    assert e[0] == math.pi / 2 and e[1] == pytest.approx(math.pi / 2, rel=1e-15)
    assert e[2] == pytest.approx(math.pi / 2, rel=1e-11)
    # large kappa: the angle is Rayleigh with sigma^2 = 1/kappa, mean sqrt(pi / (2 kappa))
    assert e[-1] == pytest.approx(math.sqrt(math.pi / 2e8), rel=1e-8)
    assert np.all(np.diff(e) < 0)
    # the two branches meet at kappa = 1
    assert vmf_expected_angle(1.0) == pytest.approx(vmf_expected_angle(1.0 + 1e-12), rel=1e-11)
    with pytest.raises(InputError, match="kappa"):
        vmf_expected_angle(-1.0)


@pytest.mark.parametrize("kappa", [0.05, 0.2, 0.5, 2.0, 30.0, 500.0])
def test_mean_cosine_matches_numerical_integration(kappa):
    assert vmf_mean_cosine(kappa) == pytest.approx(_angle_moment(kappa, "cos"), rel=1e-9)


def test_mean_cosine_stable_and_derivative():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        k = np.array([0.0, 1e-12, 1e-6, 0.1 - 1e-12, 0.1, 10.0, 1e5, 1e12])
        a = vmf_mean_cosine(k)
        d = vmf_mean_cosine_derivative(k)
    assert a[0] == 0.0 and a[1] == pytest.approx(1e-12 / 3, rel=1e-12)
    assert a[3] == pytest.approx(a[4], rel=1e-10)  # the series meets the closed form
    assert a[-2] == pytest.approx(1.0 - 1e-5, rel=1e-15) and a[-1] < 1.0
    assert d[0] == pytest.approx(1 / 3) and d[-2] == pytest.approx(1e-10, rel=1e-9)
    ks = np.array([0.01, 0.09, 0.11, 1.0, 10.0, 100.0])
    h = 1e-6 * ks
    numeric = (vmf_mean_cosine(ks + h) - vmf_mean_cosine(ks - h)) / (2 * h)
    np.testing.assert_allclose(vmf_mean_cosine_derivative(ks), numeric, rtol=1e-7)


def test_kappa_from_mean_cosine_round_trip_and_limits():
    k = np.geomspace(1e-8, 1e6, 400)
    np.testing.assert_allclose(vmf_kappa_from_mean_cosine(vmf_mean_cosine(k)), k, rtol=1e-9)
    assert vmf_kappa_from_mean_cosine(vmf_mean_cosine(7.5)) == pytest.approx(7.5, rel=1e-12)
    assert isinstance(vmf_kappa_from_mean_cosine(0.5), float)
    out = vmf_kappa_from_mean_cosine([-0.3, 0.0, 1.0, 1.2, math.nan])
    assert out[0] == out[1] == 0.0 and out[2] == out[3] == math.inf and math.isnan(out[4])
    assert vmf_kappa_from_mean_cosine(1 - 1e-9) == pytest.approx(1e9, rel=1e-6)


def test_sampler_draws_the_vmf():
    rng = np.random.default_rng(3)
    for kappa in (1e-9, 0.5, 5.0, 200.0, 1e5):
        theta = sample_vmf_angle(np.full(200_000, kappa), rng)
        assert np.cos(theta).mean() == pytest.approx(vmf_mean_cosine(kappa), abs=4e-3)
        assert theta.mean() == pytest.approx(vmf_expected_angle(kappa), rel=5e-3)


@pytest.fixture(scope="module")
def calibrated():
    rng = np.random.default_rng(7)
    kappa = np.exp(rng.uniform(math.log(0.5), math.log(2000.0), 60_000))
    return sample_vmf_angle(kappa, rng), kappa


def test_calibrated_model_fits_its_own_kappa(calibrated):
    angle, kappa = calibrated
    rows = vmf_calibration(angle, kappa)
    assert len(rows) == 10 and sum(r["n"] for r in rows) == angle.size
    json.dumps(rows, allow_nan=False)  # plain, finite Python numbers
    for r in rows:
        assert r["enough"] and r["kappa_lo"] <= r["kappa_centre"] <= r["kappa_hi"]
        # within the statistical error of the kappa a calibrated fit should give, and within
        # a few % of the centre (harmonic vs geometric mean of a bin spanning a factor 2.3)
        assert abs(r["kappa_fit"] - r["kappa_equivalent"]) < 3.5 * r["kappa_fit_err"], r
        assert abs(r["ratio"] - 1.0) < 0.03 + 3 * r["ratio_err"], r
        if r["kappa_centre"] > 50:  # Fisher error: kappa / sqrt(n) at large kappa
            assert r["ratio_err"] == pytest.approx(1 / math.sqrt(r["n"]), rel=0.1)
        assert abs(r["mean_angle"] - r["expected_angle"]) < 4 * r["mean_angle_err"], r
    assert [r["kappa_centre"] for r in rows] == sorted(r["kappa_centre"] for r in rows)


def test_over_confident_model_has_ratio_one_half(calibrated):
    rng = np.random.default_rng(8)
    _, kappa = calibrated
    angle = sample_vmf_angle(kappa / 2.0, rng)
    rows = vmf_calibration(angle, kappa, n_bins=6)
    for r in rows:
        # bins spanning a factor 3.9: the fit sits 7% below half the geometric centre
        assert r["ratio"] == pytest.approx(0.5, abs=0.05 + 3 * r["ratio_err"])
        assert r["kappa_fit"] / r["kappa_equivalent"] == pytest.approx(
            0.5, abs=3.5 * r["ratio_err"] * r["kappa_centre"] / r["kappa_equivalent"])
        assert r["mean_angle"] > r["expected_angle"]


def test_calibration_with_edges_and_min_count(calibrated):
    angle, kappa = calibrated
    edges = [1.0, 10.0, 100.0, 1e4, 1e5]  # the last bin is empty, events below 1 left out
    rows = vmf_calibration(angle, kappa, edges=edges, min_count=20_000)
    assert [(r["kappa_lo"], r["kappa_hi"]) for r in rows] == [(1, 10), (10, 100), (100, 1e4)]
    assert sum(r["n"] for r in rows) == np.count_nonzero(kappa >= 1.0)
    assert [r["enough"] for r in rows] == [False, False, True]
    few = vmf_calibration(angle[:5], kappa[:5], n_bins=10)
    assert len(few) == 5 and all(r["n"] == 1 and not r["enough"] for r in few)


@pytest.mark.parametrize("kwargs, match", [
    (dict(angle=[0.1, 0.2], kappa=[1.0]), "one length"),
    (dict(angle=[0.1, np.nan], kappa=[1.0, 2.0]), "finite"),
    (dict(angle=[0.1, 0.2], kappa=[1.0, 0.0]), "kappa > 0"),
    (dict(angle=[0.1, 4.0], kappa=[1.0, 2.0]), r"\[0, pi\]"),
    (dict(angle=[], kappa=[]), "at least one"),
    (dict(angle=[0.1], kappa=[1.0], n_bins=0), "n_bins"),
    (dict(angle=[0.1], kappa=[1.0], edges=[2.0, 1.0]), "edges"),
])
def test_calibration_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        vmf_calibration(kwargs.pop("angle"), kwargs.pop("kappa"), **kwargs)


def test_efficiency_curve_by_hand():
    cd = [0.9, 0.1, 0.5, 0.3, 0.2]
    score = [1.0, 5.0, 2.0, 3.0, 4.0]
    c = efficiency_curve(cd, score, [0.0, 0.2, 0.4, 0.6, 0.8, 0.99])
    np.testing.assert_allclose(c["mean_cos_dist"], [0.4, 0.275, 0.2, 0.15, 0.1, 0.1])
    assert c["n_kept"].tolist() == [5, 4, 3, 2, 1, 1]
    np.testing.assert_array_equal(c["cut"], [0.0, 0.2, 0.4, 0.6, 0.8, 0.99])


def test_efficiency_curve_plain_mean_and_monotone():
    rng = np.random.default_rng(5)
    kappa = np.exp(rng.uniform(0, 6, 5000))
    cd = 1.0 - np.cos(sample_vmf_angle(kappa, rng))
    cuts = np.linspace(0.0, 0.9, 19)
    c = efficiency_curve(cd, kappa, cuts)
    assert c["mean_cos_dist"][0] == pytest.approx(cd.mean(), rel=1e-12)
    assert np.all(np.diff(c["mean_cos_dist"]) < 0)  # kappa tracks the accuracy
    assert c["n_kept"][-1] == 500


@pytest.mark.parametrize("args, match", [
    (([0.1, 0.2], [1.0], [0.0]), "one length"),
    (([0.1, np.nan], [1.0, 2.0], [0.0]), "finite"),
    (([0.1, 0.2], [1.0, 2.0], [1.0]), "cuts"),
    (([0.1, 0.2], [1.0, 2.0], [-0.1]), "cuts"),
])
def test_efficiency_curve_errors(args, match):
    with pytest.raises(InputError, match=match):
        efficiency_curve(*args)


def test_midpoint_centre_of_equal_width_bins_fits_a_calibrated_model():
    # kappa spread evenly from 0.01 to 60, bins 5 wide: in the lowest bin (a factor 500 wide)
    # the geometric mean sits below what a calibrated fit gives, the midpoint 20% above;
    # kappa_equivalent is right in every bin, and the midpoint in every other bin
    from astroreco.stats.vmf_calibration import kappa_bin_edges

    rng = np.random.default_rng(11)
    kappa = rng.uniform(0.01, 60.0, 40_000)
    angle = sample_vmf_angle(kappa, rng)
    edges = kappa_bin_edges(kappa, n_bins=12)
    mid = vmf_calibration(angle, kappa, edges=edges, centre="midpoint")
    geo = vmf_calibration(angle, kappa, edges=edges)
    for i, r in enumerate(mid):
        assert r["kappa_centre"] == pytest.approx(0.5 * (r["kappa_lo"] + r["kappa_hi"]))
        if i:
            assert abs(r["ratio"] - 1.0) < 0.03 + 3 * r["ratio_err"], r
        assert abs(r["ratio_equivalent"] - 1.0) < 3.5 * r["kappa_fit_err"] / r["kappa_equivalent"]
    assert geo[0]["ratio"] > 1.05 and 0.75 < mid[0]["ratio"] < 0.9
    with pytest.raises(InputError, match="centre"):
        vmf_calibration(angle, kappa, centre="mean")
    with pytest.raises(InputError, match="edges"):
        vmf_calibration(angle, kappa, centre="midpoint")


def test_head_tail_flips_are_counted_and_the_core_fit_ignores_them():
    # 2000 calibrated events at kappa 40, 6 of them (0.3%) with head and tail swapped: the
    # fit to all falls by about a fifth, the fit to the others stays calibrated
    rng = np.random.default_rng(5)
    kappa = np.full(2000, 40.0)
    angle = sample_vmf_angle(kappa, rng)
    angle[:6] = np.pi - angle[:6]
    (row,) = vmf_calibration(angle, kappa, n_bins=1)
    assert row["n_flipped"] == 6
    assert 0.7 < row["ratio"] < 0.9
    assert abs(row["ratio_core"] - 1.0) < 3 * row["ratio_err"]
    assert row["kappa_fit_core"] > row["kappa_fit"]


def test_flip_probability_fit_and_the_null_with_flips():
    from astroreco.stats.vmf_calibration import fit_flip_probability

    # flips at 2% for kappa ~5 falling to 0.1% at kappa ~50: the fit finds both ends
    rng = np.random.default_rng(3)
    kappa = np.exp(rng.uniform(np.log(5.0), np.log(50.0), 200_000))
    p_true = 0.02 * (5.0 / kappa) ** 1.3
    angle = sample_vmf_angle(kappa, rng)
    angle = np.where(rng.random(kappa.size) < p_true, np.pi - angle, angle)
    # the flips alone, not the vMF's own tail beyond pi/2 (1 / (e^kappa + 1) of the events)
    p = fit_flip_probability(angle, kappa)
    assert p(np.array([5.0]))[0] == pytest.approx(0.02, rel=0.15)
    assert p(np.array([50.0]))[0] == pytest.approx(0.02 * 0.1 ** 1.3, rel=0.3)
    # no flips at all, down to kappa 0.5 where the tail is a third of the events: ~0
    low = rng.uniform(0.5, 10.0, 100_000)
    assert np.all(fit_flip_probability(sample_vmf_angle(low, rng), low)(low) < 0.005)
    # a narrow bin of 1000 events at kappa 40: flips at 0.3% make the test scatter far more
    # than the vMF's own noise, though kappa is calibrated in the sense the test fits it
    k = np.full(1000, 40.0)
    plain = vmf_calibration_null(k, n_draws=60, seed=4, edges=[39.0, 41.0], centre="midpoint")
    mixed = vmf_calibration_null(k, n_draws=60, seed=4, edges=[39.0, 41.0], centre="midpoint",
                                 flip_probability=np.full(k.size, 0.003))
    assert np.median(mixed) > 1.5 * np.median(plain)
    assert np.median(mixed) < 0.25   # but still centred on a calibrated fit
    with pytest.raises(InputError, match="flip_probability"):
        vmf_calibration_null(k, flip_probability=np.full(k.size, 0.7))
    # no flips: the plain null's draws exactly (the flips have their own stream)
    spread = rng.uniform(1.0, 60.0, 5000)
    np.testing.assert_array_equal(
        vmf_calibration_null(spread, n_draws=5, seed=9, n_bins=4),
        vmf_calibration_null(spread, n_draws=5, seed=9, n_bins=4,
                             flip_probability=np.zeros(spread.size)))


def test_null_distribution_of_the_calibration_test():
    rng = np.random.default_rng(11)
    # one narrow bin of 10,000 events: a calibrated model lands within ~1/sqrt(n) of it
    k = np.full(10_000, 20.0)
    narrow = vmf_calibration_null(k, n_draws=40, seed=1, edges=[19.0, 21.0],
                                  centre="midpoint", min_count=200)
    assert narrow.shape == (40,) and np.all(narrow < 0.05)
    assert np.median(narrow) == pytest.approx(0.6745 / math.sqrt(k.size), rel=0.4)
    # the same seed draws the same angles
    again = vmf_calibration_null(k, n_draws=40, seed=1, edges=[19.0, 21.0],
                                 centre="midpoint", min_count=200)
    np.testing.assert_array_equal(narrow, again)
    # a wide lowest bin (kappa from ~0 to 5, compared with its midpoint 2.5) misses even
    # for a perfect model: the fit lands near the arithmetic mean of A_3, not at 2.5
    wide = rng.uniform(0.01, 5.0, 5000)
    biased = vmf_calibration_null(wide, n_draws=20, seed=2, edges=[0.01, 5.0],
                                  centre="midpoint", min_count=200)
    assert np.all(biased > 0.15)
    # no bin with enough events: NaN, not a number that looks like a pass
    assert np.all(np.isnan(vmf_calibration_null(k[:50], n_draws=3, edges=[19.0, 21.0],
                                                centre="midpoint", min_count=200)))
    with pytest.raises(InputError, match="n_draws"):
        vmf_calibration_null(k, n_draws=0)
    with pytest.raises(InputError, match="kappa"):
        vmf_calibration_null(np.array([1.0, np.nan]), n_draws=2)
