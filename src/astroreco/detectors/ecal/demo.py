"""The ECAL part of ``astroreco demo``: simulate, reconstruct, evaluate.

Simulates electrons with the seed's spectrum and angles (E^-1 from 2.5 to 4000 GeV, theta
155-180 deg), positrons (the seed's independent check) and electrons in the detector
variant (miscalibrated and dead cells, more noise: the stand-in for the seed's ISS check);
reconstructs each with the centre of gravity, the neighbour-cell ratio (shipped S-curve)
and the shipped network (``models/ecal``; skipped with a note if its weights are absent),
and scores them side by side
(:mod:`astroreco.detectors.ecal.evaluate`: resolution and linearity vs energy, the
``sqrt(a^2/E + b^2)`` fits).  Draws a few shower images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: (label, particle, detector variant)
SETS = (("electrons", "e-", False), ("positrons", "e+", False),
        ("electrons_variant", "e-", True))


def plot_showers(path, out_png, n: int = 3) -> Path:
    """The first ``n`` shower images (layers x cells, log colour) with their true axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from astroreco.detectors.ecal.geometry import EcalGeometry
    from astroreco.detectors.ecal.pipeline import read_images
    from astroreco.io.store import EventFile
    from astroreco.report.figures import save_figure

    g = EcalGeometry()
    images = read_images(path, 0, n)
    with EventFile(path) as ef:
        t = ef.truth(start=0, stop=n)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.2 * n), squeeze=False)
    for i in range(len(images)):
        ax = axes[i, 0]
        img = np.where(images[i] > 0, images[i], np.nan)
        ax.imshow(img, aspect="auto", norm=LogNorm(vmin=1.0), cmap="viridis",
                  extent=(-g.half_width_mm, g.half_width_mm, g.depth_mm, 0))
        z = g.layer_z_mm()
        ax_x, ax_y = g.axis_at(z, t["x0_mm"][i], t["y0_mm"][i], t["theta_deg"][i],
                               t["phi_deg"][i])
        ax.plot(np.where(g.measures_x(), ax_x, ax_y), z, "r.", ms=3)
        ax.set_ylabel("depth (mm)")
        ax.set_title(f"{t['energy_gev'][i]:.1f} GeV, theta {t['theta_deg'][i]:.1f} deg "
                     "(red: true axis in each layer's measured coordinate)", fontsize=8)
    axes[-1, 0].set_xlabel("measured coordinate (mm): x in x layers, y in y layers")
    return save_figure(fig, out_png)


def run(out_dir, *, n_events: int = 20_000, seed: int = 0, model=None,
        progress: bool = True) -> dict:
    """Simulate, reconstruct and evaluate the demo sets under ``out_dir``; write
    ``summary.json``, the shower plot and one evaluation directory per set."""
    from astroreco.detectors.ecal import evaluate
    from astroreco.detectors.ecal.neural import default_model_dir
    from astroreco.detectors.ecal.pipeline import reconstruct, simulate

    # without the shipped weights (a trimmed checkout) the classical methods run alone
    with_nn = model is not None or (default_model_dir() / "weights.safetensors").is_file()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, first = [], None
    for i, (label, particle, variant) in enumerate(SETS):
        path = out / f"showers_{label}.h5"
        s = simulate(path, n_events=n_events, particle=particle, variant=variant,
                     seed=seed + i, overwrite=True, progress=progress)
        for method in ("cog", "cell_ratio"):
            reconstruct(path, method=method, progress=progress)
        if with_nn:
            reconstruct(path, method="nn", model=model, progress=progress)
        ev = evaluate.evaluate(path, out / f"evaluation_{label}")
        rows.append({"set": label, "particle": particle, "variant": variant,
                     "n_stored": s["n_stored"], "table": evaluate.table(ev),
                     "resolution": {m: {q: {k: v.get(k) for k in
                                            ("sigma_at_10gev", "sigma_at_300gev", "fit")}
                                        for q, v in e["quantities"].items()}
                                    for m, e in ev["methods"].items()},
                     "plots": ev["plots"]})
        first = first or path
    plot = plot_showers(first, out / "showers.png")
    summary = {"rows": rows, "plot": str(plot),
               "network": "scored" if with_nn else "no ECAL model weights found"}
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=float))
    tmp.replace(out / "summary.json")
    return summary
