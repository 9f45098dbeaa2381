"""Score every ECAL reconstruction of an event file against the truth, side by side.

Per method and quantity (theta in degrees, x0 and y0 in mm): residuals in bins of the true
energy with Gaussian core fits (resolution and mean = linearity,
:func:`~astroreco.stats.resolution.binned_resolution`), the fit of
``sigma(E) = sqrt(a^2/E + b^2)`` with its errors, the resolution at 10 and 300 GeV from the
fit, and for methods with uncertainties the pulls.  Writes ``evaluation.json`` and the plots
(resolution vs energy, linearity, residuals in two energy bins as in the seed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from astroreco.detectors.ecal.pipeline import EVENT_SCHEMA, FLAG_FAILED
from astroreco.errors import InputError
from astroreco.io.store import EventFile

#: energy bins (GeV) of the seed's 2.5-4000 GeV range
ENERGY_EDGES = (2.5, 5.0, 8.0, 12.5, 20.0, 35.0, 60.0, 100.0, 175.0, 300.0, 500.0, 900.0,
                1600.0, 4000.0)
#: quantities scored: (reco/truth column, label, unit)
QUANTITIES = (("theta_deg", "theta", "deg"), ("x0_mm", "x0", "mm"), ("y0_mm", "y0", "mm"))
LABELS = {"cog": "centre of gravity", "cell_ratio": "neighbour-cell ratio", "nn": "ResNet"}
REFERENCE_GEV = (10.0, 300.0)


def score(events, *, edges=ENERGY_EDGES) -> dict:
    """Per method and quantity: binned resolution rows, the ``(a, b)`` fit and the
    resolution at :data:`REFERENCE_GEV` (from the fit), the worst linearity above 10 GeV
    and, with uncertainties, the pull mean and width."""
    from astroreco.stats.resolution import binned_resolution, fit_stochastic_constant

    with EventFile(events, EVENT_SCHEMA) as ef:
        methods = ef.methods
        if not methods:
            raise InputError(f"{events}: no reconstruction stored (run 'astroreco ecal "
                             "reconstruct' first)")
        truth = ef.truth(["energy_gev", "theta_deg", "x0_mm", "y0_mm"])
        recos = {m: ef.reco(m) for m in methods}
        labels = {m: _label(m, ef.reco_attrs(m)) for m in methods}
    energy = np.asarray(truth["energy_gev"], np.float64)
    result = {}
    for m, reco in recos.items():
        ok = (np.asarray(reco.get("flags", np.zeros(len(energy))), int) & FLAG_FAILED) == 0
        entry = {"label": labels[m], "n_events": int(len(energy)),
                 "failed": int((~ok).sum()), "quantities": {}}
        for col, label, unit in QUANTITIES:
            pred = np.asarray(reco.get(col, np.full(len(energy), np.nan)), np.float64)
            sel = ok & np.isfinite(pred)
            if sel.sum() < 20:
                continue
            r = pred - np.asarray(truth[col], np.float64)
            rows = binned_resolution(energy[sel], r[sel], edges)
            q = {"unit": unit, "bins": rows}
            if len(rows) >= 2:
                fit = fit_stochastic_constant([x["e_eff"] for x in rows],
                                              [x["sigma"] for x in rows],
                                              [x["sigma_err"] for x in rows])
                q["fit"] = fit
                for e_ref in REFERENCE_GEV:
                    q[f"sigma_at_{e_ref:g}gev"] = float(np.sqrt(fit["a"] ** 2 / e_ref
                                                                 + fit["b"] ** 2))
            high = [abs(x["mean"]) for x in rows if x["e_lo"] >= 10.0]
            q["max_abs_mean_above_10gev"] = max(high) if high else None
            sig_col = f"sigma_{col}"
            if sig_col in reco and np.isfinite(reco[sig_col][sel]).any():
                s = np.asarray(reco[sig_col], np.float64)
                good = sel & np.isfinite(s) & (s > 0)
                pull = r[good] / s[good]
                core = pull[np.abs(pull) < 5]
                q["pull"] = {"mean": float(core.mean()), "std": float(core.std()),
                             "fraction_beyond_5": float(1 - core.size / max(pull.size, 1))}
            entry["quantities"][label] = q
        result[m] = entry
    return result


def _label(name: str, attrs: dict) -> str:
    """The method's name for tables and plots: from the stored configuration, marked when
    the images were intercalibrated first."""
    try:
        config = json.loads(attrs.get("config") or "{}")
    except ValueError:
        config = {}
    method = config.get("method")
    if name in LABELS:
        base = LABELS[name]
    else:  # a second run of a method under its own name: say both
        base = f"{LABELS[method]} ({name})" if method in LABELS else name
    return base + (", cells intercalibrated" if config.get("cell_calibration") else "")


def evaluate(events, out_dir, *, edges=ENERGY_EDGES) -> dict:
    """Score every reconstruction of ``events``; write ``evaluation.json`` and the plots."""
    from astroreco.detectors.ecal.plots import plot_linearity, plot_resolution

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with EventFile(events, EVENT_SCHEMA) as ef:
        cfg = ef.config
    scores = score(events, edges=edges)
    title = (f"{cfg.get('particle', '?')}, {cfg.get('energy_gev', '?')} GeV"
             + (", detector variant" if cfg.get("variant") else ""))
    result = {"events": str(events), "set": title, "methods": scores, "plots": []}
    for label, _, unit in [(q[1], q[0], q[2]) for q in QUANTITIES]:
        curves = {m: s["quantities"][label] for m, s in scores.items()
                  if label in s["quantities"]}
        if not curves:
            continue
        labels = {m: scores[m]["label"] for m in curves}
        result["plots"].append(str(plot_resolution(curves, labels, label, unit,
                                                   out / f"resolution_{label}.png", title)))
        result["plots"].append(str(plot_linearity(curves, labels, label, unit,
                                                  out / f"linearity_{label}.png", title)))
    tmp = out / ".evaluation.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, default=float))
    tmp.replace(out / "evaluation.json")
    return result


def table(result: dict) -> str:
    """Markdown table: per method the fitted ``(a, b)`` and the resolution at 10 / 300 GeV."""
    lines = [f"| method ({result['set']}) | quantity | a (stochastic) | b (constant) | "
             "sigma at 10 GeV | sigma at 300 GeV | max mean above 10 GeV |",
             "|---|---|---|---|---|---|---|"]
    for m, s in result["methods"].items():
        for label, q in s["quantities"].items():
            f = q.get("fit")
            lin = q.get("max_abs_mean_above_10gev")
            if f is None:  # one energy bin (fixed energy): its resolution, no fit
                for b in q["bins"]:
                    lines.append(f"| {s['label']} | {label} ({q['unit']}) | - | - | "
                                 f"{b['sigma']:.4f} at {b['e_mean']:.4g} GeV | | "
                                 f"{b['mean']:+.4f} |")
                continue
            lines.append(f"| {s['label']} | {label} ({q['unit']}) | {f['a']:.3f} ± "
                         f"{f['a_err']:.3f} | {f['b']:.4f} ± {f['b_err']:.4f} | "
                         f"{q['sigma_at_10gev']:.3f} | {q['sigma_at_300gev']:.4f} | "
                         f"{'-' if lin is None else f'{lin:.4f}'} |")
    return "\n".join(lines)
