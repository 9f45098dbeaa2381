"""IXPE classical benchmark: simulator and moments throughput, moments mu(E).

    python benchmarks/ixpe_classical.py --out benchmarks/results [--n-per-energy 50000]

Throughput: tracks per second from physics to pixels (the GPD Monte Carlo) at 4 keV, and
tracks per second of the moments analysis, on all CPUs of this machine (after numba
compilation).  Quality: the moments modulation factor mu at 2, 3, 4, 5, 6 and 8 keV from
100%-polarized samples, with its Stokes error and the modulation-curve fit.  Writes
ixpe_classical.json and ixpe_classical_mu.png.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, write_result  # noqa: E402

from astroreco.detectors.ixpe import plots, stokes  # noqa: E402
from astroreco.detectors.ixpe.modulation_fit import fit_modulation_curve  # noqa: E402
from astroreco.detectors.ixpe.moments import moments_analysis  # noqa: E402
from astroreco.detectors.ixpe.simulate import (EnergySpectrum, GpdSimulator,  # noqa: E402
                                               SourceConfig)

ENERGIES = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0)


def throughput(sim, n=100_000, repeats=3):
    src = SourceConfig(EnergySpectrum.fixed(4.0), 0.0)
    sim.simulate(src, 2000, seed=99)  # compile
    best_sim = 0.0
    best_mom = 0.0
    for r in range(repeats):
        t0 = time.perf_counter()
        b = sim.simulate(src, n, seed=r)
        best_sim = max(best_sim, n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        moments_analysis(b.offsets, b.col, b.row, b.charge)
        best_mom = max(best_mom, len(b) / (time.perf_counter() - t0))
    return {"simulator_tracks_per_s_4kev": best_sim, "moments_tracks_per_s": best_mom,
            "n_tracks": n, "threads": os.cpu_count()}


def modulation(sim, n_per_energy, seed):
    rows = []
    for e in ENERGIES:
        b = sim.simulate(SourceConfig(EnergySpectrum.fixed(e), 1.0, 0.0), n_per_energy,
                         seed=seed + int(10 * e))
        r = moments_analysis(b.offsets, b.col, b.row, b.charge)
        phi = r["phi"][np.isfinite(r["phi"])]
        mod = stokes.modulation_factor(phi)
        fit = fit_modulation_curve(phi)
        eps, _ = stokes.epsilon_10(r["phi"][np.isfinite(r["phi"])],
                                   b.truth["phi"][np.isfinite(r["phi"])])
        rows.append({"method": "moments", "energy_kev": e, "n_events": len(phi),
                     "trigger_efficiency": len(b) / n_per_energy, "mu": mod.mu,
                     "mu_err": mod.mu_err, "mu_fit": fit.mu, "mu_fit_err": fit.mu_err,
                     "epsilon_10": eps, "mean_pixels": float(np.mean(np.diff(b.offsets)))})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--n-per-energy", type=int, default=50_000)
    ap.add_argument("--n-throughput", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sim = GpdSimulator()
    speed = throughput(sim, args.n_throughput)
    print(f"simulator: {speed['simulator_tracks_per_s_4kev']:.0f} tracks/s at 4 keV; "
          f"moments: {speed['moments_tracks_per_s']:.0f} tracks/s "
          f"({speed['threads']} threads)")
    rows = modulation(sim, args.n_per_energy, args.seed)
    print_table(rows, ["energy_kev", "n_events", "mu", "mu_err", "mu_fit", "mu_fit_err",
                       "epsilon_10", "mean_pixels"])
    os.makedirs(args.out, exist_ok=True)
    plots.mu_vs_energy(rows, os.path.join(args.out, "ixpe_classical_mu.png"))
    path = write_result(args.out, "ixpe_classical", {
        "config": {"n_per_energy": args.n_per_energy, "n_throughput": args.n_throughput,
                   "seed": args.seed, "detector": "GpdConfig() defaults"},
        "throughput": speed, "modulation_factor": rows})
    print(f"-> {path}")


if __name__ == "__main__":
    main()
