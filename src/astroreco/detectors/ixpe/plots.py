"""IXPE plots: modulation curves with their fit, mu(E), tracks drawn on their hexagons."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from astroreco.detectors.ixpe.geometry import IXPE_GRID  # noqa: E402


def _save(fig, path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def modulation_curves(fits: dict, path, title="") -> Path:
    """One panel per energy: histogram of phi and the fitted A + B cos^2(phi - phi0).

    ``fits`` maps a label (e.g. '4 keV') to {method: ModulationFit}.
    """
    labels = list(fits)
    n = len(labels)
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    for ax, label in zip(axes.flat, labels):
        for i, (method, fit) in enumerate(fits[label].items()):
            edges = np.asarray(fit.bin_edges)
            centres = 0.5 * (edges[1:] + edges[:-1])
            counts = np.asarray(fit.counts)
            color = f"C{i}"
            ax.errorbar(np.degrees(centres), counts, yerr=np.sqrt(np.maximum(counts, 1)),
                        fmt=".", ms=2, color=color, alpha=0.6)
            xx = np.linspace(-math.pi, math.pi, 400)
            ax.plot(np.degrees(xx), fit.a + fit.b * np.cos(xx - fit.phi0) ** 2, color=color,
                    label=f"{method}: mu={fit.mu:.3f}+-{fit.mu_err:.3f}")
        ax.set_title(label)
        ax.set_xlabel("reconstructed angle (deg)")
        ax.set_ylabel("events / bin")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def mu_vs_energy(rows: list[dict], path, key="mu", ylabel="modulation factor mu") -> Path:
    """mu(E) per method from rows with 'method', 'energy_kev', key and key+'_err'."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, method in enumerate(sorted({r["method"] for r in rows})):
        rs = sorted((r for r in rows if r["method"] == method), key=lambda r: r["energy_kev"])
        ax.errorbar([r["energy_kev"] for r in rs], [r[key] for r in rs],
                    yerr=[r.get(key + "_err", 0.0) for r in rs], marker="o", capsize=3,
                    label=method, color=f"C{i}")
    ax.set_xlabel("energy (keV)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def hexagon_vertices(x, y, pitch):
    """Vertices (n, 6, 2) of pointy-topped hexagons centred on (x, y) (mm)."""
    r = pitch / math.sqrt(3.0)
    ang = np.radians(30.0 + 60.0 * np.arange(6))
    return np.stack([x[:, None] + r * np.cos(ang)[None, :] * 1.0,
                     y[:, None] + r * np.sin(ang)[None, :] * 1.0], axis=-1)


def draw_track(ax, col, row, charge, *, reco=None, truth=None, grid=IXPE_GRID):
    """Draw one track on its hexagons; overlay impact points and directions.

    ``reco`` and ``truth`` map a label to (x_mm, y_mm, phi); the axis is drawn as an arrow
    from the point along phi.
    """
    x, y = grid.centre(np.asarray(col), np.asarray(row))
    verts = hexagon_vertices(np.asarray(x, float), np.asarray(y, float), grid.pitch_mm)
    pc = PolyCollection(verts, array=np.asarray(charge, float), cmap="viridis",
                        edgecolors="face", linewidths=0.2)
    ax.add_collection(pc)
    span = max(np.ptp(x), np.ptp(y), 0.2) * 0.6 + 0.1
    cx, cy = 0.5 * (x.min() + x.max()), 0.5 * (y.min() + y.max())
    ax.set_xlim(cx - span, cx + span)
    ax.set_ylim(cy - span, cy + span)
    ax.set_aspect("equal")
    styles = {"truth": ("white", "*"), "moments": ("red", "o"), "nn": ("orange", "s")}
    for group in (truth or {}, reco or {}):
        for i, (label, (px, py, phi)) in enumerate(group.items()):
            color, marker = styles.get(label, (f"C{i + 3}", "D"))
            ax.plot([px], [py], marker=marker, color=color, ms=7, mec="k", ls="none",
                    label=label)
            if np.isfinite(phi):
                length = span * 0.7
                ax.annotate("", xy=(px + length * math.cos(phi), py + length * math.sin(phi)),
                            xytext=(px, py),
                            arrowprops=dict(arrowstyle="->", color=color, lw=1.5))
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    return pc


def example_tracks(tracks: list[dict], path, ncol=3) -> Path:
    """A grid of example tracks; each dict holds col, row, charge, reco, truth, title."""
    n = len(tracks)
    nrow = max(1, math.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 4.0 * nrow), squeeze=False)
    for ax, t in zip(axes.flat, tracks):
        draw_track(ax, t["col"], t["row"], t["charge"], reco=t.get("reco"),
                   truth=t.get("truth"))
        ax.set_title(t.get("title", ""), fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def spurious_modulation(rows: list[dict], path) -> Path:
    """Spurious modulation amplitude per harmonic and energy, with the noise level."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, method in enumerate(sorted({r["method"] for r in rows})):
        rs = sorted((r for r in rows if r["method"] == method), key=lambda r: r["energy_kev"])
        for j, k in enumerate((2, 4, 6)):
            key = f"amplitude_{k}"
            if key not in rs[0]:
                continue
            ax.errorbar(np.array([r["energy_kev"] for r in rs]) + 0.05 * (3 * i + j),
                        [r[key] for r in rs], yerr=[r[key + "_err"] for r in rs],
                        marker="os^"[j], ls="none", color=f"C{i}",
                        label=f"{method}, cos {k}phi")
    ax.set_xlabel("energy (keV)")
    ax.set_ylabel("amplitude (unpolarized data)")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)
