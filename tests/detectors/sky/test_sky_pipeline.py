"""Sky patch files: simulate/read round trip, chunking, kernels, detections, FITS export and
detection on a counts cube, bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from scipy import fft

from astroreco.detectors.sky import cubes, pipeline
from astroreco.detectors.sky.catalog import read_catalog
from astroreco.detectors.sky.classical import classical_catalog
from astroreco.detectors.sky.fitsio import SkyCube, read_counts_cube, write_counts_cube
from astroreco.detectors.sky.geometry import SkyGeometry
from astroreco.detectors.sky.render import PatchRenderer
from astroreco.detectors.sky.simulate import SkySimConfig, SkySimulator
from astroreco.errors import InputError
from astroreco.io.store import EventFile
from astroreco.physics.psf import psf_model

N, SEED = 5, 7
#: high latitudes: a faint diffuse background, so the bright sources stand out
HIGH_B = {"abs_b_range_deg": (40.0, 90.0)}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same run written in chunks of 2 and of 5 patches, and the in-memory batch."""
    d = tmp_path_factory.mktemp("sky")
    a, b = d / "a.h5", d / "b.h5"
    pipeline.simulate(a, n_patches=N, seed=SEED, chunk_size=2, progress=False, **HIGH_B)
    pipeline.simulate(b, n_patches=N, seed=SEED, chunk_size=5, progress=False, **HIGH_B)
    batch = SkySimulator(SkySimConfig.fermi(**HIGH_B)).simulate(N, seed=SEED)
    return a, b, batch


def _same(x, y):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape
    assert x.tobytes() == y.tobytes()       # bit for bit, NaN payloads included


def test_round_trip_equals_the_simulator_bit_for_bit(files):
    path, _, batch = files
    data = pipeline.read_patches(path)
    _same(data.counts, batch.counts)
    _same(data.background, batch.background)
    _same(data.centres, batch.centres)
    _same(data.patch_id, batch.patch_id)
    assert data.time_counts is None
    truth = pipeline.read_truth(path)
    assert list(truth) == list(batch.truth)
    for k in truth:
        _same(truth[k], batch.truth[k])
    assert pipeline.config_of(path) == batch.config
    assert pipeline.geometry_of(path) == SkyGeometry()
    with EventFile(path) as ef:
        meta = ef.config
        assert ef.detector == "sky" and ef.n_events == N
        np.testing.assert_array_equal(ef.truth()["n_sources"], np.bincount(
            batch.truth["patch"], minlength=N))
    assert meta["seed"] == SEED and meta["preset"] == "fermi"
    assert meta["simulation"]["abs_b_range_deg"] == [40.0, 90.0]


def test_chunking_invariance_and_slices(files):
    a, b, batch = files
    assert pipeline.read_patches(a).counts.tobytes() == pipeline.read_patches(b).counts.tobytes()
    ta, tb = pipeline.read_truth(a), pipeline.read_truth(b)
    for k in ta:
        _same(ta[k], tb[k])
    part = pipeline.read_patches(a, 1, 4)
    _same(part.counts, batch.counts[1:4])
    _same(part.patch_id, np.arange(1, 4))
    sub = pipeline.read_truth(a, 1, 4)
    sel = (batch.truth["patch"] >= 1) & (batch.truth["patch"] < 4)
    _same(sub["patch"], batch.truth["patch"][sel] - 1)
    for k in ("patch_id", "flux", "npred", "in_patch"):
        _same(sub[k], batch.truth[k][sel])


def test_time_bins_and_asimov(tmp_path):
    path = tmp_path / "t.h5"
    s = pipeline.simulate(path, n_patches=2, seed=3, mode="asimov", n_time_bins=3,
                          iem="B", progress=False)
    assert s["n_time_bins"] == 3 and s["mode"] == "asimov"
    batch = SkySimulator(SkySimConfig.fermi(mode="asimov", n_time_bins=3, iem="B")).simulate(
        2, seed=3)
    data = pipeline.read_patches(path)
    _same(data.counts, batch.counts)
    _same(data.time_counts, batch.time_counts)
    truth = pipeline.read_truth(path)
    assert truth["light_curve"].shape == (len(truth["flux"]), 3)
    for k in truth:
        _same(truth[k], batch.truth[k])


