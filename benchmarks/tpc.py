"""TPC benchmark: the networks against Non-ML and Best-Expected on the seed's four test sets.

    python benchmarks/tpc.py --out benchmarks/results [--model models/tpc] [--rcn RCN_DIR]
                             [--data DIR] [--n-events 20000] [--arrows ARROWS_RUN]
                             [--jobs 2]

For each test set (40 / 50 keV x 443 / 200 um, recoils never used in training, seeds
9411-9414) and on the same events: Non-ML with the seed's parameters and tuned, each also
with the correct head-tail, Best-Expected, the HCN (``--model``) and optionally an RCN
(``--rcn``).  The tuned Non-ML parameters and the Best-Expected radius are tuned on an
independent validation set of the same energy and smearing (seeds 9201-9204) -- the seed
tunes on its test sets, which flatters them.  Targets (issue 4):

- HCN cosine distance <= 0.5x the standard Non-ML's at 40 keV / 443 um, within 1.25x of
  Best-Expected there, and at or below Best-Expected after a 5% efficiency cut;
- calibration: every kappa bin with >= 200 events has a fitted kappa within 20% of its
  centre;
- arrows (``--arrows``, a finished ``astroreco tpc arrows`` run): RCN and HCN < 1e-3.

Writes tpc.json, and per set the evaluation JSON and the Figure 5 / Figure 6 plots.
``--jobs N`` runs the sets in N processes (each with its share of the CPU threads); the
result is the same as one process's, since every set is simulated, tuned and scored on its
own events.
Sparse-convolution throughput is ``benchmarks/sparse3d.py``.
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
from common import print_table, write_result  # noqa: E402

from astroreco.detectors.tpc import best_expected, evaluate, nonml, pipeline  # noqa: E402
from astroreco.io.store import EventFile  # noqa: E402

#: (label, energy keV, smearing um, test seed, tuning seed); the 50 keV sets lose about half
#: of the simulated recoils to the containment cut, so twice as many are simulated.  The test
#: seeds were 9101-9104, 9301-9304, then 9401-9404: each was looked at while choosing the
#: kappa calibration (energy bins, the voxel density, then the learned map, chosen on
#: development sets 8401-8404 after the 9401 sets had shown the linear map failing), so the
#: sets it is judged on are fresh.
SETS = (("40kev_443um", "40", "443", 9411, 9201), ("40kev_200um", "40", "200", 9412, 9202),
        ("50kev_200um", "50", "200", 9413, 9203), ("50kev_443um", "50", "443", 9414, 9204))


def _file(path, n, energy, sigma, seed):
    if not Path(path).exists():
        scale = 2 if energy == "50" else 1
        pipeline.simulate(path, n_events=n * scale, energy=energy, sigma=sigma, seed=seed,
                          progress=False)
    return path


def _truth(path):
    with EventFile(path, pipeline.EVENT_SCHEMA) as ef:
        t = ef.truth(["dir_x", "dir_y", "dir_z", "start_x_cm", "start_y_cm", "start_z_cm"])
    return (np.stack([t["dir_x"], t["dir_y"], t["dir_z"]], 1),
            np.stack([t["start_x_cm"], t["start_y_cm"], t["start_z_cm"]], 1))


def run_set(label, energy, sigma, test_seed, tune_seed, args, out):
    data = Path(args.data)
    # the size is in the name: a cached set of another size is never reused silently
    test = _file(data / f"test_{label}_{args.n_events}_seed{test_seed}.h5", args.n_events,
                 energy, sigma, test_seed)
    tune_file = _file(data / f"tune_{label}_{args.n_tune}.h5", args.n_tune, energy, sigma,
                      tune_seed)
    offsets, coords, values = pipeline.read_voxels(tune_file)
    truth, start = _truth(tune_file)
    cfg, _ = nonml.tune(offsets, coords, values, truth)
    eps = best_expected.tune_epsilon(offsets, coords, values, start, truth)["epsilon_cm"]
    timings = {}
    runs = [("nonml", "nonml", {}), ("nonml_truth_ht", "nonml_truth_ht", {}),
            ("nonml", "nonml_tuned", {"nonml": cfg}),
            ("nonml_truth_ht", "nonml_tuned_truth_ht", {"nonml": cfg}),
            ("best_expected", "best_expected", {"epsilon_cm": eps}),
            ("nn", "hcn", {"model": args.model, "tta": args.tta})]
    if args.rcn:
        runs.append(("nn", "rcn", {"model": args.rcn, "tta": args.tta}))
    for method, name, kw in runs:
        t0 = time.perf_counter()
        pipeline.reconstruct(test, method=method, name=name, progress=False, **kw)
        timings[name] = time.perf_counter() - t0
    result = evaluate.evaluate(test, out / label, n_bins=args.calibration_bins)
    n = result["methods"]["hcn"]["n_events"]
    return {"set": label, "energy_kev": float(energy), "sigma_um": float(sigma),
            "n_events": n, "nonml_tuned": cfg.to_dict(), "epsilon_cm": eps,
            "events_per_s": {k: n / v for k, v in timings.items()},
            "evaluation": result, "table": evaluate.table(result)}


def _run_set_job(spec, args, out):
    """One set in a worker process, with the worker's share of the CPU threads."""
    import torch

    torch.set_num_threads(args.threads)
    return run_set(*spec, args, out)


