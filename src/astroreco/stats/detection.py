"""Counting figures of detection and classification: fractions with their intervals, F1,
precision-recall curves, efficiency in bins, pull summaries and confusion matrices.

What a catalogue score, a trigger efficiency or a classifier report is made of, once the
detections have been matched to the truth (:func:`~astroreco.stats.matching.match_sources`).
Every function takes plain arrays; nothing here knows a detector.  A figure that has no
events to rest on is ``None`` (NaN in :func:`classification_figures`, whose figures are
formatted as numbers), never a 0 that could be read as a measurement.
"""

from __future__ import annotations

import math

import numpy as np

from astroreco.errors import InputError

__all__ = ["fraction", "f1_score", "wilson_interval", "quantile", "precision_recall_curve",
           "binned_fraction", "pull_summary", "confusion_matrix", "classification_figures"]


def fraction(num, den) -> float | None:
    """``num / den``, or ``None`` when ``den`` is 0."""
    return float(num) / float(den) if den else None


def f1_score(purity, recall) -> float | None:
    """Harmonic mean ``2PR / (P + R)``; ``None`` if either is unknown or both are 0."""
    if purity is None or recall is None or purity + recall == 0:
        return None
    return 2.0 * purity * recall / (purity + recall)


def wilson_interval(k: int, n: int, z: float = 1.0) -> tuple[float | None, float | None]:
    """Wilson score interval of the binomial fraction ``k/n`` (``z = 1``: 68.3 %); it stays
    inside [0, 1] and is not empty at ``k = 0`` or ``k = n``, where the normal
    approximation ``sqrt(p (1 - p) / n)`` is.  ``(None, None)`` for ``n = 0``."""
    if n == 0:
        return None, None
    p = k / n
    den = 1.0 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # the interval contains p (rounding can put an end a hair inside it at p = 0 or 1)
    return max(0.0, min(p, mid - half)), min(1.0, max(p, mid + half))


def quantile(x, q) -> float | None:
    """``np.quantile(x, q)`` as a float, ``None`` for no values."""
    return float(np.quantile(x, q)) if len(x) else None


def precision_recall_curve(rank, true_positive, hit_above, n_true_above: int,
                           purity_target: float, max_points: int = 200):
    """Precision-recall curve over the thresholds ``rank >= t``, one point per distinct
    value of ``rank`` (descending; NaN ranks last), and the operating point: the highest
    recall at purity >= ``purity_target``, at the highest threshold that reaches it.

    ``true_positive``: the detection is matched to a true source; ``hit_above``: it is
    matched to one that counts for the recall (above the flux threshold, say), of which
    there are ``n_true_above``.  Returns ``(curve, operating_point)``: the curve thinned to
    at most ``max_points`` points (``threshold``, ``purity``, ``recall``,
    ``n_detections``), and the exact operating point (its entries ``None`` where no
    threshold reaches the purity).
    """
    rank = np.asarray(rank, np.float64)
    rank = np.where(np.isfinite(rank), rank, -np.inf)
    order = np.argsort(-rank, kind="stable")
    r = rank[order]
    n_cum = np.arange(1, r.size + 1)
    tp_cum = np.cumsum(np.asarray(true_positive)[order])
    hit_cum = np.cumsum(np.asarray(hit_above)[order])
    last = np.r_[r[1:] != r[:-1], True] if r.size else np.zeros(0, bool)
    thr, n_sel = r[last], n_cum[last]
    purity = tp_cum[last] / n_sel
    recall = hit_cum[last] / n_true_above if n_true_above else np.full(thr.size, np.nan)
    f1 = np.where(purity + recall > 0, 2 * purity * recall / np.maximum(purity + recall, 1e-300),
                  0.0)
    op = {"purity_target": purity_target, "threshold": None, "recall": None, "purity": None,
          "f1": None, "n_detections": None}
    ok = (purity >= purity_target) & np.isfinite(recall)
    if ok.any():
        i = int(np.argmax(np.where(ok, recall, -1.0)))   # first = highest threshold
        op.update(threshold=float(thr[i]), recall=float(recall[i]), purity=float(purity[i]),
                  f1=float(f1[i]), n_detections=int(n_sel[i]))
    keep = np.unique(np.linspace(0, thr.size - 1, min(thr.size, int(max_points)))
                     .round().astype(int)) if thr.size else np.zeros(0, int)
    curve = {"threshold": thr[keep].tolist(), "purity": purity[keep].tolist(),
             "recall": recall[keep].tolist(), "n_detections": n_sel[keep].tolist()}
    return curve, op


