"""The TPC seed paper's "Best-Expected" reference: what the truth start point allows.

Not an analysis for data: it uses simulation truth twice.  Per event, the voxels within a
sphere of radius ``epsilon`` around the *true* start point; the principal axis of their
charge-weighted covariance (about their charge centre), oriented along the *true*
direction.  ``epsilon`` is tuned to minimise the mean cosine distance on a validation set
(:func:`tune_epsilon`), as in the seed (its Appendix A).
"""

from __future__ import annotations

import numpy as np

from astroreco.detectors.tpc.nonml import principal_axis
from astroreco.errors import InputError
from astroreco.stats.directional import cosine_distance

#: a track with fewer voxels than this inside the sphere has no axis (status 1)
MIN_VOXELS = 2


def reconstruct(offsets, coords, values, start_cm, truth_directions, *, epsilon_cm: float,
                voxel_cm: float = 0.05) -> dict:
    """Directions ``(n, 3)`` (NaN where fewer than 2 voxels are in the sphere) and status."""
    if not epsilon_cm > 0:
        raise InputError(f"epsilon_cm: expected > 0, got {epsilon_cm}")
    n = len(offsets) - 1
    start = np.asarray(start_cm, np.float64).reshape(n, 3)
    truth = np.asarray(truth_directions, np.float64).reshape(n, 3)
    xyz_all = (np.asarray(coords, np.float64) + 0.5) * voxel_cm
    q_all = np.asarray(values, np.float64)
    out = np.full((n, 3), np.nan)
    status = np.zeros(n, np.uint8)
    for k in range(n):
        a, b = offsets[k], offsets[k + 1]
        xyz, q = xyz_all[a:b], q_all[a:b]
        inside = np.linalg.norm(xyz - start[k], axis=1) < epsilon_cm
        if inside.sum() < MIN_VOXELS:
            status[k] = 1
            continue
        xi, qi = xyz[inside], q[inside]
        v = principal_axis(xi - qi @ xi / qi.sum(), qi)
        out[k] = v if v @ truth[k] >= 0 else -v
    return {"direction": out, "status": status}


def tune_epsilon(offsets, coords, values, start_cm, truth_directions,
                 grid_cm=(0.1, 0.15, 0.2, 0.25, 0.275, 0.3, 0.325, 0.35, 0.375, 0.4, 0.45,
                          0.5, 0.7, 1.0)) -> dict:
    """The ``epsilon`` of ``grid_cm`` with the lowest mean cosine distance (failures count
    as 1, a random direction's expectation), and the whole scan."""
    scan = []
    for eps in grid_cm:
        r = reconstruct(offsets, coords, values, start_cm, truth_directions, epsilon_cm=eps)
        cd = np.ones(len(offsets) - 1)
        ok = r["status"] == 0
        cd[ok] = cosine_distance(r["direction"][ok], np.asarray(truth_directions)[ok])
        scan.append({"epsilon_cm": float(eps), "cosine_distance": float(cd.mean()),
                     "failed": int((~ok).sum())})
    best = min(scan, key=lambda s: s["cosine_distance"])
    return {"epsilon_cm": best["epsilon_cm"], "scan": scan}
