"""The "Non-ML" reference of the TPC seed paper (its Appendix A): two-step 3D moments.

The IXPE moments analysis (Di Marco et al. 2022) generalised to 3D, per event, on voxel
centres ``x_i`` (cm) with charges ``q_i``:

1. barycentre ``x_b`` (charge-weighted);
2. weighted covariance about ``x_b``; its principal axis ``v_PA`` (largest eigenvalue) and
   the second moment ``M2`` along it;
3. the third moment ``M3`` along ``v_PA``; keep the voxels on the side ``sign(M3)`` (the
   skew points to the long, thin start of the track, away from the Bragg peak);
4. of those, keep ``r_min sqrt(M2) < |(x_i - x_b) . v_PA| < r_max sqrt(M2)``.  The seed
   writes ``1.5 M2 < ... < 3 M2``; ``M2`` is a squared length, so its square root is the
   length scale here, as in the IXPE analysis (PHYSICS.md);
5. the interaction point ``x_IP`` is the charge-weighted centre of the kept voxels (fewer
   than :data:`MIN_VOXELS` kept -- one voxel has no axis -- the track fails, which sets the
   method's track efficiency);
6. the kept voxels are re-weighted by ``q_i exp(-|x_i - x_IP| / w0)`` and their weighted
   covariance about ``x_IP`` gives the axis ``v_IP``;
7. head-tail: ``v_IP`` points from ``x_IP`` towards the barycentre (the track runs from its
   start into its body), or, for the seed's "correct head-tail" variant, along the truth.

Defaults ``r_min = 1.5``, ``r_max = 3``, ``w0 = 0.05`` (cm here) are the seed's adopted
values; :func:`tune` searches a grid of them on a validation set, keeping the track
efficiency above 10% (the seed's "Non-ML tuned").
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np

from astroreco.errors import InputError
from astroreco.progress import progress_bar

#: per-event output, (name, dtype, unit, description)
OUTPUT_FIELDS = (
    ("dir_x", "f4", "", "reconstructed initial direction, x (NaN when the track fails)"),
    ("dir_y", "f4", "", "reconstructed initial direction, y"),
    ("dir_z", "f4", "", "reconstructed initial direction, z"),
    ("ip_x_cm", "f4", "cm", "interaction (start) point, grid frame"),
    ("ip_y_cm", "f4", "cm", "interaction (start) point, grid frame"),
    ("ip_z_cm", "f4", "cm", "interaction (start) point, grid frame"),
    ("status", "u1", "", "1: fewer than 2 voxels in the start-region selection (fails)"),
)
FAILED = 1
#: fewest voxels in the start region that define an axis
MIN_VOXELS = 2


@dataclass(frozen=True)
class NonMLConfig:
    """Parameters of the Non-ML reconstruction (see the module docstring)."""

    r_min: float = 1.5
    r_max: float = 3.0
    w0_cm: float = 0.05
    voxel_cm: float = 0.05

    def __post_init__(self):
        if not 0 <= self.r_min < self.r_max:
            raise InputError(f"Non-ML: expected 0 <= r_min < r_max, got {self.r_min}, "
                             f"{self.r_max}")
        if not self.w0_cm > 0 or not self.voxel_cm > 0:
            raise InputError("Non-ML: w0_cm and voxel_cm must be > 0")

    def to_dict(self) -> dict:
        return asdict(self)


def principal_axis(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Unit eigenvector of the largest eigenvalue of the w-weighted covariance of x (centred)."""
    cov = (x * w[:, None]).T @ x / w.sum()
    _, vecs = np.linalg.eigh(cov)
    return vecs[:, -1]


def _moments(xyz: np.ndarray, q: np.ndarray):
    """Steps 1-3, independent of the parameters: ``(x_b, s, sqrt(M2))``.

    ``s`` is each voxel's projection on ``v_PA`` about ``x_b``, signed so that the start
    side (``sign(M3)``) is positive.
    """
    xb = q @ xyz / q.sum()
    d = xyz - xb
    v_pa = principal_axis(d, q)
    proj = d @ v_pa
    m2 = float(q @ proj ** 2 / q.sum())
    m3 = float(q @ proj ** 3 / q.sum())
    side = 1.0 if m3 >= 0 else -1.0
    return xb, side * proj, np.sqrt(m2)


