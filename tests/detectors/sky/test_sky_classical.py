"""Classical sky baseline: significance map, sep / photutils / local-maximum detection."""

import importlib.util

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS
from scipy import ndimage

from astroreco.detectors.sky import classical
from astroreco.detectors.sky.classical import (classical_catalog, detect_peaks,
                                               detect_photutils, detect_sep,
                                               pixel_to_galactic, significance_map,
                                               ts_map_gammapy)
from astroreco.detectors.sky.catalog import read_catalog, write_catalog
from astroreco.errors import InputError

PSF_SIGMA_PIX = 1.5
SOURCES_XY = np.array([[12.3, 40.7], [45.6, 20.2], [50.1, 50.4]])  # (x, y) pixels


def gaussian_kernel(sigma=PSF_SIGMA_PIX, half=5):
    y, x = np.mgrid[-half:half + 1, -half:half + 1]
    return np.exp(-0.5 * (x**2 + y**2) / sigma**2)


def source_image(shape, xy, counts, sigma=PSF_SIGMA_PIX):
    """Expected counts (H, W) of point sources with a Gaussian PSF."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape)
    for (x0, y0), n in zip(xy, counts):
        image += n * np.exp(-0.5 * ((x - x0) ** 2 + (y - y0) ** 2) / sigma**2) / (
            2 * np.pi * sigma**2)
    return image


def car_wcs(n=64, crval=(30.0, 0.0), cdelt=0.1):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["GLON-CAR", "GLAT-CAR"]
    wcs.wcs.crval = list(crval)
    wcs.wcs.crpix = [n / 2 + 1, n / 2 + 1]  # pixel (n/2, n/2), 0-based, is the reference
    wcs.wcs.cdelt = [-cdelt, cdelt]
    return wcs


@pytest.fixture(scope="module")
def sky():
    """A 3 x 64 x 64 cube: flat background + three bright sources, Poisson noise."""
    rng = np.random.default_rng(2024)
    background = np.stack([np.full((64, 64), b) for b in (4.0, 2.0, 1.0)])
    signal = np.stack([source_image((64, 64), SOURCES_XY, [150, 120, 200]) * f
                       for f in (1.0, 0.8, 0.6)])
    return rng.poisson(background + signal).astype(float), background


@pytest.fixture(scope="module")
def pure_background():
    rng = np.random.default_rng(11)
    background = np.stack([np.full((128, 128), b) for b in (5.0, 2.0, 1.0)])
    return rng.poisson(background).astype(float), background


def test_significance_formula_at_one_pixel():
    rng = np.random.default_rng(3)
    background = rng.uniform(1, 3, (1, 21, 21))
    counts = rng.poisson(background).astype(float)
    k = gaussian_kernel()
    s = significance_map(counts, background, k).per_bin[0]
    kn = k / k.sum()
    y, x = 10, 10
    window = (slice(y - 5, y + 6), slice(x - 5, x + 6))
    # convolution flips the kernel (symmetric here)
    expected = (np.sum(kn * (counts[0][window] - background[0][window]))
                / np.sqrt(np.sum(kn**2 * background[0][window])))
    assert s[y, x] == pytest.approx(expected, rel=1e-9)
    direct = ndimage.convolve(counts[0] - background[0], kn, mode="constant") / np.sqrt(
        ndimage.convolve(background[0], kn**2, mode="constant"))
    np.testing.assert_allclose(s, direct, atol=1e-9)


def test_significance_is_standard_normal_on_background(pure_background):
    counts, background = pure_background
    maps = significance_map(counts, background, gaussian_kernel())
    inner = (slice(8, -8), slice(8, -8))
    for image in [*maps.per_bin, maps.combined]:
        assert abs(image[inner].mean()) < 0.15
        assert 0.85 < image[inner].std() < 1.15
    stouffer = significance_map(counts, background, gaussian_kernel(), combine="stouffer")
    assert 0.85 < stouffer.combined[inner].std() < 1.15


def test_combined_sums_the_selected_bins(sky):
    counts, background = sky
    k = gaussian_kernel()
    one = significance_map(counts, background, k, bins=[1])
    np.testing.assert_allclose(one.combined, one.per_bin[1], atol=1e-12)
    kernels = [gaussian_kernel(s, 6) for s in (2.5, 1.5, 1.0)]
    both = significance_map(counts, background, kernels, bins=[0, 2]).combined
    num = sum(ndimage.convolve(counts[e] - background[e], kernels[e] / kernels[e].sum(),
                               mode="constant") for e in (0, 2))
    var = sum(ndimage.convolve(background[e], (kernels[e] / kernels[e].sum())**2,
                               mode="constant") for e in (0, 2))
    np.testing.assert_allclose(both, num / np.sqrt(var), atol=1e-9)


def test_zero_background_gives_no_nan():
    counts = np.zeros((2, 32, 32))
    counts[:, 5, 5] = 3
    background = np.ones((2, 32, 32))
    background[:, :16] = 0.0
    maps = significance_map(counts, background, gaussian_kernel())
    assert np.all(np.isfinite(maps.per_bin)) and np.all(np.isfinite(maps.combined))
    assert np.all(maps.combined[:10] == 0.0)  # kernel footprint fully in the empty half
    assert np.all(significance_map(counts, 0.0, gaussian_kernel()).combined == 0.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kernel=np.ones((4, 5))), r"kernel\[0\]: expected a 2-D kernel of odd sizes"),
    (dict(kernel=-gaussian_kernel()), r"kernel\[0\]: expected finite values >= 0"),
    (dict(kernel=[gaussian_kernel()] * 2), r"kernel: 2 kernels for 3 energy bins"),
    (dict(counts=-np.ones((3, 16, 16))), r"counts: negative values"),
    (dict(background=np.ones((2, 16, 16))), r"background: shape \(2, 16, 16\) does not match"),
    (dict(background=np.full((3, 16, 16), np.nan)), r"background: NaN"),
    (dict(bins=[3]), r"bins: \[3\], expected indices in \[0, 3\)"),
    (dict(combine="max"), r"combine: 'max'"),
])
def test_significance_bad_input(kwargs, message):
    args = dict(counts=np.ones((3, 16, 16)), background=np.ones((3, 16, 16)),
                kernel=gaussian_kernel())
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        significance_map(**args)


def _detector(name):
    if name in ("sep", "photutils"):
        pytest.importorskip(name)
    if name == "photutils":
        pytest.importorskip("skimage")  # deblending (the default) needs scikit-image
    return {"sep": detect_sep, "photutils": detect_photutils, "peaks": detect_peaks}[name]


@pytest.mark.parametrize("name", ["sep", "photutils", "peaks"])
def test_bright_sources_recovered_within_one_pixel(sky, name):
    detect = _detector(name)
    counts, background = sky
    found = detect(significance_map(counts, background, gaussian_kernel()).combined, 5.0)
    assert len(found["x_pix"]) == len(SOURCES_XY)
    assert np.all(np.diff(found["significance"]) <= 0) and np.all(found["significance"] > 5)
    for x, y in SOURCES_XY:
        distance = np.hypot(found["x_pix"] - x, found["y_pix"] - y)
        assert distance.min() < 1.0, (name, x, y, distance.min())


@pytest.mark.parametrize("name", ["sep", "photutils", "peaks"])
def test_no_spurious_detection_on_background(pure_background, name):
    detect = _detector(name)
    counts, background = pure_background  # 3 x 128 x 128 px, ~600 PSF areas per bin
    maps = significance_map(counts, background, gaussian_kernel())
    for image in [*maps.per_bin, maps.combined]:
        assert len(detect(image, 5.0)["x_pix"]) == 0
    assert len(detect(maps.combined, 2.5)["x_pix"]) > 0  # but the detector does run


def test_photutils_deblends_two_nearby_sources():
    _detector("photutils")
    background = np.full((1, 48, 48), 2.0)
    xy = np.array([[20.0, 24.0], [27.0, 24.0]])
    counts = background + source_image((48, 48), xy, [300, 250])[None]  # Asimov data
    image = significance_map(counts, background, gaussian_kernel()).combined
    assert len(detect_photutils(image, 5.0, deblend=False)["x_pix"]) == 1
    found = detect_photutils(image, 5.0, deblend=True)
    assert len(found["x_pix"]) == 2
    for x, y in xy:
        assert np.hypot(found["x_pix"] - x, found["y_pix"] - y).min() < 1.0


def test_photutils_without_scikit_image(monkeypatch):
    pytest.importorskip("photutils")
    image = np.zeros((20, 20))
    image[8:11, 8:11] = 6.0
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "skimage" else real_find_spec(name, *a))
    with pytest.raises(InputError, match="needs scikit-image .* deblend=False"):
        detect_photutils(image, 5.0)
    found = detect_photutils(image, 5.0, deblend=False, position="centroid")
    np.testing.assert_allclose([found["x_pix"][0], found["y_pix"][0]], [9.0, 9.0])
    found = detect_photutils(image, 5.0, deblend=False)  # a pixel of the flat top
    assert 8 <= found["x_pix"][0] <= 10 and 8 <= found["y_pix"][0] <= 10


def test_detect_peaks_separation_and_bad_input():
    image = np.zeros((20, 20))
    image[5, 5], image[5, 7], image[15, 15] = 9.0, 8.0, 6.0
    found = detect_peaks(image, 5.0, min_separation_pix=3)
    assert found["significance"].tolist() == [9.0, 6.0]
    assert len(detect_peaks(image, 5.0, min_separation_pix=1)["x_pix"]) == 3
    with pytest.raises(InputError, match="signif_map: expected a 2-D map"):
        detect_peaks(np.zeros((2, 3, 3)), 5.0)
    with pytest.raises(InputError, match="signif_map: NaN"):
        detect_peaks(np.full((3, 3), np.nan), 5.0)
    with pytest.raises(InputError, match="min_separation_pix"):
        detect_peaks(image, 5.0, min_separation_pix=0)


def test_pixel_to_galactic():
    wcs = car_wcs(n=64, crval=(0.5, 0.0), cdelt=0.1)
    l_deg, b_deg = pixel_to_galactic([32, 42, 32, 0], [32, 32, 42, 32], wcs)
    np.testing.assert_allclose(l_deg, [0.5, 359.5, 0.5, 3.7], atol=1e-9)
    np.testing.assert_allclose(b_deg, [0.0, 0.0, 1.0, 0.0], atol=1e-9)
    eq = WCS(naxis=2)
    eq.wcs.ctype, eq.wcs.crval = ["RA---TAN", "DEC--TAN"], [266.4, -28.9]
    eq.wcs.crpix, eq.wcs.cdelt = [1, 1], [-0.1, 0.1]
    l_deg, b_deg = pixel_to_galactic([0.0], [0.0], eq)
    gc = SkyCoord(266.4, -28.9, unit="deg").galactic
    assert l_deg[0] == pytest.approx(gc.l.deg) and b_deg[0] == pytest.approx(gc.b.deg)
    with pytest.raises(InputError, match="2-D celestial"):
        pixel_to_galactic([0.0], [0.0], WCS(naxis=3))


@pytest.mark.parametrize("method", ["sep", "photutils", "peaks"])
def test_classical_catalog_to_fits(sky, tmp_path, method):
    _detector(method)
    counts, background = sky
    wcs = car_wcs()
    found = classical_catalog(counts, background, gaussian_kernel(), wcs, method)
    assert set(found) == {"x_pix", "y_pix", "significance", "l_deg", "b_deg"}
    expected_l, expected_b = pixel_to_galactic(SOURCES_XY[:, 0], SOURCES_XY[:, 1], wcs)
    for lt, bt in zip(expected_l, expected_b):
        assert np.hypot(found["l_deg"] - lt, found["b_deg"] - bt).min() < 0.1  # 1 pixel
    write_catalog(tmp_path / "cat.fits", found, method=method)
    columns, header = read_catalog(tmp_path / "cat.fits")
    np.testing.assert_allclose(columns["GLON"], found["l_deg"])
    assert header["METHOD"] == method


def test_classical_catalog_bad_method_and_wcs(sky):
    counts, background = sky
    with pytest.raises(InputError, match="method: 'dao'"):
        classical_catalog(counts, background, gaussian_kernel(), car_wcs(), "dao")
    with pytest.raises(InputError, match="wcs: expected a 2-D celestial"):
        classical_catalog(counts, background, gaussian_kernel(), None, "peaks")


@pytest.mark.skipif(importlib.util.find_spec("gammapy") is not None,
                    reason="gammapy installed: the missing-package message cannot be shown")
def test_ts_map_gammapy_missing_is_a_clear_error(sky):
    counts, background = sky
    with pytest.raises(InputError, match=r"gammapy is not installed .*pip install gammapy"):
        ts_map_gammapy(counts, background, car_wcs(), [1, 3, 10, 100], psf_sigma_deg=0.15)


def test_public_api():
    assert set(classical.__all__) == {
        "SignificanceMaps", "significance_map", "detect_sep", "detect_photutils",
        "detect_peaks", "ts_map_gammapy", "pixel_to_galactic", "classical_catalog", "METHODS"}


def test_sep_peak_positions_resist_a_blended_neighbour():
    """Two sources whose significance blobs share one segment: sep's barycentre is pulled
    towards the fainter one, the refined peak stays on the brighter one."""
    pytest.importorskip("sep")
    y, x = np.mgrid[:40, :40]

    def blob(x0, y0, a):
        return a * np.exp(-0.5 * ((x - x0) ** 2 + (y - y0) ** 2) / 2.5 ** 2)

    image = blob(15.3, 20.2, 40.0) + blob(21.0, 20.0, 15.0)
    peak = detect_sep(image, 5.0, deblend_cont=1.0)  # no deblending: one segment
    bary = detect_sep(image, 5.0, deblend_cont=1.0, position="barycentre")
    assert len(peak["x_pix"]) == len(bary["x_pix"]) == 1
    assert np.hypot(peak["x_pix"][0] - 15.3, peak["y_pix"][0] - 20.2) < 0.3
    assert bary["x_pix"][0] - 15.3 > 1.0
    with pytest.raises(InputError, match="position"):
        detect_sep(image, 5.0, position="centroid")
