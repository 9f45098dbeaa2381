"""ECAL plots: resolution against energy with the ``sqrt(a^2/E + b^2)`` fits, and the
linearity (mean residual against energy), one curve per method, as in the seed's slides."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from astroreco.report.figures import save_figure  # noqa: E402


def plot_resolution(curves: dict, labels: dict, quantity: str, unit: str, path,
                    title: str = "") -> Path:
    """Per method: the Gaussian-core resolution per energy bin (points with errors) and the
    fitted ``sqrt(a^2/E + b^2)`` (line, parameters in the legend)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, (m, q) in enumerate(curves.items()):
        rows = q["bins"]
        if not rows:
            continue
        e = np.array([r["e_mean"] for r in rows])
        s = np.array([r["sigma"] for r in rows])
        ds = np.array([r["sigma_err"] for r in rows])
        colour = f"C{i}"
        lab = labels.get(m, m)
        if "fit" in q:
            f = q["fit"]
            lab += f": a = {f['a']:.3g} ± {f['a_err']:.2g}, b = {f['b']:.3g} ± {f['b_err']:.2g}"
            grid = np.geomspace(min(e.min(), 2.0), max(e.max(), 10.0), 200)
            ax.plot(grid, np.sqrt(f["a"] ** 2 / grid + f["b"] ** 2), color=colour, lw=1)
        ax.errorbar(e, s, yerr=ds, fmt="o", ms=4, color=colour, label=lab)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("true energy (GeV)")
    ax.set_ylabel(f"{quantity} resolution ({unit})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_linearity(curves: dict, labels: dict, quantity: str, unit: str, path,
                   title: str = "") -> Path:
    """Per method: the mean residual (Gaussian core) per energy bin, with its error."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, (m, q) in enumerate(curves.items()):
        rows = q["bins"]
        if not rows:
            continue
        e = np.array([r["e_mean"] for r in rows])
        mu = np.array([r["mean"] for r in rows])
        dmu = np.array([r["mean_err"] for r in rows])
        ax.errorbar(e * (1 + 0.03 * i), mu, yerr=dmu, fmt="o-", ms=4, lw=0.8, color=f"C{i}",
                    label=labels.get(m, m))
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("true energy (GeV)")
    ax.set_ylabel(f"mean {quantity} residual ({unit})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
