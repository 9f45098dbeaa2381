"""Analytic checks of the event-by-event Stokes analysis (astroreco.detectors.ixpe.stokes)."""

import json
import math

import numpy as np
import pytest
from scipy import special

from astroreco.detectors.ixpe.modulation_fit import ModulationFit, fit_modulation_curve
from astroreco.detectors.ixpe.stokes import (
    MDP99_FACTOR,
    PolarizationResult,
    epsilon_10,
    epsilon_within,
    expected_modulation,
    mdp99,
    modulation_factor,
    polarization,
    sample_modulated_angles,
    spurious_modulation,
    stokes,
)
from astroreco.errors import InputError


def _angle_diff(a, b):
    """a - b wrapped to (-pi/2, pi/2] (polarization angles have period pi)."""
    return 0.5 * np.pi - np.mod(0.5 * np.pi - (a - b), np.pi)


def _sample_harmonic(n, amplitude, k, rng):
    """Angles from 1 + amplitude cos(k phi) on [-pi, pi) by rejection."""
    out = []
    while sum(x.size for x in out) < n:
        cand = rng.uniform(-np.pi, np.pi, 2 * n)
        keep = rng.uniform(0.0, 1.0 + amplitude, 2 * n) < 1.0 + amplitude * np.cos(k * cand)
        out.append(cand[keep])
    return np.concatenate(out)[:n]


# ----------------------------------------------------------------------------- sampling


def test_sampler_shape_range_and_moments():
    rng = np.random.default_rng(1)
    phi = sample_modulated_angles(200_000, 0.4, 0.3, rng)
    assert phi.shape == (200_000,)
    assert np.all((phi >= -np.pi) & (phi < np.pi))
    # E[cos 2(phi - phi0)] = mu / 2 for the density 1 + mu cos 2(phi - phi0)
    m = np.mean(np.cos(2 * (phi - 0.3)))
    assert m == pytest.approx(0.2, abs=4 * math.sqrt(0.5 / phi.size))
    assert sample_modulated_angles(0, 0.5, 0.0, rng).shape == (0,)


