"""The sky part of ``astroreco demo``: simulate patches, detect, evaluate.

Simulates Fermi-LAT-like patches with the interstellar emission model B (the shipped
detector was trained on IEM A: the seed's test of a model on a background it has not seen),
detects sources with the classical significance map + sep (with the true background model,
an oracle, and with the IEM-A model of the same patches, as an analysis of real data would)
and with the shipped U-Net (``models/sky/detector``, Laplacian-of-Gaussian centres) followed
by the position/flux ensemble (``models/sky/refine``; each skipped with a note if its
weights are absent), and scores them side by side
(:mod:`astroreco.detectors.sky.evaluate`: purity, recall vs flux, localisation; sky map,
precision-recall and recall-vs-flux plots, an HTML report).
"""

from __future__ import annotations

import json
from pathlib import Path


def run(out_dir, *, n_patches: int = 200, seed: int = 0, model=None,
        progress: bool = True) -> dict:
    """Simulate ``n_patches`` IEM-B patches under ``out_dir``, detect, evaluate; write
    ``summary.json`` and ``evaluation/``."""
    from astroreco.detectors.sky import evaluate
    from astroreco.detectors.sky.neural import default_model_dir, default_refiner_dir
    from astroreco.detectors.sky.pipeline import detect_classical, detect_neural, simulate

    with_nn = model is not None or (default_model_dir() / "weights.safetensors").is_file()
    refiner = default_refiner_dir()
    refiner = refiner if (refiner / "weights.safetensors").is_file() else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path, model_file = out / "patches.h5", out / "background_model_iem_a.h5"
    sim = simulate(path, n_patches=n_patches, iem="B", seed=seed, overwrite=True,
                   progress=progress)
    # the same patches under IEM A: the analyst's background model, not the true sky
    simulate(model_file, n_patches=n_patches, iem="A", seed=seed, overwrite=True,
             progress=progress)
    names = ["sep", "sep_iem_a"]
    detect_classical(path, method="sep", progress=progress)
    detect_classical(path, method="sep", name="sep_iem_a", background_model=model_file,
                     progress=progress)
    speed = None
    if with_nn:
        s = detect_neural(path, model=model, name="nn", refiner=refiner,
                          background_model=model_file, progress=progress)
        speed = s["patches_per_second"]
        names.append("nn")
    ev = evaluate.evaluate(path, out / "evaluation", names=names)
    summary = {"file": str(path), "n_patches": sim["n_patches"], "iem": "B",
               "background_model": "true for sep, IEM A for sep_iem_a and nn's refiner",
               "n_sources_in_patch": sim["n_sources_in_patch"],
               "methods": {n: {"n_detections": m["counts"]["n_detections"],
                               "purity": m["purity"], "recall_above": m["recall_above"],
                               "f1": m["f1"], "r68_deg": m["localisation"]["r68_deg"],
                               "position_pull_std": (m["position_pulls"] or {}).get("std")}
                           for n, m in ev["methods"].items()},
               "flux_threshold": ev["options"]["flux_threshold"],
               "table": evaluate.table(ev), "plots": ev["plots"], "report": ev["report"],
               "nn_patches_per_second": speed,
               "network": "scored" if with_nn else "no sky detector weights found",
               "refiner": None if refiner is None else str(refiner)}
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=float))
    tmp.replace(out / "summary.json")
    return summary
