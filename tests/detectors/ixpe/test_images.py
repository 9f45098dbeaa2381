"""Track crops on the hexagonal lattice: exact lattice symmetries, both representations."""

from __future__ import annotations

import numpy as np
import pytest

from astroreco.detectors.ixpe import images as im
from astroreco.detectors.ixpe.moments import moments_analysis
from astroreco.detectors.ixpe.simulate import GpdConfig, GpdSimulator
from astroreco.detectors.ixpe.source import EnergySpectrum, SourceConfig
from astroreco.errors import InputError


@pytest.fixture(scope="module")
def tracks():
    sim = GpdSimulator(GpdConfig())
    return sim.simulate(SourceConfig(spectrum=EnergySpectrum.parse("6")), 150, seed=3)


def _apply(b, centres, g):
    """Move every pixel of every track by lattice symmetry g about its crop centre."""
    n = np.diff(b.offsets)
    rc = np.repeat(centres["row"], n)
    qc = np.repeat(centres["col"], n) - (rc + (rc & 1)) // 2
    r0 = b.row.astype(np.int64)
    q0 = b.col.astype(np.int64) - (r0 + (r0 & 1)) // 2
    m = im.SYMMETRY_MATRICES[g]
    dq = m[0, 0] * (q0 - qc) + m[0, 1] * (r0 - rc)
    dr = m[1, 0] * (q0 - qc) + m[1, 1] * (r0 - rc)
    r = rc + dr
    return (qc + dq) + (r + (r & 1)) // 2, r


def test_symmetry_group():
    mats = im.SYMMETRY_MATRICES
    assert mats.shape == (12, 2, 2)
    # twelve distinct maps, determinant +1 for rotations and -1 for reflections
    assert len({m.tobytes() for m in mats}) == 12
    dets = np.round(np.linalg.det(mats)).astype(int)
    assert list(dets) == [1] * 6 + [-1] * 6
    # rotation by 60 degrees applied six times is the identity
    assert np.array_equal(np.linalg.matrix_power(mats[1], 6), np.eye(2, dtype=int))
    # they preserve the hexagonal distance of the lattice vectors
    for m in mats:
        for v in ((1, 0), (0, 1), (1, -1), (2, 3)):
            w = m @ np.array(v)
            assert max(abs(v[0]), abs(v[1]), abs(v[0] + v[1])) == \
                max(abs(w[0]), abs(w[1]), abs(w[0] + w[1]))


@pytest.mark.parametrize("g", range(12))
def test_symmetry_moves_track_angle_and_impact_consistently(tracks, g):
    """Moments of the moved track = the transformed moments of the original track."""
    b = tracks
    centres = im.track_centres(b.offsets, b.col, b.row, b.charge)
    m0 = moments_analysis(b.offsets, b.col, b.row, b.charge)
    col, row = _apply(b, centres, g)
    m1 = moments_analysis(b.offsets, col, row, b.charge)
    d = np.angle(np.exp(2j * (m1["phi"] - im.transform_angle(m0["phi"], g)))) / 2
    assert np.nanmax(np.abs(d)) < 1e-4  # the 43.30 um row pitch is rounded: ~3e-5 rad
    dx, dy = im.transform_vector(m0["x_mm"] - centres["x_mm"], m0["y_mm"] - centres["y_mm"], g)
    assert np.nanmax(np.hypot(dx - (m1["x_mm"] - centres["x_mm"]),
                              dy - (m1["y_mm"] - centres["y_mm"]))) < 1e-4
    # rasterising with symmetry g equals rasterising the moved pixels
    for rep in im.REPRESENTATIONS:
        cfg = im.ImageConfig(representation=rep)
        a, _ = im.track_images(b.offsets, b.col, b.row, b.charge, cfg, symmetry=g)
        c, _ = im.track_images(b.offsets, col, row, b.charge, cfg)
        assert np.array_equal(a, c)


def test_inverse_transforms():
    rng = np.random.default_rng(0)
    phi = rng.uniform(-np.pi, np.pi, 100)
    x, y = rng.normal(size=(2, 100))
    g = rng.integers(0, 12, 100)
    assert np.allclose(im.inverse_angle(im.transform_angle(phi, g), g), phi)
    u, v = im.inverse_vector(*im.transform_vector(x, y, g), g)
    assert np.allclose(u, x) and np.allclose(v, y)
    # the angle of a transformed vector is the transformed angle
    tx, ty = im.transform_vector(np.cos(phi), np.sin(phi), g)
    assert np.allclose(np.angle(np.exp(1j * (np.arctan2(ty, tx) - im.transform_angle(phi, g)))),
                       0, atol=1e-12)


def test_images_conserve_charge_and_centre_the_track(tracks):
    b = tracks
    cfg = im.ImageConfig(size=32)
    img, centres = im.track_images(b.offsets, b.col, b.row, b.charge, cfg)
    assert img.shape == (len(b.offsets) - 1, 1, 32, 32) and img.dtype == np.float32
    total = np.add.reduceat(b.charge.astype(np.float64), b.offsets[:-1]) / cfg.charge_scale
    # noise pixels far from the track may fall outside; the track itself is inside
    frac = img.sum(axis=(1, 2, 3)) / total
    assert np.median(frac) > 0.98 and frac.max() <= 1 + 1e-5
    # the brightest region sits near the image centre
    iy, ix = np.unravel_index(img[:, 0].reshape(len(img), -1).argmax(1), (32, 32))
    assert np.median(np.abs(iy - 16)) <= 4 and np.median(np.abs(ix - 16)) <= 4
    cart, _ = im.track_images(b.offsets, b.col, b.row, b.charge,
                              im.ImageConfig(representation="cartesian", size=32))
    assert cart.shape[-2:] == (64, 64)
    assert np.all(cart.sum(axis=(1, 2, 3)) <= 4 * total * (1 + 1e-5))


def test_cartesian_blocks():
    """Each hexagon becomes a 2 x 2 block; odd rows are shifted by one half-pitch cell."""
    col = np.array([100, 101, 100, 100])
    row = np.array([50, 50, 51, 49])
    q = np.array([1.0, 2.0, 3.0, 4.0])
    off = np.array([0, 4])
    cfg = im.ImageConfig(representation="cartesian", size=8)
    img, c = im.track_images(off, col, row, q, cfg, centres={
        "col": np.array([100]), "row": np.array([50]), "x_mm": np.zeros(1),
        "y_mm": np.zeros(1)})
    img = img[0, 0] * cfg.charge_scale
    assert np.isclose(img.sum(), 4 * q.sum())
    # centre pixel: rows 8-9, columns 7-8; its right neighbour two cells to the right
    assert np.allclose(img[8:10, 7:9], 1.0) and np.allclose(img[8:10, 9:11], 2.0)
    # (100, 51) is an odd row: half a pitch left of (100, 50), i.e. one cell
    assert np.allclose(img[10:12, 6:8], 3.0)
    assert np.allclose(img[6:8, 6:8], 4.0)


def test_bad_input():
    with pytest.raises(InputError, match="representation"):
        im.ImageConfig(representation="square")
    with pytest.raises(InputError, match="multiple of 4"):
        im.ImageConfig(size=10)
    off = np.array([0, 2])
    with pytest.raises(InputError, match="NaN"):
        im.track_images(off, np.array([10, 11]), np.array([10, 10]), np.array([1.0, np.nan]))
    with pytest.raises(InputError, match="symmetry"):
        im.track_images(off, np.array([10, 11]), np.array([10, 10]), np.array([1.0, 2.0]),
                        symmetry=12)
