r"""Scoring of the source detections stored in a sky patch file against the truth.

Each reconstruction under ``/reco/<name>`` (classical ``sep``/``photutils``/``peaks`` with a
``significance`` column, the neural detector with a ``score`` probability) is matched to the
simulated sources patch by patch, one-to-one, within ``match_radius_deg`` (0.3 deg, the
published comparison; :func:`~astroreco.stats.matching.match_sources`, optimal method, in
pixel units).  Then, per method:

- counts and the purity (precision) :math:`P = N_{matched\,det} / N_{det}`, the recall
  (completeness) above a flux threshold
  :math:`R = N_{matched\,true}(S \ge S_{thr}) / N_{true}(S \ge S_{thr})` and
  :math:`F_1 = 2PR/(P + R)`;
- the precision-recall curve over the ranking column (``score`` if present, else
  ``significance``), and the operating point: the highest recall at
  :math:`P \ge` ``purity_target`` and the threshold that reaches it;
- recall against the true flux :math:`S(1-100\,\mathrm{GeV})` in log bins, with binomial
  errors :math:`\sqrt{R(1-R)/n}` and the Wilson 68.3 % interval;
- localisation: great-circle offset of the matched pairs, computed from ``l_deg``/``b_deg``
  of both tables (not from pixels), its 68 % / 95 % quantiles overall and per flux bin;
- with ``pos_sigma_deg``: position pulls per axis (east = increasing l, north), the offset
  in the gnomonic tangent plane at the true position divided by the per-axis sigma; for a
  circular Gaussian the pulls are unit normal and the 68 % / 95 % radii are
  :math:`1.515\sigma` and :math:`2.448\sigma` (:math:`\sqrt{-2\ln(1 - q)}\,\sigma`);
- with ``flux``/``flux_err``: flux pulls :math:`(S_{det} - S_{true})/\sigma_S` (all matched
  pairs, those above the flux threshold, and per true-flux bin: near the detection
  threshold the detected sources are the upward fluctuations, Eddington bias), the same in
  :math:`\log_{10} S` with :math:`\sigma_{\log} = \sigma_S / (S_{det} \ln 10)`, and the
  bias :math:`\mathrm{median}(S_{det}/S_{true} - 1)` per flux bin;
- with class probabilities: confusion matrices (true ``cls`` vs
  :math:`\arg\max(p_{agn}, p_{psr})`, true ``ext_class`` vs
  :math:`\arg\max(p_{ext0}, p_{ext1}, p_{ext2})` or the stored ``ext_class``) of the matched
  sources.

Only sources inside a patch (``in_patch``) count as true sources.  The matching also sees the
sources simulated in the margin around a patch: a detection whose partner is such a source
(a real source just outside the border) is neither a true nor a false positive; it is counted
as ``n_margin`` and left out of the purity.

:func:`score_tables` is the pure function over flat tables; :func:`score` reads a patch file;
:func:`matched_pairs` gives the matched rows of one method.  The report (``evaluation.json``,
the plots, ``report.html``) is :func:`astroreco.detectors.sky.evaluate.evaluate`.
"""

from __future__ import annotations

import math

import numpy as np

from astroreco.errors import InputError
from astroreco.stats.detection import (binned_fraction, confusion_matrix, f1_score, fraction,
                                       precision_recall_curve, pull_summary, quantile)

__all__ = ["FLUX_EDGES", "DEFAULTS", "sky_offsets", "score_tables", "score", "matched_pairs"]

#: default bins of the true flux S(1-100 GeV), ph cm^-2 s^-1: 10 log bins
FLUX_EDGES = tuple(float(v) for v in np.geomspace(1e-11, 1e-7, 11))
#: defaults of the scoring options (deg, ph cm^-2 s^-1, fraction)
DEFAULTS = {"match_radius_deg": 0.3, "flux_threshold": 4e-10, "purity_target": 0.95}
#: radius (deg) of the "fraction within" localisation figure
WITHIN_DEG = 0.15
#: containment radii of a circular 2-D Gaussian, in units of the per-axis sigma
R68_SIGMA = math.sqrt(-2.0 * math.log(1.0 - 0.68))   # 1.515
R95_SIGMA = math.sqrt(-2.0 * math.log(1.0 - 0.95))   # 2.448
#: ranking columns, first found is used
RANKING_COLUMNS = ("score", "significance")
CLASS_PROBS = ("p_agn", "p_psr")
EXT_PROBS = ("p_ext0", "p_ext1", "p_ext2")
CLASS_LABELS = ("AGN", "PSR")
EXT_LABELS = ("point", "ext1", "ext2")
#: least matched pairs for a per-bin quantile
MIN_PAIRS = 5
#: points kept of a precision-recall curve in the result (the operating point is exact)
MAX_CURVE_POINTS = 200
_TRUTH_COLUMNS = ("x_pix", "y_pix", "l_deg", "b_deg", "in_patch", "flux", "cls", "ext_class")


