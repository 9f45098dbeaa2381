import json
import math

import numpy as np
import pytest

from astroreco.detectors.sky import simulate
from astroreco.detectors.sky.geometry import SkyGeometry
from astroreco.detectors.sky.simulate import (
    TRUTH_FIELDS,
    SkyBatch,
    SkySimConfig,
    SkySimulator,
)
from astroreco.errors import InputError
from astroreco.physics.gamma import CLASS_CODES, FLUX_BAND_GEV, logparabola_band_flux
from astroreco.physics.psf import king_containment, pixel_kernel


@pytest.fixture(scope="module")
def sim():
    return SkySimulator(SkySimConfig())


@pytest.fixture(scope="module")
def batch(sim):
    return sim.simulate(4, seed=11)


# --- geometry ------------------------------------------------------------------------------

@pytest.mark.parametrize("projection", ["CAR", "TAN"])
def test_geometry_matches_astropy_wcs(projection):
    g = SkyGeometry(projection=projection)
    assert g.shape == (64, 64) and g.pixel_deg == pytest.approx(10 / 64) and g.n_energy == 6
    np.testing.assert_allclose(g.energy_edges_gev[[0, -1]] if isinstance(
        g.energy_edges_gev, np.ndarray) else (g.energy_edges_gev[0], g.energy_edges_gev[-1]),
        (0.3, 1000.0))
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-10, 74, 50), rng.uniform(-10, 74, 50)
    for l0, b0 in ((0.0, 0.0), (123.4, 56.7), (300.0, -80.0), (359.9, 2.0)):
        w = g.wcs(l0, b0)
        assert w.wcs.ctype[0] == f"GLON-{projection}" and w.wcs.cdelt[0] < 0
        lw, bw = w.wcs_pix2world(x, y, 0)
        lg, bg = g.pixel_to_galactic(x, y, l0, b0)
        dl = ((lg - lw + 180) % 360 - 180) * np.cos(np.radians(bw))
        assert np.abs(dl).max() < 1e-9 and np.abs(bg - bw).max() < 1e-9
        xp, yp = g.galactic_to_pixel(lw, bw, l0, b0)
        assert np.abs(xp - x).max() < 1e-8 and np.abs(yp - y).max() < 1e-8
    # l decreases to the right, b increases upwards; solid angle ~ (10 deg)^2
    l1, b1 = g.pixel_to_galactic([31.5, 40.0, 31.5], [31.5, 31.5, 40.0], 0.0, 0.0)
    assert l1[1] > 300 and b1[2] > 0
    assert g.solid_angle_sr().sum() == pytest.approx(np.radians(10.0) ** 2, rel=0.01)


def test_geometry_presets_and_validation():
    cta = SkyGeometry.cta()
    assert cta.n_pix == 128 and cta.pixel_deg == pytest.approx(0.04) and cta.n_energy == 5
    assert cta.energy_edges_gev[0] == pytest.approx(30) and cta.energy_edges_gev[-1] == \
        pytest.approx(1e5)
    assert SkyGeometry.from_dict(json.loads(json.dumps(cta.to_dict()))) == cta
    with pytest.raises(InputError, match="energy_edges_gev: expected at least 2 edges"):
        SkyGeometry(energy_edges_gev=(1.0,))
    with pytest.raises(InputError, match="energy_edges_gev: expected strictly increasing"):
        SkyGeometry(energy_edges_gev=(1.0, 10.0, 5.0))
    with pytest.raises(InputError, match="projection"):
        SkyGeometry(projection="AIT")
    with pytest.raises(InputError, match="n_pix"):
        SkyGeometry(n_pix=2)


# --- batch contents ------------------------------------------------------------------------

def test_batch_shapes_truth_and_wcs(batch):
    n = len(batch)
    assert n == 4 and isinstance(batch, SkyBatch)
    assert batch.counts.shape == (4, 6, 64, 64) and batch.counts.dtype == np.int32
    for a in (batch.background, batch.source_counts):
        assert a.shape == (4, 6, 64, 64) and a.dtype == np.float32 and np.all(a >= 0)
    assert batch.time_counts is None
    assert np.all(np.abs(batch.centres[:, 1]) <= 90)
    t = batch.truth
    assert list(t) == [name for name, *_ in TRUTH_FIELDS if name != "light_curve"]
    m = len(t["flux"])
    for name, dtype, *_ in TRUTH_FIELDS:
        if name in t:
            assert t[name].dtype == np.dtype(dtype) and len(t[name]) == m
    assert t["flux_bin"].shape == (m, 6) and t["npred"].shape == (m, 6)
    assert set(np.unique(t["patch"])) <= set(range(4))
    assert np.all((t["flux"] >= 1e-11) & (t["flux"] <= 1e-7))
    inside = (t["x_pix"] >= -0.5) & (t["x_pix"] < 63.5) & (t["y_pix"] >= -0.5) & \
        (t["y_pix"] < 63.5)
    np.testing.assert_array_equal(inside, t["in_patch"])
    assert 0 < t["in_patch"].sum() < m                     # the margin holds sources too
    for i in range(n):
        s = batch.sources_of(i)
        lw, bw = batch.wcs(i).wcs_pix2world(s["x_pix"], s["y_pix"], 0)
        dl = ((s["l_deg"] - lw + 180) % 360 - 180) * np.cos(np.radians(bw))
        assert np.abs(dl).max() < 1e-8 and np.abs(s["b_deg"] - bw).max() < 1e-8
        assert np.all(np.diff(s["flux"]) <= 0)             # sorted by flux


