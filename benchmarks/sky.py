"""Sky benchmark: the U-Net detector against the classical significance-map baselines.

    python benchmarks/sky.py --out benchmarks/results [--model models/sky/detector]
                             [--n-patches 2000] [--write-card]

On patches never used in training, simulated with the other interstellar emission model
(IEM B, seed 9603; the shipped detector was trained on IEM A), on the same patches: the
classical significance map (PSF-matched kernel, bins from 1 GeV) with sep and with the
local-maximum finder, each with two background models -- the true one (an oracle) and
that of IEM A (``*_model_bkg``: the analyst's model differs from the sky, as on real
data) -- and the U-Net (counts only) with Laplacian-of-Gaussian and with k-means
centres.  A detection matches a true source within 0.3 deg (one-to-one).  Targets
(issue 6):

- above S(1-100 GeV) = 4e-10 ph cm-2 s-1: recall >= 0.90 at purity >= 0.95;
- localisation: >= 90% of the matched sources (above that flux) within 0.15 deg;
- F1 at least 0.05 above the sep baseline's on the same patches (sep with the IEM A
  background model; the oracle's F1 is reported beside it);
- detection speed >= 50 patches/s (64 x 64 x 6) on this CPU;
- point/extended accuracy >= 0.95 of the CTA-like extension classifier, on its test
  sources that are detected (TS >= 25 against the background alone, the catalogs' value
  applied to the extension test's own fit: a catalog states the extension of the sources
  it holds), beside the classical
  likelihood extension test on the same sources; all sources above the classifier's flux
  cut, detected or not, and both per flux are reported.

The point/extended accuracy and the position and flux pulls belong to the per-source
networks and are reported when the detections carry them: ``nn_full`` gives them the IEM-A
background model renormalised on each patch (the default of the chain),
``nn_full_no_refit`` the model as it is, ``nn_full_true_bkg`` the true background.  Writes
sky.json and the evaluation directory (plots, report).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import model_card_inputs, print_table, write_result  # noqa: E402

from astroreco.detectors.sky import evaluate, pipeline  # noqa: E402
from astroreco.detectors.sky.classify import source_figures  # noqa: E402
from astroreco.detectors.sky.extension import DETECTION_TS  # noqa: E402

FLUX_THRESHOLD = 4e-10
#: seed 9601 was looked at while choosing the background refit (its smoothing), and 9602
#: while choosing how to calibrate the flux errors, so the patches it is judged on are fresh
TEST_SEED = 9603
#: CTA-like patches of the extension classifier's test: 9801 was simulated before the
#: shipped classifier was chosen (among runs, by their validation sources), so a fresh seed
CTA_EXTENSION_SEED = 9802


def test_files(args) -> tuple[Path, Path]:
    """The test patches (IEM ``args.iem``) and the same patches with the other IEM, whose
    background is the classical analysis's (imperfect) background model."""
    other = {"A": "B", "B": "A"}[args.iem]
    paths = []
    for iem in (args.iem, other):
        path = Path(args.data) / f"test_{iem}_{args.n_patches}_seed{TEST_SEED}.h5"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pipeline.simulate(path, n_patches=args.n_patches, iem=iem, seed=TEST_SEED,
                              progress=False)
        paths.append(path)
    return paths[0], paths[1]


def detect_all(path, model_file, args) -> dict:
    """Run every method on the file; patches per second of each (file reading included)."""
    speed = {}
    for method in ("sep", "peaks"):
        t0 = time.perf_counter()
        s = pipeline.detect_classical(path, method=method, threshold=args.sigma,
                                      progress=False)
        speed[method] = s["n_patches"] / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        s = pipeline.detect_classical(path, method=method, threshold=args.sigma,
                                      name=f"{method}_model_bkg", background_model=model_file,
                                      progress=False)
        speed[f"{method}_model_bkg"] = s["n_patches"] / (time.perf_counter() - t0)
    for centres in ("log", "kmeans"):
        t0 = time.perf_counter()
        s = pipeline.detect_neural(path, model=args.model, name=f"nn_{centres}",
                                   centres=centres, progress=False)
        speed[f"nn_{centres}"] = s["n_patches"] / (time.perf_counter() - t0)
    # the whole chain: detector, position/flux ensemble, extension classifier, with the
    # analyst's background model (the other IEM) for the cut-outs
    t0 = time.perf_counter()
    s = pipeline.detect_neural(path, model=args.model, name="nn_full", refiner=args.refiner,
                               extension=args.extension, background_model=model_file,
                               progress=False)
    speed["nn_full"] = s["n_patches"] / (time.perf_counter() - t0)
    pipeline.detect_neural(path, model=args.model, name="nn_full_no_refit",
                           refiner=args.refiner, extension=args.extension,
                           background_model=model_file, refit_background=False,
                           progress=False)
    # the same with the true background for the cut-outs: what the background model costs
    pipeline.detect_neural(path, model=args.model, name="nn_full_true_bkg",
                           refiner=args.refiner, extension=args.extension, progress=False)
    return speed


