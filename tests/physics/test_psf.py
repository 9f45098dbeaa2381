import numpy as np
import pytest
from scipy import integrate

from astroreco.errors import InputError
from astroreco.physics import psf
from astroreco.physics.psf import (
    CTA_KING_GAMMA,
    FERMI_KING_GAMMA,
    KingMixture,
    cta_theta68,
    fermi_theta68,
    king_containment,
    king_pdf,
    king_r95_over_r68,
    king_radius,
    king_sigma_for_r68,
    pixel_kernel,
    pixel_kernel_bank,
    psf_model,
)


@pytest.mark.parametrize("gamma", [1.5, FERMI_KING_GAMMA, CTA_KING_GAMMA, 10.0])
def test_king_containment_is_the_integral_of_the_density(gamma):
    sigma = 0.3
    for r in (0.1, 0.5, 2.0, 8.0):
        num, _ = integrate.quad(lambda x: 2 * np.pi * x * king_pdf(x, sigma, gamma), 0, r)
        assert king_containment(r, sigma, gamma) == pytest.approx(num, rel=1e-9)
    # normalised: the whole plane holds everything
    tot, _ = integrate.quad(lambda x: 2 * np.pi * x * king_pdf(x, sigma, gamma), 0, np.inf)
    assert tot == pytest.approx(1.0, rel=1e-7)


def test_king_radius_inverts_containment_and_r68_is_the_requested_theta68():
    for gamma in (1.8, 3.0):
        for r68 in (0.05, 0.77, 2.0):
            sigma = king_sigma_for_r68(r68, gamma)
            assert king_radius(0.68, sigma, gamma) == pytest.approx(r68, rel=1e-12)
            assert king_containment(r68, sigma, gamma) == pytest.approx(0.68, rel=1e-12)
            for q in (0.1, 0.95, 0.99):
                assert king_containment(king_radius(q, sigma, gamma), sigma, gamma) == \
                    pytest.approx(q, rel=1e-12)


def test_heavy_tails_r95_over_r68():
    # PHYSICS.md: r95/r68 ~ 4 for the LAT (1.6 for a Gaussian); the docstring's numbers
    assert king_r95_over_r68(FERMI_KING_GAMMA) == pytest.approx(3.62, abs=0.005)
    assert 3.0 <= king_r95_over_r68(FERMI_KING_GAMMA) <= 4.0
    assert king_r95_over_r68(CTA_KING_GAMMA) == pytest.approx(2.13, abs=0.005)
    assert king_r95_over_r68(1.7) == pytest.approx(4.17, abs=0.005)
    # the Gaussian limit
    assert king_r95_over_r68(1e6) == pytest.approx(np.sqrt(np.log(0.05) / np.log(0.32)),
                                                   rel=1e-4)
    m = psf_model("fermi").at(3.0)
    assert m.radius(0.95) / m.r68_deg == pytest.approx(3.62, abs=0.005)


def test_fermi_theta68_matches_physics_md():
    # PHYSICS.md: 2.0 deg at 300 MeV, 0.77 at 1 GeV, 0.16 at 10 GeV
    np.testing.assert_allclose(fermi_theta68([0.3, 1.0, 10.0]), [2.0, 0.77, 0.16], rtol=0.05)
    assert fermi_theta68(1e4) == pytest.approx(0.1, rel=0.01)    # the 0.1 deg floor
    e = np.geomspace(0.1, 1e4, 50)
    assert np.all(np.diff(fermi_theta68(e)) < 0)


def test_cta_theta68_public_order_of_magnitude():
    assert cta_theta68(100.0) == pytest.approx(0.10, abs=0.005)
    assert cta_theta68(1e4) == pytest.approx(0.05, abs=0.005)
    e = np.geomspace(30, 1e5, 30)
    t = cta_theta68(e)
    assert np.all(np.diff(t) < 0) and t.min() > 0.035 and t.max() < 0.2


def test_band_psf_lies_between_its_edges_and_follows_the_spectrum():
    model = psf_model("fermi")
    band = model.for_band(0.3, 1.16)
    assert isinstance(band, KingMixture) and len(band.sigma_deg) == 8
    r68 = band.r68_deg
    assert fermi_theta68(1.16) < r68 < fermi_theta68(0.3)
    # a softer spectrum weights the low energies: a wider PSF
    assert model.for_band(0.3, 1.16, index=3.0).r68_deg > model.for_band(0.3, 1.16,
                                                                           index=1.5).r68_deg
    # a narrow band is the PSF at its energy
    assert model.for_band(0.999, 1.001).r68_deg == pytest.approx(fermi_theta68(1.0), rel=1e-3)
    # mixture containment is the weighted one and radius() inverts it
    assert band.containment(band.radius(0.9)) == pytest.approx(0.9, rel=1e-9)


