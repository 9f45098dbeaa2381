"""TPC plots: the seed's Figure 5 (cosine distance against the efficiency cut) and Figure 6
(calibration of the predicted von Mises-Fisher concentration).

PNGs are written atomically (temporary file beside the target, then renamed) with
:func:`astroreco.report.figures.save_figure`.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from astroreco.errors import InputError  # noqa: E402
from astroreco.stats.vmf_calibration import vmf_expected_angle  # noqa: E402
from astroreco.report.figures import save_figure  # noqa: E402

#: marker and colour of the seed's methods (its Figure 5); other labels cycle through C2...
_POINT_STYLES = {"RCN": ("D", "red"), "Non-ML": ("o", "orange"),
                 "Non-ML tuned": ("*", "black")}

#: keys every row of :func:`~astroreco.stats.vmf_calibration.vmf_calibration` holds
_ROW_KEYS = ("kappa_lo", "kappa_hi", "kappa_centre", "mean_angle", "mean_angle_err",
             "kappa_fit", "kappa_fit_err", "enough")


_save = save_figure


def _finite(x, name) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected numbers") from None
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)):
        raise InputError(f"{name}: expected a non-empty 1D array of finite numbers")
    return a


def plot_efficiency_curve(curve: dict, points, out_png, *, title: str,
                          best_expected: float | None = None) -> Path:
    """Cosine distance against the efficiency cut: the seed's Figure 5.

    Parameters
    ----------
    curve : dict
        :func:`~astroreco.stats.directional.efficiency_curve` of the network with a predicted
        concentration (``cut`` fractions, ``mean_cos_dist``), drawn as a blue curve;
        ``label`` (default ``HCN``) names it.
    points : sequence of dict
        Other methods, one marker each: ``label``, ``cut`` (fraction of tracks omitted, e.g.
        ``1 - efficiency`` for Non-ML, 0 for RCN), ``mean_cos_dist`` and optionally
        ``mean_cos_dist_truth_ht`` (the same with the correct head-tail: a downward arrow).
        ``RCN``, ``Non-ML`` and ``Non-ML tuned`` get the seed's markers.
    out_png : path-like
        PNG to write (replaced if it exists).
    title : str
        Plot title, e.g. ``40 keV, 443 um``.
    best_expected : float, optional
        Best-Expected cosine distance: a horizontal line, and a dashed vertical line where
        the curve first drops below it.

    Returns
    -------
    pathlib.Path
        ``out_png``.
    """
    if not isinstance(curve, dict) or "cut" not in curve or "mean_cos_dist" not in curve:
        raise InputError("curve: expected a dict with 'cut' and 'mean_cos_dist' "
                         "(astroreco.stats.directional.efficiency_curve)")
    cut = _finite(curve["cut"], "curve['cut']")
    cd = _finite(curve["mean_cos_dist"], "curve['mean_cos_dist']")
    if cut.shape != cd.shape:
        raise InputError(f"curve: {cut.size} cuts but {cd.size} cosine distances")
    rows = list(points or [])
    for p in rows:
        if not isinstance(p, dict) or not {"label", "cut", "mean_cos_dist"} <= set(p):
            raise InputError("points: expected dicts with 'label', 'cut' and 'mean_cos_dist'")
        values = [p["cut"], p["mean_cos_dist"], p.get("mean_cos_dist_truth_ht", 0.0)]
        if not all(isinstance(v, (int, float, np.floating)) and math.isfinite(v)
                   for v in values) or not 0.0 <= p["cut"] < 1.0:
            raise InputError(f"points[{p['label']!r}]: expected a cut in [0, 1) and finite "
                             f"cosine distances")
    if best_expected is not None and not math.isfinite(float(best_expected)):
        raise InputError(f"best_expected: expected a finite cosine distance, got "
                         f"{best_expected}")
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    order = np.argsort(cut)
    x, y = 100.0 * cut[order], cd[order]
    ax.plot(x, y, color="C0", lw=1.8, label=curve.get("label", "HCN"))
    extra = 2
    for p in rows:
        if p["label"] in _POINT_STYLES:
            marker, color = _POINT_STYLES[p["label"]]
        else:
            marker, color = "s", f"C{extra}"
            extra += 1
        px, py = 100.0 * p["cut"], p["mean_cos_dist"]
        ax.plot([px], [py], marker=marker, ms=11 if marker == "*" else 8, color=color,
                mec="k", ls="none", label=p["label"])
        if "mean_cos_dist_truth_ht" in p:
            ax.annotate("", xy=(px, p["mean_cos_dist_truth_ht"]), xytext=(px, py),
                        arrowprops=dict(arrowstyle="->", color=color, lw=1.5))
    if best_expected is not None:
        be = float(best_expected)
        ax.axhline(be, color="green", lw=1.2, label="Best-Expected")
        below = np.flatnonzero(y < be)
        if below.size:
            i = int(below[0])
            xc = x[i] if i == 0 else float(np.interp(be, [y[i], y[i - 1]], [x[i], x[i - 1]]))
            ax.axvline(xc, color="C0", ls="--", lw=1.0, label=f"HCN below Best-Expected "
                                                              f"({xc:.1f}%)")
    ax.set_xlabel("efficiency cut (%)")
    ax.set_ylabel("cosine distance")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out_png)


def plot_calibration(angle, kappa, rows, out_png, *, title: str = "") -> Path:
    """Calibration of the predicted concentration: the seed's Figure 6.

    Left: 2D histogram of ``log10 kappa`` against the angle to the truth (degrees), the mean
    angle per bin (red, with its standard error) and the expected mean angle of a vMF
    (:func:`~astroreco.stats.vmf_calibration.vmf_expected_angle`, black dashed).  Right: the
    fitted ``kappa`` (with its statistical error) against the bin's centre ``kappa``,
    log-log, with ``y = x``; horizontal bars show the bin's extent; bins with fewer than
    ``min_count`` events are grey.

    Parameters
    ----------
    angle, kappa : array_like
        ``(n,)`` angles between predicted and true directions (radians) and predicted
        concentrations (> 0).
    rows : list of dict
        :func:`~astroreco.stats.vmf_calibration.vmf_calibration` of the same events.
    out_png : path-like
        PNG to write (replaced if it exists).
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        ``out_png``.
    """
    a = _finite(angle, "angle")
    k = _finite(kappa, "kappa")
    if a.shape != k.shape:
        raise InputError(f"kappa: expected one value per angle ({a.size}), got {k.size}")
    if np.any(k <= 0):
        raise InputError("kappa: expected concentrations > 0")
    rows = list(rows or [])
    if not rows or not all(isinstance(r, dict) and set(_ROW_KEYS) <= set(r) for r in rows):
        raise InputError("rows: expected the non-empty list of bins of "
                         "astroreco.stats.vmf_calibration.vmf_calibration")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    ax = axes[0]
    lk = np.log10(k)
    lo, hi = lk.min(), lk.max()
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    *_, image = ax.hist2d(lk, np.degrees(a), bins=(60, 60), range=((lo, hi), (0.0, 180.0)),
                          cmap="viridis", norm=LogNorm(), cmin=1)
    fig.colorbar(image, ax=ax, label="events")
    centre = np.array([r["kappa_centre"] for r in rows])
    ax.errorbar(np.log10(centre), np.degrees([r["mean_angle"] for r in rows]),
                yerr=np.degrees([r["mean_angle_err"] for r in rows]), color="red",
                marker="o", ms=3, lw=1.5, capsize=2, label="mean angle per bin")
    grid = np.linspace(lo, hi, 200)
    ax.plot(grid, np.degrees(vmf_expected_angle(10.0 ** grid)), "k--", lw=1.5,
            label="expected mean angle (vMF)")
    ax.set_xlabel("log10 kappa (predicted)")
    ax.set_ylabel("angle to the true direction (deg)")
    ax.legend(fontsize=8)
    ax = axes[1]
    span = []
    for r in rows:
        kf, err, c = r["kappa_fit"], r["kappa_fit_err"], r["kappa_centre"]
        if not (kf > 0 and math.isfinite(kf)):
            continue
        color = "C0" if r["enough"] else "0.6"
        yerr = [[min(err, 0.95 * kf)], [err]] if math.isfinite(err) else None
        xerr = [[max(c - r["kappa_lo"], 0.0)], [max(r["kappa_hi"] - c, 0.0)]]
        ax.errorbar([c], [kf], yerr=yerr, xerr=xerr,
                    marker="o", ms=4, capsize=2, color=color, ls="none")
        span += [r["kappa_lo"], r["kappa_hi"], kf]
    if span:
        xx = np.array([min(span) / 1.5, max(span) * 1.5])
        ax.plot(xx, xx, color="k", lw=0.8, label="y = x")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.plot([], [], "o", color="C0", label="bin")
    ax.plot([], [], "o", color="0.6", label="bin below min_count")
    ax.set_xlabel("bin centre kappa")
    ax.set_ylabel("fitted kappa")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out_png)