def classifiers(args) -> dict:
    """The per-source classifiers on the true sources of their own test patches (never used
    in training): extension on CTA-like patches (seed 9802; beside it the classical
    likelihood extension test), AGN vs pulsar on time-binned
    Fermi-like patches at |b| < 10 deg (seed 9701)."""
    from astroreco.detectors.sky.classify import Classifier

    out = {}
    for task, model, preset, kw, seed in (
            ("extension", args.cta_extension, "cta", {}, CTA_EXTENSION_SEED),
            ("class", args.class_model, "fermi",
             {"n_time_bins": 10, "abs_b_range_deg": (0.0, 10.0)}, 9701)):
        if not model or not (Path(model) / "weights.safetensors").is_file():
            out[task] = None
            continue
        path = Path(args.data) / f"{task}_test_{args.n_class_patches}_seed{seed}.h5"
        if not path.exists():
            pipeline.simulate(path, n_patches=args.n_class_patches, preset=preset, seed=seed,
                              progress=False, **kw)
        classifier = Classifier(model)
        p = classifier.source_probabilities(path)
        fig = source_figures(p["probs"], p["labels"], p["log_flux"], task)
        out[task] = {"model": str(model), "file": str(path), **fig}
        if task == "extension":
            classical, detected = classical_extension(args, path, classifier.config)
            if not np.array_equal(classical.pop("log_flux"), p["log_flux"]):
                raise RuntimeError("the classical test and the network saw other sources")
            out["extension_classical"] = classical
            out["extension_detected"] = {
                "model": str(model), "file": str(path), "min_ts": DETECTION_TS,
                "n_selected_from": int(detected.size),
                **source_figures(p["probs"][detected], p["labels"][detected],
                                 p["log_flux"][detected], task)}
    return out


def classical_extension(args, test_path, cfg) -> tuple[dict, np.ndarray]:
    """The likelihood extension test on the classifier's test sources (same positions), its
    TS_ext threshold tuned on other CTA-like patches (seed ``CTA_EXTENSION_SEED + 1``), on
    all of them and on the detected ones (detection TS >= 25, the threshold tuned on the
    detected validation sources); and which test sources are detected."""
    from astroreco.detectors.sky.extension import evaluate_sources, scan_sources, tune_threshold

    val = Path(args.data) / f"extension_val_{args.n_class_patches // 3}_seed" \
                            f"{CTA_EXTENSION_SEED + 1}.h5"
    if not val.exists():
        pipeline.simulate(val, n_patches=args.n_class_patches // 3, preset="cta",
                          seed=CTA_EXTENSION_SEED + 1, progress=False)
    val_scan, test_scan = scan_sources(val, cfg), scan_sources(test_path, cfg)
    tuned = tune_threshold(val, cfg, scan=val_scan)
    fig = evaluate_sources(test_path, cfg, tuned["ts_threshold"], scan=test_scan)
    tuned_det = tune_threshold(val, cfg, min_ts=DETECTION_TS, scan=val_scan)
    fig_det = evaluate_sources(test_path, cfg, tuned_det["ts_threshold"], min_ts=DETECTION_TS,
                               scan=test_scan)
    detected = test_scan[0]["ts_detection"] >= DETECTION_TS
    return ({"file": str(test_path), "tuned_on": str(val), "tuning": tuned, **fig,
             "detected": {"tuning": tuned_det, **fig_det},
             "log_flux": test_scan[1].log_flux}, detected)


