"""Sparse 3D convolution speed: spconv and pure-PyTorch backends against a dense Conv3d net.

    python benchmarks/sparse3d.py [--out benchmarks/results] [--threads 2] [--batch 8]
                                  [--voxels 200] [--repeats 5] [--dense-repeats 3]
                                  [--grid 120] [--dense-grid 48 [120 ...]]
                                  [--dense-batch 2] [--layers paper|cpu] [--seed 1]
                                  [--device cpu|cuda]

Times one training step -- padded arrays -> network -> ``mean(out^2)`` -> backward -- of the
backbone :data:`astroreco.nn.sparse.PAPER_LAYERS` (``--layers cpu``: the CPU-scale one) on
random track-like events: a persistent random walk (direction jittered at every step, half
a voxel per step) from the grid centre, kept until it has ``--voxels`` distinct voxels,
each holding an exponential charge.  Runs

* the sparse backbone with the spconv backend and with the torch backend on the paper grid
  (``--grid``, 120^3), and
* the same two and a dense network (``nn.Conv3d`` / ``nn.MaxPool3d`` with the same layer
  specification: submanifold layers become padded ``k // 2`` convolutions) on each grid of
  ``--dense-grid`` (default 48^3, where dense still fits in memory and time), side by side.

Reports samples/s from the median step time over ``--repeats`` (dense: ``--dense-repeats``)
timed steps after one warm-up step, and from the best.  Timings on a shared machine are
noisy: the load average is recorded.  spconv's CPU kernels run on one torch thread whatever
``--threads`` says (with more they return wrong sums; see :mod:`astroreco.nn.sparse`).
Writes ``OUT/sparse3d.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, print_table, write_result  # noqa: E402

from astroreco.nn.sparse import PAPER_LAYERS  # noqa: E402

LAYER_SETS = {
    "paper": PAPER_LAYERS,
    # the CPU-scale backbone of the TPC networks (60^3 grid of 1 mm voxels)
    "cpu": (("subm", 16, 5), ("subm", 24, 3), ("conv", 32, 4, 2), ("pool", 2),
            ("conv", 32, 3, 2), ("conv", 16, 3, 1)),
}


def track_events(n_events: int, n_voxels: int, grid: int, rng: np.random.Generator):
    """Padded ``(coords (N, V, 3) int64, values (N, V) float32, n_voxels (N,))``.

    Each event is a persistent random walk from the grid centre (steps of half a voxel, the
    direction jittered by a Gaussian of 0.25 per step, reflected at the walls), kept until
    ``n_voxels`` distinct voxels are hit (or 50 n_voxels steps).
    """
    coords = np.zeros((n_events, n_voxels, 3), np.int64)
    counts = np.zeros(n_events, np.int64)
    for i in range(n_events):
        pos = np.full(3, grid / 2.0) + rng.uniform(-0.5, 0.5, 3)
        d = rng.normal(size=3)
        seen = {}
        for _ in range(50 * n_voxels):
            d = d / np.linalg.norm(d) + rng.normal(scale=0.25, size=3)
            step = 0.5 * d / np.linalg.norm(d)
            out = (pos + step < 0) | (pos + step >= grid)
            step[out], d[out] = -step[out], -d[out]  # reflect at the walls
            pos = pos + step
            seen.setdefault(tuple(np.floor(pos).astype(np.int64)), None)
            if len(seen) == n_voxels:
                break
        hit = np.array(list(seen), np.int64)
        coords[i, :len(hit)] = hit
        counts[i] = len(hit)
    values = rng.exponential(10.0, (n_events, n_voxels)).astype(np.float32)
    return coords, values, counts


def dense_net(layers, grid: int):
    """The dense counterpart: ``(N, 1, G, G, G) -> (N, F)``."""
    from torch import nn

    modules, ch = [], 1
    for layer in layers:
        if layer[0] == "subm":
            modules += [nn.Conv3d(ch, layer[1], layer[2], padding=layer[2] // 2), nn.ReLU()]
            ch = layer[1]
        elif layer[0] == "conv":
            modules += [nn.Conv3d(ch, layer[1], layer[2], stride=layer[3]), nn.ReLU()]
            ch = layer[1]
        else:
            modules.append(nn.MaxPool3d(layer[1]))
    return nn.Sequential(*modules, nn.Flatten())


def time_steps(step, repeats: int, sync=lambda: None) -> list[float]:
    step()  # warm-up (allocations, spconv import)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        sync()  # a GPU step is timed to its end, not to its launch
        times.append(time.perf_counter() - t0)
    return times


def measure(method: str, layers, grid: int, batch: int, n_voxels: int, repeats: int,
            seed: int, device: str = "cpu") -> dict:
    """Samples/s of one forward+backward step of ``method`` (spconv, torch, dense)."""
    import torch

    from astroreco.nn.sparse import SparseBackbone3d, from_padded

    rng = np.random.default_rng(seed)
    coords, values, counts = track_events(batch, n_voxels, grid, rng)
    coords, values, counts = (torch.from_numpy(a).to(device)
                              for a in (coords, values, counts))
    torch.manual_seed(seed)
    shape = (grid, grid, grid)
    if method == "dense":
        net = dense_net(layers, grid).to(device)

        def forward():
            x = torch.zeros(batch, 1, *shape, device=device)
            used = torch.arange(coords.shape[1], device=device) < counts[:, None]  # (N, V)
            b = torch.arange(batch, device=device)[:, None].expand_as(used)[used]
            c = coords[used]
            x[b, 0, c[:, 0], c[:, 1], c[:, 2]] = values[used]
            return net(x)
    else:
        net = SparseBackbone3d(layers, in_channels=1, spatial_shape=shape,
                               backend=method).to(device)

        def forward():
            return net(from_padded(coords, values, counts, shape))

    def step():
        net.zero_grad(set_to_none=True)
        out = forward()
        out.square().mean().backward()
        return out

    n_features = step().shape[1]
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    times = time_steps(step, repeats, sync)
    median = statistics.median(times)
    return {"method": method, "device": str(device), "grid": grid, "batch": batch,
            "voxels_per_event": n_voxels,
            "mean_voxels": float(counts.float().mean()), "n_features": int(n_features),
            "step_s_median": median, "step_s_best": min(times), "times_s": times,
            "samples_per_s": batch / median, "samples_per_s_best": batch / min(times)}


def run(args) -> dict:
    import torch

    from astroreco.nn.sparse import available_backends

    torch.set_num_threads(args.threads)
    layers = LAYER_SETS[args.layers]
    backends = [b for b in ("spconv", "torch") if b in available_backends()]
    plan = [(b, args.grid, args.batch, args.repeats) for b in backends]
    for grid in args.dense_grid:
        plan += [(b, grid, args.batch, args.repeats) for b in backends if grid != args.grid]
        plan.append(("dense", grid, args.dense_batch, args.dense_repeats))
    rows = []
    for method, grid, batch, repeats in plan:
        t0 = time.perf_counter()
        row = measure(method, layers, grid, batch, args.voxels, repeats, args.seed,
                      args.device)
        rows.append(row)
        print(f"  {method} @ {grid}^3: {row['samples_per_s']:.3g} samples/s "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    for grid in sorted({r["grid"] for r in rows}):
        same = [r for r in rows if r["grid"] == grid]
        fastest = max(r["samples_per_s"] for r in same)
        for r in same:
            r["slowdown_vs_fastest"] = fastest / r["samples_per_s"]
    return {"config": {"layers": [list(layer) for layer in layers], "layer_set": args.layers,
                       "threads": args.threads, "batch": args.batch,
                       "dense_batch": args.dense_batch, "voxels": args.voxels,
                       "repeats": args.repeats, "dense_repeats": args.dense_repeats,
                       "grid": args.grid,
                       "dense_grid": args.dense_grid, "seed": args.seed,
                       "backends": backends, "spconv_threads": 1, "device": args.device,
                       "load_average_1min": os.getloadavg()[0],
                       "step": "from_padded (sparse) or scatter to dense, forward, "
                               "mean(out^2), backward"},
            "rows": rows}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results", help="results directory")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--batch", type=int, default=8, help="events per step (sparse)")
    ap.add_argument("--dense-batch", type=int, default=2, help="events per step (dense)")
    ap.add_argument("--voxels", type=int, default=200, help="distinct voxels per track")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps after one warm-up")
    ap.add_argument("--dense-repeats", type=int, default=3, help="the same, dense network")
    ap.add_argument("--grid", type=int, default=120, help="the paper grid side")
    ap.add_argument("--dense-grid", type=int, nargs="+", default=[48],
                    help="grid side(s) of the side-by-side comparison with the dense network "
                         "(dense at 120 takes ~15 s per sample on 2 CPU cores)")
    ap.add_argument("--layers", choices=sorted(LAYER_SETS), default="paper",
                    help="layer specification")
    ap.add_argument("--seed", type=int, default=1, help="seed of the tracks and weights")
    ap.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    args = ap.parse_args(argv)
    for name in ("threads", "batch", "dense_batch", "voxels", "repeats", "dense_repeats",
                 "grid"):
        if getattr(args, name) < 1 or min(args.dense_grid) < 1:
            ap.error(f"--{name.replace('_', '-')}: expected a positive number")
    return args


def main(argv=None):
    args = parse_args(argv)
    results = run(args)
    print_table(results["rows"], ["method", "grid", "batch", "mean_voxels", "n_features",
                                  "step_s_median", "samples_per_s", "slowdown_vs_fastest"])
    m = machine()
    print(f"{m.get('cpu_model', m['processor'])}, {args.threads} torch threads")
    path = write_result(args.out, "sparse3d", results)
    print(f"-> {path}")
    return results


if __name__ == "__main__":
    main()