def _start_axes(xk: np.ndarray, qk: np.ndarray, w0_cm: np.ndarray):
    """Steps 5-6 on the kept voxels for several ``w0`` at once: ``(x_IP (3,), axes (m, 3))``.

    The axes are unoriented unit vectors, one per ``w0_cm`` ``(m,)``.
    """
    x_ip = qk @ xk / qk.sum()
    d = xk - x_ip                                                    # (k, 3)
    dist = np.linalg.norm(d, axis=1)
    w = qk[None, :] * np.exp(-dist[None, :] / w0_cm[:, None])        # (m, k)
    w[~(w.sum(axis=1) > 0)] = qk  # every kept voxel far beyond w0: fall back to the charges
    cov = np.einsum("mk,ki,kj->mij", w, d, d) / w.sum(axis=1)[:, None, None]  # (m, 3, 3)
    return x_ip, np.linalg.eigh(cov)[1][:, :, -1]


def reconstruct_event(xyz: np.ndarray, q: np.ndarray, cfg: NonMLConfig = NonMLConfig(),
                      truth_direction=None):
    """One event: ``(direction (3,), interaction point (3,), status)``.

    ``xyz`` voxel centres (cm), ``q`` charges; ``truth_direction`` orients the axis (the
    seed's correct-head-tail variant) instead of step 7.
    """
    xb, s, scale = _moments(xyz, q)
    keep = (s > cfg.r_min * scale) & (s < cfg.r_max * scale)
    if keep.sum() < MIN_VOXELS:
        nan = np.full(3, np.nan)
        return nan, nan, FAILED
    x_ip, axes = _start_axes(xyz[keep], q[keep], np.array([cfg.w0_cm]))
    v_ip = axes[0]
    ref = (xb - x_ip) if truth_direction is None else np.asarray(truth_direction, float)
    if v_ip @ ref < 0:
        v_ip = -v_ip
    return v_ip, x_ip, 0


def reconstruct(offsets, coords, values, cfg: NonMLConfig = NonMLConfig(),
                truth_directions=None) -> dict:
    """Every event of a sparse batch: a dict of :data:`OUTPUT_FIELDS` arrays.

    ``coords`` ``(n_voxels, 3)`` voxel indices, ``values`` charges; ``truth_directions``
    ``(n, 3)`` for the correct-head-tail variant.
    """
    n = len(offsets) - 1
    out = {name: np.full(n, np.nan, dtype) if dtype.startswith("f") else np.zeros(n, dtype)
           for name, dtype, *_ in OUTPUT_FIELDS}
    xyz_all = (np.asarray(coords, np.float64) + 0.5) * cfg.voxel_cm
    q_all = np.asarray(values, np.float64)
    for k in range(n):
        a, b = offsets[k], offsets[k + 1]
        truth = None if truth_directions is None else truth_directions[k]
        v, ip, status = reconstruct_event(xyz_all[a:b], q_all[a:b], cfg, truth)
        out["status"][k] = status
        for i, c in enumerate("xyz"):
            out[f"dir_{c}"][k] = v[i]
            out[f"ip_{c}_cm"][k] = ip[i]
    return out


#: default grid of :func:`tune`: 6 x 3 x 7 points around the seed's (1.5, 3, 0.05 cm).
#: w0 reaches 1.6 cm, beyond a track's start region (almost uniform weights), because on
#: simulated 40 keV recoils the best w0 is at the large end.
DEFAULT_GRID = {"r_min": (1.0, 1.25, 1.5, 1.75, 2.0, 2.25), "r_max": (2.5, 3.0, 4.0),
                "w0_cm": (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)}


def _grid_points(grid):
    grid = DEFAULT_GRID if grid is None else grid
    if not isinstance(grid, dict) or set(grid) != {"r_min", "r_max", "w0_cm"}:
        raise InputError("grid: expected a dict of sequences with keys r_min, r_max, w0_cm")
    values = {}
    for key in ("r_min", "r_max", "w0_cm"):
        v = np.atleast_1d(np.asarray(grid[key], dtype=np.float64))
        if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v)):
            raise InputError(f"grid[{key!r}]: expected a non-empty sequence of finite numbers")
        values[key] = np.unique(v)
    if np.any(values["r_min"] < 0) or np.any(values["w0_cm"] <= 0):
        raise InputError("grid: expected r_min >= 0 and w0_cm > 0")
    pairs = [(a, b) for a, b in itertools.product(values["r_min"], values["r_max"]) if a < b]
    if not pairs:
        raise InputError("grid: no pair with r_min < r_max")
    return pairs, values["w0_cm"]