def extension_targets(ext, det, cl) -> dict:
    """The point/extended rows: judged on the detected sources (detection TS >= 25, the
    catalogs' threshold: a catalog states the extension of the sources it holds), with all
    sources above the classifier's flux cut reported beside them, and both per flux."""
    cl_det = cl["detected"]
    t = {"point_extended_accuracy_cta": {
             "value": det["point_vs_extended_accuracy"], "target": ">= 0.95",
             "pass": det["point_vs_extended_accuracy"] >= 0.95,
             "on": f"the {det['n']} detected (TS >= {DETECTION_TS:g}) of the "
                   f"{det['n_selected_from']} true sources of CTA-like test patches"},
         "point_extended_accuracy_cta_classical": {
             "value": cl_det["point_vs_extended_accuracy"], "target": "(reported: baseline)",
             "pass": None, "on": f"the same {cl_det['n']} sources, TS_ext >= "
                                 f"{cl_det['ts_threshold']:g} (tuned on other patches)"},
         "point_extended_accuracy_cta_all_sources": {
             "value": {"network": ext["point_vs_extended_accuracy"],
                       "classical": cl["point_vs_extended_accuracy"]},
             "target": "(reported)", "pass": None,
             "on": f"all {ext['n']} true sources, detected or not (classical TS_ext >= "
                   f"{cl['ts_threshold']:g})"}}
    # how both grow with the source's flux: the faint sources hold too few photons for
    # either to see an extension, and most of them are not detected at all
    rows = {}
    for key, fig in (("", ext), ("classical", cl), ("detected", det),
                     ("classical_detected", cl_det)):
        for r in fig.get("per_flux", []):
            name = f"{r['flux_lo']:.0e}" + (f"-{r['flux_hi']:.0e}" if r["flux_hi"] else "+")
            row = rows.setdefault(name, {})
            if key in ("", "detected"):
                row["n" + (f"_{key}" if key else "")] = r["n"]
            row[key or "accuracy"] = r["point_vs_extended_accuracy"]
    t["point_extended_accuracy_cta_per_flux"] = {"value": rows, "target": "(reported)",
                                                  "pass": None}
    return t


def in_memory_speed(path, model, n: int = 512) -> dict:
    """The U-Net + LoG on patches already in memory (what a pipeline on a sky survey sees),
    one and all threads."""
    import torch

    from astroreco.detectors.sky.neural import NeuralDetector

    data = pipeline.read_patches(path, 0, n)
    g = pipeline.geometry_of(path)
    wcs = [g.wcs(*c) for c in data.centres]
    detector = NeuralDetector(model)
    detector.detect(data.counts[:32], wcs[:32])  # warm-up
    out = {}
    threads = torch.get_num_threads()
    for t in sorted({1, threads}):
        torch.set_num_threads(t)
        t0 = time.perf_counter()
        detector.detect(data.counts, wcs)
        out[f"threads_{t}"] = len(data.counts) / (time.perf_counter() - t0)
    torch.set_num_threads(threads)
    return out