def test_sampler_reproducible():
    a = sample_modulated_angles(1000, 0.3, 1.0, np.random.default_rng(7))
    b = sample_modulated_angles(1000, 0.3, 1.0, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- stokes


def test_stokes_per_event_values():
    phi = np.array([0.0, np.pi / 4, np.pi / 2, -np.pi / 4])
    q, u = stokes(phi)
    np.testing.assert_allclose(q, [2, 0, -2, 0], atol=1e-12)
    np.testing.assert_allclose(u, [0, 2, 0, -2], atol=1e-12)
    q2, u2 = stokes(phi, mu=0.5)
    np.testing.assert_allclose(q2, 2 * q)
    np.testing.assert_allclose(u2, 2 * u)
    q3, _ = stokes(phi, mu=np.array([1.0, 0.5, 0.25, 1.0]))
    np.testing.assert_allclose(q3, [2, 0, -8, 0], atol=1e-12)


# ----------------------------------------------------------------------------- recovery


@pytest.mark.parametrize("mu_true,phi0", [(0.3, 0.0), (0.5, 0.7), (0.25, -1.2), (0.8, np.pi / 2)])
def test_modulation_factor_recovers_mu_and_phase(mu_true, phi0):
    rng = np.random.default_rng(11)
    phi = sample_modulated_angles(100_000, mu_true, phi0, rng)
    res = modulation_factor(phi)
    assert abs(res.mu - mu_true) < 4 * res.mu_err
    assert abs(_angle_diff(res.phi0, phi0)) < 4 * res.phi0_err
    assert -np.pi / 2 < res.phi0 <= np.pi / 2
    assert res.mu_err == pytest.approx(math.sqrt((2 - res.mu**2) / (phi.size - 1)))


@pytest.mark.parametrize("mu_true,phi0", [(0.3, 0.0), (0.5, 0.7), (0.25, -1.2), (0.8, np.pi / 2)])
def test_curve_fit_recovers_mu_and_phase(mu_true, phi0):
    rng = np.random.default_rng(12)
    phi = sample_modulated_angles(200_000, mu_true, phi0, rng)
    fit = fit_modulation_curve(phi, n_bins=100)
    assert isinstance(fit, ModulationFit)
    assert abs(fit.mu - mu_true) < 4 * fit.mu_err
    assert abs(_angle_diff(fit.phi0, phi0)) < 4 * fit.phi0_err
    assert -np.pi / 2 < fit.phi0 <= np.pi / 2
    assert fit.ndof == 97
    assert fit.bin_edges.shape == (101,) and fit.counts.shape == (100,)
    assert fit.counts.sum() == phi.size
    # a good fit: chi2 within ~5 sigma of ndof
    assert abs(fit.chi2 - fit.ndof) < 5 * math.sqrt(2 * fit.ndof)
    # the fit and the Stokes estimate agree with each other and have similar errors
    st = modulation_factor(phi)
    assert abs(fit.mu - st.mu) < 3 * st.mu_err
    # the fit reaches the Cramer-Rao bound of 1 + m cos(2 phi), m^2 (1/sqrt(1 - m^2) - 1)^-1 / N,
    # which lies below the Stokes (moment) error sqrt((2 - m^2) / N) for large m
    crb = math.sqrt(mu_true**2 / (1 / math.sqrt(1 - mu_true**2) - 1) / phi.size)
    assert fit.mu_err == pytest.approx(crb, rel=0.1)
    assert fit.mu_err <= 1.05 * st.mu_err
    d = fit.to_dict(include_histogram=True)
    json.dumps(d)
    assert len(d["counts"]) == 100


def test_curve_fit_angles_outside_range_are_wrapped():
    rng = np.random.default_rng(13)
    phi = sample_modulated_angles(50_000, 0.4, 0.2, rng)
    a = fit_modulation_curve(phi, n_bins=60)
    b = fit_modulation_curve(phi + 2 * np.pi * rng.integers(-3, 4, phi.size), n_bins=60)
    np.testing.assert_allclose(b.counts, a.counts)
    assert b.mu == pytest.approx(a.mu, rel=1e-6)


def test_curve_fit_weighted_equal_weights_matches_unweighted():
    rng = np.random.default_rng(14)
    phi = sample_modulated_angles(50_000, 0.4, -0.4, rng)
    a = fit_modulation_curve(phi, n_bins=50)
    b = fit_modulation_curve(phi, n_bins=50, weights=np.ones(phi.size))
    assert b.mu == pytest.approx(a.mu, rel=1e-6)
    assert b.mu_err == pytest.approx(a.mu_err, rel=1e-6)
    assert b.phi0 == pytest.approx(a.phi0, abs=1e-6)


def test_polarization_recovers_pd_with_modulation_factor():
    rng = np.random.default_rng(15)
    mu, pd_true, pa_true = 0.3, 0.6, 0.5
    phi = sample_modulated_angles(200_000, mu * pd_true, pa_true, rng)
    res = polarization(phi, mu=mu)
    assert isinstance(res, PolarizationResult)
    assert abs(res.pd - pd_true) < 4 * res.pd_err
    assert abs(_angle_diff(res.pa, pa_true)) < 4 * res.pa_err
    assert abs(res.q - pd_true * math.cos(2 * pa_true)) < 4 * res.q_err
    assert abs(res.u - pd_true * math.sin(2 * pa_true)) < 4 * res.u_err
    expected_err = math.sqrt((2 - res.pd**2 * mu**2) / ((phi.size - 1) * mu**2))
    assert res.pd_err == pytest.approx(expected_err)
    assert res.pa_err == pytest.approx(res.pd_err / (2 * res.pd))
    # per-event mu all equal is the scalar case
    res2 = polarization(phi, mu=np.full(phi.size, mu))
    assert res2.pd == pytest.approx(res.pd) and res2.pd_err == pytest.approx(res.pd_err)
    assert res2.mdp99 == pytest.approx(res.mdp99)


# ----------------------------------------------------------------------------- error coverage


def test_pull_distributions_stokes():
    rng = np.random.default_rng(21)
    mu, pd_true, pa_true, n = 0.3, 0.8, 0.4, 2000
    q0, u0 = pd_true * math.cos(2 * pa_true), pd_true * math.sin(2 * pa_true)
    pulls = {"pd": [], "pa": [], "q": [], "u": [], "mod": []}
    for _ in range(200):
        phi = sample_modulated_angles(n, mu * pd_true, pa_true, rng)
        r = polarization(phi, mu=mu)
        pulls["pd"].append((r.pd - pd_true) / r.pd_err)
        pulls["pa"].append(_angle_diff(r.pa, pa_true) / r.pa_err)
        pulls["q"].append((r.q - q0) / r.q_err)
        pulls["u"].append((r.u - u0) / r.u_err)
        m = modulation_factor(sample_modulated_angles(n, 0.5, -0.3, rng))
        pulls["mod"].append((m.mu - 0.5) / m.mu_err)
    for name, values in pulls.items():
        values = np.asarray(values)
        assert 0.8 < values.std() < 1.2, name
        assert abs(values.mean()) < 0.3, name


def test_pull_distribution_curve_fit():
    rng = np.random.default_rng(22)
    pulls_mu, pulls_phi = [], []
    for _ in range(200):
        phi = sample_modulated_angles(10_000, 0.4, 0.9, rng)
        fit = fit_modulation_curve(phi, n_bins=25)
        pulls_mu.append((fit.mu - 0.4) / fit.mu_err)
        pulls_phi.append(_angle_diff(fit.phi0, 0.9) / fit.phi0_err)
    for values in (np.asarray(pulls_mu), np.asarray(pulls_phi)):
        assert 0.8 < values.std() < 1.2
        assert abs(values.mean()) < 0.4


# ----------------------------------------------------------------------------- unpolarized


def test_unpolarized_pd_consistent_with_zero():
    rng = np.random.default_rng(31)
    phi = rng.uniform(-np.pi, np.pi, 100_000)
    res = polarization(phi, mu=0.3)
    assert res.pd < res.mdp99
    assert abs(res.q) < 4 * res.q_err and abs(res.u) < 4 * res.u_err
    spur = spurious_modulation(phi)
    for k in (2, 4, 6):
        assert spur[f"significance_{k}"] < 4
        assert spur[f"amplitude_err_{k}"] == pytest.approx(math.sqrt(2 / phi.size))
        assert spur[f"amplitude_{k}"] < 4 * spur["noise_mean_amplitude"]
    assert spur["noise_mean_amplitude"] == pytest.approx(math.sqrt(math.pi / phi.size))
    json.dumps(spur)
    assert all(type(v) is float for v in spur.values())


def test_spurious_noise_mean_matches_rayleigh():
    rng = np.random.default_rng(32)
    amps = [spurious_modulation(rng.uniform(-np.pi, np.pi, 1000), harmonics=(2,))["amplitude_2"]
            for _ in range(400)]
    expected = math.sqrt(math.pi / 1000)
    # Rayleigh sd = sqrt((4 - pi)/2) sigma, sigma = sqrt(2/N); 400 draws
    sd_mean = math.sqrt((4 - math.pi) / 2) * math.sqrt(2 / 1000) / math.sqrt(400)
    assert abs(np.mean(amps) - expected) < 4 * sd_mean


def test_hexagonal_artefact_flagged_at_k6():
    rng = np.random.default_rng(33)
    phi = _sample_harmonic(100_000, 0.05, 6, rng)
    spur = spurious_modulation(phi, harmonics=(2, 4, 6))
    assert spur["significance_6"] > 5
    assert spur["p_value_6"] < 1e-6
    assert spur["amplitude_6"] == pytest.approx(0.05, abs=4 * spur["amplitude_err_6"])
    assert abs(spur["phase_6"]) < 0.1
    assert spur["significance_2"] < 4 and spur["significance_4"] < 4
    # the polarization analysis does not see a pure k=6 term
    assert polarization(phi).pd < polarization(phi).mdp99


def test_modulation_amplitude_equals_k2_amplitude():
    rng = np.random.default_rng(34)
    phi = sample_modulated_angles(20_000, 0.3, 0.1, rng)
    spur = spurious_modulation(phi, harmonics=(2,))
    assert spur["amplitude_2"] == pytest.approx(modulation_factor(phi).mu)
    assert spur["phase_2"] == pytest.approx(modulation_factor(phi).phi0)


# ----------------------------------------------------------------------------- weights, MDP


def test_equal_weights_equal_unweighted():
    rng = np.random.default_rng(41)
    phi = sample_modulated_angles(5000, 0.2, 0.3, rng)
    a = polarization(phi, mu=0.3)
    b = polarization(phi, mu=0.3, weights=np.full(phi.size, 2.5))
    for name in ("n", "n_eff", "q", "u", "q_err", "u_err", "pd", "pd_err", "pa", "pa_err",
                 "mdp99"):
        assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-10), name
    assert b.i == pytest.approx(2.5 * phi.size)
    assert b.w2 == pytest.approx(6.25 * phi.size)
    ma, mb = modulation_factor(phi), modulation_factor(phi, weights=np.full(phi.size, 0.1))
    assert mb.mu == pytest.approx(ma.mu) and mb.mu_err == pytest.approx(ma.mu_err)


