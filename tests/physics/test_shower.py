import math

import numba
import numpy as np
import pytest
from scipy import integrate, special

from astroreco.errors import InputError
from astroreco.physics import shower
from astroreco.physics.shower import SamplingCorrection

Z_EFF = 62.0
EC_MEV = 8.3
AMS_LIKE = SamplingCorrection(sampling_frequency=5.2, e_over_mip=0.65)


def test_gamma_p_matches_scipy_to_1e10():
    a = np.linspace(1.01, 30.0, 150)[:, None]
    x = np.concatenate([np.linspace(0.0, 200.0, 801), np.geomspace(1e-9, 1.0, 40),
                        np.linspace(0.5, 40.0, 200)])[None, :]
    p = shower.gamma_p_array(a, x)
    assert p.shape == (150, x.size)
    np.testing.assert_allclose(p, special.gammainc(a, x), rtol=0, atol=1e-10)
    # both branches (series below a + 1, continued fraction above) are also relatively exact
    tiny = special.gammainc(a, x) > 1e-250
    rel = np.abs(p - special.gammainc(a, x))[tiny] / special.gammainc(a, x)[tiny]
    assert rel.max() < 1e-9


def test_gamma_p_scalar_kernel_and_limits():
    assert shower.gamma_p(2.5, 0.0) == 0.0
    assert shower.gamma_p(2.5, 1e4) == 1.0
    assert shower.gamma_p(1.0, 2.0) == pytest.approx(1 - math.exp(-2.0), abs=1e-14)
    lg = math.lgamma(4.2)
    assert shower.gamma_p_lg(4.2, 3.3, lg) == pytest.approx(shower.gamma_p(4.2, 3.3), rel=1e-14)
    with pytest.raises(InputError, match="gamma_p"):
        shower.gamma_p_array(-1.0, 1.0)


def test_kernels_are_callable_from_numba():
    @numba.njit
    def use(alpha, x, tau):
        m = shower.longitudinal_moments(9.0, Z_EFF, True, 0.2, 0.35)
        t, a = shower.shower_shape(m[0], m[1], m[2], m[3], m[4], 0.0, 0.0)
        rc, rt, p = shower.radial_kernel(tau, math.log(100.0), Z_EFF, False, 0.0, 0.0)
        return shower.gamma_p(alpha, x) + t + a + rc + rt + p

    rc, rt, p = shower.radial_parameters(1.2, 100.0, z_eff=Z_EFF)
    par = shower.longitudinal_parameters(np.exp(9.0) * EC_MEV / 1000, critical_mev=EC_MEV,
                                         z_eff=Z_EFF, sampling=SamplingCorrection(5.0, 0.65))
    expect = (special.gammainc(3.0, 2.0) + np.exp(par.mean_ln_t) + np.exp(par.mean_ln_alpha)
              + rc + rt + p)
    assert use(3.0, 2.0, 1.2) == pytest.approx(float(expect), rel=1e-12)


def test_layer_fractions_partition_the_gamma_profile():
    alpha, beta = 5.4, 0.55
    edges = np.linspace(0.0, 17.3, 19)
    frac = shower.layer_fraction(alpha, beta, edges[:-1], edges[1:])
    density = lambda t: beta * (beta * t) ** (alpha - 1) * np.exp(-beta * t) / math.gamma(alpha)
    for k in (0, 8, 17):
        assert frac[k] == pytest.approx(integrate.quad(density, edges[k], edges[k + 1])[0],
                                        rel=1e-9)
    rear = shower.layer_fraction(alpha, beta, 17.3, np.inf)
    assert frac.sum() + rear == pytest.approx(1.0, abs=1e-12)
    # nothing before the start, and the maximum of the profile sits at T = (alpha - 1)/beta
    assert shower.layer_fraction(alpha, beta, -3.0, 0.0) == 0.0
    grid = np.arange(0, 30, 0.01)
    fine = shower.layer_fraction(alpha, beta, grid, grid + 0.01)
    assert np.argmax(fine) * 0.01 == pytest.approx((alpha - 1) / beta, abs=0.02)