def targets(result: dict, speed: dict) -> dict:
    """The issue's targets for the better of the two centre finders (by F1).  The F1 target
    is judged against sep with the analyst's background model (the other IEM); sep with the
    true background (an oracle no real analysis has) is reported beside it."""
    m = result["methods"]
    nn = m["nn_kmeans"] if m["nn_kmeans"]["f1"] > m["nn_log"]["f1"] else m["nn_log"]
    best = "nn_kmeans" if nn is m["nn_kmeans"] else "nn_log"
    op = nn["operating_point"]
    sep = m["sep_model_bkg"]
    rows = {
        "recall_at_purity_0.95": {"value": op["recall"], "target": ">= 0.90",
                                  "pass": op["recall"] is not None and op["recall"] >= 0.90},
        "fraction_within_0.15deg": {"value": nn["localisation"]["fraction_within_above"],
                                    "target": ">= 0.90",
                                    "pass": (nn["localisation"]["fraction_within_above"]
                                             or 0) >= 0.90},
        "f1_minus_sep_f1": {"value": nn["f1"] - sep["f1"], "target": ">= 0.05",
                            "pass": nn["f1"] - sep["f1"] >= 0.05,
                            "sep": "background model of the other IEM"},
        "f1_minus_oracle_sep_f1": {"value": nn["f1"] - m["sep"]["f1"],
                                   "target": "(reported)", "pass": None,
                                   "sep": "true background"},
        "patches_per_s": {"value": speed[best], "target": ">= 50",
                          "pass": speed[best] >= 50},
    }
    full = m["nn_full"]
    pos, flux = full["position_pulls"], (full["flux"] or {}).get("pulls")
    cls = full["classification"] or {}
    acc = cls.get("point_vs_extended_accuracy")
    rows["position_pull_std"] = {"value": pos and pos["std"], "target": "1 +- 0.2",
                                 "pass": bool(pos) and abs(pos["std"] - 1) <= 0.2}
    rows["flux_pull_std"] = {"value": flux and flux["std"], "target": "1 +- 0.2",
                             "pass": bool(flux) and abs(flux["std"] - 1) <= 0.2}
    # the same pulls split as a physicist reads them: above the completeness flux (below
    # it the detected sources are the upward fluctuations), and in log10 S where the
    # refiner's log-normal is Gaussian
    fl = full["flux"] or {}
    rows["flux_pull_std_above_4e-10"] = {
        "value": (fl.get("pulls_above") or {}).get("std"), "target": "(reported)",
        "pass": None}
    rows["flux_log10_pull_std"] = {"value": (fl.get("log_pulls") or {}).get("std"),
                                   "target": "(reported)", "pass": None}
    # no Fermi-like extension classifier is shipped (there the extended sources are few and
    # smaller than the PSF): the issue's >= 0.95 is judged on the CTA-like patches
    # (point_extended_accuracy_cta); this row reports a Fermi-like one when it is given
    rows["point_extended_accuracy_fermi"] = {
        "value": acc, "target": "(reported; the target: point_extended_accuracy_cta)",
        "pass": None, "on": "the detections of the Fermi-like test patches (--extension)"}
    return {"method": best, **rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--data", default="benchmarks/results/sky/data")
    ap.add_argument("--model", default=None, help="detector model directory [shipped]")
    ap.add_argument("--refiner", default=None,
                    help="position/flux ensemble [shipped models/sky/refine]")
    ap.add_argument("--extension", default=None,
                    help="extension classifier for the Fermi-like patches [models/sky/extension "
                         "when shipped]; none: skip")
    ap.add_argument("--n-patches", type=int, default=2000)
    ap.add_argument("--n-class-patches", type=int, default=600,
                    help="test patches of each classifier")
    ap.add_argument("--cta-extension", default=None,
                    help="extension classifier for CTA-like patches [models/sky/extension_cta]")
    ap.add_argument("--class-model", default=None,
                    help="AGN/pulsar classifier [models/sky/class]")
    ap.add_argument("--iem", default="B")
    ap.add_argument("--sigma", type=float, default=5.0, help="classical threshold (sigma)")
    ap.add_argument("--write-card", action="store_true",
                    help="write the measured table into the model's card")
    ap.add_argument("--only", choices=("all", "classifiers"), default="all",
                    help="classifiers: only the per-source classifiers' part (their own test "
                         "patches), without the detection benchmark")
    args = ap.parse_args(argv)
    if args.only == "classifiers" and args.write_card:
        ap.error("--write-card writes the detector's card: run the whole benchmark")
    from astroreco.detectors.sky.neural import default_extension_dir, default_refiner_dir

    args.refiner = args.refiner or str(default_refiner_dir())
    if args.extension is None and (default_extension_dir() / "weights.safetensors").is_file():
        args.extension = str(default_extension_dir())
    if args.extension == "none":
        args.extension = None
    from astroreco.io.modeldir import shipped_model_dir

    args.cta_extension = args.cta_extension or str(shipped_model_dir("sky") / "extension_cta")
    args.class_model = args.class_model or str(shipped_model_dir("sky") / "class")
    out = Path(args.out)
    if args.only == "classifiers":
        cls = classifiers(args)
        t = {}
        if cls.get("extension") is not None:
            t = extension_targets(cls["extension"], cls["extension_detected"],
                                  cls["extension_classical"])
        print(json.dumps(t, default=float))
        write_result(out, "sky_classifiers", {"targets": t, "classifiers": cls})
        return
    path, model_file = test_files(args)
    speed = detect_all(path, model_file, args)
    speed_mem = in_memory_speed(path, args.model)
    names = ["sep", "sep_model_bkg", "peaks", "peaks_model_bkg", "nn_log", "nn_kmeans",
             "nn_full", "nn_full_no_refit", "nn_full_true_bkg"]
    result = evaluate.evaluate(path, out / "sky", names=names,
                               flux_threshold=FLUX_THRESHOLD)
    t = targets(result, speed)
    cls = classifiers(args)
    ext = cls.get("extension")
    if ext is not None:
        t.update(extension_targets(ext, cls["extension_detected"], cls["extension_classical"]))
    rows = [{"method": n, "detections": s["counts"]["n_detections"], "purity": s["purity"],
             "recall>4e-10": s["recall_above"], "F1": s["f1"],
             "recall@P0.95": s["operating_point"]["recall"],
             "loc68": s["localisation"]["r68_deg"], "loc95": s["localisation"]["r95_deg"],
             "in0.15": s["localisation"]["fraction_within_above"],
             "patches/s": speed.get(n)} for n, s in result["methods"].items()]
    print_table(rows, list(rows[0]))
    print(json.dumps({k: v for k, v in t.items()}, default=float))
    print("in memory, patches/s:", {k: round(v, 1) for k, v in speed_mem.items()})
    for task, fig in cls.items():
        if fig and "confusion" in fig:
            print(f"{task}: accuracy {fig['accuracy']:.3f} (majority "
                  f"{fig['majority_accuracy']:.3f}), balanced {fig['balanced_accuracy']:.3f}, "
                  f"confusion {fig['confusion']}")
    write_result(out, "sky", {"file": str(path), "n_patches": args.n_patches,
                              "iem": args.iem, "model": args.model or "shipped",
                              "speed_patches_per_s": speed,
                              "speed_in_memory_patches_per_s": speed_mem,
                              "targets": t, "rows": rows, "classifiers": cls,
                              "table": evaluate.table(result)})
    if args.write_card:
        write_card(args, result, speed, speed_mem)


def write_card(args, result, speed, speed_mem):
    """The detector card's measured table and speed line replaced by this run's (atomically);
    the card's other text, written by hand (the centre-finder scan), is kept.  A card without
    a measured section gets one from the model card writer."""
    import re

    from astroreco.detectors.sky.neural import default_model_dir
    from astroreco.detectors.sky.train import model_card

    model_dir = Path(args.model) if args.model else default_model_dir()
    path = model_dir / "card.md"
    intro = (f"On {args.n_patches} patches of IEM {args.iem} (seed {TEST_SEED}, never used in "
             "training; the model was trained on IEM A), the same patches for every method "
             "(`python benchmarks/sky.py`; 2 CPU cores). `*_model_bkg`: the classical "
             "significance with the background of IEM A, the analyst's model, not the true "
             "sky; `sep`/`peaks`: with the true background (an oracle). `nn_full`: this "
             "detector + models/sky/refine with the IEM-A background, refitted on each patch, "
             "for the cut-outs (`nn_full_no_refit`: as it is; `nn_full_true_bkg`: the true "
             "background, refitted).")
    table = evaluate.table(result).strip()
    speed_line = (f"Detection speed: {speed['nn_log']:.0f} patches/s from the file, "
                  f"{speed_mem['threads_1']:.0f} (1 thread) and {speed_mem['threads_2']:.0f} "
                  "(2 threads) in memory.")
    text = path.read_text() if path.exists() else ""
    head = "## Measured against the classical baseline"
    if head in text and "| method | detections |" in text:
        start = text.index(head) + len(head)
        t0 = text.index("| method | detections |", start)
        t1 = text.find("\n\n", t0)
        t1 = len(text) if t1 < 0 else t1
        text = text[:start] + "\n\n" + intro + "\n\n" + table + text[t1:]
        text = re.sub(r"Detection speed: [^\n]*", speed_line, text)
    else:
        config, history = model_card_inputs(model_dir)
        text = model_card(config, history, intro + "\n\n" + table + "\n\n" + speed_line + "\n")
    tmp = model_dir / ".card.md.tmp"
    tmp.write_text(text)
    tmp.replace(path)

if __name__ == "__main__":
    main()
