import numpy as np
import pytest
from scipy import integrate, optimize

from astroreco.errors import InputError
from astroreco.physics import diffuse, gamma
from astroreco.physics.diffuse import (
    REF_BAND_GEV,
    cr_band_intensity,
    iem_model,
    isotropic_band_intensity,
    isotropic_integral,
)
from astroreco.physics.gamma import (
    BREAK_FLUX,
    AgnPopulation,
    ExtensionClasses,
    PulsarPopulation,
    SourceCounts,
    integrate_bands,
    light_curves,
    logparabola,
    logparabola_band_flux,
    plsec,
    plsec_band_flux,
)

EDGES = np.geomspace(0.3, 1000.0, 7)


# --- spectra -------------------------------------------------------------------------------

def test_logparabola_band_flux_matches_quad():
    alpha = np.array([1.5, 2.14, 2.9])
    beta = np.array([0.0, 0.09, 0.3])
    pivot = np.array([1.0, 1.7, 4.0])
    got = logparabola_band_flux(alpha, beta, pivot, EDGES)
    assert got.shape == (3, 6)
    for i in range(3):
        for j in range(6):
            ref, _ = integrate.quad(lambda e: logparabola(e, alpha[i], beta[i], pivot[i]),
                                    EDGES[j], EDGES[j + 1], epsrel=1e-12, limit=200)
            assert got[i, j] == pytest.approx(ref, rel=1e-6)
    # beta = 0: a power law, closed form
    assert got[0, 0] == pytest.approx((EDGES[0] ** -0.5 - EDGES[1] ** -0.5) / 0.5, rel=1e-10)


def test_plsec_band_flux_matches_quad_including_the_cutoff():
    index = np.array([0.5, 1.0, 1.6])
    ecut = np.array([1.0, 3.0, 8.0])
    bands = np.array([[1.0, 100.0], [0.3, 1.0], [10.0, 30.0], [30.0, 100.0]])
    got = plsec_band_flux(index, ecut, 2.0 / 3.0, bands)
    for i in range(3):
        for j, (lo, hi) in enumerate(bands):
            ref, _ = integrate.quad(lambda e: plsec(e, index[i], ecut[i]), lo, hi,
                                    epsrel=1e-12, limit=200)
            assert got[i, j] == pytest.approx(ref, rel=1e-6)


def test_integrate_bands_accepts_edges_or_bands_and_validates():
    f = lambda e: e[None, :] ** -2.0  # noqa: E731
    a = integrate_bands(f, [1.0, 10.0, 100.0])
    b = integrate_bands(f, [[1.0, 10.0], [10.0, 100.0]])
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a[0], [0.9, 0.09], rtol=1e-12)
    with pytest.raises(InputError, match="bands_gev"):
        integrate_bands(f, [10.0, 1.0])


def test_break_flux_conversion():
    # 2.1e-8 in 1-10 GeV -> S(1-100 GeV) through the mean AGN LogParabola
    assert BREAK_FLUX == pytest.approx(2.19e-8, rel=0.01)


# --- source counts -------------------------------------------------------------------------

def _mle_slope(s, lo, hi):
    """Maximum-likelihood index of s^-n truncated to [lo, hi]."""
    lls = np.log(s).sum()

    def nll(n):
        norm = (hi ** (1 - n) - lo ** (1 - n)) / (1 - n)
        return n * lls + len(s) * np.log(norm)
    return optimize.minimize_scalar(nll, bounds=(1.05, 5.0), method="bounded").x


def test_dnds_sample_recovers_both_slopes():
    rng = np.random.default_rng(0)
    below = SourceCounts(s_min=1e-11, s_max=1e-9).sample(rng, 40_000)
    assert below.min() >= 1e-11 and below.max() <= 1e-9
    assert _mle_slope(below, 1e-11, 1e-9) == pytest.approx(1.97, abs=0.03)
    above = SourceCounts(s_min=3e-8, s_max=1e-5).sample(rng, 40_000)
    assert _mle_slope(above, 3e-8, 1e-5) == pytest.approx(3.1, abs=0.03)
    # across the break: the fraction above it follows the integrals
    c = SourceCounts(s_min=1e-9, s_max=1e-6)
    s = c.sample(rng, 100_000)
    frac = c.integral(c.s_break, c.s_max) / c.integral(c.s_min, c.s_max)
    assert np.mean(s > c.s_break) == pytest.approx(frac, abs=4 * np.sqrt(frac / 1e5) + 1e-3)