def test_strip_cdf_is_the_exact_marginal_of_the_2d_component():
    radius = 0.7

    def density2d(v, u):
        return radius**2 / (math.pi * (u * u + v * v + radius**2) ** 2)

    for u in (-2.0, -0.3, 0.0, 0.45, 1.7):
        # marginal density: integrate along the fibre (v), compare with dG/du
        marginal = integrate.quad(lambda v: density2d(v, u), -np.inf, np.inf)[0]
        h = 1e-5
        dg = (shower.strip_cdf(u + h, radius) - shower.strip_cdf(u - h, radius)) / (2 * h)
        assert marginal == pytest.approx(float(dg), rel=1e-6)
        # CDF: the half-plane below u
        cdf = integrate.dblquad(density2d, -np.inf, u, -np.inf, np.inf, epsabs=1e-12,
                               epsrel=1e-12)[0]
        assert cdf == pytest.approx(float(shower.strip_cdf(u, radius)), abs=1e-9)
    assert shower.strip_cdf(-1e9, radius) == pytest.approx(0.0, abs=1e-12)
    assert shower.strip_cdf(1e9, radius) == pytest.approx(1.0, abs=1e-12)


def test_radial_profile_is_normalised_and_its_cdf_is_the_containment():
    for tau, energy in ((0.3, 5.0), (1.0, 100.0), (2.5, 2000.0)):
        rc, rt, p = shower.radial_parameters(tau, energy, z_eff=Z_EFF, sampling=AMS_LIKE)
        f = lambda r: float(shower.radial_profile(r, rc, rt, p))  # noqa: E731
        total = integrate.quad(f, 0, 1, limit=200)[0] + integrate.quad(f, 1, np.inf)[0]
        assert total == pytest.approx(1.0, abs=1e-8)
        assert integrate.quad(f, 0, 1.0, limit=200)[0] == pytest.approx(
            float(shower.radial_containment(1.0, rc, rt, p)), abs=1e-8)
        # the strip fraction over the whole line is 1 as well
        assert shower.strip_fraction(-np.inf, np.inf, rc, rt, p) == pytest.approx(1.0)


def test_radial_parameters_follow_gflash():
    # homogeneous formulas at one point, by hand
    tau, e = 1.0, 100.0
    rc, rt, p = shower.radial_parameters(tau, e, z_eff=Z_EFF)
    le = math.log(e)
    assert rc == pytest.approx(0.0251 + 0.00319 * le + (0.1162 - 0.000381 * Z_EFF) * tau)
    k4 = 0.3585 + 0.0421 * le
    assert rt == pytest.approx((0.659 - 0.00309 * Z_EFF)
                               * (math.exp(-2.59 * (tau - 0.645)) + math.exp(k4 * (tau - 0.645))))
    s = (0.401 + 0.00187 * Z_EFF - tau) / (1.313 - 0.0686 * le)
    assert p == pytest.approx((2.632 - 0.00094 * Z_EFF) * math.exp(s - math.exp(s)))
    # the shower widens with depth: core radius grows, core weight falls past the maximum
    taus = np.array([0.5, 1.0, 2.0, 3.0])
    rc, rt, p = shower.radial_parameters(taus, 100.0, z_eff=Z_EFF)
    assert np.all(np.diff(rc) > 0) and np.all(np.diff(p) < 0)
    width = 1 - shower.strip_fraction(-0.5, 0.5, rc, rt, p)
    assert np.all(np.diff(width) > 0)
    # at a fixed depth t, the shower with the earlier maximum (smaller T) is already wider
    t = 12.0
    wide = 1 - shower.strip_fraction(-0.5, 0.5, *shower.radial_parameters(t / 7.0, 100.0,
                                                                            z_eff=Z_EFF))
    narrow = 1 - shower.strip_fraction(-0.5, 0.5, *shower.radial_parameters(t / 10.0, 100.0,
                                                                              z_eff=Z_EFF))
    assert wide > narrow
    # sampling: more core (larger p) and a narrower tail
    rc_s, rt_s, p_s = shower.radial_parameters(1.0, 100.0, z_eff=Z_EFF, sampling=AMS_LIKE)
    rc_h, rt_h, p_h = shower.radial_parameters(1.0, 100.0, z_eff=Z_EFF)
    assert p_s > p_h and rt_s < rt_h