def run_sets(specs, args, out):
    """The results of ``specs`` (rows of :data:`SETS`), in their order, run in
    ``args.jobs`` processes (one: in this process)."""
    jobs = min(int(args.jobs), len(specs))
    if jobs <= 1:
        return [run_set(*spec, args, out) for spec in specs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if not args.threads:
        args.threads = max(1, (os.cpu_count() or 1) // jobs)
    # spawn: a forked torch process can hang on its inherited thread pool
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_run_set_job, specs, [args] * len(specs), [out] * len(specs)))


def targets(sets, arrows):
    main = next(s for s in sets if s["set"] == "40kev_443um")
    m = main["evaluation"]["methods"]
    hcn, k = m["hcn"]["cos_dist"], main["evaluation"]["kappa_methods"]["hcn"]
    be, std = m["best_expected"]["cos_dist"], m["nonml"]["cos_dist"]
    calib = {s["set"]: s["evaluation"]["kappa_methods"]["hcn"]["calibration_max_deviation"]
             for s in sets}
    null = {s["set"]: s["evaluation"]["kappa_methods"]["hcn"].get("calibration_null", {})
            for s in sets}
    mixed = {s["set"]: s["evaluation"]["kappa_methods"]["hcn"].get(
        "calibration_null_with_flips", {}) for s in sets}
    out = {"hcn_over_nonml_40_443": {"value": hcn / std, "target": "<= 0.5",
                                     "pass": hcn / std <= 0.5},
           "hcn_over_best_expected_40_443": {"value": hcn / be, "target": "<= 1.25",
                                             "pass": hcn / be <= 1.25},
           "hcn_cut5_over_best_expected_40_443": {
               "value": k["cos_dist_cut_5pct"] / be, "target": "<= 1",
               "pass": k["cos_dist_cut_5pct"] <= be},
           "calibration_max_deviation": {"value": calib, "target": "<= 0.2 in every bin "
                                         "with >= 200 events",
                                         "pass": all(v <= 0.2 for v in calib.values())},
           "calibration_null_p_value": {
               "value": {k: v.get("p_value") for k, v in null.items()},
               "target": "(reported: how often a perfectly calibrated model deviates as "
                         "much)", "pass": None},
           "calibration_null_beyond_0.2": {
               "value": {k: v.get("fraction_beyond_tolerance") for k, v in null.items()},
               "target": "(reported: how often a perfectly calibrated model fails)",
               "pass": None},
           "calibration_null_with_flips_p_value": {
               "value": {k: v.get("p_value") for k, v in mixed.items()},
               "target": "(reported: the same for a model calibrated with the head-tail flips "
                         "the events show)", "pass": None},
           "calibration_null_with_flips_beyond_0.2": {
               "value": {k: v.get("fraction_beyond_tolerance") for k, v in mixed.items()},
               "target": "(reported: how often such a model fails)", "pass": None}}
    if arrows is not None:
        cd = arrows["cos_dist"]
        out["arrows"] = {"value": {k: cd[k] for k in ("rcn", "hcn") if k in cd},
                         "target": "< 1e-3",
                         "pass": all(cd.get(k, 1.0) < 1e-3 for k in ("rcn", "hcn"))}
    return out