def test_n_eff_formula():
    rng = np.random.default_rng(42)
    phi = rng.uniform(-np.pi, np.pi, 1000)
    w = rng.uniform(0.0, 1.0, 1000)
    res = polarization(phi, weights=w)
    assert res.n == 1000
    assert res.i == pytest.approx(w.sum())
    assert res.w2 == pytest.approx(np.sum(w**2))
    assert res.n_eff == pytest.approx(w.sum() ** 2 / np.sum(w**2))
    assert res.n_eff < 1000
    # zero weights drop events
    w2 = np.r_[np.ones(10), np.zeros(5)]
    assert polarization(np.linspace(0, 1, 15), weights=w2).n_eff == pytest.approx(10)


def test_weighted_errors_cover():
    """Weights that vary event by event still give pulls of unit width."""
    rng = np.random.default_rng(43)
    pulls = []
    for _ in range(200):
        phi = sample_modulated_angles(2000, 0.5, 0.0, rng)
        w = rng.uniform(0.2, 1.0, phi.size)
        r = polarization(phi, weights=w)
        pulls.append((r.pd - 0.5) / r.pd_err)
    assert 0.8 < np.std(pulls) < 1.2


def test_mdp99_unweighted():
    assert mdp99(0.3, 10_000) == pytest.approx(4.29 / (0.3 * 100))
    assert MDP99_FACTOR == 4.29
    rng = np.random.default_rng(44)
    phi = rng.uniform(-np.pi, np.pi, 10_000)
    assert polarization(phi, mu=0.3).mdp99 == pytest.approx(4.29 / (0.3 * 100))
    assert polarization(phi).mdp99 == pytest.approx(4.29 / 100)