def test_truth_fluxes_follow_the_spectra(batch, sim):
    t = batch.truth
    np.testing.assert_allclose(t["npred"], t["flux_bin"] * 4e11, rtol=1e-12)
    agn = t["cls"] == CLASS_CODES["agn"]
    psr = t["cls"] == CLASS_CODES["psr"]
    assert agn.sum() > 0 and psr.sum() > 0
    assert np.all(np.isnan(t["alpha"][psr])) and np.all(np.isnan(t["gamma_index"][agn]))
    assert np.all(t["ext_class"][agn] == 0)
    # bin fluxes of an AGN are S times the spectrum's band ratios
    bands = np.concatenate([[FLUX_BAND_GEV], sim.config.geometry.energy_bands_gev])
    f = logparabola_band_flux(t["alpha"][agn], t["beta"][agn], t["pivot_gev"][agn], bands)
    np.testing.assert_allclose(t["flux_bin"][agn], t["flux"][agn, None] * f[:, 1:] / f[:, :1],
                               rtol=1e-10)


def test_pulsars_sit_at_low_latitude_agn_everywhere():
    cfg = SkySimConfig(geometry=SkyGeometry(n_pix=8, size_deg=10.0,
                                            energy_edges_gev=(1.0, 10.0)),
                       margin_deg=0.0).variant(counts__s_min=1e-10, psr__plane_density_deg2=1.0)
    b = SkySimulator(cfg).simulate(400, seed=5)
    t = b.truth
    sel = t["in_patch"]
    b_psr = np.abs(t["b_deg"][sel & (t["cls"] == 1)])
    b_agn = np.abs(t["b_deg"][sel & (t["cls"] == 0)])
    assert len(b_psr) > 100 and len(b_agn) > 100
    assert np.median(b_psr) == pytest.approx(5.0, abs=1.5)
    assert np.median(b_agn) == pytest.approx(30.0, abs=6.0)


# --- rendering physics ---------------------------------------------------------------------

def test_bright_source_counts_equal_flux_times_exposure_times_containment(sim):
    g, r = sim.config.geometry, sim.renderer
    flux_bin = np.array([[3e-8, 1e-8, 3e-9, 1e-9, 3e-10, 1e-10]])
    npred = flux_bin * sim.exposure
    _, img = r.render(None, [31.7], [31.2], npred)              # near the patch centre
    per_bin = img.sum((1, 2))
    # the fraction of the (truncated) PSF inside the patch, by direct integration
    n_sub = 8
    sub = (np.arange(g.n_pix * n_sub) + 0.5) / n_sub - 0.5
    dx, dy = (sub - 31.7) * g.pixel_deg, (sub - 31.2) * g.pixel_deg
    rr = np.hypot(dy[:, None], dx[None, :])
    for e, band in enumerate(r.bands):
        inside = (band.pdf(rr) * (rr <= r.radius_deg[e])).sum() * (g.pixel_deg / n_sub) ** 2
        assert per_bin[e] == pytest.approx(npred[0, e] * inside, rel=0.02)
        if r.radius_deg[e] < 4.5:                              # whole kernel inside the patch
            assert per_bin[e] == pytest.approx(npred[0, e] * r.containment[e], rel=1e-6)
    # the containment is the King mixture's within the kernel radius: > 94% in every bin
    assert np.all(r.containment > 0.94)
    np.testing.assert_allclose(r.containment, [b.containment(rad) for b, rad in
                                               zip(r.bands, r.radius_deg)], rtol=1e-9)


