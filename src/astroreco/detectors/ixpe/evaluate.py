"""Evaluate IXPE reconstructions against the simulation truth, every method side by side.

For each event file and each stored reconstruction method, in bins of true energy:

- polarized files: modulation factor mu from the Stokes parameters and from a fit of the
  modulation curve (divided by the simulated polarization degree), the recovered phase,
  MDP99 unweighted and weighted (W_MOM or the method's own weights) with N_eff;
- unpolarized files: spurious modulation (harmonics 2, 4 and 6 of the angle distribution);
- always: epsilon_10 (fraction within 10 degrees of the true emission angle, modulo pi),
  impact-point RMSE in x and y, and the fraction of events with a reconstructed angle.

Writes ``metrics.json``, PNG plots and ``report.html`` into the output directory.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from astroreco.detectors.ixpe import plots, stokes
from astroreco.detectors.ixpe.pipeline import EVENT_SCHEMA
from astroreco.errors import InputError
from astroreco.io.store import EventFile
from astroreco.report.html import table_html, write_json, write_report

#: the per-event weight column each method provides for the weighted analysis
WEIGHT_COLUMN = {"moments": "w_mom", "nn": "weight"}


def energy_bins(energy: np.ndarray) -> list[tuple[float, float, float]]:
    """(label energy, low, high) bins: the distinct energies of a line source, else 1 keV."""
    values = np.unique(np.round(energy, 4))
    if len(values) <= 12:
        return [(float(v), float(v) - 1e-3, float(v) + 1e-3) for v in values]
    lo = math.floor(float(energy.min()))
    hi = math.ceil(float(energy.max()))
    return [(e + 0.5, float(e), float(e + 1)) for e in range(lo, hi)]


def _evaluate_bin(phi, phi_true, reco, truth, sel, degree, weight_col):
    ok = sel & np.isfinite(phi)
    n_ok = int(ok.sum())
    row = {"n_events": int(sel.sum()), "n_reconstructed": n_ok,
           "reco_fraction": n_ok / max(int(sel.sum()), 1)}
    if n_ok < 10:
        return row, None
    p = phi[ok]
    eps, eps_err = stokes.epsilon_10(p, phi_true[ok])
    row.update(epsilon_10=eps, epsilon_10_err=eps_err)
    for axis in ("x", "y"):
        d = reco[f"{axis}_mm"][ok] - truth[f"{axis}_mm"][ok]
        row[f"rmse_{axis}_mm"] = float(np.sqrt(np.mean(d.astype(np.float64) ** 2)))
    fit = None
    if degree > 0:
        mod = stokes.modulation_factor(p)
        row.update(mu=mod.mu / degree, mu_err=mod.mu_err / degree, phase_deg=math.degrees(mod.phi0),
                   phase_err_deg=math.degrees(mod.phi0_err))
        fit = stokes.fit_modulation_curve(p)
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
    return row, fit


def evaluate(events, *, out_dir, methods=None, n_examples: int = 6) -> dict:
    """Score every stored reconstruction of one or more IXPE event files.

    Parameters
    ----------
    events : path-like or list of path-like
        Event files with truth and at least one reconstruction.
    out_dir : path-like
        Where metrics.json, the PNG plots and report.html go (created if missing).
    methods : list of str, optional
        Methods to score (default: all stored in each file).

    Returns
    -------
    dict
        The metrics written to metrics.json.
    """
    files = [events] if isinstance(events, (str, Path)) else list(events)
    if not files:
        raise InputError("evaluate: expected at least one event file")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, images, examples = [], [], []
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
        for e_label, lo, hi in energy_bins(truth["energy_kev"]):
            sel = (truth["energy_kev"] >= lo) & (truth["energy_kev"] < hi)
            for m in use:
                r = recos[m]
                row, fit = _evaluate_bin(r["phi"], truth["phi"], r, truth, sel, degree,
                                         WEIGHT_COLUMN.get(m, "weight"))
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
    if examples:
        images.append(plots.example_tracks(examples, out / "example_tracks.png"))
    metrics = {"detector": "ixpe", "files": [str(f) for f in files], "rows": rows}
    write_json(out / "metrics.json", metrics)
    cols_pol = ["file", "method", "energy_kev", "n_reconstructed", "mu", "mu_err", "mu_fit",
                "mu_fit_err", "phase_deg", "epsilon_10", "mdp99", "mdp99_weighted", "n_eff",
                "rmse_x_mm", "rmse_y_mm"]
    cols_unpol = ["file", "method", "energy_kev", "n_reconstructed", "amplitude_2",
                  "amplitude_2_err", "amplitude_6", "amplitude_6_err", "epsilon_10"]
    body = ""
    if pol_rows:
        body += "<h3>Polarized data</h3>" + table_html(pol_rows, cols_pol)
    if unpol_rows:
        body += "<h3>Unpolarized data (spurious modulation)</h3>" + table_html(unpol_rows,
                                                                               cols_unpol)
    write_report(out / "report.html", "astroreco: IXPE reconstruction vs truth",
                 [("Figures", body, images)])
    return metrics
