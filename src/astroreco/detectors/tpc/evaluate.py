"""Score every TPC reconstruction of an event file against the truth, side by side.

For each method stored under ``/reco`` (Non-ML, its tuned and correct-head-tail variants,
Best-Expected, the networks): track efficiency and the mean cosine distance
``1 - cos(angle)`` of the reconstructed tracks, on the same events.  For a method with a
per-event concentration ``kappa`` (HCN): the cosine distance after cutting the events of
lowest ``kappa`` (the seed's Figure 5) and the calibration of ``kappa`` (its Figure 6).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from astroreco.detectors.tpc.pipeline import EVENT_SCHEMA
from astroreco.errors import InputError
from astroreco.io.store import EventFile
from astroreco.stats.directional import cosine_distance, efficiency_curve

#: efficiency cuts of the curve (fractions of events omitted)
CUTS = tuple(np.round(np.linspace(0.0, 0.5, 51), 3))
#: labels of the seed's figure
LABELS = {"nonml": "Non-ML", "nonml_tuned": "Non-ML tuned", "rcn": "RCN", "hcn": "HCN",
          "best_expected": "Best-Expected", "gaussian": "Gaussian NLL",
          "nonml_truth_ht": "Non-ML, correct head-tail",
          "nonml_tuned_truth_ht": "Non-ML tuned, correct head-tail"}


#: table order: the classical analysis and its references first, then the networks
ORDER = ("nonml", "nonml_truth_ht", "nonml_tuned", "nonml_tuned_truth_ht", "best_expected",
         "rcn", "gaussian", "hcn")


def _order(name: str):
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _set_title(config: dict) -> str:
    if config.get("source") == "arrows":
        return "3D arrows"
    def first(entry):
        v = entry.get("values", []) if isinstance(entry, dict) else []
        sep = ":" if isinstance(entry, dict) and entry.get("kind") == "uniform" else ","
        return sep.join(f"{x:g}" for x in v) or "?"
    return f"{first(config.get('energy_kev'))} keV, {first(config.get('sigma_um'))} um"


def score_methods(events) -> tuple[dict, dict]:
    """Per-method scores and the arrays behind them (``angle``, ``kappa``, ``cos_dist`` of
    the reconstructed events)."""
    with EventFile(events, EVENT_SCHEMA) as ef:
        methods = sorted((m for m in ef.methods if not m.startswith(".")), key=_order)
        if not methods:
            raise InputError(f"{events}: no reconstruction stored (run 'astroreco tpc "
                             "reconstruct' first)")
        t = ef.truth(["dir_x", "dir_y", "dir_z"])
        truth = np.stack([t["dir_x"], t["dir_y"], t["dir_z"]], 1).astype(np.float64)
        tables = {m: ef.reco(m, ["dir_x", "dir_y", "dir_z", "kappa", "status"])
                  for m in methods}
    n = len(truth)
    scores, arrays = {}, {}
    for m, r in tables.items():
        d = np.stack([r["dir_x"], r["dir_y"], r["dir_z"]], 1).astype(np.float64)
        ok = (r["status"] == 0) & np.all(np.isfinite(d), axis=1)
        cd = cosine_distance(d[ok], truth[ok]) if ok.any() else np.zeros(0)
        angle = np.arccos(np.clip(1.0 - cd, -1.0, 1.0))
        kappa = np.asarray(r["kappa"], np.float64)[ok]
        has_kappa = bool(kappa.size) and bool(np.all(np.isfinite(kappa) & (kappa > 0)))
        scores[m] = {"label": _label(m), "n_events": n, "n_reconstructed": int(ok.sum()),
                     "efficiency": float(ok.mean()) if n else float("nan"),
                     "cos_dist": float(cd.mean()) if cd.size else float("nan"),
                     "cos_dist_err": float(cd.std(ddof=1) / np.sqrt(cd.size))
                     if cd.size > 1 else float("nan"),
                     "median_angle_deg": float(np.degrees(np.median(angle)))
                     if cd.size else float("nan"),
                     # head-tail recognition: the direction within 90 deg of the truth
                     "head_tail_correct": float(np.mean(angle < 0.5 * np.pi))
                     if cd.size else float("nan"),
                     "has_kappa": has_kappa}
        arrays[m] = {"cos_dist": cd, "angle": angle, "kappa": kappa if has_kappa else None}
    return scores, arrays


def _null_summary(null, observed: float, tolerance: float) -> dict:
    null = null[np.isfinite(null)]
    return {"draws": int(null.size), "median_max_deviation": float(np.median(null)),
            "q90_max_deviation": float(np.quantile(null, 0.9)), "tolerance": float(tolerance),
            "fraction_beyond_tolerance": float(np.mean(null > tolerance)),
            "p_value": float(np.mean(null >= observed))}


def evaluate(events, out_dir, *, n_bins: int = 12, binning: str = "width",
             min_count: int = 200, cuts=CUTS, null_draws: int = 200,
             tolerance: float = 0.2) -> dict:
    """Score every reconstruction of ``events``; write ``evaluation.json`` and the plots.

    Returns the JSON content: per-method scores, and for every method with ``kappa`` its
    efficiency curve, the cosine distance at a 1% and 5% cut, and the calibration rows
    (fitted ``kappa`` against the bin centre; a bin with ``min_count`` events or more
    passes when within 20%).  The calibration bins are about ``n_bins`` bins of equal width
    in ``kappa`` (``binning="width"``, as the seed's Figure 6b;
    :func:`~astroreco.stats.vmf_calibration.kappa_bin_edges`) or ``n_bins`` bins of equal
    counts (``binning="count"``).

    The calibration test's own noise is measured too
    (:func:`~astroreco.stats.vmf_calibration.vmf_calibration_null`): ``null_draws`` sets of
    angles drawn from the predicted distributions give ``calibration_null`` -- the median
    and 90% quantile of the largest deviation a perfectly calibrated model with the same
    ``kappa`` would show, the fraction of draws beyond ``tolerance``, and ``p_value``, the
    fraction at or beyond the observed largest deviation (``null_draws=0``: skipped).
    ``calibration_null_with_flips`` is the same for a model whose ``kappa`` is calibrated
    with the head-tail flips the events show (their rate as a function of ``kappa`` fitted on
    the events themselves, :func:`~astroreco.stats.vmf_calibration.fit_flip_probability`):
    each bin's few flips scatter as a Poisson count, which the plain vMF null leaves out;
    with the events beyond 90 deg and how many the fitted rate expects (``flips_expected``
    of them flips, the rest the vMF's own tail).
    """
    from astroreco.detectors.tpc.plots import plot_calibration, plot_efficiency_curve
    from astroreco.stats.vmf_calibration import (fit_flip_probability, kappa_bin_edges,
                                                 vmf_beyond_90, vmf_calibration,
                                                 vmf_calibration_null)

    if isinstance(null_draws, bool) or int(null_draws) != null_draws or null_draws < 0:
        raise InputError(f"null_draws: expected an integer >= 0, got {null_draws!r}")
    if binning not in ("width", "count"):
        raise InputError(f"binning {binning!r}: expected 'width' or 'count'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with EventFile(events, EVENT_SCHEMA) as ef:
        title = _set_title(ef.config)
    scores, arrays = score_methods(events)
    result = {"events": str(events), "set": title, "methods": scores, "kappa_methods": {},
              "plots": []}
    points = []
    for m, s in scores.items():
        if s["has_kappa"] or m.endswith("_truth_ht") or m == "best_expected":
            continue
        p = {"label": s["label"], "cut": 1.0 - s["efficiency"], "mean_cos_dist": s["cos_dist"]}
        if f"{m}_truth_ht" in scores:
            p["mean_cos_dist_truth_ht"] = scores[f"{m}_truth_ht"]["cos_dist"]
        points.append(p)
    best = scores.get("best_expected", {}).get("cos_dist")
    for m, s in scores.items():
        a = arrays[m]
        if not s["has_kappa"]:
            continue
        curve = efficiency_curve(a["cos_dist"], a["kappa"], cuts)
        at = {f"cos_dist_cut_{int(round(100 * c))}pct":
              float(efficiency_curve(a["cos_dist"], a["kappa"], [c])["mean_cos_dist"][0])
              for c in (0.01, 0.05)}
        edges = kappa_bin_edges(a["kappa"], n_bins) if binning == "width" else None
        # equal-width bins are compared with their midpoints, as the seed's Figure 6b does
        binned = {"n_bins": n_bins, "min_count": min_count, "edges": edges,
                  "centre": "midpoint" if edges is not None else "geometric"}
        rows = vmf_calibration(a["angle"], a["kappa"], **binned)
        checked = [r for r in rows if r["enough"]]
        entry = {**at, "curve": {k: np.asarray(v).tolist() for k, v in curve.items()},
                 "calibration": rows,
                 "calibration_max_deviation": max((abs(r["ratio"] - 1) for r in checked),
                                                  default=float("nan")),
                 "calibration_max_deviation_equivalent": max(
                     (abs(r["ratio_equivalent"] - 1) for r in checked), default=float("nan")),
                 "calibration_bins_checked": len(checked)}
        if null_draws and checked:
            observed = entry["calibration_max_deviation"]
            null = vmf_calibration_null(a["kappa"], n_draws=int(null_draws), **binned)
            entry["calibration_null"] = _null_summary(null, observed, tolerance)
            flip = fit_flip_probability(a["angle"], a["kappa"])(a["kappa"])
            null = vmf_calibration_null(a["kappa"], n_draws=int(null_draws),
                                        flip_probability=flip, **binned)
            entry["calibration_null_with_flips"] = {
                **_null_summary(null, observed, tolerance),
                "beyond_90deg": int(np.sum(a["angle"] > 0.5 * np.pi)),
                "beyond_90deg_expected": float(np.sum(vmf_beyond_90(a["kappa"], flip))),
                "flips_expected": float(flip.sum())}
        if best is not None:
            below = np.flatnonzero(np.asarray(curve["mean_cos_dist"]) <= best)
            entry["cut_to_reach_best_expected"] = float(curve["cut"][below[0]]) \
                if below.size else None
        slug = m.replace("/", "_")
        fig5 = plot_efficiency_curve({**curve, "label": s["label"]}, points,
                                     out / f"efficiency_{slug}.png", title=title,
                                     best_expected=best)
        fig6 = plot_calibration(a["angle"], a["kappa"], rows, out / f"calibration_{slug}.png",
                                title=f"{s['label']}, {title}")
        result["plots"] += [str(fig5), str(fig6)]
        result["kappa_methods"][m] = entry
    tmp = out / ".evaluation.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, default=float))
    tmp.replace(out / "evaluation.json")
    return result


def table(result: dict) -> str:
    """A Markdown table of :func:`evaluate`'s per-method scores."""
    lines = [f"| method ({result['set']}) | efficiency | cosine distance | median angle | "
             "head-tail right |", "|---|---|---|---|---|"]
    for s in result["methods"].values():
        ht = s.get("head_tail_correct")
        lines.append(f"| {s['label']} | {s['efficiency']:.3f} | {s['cos_dist']:.4f} ± "
                     f"{s['cos_dist_err']:.4f} | {s['median_angle_deg']:.1f} deg | "
                     + ("-" if ht is None else f"{ht:.1%}") + " |")
    return "\n".join(lines)