def test_source_image_matches_the_pixel_integrated_psf_at_sub_pixel_positions(sim):
    r, g = sim.renderer, sim.config.geometry
    p = r.n_phase
    npred = np.full((1, 6), 1.0)
    yy, xx = np.mgrid[:64, :64]
    for x, y in ((20.0, 40.0), (20.37, 39.81), (45.93, 12.55)):
        _, img = r.render(None, [x], [y], npred)
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        # rendered at the nearest of P sub-pixel phases: within 1/(2P) pixel
        qx, qy = ((np.floor((v - i + 0.5) * p) + 0.5) / p - 0.5 for v, i in ((x, ix), (y, iy)))
        assert abs(ix + qx - x) <= 0.5 / p and abs(iy + qy - y) <= 0.5 / p
        for e in range(6):
            half = math.ceil(r.radius_deg[e] / g.pixel_deg)
            k = pixel_kernel(r.bands[e], g.pixel_deg, half, offset=(qx, qy),
                             supersample=8 if e < 2 else 32, radius_deg=r.radius_deg[e])
            ref = np.zeros((64 + 2 * half,) * 2)
            ref[iy:iy + 2 * half + 1, ix:ix + 2 * half + 1] = k
            ref = ref[half:half + 64, half:half + 64]
            assert np.abs(img[e] - ref).sum() < 0.008 * ref.sum()
            near = np.hypot(xx - x, yy - y) < 6
            c_img = [(img[e] * near * v).sum() / (img[e] * near).sum() for v in (xx, yy)]
            c_ref = [(ref * near * v).sum() / (ref * near).sum() for v in (xx, yy)]
            np.testing.assert_allclose(c_img, c_ref, atol=0.01)


def test_extended_source_adds_its_variance(sim):
    r = sim.renderer
    npred = np.full((1, 6), 1e4)
    sigma = 0.5
    _, point = r.render(None, [31.5], [31.5], npred)
    _, ext = r.render(None, [31.5], [31.5], npred, [sigma])
    e = 4                                                       # narrow PSF core
    assert ext[e].sum() == pytest.approx(point[e].sum(), rel=1e-3)
    yy, xx = np.mgrid[:64, :64]

    def var_x(img):
        # a window of +-4 deg: the King tails make the full second moment diverge
        w = img * (np.hypot(xx - 31.5, yy - 31.5) < 4.0 / 0.15625)
        return (w * (xx - 31.5) ** 2).sum() / w.sum() * 0.15625 ** 2
    assert var_x(ext[e]) - var_x(point[e]) == pytest.approx(sigma ** 2, rel=0.1)


def test_asimov_is_exact_and_sources_match_poisson(sim):
    asimov = SkySimulator(SkySimConfig(mode="asimov")).simulate(2, seed=3)
    poisson = sim.simulate(2, seed=3)
    assert asimov.counts.dtype == np.float32
    np.testing.assert_array_equal(asimov.counts, asimov.background + asimov.source_counts)
    np.testing.assert_array_equal(asimov.background, poisson.background)
    np.testing.assert_array_equal(asimov.source_counts, poisson.source_counts)
    for k in poisson.truth:
        np.testing.assert_array_equal(asimov.truth[k], poisson.truth[k])


def test_poisson_counts_have_the_expected_mean(batch):
    mu = batch.background.astype(float) + batch.source_counts
    n = batch.counts.astype(float)
    assert n.sum() == pytest.approx(mu.sum(), abs=5 * math.sqrt(mu.sum()))
    sel = mu > 5
    chi2 = ((n[sel] - mu[sel]) ** 2 / mu[sel]).mean()
    assert chi2 == pytest.approx(1.0, abs=0.05)
    # per energy bin too
    for e in range(6):
        assert n[:, e].sum() == pytest.approx(mu[:, e].sum(), abs=5 * math.sqrt(mu[:, e].sum()))


def test_background_physics():
    sim = SkySimulator(SkySimConfig(mode="asimov"))
    centres = [(0.0, 0.0), (0.0, 60.0)]
    plane, high = sim.simulate(2, seed=0, centres=centres).background
    # inner Galaxy ~1000x isotropic near 1 GeV, high latitude a few times
    assert plane[1].mean() > 50 * high[1].mean()
    g = sim.config.geometry
    iso = sim._iso[1] * g.solid_angle_sr().mean() * sim.exposure[1]
    assert 1.0 < high[1].mean() / iso < 6.0
    # the disk falls with |b| away from the patch centre (rows are latitude)
    prof = plane[2].mean(axis=1)
    assert prof[32] > 5 * prof[5] and prof[32] > 5 * prof[58]
    # IEM B is another background
    b = SkySimulator(SkySimConfig(mode="asimov", iem="B")).simulate(1, seed=0, centres=[
        (30.0, 2.0)]).background
    a = sim.simulate(1, seed=0, centres=[(30.0, 2.0)]).background
    assert np.abs(b / a - 1).mean() > 0.1


# --- reproducibility, time bins, presets ---------------------------------------------------

