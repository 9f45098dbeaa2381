"""IXPE plots: modulation curves with their fit, mu(E), spurious modulation, impact-point
RMSE(E), calibration of the predicted kappa, tracks drawn on their hexagons.

Every plot shows all methods side by side, each method in one colour throughout
(:func:`method_colors`)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from astroreco.detectors.ixpe.geometry import IXPE_GRID  # noqa: E402
from astroreco.report.figures import save_figure  # noqa: E402


_save = save_figure


def modulation_curves(fits: dict, path, title="") -> Path:
    """One panel per energy: histogram of phi and the fitted A + B cos^2(phi - phi0).

    ``fits`` maps a label (e.g. '4 keV') to {method: :class:`~astroreco.detectors.ixpe.modulation_fit.ModulationFit`}.
    """
    labels = list(fits)
    n = len(labels)
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    colors = method_colors([m for label in labels for m in fits[label]])
    for ax, label in zip(axes.flat, labels):
        for method, fit in fits[label].items():
            edges = np.asarray(fit.bin_edges)
            centres = 0.5 * (edges[1:] + edges[:-1])
            counts = np.asarray(fit.counts)
            color = colors[method]
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


#: fixed colours of the known methods, so that every plot shows a method in one colour
_METHOD_COLORS = {"moments": "C0", "nn": "C1"}


def method_colors(methods) -> dict:
    """A matplotlib colour per method: fixed for moments and nn, then C2, C3, ..."""
    out, extra = {}, 2
    for m in dict.fromkeys(methods):
        if m in _METHOD_COLORS:
            out[m] = _METHOD_COLORS[m]
        else:
            out[m] = f"C{extra}"
            extra += 1
    return out


def _series(rows: list[dict]) -> dict:
    """Rows grouped into curves over energy: one per method, or per (method, file) when one
    method has the same energy in several files.  Maps label -> (method, rows by energy)."""
    keys = [(r["method"], r["energy_kev"]) for r in rows]
    by_file = len(keys) != len(set(keys))
    out = {}
    for r in rows:
        label = f"{r['method']} ({r.get('file', '')})" if by_file else r["method"]
        out.setdefault(label, (r["method"], []))[1].append(r)
    return {k: (m, sorted(rs, key=lambda r: r["energy_kev"])) for k, (m, rs) in
            sorted(out.items())}


def mu_vs_energy(rows: list[dict], path, key="mu", ylabel="modulation factor mu") -> Path:
    """mu(E) of every method side by side, from rows with 'method', 'energy_kev', key and
    key+'_err' (and 'file', used when several files hold the same method and energy)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    series = _series(rows)
    colors = method_colors([m for m, _ in series.values()])
    for i, (label, (method, rs)) in enumerate(series.items()):
        ax.errorbar([r["energy_kev"] for r in rs], [r[key] for r in rs],
                    yerr=[r.get(key + "_err", 0.0) for r in rs], marker="os^vD<>"[i % 7],
                    capsize=3, label=label, color=colors[method])
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
    series = _series(rows)
    colors = method_colors([m for m, _ in series.values()])
    for i, (label, (method, rs)) in enumerate(series.items()):
        for j, k in enumerate((2, 4, 6)):
            key = f"amplitude_{k}"
            if key not in rs[0]:
                continue
            ax.errorbar(np.array([r["energy_kev"] for r in rs]) + 0.05 * (3 * i + j),
                        [r[key] for r in rs], yerr=[r[key + "_err"] for r in rs],
                        marker="os^"[j], ls="none", color=colors[method],
                        label=f"{label}, cos {k}phi")
    ax.set_xlabel("energy (keV)")
    ax.set_ylabel("amplitude (unpolarized data)")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def impact_rmse(rows: list[dict], path) -> Path:
    """Impact-point RMSE in x and y versus energy for every method, and the ratio of each
    method to the moments analysis when it is there."""
    rows = [r for r in rows if "rmse_x_mm" in r]
    series = _series(rows)
    colors = method_colors([m for m, _ in series.values()])
    ref = {lab: rs for lab, (m, rs) in series.items() if m == "moments"}
    others = {lab: v for lab, v in series.items() if v[0] != "moments"}
    ncol = 3 if ref and others else 2
    fig, axes = plt.subplots(1, ncol, figsize=(4.4 * ncol, 3.8), squeeze=False)
    for j, axis in enumerate("xy"):
        ax = axes[0, j]
        for i, (label, (method, rs)) in enumerate(series.items()):
            key = f"rmse_{axis}_mm"
            ax.errorbar([r["energy_kev"] for r in rs], [1e3 * r[key] for r in rs],
                        yerr=[1e3 * r.get(key + "_err", 0.0) for r in rs],
                        marker="os^vD<>"[i % 7], capsize=3, color=colors[method], label=label)
        ax.set_xlabel("energy (keV)")
        ax.set_ylabel(f"impact point RMSE in {axis} (um)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if ncol == 3:
        ax = axes[0, 2]
        base = {r["energy_kev"]: r for rs in ref.values() for r in rs}
        for i, (label, (method, rs)) in enumerate(others.items()):
            for axis, ls in (("x", "-"), ("y", "--")):
                pts = [(r["energy_kev"], r[f"rmse_{axis}_mm"] / base[r["energy_kev"]][
                    f"rmse_{axis}_mm"]) for r in rs if r["energy_kev"] in base]
                if pts:
                    e, q = zip(*pts)
                    ax.plot(e, q, ls=ls, marker="o", color=colors[method],
                            label=f"{label} / moments, {axis}")
        ax.axhline(1.0, color="k", lw=0.5)
        ax.set_xlabel("energy (keV)")
        ax.set_ylabel("RMSE ratio to moments")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def kappa_calibration(blocks: list[dict], path) -> Path:
    """Calibration of the predicted concentration, one series per file and method.

    Left: measured mean cos 2(phi_reco - phi_true) against the predicted expected modulation
    mean I1/I0(kappa) per kappa bin, with the diagonal.  Right: the concentration fitted to
    the measured mean (A^-1) against the predicted one (A^-1 of the predicted mean), log-log.
    Each block holds 'method', 'file' and the 'bins' of
    :func:`astroreco.stats.calibration.kappa_calibration`.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    files = list(dict.fromkeys(b["file"] for b in blocks))
    colors = method_colors([b["method"] for b in blocks])
    lo, hi = np.inf, 0.0
    for i, b in enumerate(blocks):
        bins = b["bins"]
        if len(files) > 1:
            color = plt.cm.viridis(files.index(b["file"]) / max(len(files) - 1, 1))
            label = f"{b['method']} ({b['file']})"
        else:
            color, label = colors[b["method"]], b["method"]
        marker = "os^vD<>"[sorted(colors).index(b["method"]) % 7]
        pred = np.array([x["predicted"] for x in bins])
        meas = np.array([x["measured"] for x in bins])
        err = np.array([x["measured_err"] for x in bins])
        axes[0].errorbar(pred, meas, yerr=err, marker=marker, ms=4, capsize=2, ls="-",
                         lw=0.8, color=color, label=label)
        kp = np.array([x["kappa_equivalent"] for x in bins])
        kf = np.array([x["kappa_fit"] for x in bins])
        kf_err = np.array([x["kappa_fit_err"] for x in bins])
        ok = (kp > 0) & (kf > 0) & np.isfinite(kf) & np.isfinite(kf_err)
        if ok.any():
            low = np.minimum(kf_err[ok], 0.95 * kf[ok])  # keep the bar on the log axis
            axes[1].errorbar(kp[ok], kf[ok], yerr=[low, kf_err[ok]], marker=marker, ms=4,
                             capsize=2, ls="-", lw=0.8, color=color, label=label)
            lo = min(lo, kp[ok].min(), kf[ok].min())
            hi = max(hi, kp[ok].max(), kf[ok].max())
    axes[0].plot([0, 1], [0, 1], color="k", lw=0.7, ls=":", label="calibrated")
    axes[0].set_xlim(0, 1)
    axes[0].set_ylim(min(0.0, axes[0].get_ylim()[0]), 1)
    axes[0].set_xlabel("predicted expected modulation  mean I1/I0(kappa)")
    axes[0].set_ylabel("measured  mean cos 2(phi_reco - phi_true)")
    if hi > 0:
        xx = np.array([lo / 1.5, hi * 1.5])
        axes[1].plot(xx, xx, color="k", lw=0.7, ls=":")
        axes[1].set_xscale("log")
        axes[1].set_yscale("log")
    axes[1].set_xlabel("predicted kappa  (A^-1 of the predicted mean)")
    axes[1].set_ylabel("fitted kappa  (A^-1 of the measured mean)")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