# --- checks ---------------------------------------------------------------------------------

def _positive(value, name) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a positive number, got {value!r}") from None
    if isinstance(value, bool) or not (math.isfinite(v) and v > 0):
        raise InputError(f"{name}: expected a finite number > 0, got {value!r}")
    return v


def _check_options(match_radius_deg, flux_threshold, flux_edges, purity_target):
    radius = _positive(match_radius_deg, "match_radius_deg (--match-radius)")
    thr = _positive(flux_threshold, "flux_threshold (--flux-threshold)")
    target = _positive(purity_target, "purity_target")
    if target > 1:
        raise InputError(f"purity_target: expected a fraction in (0, 1], got {purity_target!r}")
    edges = FLUX_EDGES if flux_edges is None else flux_edges
    try:
        edges = np.asarray(edges, np.float64)
    except (TypeError, ValueError):
        raise InputError(f"flux_edges: expected increasing positive numbers, got "
                         f"{flux_edges!r}") from None
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)) \
            or np.any(edges <= 0) or np.any(np.diff(edges) <= 0):
        raise InputError(f"flux_edges: expected at least 2 increasing positive numbers, got "
                         f"{np.asarray(flux_edges).tolist()}")
    return radius, thr, edges, target


def _column(tab, name, where, dtype=np.float64):
    if name not in tab:
        raise InputError(f"{where}: no column {name!r} (has {', '.join(sorted(tab))})")
    return np.asarray(tab[name], dtype)


# --- sky geometry -----------------------------------------------------------------------------

def _unit(l_deg, b_deg):
    """``(n, 3)`` unit vectors of Galactic positions."""
    lr, br = np.radians(l_deg), np.radians(b_deg)
    return np.stack([np.cos(br) * np.cos(lr), np.cos(br) * np.sin(lr), np.sin(br)], axis=1)