def test_same_seed_same_batch_and_chunks_reproduce_one_call(sim, batch):
    again = sim.simulate(4, seed=11)
    chunks = [sim.simulate(2, seed=11), sim.simulate(2, seed=11, first_index=2)]
    for name in ("counts", "background", "source_counts", "centres", "patch_id"):
        np.testing.assert_array_equal(getattr(again, name), getattr(batch, name))
        np.testing.assert_array_equal(np.concatenate([getattr(c, name) for c in chunks]),
                                      getattr(batch, name))
    for k in batch.truth:
        np.testing.assert_array_equal(again.truth[k], batch.truth[k])
        if k != "patch":
            np.testing.assert_array_equal(np.concatenate([c.truth[k] for c in chunks]),
                                          batch.truth[k])
    other = sim.simulate(1, seed=12)
    assert not np.array_equal(other.counts[0], batch.counts[0])


def test_time_bins():
    cfg = SkySimConfig(n_time_bins=10)
    tb = SkySimulator(cfg).simulate(2, seed=4)
    assert tb.time_counts.shape == (2, 10, 6, 64, 64) and tb.time_counts.dtype == np.int32
    np.testing.assert_array_equal(tb.time_counts.sum(1), tb.counts)
    t = tb.truth
    assert t["light_curve"].shape == (len(t["flux"]), 10)
    np.testing.assert_allclose(t["light_curve"].mean(1), 1.0, rtol=1e-12)
    psr = t["cls"] == CLASS_CODES["psr"]
    assert np.all(t["var_sigma"][psr] == 0) and np.all(t["light_curve"][psr] == 1)
    assert np.mean(t["var_sigma"][~psr] > 0) > 0.9
    asimov = SkySimulator(cfg.variant(mode="asimov")).simulate(2, seed=4)
    np.testing.assert_allclose(asimov.time_counts.sum(1), asimov.counts, rtol=1e-4, atol=1e-4)
    # turning time bins on does not change the sky
    plain = SkySimulator(SkySimConfig(mode="asimov")).simulate(2, seed=4)
    np.testing.assert_array_equal(plain.truth["flux"], t["flux"])
    np.testing.assert_allclose(plain.source_counts, asimov.source_counts, rtol=1e-4, atol=1e-5)


def test_cta_preset():
    cfg = SkySimConfig.cta()
    assert cfg.psf == "cta" and cfg.geometry.n_pix == 128 and len(cfg.exposure_cm2s) == 5
    b = SkySimulator(cfg).simulate(1, seed=0)
    assert b.counts.shape == (1, 5, 128, 128)
    assert abs(b.centres[0, 1]) <= 5.0
    lon = (b.centres[0, 0] + 180) % 360 - 180
    assert -120 <= lon <= 90
    assert np.all(b.background > 0)


def test_config_to_dict_variant_and_errors():
    cfg = SkySimConfig.fermi()
    json.dumps(cfg.to_dict())
    v = cfg.variant(iem="B", agn__density_deg2=0.2, geometry__projection="TAN")
    assert v.iem == "B" and v.agn.density_deg2 == 0.2 and v.geometry.projection == "TAN"
    assert cfg.iem == "A" and cfg.agn.density_deg2 == 0.1
    bad = [
        (dict(exposure_cm2s=-4e11), "exposure_cm2s: expected one value > 0 or 6"),
        (dict(exposure_cm2s=(1e11, 2e11)), "exposure_cm2s"),
        (dict(iem="C"), "iem: unknown interstellar emission model 'C'"),
        (dict(psf="hess"), "psf: unknown PSF model 'hess'"),
        (dict(mode="mean"), "mode: expected one of"),
        (dict(n_time_bins=-1), "n_time_bins"),
        (dict(abs_b_range_deg=(10, 95)), "abs_b_range_deg"),
        (dict(l_range_deg=(0, 400)), "l_range_deg"),
        (dict(margin_deg=-1.0), "margin_deg"),
        (dict(geometry__energy_edges_gev=()), "energy_edges_gev: expected at least 2 edges"),
    ]
    for changes, msg in bad:
        with pytest.raises(InputError, match=msg):
            cfg.variant(**changes)
    with pytest.raises(InputError, match="colour: not a field of SkySimConfig"):
        cfg.variant(colour="red")
    sim = SkySimulator(SkySimConfig(geometry=SkyGeometry(n_pix=8, energy_edges_gev=(1, 10))))
    with pytest.raises(InputError, match="n_patches: expected an integer >= 0"):
        sim.simulate(-1, seed=0)
    with pytest.raises(InputError, match="centres"):
        sim.simulate(2, seed=0, centres=[(0.0, 0.0)])
    empty = sim.simulate(0, seed=0)
    assert len(empty) == 0 and empty.counts.shape == (0, 1, 8, 8)


def test_public_api():
    assert set(simulate.__all__) == {"SkySimConfig", "SkyBatch", "SkySimulator",
                                     "TRUTH_FIELDS", "MODES"}
    assert king_containment(1.0, 1.0, 2.0) > 0