@pytest.mark.parametrize("offset", [(0.0, 0.0), (0.31, -0.22), (-0.49, 0.45)])
def test_pixel_kernel_sums_to_containment_and_is_centred(offset):
    band = psf_model("fermi").for_band(1.16, 4.48)     # r68 ~ 3 pixels
    pix = 0.15625
    k = pixel_kernel(band, pix, 12, offset=offset, supersample=8)
    assert k.shape == (25, 25)
    assert k.sum() == pytest.approx(float(band.containment(12.5 * pix)), rel=1e-12)
    assert k.sum() > 0.95
    # centroid at the source: a truncation disc that lies inside the square
    k = pixel_kernel(band, pix, 12, offset=offset, supersample=8, radius_deg=11 * pix)
    assert k.sum() == pytest.approx(float(band.containment(11 * pix)), rel=1e-12)
    idx = np.arange(-12, 13)
    cx = (k.sum(0) * idx).sum() / k.sum()
    cy = (k.sum(1) * idx).sum() / k.sum()
    assert cx == pytest.approx(offset[0], abs=0.01) and cy == pytest.approx(offset[1], abs=0.01)
    # the central pixel against a direct 2-D integration of the density
    val, _ = integrate.dblquad(
        lambda y, x: float(band.pdf(np.hypot(x, y))),
        (-0.5 - offset[0]) * pix, (0.5 - offset[0]) * pix,
        (-0.5 - offset[1]) * pix, (0.5 - offset[1]) * pix, epsabs=1e-10)
    # (with the disc inside the square, the rescaling to C(R) is a ~1e-4 correction)
    k_fine = pixel_kernel(band, pix, 12, offset=offset, supersample=64, radius_deg=11 * pix)
    assert k_fine[12, 12] == pytest.approx(val, rel=2e-3)


def test_pixel_kernel_bank_matches_direct_integration():
    band = psf_model("fermi").for_band(67.0, 259.0)     # core much narrower than a pixel
    pix, h, p = 0.15625, 3, 8
    bank = pixel_kernel_bank(band, pix, h, n_phase=p, supersample=2)
    assert bank.shape == (p, p, 2 * h + 1, 2 * h + 1)
    delta = (np.arange(p) + 0.5) / p - 0.5
    s = 128
    sub = (np.arange(s) + 0.5) / s - 0.5
    u = (np.arange(-h, h + 1)[:, None] + sub).ravel()
    for ay, ax in ((0, 0), (5, 2), (7, 7)):
        x, y = (u - delta[ax]) * pix, (u - delta[ay]) * pix
        ref = band.pdf(np.hypot(y[:, None], x[None, :])).reshape(
            2 * h + 1, s, 2 * h + 1, s).sum((1, 3)) * (pix / s) ** 2
        np.testing.assert_allclose(bank[ay, ax], ref, atol=2e-3 * ref.max())


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(InputError, match="gamma: expected a King tail index > 1"):
        king_pdf(0.1, 0.1, 1.0)
    with pytest.raises(InputError, match="energy_gev"):
        fermi_theta68(-1.0)
    with pytest.raises(InputError, match="psf: unknown PSF model 'hess'"):
        psf_model("hess")
    with pytest.raises(InputError, match="energy band"):
        psf_model("fermi").for_band(10.0, 1.0)
    with pytest.raises(InputError, match="pixel_deg"):
        pixel_kernel(psf_model("fermi").at(1.0), 0.0, 3)
    with pytest.raises(InputError, match="sigma_deg"):
        KingMixture((0.0,), (1.0,), 2.0)
    with pytest.raises(InputError, match="fraction"):
        king_radius(1.5, 0.1, 2.0)


def test_public_api():
    assert set(psf.__all__) >= {"king_pdf", "king_containment", "king_radius",
                                "king_sigma_for_r68", "fermi_theta68", "cta_theta68",
                                "pixel_kernel", "pixel_kernel_bank", "PsfModel", "psf_model"}