def sky_offsets(l_true, b_true, l_det, b_det):
    r"""Great-circle distance and tangent-plane offsets of detected from true positions.

    :math:`d = 2\arcsin(|v_{det} - v_{true}|/2)`; per axis the gnomonic coordinates of the
    detection around the true position, :math:`\xi = v_{det}\cdot e / v_{det}\cdot v_{true}`
    (``e`` east, increasing l) and :math:`\eta = v_{det}\cdot n / v_{det}\cdot v_{true}`
    (north).

    Returns
    -------
    (dist_deg, east_deg, north_deg) : three ``(n,)`` arrays, deg
    """
    vt, vd = _unit(l_true, b_true), _unit(l_det, b_det)
    dist = np.degrees(2.0 * np.arcsin(np.clip(np.linalg.norm(vd - vt, axis=1) / 2, 0, 1)))
    lr, br = np.radians(l_true), np.radians(b_true)
    east = np.stack([-np.sin(lr), np.cos(lr), np.zeros_like(lr)], axis=1)
    north = np.stack([-np.sin(br) * np.cos(lr), -np.sin(br) * np.sin(lr), np.cos(br)], axis=1)
    cos_d = np.sum(vd * vt, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = np.degrees(np.sum(vd * east, axis=1) / cos_d)
        eta = np.degrees(np.sum(vd * north, axis=1) / cos_d)
    return dist, xi, eta


# --- matching ---------------------------------------------------------------------------------

#: patches per call of match_sources for the pairs that are not isolated
_MATCH_BLOCK = 64


def _match(truth, det, radius_pix):
    """Optimal one-to-one match within ``radius_pix``, patch by patch.

    Each patch is moved to its own stretch of the x axis (further apart than the radius), so
    no pair crosses patches.  The candidate pairs form a bipartite graph whose connected
    groups are independent: an isolated pair (a source with a single candidate detection that
    has no other candidate source) is matched directly, the other groups go to
    :func:`~astroreco.stats.matching.match_sources` (optimal) a block of patches at a time.
    The result is the optimal matching of the whole table, only faster on large files.

    Returns
    -------
    (true_index, det_index) : two int arrays ``(n_match,)``
    """
    from scipy.spatial import cKDTree

    from astroreco.stats.matching import match_sources

    xt, yt, xd, yd = truth["x_pix"], truth["y_pix"], det["x_pix"], det["y_pix"]
    pt, pd = truth["patch"], det["patch"]
    if not (xt.size and xd.size):
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    allx = np.concatenate([xt, xd])
    stride = float(allx.max() - allx.min()) + 2.0 * radius_pix + 10.0
    at = np.stack([xt + pt * stride, yt], axis=1)   # (n_true, 2)
    ad = np.stack([xd + pd * stride, yd], axis=1)   # (n_det, 2)
    pairs = cKDTree(at).sparse_distance_matrix(cKDTree(ad), radius_pix,
                                               output_type="ndarray")
    i, j = np.asarray(pairs["i"], np.intp), np.asarray(pairs["j"], np.intp)
    lone = (np.bincount(i, minlength=xt.size)[i] == 1) & (np.bincount(j, minlength=xd.size)[j]
                                                          == 1)
    ti, di = [i[lone]], [j[lone]]
    rest_t, rest_d = np.unique(i[~lone]), np.unique(j[~lone])
    patches = np.unique(pt[rest_t])
    for s in range(0, patches.size, _MATCH_BLOCK):
        block = patches[s:s + _MATCH_BLOCK]
        bt = rest_t[np.isin(pt[rest_t], block)]
        bd = rest_d[np.isin(pd[rest_d], block)]
        m = match_sources(at[bt, 0], at[bt, 1], ad[bd, 0], ad[bd, 1], radius_pix,
                          method="optimal")
        ti.append(bt[m["true_index"]])
        di.append(bd[m["det_index"]])
    return np.concatenate(ti), np.concatenate(di)


# --- the score of one method ------------------------------------------------------------------

def _recall_bins(flux, matched, edges):
    b = binned_fraction(flux, matched, edges)
    return {"flux_edges": edges.tolist(),
            "flux_centre": np.sqrt(edges[1:] * edges[:-1]).tolist(),
            "n_true": b["n"], "n_matched": b["k"], "recall": b["fraction"],
            "recall_err": b["error"], "recall_lo": b["lo"], "recall_hi": b["hi"]}


def _per_bin(flux, values, edges, fn):
    """``fn(values in bin)`` per flux bin with at least :data:`MIN_PAIRS` values."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (flux >= lo) & (flux < hi)
        row = {"flux_lo": float(lo), "flux_hi": float(hi), "n": int(sel.sum())}
        row.update(fn(values[sel]) if sel.sum() >= MIN_PAIRS else {})
        rows.append(row)
    return rows


def _confusion(true, pred, n_class, labels):
    mat = confusion_matrix(true, pred, n_class)
    return {"labels": list(labels), "matrix": mat.tolist(), "n": int(mat.sum()),
            "accuracy": fraction(np.trace(mat), mat.sum())}


def _argmax_probs(det, names, rows):
    p = np.stack([np.asarray(det[n], np.float64)[rows] for n in names], axis=1)
    p = np.where(np.isfinite(p), p, -np.inf)
    return np.argmax(p, axis=1) if len(rows) else np.zeros(0, int)


def _score_method(truth, det, name, *, radius_pix, flux_threshold, edges, target,
                  source=None):
    """Result entry and the raw arrays (for the plots) of one detection table."""
    where = f"{source}: /reco/{name}" if source else f"detections {name!r}"
    det = dict(det)
    for col in ("patch", "x_pix", "y_pix"):
        det[col] = _column(det, col, where, np.int64 if col == "patch" else np.float64)
    n_det = det["x_pix"].size
    for col in ("x_pix", "y_pix"):
        if not np.all(np.isfinite(det[col])):
            raise InputError(f"{where}: NaN or infinite values in {col!r}")
    ti, di = _match(truth, det, radius_pix)
    in_patch = truth["in_patch"]
    flux = truth["flux"]
    above = in_patch & (flux >= flux_threshold)

    # per detection: matched to an in-patch source (TP), to a margin source (ignored), none
    det_tp = np.zeros(n_det, bool)
    det_margin = np.zeros(n_det, bool)
    det_hit_above = np.zeros(n_det, bool)
    det_tp[di[in_patch[ti]]] = True
    det_margin[di[~in_patch[ti]]] = True
    det_hit_above[di[above[ti]]] = True
    true_matched = np.zeros(flux.size, bool)
    true_matched[ti] = True
    counted = ~det_margin
    n_counted = int(counted.sum())
    tp = int(det_tp.sum())
    n_true, n_above = int(in_patch.sum()), int(above.sum())
    n_hit_above = int((true_matched & above).sum())
    purity = fraction(tp, n_counted)
    recall = fraction(n_hit_above, n_above)
    entry = {"counts": {"n_detections": int(n_det), "n_counted": n_counted,
                        "n_margin": int(det_margin.sum()), "n_true": n_true,
                        "n_true_above": n_above, "tp": tp, "fp": n_counted - tp,
                        "n_matched_true_above": n_hit_above},
             "purity": purity, "recall_above": recall, "f1": f1_score(purity, recall)}

    ranking = next((c for c in RANKING_COLUMNS if c in det), None)
    entry["ranking"] = ranking
    if ranking is not None:
        rank = np.asarray(det[ranking], np.float64)[counted]
        curve, op = precision_recall_curve(rank, det_tp[counted], det_hit_above[counted],
                                           n_above, target, MAX_CURVE_POINTS)
        entry["pr_curve"], entry["operating_point"] = curve, op
    else:
        entry["pr_curve"] = None
        entry["operating_point"] = {"purity_target": target, "threshold": None,
                                    "recall": None, "purity": None, "f1": None,
                                    "n_detections": None}
    entry["recall_vs_flux"] = _recall_bins(flux[in_patch], true_matched[in_patch], edges)

    # matched pairs with an in-patch source
    keep = in_patch[ti]
    pt, pd = ti[keep], di[keep]
    pflux = flux[pt]
    if "l_deg" in det and "b_deg" in det and np.all(np.isfinite(truth["l_deg"][pt])) \
            and np.all(np.isfinite(truth["b_deg"][pt])):
        dist, east, north = sky_offsets(truth["l_deg"][pt], truth["b_deg"][pt],
                                        np.asarray(det["l_deg"], np.float64)[pd],
                                        np.asarray(det["b_deg"], np.float64)[pd])
        offset_from = "great circle from l_deg/b_deg"
    else:  # pixel offsets x pixel size (l decreases with x)
        dx = det["x_pix"][pd] - truth["x_pix"][pt]
        dy = det["y_pix"][pd] - truth["y_pix"][pt]
        east, north = -dx * truth["pixel_deg"], dy * truth["pixel_deg"]
        dist = np.hypot(east, north)
        offset_from = "pixel distance x pixel size"
    bright = pflux >= flux_threshold
    entry["localisation"] = {
        "offset_from": offset_from, "n_pairs": int(pt.size),
        "r68_deg": quantile(dist, 0.68), "r95_deg": quantile(dist, 0.95),
        "within_deg": WITHIN_DEG, "n_pairs_above": int(bright.sum()),
        "fraction_within_above": (float(np.mean(dist[bright] <= WITHIN_DEG))
                                  if bright.any() else None),
        "r68_deg_above": quantile(dist[bright], 0.68),
        "per_bin": _per_bin(pflux, dist, edges,
                            lambda d: {"r68_deg": quantile(d, 0.68),
                                       "r95_deg": quantile(d, 0.95),
                                       "median_deg": quantile(d, 0.5)})}
    arrays = {"position_pulls": None, "flux_pulls": None}

    entry["position_pulls"] = None
    if "pos_sigma_deg" in det:
        sigma = np.asarray(det["pos_sigma_deg"], np.float64)[pd]
        good = np.isfinite(sigma) & (sigma > 0) & np.isfinite(east) & np.isfinite(north)
        pe, pn, r = east[good] / sigma[good], north[good] / sigma[good], dist[good] / sigma[good]
        pooled = np.concatenate([pe, pn])
        entry["position_pulls"] = {
            "n": int(good.sum()), "n_bad_sigma": int((~good).sum()),
            **{k: v for k, v in pull_summary(pooled).items() if k != "n"},
            "east": pull_summary(pe), "north": pull_summary(pn),
            "fraction_within_r68": float(np.mean(r <= R68_SIGMA)) if r.size else None,
            "fraction_within_r95": float(np.mean(r <= R95_SIGMA)) if r.size else None,
            "median_sigma_deg": quantile(sigma[good], 0.5)}
        arrays["position_pulls"] = pooled

    entry["flux"] = None
    if "flux" in det and "flux_err" in det:
        s_det = np.asarray(det["flux"], np.float64)[pd]
        s_err = np.asarray(det["flux_err"], np.float64)[pd]
        good = np.isfinite(s_det) & np.isfinite(s_err) & (s_err > 0)
        pull = (s_det[good] - pflux[good]) / s_err[good]
        # the same in log10 S, where the refiner's log-normal is Gaussian: sigma_log10 =
        # flux_err / (ln 10 flux), the delta method's inverse
        lgood = good & (s_det > 0) & (pflux > 0)
        log_pull = (np.log10(s_det[lgood] / pflux[lgood])
                    * np.log(10.0) * s_det[lgood] / s_err[lgood])
        ratio = s_det / pflux - 1.0
        fin = np.isfinite(ratio)
        entry["flux"] = {"pulls": pull_summary(pull),
                         "pulls_above": pull_summary(pull[bright[good]]),
                         "log_pulls": pull_summary(log_pull),
                         "pulls_per_bin": _per_bin(pflux[good], pull, edges,
                                                   lambda x: {"mean": float(x.mean()),
                                                              "std": float(x.std())}),
                         "bias_median": quantile(ratio[fin], 0.5),
                         "bias_median_above": quantile(ratio[fin & bright], 0.5),
                         "per_bin": _per_bin(pflux[fin], ratio[fin], edges,
                                             lambda x: {"bias_median": quantile(x, 0.5)})}
        arrays["flux_pulls"] = pull
    elif "flux" in det:
        s_det = np.asarray(det["flux"], np.float64)[pd]
        ratio = s_det / pflux - 1.0
        fin = np.isfinite(ratio)
        entry["flux"] = {"pulls": None, "bias_median": quantile(ratio[fin], 0.5),
                         "bias_median_above": quantile(ratio[fin & bright], 0.5),
                         "per_bin": _per_bin(pflux[fin], ratio[fin], edges,
                                             lambda x: {"bias_median": quantile(x, 0.5)})}

    cls = {}
    if all(c in det for c in CLASS_PROBS):
        cls["source_class"] = _confusion(truth["cls"][pt], _argmax_probs(det, CLASS_PROBS, pd),
                                         2, CLASS_LABELS)
    ext_pred = None
    if all(c in det for c in EXT_PROBS):
        ext_pred = _argmax_probs(det, EXT_PROBS, pd)
    elif "ext_class" in det:
        ext_pred = np.asarray(det["ext_class"], np.int64)[pd]
    if ext_pred is not None:
        t_ext = truth["ext_class"][pt]
        cls["extension"] = _confusion(t_ext, ext_pred, 3, EXT_LABELS)
        cls["point_vs_extended_accuracy"] = (float(np.mean((t_ext == 0) == (ext_pred == 0)))
                                             if pt.size else None)
    entry["classification"] = cls or None
    arrays["offsets_deg"] = dist
    arrays["fp_patch"] = det["patch"][counted & ~det_tp]
    arrays["pair_flux"] = pflux
    return entry, arrays


def _prepare_truth(truth, pixel_deg, where="truth"):
    t = {"patch": _column(truth, "patch", where, np.int64)}
    for col in ("x_pix", "y_pix", "flux"):
        t[col] = _column(truth, col, where)
    t["in_patch"] = _column(truth, "in_patch", where, bool)
    n = t["flux"].size
    for col in ("l_deg", "b_deg"):
        t[col] = np.asarray(truth[col], np.float64) if col in truth else np.full(n, np.nan)
    for col in ("cls", "ext_class"):
        t[col] = np.asarray(truth[col], np.int64) if col in truth else np.full(n, -1)
    for col in ("x_pix", "y_pix"):
        if not np.all(np.isfinite(t[col])):
            raise InputError(f"{where}: NaN or infinite values in {col!r}")
    t["pixel_deg"] = float(pixel_deg)
    return t


def _score_all(truth, detections, *, pixel_deg, match_radius_deg, flux_threshold, flux_edges,
               purity_target, source=None):
    radius, thr, edges, target = _check_options(match_radius_deg, flux_threshold, flux_edges,
                                                purity_target)
    pixel_deg = _positive(pixel_deg, "pixel_deg")
    t = _prepare_truth(truth, pixel_deg, f"{source}: truth" if source else "truth")
    methods, arrays = {}, {}
    for name, det in detections.items():
        methods[name], arrays[name] = _score_method(
            t, det, name, radius_pix=radius / pixel_deg, flux_threshold=thr, edges=edges,
            target=target, source=source)
    options = {"match_radius_deg": radius, "match_radius_pix": radius / pixel_deg,
               "pixel_deg": pixel_deg, "match_method": "optimal", "flux_threshold": thr,
               "flux_edges": edges.tolist(), "purity_target": target,
               "offsets": "great-circle distance from l_deg/b_deg (tangent-plane axes for "
                          "the pulls); matching on pixel positions"}
    return options, methods, arrays


def score_tables(truth: dict, detections: dict, *, pixel_deg: float,
                 match_radius_deg: float = 0.3, flux_threshold: float = 4e-10,
                 flux_edges=None, purity_target: float = 0.95) -> dict:
    """Score detection tables against a source table (pure function, flat tables).

    Parameters
    ----------
    truth : dict of arrays (n_src,)
        ``patch``, ``x_pix``, ``y_pix``, ``in_patch``, ``flux`` (S(1-100 GeV),
        ph cm^-2 s^-1); optional ``l_deg``, ``b_deg`` (deg), ``cls``, ``ext_class``.
    detections : dict name -> dict of arrays (n_det,)
        ``patch``, ``x_pix``, ``y_pix``, ``l_deg``, ``b_deg``; a ranking column (``score``
        or ``significance``); optional ``pos_sigma_deg``, ``flux``, ``flux_err``,
        ``p_agn``, ``p_psr``, ``p_ext0..2``, ``ext_class``.
    pixel_deg : float
        Pixel size (deg): the match radius in pixels is ``match_radius_deg / pixel_deg``.

    Returns
    -------
    dict
        ``options`` and ``methods`` (name -> scores), JSON-able (None where undefined).

    Examples
    --------
    >>> truth = {"patch": [0, 0], "x_pix": [10.0, 40.0], "y_pix": [10.0, 40.0],
    ...          "in_patch": [True, True], "flux": [1e-9, 1e-10]}
    >>> det = {"patch": [0, 0], "x_pix": [10.5, 20.0], "y_pix": [10.0, 20.0]}
    >>> r = score_tables(truth, {"a": det}, pixel_deg=0.156)["methods"]["a"]
    >>> r["purity"], r["recall_above"]
    (0.5, 1.0)
    """
    from astroreco.report.html import json_safe

    options, methods, _ = _score_all(truth, detections, pixel_deg=pixel_deg,
                                     match_radius_deg=match_radius_deg,
                                     flux_threshold=flux_threshold, flux_edges=flux_edges,
                                     purity_target=purity_target)
    return json_safe({"options": options, "methods": methods})


# --- patch files ------------------------------------------------------------------------------

def _read(path, names):
    """(truth table, {name: detection table}, pixel_deg, n_patches) of a patch file."""
    from astroreco.detectors.sky.pipeline import PATCH_SCHEMA, _flat, geometry_of
    from astroreco.io.store import EventFile

    with EventFile(path) as ef:
        if ef.detector != "sky":
            raise InputError(f"{path}: events of detector {ef.detector!r}, expected a sky "
                             f"patch file")
        if not ef.has_truth_objects:
            raise InputError(f"{path}: no truth sources (/truth_objects): a patch file from "
                             f"'astroreco sky simulate' is needed to score detections")
        stored = ef.methods
    if names is None:
        names = stored
        if not names:
            raise InputError(f"{path}: no detections stored under /reco (run 'astroreco sky "
                             f"detect-patches' first)")
    else:
        names = [names] if isinstance(names, str) else list(names)
        if not names:
            raise InputError("names: expected at least one reconstruction name")
        for n in names:
            if n not in stored:
                raise InputError(f"{path}: no reconstruction {n!r} (stored: "
                                 f"{', '.join(stored) or 'none'})")
    with EventFile(path, PATCH_SCHEMA) as ef:
        n_patches = ef.n_events
        have = [c.name for c in PATCH_SCHEMA.truth_objects]
        offsets, rows = ef.truth_objects([c for c in _TRUTH_COLUMNS if c in have])
        truth = _flat(offsets, rows, np.zeros(n_patches, np.int64))
        detections = {}
        for n in names:
            if not ef.is_ragged(n):
                raise InputError(f"{path}: /reco/{n} has one row per patch; expected detected "
                                 f"sources (several rows per patch)")
            offsets, rows = ef.reco_objects(n)
            detections[n] = _flat(offsets, rows, np.zeros(n_patches, np.int64))
    return truth, detections, geometry_of(path).pixel_deg, n_patches


def _score_file(path, names, kw):
    truth, detections, pixel_deg, n_patches = _read(path, names)
    options, methods, arrays = _score_all(truth, detections, pixel_deg=pixel_deg,
                                          source=path, **kw)
    for m in methods.values():
        m["counts"]["n_patches"] = int(n_patches)
    result = {"file": str(path), "n_patches": int(n_patches), "options": options,
              "methods": methods}
    return result, truth, detections, arrays


def score(path, names=None, *, match_radius_deg: float = 0.3, flux_threshold: float = 4e-10,
          flux_edges=None, purity_target: float = 0.95) -> dict:
    """Score the detections stored in the patch file ``path`` against its truth.

    Parameters
    ----------
    path : path-like
        Patch file (``astroreco sky simulate``) with detections under ``/reco/<name>``.
    names : str or list of str, optional
        Reconstructions to score (default: every one stored).
    match_radius_deg : float
        Largest distance (deg) of a matched pair (converted to pixels with the file's
        pixel size).
    flux_threshold : float
        S(1-100 GeV) (ph cm^-2 s^-1) above which the recall is quoted.
    flux_edges : sequence of float, optional
        Bins of the true flux (default :data:`FLUX_EDGES`, 10 log bins 1e-11..1e-7).
    purity_target : float
        Purity of the operating point (highest recall with purity >= target).

    Returns
    -------
    dict
        ``file``, ``n_patches``, ``options`` and ``methods`` (name -> scores), JSON-able.
    """
    from astroreco.report.html import json_safe

    kw = dict(match_radius_deg=match_radius_deg, flux_threshold=flux_threshold,
              flux_edges=flux_edges, purity_target=purity_target)
    _check_options(match_radius_deg, flux_threshold, flux_edges, purity_target)
    return json_safe(_score_file(path, names, kw)[0])


def matched_pairs(path, name: str, *, match_radius_deg: float = 0.3) -> tuple[dict, dict]:
    """The detections of ``/reco/<name>`` in the patch file ``path`` matched one-to-one to
    the true sources inside the patches, as :func:`score` matches them.

    Returns ``(truth, detections)``: two dicts of arrays of equal length, one row per
    matched pair -- the true sources' ``patch``, ``x_pix``, ``y_pix``, ``flux``, ... and
    every stored column of the detections.
    """
    _check_options(match_radius_deg, DEFAULTS["flux_threshold"], None,
                   DEFAULTS["purity_target"])
    truth, dets, pixel_deg, _ = _read(path, [name])
    tr = _prepare_truth(truth, pixel_deg, where=f"{path}: truth")
    det = dict(dets[name])
    for col in ("patch", "x_pix", "y_pix"):
        det[col] = _column(det, col, f"{path}: /reco/{name}",
                           np.int64 if col == "patch" else np.float64)
    ti, di = _match(tr, det, match_radius_deg / pixel_deg)
    inside = tr["in_patch"][ti]
    ti, di = ti[inside], di[inside]
    return ({k: v[ti] for k, v in tr.items() if isinstance(v, np.ndarray)},
            {k: np.asarray(v)[di] for k, v in det.items()})
