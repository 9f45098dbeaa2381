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
5. the interaction point ``x_IP`` is the charge-weighted centre of the kept voxels (no voxel
   kept: the track fails, which sets the method's track efficiency);
6. the kept voxels are re-weighted by ``q_i exp(-|x_i - x_IP| / w0)`` and their weighted
   covariance about ``x_IP`` gives the axis ``v_IP``;
7. head-tail: ``v_IP`` points from ``x_IP`` towards the barycentre (the track runs from its
   start into its body), or, for the seed's "correct head-tail" variant, along the truth.

Defaults ``r_min = 1.5``, ``r_max = 3``, ``w0 = 0.05`` (cm here) are the seed's adopted
values.  (The tuned variant, a grid search on a validation set keeping the track efficiency
above 10%, is still to come.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from astroreco.errors import InputError

#: per-event output, (name, dtype, unit, description)
OUTPUT_FIELDS = (
    ("dir_x", "f4", "", "reconstructed initial direction, x (NaN when the track fails)"),
    ("dir_y", "f4", "", "reconstructed initial direction, y"),
    ("dir_z", "f4", "", "reconstructed initial direction, z"),
    ("ip_x_cm", "f4", "cm", "interaction (start) point, grid frame"),
    ("ip_y_cm", "f4", "cm", "interaction (start) point, grid frame"),
    ("ip_z_cm", "f4", "cm", "interaction (start) point, grid frame"),
    ("status", "u1", "", "1: no voxel in the start-region selection (track fails)"),
)
FAILED = 1


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


def reconstruct_event(xyz: np.ndarray, q: np.ndarray, cfg: NonMLConfig = NonMLConfig(),
                      truth_direction=None):
    """One event: ``(direction (3,), interaction point (3,), status)``.

    ``xyz`` voxel centres (cm), ``q`` charges; ``truth_direction`` orients the axis (the
    seed's correct-head-tail variant) instead of step 7.
    """
    xb = q @ xyz / q.sum()
    d = xyz - xb
    v_pa = principal_axis(d, q)
    proj = d @ v_pa
    m2 = float(q @ proj ** 2 / q.sum())
    m3 = float(q @ proj ** 3 / q.sum())
    side = 1.0 if m3 >= 0 else -1.0
    s = side * proj
    scale = np.sqrt(m2)
    keep = (s > cfg.r_min * scale) & (s < cfg.r_max * scale)
    if not keep.any():
        nan = np.full(3, np.nan)
        return nan, nan, FAILED
    xk, qk = xyz[keep], q[keep]
    x_ip = qk @ xk / qk.sum()
    dist = np.linalg.norm(xk - x_ip, axis=1)
    w = qk * np.exp(-dist / cfg.w0_cm)
    if not w.sum() > 0:  # every kept voxel far beyond w0: fall back to the charges
        w = qk
    v_ip = principal_axis(xk - x_ip, w)
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
