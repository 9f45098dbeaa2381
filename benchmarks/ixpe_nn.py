"""IXPE neural benchmark: the network against the moments analysis on the same events, and speed.

    python benchmarks/ixpe_nn.py [--model DIR] [--out benchmarks/results] [--data DIR]
                                 [--n-per-energy 50000] [--n-unpolarized 400000]
                                 [--threads 2] [--compare DIR ...] [--quick]

Simulates, with fixed seeds (9001 and up; the training sets used seeds 1 and 101):

1. 100% polarized photons at 30 deg, one file per energy 2, 3, 4, 5, 6, 8 keV;
2. the seed paper's pi/4 set: 100% polarized at 45 deg, 4 keV, 35,838 events;
3. unpolarized photons at 2, 4 and 6 keV, and an independent unpolarized calibration set per
   energy for the spurious-modulation correction (400,000 photons each: the spurious bound is
   1%, and at 50,000 the noise alone would exceed it 29% of the time);

reconstructs every file with the moments analysis and the network (and each ``--compare``
model, stored as ``nn_<name>``), scores them with :func:`astroreco.detectors.ixpe.evaluate`
(whose report and plots land in ``OUT/ixpe_nn_eval*``), and measures per energy: mu of both
methods and their ratio, epsilon_10, MDP99 (moments unweighted, network weighted by
I1/I0(kappa) with N_eff, and unweighted), spurious modulation (harmonics 2, 4, 6), impact-point
RMSE and the calibration of kappa.  Speed: network inference in tracks/s on ``--threads``
threads on tracks already in memory (no file I/O), at the model's test-time averaging and at
tta = 1, and the moments analysis for reference.  The targets of the issue are checked and
reported pass/fail.  Writes ``OUT/ixpe_nn.json`` and prints a markdown section for the model
card (:func:`card_section`).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, write_result  # noqa: E402

from astroreco.detectors.ixpe import neural  # noqa: E402
from astroreco.detectors.ixpe import train as ixpe_train  # noqa: E402
from astroreco.detectors.ixpe.evaluate import (CALIBRATION_BINS,  # noqa: E402
                                               CALIBRATION_MIN_COUNT, evaluate,
                                               ratio_with_error)
from astroreco.detectors.ixpe.moments import moments_analysis  # noqa: E402
from astroreco.detectors.ixpe.pipeline import (EVENT_SCHEMA, read_tracks,  # noqa: E402
                                               reconstruct, simulate)
from astroreco.io.modeldir import read_model_config  # noqa: E402
from astroreco.io.store import EventFile, write_reconstruction  # noqa: E402
from astroreco.report.html import json_safe  # noqa: E402

ENERGIES = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
UNPOLARIZED_ENERGIES = (2.0, 4.0, 6.0)
POLARIZATION_ANGLE_DEG = 30.0
PI4 = {"energy_kev": 4.0, "polarization_angle_deg": 45.0, "n_events": 35_838}
#: seeds of the benchmark sets; the training sets used 1 and 101 (never reuse those)
SEEDS = {**{f"pol_{e:g}kev": 9001 + i for i, e in enumerate(ENERGIES)},
         "pi4_4kev": 9101,
         **{f"unpol_{e:g}kev": 9201 + i for i, e in enumerate(UNPOLARIZED_ENERGIES)},
         **{f"cal_{e:g}kev": 9401 + i for i, e in enumerate(UNPOLARIZED_ENERGIES)}}
TRAINING_SEEDS = (1, 101)
#: the targets of the issue
TARGETS = {"mu_ratio_min": 1.15, "mu_ratio_energies": (3.0, 4.0, 5.0, 6.0),
           "mdp99_ratio_max_4kev": 0.85, "spurious_max": 0.01, "spurious_max_sigma": 3.0,
           "spurious_harmonic": 2, "impact_rmse_ratio_max": 0.8,
           "inference_min_tracks_per_s": 2000.0}


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------

def datasets(n_per_energy: int, n_pi4: int, n_unpolarized: int) -> list[dict]:
    """The simulated sets: name, file stem, simulate() keywords."""
    out = [{"name": f"pol_{e:g}kev", "kind": "polarized", "energy_kev": e,
            "kwargs": dict(n_events=n_per_energy, energy=f"{e:g}", polarization_degree=1.0,
                           polarization_angle_deg=POLARIZATION_ANGLE_DEG)} for e in ENERGIES]
    out.append({"name": "pi4_4kev", "kind": "pi4", "energy_kev": PI4["energy_kev"],
                "kwargs": dict(n_events=n_pi4, energy=f"{PI4['energy_kev']:g}",
                               polarization_degree=1.0,
                               polarization_angle_deg=PI4["polarization_angle_deg"])})
    out += [{"name": f"unpol_{e:g}kev", "kind": "unpolarized", "energy_kev": e,
             "kwargs": dict(n_events=n_unpolarized, energy=f"{e:g}", polarization_degree=0.0)}
            for e in UNPOLARIZED_ENERGIES]
    # independent unpolarized calibration sets for the spurious-modulation correction
    out += [{"name": f"cal_{e:g}kev", "kind": "calibration", "energy_kev": e,
             "kwargs": dict(n_events=n_unpolarized, energy=f"{e:g}", polarization_degree=0.0)}
            for e in UNPOLARIZED_ENERGIES]
    for d in out:
        d["kwargs"]["seed"] = SEEDS[d["name"]]
    return out


def _matches(path: Path, kwargs: dict) -> bool:
    """Whether an existing event file was simulated with these settings (reuse it)."""
    if not path.exists():
        return False
    try:
        with EventFile(path, EVENT_SCHEMA) as ef:
            cfg = ef.config
    except Exception:  # noqa: BLE001 - anything unreadable is simulated again
        return False
    src = cfg.get("source", {})
    return (cfg.get("seed") == kwargs["seed"] and cfg.get("n_events") == kwargs["n_events"]
            and math.isclose(src.get("polarization_degree", -1), kwargs["polarization_degree"])
            and math.isclose(math.degrees(src.get("polarization_angle", 0.0)),
                             kwargs.get("polarization_angle_deg", 0.0), abs_tol=1e-9)
            and src.get("spectrum", {}).get("label") == f"{kwargs['energy']} keV")


def method_label(model_dir, taken) -> str:
    """``nn_<name>`` for a --compare model: its directory name (the run name when the
    directory is called ``model``), made an identifier and unique."""
    p = Path(model_dir).resolve()
    name = p.parent.name if p.name == "model" else p.name
    label = "nn_" + (re.sub(r"\W", "_", name).strip("_") or "cmp")
    base, i = label, 2
    while label in taken:
        label, i = f"{base}_{i}", i + 1
    return label


def reconstruct_compare(path, model_dir, label):
    """Reconstruct with another model and store it as ``/reco/<label>``."""
    rec = neural.NeuralReconstructor(model_dir)
    parts = []
    with EventFile(path, EVENT_SCHEMA) as ef:
        for start, stop in ef.iter_chunks(100_000):
            offsets, hits = ef.hits(start, stop)
            parts.append(rec.reconstruct(offsets, hits["col"], hits["row"], hits["charge"]))
    table = {name: np.concatenate([p[name] for p in parts]) for name, *_ in rec.fields}
    write_reconstruction(path, label, table, fields=neural.OUTPUT_FIELDS,
                         config={"method": label, "config": rec.config_dict()})


# --------------------------------------------------------------------------------------------
# speed
# --------------------------------------------------------------------------------------------

def _slice(offsets, hits, n):
    n = min(n, len(offsets) - 1)
    o = offsets[:n + 1]
    return o, {k: v[:o[-1]] for k, v in hits.items()}


def speed(model_dir, path, n_tracks: int, threads: int, repeats: int = 2) -> dict:
    """Tracks per second of the network (model's tta and tta = 1) and of the moments analysis
    on the first ``n_tracks`` of ``path``, already in memory; best of ``repeats``."""
    import numba
    import torch

    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    offsets, hits = _slice(*read_tracks(path), n_tracks)
    n = len(offsets) - 1
    args = (offsets, hits["col"], hits["row"], hits["charge"])
    warm = _slice(offsets, hits, 256)
    out = {"n_tracks": n, "threads": threads, "repeats": repeats,
           "load_average_1min": os.getloadavg()[0]}
    default_tta = neural.NeuralReconstructor(model_dir).config.tta
    out["default_tta"] = default_tta
    for tta in dict.fromkeys((default_tta, 1)):
        rec = neural.NeuralReconstructor(model_dir, tta=tta)
        rec.reconstruct(warm[0], warm[1]["col"], warm[1]["row"], warm[1]["charge"])
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            rec.reconstruct(*args)
            best = min(best, time.perf_counter() - t0)
        out[f"nn_tta{tta}_tracks_per_s"] = n / best
    moments_analysis(warm[0], warm[1]["col"], warm[1]["row"], warm[1]["charge"])
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        moments_analysis(*args)
        best = min(best, time.perf_counter() - t0)
    out["moments_tracks_per_s"] = n / best
    out["nn_tracks_per_s"] = out[f"nn_tta{default_tta}_tracks_per_s"]
    return out


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------

def _cal_summary(block):
    if block is None:
        return None
    keys = ("n", "ratio", "ratio_err", "max_abs_ratio_dev", "max_abs_pull", "chi2", "ndof",
            "p_value")
    return {k: block.get(k) for k in keys} | {"n_bins": len(block.get("bins", []))}


def score(label, rows, calibrations, pi4_rows) -> dict:
    """Per-energy, spurious, pi/4 and target results of network ``label`` vs moments."""
    idx = {(r["file"], r["method"]): r for r in rows}
    cal = {(b["file"], b["method"]): b for b in calibrations}
    per_energy = []
    for e in ENERGIES:
        f = f"pol_{e:g}kev"
        m, n = idx.get((f, "moments")), idx.get((f, label))
        if m is None or n is None or "mu" not in m or "mu" not in n:
            continue
        row = {"energy_kev": e, "n_moments": m["n_reconstructed"], "n_nn": n["n_reconstructed"]}
        for who, r in (("moments", m), ("nn", n)):
            for key in ("mu", "mu_err", "mu_fit", "mu_fit_err", "epsilon_10", "epsilon_10_err",
                        "mdp99", "mdp99_weighted", "n_eff", "rmse_x_mm", "rmse_x_mm_err",
                        "rmse_y_mm", "rmse_y_mm_err", "rmse_xy_mm", "rmse_xy_mm_err"):
                row[f"{key}_{who}"] = r.get(key)
        row["mu_ratio"], row["mu_ratio_err"] = ratio_with_error(n["mu"], m["mu"], n["mu_err"],
                                                      m["mu_err"])
        row["mdp99_ratio"] = ratio_with_error(n.get("mdp99_weighted"), m.get("mdp99"))[0]
        for ax in ("x", "y", "xy"):
            k = f"rmse_{ax}_mm"
            row[f"rmse_{ax}_ratio"], row[f"rmse_{ax}_ratio_err"] = ratio_with_error(
                n.get(k), m.get(k), n.get(k + "_err"), m.get(k + "_err"))
        row["kappa_calibration"] = _cal_summary(cal.get((f, label)))
        per_energy.append(row)
    spurious = []
    for e in UNPOLARIZED_ENERGIES:
        f = f"unpol_{e:g}kev"
        for who, method in (("moments", "moments"), ("nn", label)):
            r = idx.get((f, method))
            if r is None or "amplitude_2" not in r:
                continue
            spurious.append({"energy_kev": e, "method": who, "n": r["n_reconstructed"],
                             **{f"{k}_{h}": r.get(f"{k}_{h}") for h in (2, 4, 6)
                                for k in ("amplitude", "significance")},
                             **{f"amplitude_{h}_err": r.get(f"amplitude_{h}_err")
                                for h in (2, 4, 6)},
                             "noise_mean_amplitude": r.get("noise_mean_amplitude")})
    pi4 = []
    for who, method in (("moments", "moments"), ("nn", label)):
        r = next((x for x in pi4_rows if x["method"] == method), None)
        if r is not None and "mu" in r:
            pi4.append({"method": who, "n": r["n_reconstructed"], "mu": r["mu"],
                        "mu_err": r["mu_err"], "phase_deg": r["phase_deg"],
                        "phase_err_deg": r["phase_err_deg"],
                        "phase_offset_deg": r["phase_deg"] - PI4["polarization_angle_deg"],
                        "epsilon_10": r["epsilon_10"], "epsilon_10_err": r["epsilon_10_err"]})
    return {"per_energy": per_energy, "spurious": spurious, "pi4": pi4,
            "kappa_calibration": [{"file": b["file"], **_cal_summary(b)}
                                  for b in calibrations if b["method"] == label]}


def add_calibrated_spurious(res: dict, sets: list, label: str) -> None:
    """Spurious cos 2phi left after the per-line calibration (independent unpolarized set).

    Adds ``amplitude_2_calibrated`` (+ error, significance) to every ``res["spurious"]`` row.
    """
    from astroreco.detectors.ixpe.spurious import SpuriousCalibration

    by_name = {s["name"]: s["path"] for s in sets}
    for row in res["spurious"]:
        method = "moments" if row["method"] == "moments" else label
        e = row["energy_kev"]
        phis = []
        for name in (f"cal_{e:g}kev", f"unpol_{e:g}kev"):
            with EventFile(by_name[name], EVENT_SCHEMA) as ef:
                phi = ef.reco(method, ["phi"])["phi"].astype(np.float64)
            phis.append(phi[np.isfinite(phi)])
        cal = SpuriousCalibration.measure(phis[0], np.full(phis[0].size, e), [0.0, 100.0],
                                          method=method)
        r = cal.residual(phis[1], np.full(phis[1].size, e))
        row["amplitude_2_calibrated"] = r["amplitude_2"]
        row["amplitude_2_calibrated_err"] = r["amplitude_err_2"]
        row["significance_2_calibrated"] = r["significance_2"]


def targets(res: dict, speed_res: dict | None) -> dict:
    """The issue's targets, each with its values and pass/fail."""
    t = TARGETS
    pe = {r["energy_kev"]: r for r in res["per_energy"]}
    out = {}
    items = [{"energy_kev": e, "value": pe[e]["mu_ratio"], "err": pe[e]["mu_ratio_err"],
              "pass": pe[e]["mu_ratio"] >= t["mu_ratio_min"]}
             for e in t["mu_ratio_energies"] if e in pe and pe[e]["mu_ratio"] is not None]
    out["mu_ratio"] = {"description": f"mu_nn / mu_moments >= {t['mu_ratio_min']} at "
                                      f"{', '.join(f'{e:g}' for e in t['mu_ratio_energies'])} keV",
                       "items": items, "pass": bool(items) and all(i["pass"] for i in items)}
    r4 = pe.get(4.0, {}).get("mdp99_ratio")
    out["mdp99_4kev"] = {"description": "MDP99 of nn (weighted) <= "
                                        f"{t['mdp99_ratio_max_4kev']} x MDP99 of moments "
                                        "(unweighted) at 4 keV",
                         "value": r4, "pass": r4 is not None and r4 <= t["mdp99_ratio_max_4kev"]}
    items = []
    for s in res["spurious"]:
        if s["method"] != "nn":
            continue
        h = t["spurious_harmonic"]
        amp, sig = s[f"amplitude_{h}"], s[f"significance_{h}"]
        items.append({"energy_kev": s["energy_kev"], "n": s["n"], "amplitude": amp,
                      "err": s[f"amplitude_{h}_err"], "significance": sig,
                      "noise_mean_amplitude": s["noise_mean_amplitude"],
                      # Rayleigh: the chance that noise alone exceeds the limit
                      "p_noise_above_limit": math.exp(-s["n"] * t["spurious_max"] ** 2 / 4),
                      "pass": amp < t["spurious_max"] and sig < t["spurious_max_sigma"],
                      **{f"harmonic_{k}": {"amplitude": s[f"amplitude_{k}"],
                                           "significance": s[f"significance_{k}"],
                                           "pass": s[f"amplitude_{k}"] < t["spurious_max"]
                                           and s[f"significance_{k}"] < t["spurious_max_sigma"]}
                         for k in (4, 6)}})
    cal_items = [{"energy_kev": s["energy_kev"], "amplitude": s["amplitude_2_calibrated"],
                  "err": s["amplitude_2_calibrated_err"],
                  "significance": s["significance_2_calibrated"],
                  "pass": s["amplitude_2_calibrated"] < t["spurious_max"]
                  and s["significance_2_calibrated"] < t["spurious_max_sigma"]}
                 for s in res["spurious"] if s["method"] == "nn"
                 and "amplitude_2_calibrated" in s]
    out["spurious_modulation_calibrated"] = {
        "description": "the same after subtracting the spurious Stokes parameters measured "
                       "on an independent unpolarized set per energy (IXPE's calibration)",
        "items": cal_items, "pass": bool(cal_items) and all(i["pass"] for i in cal_items)}
    out["spurious_modulation"] = {
        "description": f"nn spurious modulation (harmonic {t['spurious_harmonic']}) < "
                       f"{t['spurious_max']:.0%} and < {t['spurious_max_sigma']:g} sigma at "
                       f"{', '.join(f'{e:g}' for e in UNPOLARIZED_ENERGIES)} keV "
                       "(harmonics 4 and 6 reported, not required)",
        "note": "the amplitude of an unmodulated sample of N events exceeds a with "
                "probability exp(-N a^2 / 4) (p_noise_above_limit): 29% for a = 1% and "
                "N = 50000, so a perfect reconstruction fails the 1% limit at one energy in "
                "about three; the significance criterion is the meaningful one",
        "items": items, "pass": bool(items) and all(i["pass"] for i in items)}
    items = [{"energy_kev": e, "ratio_x": r["rmse_x_ratio"], "ratio_y": r["rmse_y_ratio"],
              "ratio_xy": r["rmse_xy_ratio"],
              "pass": r["rmse_x_ratio"] is not None and r["rmse_y_ratio"] is not None
              and max(r["rmse_x_ratio"], r["rmse_y_ratio"]) <= t["impact_rmse_ratio_max"]}
             for e, r in pe.items()]
    out["impact_rmse"] = {"description": f"impact RMSE nn <= {t['impact_rmse_ratio_max']} x "
                                         "moments in x and in y at every energy",
                          "items": items, "pass": bool(items) and all(i["pass"] for i in items)}
    if speed_res is not None:
        v = speed_res["nn_tracks_per_s"]
        out["inference_speed"] = {
            "description": f"nn inference >= {t['inference_min_tracks_per_s']:g} tracks/s on "
                           f"{speed_res['threads']} threads (tta {speed_res['default_tta']})",
            "value": v, "tta1": speed_res.get("nn_tta1_tracks_per_s"),
            "pass": v >= t["inference_min_tracks_per_s"]}
    out["all_pass"] = all(v["pass"] for v in out.values() if isinstance(v, dict))
    return out


# --------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------

def _f(v, fmt="{:.3f}"):
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def _pm(v, e, fmt="{:.3f}"):
    return _f(v, fmt) if e is None else f"{_f(v, fmt)} ± {_f(e, fmt)}"


def _pf(ok):
    return "**pass**" if ok else "**FAIL**"


def card_section(results: dict) -> str:
    """The benchmark as markdown, for the 'Measured against the moments analysis' section of
    a model card: per-energy table, spurious modulation, the pi/4 set, speed, targets."""
    cfg = results["config"]
    primary = results["models"][results["primary"]]
    res, tg = primary["results"], primary["targets"]
    lines = [f"Measured with `benchmarks/ixpe_nn.py` on {results.get('date', '?')}: model "
             f"`{primary['model_dir']}`, {cfg['n_per_energy']} photons per energy, 100% "
             f"polarized at {POLARIZATION_ANGLE_DEG:g} deg ({cfg.get('n_unpolarized', '?')} per "
             "unpolarized and per calibration set), seeds {cfg['seeds_range']} "
             "(independent of the training seeds). MDP99 of nn weighted by I1/I0(kappa); "
             "of moments unweighted. Kappa calibration: measured / predicted mean "
             "cos 2(phi_reco - phi_true) over all events, and the largest deviation over "
             f"{CALIBRATION_BINS} quantile bins of kappa (>= {CALIBRATION_MIN_COUNT} events "
             "each)." + (" **Quick run: statistics too small for the "
                                          "targets to be conclusive.**" if cfg["quick"] else ""),
             "",
             "| E (keV) | mu moments | mu nn | nn/moments | eps10 moments | eps10 nn | "
             "MDP99 moments | MDP99 nn (w) | MDP ratio | RMSE x mom / nn (um) | "
             "RMSE y mom / nn (um) | RMSE ratio x / y | kappa cal.: ratio; max abs(r-1) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["per_energy"]:
        cal = r.get("kappa_calibration") or {}
        lines.append(
            f"| {r['energy_kev']:g} | {_pm(r['mu_moments'], r['mu_err_moments'])} | "
            f"{_pm(r['mu_nn'], r['mu_err_nn'])} | {_pm(r['mu_ratio'], r['mu_ratio_err'])} | "
            f"{_f(r['epsilon_10_moments'])} | {_f(r['epsilon_10_nn'])} | "
            f"{_f(r['mdp99_moments'], '{:.2%}')} | {_f(r['mdp99_weighted_nn'], '{:.2%}')} | "
            f"{_f(r['mdp99_ratio'])} | "
            f"{_um(r['rmse_x_mm_moments'])} / {_um(r['rmse_x_mm_nn'])} | "
            f"{_um(r['rmse_y_mm_moments'])} / {_um(r['rmse_y_mm_nn'])} | "
            f"{_f(r['rmse_x_ratio'], '{:.2f}')} / {_f(r['rmse_y_ratio'], '{:.2f}')} | "
            f"{_pm(cal.get('ratio'), cal.get('ratio_err'), '{:.2f}')}; "
            f"{_f(cal.get('max_abs_ratio_dev'), '{:.2f}')} |")
    lines += ["", "Spurious modulation, unpolarized photons (amplitude, significance in sigma):",
              "", "| E (keV) | method | N | cos 2phi | cos 4phi | cos 6phi | cos 2phi after "
              "spurious calibration |", "|---|---|---|---|---|---|---|"]
    for s in res["spurious"]:
        cells = " | ".join(f"{_f(s[f'amplitude_{h}'], '{:.2%}')} "
                           f"({_f(s[f'significance_{h}'], '{:.1f}')})" for h in (2, 4, 6))
        cal = (f"{_f(s.get('amplitude_2_calibrated'), '{:.2%}')} "
               f"({_f(s.get('significance_2_calibrated'), '{:.1f}')})")
        lines.append(f"| {s['energy_kev']:g} | {s['method']} | {s['n']} | {cells} | {cal} |")
    if res["pi4"]:
        lines += ["", f"Seed paper's pi/4 set ({cfg['n_pi4']} photons, 4 keV, 100% polarized "
                      f"at {PI4['polarization_angle_deg']:g} deg):", "",
                  "| method | mu | phase (deg) | eps10 |", "|---|---|---|---|"]
        for p in res["pi4"]:
            lines.append(f"| {p['method']} | {_pm(p['mu'], p['mu_err'])} | "
                         f"{_pm(p['phase_deg'], p['phase_err_deg'], '{:.2f}')} | "
                         f"{_pm(p['epsilon_10'], p['epsilon_10_err'])} |")
    sp = primary.get("speed")
    if sp:
        lines += ["", f"Speed on {sp['threads']} threads, {sp['n_tracks']} tracks of 4 keV in "
                      f"memory (load average {sp['load_average_1min']:.1f} when measured): "
                      f"nn {sp['nn_tracks_per_s']:.0f} tracks/s (tta {sp['default_tta']}), "
                      f"{_f(sp.get('nn_tta1_tracks_per_s'), '{:.0f}')} tracks/s (tta 1); "
                      f"moments {sp['moments_tracks_per_s']:.0f} tracks/s."]
    lines += ["", "| target | measured | result |", "|---|---|---|"]
    lines += [f"| {row[0]} | {row[1]} | {_pf(row[2])} |" for row in _target_rows(tg)]
    sp_items = tg["spurious_modulation"]["items"]
    if sp_items:
        lines += ["", f"Noise alone exceeds the {TARGETS['spurious_max']:.0%} spurious-modulation "
                      "limit with probability exp(-N a^2/4) = "
                      + ", ".join(f"{i['p_noise_above_limit']:.2f}" for i in sp_items)
                      + f" at N = {', '.join(str(i['n']) for i in sp_items)}."]
    others = [k for k in results["models"] if k != results["primary"]]
    if others:
        lines += ["", "Other models on the same events:", "",
                  "| model | mu ratio 3/4/5/6 keV | MDP ratio 4 keV | RMSE xy ratio 4 keV | "
                  "cos 2phi max (nn) | tracks/s | targets passed |",
                  "|---|---|---|---|---|---|---|"]
        for k in [results["primary"]] + others:
            m = results["models"][k]
            pe = {r["energy_kev"]: r for r in m["results"]["per_energy"]}
            mus = "/".join(_f(pe.get(e, {}).get("mu_ratio"), "{:.2f}")
                           for e in TARGETS["mu_ratio_energies"])
            a2 = [s["amplitude_2"] for s in m["results"]["spurious"] if s["method"] == "nn"]
            ts = [v["pass"] for v in m["targets"].values() if isinstance(v, dict)]
            lines.append(f"| {k} (`{m['model_dir']}`) | {mus} | "
                         f"{_f(pe.get(4.0, {}).get('mdp99_ratio'))} | "
                         f"{_f(pe.get(4.0, {}).get('rmse_xy_ratio'))} | "
                         f"{_f(max(a2) if a2 else None, '{:.2%}')} | "
                         f"{_f((m.get('speed') or {}).get('nn_tracks_per_s'), '{:.0f}')} | "
                         f"{sum(ts)}/{len(ts)} |")
    return "\n".join(lines) + "\n"


def _um(v):
    """mm -> um, formatted."""
    return _f(None if v is None else 1e3 * v, "{:.1f}")


def _target_rows(tg):
    out = []
    t = tg["mu_ratio"]
    out.append((t["description"], ", ".join(f"{i['energy_kev']:g} keV: {i['value']:.3f} ± "
                                            f"{_f(i['err'])}" for i in t["items"]), t["pass"]))
    t = tg["mdp99_4kev"]
    out.append((t["description"], f"ratio {_f(t['value'])}", t["pass"]))
    def amplitudes(items):
        return ", ".join(f"{i['energy_kev']:g} keV: {i['amplitude']:.2%} "
                         f"({i['significance']:.1f} sigma)" for i in items)

    t = tg["spurious_modulation"]
    out.append((t["description"], amplitudes(t["items"]), t["pass"]))
    if "spurious_modulation_calibrated" in tg:
        t = tg["spurious_modulation_calibrated"]
        out.append(("nn spurious modulation (harmonic 2) after the per-energy spurious "
                    "calibration (independent unpolarized set)", amplitudes(t["items"]),
                    t["pass"]))
    t = tg["impact_rmse"]
    out.append((t["description"], ", ".join(f"{i['energy_kev']:g}: {_f(i['ratio_x'], '{:.2f}')}"
                                            f"/{_f(i['ratio_y'], '{:.2f}')}"
                                            for i in t["items"]), t["pass"]))
    if "inference_speed" in tg:
        t = tg["inference_speed"]
        out.append((t["description"], f"{t['value']:.0f} tracks/s (tta 1: "
                                      f"{_f(t['tta1'], '{:.0f}')})", t["pass"]))
    return out


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

def run(args) -> dict:
    import numba
    import torch

    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    model_dir = Path(args.model) if args.model else neural.default_model_dir()
    for m in [model_dir, *args.compare]:
        if not (Path(m) / "config.json").exists():
            sys.exit(f"error: {m}: no model directory (config.json missing); pass --model DIR")
    labels = {"nn": str(model_dir)}
    for m in args.compare:
        labels[method_label(m, labels)] = str(m)
    training_seeds = {}
    for label, m in labels.items():
        tr = read_model_config(m, "ixpe").get("training", {})
        training_seeds[label] = {"simulation": tr.get("simulation", {}).get("seed"),
                                 "train": tr.get("train_config", {}).get("seed")}
        used = {v for v in training_seeds[label].values() if v is not None}
        if used & set(SEEDS.values()):
            print(f"warning: {label} was trained with seed(s) {sorted(used)}, which the "
                  "benchmark also uses", file=sys.stderr)
    sets = datasets(args.n_per_energy, args.n_pi4, args.n_unpolarized)
    tmp = None
    if args.data:
        data = Path(args.data)
        data.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ixpe_nn_")
        data = Path(tmp.name)
    try:
        t0 = time.perf_counter()
        for s in sets:
            path = data / f"{s['name']}.h5"
            s["path"] = path
            if not _matches(path, s["kwargs"]):
                simulate(path, progress=False, overwrite=True, **s["kwargs"])
            with EventFile(path, EVENT_SCHEMA) as ef:
                have = ef.methods
                s["n_stored"] = ef.n_events
            if "moments" not in have:
                reconstruct(path, method="moments", progress=False)
            reconstruct(path, method="nn", model=model_dir, progress=False)
            for label, m in labels.items():
                if label != "nn":
                    reconstruct_compare(path, m, label)
            print(f"  {s['name']}: {s['n_stored']} events "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        methods = ["moments", *labels]
        out = Path(args.out)
        main = [s["path"] for s in sets if s["kind"] not in ("pi4", "calibration")]
        pi4 = [s["path"] for s in sets if s["kind"] == "pi4"]
        metrics = evaluate(main, out_dir=out / "ixpe_nn_eval", methods=methods)
        metrics_pi4 = evaluate(pi4, out_dir=out / "ixpe_nn_eval_pi4", methods=methods)
        pol_4 = next(s["path"] for s in sets if s["name"] == "pol_4kev")
        models = {}
        for label, m in labels.items():
            res = score(label, metrics["rows"], metrics["kappa_calibration"],
                        metrics_pi4["rows"])
            add_calibrated_spurious(res, sets, label)
            sp = None if args.no_speed else speed(m, pol_4, args.n_speed, args.threads)
            models[label] = {"model_dir": m, "training_seeds": training_seeds[label],
                             "results": res, "speed": sp, "targets": targets(res, sp)}
        seeds = sorted(SEEDS.values())
        return {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "config": {"n_per_energy": args.n_per_energy, "n_pi4": args.n_pi4,
                       "n_unpolarized": args.n_unpolarized,
                       "n_speed": args.n_speed, "threads": args.threads, "quick": args.quick,
                       "energies_kev": ENERGIES, "unpolarized_energies_kev": UNPOLARIZED_ENERGIES,
                       "polarization_angle_deg": POLARIZATION_ANGLE_DEG, "pi4": PI4,
                       "seeds": SEEDS, "seeds_range": f"{seeds[0]}-{seeds[-1]}",
                       "training_seeds_avoided": TRAINING_SEEDS,
                       "n_stored": {s["name"]: s["n_stored"] for s in sets},
                       "data": None if tmp else str(data), "detector": "GpdConfig() defaults",
                       "evaluation": [str(out / "ixpe_nn_eval"), str(out / "ixpe_nn_eval_pi4")],
                       "targets": TARGETS,
                       "seconds": round(time.perf_counter() - t0, 1)},
            "primary": "nn", "models": models,
        }
    finally:
        if tmp is not None:
            tmp.cleanup()


def write_card(model_dir, results, args):
    """Rewrite ``card.md`` of ``model_dir`` with the measured section (atomically)."""
    import json
    from pathlib import Path

    m = machine()
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    history_file = model_dir / "history.json"
    history = json.loads(history_file.read_text()) if history_file.exists() else []
    cmd = ("python benchmarks/ixpe_nn.py --model " + str(args.model or "models/ixpe") +
           f" --n-per-energy {args.n_per_energy} --n-unpolarized {args.n_unpolarized}"
           f" --threads {args.threads}")
    measured = (card_section(results) + "\n\nMeasured with `" + cmd + "` on "
                + f"{m.get('cpu_model', m['processor'])}, {m['cpus']} CPUs, "
                f"{args.threads} threads" +
                "; events simulated with seeds never used in training.\n")
    old = (model_dir / "card.md").read_text() if (model_dir / "card.md").exists() else ""
    notes = old[old.index("\n## Notes"):] if "\n## Notes" in old else ""
    tmp = model_dir / ".card.md.tmp"
    tmp.write_text(ixpe_train.model_card(config, history, measured=measured) + notes)
    tmp.replace(model_dir / "card.md")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None,
                    help="model directory (default: the shipped model, models/ixpe)")
    ap.add_argument("--out", default="benchmarks/results", help="results directory")
    ap.add_argument("--data", default=None,
                    help="directory for the event files, kept and reused when the settings "
                         "match (default: a temporary directory, removed at the end)")
    ap.add_argument("--n-per-energy", type=int, default=None,
                    help="photons per energy (default 50000, --quick 2000)")
    ap.add_argument("--n-pi4", type=int, default=None,
                    help=f"photons of the pi/4 set (default {PI4['n_events']}, --quick: "
                         "--n-per-energy)")
    ap.add_argument("--n-unpolarized", type=int, default=None,
                    help="photons of each unpolarized set and of each calibration set "
                         "(default 400000: noise alone then exceeds a 1%% spurious amplitude "
                         "after calibration with probability exp(-5); --quick: "
                         "--n-per-energy)")
    ap.add_argument("--n-speed", type=int, default=None,
                    help="tracks timed for the speed (default 20000, --quick 2000)")
    ap.add_argument("--threads", type=int, default=2, help="torch and numba threads")
    ap.add_argument("--compare", nargs="+", default=[], metavar="MODEL_DIR",
                    help="other model directories scored on the same events")
    ap.add_argument("--no-speed", action="store_true", help="skip the speed measurement")
    ap.add_argument("--quick", action="store_true", help="small samples, a smoke run")
    ap.add_argument("--write-card", action="store_true",
                    help="write the measured table into the model's card.md")
    args = ap.parse_args(argv)
    if args.n_per_energy is None:
        args.n_per_energy = 2000 if args.quick else 50_000
    if args.n_pi4 is None:
        args.n_pi4 = args.n_per_energy if args.quick else PI4["n_events"]
    if args.n_unpolarized is None:
        args.n_unpolarized = args.n_per_energy if args.quick else 400_000
    if args.n_speed is None:
        args.n_speed = 2000 if args.quick else 20_000
    for name in ("n_per_energy", "n_pi4", "n_unpolarized", "n_speed", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')}: expected a positive number")
    return args


def main(argv=None):
    args = parse_args(argv)
    results = json_safe(run(args))
    path = write_result(args.out, "ixpe_nn", results)
    print(card_section(results))
    if args.write_card:
        write_card(args.model or neural.default_model_dir(), results, args)
    print(f"-> {path}")
    return results


if __name__ == "__main__":
    main()