@pytest.mark.parametrize("config", [SkySimConfig(), SkySimConfig.cta(),
                                    SkySimConfig.fermi(n_time_bins=2, mode="asimov",
                                                       extension__fractions=(0.5, 0.3, 0.2),
                                                       exposure_cm2s=(1e11,) * 6)])
def test_config_json_round_trip(config):
    assert pipeline.config_from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_psf_kernels_are_the_renderers(files):
    config = pipeline.config_of(files[0])
    kernels = pipeline.psf_kernels(config)
    r = PatchRenderer(config.geometry, psf_model("fermi"), config.margin_deg, config.psf_index)
    m = r.grid
    for e, k in enumerate(kernels):
        h = k.shape[0] // 2
        assert k.shape == (2 * h + 1, 2 * h + 1)
        idx = np.arange(-h, h + 1) % m
        wrapped = fft.irfft2(r.full_ft[e], s=(m, m))
        np.testing.assert_allclose(k, wrapped[np.ix_(idx, idx)], rtol=0, atol=1e-12)
        assert k.sum() == pytest.approx(r.containment[e], rel=1e-12)
    # the lowest bin is truncated at half the patch, the highest is small
    assert kernels[0].shape == (65, 65) and kernels[-1].shape[0] < 25
    same = pipeline.psf_kernels(config.geometry, psf="fermi", psf_index=config.psf_index)
    for k, j in zip(kernels, same):
        np.testing.assert_array_equal(k, j)
    with pytest.raises(InputError):
        pipeline.psf_kernels("fermi")


def test_detect_classical_stores_ragged_detections(files):
    path, _, batch = files
    s = pipeline.detect_classical(path, method="peaks", threshold=6.0, progress=False)
    assert s["name"] == "peaks" and s["n_patches"] == N
    det = pipeline.read_detections(path, "peaks")
    assert set(det) == {"patch", "patch_id", *[f for f, *_ in pipeline.RECO_FIELDS]}
    assert len(det["x_pix"]) == s["n_detections"] > 0
    kernels = pipeline.psf_kernels(batch.config)
    bins = pipeline.classical_bins(batch.config.geometry.energy_edges_gev)
    assert bins == [1, 2, 3, 4, 5]  # from 1.16 GeV: the 0.3-1.16 GeV bin is left out
    assert s["bins"] == bins
    for i in range(N):
        direct = classical_catalog(batch.counts[i], batch.background[i], kernels,
                                   batch.wcs(i), "peaks", threshold=6.0, bins=bins)
        sel = det["patch"] == i
        for k in ("x_pix", "y_pix", "l_deg", "b_deg", "significance"):
            np.testing.assert_allclose(det[k][sel], direct[k], rtol=1e-12)
    with EventFile(path) as ef:
        assert ef.is_ragged("peaks")
        assert json.loads(ef.reco_attrs("peaks")["config"])["threshold"] == 6.0
    # a second method sits beside the first
    pipeline.detect_classical(path, method="sep", name="sep5", progress=False)
    with EventFile(path) as ef:
        assert {"peaks", "sep5"} <= set(ef.methods)


def _bright_patch(path):
    """(patch, l, b) of the brightest point source well inside its patch."""
    t = pipeline.read_truth(path)
    inside = (t["in_patch"] & (t["ext_class"] == 0) & (np.minimum(t["x_pix"], t["y_pix"]) > 6)
              & (np.maximum(t["x_pix"], t["y_pix"]) < 57))
    i = int(np.argmax(np.where(inside, t["npred"].sum(axis=1), -1)))
    assert inside[i] and t["npred"][i].sum() > 300
    return int(t["patch"][i]), t["l_deg"][i], t["b_deg"][i]


def test_export_then_read_counts_cube(files, tmp_path):
    path, _, batch = files
    cube_path, bkg_path = tmp_path / "cube.fits", tmp_path / "bkg.fits"
    s = cubes.export_cube(path, 3, cube_path, bkg_path)
    assert s["patch_id"] == 3 and s["shape"] == [6, 64, 64]
    cube = read_counts_cube(cube_path, bkg_path)
    _same(cube.counts, batch.counts[3])
    np.testing.assert_array_equal(cube.background, batch.background[3])
    np.testing.assert_allclose(cube.energy_edges_gev, batch.energy_edges_gev, rtol=1e-12)
    w = batch.wcs(3)
    assert list(cube.wcs.wcs.ctype) == list(w.wcs.ctype)
    np.testing.assert_allclose(cube.wcs.wcs.crval, w.wcs.crval, atol=1e-10)
    np.testing.assert_allclose(cube.wcs.wcs.crpix, w.wcs.crpix)
    np.testing.assert_allclose(cube.wcs.pixel_scale_matrix, w.pixel_scale_matrix)
    np.testing.assert_allclose(cube.exposure, 4e11)
    assert cube.meta["PATCHID"] == 3 and cube.meta["SIMSEED"] == SEED