def card_section(sets, target_rows) -> str:
    """The benchmark as markdown, for the model card's measured section."""
    lines = []
    for s in sets:
        m = s["evaluation"]["methods"]
        k = s["evaluation"]["kappa_methods"].get("hcn", {})
        lines += [f"**{s['energy_kev']:g} keV, {s['sigma_um']:g} um** ({s['n_events']} test "
                  f"recoils; Non-ML tuned {s['nonml_tuned']['r_min']:g}, "
                  f"{s['nonml_tuned']['r_max']:g}, {s['nonml_tuned']['w0_cm']:g} cm; "
                  f"Best-Expected epsilon {s['epsilon_cm']:g} cm, both tuned on independent "
                  "events)", "", "| method | efficiency | cosine distance | head-tail right |",
                  "|---|---|---|---|"]
        for name, v in m.items():
            ht = v.get("head_tail_correct")
            lines.append(f"| {v['label']} | {v['efficiency']:.3f} | {v['cos_dist']:.4f} ± "
                         f"{v['cos_dist_err']:.4f} | "
                         + ("-" if ht is None else f"{ht:.1%}") + " |")
        if k:
            lines.append(f"| HCN, 5% lowest kappa cut | 0.950 | {k['cos_dist_cut_5pct']:.4f} "
                         "| - |")
            lines += ["", f"kappa calibration: largest deviation of the fitted kappa from the "
                      f"bin centre {k['calibration_max_deviation']:.1%} over "
                      f"{k['calibration_bins_checked']} equal-width bins with >= 200 "
                      "events (ratio: to the bin's midpoint; to kappa_equivalent: to the "
                      "fit a calibrated kappa gives for the bin's events; flipped: events "
                      "more than 90 deg from the truth; without "
                      "them: the ratio of the fit to the others):", "",
                      "| kappa bin | events | fitted kappa | ratio | to kappa_equivalent | "
                      "flipped | ratio without them |", "|---|---|---|---|---|---|---|"]
            lines += [f"| {r['kappa_lo']:.1f}-{r['kappa_hi']:.1f} | {r['n']} | "
                      f"{r['kappa_fit']:.1f} ± {r['kappa_fit_err']:.1f} | "
                      f"{r['ratio']:.2f} | {r['ratio_equivalent']:.2f} | "
                      f"{r.get('n_flipped', '-')} | "
                      + (f"{r['ratio_core']:.2f}" if "ratio_core" in r else "-") + " |"
                      for r in k["calibration"] if r["enough"]]
            null = k.get("calibration_null")
            if null:
                lines += ["", f"The test's own noise ({null['draws']} draws of the angles "
                          "from the predicted distributions, same bins): a perfectly "
                          "calibrated model with these kappa would deviate by "
                          f"{null['median_max_deviation']:.1%} (median; 90%: "
                          f"{null['q90_max_deviation']:.1%}) and exceed "
                          f"{null['tolerance']:.0%} in {null['fraction_beyond_tolerance']:.1%} "
                          f"of draws; p = {null['p_value']:.2f} for the observed "
                          "deviation."]
            mixed = k.get("calibration_null_with_flips")
            if mixed:
                seen = mixed.get("beyond_90deg", mixed.get("flips"))
                lines += ["", f"With the head-tail flips the events show ({seen} beyond 90 "
                          "deg; the flip rate as a function of kappa fitted on these events, "
                          "over the vMF's own tail), a model calibrated in the sense the test "
                          "fits would "
                          f"deviate by {mixed['median_max_deviation']:.1%} (median; 90%: "
                          f"{mixed['q90_max_deviation']:.1%}) and exceed "
                          f"{mixed['tolerance']:.0%} in "
                          f"{mixed['fraction_beyond_tolerance']:.1%} of draws; p = "
                          f"{mixed['p_value']:.2f} for the observed deviation."]
        lines.append("")
    if target_rows:
        lines += ["| target | value | required | pass |", "|---|---|---|---|"]
        for name, t in target_rows.items():
            value = t["value"]
            value = ", ".join(f"{a}: {'n/a' if b is None else format(b, '.3g')}"
                              for a, b in value.items()) \
                if isinstance(value, dict) else f"{value:.3f}"
            lines.append(f"| {name} | {value} | {t['target']} | {t['pass']} |")
    return "\n".join(lines)


