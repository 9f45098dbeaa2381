"""One-to-one matching of detected positions to true positions within a distance cut.

The first step of every detection score (completeness, purity, localisation error): each
true source is paired with at most one detection and each detection with at most one true
source, only where the two are at most ``max_dist`` apart.  Plain planar geometry (pixels,
mm, or small-field degrees); nothing here knows a detector.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from astroreco.errors import InputError

__all__ = ["MATCH_METHODS", "match_sources"]

#: Methods of :func:`match_sources`.
MATCH_METHODS = ("optimal", "greedy")


def _positions(name_x: str, name_y: str, x, y) -> np.ndarray:
    try:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name_x}/{name_y}: expected arrays of numbers") from None
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise InputError(f"{name_x}/{name_y}: expected two 1-D arrays of one length, got "
                         f"shapes {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InputError(f"{name_x}/{name_y}: NaN or infinite values")
    return np.stack([x, y], axis=1)  # (n, 2)


def match_sources(x_true, y_true, x_det, y_det, max_dist: float, *,
                  method: str = "optimal") -> dict[str, np.ndarray]:
    """Pair true and detected positions one-to-one, only pairs at most ``max_dist`` apart.

    ``method="optimal"``: the largest possible number of pairs and, among the pairings with
    that many, the smallest summed distance.  The candidate pairs (a k-d tree query within
    ``max_dist``) form a bipartite graph; each connected group of it is solved exactly by
    :func:`scipy.optimize.linear_sum_assignment` on its distance matrix, with forbidden
    pairs priced above any sum of allowed distances (so the group stays small even when
    the catalogues are large).  ``method="greedy"``: repeatedly pair the closest two
    positions still free (ties by true index, then detected index) -- the usual catalogue
    cross-match; it can leave a pair unmatched that the optimal method would match.

    Parameters
    ----------
    x_true, y_true : array (n_true,)
    x_det, y_det : array (n_det,)
        Positions, in one unit (e.g. pixels).
    max_dist : float >= 0
        Largest distance of a pair (inclusive), in the same unit.
    method : {"optimal", "greedy"}

    Returns
    -------
    dict of 1-D arrays
        ``true_index``, ``det_index`` (int, ``(n_match,)``, sorted by ``true_index``),
        ``distance`` (``(n_match,)``), ``unmatched_true`` (indices of true positions left
        alone), ``unmatched_det`` (indices of detections left alone: false positives).

    Examples
    --------
    >>> m = match_sources([0, 10], [0, 0], [10.5, 0.2, 30], [0, 0, 0], max_dist=1)
    >>> m["true_index"].tolist(), m["det_index"].tolist(), m["unmatched_det"].tolist()
    ([0, 1], [1, 0], [2])
    """
    true = _positions("x_true", "y_true", x_true, y_true)
    det = _positions("x_det", "y_det", x_det, y_det)
    try:
        max_dist = float(max_dist)
    except (TypeError, ValueError):
        raise InputError(f"max_dist: expected a number >= 0, got {max_dist!r}") from None
    if not (np.isfinite(max_dist) and max_dist >= 0):
        raise InputError(f"max_dist: expected a finite number >= 0, got {max_dist!r}")
    if method not in MATCH_METHODS:
        raise InputError(f"method: {method!r}, expected one of {', '.join(MATCH_METHODS)}")

    n_true, n_det = len(true), len(det)
    if n_true and n_det:
        pairs = cKDTree(true).sparse_distance_matrix(cKDTree(det), max_dist,
                                                     output_type="ndarray")
        i, j, d = (np.asarray(pairs["i"], np.intp), np.asarray(pairs["j"], np.intp),
                   np.asarray(pairs["v"], np.float64))
    else:
        i = j = np.zeros(0, np.intp)
        d = np.zeros(0)
    if method == "greedy":
        ti, di = _greedy(i, j, d)
    else:
        ti, di = _optimal(i, j, d, n_true, n_det, max_dist)
    order = np.argsort(ti, kind="stable")
    ti, di = ti[order], di[order]
    dist = np.hypot(*(true[ti] - det[di]).T) if ti.size else np.zeros(0)
    return {"true_index": ti, "det_index": di, "distance": dist,
            "unmatched_true": np.setdiff1d(np.arange(n_true), ti),
            "unmatched_det": np.setdiff1d(np.arange(n_det), di)}


def _greedy(i, j, d):
    """Closest free pairs first, from candidate pairs ``(i, j, d)``."""
    used_t, used_d, ti, di = set(), set(), [], []
    for k in np.lexsort((j, i, d)):  # by distance, then true index, then detected index
        if i[k] not in used_t and j[k] not in used_d:
            used_t.add(i[k])
            used_d.add(j[k])
            ti.append(i[k])
            di.append(j[k])
    return np.asarray(ti, np.intp), np.asarray(di, np.intp)


def _optimal(i, j, d, n_true, n_det, max_dist):
    """Maximum-cardinality, then minimum-distance matching, one connected group at a time."""
    if i.size == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    # bipartite graph: nodes 0..n_true-1 are true positions, n_true.. the detections
    n = n_true + n_det
    graph = coo_matrix((np.ones(i.size), (i, n_true + j)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    ti, di = [], []
    edge_group = group[i]
    for g in np.unique(edge_group):
        sel = edge_group == g
        rows, r_idx = np.unique(i[sel], return_inverse=True)
        cols, c_idx = np.unique(j[sel], return_inverse=True)
        # a forbidden pair costs more than any sum of allowed distances in this group, so
        # the assignment first maximises the number of allowed pairs
        forbidden = max_dist * (min(rows.size, cols.size) + 1) + 1.0
        cost = np.full((rows.size, cols.size), forbidden)
        cost[r_idx, c_idx] = d[sel]
        r, c = linear_sum_assignment(cost)
        ok = cost[r, c] < forbidden
        ti.append(rows[r[ok]])
        di.append(cols[c[ok]])
    return np.concatenate(ti).astype(np.intp), np.concatenate(di).astype(np.intp)