def test_dnds_normalisation():
    c = SourceCounts()
    # density_ref above 1e-10 (any flux): N(1e-10 .. s_max) ~ density (s_max far above)
    assert SourceCounts(s_min=1e-10, s_max=1e-3).expected_number(0.1) == pytest.approx(
        0.1, rel=1e-6)
    # below the break N(>S) ~ S^-0.97: ten times fainter, ~9.3 times more
    assert c.expected_number(0.1) / 0.1 == pytest.approx(10 ** 0.97, rel=0.05)


# --- populations ---------------------------------------------------------------------------

def _sample_abs_b(pop, rng, n):
    """|b| (deg) of a population uniform in longitude with density per sr ~ rel(b)."""
    out = []
    while sum(map(len, out)) < n:
        b = np.degrees(np.arcsin(rng.uniform(-1, 1, 200_000)))
        keep = rng.random(len(b)) < pop(b)
        out.append(np.abs(b[keep]))
    return np.concatenate(out)[:n]


def test_pulsars_concentrate_at_low_latitude_agn_do_not():
    psr = PulsarPopulation()
    assert psr.median_abs_b() == pytest.approx(5.0, abs=0.05)
    rng = np.random.default_rng(1)
    b_psr = _sample_abs_b(psr.relative_density, rng, 20_000)
    b_agn = _sample_abs_b(lambda b: np.ones_like(b), rng, 20_000)
    assert np.median(b_psr) == pytest.approx(5.0, abs=0.2)
    assert np.median(b_agn) == pytest.approx(30.0, abs=1.0)
    # all-sky number: the closed form against a numerical integral
    num, _ = integrate.quad(lambda b: np.exp(-abs(b) / np.radians(psr.b_scale_deg))
                            * np.cos(b), -np.pi / 2, np.pi / 2)
    rho_sr = psr.plane_density_deg2 * (180 / np.pi) ** 2
    assert psr.all_sky_number() == pytest.approx(2 * np.pi * rho_sr * num, rel=1e-9)


def test_spectral_parameter_distributions():
    rng = np.random.default_rng(2)
    agn = AgnPopulation().draw_spectra(rng, 50_000)
    assert np.mean(agn["alpha"]) == pytest.approx(2.14, abs=0.01)
    assert np.std(agn["alpha"]) == pytest.approx(0.38, abs=0.01)
    assert np.median(agn["beta"]) == pytest.approx(0.09, abs=0.005) and agn["beta"].min() >= 0
    assert np.median(agn["pivot_gev"]) == pytest.approx(1.7, rel=0.02)
    psr = PulsarPopulation().draw_spectra(rng, 50_000)
    assert np.mean(psr["gamma_index"]) == pytest.approx(1.0, abs=0.01)
    assert np.median(psr["ecut_gev"]) == pytest.approx(3.0, rel=0.02)
    assert np.all(psr["cutoff_b"] == pytest.approx(2 / 3))


def test_extension_classes():
    rng = np.random.default_rng(3)
    ext = ExtensionClasses(fractions=(2, 1, 1))       # normalised to (0.5, 0.25, 0.25)
    assert ext.fractions == (0.5, 0.25, 0.25)
    cls, sigma = ext.draw(rng, 40_000)
    np.testing.assert_allclose(np.bincount(cls) / len(cls), [0.5, 0.25, 0.25], atol=0.01)
    assert np.all(sigma[cls == 0] == 0)
    assert sigma[cls == 1].min() >= 0.1 and sigma[cls == 1].max() <= 0.3
    assert sigma[cls == 2].min() >= 0.3 and sigma[cls == 2].max() <= 1.0
    assert ext.max_sigma_deg == 1.0
    with pytest.raises(InputError, match="fractions"):
        ExtensionClasses(fractions=(1, -1, 0))


def test_light_curves_keep_the_mean_flux():
    rng = np.random.default_rng(4)
    sig = np.array([0.0, 0.3, 1.0])
    f = light_curves(rng, np.repeat(sig, 2000), 10)
    np.testing.assert_allclose(f.mean(1), 1.0, rtol=1e-12)
    assert np.all(f[:2000] == 1.0)
    # the log-flux scatter within a light curve is sigma_v
    for k, s in enumerate(sig[1:], start=1):
        assert np.log(f[2000 * k:2000 * (k + 1)]).std(1, ddof=1).mean() == pytest.approx(
            s, rel=0.05)


