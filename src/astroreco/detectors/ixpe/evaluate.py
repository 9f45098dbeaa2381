"""Evaluate IXPE reconstructions against the simulation truth, every method side by side.

For each event file and each stored reconstruction method, in bins of true energy:

- polarized files: modulation factor mu from the Stokes parameters and from a fit of the
  modulation curve (divided by the simulated polarization degree), the recovered phase,
  MDP99 unweighted and weighted (W_MOM or the method's own weights) with N_eff;
- unpolarized files: spurious modulation (harmonics 2, 4 and 6 of the angle distribution);
- always: epsilon_10 (fraction within 10 degrees of the true emission angle, modulo pi),
  impact-point RMSE in x, y and combined (radial), and the fraction of events with a
  reconstructed angle.

Per file and method with a ``kappa`` column (the neural reconstruction): the calibration of
the predicted concentration (:func:`astroreco.stats.calibration.kappa_calibration`), over the
whole file and per energy bin (``kappa_calibration`` in metrics.json).  When the moments
analysis and another method were both scored, ``comparison`` holds their ratios per file and
energy (mu, MDP99, impact RMSE).

Writes ``metrics.json``, PNG plots and ``report.html`` into the output directory.  Values
that are not finite (an empty bin, a ratio to zero) are written as ``null``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from astroreco.detectors.ixpe import plots, stokes
from astroreco.detectors.ixpe.modulation_fit import fit_modulation_curve
from astroreco.detectors.ixpe.pipeline import EVENT_SCHEMA
from astroreco.errors import InputError
from astroreco.io.store import EventFile
from astroreco.report.html import json_safe, table_html, write_json, write_report
from astroreco.stats.calibration import kappa_calibration
from astroreco.stats.directional import wrap_half_pi

#: the per-event weight column each method provides for the weighted analysis (other
#: methods: ``weight``; NaN weights, e.g. of empty tracks, count as zero)
WEIGHT_COLUMN = {"moments": "w_mom", "nn": "weight"}
#: kappa calibration: quantile bins and the least number of events per bin
CALIBRATION_BINS = 10
CALIBRATION_MIN_COUNT = 200


def energy_bins(energy: np.ndarray) -> list[tuple[float, float, float]]:
    """(label energy, low, high) bins: the distinct energies of a line source, else 1 keV."""
    values = np.unique(np.round(energy, 4))
    if len(values) <= 12:
        return [(float(v), float(v) - 1e-3, float(v) + 1e-3) for v in values]
    lo = math.floor(float(energy.min()))
    hi = math.ceil(float(energy.max()))
    return [(e + 0.5, float(e), float(e + 1)) for e in range(lo, hi)]


def fit_angles(phi: np.ndarray) -> np.ndarray:
    """Angles for the modulation-curve fit over [-pi, pi): folded modulo pi, then every
    other event (by position) moved by -pi.

    The neural reconstruction returns the emission angle modulo pi, in (-pi/2, pi/2]: it fills
    half of the circle, which ``A + B cos^2(phi - phi0)`` over [-pi, pi) cannot describe.  The
    curve has period pi, so folding and spreading the events over both halves by a rule that
    does not depend on the angle keeps its expected shape; every method is treated alike.
    """
    folded = wrap_half_pi(phi)
    return folded - np.pi * (np.arange(folded.size) % 2)


def _impact_rmse(reco, truth, sel) -> dict:
    """RMSE of the impact point in x, y and combined (``sqrt(mean(dx^2 + dy^2))``, radial),
    over the events of ``sel`` with a finite impact point, with delta-method errors
    ``std(d^2) / (2 RMSE sqrt(n))``."""
    if "x_mm" not in reco or "y_mm" not in reco:
        return {}
    dx = (reco["x_mm"] - truth["x_mm"]).astype(np.float64)
    dy = (reco["y_mm"] - truth["y_mm"]).astype(np.float64)
    ok = sel & np.isfinite(dx) & np.isfinite(dy)
    n = int(ok.sum())
    if n < 10:
        return {}
    out = {"n_impact": n}
    for name, sq in (("x", dx[ok] ** 2), ("y", dy[ok] ** 2), ("xy", dx[ok] ** 2 + dy[ok] ** 2)):
        rmse = float(np.sqrt(sq.mean()))
        out[f"rmse_{name}_mm"] = rmse
        out[f"rmse_{name}_mm_err"] = float(sq.std() / (2 * rmse * math.sqrt(n))) if rmse > 0 \
            else 0.0
    return out


def _calibration(reco, truth, label, method, bins) -> dict | None:
    """The kappa-calibration block of one file and method (None without usable kappa)."""
    if "kappa" not in reco:
        return None
    resid = (reco["phi"] - truth["phi"]).astype(np.float64)
    kappa = reco["kappa"].astype(np.float64)
    ok = np.isfinite(resid) & np.isfinite(kappa)
    if ok.sum() < CALIBRATION_MIN_COUNT:
        return None
    cal = kappa_calibration(resid[ok], kappa[ok], n_bins=CALIBRATION_BINS,
                            min_count=CALIBRATION_MIN_COUNT)
    by_energy = []
    for e_label, lo, hi in bins:
        sel = ok & (truth["energy_kev"] >= lo) & (truth["energy_kev"] < hi)
        if sel.sum() < CALIBRATION_MIN_COUNT:
            continue
        c = kappa_calibration(resid[sel], kappa[sel], n_bins=CALIBRATION_BINS,
                              min_count=CALIBRATION_MIN_COUNT)
        by_energy.append({"energy_kev": e_label, **{k: v for k, v in c.items()
                                                    if k != "bins"}})
    return {"file": label, "method": method, **cal, "by_energy": by_energy}


def ratio_with_error(a, b, ea=None, eb=None):
    """``a / b`` and its error propagated as for independent a and b (None if undefined)."""
    if a is None or b is None or not b:
        return None, None
    r = a / b
    if ea is None or eb is None or not a:
        return r, None
    return r, abs(r) * math.hypot(ea / a, eb / b)


def comparison_rows(rows: list[dict]) -> list[dict]:
    """Ratios of every method to the moments analysis, per file and energy.

    ``mu_ratio`` (error propagated as if independent: conservative, the methods see the same
    events), ``mdp99_ratio`` (the method's weighted MDP99 over the moments' unweighted one,
    the comparison of the issue), ``rmse_{x,y,xy}_ratio``, ``epsilon_10_ratio``.
    """
    ref = {(r["file"], r["energy_kev"]): r for r in rows if r["method"] == "moments"}
    out = []
    for r in rows:
        base = ref.get((r["file"], r["energy_kev"]))
        if r["method"] == "moments" or base is None:
            continue
        c = {"file": r["file"], "method": r["method"], "versus": "moments",
             "energy_kev": r["energy_kev"]}
        for key, name in (("mu", "mu_ratio"), ("epsilon_10", "epsilon_10_ratio"),
                          ("rmse_x_mm", "rmse_x_ratio"), ("rmse_y_mm", "rmse_y_ratio"),
                          ("rmse_xy_mm", "rmse_xy_ratio")):
            if key in r and key in base:
                c[name], c[name + "_err"] = ratio_with_error(r[key], base[key], r.get(key + "_err"),
                                                   base.get(key + "_err"))
        if "mdp99" in base:
            c["mdp99_ratio"] = ratio_with_error(r.get("mdp99_weighted", r.get("mdp99")),
                                      base["mdp99"])[0]
        out.append({k: v for k, v in c.items() if v is not None})
    return out


def _evaluate_bin(phi, phi_true, reco, truth, sel, degree, weight_col, spurious=None):
    ok = sel & np.isfinite(phi)
    n_ok = int(ok.sum())
    row = {"n_events": int(sel.sum()), "n_reconstructed": n_ok,
           "reco_fraction": n_ok / max(int(sel.sum()), 1)}
    if n_ok < 10:
        return row, None
    p = phi[ok]
    eps, eps_err = stokes.epsilon_10(p, phi_true[ok])
    row.update(epsilon_10=eps, epsilon_10_err=eps_err)
    row.update(_impact_rmse(reco, truth, sel))
    fit = None
    if degree > 0:
        mod = stokes.modulation_factor(p)
        row.update(mu=mod.mu / degree, mu_err=mod.mu_err / degree, phase_deg=math.degrees(mod.phi0),
                   phase_err_deg=math.degrees(mod.phi0_err))
        fit = fit_modulation_curve(fit_angles(p))
        row.update(mu_fit=fit.mu / degree, mu_fit_err=fit.mu_err / degree,
                   fit_chi2_ndof=fit.chi2 / max(fit.ndof, 1))
        mu = max(row["mu"], 1e-3)
        row["mdp99"] = stokes.mdp99(min(mu, 1.0), n_ok)
        if weight_col in reco:
            w = np.clip(np.nan_to_num(reco[weight_col][ok].astype(np.float64)), 0, None)
            if w.sum() > 0:
                mod_w = stokes.modulation_factor(p, weights=w)
                mu_w = min(max(mod_w.mu / degree, 1e-3), 1.0)
                row.update(mu_weighted=mod_w.mu / degree, n_eff=mod_w.n_eff,
                           mdp99_weighted=stokes.mdp99(mu_w, weights=w))
    else:
        sp = stokes.spurious_modulation(p)
        for k in (2, 4, 6):
            row[f"amplitude_{k}"] = sp[f"amplitude_{k}"]
            row[f"amplitude_{k}_err"] = sp[f"amplitude_err_{k}"]
            row[f"significance_{k}"] = sp[f"significance_{k}"]
        row["noise_mean_amplitude"] = sp["noise_mean_amplitude"]
        if spurious is not None and "energy_kev" in reco:
            res = spurious.residual(p, reco["energy_kev"][ok])
            row.update(amplitude_2_calibrated=res["amplitude_2"],
                       amplitude_2_calibrated_err=res["amplitude_err_2"],
                       significance_2_calibrated=res["significance_2"])
    return row, fit


def evaluate(events, *, out_dir, methods=None, n_examples: int = 6,
             spurious: dict | None = None) -> dict:
    """Score every stored reconstruction of one or more IXPE event files.

    Parameters
    ----------
    events : path-like or list of path-like
        Event files with truth and at least one reconstruction.
    out_dir : path-like
        Where metrics.json, the PNG plots and report.html go (created if missing).
    methods : list of str, optional
        Methods to score (default: all stored in each file).
    spurious : dict of str -> SpuriousCalibration, optional
        Per method, a spurious-modulation calibration measured on independent unpolarized
        events (:mod:`astroreco.detectors.ixpe.spurious`); unpolarized rows then also report
        the cos 2phi amplitude left after subtracting it (``amplitude_2_calibrated``).

    Returns
    -------
    dict
        The metrics written to metrics.json: ``rows`` (one per file, method and energy bin),
        ``kappa_calibration`` (one block per file and method with a ``kappa`` column: the
        quantile bins and summary of :func:`~astroreco.stats.calibration.kappa_calibration`,
        and ``by_energy`` summaries) and ``comparison`` (:func:`comparison_rows`).
    """
    files = [events] if isinstance(events, (str, Path)) else list(events)
    if not files:
        raise InputError("evaluate: expected at least one event file")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, images, examples, calibrations = [], [], [], []
    for path in files:
        with EventFile(path, EVENT_SCHEMA) as ef:
            cfg = ef.config
            stored = ef.methods
            use = stored if methods is None else [m for m in methods if m in stored]
            if not use:
                raise InputError(f"{path}: no reconstruction to evaluate (stored: "
                                 f"{', '.join(stored) or 'none'}; run 'astroreco ixpe "
                                 "reconstruct' first)")
            source = cfg.get("source", {})
            degree = float(source.get("polarization_degree", 0.0))
            truth = ef.truth()
            recos = {m: ef.reco(m) for m in use}
            if not examples:
                for k in range(min(n_examples, ef.n_events)):
                    offs, hits = ef.hits(k, k + 1)
                    examples.append({
                        "col": hits["col"], "row": hits["row"], "charge": hits["charge"],
                        "truth": {"truth": (truth["x_mm"][k], truth["y_mm"][k],
                                            truth["phi"][k])},
                        "reco": {m: (recos[m]["x_mm"][k], recos[m]["y_mm"][k],
                                     recos[m]["phi"][k]) for m in use},
                        "title": f"{Path(path).name} #{k}: {truth['energy_kev'][k]:.2f} keV"})
        label = Path(path).stem
        fits = {}
        bins = energy_bins(truth["energy_kev"])
        for m in use:
            block = _calibration(recos[m], truth, label, m, bins)
            if block is not None:
                calibrations.append(block)
        for e_label, lo, hi in bins:
            sel = (truth["energy_kev"] >= lo) & (truth["energy_kev"] < hi)
            for m in use:
                r = recos[m]
                row, fit = _evaluate_bin(r["phi"], truth["phi"], r, truth, sel, degree,
                                         WEIGHT_COLUMN.get(m, "weight"),
                                         (spurious or {}).get(m))
                rows.append({"file": label, "method": m, "energy_kev": e_label,
                             "polarization_degree": degree, **row})
                if fit is not None:
                    fits.setdefault(f"{e_label:g} keV", {})[m] = fit
        if fits:
            images.append(plots.modulation_curves(
                fits, out / f"modulation_curves_{label}.png",
                title=f"{label}: P = {degree:g}, "
                      f"angle = {math.degrees(source.get('polarization_angle', 0.0)):.1f} deg"))
    pol_rows = [r for r in rows if r["polarization_degree"] > 0 and "mu" in r]
    if pol_rows:
        images.append(plots.mu_vs_energy(pol_rows, out / "mu_vs_energy.png"))
    unpol_rows = [r for r in rows if r["polarization_degree"] == 0 and "amplitude_2" in r]
    if unpol_rows:
        images.append(plots.spurious_modulation(unpol_rows, out / "spurious_modulation.png"))
    # the impact point does not depend on the polarization: the polarized files when there
    # are any (one curve per method), else all
    impact_rows = [r for r in (pol_rows or rows) if "rmse_x_mm" in r]
    if impact_rows:
        images.append(plots.impact_rmse(impact_rows, out / "impact_rmse.png"))
    if calibrations:
        images.append(plots.kappa_calibration(calibrations, out / "kappa_calibration.png"))
    if examples:
        images.append(plots.example_tracks(examples, out / "example_tracks.png"))
    comparison = comparison_rows(rows)
    metrics = json_safe({"detector": "ixpe", "files": [str(f) for f in files], "rows": rows,
                       "kappa_calibration": calibrations, "comparison": comparison})
    write_json(out / "metrics.json", metrics)
    write_report(out / "report.html", "astroreco: IXPE reconstruction vs truth",
                 [("Figures", _report_body(pol_rows, unpol_rows, rows, comparison,
                                           calibrations), images)])
    return metrics


def _report_body(pol_rows, unpol_rows, rows, comparison, calibrations) -> str:
    cols_pol = ["file", "method", "energy_kev", "n_reconstructed", "mu", "mu_err", "mu_fit",
                "mu_fit_err", "phase_deg", "epsilon_10", "mdp99", "mdp99_weighted", "n_eff",
                "rmse_x_mm", "rmse_y_mm"]
    cols_unpol = ["file", "method", "energy_kev", "n_reconstructed", "amplitude_2",
                  "amplitude_2_err", "amplitude_4", "amplitude_4_err", "amplitude_6",
                  "amplitude_6_err", "epsilon_10", "rmse_x_mm", "rmse_y_mm"]
    cols_cmp = ["file", "method", "versus", "energy_kev", "mu_ratio", "mu_ratio_err",
                "mdp99_ratio", "epsilon_10_ratio", "rmse_x_ratio", "rmse_y_ratio",
                "rmse_xy_ratio"]
    cols_cal = ["file", "method", "n", "ratio", "ratio_err", "max_abs_ratio_dev",
                "max_abs_pull", "chi2", "ndof", "p_value"]
    body = ""
    if pol_rows:
        body += "<h3>Polarized data</h3>" + table_html(pol_rows, cols_pol)
    if unpol_rows:
        body += "<h3>Unpolarized data (spurious modulation)</h3>" + table_html(unpol_rows,
                                                                               cols_unpol)
    if comparison:
        body += ("<h3>Ratios to the moments analysis (mdp99_ratio: weighted MDP99 of the "
                 "method / unweighted MDP99 of moments)</h3>" + table_html(comparison,
                                                                          cols_cmp))
    if calibrations:
        body += ("<h3>Calibration of kappa (measured / predicted mean cos 2(phi_reco - "
                 "phi_true); bins of equal counts in kappa)</h3>"
                 + table_html(calibrations, cols_cal))
    return body