def write_card(model_dir, sets, target_rows, args):
    """Rewrite ``card.md`` of ``model_dir`` with the measured section (atomically)."""
    from common import machine, model_card_inputs

    from astroreco.detectors.tpc import train as tpc_train

    m = machine()
    model_dir = Path(model_dir)
    config, history = model_card_inputs(model_dir)
    cmd = (f"python benchmarks/tpc.py --model {args.model or 'models/tpc'} --n-events "
           f"{args.n_events} --n-tune {args.n_tune}")
    measured = (card_section(sets, target_rows) + f"\n\nMeasured with `{cmd}` on "
                f"{m.get('cpu_model', m['processor'])}, {m['cpus']} CPUs; test and tuning "
                "events simulated with seeds never used in training.\n")
    tmp = model_dir / ".card.md.tmp"
    tmp.write_text(tpc_train.model_card(config, history, measured=measured))
    tmp.replace(model_dir / "card.md")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--model", default=None, help="HCN model directory (default: shipped)")
    p.add_argument("--rcn", default=None, help="RCN model directory (optional)")
    p.add_argument("--data", default=None, help="where test/tuning sets live or are made "
                   "(default: OUT/tpc_data)")
    p.add_argument("--n-events", type=int, default=20000,
                   help="test recoils per set (the calibration bins need many: a bin of 200 "
                        "events measures kappa to about 10%%)")
    p.add_argument("--n-tune", type=int, default=2000, help="tuning recoils per set")
    p.add_argument("--tta", type=int, default=None, help="cube symmetries averaged by nn")
    p.add_argument("--calibration-bins", type=int, default=12,
                   help="about this many equal-width kappa bins in the calibration test")
    p.add_argument("--sets", default=",".join(s[0] for s in SETS))
    p.add_argument("--arrows", default=None, help="a finished 'astroreco tpc arrows' run")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per process (default: torch's own; with --jobs, the "
                        "CPUs shared out)")
    p.add_argument("--jobs", type=int, default=1,
                   help="run the sets in this many processes (default 1)")
    p.add_argument("--write-card", action="store_true",
                   help="write the measured section into the model's card.md")
    args = p.parse_args(argv)
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        p.error("--jobs and --threads: expected integers >= 1")
    wanted = args.sets.split(",")
    unknown = sorted(set(wanted) - {s[0] for s in SETS})
    if unknown:
        p.error(f"--sets: unknown {unknown}, expected some of {[s[0] for s in SETS]}")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    out = Path(args.out) / "tpc"
    out.mkdir(parents=True, exist_ok=True)
    args.data = args.data or str(out / "data")
    Path(args.data).mkdir(parents=True, exist_ok=True)
    sets = run_sets([s for s in SETS if s[0] in wanted], args, out)
    for s in sets:
        print(s["table"], "\n")
    arrows = None
    if args.arrows:
        arrows = json.loads((Path(args.arrows) / "tutorial.json").read_text())
    result = {"sets": sets}
    if any(s["set"] == "40kev_443um" for s in sets):
        result["targets"] = targets(sets, arrows)
        print_table([{"name": k, **{kk: json.dumps(vv) if isinstance(vv, dict) else vv
                                    for kk, vv in v.items()}}
                     for k, v in result["targets"].items()],
                    ["name", "value", "target", "pass"])
    if args.write_card:
        from astroreco.detectors.tpc.neural import default_model_dir

        write_card(args.model or default_model_dir(), sets, result.get("targets"), args)
    path = write_result(args.out, "tpc", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