def test_population_validation():
    with pytest.raises(InputError, match="s_min, s_max: expected s_min < s_max"):
        SourceCounts(s_min=1e-8, s_max=1e-9)
    with pytest.raises(InputError, match="s_min: expected a flux > 0"):
        SourceCounts(s_min=-1.0)
    with pytest.raises(InputError, match="density_deg2"):
        AgnPopulation(density_deg2=-0.1)
    with pytest.raises(InputError, match="b_scale_deg"):
        PulsarPopulation(b_scale_deg=0.0)


# --- diffuse -------------------------------------------------------------------------------

def test_isotropic_reproduces_physics_md():
    np.testing.assert_allclose(isotropic_integral([0.1, 1.0, 10.0]), [1.19e-5, 4.8e-7, 5.1e-8],
                               rtol=1e-12)
    e = np.geomspace(0.05, 1e5, 200)
    assert np.all(np.diff(isotropic_integral(e)) < 0)
    # continuous at the knots, band intensities add up
    for k in (1.0, 10.0):
        assert isotropic_integral(k * (1 - 1e-9)) == pytest.approx(isotropic_integral(k),
                                                                   rel=1e-6)
    bands = isotropic_band_intensity(EDGES[:-1], EDGES[1:])
    assert np.all(bands > 0)
    assert bands.sum() == pytest.approx(isotropic_integral(0.3) - isotropic_integral(1000.0))


@pytest.mark.parametrize("name", ["A", "B"])
def test_iem_hits_the_physics_md_ratios_and_falls_with_latitude(name):
    m = iem_model(name)
    iso = isotropic_band_intensity(*REF_BAND_GEV)
    ratio = lambda l, b: float(m.band_intensity(l, b, REF_BAND_GEV)[0]) / iso  # noqa: E731
    assert 600 <= ratio(0.0, 0.0) <= 1300
    assert 40 <= ratio(0.0, 3.5) <= 90
    assert 0.5 <= ratio(120.0, 60.0) <= 5
    # longitude-averaged profile falls with |b| on both sides
    lon = np.arange(0.0, 360.0, 2.0)
    b = np.arange(0.0, 90.0, 1.0)
    for sign in (1, -1):
        prof = m.band_intensity(lon[None, :], sign * b[:, None], REF_BAND_GEV)[0].mean(1)
        assert np.all(np.diff(prof) < 0)
    # inner Galaxy brighter than the anticentre in the plane
    assert ratio(0.0, 0.0) > 5 * ratio(180.0, 0.0)


def test_iem_a_and_b_differ_in_space_and_spectrum():
    a, b = iem_model("A"), iem_model("B")
    lon, lat = np.meshgrid(np.arange(-30.0, 30.0, 1.0), np.arange(-15.0, 15.0, 0.5))
    ia = a.band_intensity(lon, lat, EDGES)
    ib = b.band_intensity(lon, lat, EDGES)
    assert ia.shape == (6,) + lon.shape
    rel = np.abs(ib - ia) / ia
    assert np.median(rel) > 0.2                               # different morphology
    # B's spectral curvature: its ratio to A is not constant in energy at a fixed point
    r = b.band_intensity(0.0, 0.0, EDGES) / a.band_intensity(0.0, 0.0, EDGES)
    assert r.max() / r.min() > 1.5
    # a clump of B (Cygnus) stands out of the plane's smooth profile; A has none
    for m, factor in ((b, 1.5), (a, 1.0)):
        at = lambda lon: float(m.band_intensity(lon, 1.0, REF_BAND_GEV)[0])  # noqa: E731
        assert (at(80.0) > factor * 0.5 * (at(68.0) + at(92.0))) == (m is b)


def test_cr_background_and_unknown_iem():
    v = cr_band_intensity(np.array([100.0, 1000.0]), np.array([1000.0, np.inf]), 1e-8)
    assert v[1] == pytest.approx(1e-8) and v[0] == pytest.approx(1e-8 * (10 ** 1.6 - 1))
    with pytest.raises(InputError, match="iem: unknown interstellar emission model 'C'"):
        iem_model("C")


def test_public_api():
    assert {"SourceCounts", "AgnPopulation", "PulsarPopulation", "ExtensionClasses",
            "integrate_bands"} <= set(gamma.__all__)
    assert {"isotropic_integral", "iem_model", "InterstellarModel"} <= set(diffuse.__all__)