def test_mdp99_weighted_and_per_event_mu():
    w = np.r_[np.ones(100), np.full(100, 0.5)]
    expected = 4.29 * math.sqrt(np.sum(w**2)) / (0.4 * w.sum())
    assert mdp99(0.4, weights=w) == pytest.approx(expected)
    assert mdp99(0.4, 200, weights=w) == pytest.approx(expected)
    assert mdp99(0.4, weights=np.ones(400)) == pytest.approx(mdp99(0.4, 400))
    assert mdp99(np.full(400, 0.4)) == pytest.approx(mdp99(0.4, 400))
    mu = np.r_[np.full(100, 0.2), np.full(100, 0.4)]
    assert mdp99(mu) == pytest.approx(4.29 * math.sqrt(np.sum(1 / mu**2)) / 200)
    rng = np.random.default_rng(45)
    phi = rng.uniform(-np.pi, np.pi, 200)
    assert polarization(phi, mu=mu, weights=w).mdp99 == pytest.approx(mdp99(mu, weights=w))


def test_to_dict_plain_json():
    rng = np.random.default_rng(46)
    res = polarization(sample_modulated_angles(500, 0.3, 0.0, rng), mu=0.5)
    d = res.to_dict()
    assert set(d) == {"n", "i", "w2", "n_eff", "q", "u", "q_err", "u_err", "pd", "pd_err",
                      "pa", "pa_err", "mdp99"}
    assert type(d["n"]) is int
    assert all(type(v) is float for k, v in d.items() if k != "n")
    json.dumps(d)
    json.dumps(modulation_factor(sample_modulated_angles(500, 0.3, 0.0, rng)).to_dict())
    with pytest.raises(AttributeError):
        res.pd = 0.0  # frozen


