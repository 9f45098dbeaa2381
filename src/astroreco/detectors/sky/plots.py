"""Sky detection plots: a patch with its true and detected sources, recall against the true
flux, the precision-recall curves, localisation against flux, pulls and confusion matrices,
every method side by side on the same axes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import PowerNorm  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from astroreco.report.figures import save_figure  # noqa: E402

__all__ = ["plot_sky_patch", "plot_recall_vs_flux", "plot_precision_recall",
           "plot_localisation_vs_flux", "plot_pulls", "plot_confusion"]

_MARKERS = ("x", "+", "1", "^", "s", "D", "v", "*")
_CLASS_COLOURS = {0: "tab:cyan", 1: "tab:orange"}   # AGN, PSR
_FLUX_LABEL = r"true $S$(1-100 GeV) (ph cm$^{-2}$ s$^{-1}$)"


def _log_flux_axis(ax, edges=None):
    """Log x axis of the true flux: the bins' full range, labels on decades only."""
    ax.set_xscale("log")
    if edges is not None and len(edges) >= 2:
        ax.set_xlim(edges[0], edges[-1])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(_FLUX_LABEL)


def _finish(ax, title, legend=True):
    ax.grid(True, which="both", alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)


def plot_sky_patch(counts_map, truth: dict, detections: dict, path, title: str = "", *,
                   match_radius_pix: float | None = None,
                   flux_threshold: float | None = None) -> Path:
    """A patch's counts (summed over energy, square-root stretch) with the true sources as
    circles (area growing with log flux; cyan AGN, orange pulsars; faint ones, below
    ``flux_threshold``, thin) and each method's detections as its own marker.

    Parameters
    ----------
    counts_map : array (E, H, W) or (H, W)
        Counts of the patch.
    truth : dict of arrays
        The patch's sources: ``x_pix``, ``y_pix``, ``flux``; optional ``in_patch``, ``cls``.
    detections : dict name -> dict of arrays
        The patch's detections per method: ``x_pix``, ``y_pix``.
    match_radius_pix : float, optional
        Draws the match radius (dashed) around the true sources above the threshold.
    """
    img = np.asarray(counts_map, np.float64)
    if img.ndim == 3:
        img = img.sum(axis=0)   # (E, H, W) -> (H, W)
    h, w = img.shape
    fig, ax = plt.subplots(figsize=(7.0, 6.2))
    im = ax.imshow(img, origin="lower", cmap="Greys", norm=PowerNorm(0.5, vmin=0,
                                                                     vmax=max(img.max(), 1)),
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="counts (all energy bins)")
    ax.set_aspect("equal")
    x = np.asarray(truth.get("x_pix", []), np.float64)
    y = np.asarray(truth.get("y_pix", []), np.float64)
    flux = np.asarray(truth.get("flux", np.ones(x.size)), np.float64)
    inside = np.asarray(truth.get("in_patch", np.ones(x.size, bool)), bool)
    cls = np.asarray(truth.get("cls", np.zeros(x.size, int)), int)
    bright = flux >= (flux_threshold or 0.0)
    if x.size:
        lf = np.log10(np.clip(flux, 1e-13, None))
        size = 8 + 30 * np.clip(lf + 11.5, 0, None) ** 2   # 1e-11: ~15, 1e-9: ~200 pt^2
        for c, colour in _CLASS_COLOURS.items():
            for sel, lw, alpha in ((inside & (cls == c) & bright, 1.4, 1.0),
                                   (inside & (cls == c) & ~bright, 0.6, 0.6)):
                if sel.any():
                    label = (f"true {'AGN' if c == 0 else 'PSR'}"
                             + (f", S >= {flux_threshold:.1g}" if flux_threshold and lw > 1
                                else ", fainter" if flux_threshold else ""))
                    ax.scatter(x[sel], y[sel], s=size[sel], facecolors="none",
                               edgecolors=colour, linewidths=lw, alpha=alpha, label=label)
        if match_radius_pix:
            for xi, yi in zip(x[inside & bright], y[inside & bright]):
                ax.add_patch(plt.Circle((xi, yi), match_radius_pix, fill=False, ls="--",
                                        lw=0.6, color="tab:green"))
    for i, (name, det) in enumerate(detections.items()):
        dx = np.asarray(det.get("x_pix", []), np.float64)
        dy = np.asarray(det.get("y_pix", []), np.float64)
        ax.scatter(dx, dy, marker=_MARKERS[i % len(_MARKERS)], s=45, color=f"C{i + 2}",
                   linewidths=1.3, label=f"{name} ({dx.size})")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(-0.5, h - 0.5)
    ax.set_xlabel("x (pixel; l decreases to the right)")
    ax.set_ylabel("y (pixel; b increases upwards)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.1), ncol=3,
              frameon=False)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_recall_vs_flux(curves: dict, path, title: str = "", *,
                        flux_threshold: float | None = None) -> Path:
    """Per method: recall (completeness) in bins of the true flux, Wilson 68 % intervals."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (name, c) in enumerate(curves.items()):
        xc = np.asarray(c["flux_centre"], np.float64)
        r = np.array([np.nan if v is None else v for v in c["recall"]], np.float64)
        lo = np.array([np.nan if v is None else v for v in c["recall_lo"]], np.float64)
        hi = np.array([np.nan if v is None else v for v in c["recall_hi"]], np.float64)
        ok = np.isfinite(r)
        shift = 1 + 0.04 * (i - (len(curves) - 1) / 2)
        ax.errorbar(xc[ok] * shift, r[ok], yerr=np.clip([r[ok] - lo[ok], hi[ok] - r[ok]], 0, None), fmt="o-",
                    ms=4, lw=0.9, capsize=2, color=f"C{i}", label=name)
    if flux_threshold:
        ax.axvline(flux_threshold, color="k", ls=":", lw=0.8, label="flux threshold")
    _log_flux_axis(ax, next(iter(curves.values()))["flux_edges"] if curves else None)
    ax.set_ylim(-0.03, 1.05)
    ax.set_ylabel("recall (matched / true)")
    _finish(ax, title)
    return save_figure(fig, path)


def plot_precision_recall(curves: dict, path, title: str = "", *,
                          purity_target: float | None = None,
                          flux_threshold: float | None = None) -> Path:
    """Per method: purity against recall (above the flux threshold) as the ranking threshold
    goes down; the operating point (best recall at purity >= target) marked."""
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    for i, (name, (curve, op)) in enumerate(curves.items()):
        r = np.array([np.nan if v is None else v for v in curve["recall"]], np.float64)
        p = np.array([np.nan if v is None else v for v in curve["purity"]], np.float64)
        ax.plot(r, p, "-", lw=1.2, color=f"C{i}", label=name)
        if op and op.get("recall") is not None:
            ax.plot(op["recall"], op["purity"], "o", ms=7, mfc="none", color=f"C{i}",
                    label=f"{name}: R = {op['recall']:.2f} at t = {op['threshold']:.3g}")
    if purity_target:
        ax.axhline(purity_target, color="k", ls=":", lw=0.8, label=f"purity {purity_target:g}")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    what = f" (S >= {flux_threshold:.2g})" if flux_threshold else ""
    ax.set_xlabel(f"recall{what}")
    ax.set_ylabel("purity (precision)")
    _finish(ax, title)
    return save_figure(fig, path)


def plot_localisation_vs_flux(curves: dict, path, title: str = "", *,
                              match_radius_deg: float | None = None) -> Path:
    """Per method: 68 % (solid) and 95 % (dashed) quantiles of the angular offset of the
    matched pairs in bins of the true flux (bins with at least 5 pairs)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (name, loc) in enumerate(curves.items()):
        rows = [b for b in loc["per_bin"] if b.get("r68_deg") is not None]
        if not rows:
            continue
        xc = np.sqrt([b["flux_lo"] * b["flux_hi"] for b in rows])
        ax.plot(xc, [b["r68_deg"] for b in rows], "o-", ms=4, lw=1.0, color=f"C{i}",
                label=f"{name} 68 %")
        ax.plot(xc, [b["r95_deg"] for b in rows], "s--", ms=3, lw=0.8, color=f"C{i}",
                label=f"{name} 95 %")
    if match_radius_deg:
        ax.axhline(match_radius_deg, color="k", ls=":", lw=0.8, label="match radius")
    rows = [b for loc in curves.values() for b in loc["per_bin"]]
    _log_flux_axis(ax, [rows[0]["flux_lo"], rows[-1]["flux_hi"]] if rows else None)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("angular offset (deg)")
    _finish(ax, title)
    return save_figure(fig, path)