def test_longitudinal_parameters_homogeneous_formulas():
    e = np.array([3.0, 30.0, 300.0, 3000.0])
    ln_y = np.log(e * 1000 / EC_MEV)
    par = shower.longitudinal_parameters(e, critical_mev=EC_MEV, z_eff=Z_EFF)
    np.testing.assert_allclose(np.exp(par.mean_ln_t), ln_y - 0.812)
    np.testing.assert_allclose(np.exp(par.mean_ln_alpha), 0.81 + (0.458 + 2.26 / Z_EFF) * ln_y)
    np.testing.assert_allclose(par.sigma_ln_t, 1 / (-1.4 + 1.26 * ln_y))
    np.testing.assert_allclose(par.sigma_ln_alpha, 1 / (-0.58 + 0.86 * ln_y))
    np.testing.assert_allclose(par.rho, 0.705 - 0.023 * ln_y)
    # the depth of maximum grows like ln E, with unit slope
    slope = np.polyfit(np.log(e), np.exp(par.mean_ln_t), 1)[0]
    assert slope == pytest.approx(1.0, abs=1e-9)


def test_sampling_correction_shortens_showers():
    hom = shower.longitudinal_parameters(100.0, critical_mev=EC_MEV, z_eff=Z_EFF)
    sam = shower.longitudinal_parameters(100.0, critical_mev=EC_MEV, z_eff=Z_EFF,
                                         sampling=AMS_LIKE)
    shift_t = -0.55 / 5.2 - 0.69 * (1 - 0.65)
    assert np.exp(sam.mean_ln_t) - np.exp(hom.mean_ln_t) == pytest.approx(shift_t)
    assert np.exp(sam.mean_ln_alpha) - np.exp(hom.mean_ln_alpha) == pytest.approx(-0.476 / 5.2)
    ln_y = math.log(100e3 / EC_MEV)
    assert sam.sigma_ln_t == pytest.approx(1 / (-2.5 + 1.25 * ln_y))
    assert sam.rho == pytest.approx(0.784 - 0.023 * ln_y)
    s = SamplingCorrection.from_layers(9.6, 1.1, 0.75, 82.0, 5.7)
    assert s.sampling_frequency == pytest.approx(9.6 / 1.85)
    assert s.e_over_mip == pytest.approx(1 / (1 + 0.007 * 76.3))
    with pytest.raises(InputError, match="e_over_mip"):
        SamplingCorrection(5.0, 1.5)
    with pytest.raises(InputError, match="sampling_frequency"):
        SamplingCorrection(0.0, 0.6)


def test_drawn_showers_have_gflash_fluctuations():
    gen = np.random.default_rng(3)
    e = np.full(40_000, 50.0)
    t_max, alpha, beta = shower.draw_longitudinal(e, gen, critical_mev=EC_MEV, z_eff=Z_EFF)
    par = shower.longitudinal_parameters(50.0, critical_mev=EC_MEV, z_eff=Z_EFF)
    assert np.log(t_max).mean() == pytest.approx(float(par.mean_ln_t), abs=0.003)
    assert np.log(t_max).std() == pytest.approx(float(par.sigma_ln_t), rel=0.03)
    assert np.log(alpha).std() == pytest.approx(float(par.sigma_ln_alpha), rel=0.03)
    assert np.corrcoef(np.log(t_max), np.log(alpha))[0, 1] == pytest.approx(float(par.rho),
                                                                           abs=0.02)
    np.testing.assert_allclose(beta, (alpha - 1) / t_max)


def test_bad_inputs_raise():
    with pytest.raises(InputError, match="energy_gev"):
        shower.longitudinal_parameters([10.0, -1.0], critical_mev=EC_MEV, z_eff=Z_EFF)
    with pytest.raises(InputError, match="energy_gev"):
        shower.radial_parameters(1.0, np.nan, z_eff=Z_EFF)
    with pytest.raises(InputError, match="tau"):
        shower.radial_parameters(-0.5, 10.0, z_eff=Z_EFF)
    with pytest.raises(InputError, match="t1 <= t2"):
        shower.layer_fraction(3.0, 0.5, 2.0, 1.0)
