"""ECAL shower simulation throughput (showers/s), numba compilation excluded.

    python benchmarks/ecal_sim.py [--out benchmarks/results] [--n-events 20000]
                                  [--threads 1 2] [--repeats 3] [--slices N]

Simulates, with the nominal detector (:class:`astroreco.detectors.ecal.simulate.EcalSimConfig`)
and the seed's angular range (theta 155-180 deg), electrons of

* the default spectrum, E^-1 between 2.5 and 4000 GeV,
* a fixed 10 GeV and a fixed 1 TeV,

with each number of numba threads of ``--threads``.  One untimed call first compiles (or
loads the cached) kernels; then ``--repeats`` calls of ``--n-events`` showers each are timed.
Reports the median of ``simulated/s`` (showers drawn, the fiducial cut included -- the
figure the task's 20,000 showers/s target refers to) and ``stored/s`` (showers that passed the
cut and were fully simulated).  Timings on a shared machine are noisy: the load average is
recorded.  Writes ``OUT/ecal_sim.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, print_table, write_result  # noqa: E402

CASES = (("E^-1 2.5-4000 GeV", (2.5, 4000.0)), ("10 GeV", 10.0), ("1 TeV", 1000.0))


def measure(sim, energy, n_events: int, repeats: int, seed: int) -> dict:
    sim.simulate(100, energy_gev=energy, seed=seed)  # compile / load the cache, excluded
    times, stored = [], []
    for k in range(repeats):
        t0 = time.perf_counter()
        batch = sim.simulate(n_events, energy_gev=energy, seed=seed, first_index=k * n_events)
        times.append(time.perf_counter() - t0)
        stored.append(len(batch))
    t = statistics.median(times)
    return {"seconds_median": t, "simulated_per_s": n_events / t,
            "stored_per_s": statistics.median(stored) / t, "best_simulated_per_s":
            n_events / min(times), "fiducial_fraction": sum(stored) / (repeats * n_events)}


def run(args) -> dict:
    import numba

    from astroreco.detectors.ecal.simulate import EcalSimConfig, ShowerSimulator

    config = (EcalSimConfig() if args.slices is None
              else EcalSimConfig(slices_per_layer=args.slices))
    sim = ShowerSimulator(config)
    rows = []
    for threads in args.threads:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        for label, energy in CASES:
            r = measure(sim, energy, args.n_events, args.repeats, args.seed)
            rows.append({"spectrum": label, "threads": numba.get_num_threads(), **r})
    return {"settings": {"n_events": args.n_events, "repeats": args.repeats,
                         "theta_deg": [155.0, 180.0], "particle": "e-",
                         "slices_per_layer": config.slices_per_layer,
                         "numba_threads_available": numba.config.NUMBA_NUM_THREADS,
                         "load_average_1min": os.getloadavg()[0]},
            "rows": rows}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results", help="results directory")
    ap.add_argument("--n-events", type=int, default=20_000, help="showers per timed call")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="numba thread counts to time")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per case")
    ap.add_argument("--slices", type=int, default=None,
                    help="slices_per_layer (default: the configuration's)")
    ap.add_argument("--seed", type=int, default=1, help="run seed")
    args = ap.parse_args(argv)
    for name in ("n_events", "repeats", "slices", "seed"):
        if getattr(args, name) is not None and getattr(args, name) < (0 if name == "seed" else 1):
            ap.error(f"--{name.replace('_', '-')}: expected a positive number")
    if min(args.threads) < 1:
        ap.error("--threads: expected positive numbers")
    return args


def main(argv=None):
    args = parse_args(argv)
    results = run(args)
    print_table(results["rows"], ["spectrum", "threads", "simulated_per_s", "stored_per_s",
                                  "best_simulated_per_s", "fiducial_fraction"])
    m = machine()
    print(f"{m.get('cpu_model', m['processor'])}, {m['cpus']} CPUs, load average "
          f"{results['settings']['load_average_1min']:.2f}")
    path = write_result(args.out, "ecal_sim", results)
    print(f"-> {path}")
    return results


if __name__ == "__main__":
    main()