def binned_fraction(values, passed, edges) -> dict:
    """Per bin of ``values`` (``edges``, increasing; values outside are left out): the
    events ``n``, those that ``passed`` ``k``, the fraction, its binomial error
    ``sqrt(f (1 - f) / n)`` and the Wilson 68.3 % interval -- an efficiency or recall
    curve.  Entries of an empty bin are ``None``."""
    values = np.asarray(values, np.float64)
    edges = np.asarray(edges, np.float64)
    passed = np.asarray(passed, bool)
    idx = np.searchsorted(edges, values, side="right") - 1
    inside = (idx >= 0) & (idx < len(edges) - 1) & (values < edges[-1])
    n = np.bincount(idx[inside], minlength=len(edges) - 1)
    k = np.bincount(idx[inside], weights=passed[inside].astype(float),
                    minlength=len(edges) - 1).astype(int)
    frac, err, lo, hi = [], [], [], []
    for ki, ni in zip(k, n):
        p = fraction(ki, ni)
        frac.append(p)
        err.append(None if p is None else math.sqrt(p * (1 - p) / ni))
        a, b = wilson_interval(int(ki), int(ni))
        lo.append(a)
        hi.append(b)
    return {"n": n.tolist(), "k": k.tolist(), "fraction": frac, "error": err, "lo": lo,
            "hi": hi}


def pull_summary(pulls) -> dict:
    """Count, mean, standard deviation, median and the fraction beyond 5 of the finite
    ``pulls`` (a calibrated error gives mean 0, std 1)."""
    p = np.asarray(pulls, np.float64)
    p = p[np.isfinite(p)]
    if not p.size:
        return {"n": 0, "mean": None, "std": None}
    return {"n": int(p.size), "mean": float(p.mean()), "std": float(p.std()),
            "median": float(np.median(p)),
            "fraction_beyond_5": float(np.mean(np.abs(p) > 5))}


def confusion_matrix(true, predicted, n_class: int) -> np.ndarray:
    """``(n_class, n_class)`` counts, rows the true class, columns the predicted one;
    labels outside ``0 .. n_class - 1`` (unknown, not predicted) are left out."""
    true = np.asarray(true)
    predicted = np.asarray(predicted)
    ok = (true >= 0) & (true < n_class) & (predicted >= 0) & (predicted < n_class)
    mat = np.zeros((n_class, n_class), np.int64)
    np.add.at(mat, (true[ok].astype(np.int64), predicted[ok].astype(np.int64)), 1)
    return mat


def classification_figures(probs, labels, class_names) -> dict:
    """Accuracy, balanced accuracy (mean recall over the classes present), per-class recall
    and precision, the confusion matrix (rows: true, columns: predicted) and the accuracy
    of always answering the most frequent class (the trivial baseline), for ``(n, c)``
    class ``probs`` (or scores; the prediction is the argmax) and integer ``labels`` in
    ``0 .. c - 1``."""
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    c = len(class_names)
    if probs.ndim != 2 or probs.shape != (labels.size, c):
        raise InputError(f"probs: expected shape ({labels.size}, {c}) for {labels.size} labels "
                         f"and the classes {list(class_names)}, got {probs.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= c):
        raise InputError(f"labels: expected integers in 0..{c - 1}, got values from "
                         f"{labels.min()} to {labels.max()}")
    pred = probs.argmax(1)
    conf = confusion_matrix(labels, pred, c)
    n_true, n_pred = conf.sum(1), conf.sum(0)
    recall = np.where(n_true > 0, np.diag(conf) / np.maximum(n_true, 1), np.nan)
    precision = np.where(n_pred > 0, np.diag(conf) / np.maximum(n_pred, 1), np.nan)
    return {"n": int(labels.size), "classes": list(class_names),
            "n_per_class": n_true.tolist(),
            "accuracy": float(np.mean(pred == labels)) if labels.size else float("nan"),
            "balanced_accuracy": float(np.nanmean(recall)) if n_true.any() else float("nan"),
            "recall": [None if np.isnan(v) else float(v) for v in recall],
            "precision": [None if np.isnan(v) else float(v) for v in precision],
            "confusion": conf.tolist(),
            "majority_accuracy": float(n_true.max() / max(labels.size, 1))}
