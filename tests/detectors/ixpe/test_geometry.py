import numpy as np

from astroreco.detectors.ixpe.geometry import IXPE_GRID, neighbours


def test_pixel_centres_follow_the_ixpe_layout():
    x, y = IXPE_GRID.centre(np.array([0, 0, 1]), np.array([0, 1, 1]))
    assert np.allclose(x, [-7.4625, -7.4875, -7.4375])
    assert np.allclose(y, [7.59915, 7.55585, 7.55585])


def test_nearest_pixel_inverts_centres_and_is_the_nearest():
    rng = np.random.default_rng(0)
    col = rng.integers(0, 300, 1000)
    row = rng.integers(0, 352, 1000)
    x, y = IXPE_GRID.centre(col, row)
    c2, r2 = IXPE_GRID.pixel(x, y)
    assert np.array_equal(c2, col) and np.array_equal(r2, row)
    # random points: no other centre is nearer than the one returned
    px = rng.uniform(-5, 5, 300)
    py = rng.uniform(-5, 5, 300)
    c, r = IXPE_GRID.pixel(px, py)
    cx, cy = IXPE_GRID.centre(c, r)
    d = np.hypot(px - cx, py - cy)
    for dc in range(-2, 3):
        for dr in range(-2, 3):
            ox, oy = IXPE_GRID.centre(c + dc, r + dr)
            assert np.all(d <= np.hypot(px - ox, py - oy) + 1e-12)


def test_neighbours_are_at_one_pitch():
    for row in (10, 11):
        x0, y0 = IXPE_GRID.centre(50, row)
        for c, r in neighbours(50, row):
            x, y = IXPE_GRID.centre(c, r)
            assert abs(np.hypot(x - x0, y - y0) - 0.05) < 1e-3