def plot_pulls(pulls: dict, path, title: str = "", xlabel: str = "pull",
               limit: float = 5.0) -> Path:
    """Per method: histogram (density) of the pulls in ``[-limit, limit]`` with the unit
    Gaussian overlaid; mean and standard deviation in the legend."""
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    bins = np.linspace(-limit, limit, 41)
    for i, (name, p) in enumerate(pulls.items()):
        p = np.asarray(p, np.float64)
        p = p[np.isfinite(p)]
        if not p.size:
            continue
        ax.hist(np.clip(p, -limit, limit), bins=bins, density=True, histtype="step", lw=1.3,
                color=f"C{i}",
                label=f"{name}: mean {p.mean():+.2f}, std {p.std():.2f} (n = {p.size})")
    grid = np.linspace(-limit, limit, 300)
    ax.plot(grid, np.exp(-grid ** 2 / 2) / np.sqrt(2 * np.pi), "k--", lw=1.0,
            label="unit Gaussian")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    _finish(ax, title)
    return save_figure(fig, path)


def plot_confusion(matrices: dict, path, title: str = "") -> Path:
    """One panel per method: the confusion matrix (rows true, columns predicted), colour =
    fraction of the true class, counts written in the cells."""
    n = max(len(matrices), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n + 0.6, 3.4), squeeze=False)
    for ax, (name, c) in zip(axes[0], matrices.items()):
        mat = np.asarray(c["matrix"], np.float64)
        frac = mat / np.maximum(mat.sum(axis=1, keepdims=True), 1)
        ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        for (r, k), v in np.ndenumerate(mat):
            ax.text(k, r, f"{int(v)}\n{frac[r, k]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if frac[r, k] > 0.6 else "black")
        labels = c.get("labels", [str(k) for k in range(mat.shape[0])])
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        acc = c.get("accuracy")
        ax.set_title(f"{name}: accuracy {'-' if acc is None else f'{acc:.3f}'}", fontsize=9)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
