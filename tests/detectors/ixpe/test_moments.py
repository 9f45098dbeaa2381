"""Moments analysis on hand-made tracks whose answer is known."""

import math

import numpy as np
import pytest

from astroreco.detectors.ixpe.geometry import IXPE_GRID
from astroreco.detectors.ixpe.moments import (STATUS_EMPTY, STATUS_ONE_PIXEL,
                                              moments_analysis)
from astroreco.errors import InputError


def _track(points_mm, charges):
    """Pixels of a track built from charge deposits at points (summed per pixel)."""
    x, y = np.asarray(points_mm).T
    c, r = IXPE_GRID.pixel(x, y)
    keys = {}
    for ci, ri, q in zip(c, r, charges):
        keys[(ci, ri)] = keys.get((ci, ri), 0.0) + q
    col = np.array([k[0] for k in keys])
    row = np.array([k[1] for k in keys])
    return col, row, np.array(list(keys.values()))


def _batch(tracks):
    offsets = np.concatenate([[0], np.cumsum([len(t[0]) for t in tracks])])
    return (offsets, np.concatenate([t[0] for t in tracks]),
            np.concatenate([t[1] for t in tracks]), np.concatenate([t[2] for t in tracks]))


def _line(angle, start=(0.0, 0.0), length=0.6, n=200, bragg=True):
    """A straight track from ``start`` along ``angle``; charge rising towards the end."""
    s = np.linspace(0, length, n)
    pts = np.stack([start[0] + s * math.cos(angle), start[1] + s * math.sin(angle)], axis=1)
    q = 1.0 + 4.0 * (s / length) ** 3 if bragg else np.ones(n)
    return _track(pts, q)


def test_track_along_x_gives_the_major_axis_along_x():
    r = moments_analysis(*_batch([_line(0.0, bragg=False)]))
    assert r["status"][0] in (0, 4)
    assert abs(math.sin(r["phi1"][0])) < 0.05  # axis along x
    assert r["m2l"][0] > 10 * r["m2t"][0]       # M2L is the larger eigenvalue


@pytest.mark.parametrize("angle_deg", [0, 17, 60, 95, 150, -120, -45])
def test_direction_and_impact_point_of_a_bragg_track(angle_deg):
    a = math.radians(angle_deg)
    start = (0.3, -0.2)
    r = moments_analysis(*_batch([_line(a, start=start)]))
    assert r["status"][0] == 0
    # direction with head-tail: from the start (low charge) towards the Bragg peak
    d = (r["phi"][0] - a + math.pi) % (2 * math.pi) - math.pi
    assert abs(d) < math.radians(4)
    # impact point near the start, much nearer than the barycentre
    di = math.hypot(r["x_mm"][0] - start[0], r["y_mm"][0] - start[1])
    db = math.hypot(r["x_bary_mm"][0] - start[0], r["y_bary_mm"][0] - start[1])
    assert di < 0.15 and di < 0.5 * db
    assert 0.0 < r["w_mom"][0] <= 1.0


def test_noise_pixel_far_away_is_not_clustered():
    col, row, q = _line(0.4)
    col2 = np.append(col, col.max() + 20)
    row2 = np.append(row, row.max() + 20)
    q2 = np.append(q, 1000.0 * q.max())  # even if it is the highest pixel ...
    q2[-1] = 0.5 * q.max()               # ... here it is not: the track wins
    r1 = moments_analysis(*_batch([(col, row, q)]))
    r2 = moments_analysis(*_batch([(col2, row2, q2)]))
    assert r2["n_pixels"][0] == len(col)
    assert r2["phi"][0] == pytest.approx(r1["phi"][0], abs=1e-6)


def test_degenerate_tracks_are_flagged_not_fatal():
    empty = (np.array([], int), np.array([], int), np.array([]))
    one = (np.array([10]), np.array([10]), np.array([500.0]))
    good = _line(1.0)
    r = moments_analysis(*_batch([empty, one, good]))
    assert r["status"][0] == STATUS_EMPTY and np.isnan(r["phi"][0])
    assert r["status"][1] == STATUS_ONE_PIXEL and np.isnan(r["phi"][1])
    assert r["status"][2] == 0 and np.isfinite(r["phi"][2])
    assert r["n_pixels"][1] == 1 and r["pha"][1] == 500.0


@pytest.mark.parametrize("bad_value", [np.nan, -5.0, np.inf])
def test_bad_charges_are_a_clear_error(bad_value):
    col, row, q = _line(0.2)
    q = q.copy()
    q[3] = bad_value
    with pytest.raises(InputError, match="event 1") as err:
        moments_analysis(*_batch([_line(0.1), (col, row, q)]))
    assert "\n" not in str(err.value)


def test_inconsistent_offsets_are_a_clear_error():
    col, row, q = _line(0.2)
    with pytest.raises(InputError):
        moments_analysis(np.array([0, len(q) + 1]), col, row, q)


def test_threads_do_not_change_results():
    tracks = [_line(a) for a in np.linspace(-3, 3, 40)]
    r1 = moments_analysis(*_batch(tracks), n_threads=1)
    r2 = moments_analysis(*_batch(tracks), n_threads=2, block=7)
    for k in r1:
        assert np.array_equal(r1[k], r2[k], equal_nan=True)
