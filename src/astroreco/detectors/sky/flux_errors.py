"""Flux errors of the detection chain calibrated on validation patches.

The position/flux ensemble (:mod:`astroreco.detectors.sky.refine`) is trained on true
sources, and on validation patches its flux pulls at the true positions are unit-wide.  The
catalog's ``flux_err`` is judged on detected sources, which differ: near the detection
threshold the detected sources are the upward fluctuations (Eddington bias, pulls with a
positive mean), and the brightest sources, few in training, get errors that are too large.
Measured through the whole chain on 2000 IEM-A patches (seed 2003), the pull
``(S_det - S_true) / flux_err`` has a standard deviation of 1.7 among the faintest tenth of
the detections and 0.5 among the brightest.

:func:`calibrate_flux_errors` runs the chain (U-Net, centres, the ensemble) on validation
patches with a known truth, matches the detections to the true sources and stores, per bin
of the detected flux, the standard deviation of the pulls (:func:`fit_flux_error_scale`) in
the ensemble's ``config.json`` as ``flux_error_scale``.  The ensemble then multiplies its
flux errors by that table, interpolated linearly in ``log10 S`` between the bins' medians
(:func:`flux_error_factor`), so that the catalog's ``flux_err`` holds for the detections it
is written for.  It is a calibration of the second moment only: the pulls' mean (the
Eddington bias of the faintest detections) stays, and is reported by the evaluation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from astroreco.errors import InputError

#: the columns of the ensemble's output the factor multiplies
SCALED_COLUMNS = ("flux_err", "flux_err_aleatoric", "flux_err_epistemic", "log10_flux_sigma")


def fit_flux_error_scale(flux, flux_err, flux_true, *, n_bins: int = 10,
                         min_pairs: int = 200) -> dict:
    """The table of :func:`flux_error_factor`: matched detections' ``flux`` and ``flux_err``
    and their true ``flux_true`` -> ``n_bins`` bins of equal counts in ``log10 flux``, each
    with the median ``log10 flux`` and the standard deviation of the pulls ``(flux -
    flux_true) / flux_err`` (every bin at least ``min_pairs`` pairs; fewer bins if needed)."""
    s, e, t = (np.asarray(a, np.float64).reshape(-1) for a in (flux, flux_err, flux_true))
    if not (s.size == e.size == t.size):
        raise InputError(f"flux, flux_err, flux_true: expected equal lengths, got {s.size}, "
                         f"{e.size}, {t.size}")
    good = np.isfinite(s) & np.isfinite(e) & np.isfinite(t) & (s > 0) & (e > 0)
    for name, value in (("n_bins", n_bins), ("min_pairs", min_pairs)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise InputError(f"{name}: expected an integer >= 1, got {value!r}")
    n = int(good.sum())
    if n < min_pairs:
        raise InputError(f"{n} matched detections with a positive flux and error, expected "
                         f">= {min_pairs} to calibrate the flux errors")
    m = np.log10(s[good])
    pull = (s[good] - t[good]) / e[good]
    bins = max(1, min(int(n_bins), n // int(min_pairs)))
    order = np.argsort(m, kind="stable")
    centre, scale, counts = [], [], []
    for idx in np.array_split(order, bins):
        centre.append(float(np.median(m[idx])))
        scale.append(float(np.std(pull[idx])))
        counts.append(int(idx.size))
    if not all(math.isfinite(v) and v > 0 for v in scale):
        raise InputError("flux errors: a bin of identical pulls, no spread to calibrate")
    return {"log10_flux": centre, "scale": scale, "n": counts}


def check_flux_error_scale(table, where: str = "flux_error_scale") -> dict:
    """``table`` (from :func:`fit_flux_error_scale`, e.g. read from ``config.json``)
    checked; raises :class:`~astroreco.errors.InputError` naming what is wrong."""
    try:
        x = [float(v) for v in table["log10_flux"]]
        y = [float(v) for v in table["scale"]]
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{where}: expected 'log10_flux' and 'scale' lists") from None
    if not x or len(x) != len(y) or not all(math.isfinite(v) for v in x + y) \
            or any(v <= 0 for v in y) or any(b < a for a, b in zip(x, x[1:])):
        raise InputError(f"{where}: expected equal, non-empty lists of finite values, "
                         "non-decreasing 'log10_flux' and positive 'scale'")
    return {**table, "log10_flux": x, "scale": y}


def flux_error_factor(table: dict, flux) -> np.ndarray:
    """The factor of each source's flux errors: the table's ``scale`` interpolated linearly
    in ``log10 flux`` between the bins' medians, constant beyond the first and last."""
    s = np.asarray(flux, np.float64)
    m = np.log10(np.where(s > 0, s, np.nan))
    out = np.interp(m, table["log10_flux"], table["scale"])
    return np.where(np.isfinite(out), out, table["scale"][0])


def apply_flux_error_scale(table: dict | None, catalog: dict) -> dict:
    """``catalog`` (the ensemble's per-source dict) with :data:`SCALED_COLUMNS` multiplied
    by :func:`flux_error_factor` (unchanged for ``table=None``)."""
    if table is None:
        return catalog
    f = flux_error_factor(table, catalog["flux"])
    return {k: (v * f if k in SCALED_COLUMNS else v) for k, v in catalog.items()}


def calibrate_flux_errors(refiner_dir, events, *, model=None, background_model=None,
                          name: str = "flux_calibration", n_bins: int = 10,
                          match_radius_deg: float = 0.3, progress: bool = True) -> dict:
    """Fit the flux-error table of the ensemble ``refiner_dir`` on validation ``events``
    (a patch file with its truth, never used for training or testing) and store it in
    ``refiner_dir/config.json`` (rewritten atomically) as ``flux_error_scale``.

    The chain runs with the detector ``model`` (default: the shipped one) and the
    ensemble without any earlier table, its detections stored under ``/reco/<name>`` of
    ``events``; ``background_model`` as for
    :func:`~astroreco.detectors.sky.pipeline.detect_neural`.  Detections are matched to
    the true sources in the patch within ``match_radius_deg`` (as the evaluation does).
    Returns the table and the pull width before and after.
    """
    from astroreco.detectors.sky.scoring import matched_pairs
    from astroreco.detectors.sky.pipeline import detect_neural
    from astroreco.detectors.sky.refine import Refiner

    refiner = Refiner(refiner_dir)
    refiner.flux_error_scale = None          # calibrate what the ensemble predicts
    detect_neural(events, model=model, name=name, refiner=refiner,
                  background_model=background_model, progress=progress)
    truth, det = matched_pairs(events, name, match_radius_deg=match_radius_deg)
    flux = np.asarray(det["flux"], np.float64)
    err = np.asarray(det["flux_err"], np.float64)
    table = fit_flux_error_scale(flux, err, truth["flux"], n_bins=n_bins)
    pull = (flux - truth["flux"]) / err
    after = pull / flux_error_factor(table, flux)
    table["fit"] = {"events": str(events), "n_pairs": int(flux.size),
                    "pull_std_before": float(np.std(pull)),
                    "pull_std_after": float(np.std(after)),
                    "background_model": None if background_model is None
                    else str(background_model)}
    path = Path(refiner_dir) / "config.json"
    config = json.loads(path.read_text())
    config["flux_error_scale"] = table
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    tmp.replace(path)
    return table