def test_detect_cube_finds_the_bright_source(files, tmp_path):
    path = files[0]
    patch, l_true, b_true = _bright_patch(path)
    cube, bkg = tmp_path / "cube.fits", tmp_path / "bkg.fits"
    cat, reg = tmp_path / "cat.fits", tmp_path / "out.reg"
    cubes.export_cube(path, patch, cube, bkg)
    s = cubes.detect_cube(cube, background=bkg, method="sep", out_catalog=cat,
                             out_regions=reg)
    columns, header = read_catalog(cat)
    assert len(columns["GLON"]) == s["n_sources"] > 0 and header["METHOD"] == "classical-sep"
    sep = SkyCoord(columns["GLON"], columns["GLAT"], unit="deg", frame="galactic").separation(
        SkyCoord(l_true, b_true, unit="deg", frame="galactic")).deg
    assert sep.min() < 0.3
    text = reg.read_text()
    assert "galactic" in text and text.count("circle(") == s["n_sources"]
    for method in ("photutils", "peaks"):
        cubes.detect_cube(cube, background=bkg, method=method,
                             out_catalog=tmp_path / f"{method}.fits")
        c = read_catalog(tmp_path / f"{method}.fits").columns
        sep = SkyCoord(c["GLON"], c["GLAT"], unit="deg", frame="galactic").separation(
            SkyCoord(l_true, b_true, unit="deg", frame="galactic")).deg
        assert sep.min() < 0.3, method


def _one_line(exc_info, *needles):
    msg = str(exc_info.value)
    assert msg and "\n" not in msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_detect_cube_bad_input(files, tmp_path):
    path = files[0]
    cube, bkg, cat = tmp_path / "cube.fits", tmp_path / "bkg.fits", tmp_path / "cat.fits"
    cubes.export_cube(path, 0, cube, bkg)
    cases = [
        (dict(cube_path=cube), ("cube.fits", "background")),
        (dict(cube_path=cube, method="nn", model=tmp_path / "nomodel"), ("nomodel",)),
        (dict(cube_path=cube, background=bkg, method="dao"), ("dao", "sep")),
        (dict(cube_path=tmp_path / "nope.fits", background=bkg), ("nope.fits",)),
        (dict(cube_path=path, background=bkg), ("detect-patches",)),
        (dict(cube_path=cube, background=tmp_path / "nobkg.fits"), ("nobkg.fits",)),
    ]
    for kwargs, needles in cases:
        with pytest.raises(InputError) as e:
            cubes.detect_cube(out_catalog=cat, **kwargs)
        _one_line(e, *needles)
    assert not cat.exists()
    cat.write_text("x")
    with pytest.raises(InputError) as e:
        cubes.detect_cube(cube, background=bkg, out_catalog=cat,
                             out_regions=tmp_path / "r.reg")
    _one_line(e, "exists")
    assert not (tmp_path / "r.reg").exists()
    # non-square pixels: no PSF kernel
    c = read_counts_cube(cube, bkg)
    c.wcs.wcs.cdelt = [-0.15625, 0.2]
    c.wcs.wcs.set()
    write_counts_cube(tmp_path / "rect.fits", SkyCube(c.counts, c.wcs, c.energy_edges_gev))
    with pytest.raises(InputError) as e:
        cubes.detect_cube(tmp_path / "rect.fits", background=tmp_path / "rect.fits",
                             out_catalog=tmp_path / "c2.fits")
    _one_line(e, "rect.fits", "square pixels")


