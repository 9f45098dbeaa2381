r"""The moments analysis: the reference reconstruction of Gas Pixel Detector tracks.

Two passes per track (Bellazzini et al. 2003; the IXPE reconstruction):

1. **Clustering**: the connected group of pixels (hexagonal adjacency) that holds the
   highest pixel; isolated noise pixels are dropped.
2. **First pass**: charge-weighted barycentre and covariance; the principal axis
   :math:`\phi_1 = \frac12 \operatorname{atan2}(2 S_{xy}, S_{xx} - S_{yy})` (y up), the
   second moments along and across it :math:`M_{2L} \ge M_{2T}` (the eigenvalues) and the
   third moment :math:`M_{3L} = \sum w x'^3 / \sum w` along it.
3. **Impact point**: charge barycentre of the pixels at a distance
   :math:`1.5\sqrt{M_{2L}} < d < 3.5\sqrt{M_{2L}}` from the barycentre on the side given by
   :math:`\operatorname{sign}(M_{3L})` (the start of the track, where the charge density is
   low, is the long tail of the distribution).
4. **Second pass**: the principal axis of the charge re-weighted by
   :math:`\exp(-d/w_0)`, :math:`w_0 = 0.05` mm, :math:`d` the distance from the impact point,
   with moments taken about the impact point.  The direction points from the impact point
   towards the barycentre, so that ``phi`` carries the head-tail information.

Event weight for the weighted Stokes analysis: :math:`W_{MOM} = \alpha^{0.75}`,
:math:`\alpha = (M_{2L} - M_{2T}) / (M_{2L} + M_{2T})` (first pass).

Degenerate tracks are flagged in ``status`` (bit mask, see :data:`STATUS_BITS`) and get NaN
angles: an empty track, a one-pixel track; a track whose impact-point selection is empty
falls back on the barycentre and the first-pass axis (flagged, angle kept).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

from astroreco.detectors.ixpe.geometry import IXPE_GRID, HexGrid
from astroreco.errors import InputError

STATUS_OK = 0
STATUS_EMPTY = 1
STATUS_ONE_PIXEL = 2
STATUS_IMPACT_FALLBACK = 4
#: meaning of each bit of the ``status`` column
STATUS_BITS = {
    STATUS_EMPTY: "empty track: no pixel",
    STATUS_ONE_PIXEL: "one-pixel track (or all charge in one pixel): no axis, angle NaN",
    STATUS_IMPACT_FALLBACK: "no pixel in the impact-point annulus: barycentre and first-pass "
                            "axis used",
}

#: output fields (name, dtype, unit, description)
OUTPUT_FIELDS = (
    ("phi", "f4", "rad", "emission direction, counter-clockwise from +x, impact point -> track"),
    ("x_mm", "f4", "mm", "impact point x"),
    ("y_mm", "f4", "mm", "impact point y"),
    ("x_bary_mm", "f4", "mm", "charge barycentre x"),
    ("y_bary_mm", "f4", "mm", "charge barycentre y"),
    ("phi1", "f4", "rad", "first-pass principal axis (mod pi)"),
    ("m2l", "f4", "mm2", "second moment along the axis (first pass)"),
    ("m2t", "f4", "mm2", "second moment across the axis (first pass)"),
    ("m3l", "f4", "mm3", "third moment along the axis (first pass)"),
    ("w_mom", "f4", "", "event weight alpha^0.75"),
    ("pha", "f4", "e-", "summed charge of the cluster"),
    ("n_pixels", "i4", "", "pixels in the cluster"),
    ("status", "u1", "", "bit mask, see STATUS_BITS"),
)


@dataclass(frozen=True)
class MomentsConfig:
    """Parameters of the moments analysis (defaults: the IXPE reconstruction)."""

    r_min: float = 1.5          # impact-point annulus, in units of sqrt(M2L)
    r_max: float = 3.5
    weight_length_mm: float = 0.05
    weight_exponent: float = 0.75


@numba.njit(cache=True, nogil=True)
def _moments_range(lo, hi, offsets, col, row, charge, geo, cfg, out_f, out_i):
    pitch, row_pitch, x_off, y_off = geo
    r_min, r_max, w0, w_exp = cfg
    cap = 256
    xs = np.empty(cap)
    ys = np.empty(cap)
    qs = np.empty(cap)
    in_cluster = np.zeros(cap, np.bool_)
    stack = np.empty(cap, np.int64)
    lut = np.full(64 * 64, -1, np.int64)
    for k in range(lo, hi):
        a = offsets[k]
        n = offsets[k + 1] - a
        for j in range(out_f.shape[1]):
            out_f[k, j] = np.nan
        out_i[k, 0] = 0
        if n == 0:
            out_i[k, 1] = 1  # STATUS_EMPTY
            out_f[k, 9] = 0.0
            out_f[k, 10] = 0.0
            continue
        if n > cap:
            cap = 2 * n
            xs = np.empty(cap)
            ys = np.empty(cap)
            qs = np.empty(cap)
            in_cluster = np.zeros(cap, np.bool_)
            stack = np.empty(cap, np.int64)
        c_lo = col[a]
        c_hi = col[a]
        r_lo = row[a]
        r_hi = row[a]
        imax = 0
        for j in range(n):
            c = col[a + j]
            r = row[a + j]
            c_lo = min(c_lo, c)
            c_hi = max(c_hi, c)
            r_lo = min(r_lo, r)
            r_hi = max(r_hi, r)
            xs[j] = (c - 0.5 * (r & 1)) * pitch + x_off
            ys[j] = y_off - r * row_pitch
            qs[j] = charge[a + j]
            in_cluster[j] = False
            if qs[j] > qs[imax]:
                imax = j
        # --- clustering: flood fill from the highest pixel over hexagonal neighbours
        nc = c_hi - c_lo + 1
        nr = r_hi - r_lo + 1
        if nc * nr > lut.shape[0]:
            lut = np.full(2 * nc * nr, -1, np.int64)
        for j in range(n):
            lut[(row[a + j] - r_lo) * nc + (col[a + j] - c_lo)] = j
        in_cluster[imax] = True
        stack[0] = imax
        top = 1
        while top > 0:
            top -= 1
            j = stack[top]
            c = col[a + j]
            r = row[a + j]
            shift = -(r & 1)
            for t in range(6):
                if t == 0:
                    cc, rr = c - 1, r
                elif t == 1:
                    cc, rr = c + 1, r
                elif t == 2:
                    cc, rr = c + shift, r - 1
                elif t == 3:
                    cc, rr = c + shift + 1, r - 1
                elif t == 4:
                    cc, rr = c + shift, r + 1
                else:
                    cc, rr = c + shift + 1, r + 1
                if cc < c_lo or cc > c_hi or rr < r_lo or rr > r_hi:
                    continue
                m = lut[(rr - r_lo) * nc + (cc - c_lo)]
                if m >= 0 and not in_cluster[m]:
                    in_cluster[m] = True
                    stack[top] = m
                    top += 1
        for j in range(n):
            lut[(row[a + j] - r_lo) * nc + (col[a + j] - c_lo)] = -1
        # --- first pass
        sw = 0.0
        sx = 0.0
        sy = 0.0
        npix = 0
        for j in range(n):
            if in_cluster[j]:
                sw += qs[j]
                sx += qs[j] * xs[j]
                sy += qs[j] * ys[j]
                npix += 1
        out_i[k, 0] = npix
        out_f[k, 10] = sw
        xb = sx / sw
        yb = sy / sw
        out_f[k, 3] = xb
        out_f[k, 4] = yb
        sxx = 0.0
        syy = 0.0
        sxy = 0.0
        for j in range(n):
            if in_cluster[j]:
                dx = xs[j] - xb
                dy = ys[j] - yb
                sxx += qs[j] * dx * dx
                syy += qs[j] * dy * dy
                sxy += qs[j] * dx * dy
        sxx /= sw
        syy /= sw
        sxy /= sw
        half_tr = 0.5 * (sxx + syy)
        disc = math.sqrt(0.25 * (sxx - syy) ** 2 + sxy * sxy)
        m2l = half_tr + disc
        m2t = max(half_tr - disc, 0.0)
        if npix < 2 or m2l <= 0.0:
            out_i[k, 1] = 2  # STATUS_ONE_PIXEL
            out_f[k, 1] = xb
            out_f[k, 2] = yb
            out_f[k, 6] = m2l
            out_f[k, 7] = m2t
            out_f[k, 9] = 0.0
            continue
        phi1 = 0.5 * math.atan2(2.0 * sxy, sxx - syy)
        cp = math.cos(phi1)
        sp = math.sin(phi1)
        m3l = 0.0
        for j in range(n):
            if in_cluster[j]:
                xp = (xs[j] - xb) * cp + (ys[j] - yb) * sp
                m3l += qs[j] * xp * xp * xp
        m3l /= sw
        out_f[k, 5] = phi1
        out_f[k, 6] = m2l
        out_f[k, 7] = m2t
        out_f[k, 8] = m3l
        alpha = (m2l - m2t) / (m2l + m2t)
        out_f[k, 9] = alpha ** w_exp
        # --- impact point
        s2 = math.sqrt(m2l)
        iw = 0.0
        ix = 0.0
        iy = 0.0
        for j in range(n):
            if in_cluster[j]:
                dx = xs[j] - xb
                dy = ys[j] - yb
                d = math.sqrt(dx * dx + dy * dy)
                xp = dx * cp + dy * sp
                if r_min * s2 < d < r_max * s2 and xp * m3l > 0.0:
                    iw += qs[j]
                    ix += qs[j] * xs[j]
                    iy += qs[j] * ys[j]
        status = 0
        if iw <= 0.0:
            status = 4  # STATUS_IMPACT_FALLBACK
            xi = xb
            yi = yb
            phi = phi1
        else:
            xi = ix / iw
            yi = iy / iw
            # --- second pass about the impact point
            sw2 = 0.0
            sxx = 0.0
            syy = 0.0
            sxy = 0.0
            for j in range(n):
                if in_cluster[j]:
                    dx = xs[j] - xi
                    dy = ys[j] - yi
                    w = qs[j] * math.exp(-math.sqrt(dx * dx + dy * dy) / w0)
                    sw2 += w
                    sxx += w * dx * dx
                    syy += w * dy * dy
                    sxy += w * dx * dy
            phi = 0.5 * math.atan2(2.0 * sxy, sxx - syy) if sw2 > 0.0 else phi1
        # orient: from the impact point towards the barycentre (fallback: against M3L)
        if status == 0:
            proj = (xb - xi) * math.cos(phi) + (yb - yi) * math.sin(phi)
        else:
            proj = -m3l * (math.cos(phi) * cp + math.sin(phi) * sp)
        if proj < 0.0:
            phi = phi + math.pi if phi <= 0.0 else phi - math.pi
        out_f[k, 0] = phi
        out_f[k, 1] = xi
        out_f[k, 2] = yi
        out_i[k, 1] = status


def moments_analysis(offsets, col, row, charge, *, grid: HexGrid = IXPE_GRID,
                     config: MomentsConfig = MomentsConfig(), n_threads: int | None = None,
                     block: int = 20000) -> dict:
    """Moments analysis of a batch of tracks (ragged pixel arrays).

    Parameters
    ----------
    offsets : (n + 1,) int
        Event k owns pixels ``offsets[k]:offsets[k+1]``.
    col, row : (n_pixels,) int
        Pixel offset coordinates.
    charge : (n_pixels,) float
        Pixel charges (any unit), finite and >= 0.

    Returns
    -------
    dict
        One (n,) array per :data:`OUTPUT_FIELDS` entry.
    """
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    col = np.ascontiguousarray(col, dtype=np.int64)
    row = np.ascontiguousarray(row, dtype=np.int64)
    charge = np.ascontiguousarray(charge, dtype=np.float64)
    n_events = len(offsets) - 1
    if n_events < 0 or offsets[0] != 0 or np.any(np.diff(offsets) < 0) \
            or offsets[-1] != len(charge) or not (len(col) == len(row) == len(charge)):
        raise InputError("pixels: expected offsets (n+1, starting at 0, non-decreasing, ending "
                         "at the number of pixels) and col/row/charge of equal length")
    bad = ~np.isfinite(charge) | (charge < 0)
    if bad.any():
        first = int(np.searchsorted(offsets, np.flatnonzero(bad)[0], side="right") - 1)
        raise InputError(f"pixels: charge of event {first} is NaN, infinite or negative; "
                         "expected finite charges >= 0")
    out_f = np.empty((n_events, 11))
    out_i = np.empty((n_events, 2), np.int64)
    geo = (grid.pitch_mm, grid.row_pitch_mm, grid.x_offset_mm, grid.y_offset_mm)
    cfg = (config.r_min, config.r_max, config.weight_length_mm, config.weight_exponent)
    ranges = [(s, min(s + block, n_events)) for s in range(0, n_events, block)]
    n_threads = n_threads or os.cpu_count() or 1
    run = lambda r: _moments_range(r[0], r[1], offsets, col, row, charge, geo, cfg,  # noqa: E731
                                   out_f, out_i)
    if n_threads == 1 or len(ranges) <= 1:
        for r in ranges:
            run(r)
    else:
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(run, ranges))
    names = [f[0] for f in OUTPUT_FIELDS]
    result = {name: out_f[:, j].astype(np.float32) for j, name in enumerate(names[:11])}
    result["n_pixels"] = out_i[:, 0].astype(np.int32)
    result["status"] = out_i[:, 1].astype(np.uint8)
    return result