def test_degenerate_samples_give_infinite_errors():
    r = polarization([0.3])
    assert r.pd_err == math.inf and r.pa_err == math.inf
    r = polarization([0.0, np.pi / 2])  # q cancels exactly: PD = 0
    assert r.pd == pytest.approx(0.0, abs=1e-15)
    assert r.pa_err == math.inf or r.pa_err > 1e10


# ----------------------------------------------------------------------------- epsilon


def test_epsilon_within_pi_periodicity():
    rng = np.random.default_rng(51)
    true = rng.uniform(-np.pi, np.pi, 1000)
    for shift in (0.0, np.pi, -np.pi, 2 * np.pi, -2 * np.pi, 3 * np.pi):
        frac, err = epsilon_within(true + shift, true)
        assert frac == 1.0 and err == 0.0
    frac, _ = epsilon_within(true + np.pi / 2, true)
    assert frac == 0.0
    frac, _ = epsilon_within(true + np.radians(9.9), true)
    assert frac == 1.0
    frac, _ = epsilon_within(true + np.pi + np.radians(-9.9), true)
    assert frac == 1.0
    frac, _ = epsilon_within(true + np.radians(10.1), true)
    assert frac == 0.0
    frac, _ = epsilon_within(true + np.radians(10.1), true, tolerance_deg=11)
    assert frac == 1.0


def test_epsilon_fraction_and_binomial_error():
    rng = np.random.default_rng(52)
    true = rng.uniform(-np.pi, np.pi, 10_000)
    reco = true.copy()
    reco[:3000] += np.pi / 2  # wrong
    reco[3000:5000] += np.pi  # reversed direction: still correct
    frac, err = epsilon_10(reco, true)
    assert frac == pytest.approx(0.7)
    assert err == pytest.approx(math.sqrt(0.7 * 0.3 / 10_000))
    assert epsilon_within(reco, true) == (frac, err)
    # Gaussian smearing sigma: expected fraction is erf(tol / (sigma sqrt 2))
    sigma = np.radians(12.0)
    reco = true + rng.normal(0.0, sigma, true.size)
    frac, err = epsilon_10(reco, true)
    expected = math.erf(np.radians(10.0) / (sigma * math.sqrt(2)))
    assert abs(frac - expected) < 4 * err


# ----------------------------------------------------------------------------- expected_modulation


def test_expected_modulation_matches_bessel_ratio():
    kappa = np.array([0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0])
    np.testing.assert_allclose(expected_modulation(kappa),
                               special.iv(1, kappa) / special.iv(0, kappa), rtol=1e-10)
    assert isinstance(expected_modulation(1.0), float)
    assert expected_modulation(0.0) == 0.0


def test_expected_modulation_stable_over_range():
    kappa = np.logspace(-8, 6, 300)
    r = expected_modulation(kappa)
    assert np.all(np.isfinite(r))
    assert np.all((r >= 0) & (r < 1))
    assert np.all(np.diff(r) > 0)
    assert r[0] == pytest.approx(0.5e-8, rel=1e-6)
    assert r[-1] == pytest.approx(1 - 0.5e-6, rel=1e-9)