def test_simulate_export_bad_input(files, tmp_path):
    path = files[0]
    out = tmp_path / "x.h5"
    cases = [
        (dict(n_patches=0), "--n-patches"),
        (dict(n_patches=2.5), "--n-patches"),
        (dict(n_patches=2, seed=-1), "--seed"),
        (dict(n_patches=2, chunk_size=0), "--chunk-size"),
        (dict(n_patches=2, preset="hess"), "--preset"),
        (dict(n_patches=2, iem="C"), "--iem"),
        (dict(n_patches=2, mode="gauss"), "--mode"),
        (dict(n_patches=2, no_such_field=1), "no_such_field"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(InputError) as e:
            pipeline.simulate(out, progress=False, **kwargs)
        _one_line(e, needle)
    assert not out.exists()
    with pytest.raises(InputError) as e:
        pipeline.simulate(path, n_patches=1, progress=False)
    _one_line(e, "exists")
    for index in (-1, N, True):
        with pytest.raises(InputError) as e:
            cubes.export_cube(path, index, tmp_path / "c.fits")
        _one_line(e, "--index")
    with pytest.raises(InputError) as e:
        cubes.export_cube(path, 0, tmp_path / "c.fits", tmp_path / "c.fits")
    _one_line(e, "c.fits")
    with pytest.raises(InputError) as e:
        pipeline.detect_classical(path, method="nn")
    _one_line(e, "detect_neural")
    with pytest.raises(InputError) as e:
        pipeline.read_patches(tmp_path / "missing.h5")
    _one_line(e, "missing.h5")
    # an event file of another detector, and a patch file with a damaged config
    other = tmp_path / "other.h5"
    with h5py.File(path, "r") as src, h5py.File(other, "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for k in src:
            src.copy(k, dst)
        dst.attrs["config"] = json.dumps({"simulation": {"psf": "hubble"}})
    with pytest.raises(InputError) as e:
        pipeline.config_of(other)
    _one_line(e, "other.h5", "config")
    with h5py.File(other, "a") as f:
        f.attrs["detector"] = "ecal"
    with pytest.raises(InputError) as e:
        pipeline.read_truth(other)
    _one_line(e, "ecal", "sky")


def test_public_api():
    assert set(pipeline.__all__) <= set(dir(pipeline))
    assert pipeline.PATCH_SCHEMA.detector == "sky"
    names = [c.name for c in pipeline.PATCH_SCHEMA.per_event]
    assert names == ["counts", "background", "centre"]
    assert pipeline.PATCH_SCHEMA.per_event[0].shape == (6, 64, 64)


def test_classical_bins():
    edges = [0.3, 1.16, 4.5, 17.3, 1000.0]
    assert pipeline.classical_bins(edges) == [1, 2, 3]
    assert pipeline.classical_bins(edges, None) == [0, 1, 2, 3]
    assert pipeline.classical_bins(edges, 0.3) == [0, 1, 2, 3]
    assert pipeline.classical_bins(edges, 5000.0) == [0, 1, 2, 3]  # none qualifies: all


def test_classical_detection_with_another_background_model(files, tmp_path):
    """The analyst's background model (the same patches under the other IEM) replaces the
    true one; files of other patches are refused."""
    path = files[0]
    other = tmp_path / "iem_b.h5"
    pipeline.simulate(other, n_patches=N, seed=SEED, iem="B", progress=False, **HIGH_B)
    s = pipeline.detect_classical(path, method="peaks", name="peaks_b", threshold=6.0,
                                  background_model=other, progress=False)
    assert s["background_iem"] == "B"
    det = pipeline.read_detections(path, "peaks_b")
    data, model = pipeline.read_patches(path), pipeline.read_patches(other)
    assert not np.allclose(data.background, model.background)
    cfg = pipeline.config_of(path)
    kernels = pipeline.psf_kernels(cfg)
    bins = pipeline.classical_bins(cfg.geometry.energy_edges_gev)
    for i in range(N):
        direct = classical_catalog(data.counts[i], model.background[i], kernels,
                                   cfg.geometry.wcs(*data.centres[i]), "peaks",
                                   threshold=6.0, bins=bins)
        np.testing.assert_allclose(det["x_pix"][det["patch"] == i], direct["x_pix"])
    fewer = tmp_path / "fewer.h5"
    pipeline.simulate(fewer, n_patches=N - 1, seed=SEED, iem="B", progress=False, **HIGH_B)
    with pytest.raises(InputError) as e:
        pipeline.detect_classical(path, background_model=fewer, progress=False)
    _one_line(e, "fewer.h5", "same patches")
    moved = tmp_path / "moved.h5"
    pipeline.simulate(moved, n_patches=N, seed=SEED + 1, iem="B", progress=False, **HIGH_B)
    with pytest.raises(InputError) as e:
        pipeline.detect_classical(path, background_model=moved, progress=False)
    _one_line(e, "moved.h5", "centres differ")
