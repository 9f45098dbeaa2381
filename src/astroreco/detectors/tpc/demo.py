"""The TPC part of ``astroreco demo``: simulate, reconstruct, evaluate.

Simulates the seed paper's two extreme test conditions (40 keV / 443 um and 50 keV /
200 um), reports containment, path length and electrons per track, and draws one track of
each in three projections with its true initial direction.  Each set is reconstructed by
the classical Non-ML (the seed's parameters), the Best-Expected reference (simulation
truth; not an analysis) and the shipped HCN network, and scored on the same events
(:mod:`astroreco.detectors.tpc.evaluate`: cosine distance, efficiency, the HCN's
efficiency-cut curve and kappa calibration plots).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SETS = (("40kev_443um", "40", "443"), ("50kev_200um", "50", "200"))
#: Best-Expected sphere radius per set, tuned on independent validation events
#: (``astroreco tpc tune``; benchmarks/tpc.py)
EPSILON_CM = {"40kev_443um": 0.3, "50kev_200um": 0.25}


def plot_tracks(files, out_png) -> Path:
    """Three projections of the first track of each file, with the true direction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from astroreco.detectors.tpc.pipeline import read_voxels
    from astroreco.io.store import EventFile

    fig, axes = plt.subplots(len(files), 3, figsize=(10, 3.4 * len(files)), squeeze=False)
    for row, (label, path) in enumerate(files.items()):
        offsets, coords, electrons = read_voxels(path, 0, 1)
        with EventFile(path) as ef:
            t = ef.truth(start=0, stop=1)
        xyz = (coords + 0.5) * 0.05
        start = np.array([t[f"start_{a}_cm"][0] for a in "xyz"])
        d = np.array([t[f"dir_{a}"][0] for a in "xyz"])
        for col, (a, b) in enumerate(((0, 1), (0, 2), (1, 2))):
            ax = axes[row, col]
            ax.scatter(xyz[:, a], xyz[:, b], c=electrons, s=4, cmap="viridis")
            ax.annotate("", xy=(start[a] + d[a], start[b] + d[b]), xytext=(start[a], start[b]),
                        arrowprops=dict(color="red", arrowstyle="->", lw=1.5))
            ax.set_xlabel("xyz"[a] + " (cm)")
            ax.set_ylabel("xyz"[b] + " (cm)")
            ax.set_aspect("equal")
            ax.set_title(f"{label}: {'xyz'[a]}-{'xyz'[b]}", fontsize=9)
    fig.suptitle("TPC electron recoils (voxel colour: electrons; red: true initial "
                 "direction, 1 cm)", fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    tmp = out_png.with_name(f".{out_png.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out_png)
    return out_png


def run(out_dir, *, n_events: int = 500, seed: int = 0, model=None,
        progress: bool = True) -> dict:
    """Simulate, reconstruct and evaluate the two demo sets under ``out_dir``; write
    ``summary.json``, the track plot and one evaluation directory per set.

    ``model``: the HCN model directory (default: the shipped ``models/tpc``).
    """
    from astroreco.detectors.tpc import evaluate
    from astroreco.detectors.tpc.pipeline import reconstruct, simulate

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, files = [], {}
    for i, (label, energy, sigma) in enumerate(SETS):
        path = out / f"recoils_{label}.h5"
        s = simulate(path, n_events=n_events, energy=energy, sigma=sigma, seed=seed + i,
                     overwrite=True, progress=progress)
        reconstruct(path, method="nonml", progress=progress)
        reconstruct(path, method="best_expected", epsilon_cm=EPSILON_CM[label],
                    progress=progress)
        reconstruct(path, method="nn", name="hcn", model=model, progress=progress)
        ev = evaluate.evaluate(path, out / f"evaluation_{label}", min_count=50)
        rows.append({"set": label, "energy_kev": float(energy), "sigma_um": float(sigma),
                     **{k: s[k] for k in ("n_simulated", "n_stored", "containment",
                                          "mean_length_cm", "mean_electrons")},
                     "cos_dist": {m: v["cos_dist"] for m, v in ev["methods"].items()},
                     "efficiency": {m: v["efficiency"] for m, v in ev["methods"].items()},
                     "hcn_cos_dist_cut_5pct":
                         ev["kappa_methods"]["hcn"]["cos_dist_cut_5pct"],
                     "plots": ev["plots"]})
        files[label] = path
    plot = plot_tracks(files, out / "tracks.png")
    summary = {"rows": rows, "plot": str(plot)}
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(out / "summary.json")
    return summary