def test_expected_modulation_is_mean_cos2():
    """For angles drawn from exp(kappa cos 2(phi - phi_hat)), mean cos 2 delta = I1/I0."""
    rng = np.random.default_rng(53)
    kappa = 2.0
    delta = rng.vonmises(0.0, kappa, 200_000) / 2  # 2 delta ~ von Mises(kappa)
    m = np.mean(np.cos(2 * delta))
    assert abs(m - expected_modulation(kappa)) < 5 * np.std(np.cos(2 * delta)) / math.sqrt(2e5)


# ----------------------------------------------------------------------------- bad input


def _one_line(excinfo, word):
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert word in msg
    assert isinstance(excinfo.value, ValueError)


PHI = np.linspace(-1.0, 1.0, 10)


@pytest.mark.parametrize(
    "call,word",
    [
        (lambda: polarization([]), "phi"),
        (lambda: polarization(np.r_[PHI, np.nan]), "phi"),
        (lambda: polarization(np.r_[PHI, np.inf]), "phi"),
        (lambda: polarization(PHI, weights=np.r_[np.ones(9), -1.0]), "weights"),
        (lambda: polarization(PHI, weights=np.r_[np.ones(9), np.nan]), "weights"),
        (lambda: polarization(PHI, weights=np.ones(9)), "weights"),
        (lambda: polarization(PHI, weights=np.ones((2, 5))), "weights"),
        (lambda: polarization(PHI, weights=np.zeros(10)), "weights"),
        (lambda: polarization(PHI, mu=0.0), "mu"),
        (lambda: polarization(PHI, mu=-0.3), "mu"),
        (lambda: polarization(PHI, mu=1.5), "mu"),
        (lambda: polarization(PHI, mu=np.nan), "mu"),
        (lambda: polarization(PHI, mu=np.r_[np.full(9, 0.3), 0.0]), "mu"),
        (lambda: polarization(PHI, mu=np.full(4, 0.3)), "mu"),
        (lambda: stokes([]), "phi"),
        (lambda: stokes(PHI, mu=2.0), "mu"),
        (lambda: modulation_factor([]), "phi"),
        (lambda: modulation_factor(PHI, weights=-np.ones(10)), "weights"),
        (lambda: fit_modulation_curve([]), "phi"),
        (lambda: fit_modulation_curve([np.nan, 0.1]), "phi"),
        (lambda: fit_modulation_curve(PHI, n_bins=2), "n_bins"),
        (lambda: fit_modulation_curve(PHI, weights=np.ones(3)), "weights"),
        (lambda: epsilon_within([], []), "phi_reco"),
        (lambda: epsilon_within(PHI, PHI[:5]), "phi_true"),
        (lambda: epsilon_within(PHI, np.r_[PHI[:9], np.nan]), "phi_true"),
        (lambda: epsilon_within(PHI, PHI, tolerance_deg=0.0), "tolerance_deg"),
        (lambda: spurious_modulation([]), "phi"),
        (lambda: spurious_modulation(PHI, harmonics=(0, 2)), "harmonics"),
        (lambda: mdp99(0.0, 100), "mu"),
        (lambda: mdp99(1.2, 100), "mu"),
        (lambda: mdp99(0.3), "n"),
        (lambda: mdp99(0.3, 0), "n"),
        (lambda: mdp99(0.3, 10, weights=np.ones(5)), "n"),
        (lambda: mdp99(0.3, weights=-np.ones(5)), "weights"),
        (lambda: expected_modulation(-1.0), "kappa"),
        (lambda: expected_modulation(np.nan), "kappa"),
        (lambda: sample_modulated_angles(10, 1.5, 0.0, np.random.default_rng(0)), "mu"),
        (lambda: sample_modulated_angles(-1, 0.5, 0.0, np.random.default_rng(0)), "n"),
        (lambda: sample_modulated_angles(10, 0.5, 0.0, 42), "rng"),
    ],
)
def test_bad_input_raises_input_error(call, word):
    with pytest.raises(InputError) as excinfo:
        call()
    _one_line(excinfo, word)
