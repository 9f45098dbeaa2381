"""IXPE input representations and architectures at an equal training budget, side by side.

    python benchmarks/ixpe_inputs.py --train-events train.h5 [--steps 1500] [--out DIR]

Trains, with the same events, seed, batch size and number of optimiser steps:

- ``hexagonal``: the multitask network on the axial hexagonal crop (hexagonal convolutions);
- ``cartesian``: the same network on the seed paper's 2x square resampling;
- ``seed_vgg``: the seed paper's M-head VGG ensemble (CPU scale, cartesian input, cosine
  loss with multiple-choice weighting);

then reconstructs one independent 100% polarized test file (seed 9301, 2-8 keV lines) and
one unpolarized 3 keV file (seed 9302) with each of them and with the moments analysis, and
reports mu per energy, epsilon_10, the spurious modulation (a network whose angles cluster
along preferred directions shows it, and then its mu is not a measurement of polarization
sensitivity), the training time and the inference speed (tracks/s on tracks in memory,
model's tta).  Runs
found in ``OUT/runs/<name>/model`` are reused (delete them to retrain).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from astroreco.detectors.ixpe import neural, pipeline, stokes  # noqa: E402
from astroreco.detectors.ixpe import train as ixpe_train  # noqa: E402
from astroreco.detectors.ixpe.images import ImageConfig  # noqa: E402
from astroreco.io.store import EventFile  # noqa: E402
from astroreco.stats.directional import spurious_modulation  # noqa: E402
from astroreco.training import OptimConfig, TrainConfig  # noqa: E402
from common import print_table, write_result  # noqa: E402

VARIANTS = {
    "hexagonal": dict(architecture="multitask", image=ImageConfig("hexagonal", 24)),
    "cartesian": dict(architecture="multitask", image=ImageConfig("cartesian", 24)),
    "seed_vgg": dict(architecture="vgg_multihead", image=ImageConfig("cartesian", 24), tta=1),
}
TEST_SEED = 9301
UNPOL_SEED = 9302
TEST_LINES = "2,3,4,5,6,8"


def _train(name, args):
    run_dir = Path(args.out) / "runs" / name
    model = run_dir / "model"
    if (model / "config.json").exists():
        import json

        return model, json.loads((model / "config.json").read_text())["training"][
            "train_seconds"]
    cfg = TrainConfig(max_epochs=1, batch_size=256, seed=args.seed, progress=False,
                      max_steps_per_epoch=args.steps, threads=args.threads,
                      optim=OptimConfig(lr=2e-3))
    t0 = time.perf_counter()
    ixpe_train.train(args.train_events, run_dir, net=neural.IxpeNetConfig(**VARIANTS[name]),
                 config=cfg, val_fraction=0.02, overwrite=True)
    return model, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-events", required=True, help="simulated training file")
    ap.add_argument("--out", default="benchmarks/results/ixpe_inputs")
    ap.add_argument("--steps", type=int, default=1500, help="optimiser steps per variant")
    ap.add_argument("--n-per-energy", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    test = Path(args.out) / "test_polarized.h5"
    n_lines = len(TEST_LINES.split(","))
    if not test.exists():
        pipeline.simulate(test, n_events=n_lines * args.n_per_energy, energy=TEST_LINES,
                          polarization_degree=1.0, polarization_angle_deg=30.0,
                          seed=TEST_SEED, progress=False)
    unpol = Path(args.out) / "test_unpolarized_3kev.h5"
    if not unpol.exists():
        pipeline.simulate(unpol, n_events=args.n_per_energy, energy="3", seed=UNPOL_SEED,
                          progress=False)
    with EventFile(unpol) as ef:
        unpol_tracks = ef.hits()
    pipeline.reconstruct(test, method="moments", progress=False)
    with EventFile(test) as ef:
        truth = ef.truth()
        offsets, hits = ef.hits(0, min(ef.n_events, 20_000))
        methods = {"moments": ef.reco("moments")}
    rows, info = [], {}
    for name in args.variants:
        model, train_s = _train(name, args)
        rec = neural.NeuralReconstructor(model)
        t0 = time.perf_counter()
        rec.reconstruct(offsets, hits["col"], hits["row"], hits["charge"])
        speed = (len(offsets) - 1) / (time.perf_counter() - t0)
        with EventFile(test) as ef:
            off_all, h_all = ef.hits()
        methods[name] = rec.reconstruct(off_all, h_all["col"], h_all["row"], h_all["charge"])
        off_u, h_u = unpol_tracks
        sp = spurious_modulation(rec.reconstruct(off_u, h_u["col"], h_u["row"],
                                                 h_u["charge"])["phi"])
        info[name] = {"spurious_3kev": {k: float(v) for k, v in sp.items()},
                      "model": str(model), "train_seconds": train_s, "tracks_per_s": speed,
                      "tta": rec.config.tta, "network": rec.config.to_dict(),
                      "n_parameters": sum(p.numel() for p in rec.model.parameters())}
    energy = truth["energy_kev"]
    for e in np.unique(np.round(energy, 3)):
        sel = np.isclose(energy, e)
        row = {"energy_kev": float(e)}
        for name, r in methods.items():
            ok = sel & np.isfinite(r["phi"])
            mod = stokes.modulation_factor(r["phi"][ok])
            row[f"mu_{name}"] = mod.mu
            row[f"mu_err_{name}"] = mod.mu_err
            row[f"eps10_{name}"] = stokes.epsilon_10(r["phi"][ok], truth["phi"][ok])[0]
        rows.append(row)
    print_table(rows, ["energy_kev"] + [f"mu_{m}" for m in methods])
    for name, d in info.items():
        sp = d["spurious_3kev"]
        print(f"{name}: {d['tracks_per_s']:.0f} tracks/s (tta {d['tta']}), trained "
              f"{d['train_seconds'] or 'earlier'} s, {d['n_parameters']} parameters; "
              f"spurious modulation at 3 keV: cos 2phi {sp['amplitude_2']:.3f} +- "
              f"{sp['amplitude_err_2']:.3f}, cos 6phi {sp['amplitude_6']:.3f}")
    path = write_result(args.out, "ixpe_inputs", {
        "train_events": args.train_events, "steps": args.steps, "test_seed": TEST_SEED,
        "n_per_energy": args.n_per_energy, "variants": info, "rows": rows})
    print(f"-> {path}")


if __name__ == "__main__":
    main()