def tune(offsets, coords, values, truth_directions, *, grid=None, min_efficiency=0.10,
         voxel_cm: float = 0.05, progress=False):
    """Grid search of ``(r_min, r_max, w0_cm)`` on a validation set (the seed's "tuned").

    Every grid point (``r_min < r_max``) is scored by the mean cosine distance to the truth
    over the tracks it does not fail (head-tail from the track, step 7); among the points
    with a track efficiency above ``min_efficiency`` the lowest score wins.  The result for a
    point is the one :func:`reconstruct` gives with its :class:`NonMLConfig` (to rounding).

    Steps 1-3 do not depend on the parameters and are done once per event; the voxels are
    sorted along the principal axis, so that each ``(r_min, r_max)`` selection is a slice
    (evaluated once per distinct slice); all ``w0`` of a selection share one batched
    eigen-decomposition.

    Parameters
    ----------
    offsets, coords, values :
        Sparse events (:func:`~astroreco.detectors.tpc.pipeline.read_voxels`): ``(n + 1,)``
        offsets, ``(n_voxels, 3)`` voxel indices, ``(n_voxels,)`` charges.
    truth_directions : array_like
        ``(n, 3)`` true initial directions.
    grid : dict, optional
        Sequences under ``r_min``, ``r_max``, ``w0_cm`` (cm); default :data:`DEFAULT_GRID`.
    min_efficiency : float, optional
        Least track efficiency (exclusive) of an eligible point, in ``[0, 1)``.
    voxel_cm : float, optional
        Voxel size (cm).
    progress : bool, optional
        Show a progress bar over the events.

    Returns
    -------
    best : NonMLConfig
        The eligible point with the lowest mean cosine distance.
    table : list of dict
        Every point: ``r_min``, ``r_max``, ``w0_cm``, ``n_ok``, ``efficiency``,
        ``cosine_distance``, ``cosine_distance_truth_ht`` (the same axes oriented by the
        truth: the seed's correct-head-tail variant; NaN where no track is left) and
        ``eligible``.

    Raises
    ------
    InputError
        Bad shapes, grid or ``min_efficiency``, or no point above ``min_efficiency``.
    """
    if not 0.0 <= float(min_efficiency) < 1.0:
        raise InputError(f"min_efficiency: expected a fraction in [0, 1), got {min_efficiency}")
    pairs, w0s = _grid_points(grid)
    offsets = np.asarray(offsets)
    n = len(offsets) - 1
    truth = np.asarray(truth_directions, np.float64)
    if n < 1 or truth.shape != (n, 3):
        raise InputError(f"truth_directions: expected shape ({n}, 3), got {truth.shape}")
    truth = truth / np.linalg.norm(truth, axis=1, keepdims=True)
    xyz_all = (np.asarray(coords, np.float64) + 0.5) * voxel_cm
    q_all = np.asarray(values, np.float64)
    n_ok = np.zeros(len(pairs), np.int64)
    sum_cd = np.zeros((len(pairs), w0s.size))
    sum_cd_ht = np.zeros((len(pairs), w0s.size))
    with progress_bar(f"Non-ML tuning: {len(pairs) * w0s.size} points", total=n,
                      enabled=progress) as bar:
        for k in range(n):
            a, b = offsets[k], offsets[k + 1]
            xb, s, scale = _moments(xyz_all[a:b], q_all[a:b])
            order = np.argsort(s, kind="stable")
            s, xyz, q = s[order], xyz_all[a:b][order], q_all[a:b][order]
            done = {}
            for p, (r_min, r_max) in enumerate(pairs):
                lo = int(np.searchsorted(s, r_min * scale, side="right"))
                hi = int(np.searchsorted(s, r_max * scale, side="left"))
                if hi - lo < MIN_VOXELS:
                    continue
                if (lo, hi) not in done:
                    x_ip, axes = _start_axes(xyz[lo:hi], q[lo:hi], w0s)
                    flip = np.where(axes @ (xb - x_ip) < 0, -1.0, 1.0)
                    cos_t = flip * (axes @ truth[k])
                    done[lo, hi] = (1.0 - cos_t, 1.0 - np.abs(cos_t))
                cd, cd_ht = done[lo, hi]
                n_ok[p] += 1
                sum_cd[p] += cd
                sum_cd_ht[p] += cd_ht
            bar.advance(1)
    table = []
    for p, (r_min, r_max) in enumerate(pairs):
        for j, w0 in enumerate(w0s):
            m = int(n_ok[p])
            table.append({
                "r_min": float(r_min), "r_max": float(r_max), "w0_cm": float(w0),
                "n_ok": m, "efficiency": m / n,
                "cosine_distance": float(sum_cd[p, j] / m) if m else math.nan,
                "cosine_distance_truth_ht": float(sum_cd_ht[p, j] / m) if m else math.nan,
                "eligible": bool(m / n > min_efficiency)})
    eligible = [row for row in table if row["eligible"]]
    if not eligible:
        raise InputError(f"Non-ML tuning: no grid point keeps more than "
                         f"{100 * min_efficiency:g}% of the {n} tracks")
    best = min(eligible, key=lambda row: row["cosine_distance"])
    return NonMLConfig(r_min=best["r_min"], r_max=best["r_max"], w0_cm=best["w0_cm"],
                       voxel_cm=voxel_cm), table
