"""Evaluation report of the sky source detections: the scores of every method side by side
(:mod:`~astroreco.detectors.sky.scoring`) written as ``evaluation.json``, plots and
``report.html``, and as a Markdown table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astroreco.detectors.sky.scoring import (DEFAULTS, FLUX_EDGES, WITHIN_DEG, _check_options,
                                             _score_file, matched_pairs, score, score_tables,
                                             sky_offsets)
from astroreco.errors import InputError

# the scoring functions stay reachable from here, where they lived first
__all__ = ["FLUX_EDGES", "DEFAULTS", "sky_offsets", "score_tables", "score", "matched_pairs",
           "evaluate", "table"]


def _patches_to_show(truth, arrays, flux_threshold, n_patches):
    """The patch with the most true sources above the threshold, and the one with the most
    false positives summed over the methods (when different and there are any)."""
    if not n_patches:
        return []
    inside = truth["in_patch"]
    bright = np.bincount(truth["patch"][inside & (truth["flux"] >= flux_threshold)],
                         minlength=n_patches)
    fp = np.zeros(n_patches)
    for a in arrays.values():
        fp += np.bincount(a["fp_patch"], minlength=n_patches)
    first, second = int(np.argmax(bright)), int(np.argmax(fp))
    return [first] if second == first or fp[second] == 0 else [first, second]


def evaluate(path, out_dir, names=None, **kw) -> dict:
    """Score the detections of ``path`` and write ``out_dir/evaluation.json`` (atomically),
    the plots and ``out_dir/report.html``.

    ``kw``: the options of :func:`score`.  Returns the result of :func:`score` with
    ``plots`` (paths), ``evaluation`` and ``report`` (paths) added.
    """
    from astroreco.detectors.sky import plots
    from astroreco.detectors.sky.pipeline import read_patches
    from astroreco.report.html import json_safe, table_html, write_json, write_report

    unknown = set(kw) - {"match_radius_deg", "flux_threshold", "flux_edges", "purity_target"}
    if unknown:
        raise InputError(f"evaluate: unknown option {sorted(unknown)[0]!r}")
    opts = {"match_radius_deg": DEFAULTS["match_radius_deg"],
            "flux_threshold": DEFAULTS["flux_threshold"], "flux_edges": None,
            "purity_target": DEFAULTS["purity_target"], **kw}
    _check_options(opts["match_radius_deg"], opts["flux_threshold"], opts["flux_edges"],
                   opts["purity_target"])
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    result, truth, detections, arrays = _score_file(path, names, opts)
    out.mkdir(parents=True, exist_ok=True)
    methods = result["methods"]
    o = result["options"]
    title = f"{Path(path).name}: {result['n_patches']} patches"
    images = []
    for k in _patches_to_show(truth, arrays, o["flux_threshold"], result["n_patches"]):
        data = read_patches(path, k, k + 1)
        sel_t = truth["patch"] == k
        images.append(plots.plot_sky_patch(
            data.counts[0], {c: np.asarray(v)[sel_t] for c, v in truth.items()},
            {n: {c: np.asarray(v)[np.asarray(d["patch"]) == k] for c, v in d.items()}
             for n, d in detections.items()},
            out / f"patch_{k}.png",
            f"patch {k} (l, b = {data.centres[0][0]:.1f}, {data.centres[0][1]:.1f} deg)",
            match_radius_pix=o["match_radius_pix"], flux_threshold=o["flux_threshold"]))
    images.append(plots.plot_recall_vs_flux(
        {n: m["recall_vs_flux"] for n, m in methods.items()}, out / "recall_vs_flux.png",
        title, flux_threshold=o["flux_threshold"]))
    pr = {n: m for n, m in methods.items() if m["pr_curve"] is not None}
    if pr:
        images.append(plots.plot_precision_recall(
            {n: (m["pr_curve"], m["operating_point"]) for n, m in pr.items()},
            out / "precision_recall.png", title, purity_target=o["purity_target"],
            flux_threshold=o["flux_threshold"]))
    images.append(plots.plot_localisation_vs_flux(
        {n: m["localisation"] for n, m in methods.items()}, out / "localisation_vs_flux.png",
        title, match_radius_deg=o["match_radius_deg"]))
    pos = {n: a["position_pulls"] for n, a in arrays.items()
           if a["position_pulls"] is not None}
    if pos:
        images.append(plots.plot_pulls(pos, out / "position_pulls.png", title,
                                       "position pull per axis (offset / pos_sigma_deg)"))
    flux_p = {n: a["flux_pulls"] for n, a in arrays.items() if a["flux_pulls"] is not None}
    if flux_p:
        images.append(plots.plot_pulls(flux_p, out / "flux_pulls.png", title,
                                       "flux pull (S_det - S_true) / flux_err"))
    for key, fname in (("source_class", "confusion_class.png"),
                       ("extension", "confusion_extension.png")):
        mats = {n: m["classification"][key] for n, m in methods.items()
                if m["classification"] and key in m["classification"]}
        if mats:
            images.append(plots.plot_confusion(mats, out / fname, f"{title}: {key}"))
    result["plots"] = [str(p) for p in images]
    result["evaluation"] = str(out / "evaluation.json")
    result["report"] = str(out / "report.html")
    result = json_safe(result)
    write_json(out / "evaluation.json", result)
    body = (f"<p>{_html_escape(title)}; match radius {o['match_radius_deg']:g} deg "
            f"({o['match_radius_pix']:.2f} px), recall quoted for S(1-100 GeV) &ge; "
            f"{o['flux_threshold']:.2g} ph cm<sup>-2</sup> s<sup>-1</sup>; operating point: "
            f"highest recall at purity &ge; {o['purity_target']:g}. Offsets: "
            f"{_html_escape(o['offsets'])}.</p>"
            + table_html(_rows(result)) + f"<pre>{_html_escape(table(result))}</pre>")
    write_report(out / "report.html", "astroreco: sky source detection vs truth",
                 [("Summary", body, images)])
    return result


def _html_escape(s: str) -> str:
    import html

    return html.escape(str(s))


def _rows(result) -> list[dict]:
    rows = []
    for n, m in result["methods"].items():
        op, loc = m["operating_point"], m["localisation"]
        row = {"method": n, "detections": m["counts"]["n_detections"],
               "TP": m["counts"]["tp"], "FP": m["counts"]["fp"], "purity": m["purity"],
               "recall above": m["recall_above"], "F1": m["f1"],
               "best recall": op["recall"], "at threshold": op["threshold"],
               "loc68 (deg)": loc["r68_deg"], "loc95 (deg)": loc["r95_deg"],
               f"within {WITHIN_DEG} deg": loc["fraction_within_above"]}
        rows.append({k: ("-" if v is None else v) for k, v in row.items()})
    return rows


def _fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def table(result: dict) -> str:
    """Markdown table, one row per method: detections, purity, recall above the flux
    threshold, F1, best recall at purity >= target (and its threshold), loc68/loc95 (deg),
    fraction within 0.15 deg (S >= threshold), and the pull widths where present."""
    o = result["options"]
    lines = [f"| method | detections | purity | recall (S >= {o['flux_threshold']:.2g}) | F1 | "
             f"best recall at purity >= {o['purity_target']:g} (threshold) | loc68 (deg) | "
             f"loc95 (deg) | within {WITHIN_DEG} deg | position pull std | flux pull std |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, m in result["methods"].items():
        op, loc = m["operating_point"], m["localisation"]
        best = "-" if op["recall"] is None else \
            f"{op['recall']:.3f} ({op['threshold']:.3g} {m['ranking']})"
        pos = m["position_pulls"]
        fl = (m["flux"] or {}).get("pulls") or {}
        lines.append(f"| {n} | {m['counts']['n_detections']} | {_fmt(m['purity'])} | "
                     f"{_fmt(m['recall_above'])} | {_fmt(m['f1'])} | {best} | "
                     f"{_fmt(loc['r68_deg'])} | {_fmt(loc['r95_deg'])} | "
                     f"{_fmt(loc['fraction_within_above'])} | "
                     f"{_fmt(pos['std'] if pos else None, '.2f')} | "
                     f"{_fmt(fl.get('std'), '.2f')} |")
    return "\n".join(lines)
