"""The kappa map of the TPC networks: what per-event quantities it reads and how it is fitted.

A network's ``kappa`` is recalibrated after training on validation recoils never used for
training or testing (:func:`calibrate_kappa`, ``astroreco tpc calibrate``), with one of two
maps stored in the model's ``config.json`` as ``network.kappa_calibration``:

``mlp`` (default)
    An ensemble of small networks (:mod:`astroreco.nn.vmf_calibrator`) on
    :data:`NETWORK_FEATURES`: the test-time passes' agreement and the track as measured.
linear
    Per bin of measured energy, ``log kappa -> c_0 + c_1 log kappa + sum_j z_j (c_2j+2 +
    c_2j+3 log kappa)`` with the standardised :data:`CALIBRATION_FEATURES` ``z_j``.

:func:`apply_kappa_calibration` applies either at inference
(:class:`~astroreco.detectors.tpc.neural.NeuralReconstructor`).
"""

from __future__ import annotations

import numpy as np

from astroreco.errors import InputError

#: per-event measured quantities a kappa calibration may depend on (see
#: :func:`calibration_features`); voxels per keV tracks the diffusion: at a fixed energy it
#: predicts the smearing of the seed's recoils to about 10 um
CALIBRATION_FEATURES = ("voxels_per_kev",)
#: per-event inputs of the learned kappa map (``kind: mlp``, :meth:`~astroreco.detectors.tpc.neural.NeuralReconstructor.predict`): the
#: network's own test-time passes (``log_kappa_mix``: the concentration of their mixture,
#: ``log_kappa_geo`` / ``log_kappa_spread``: mean and standard deviation of their ``log
#: kappa``, ``log_disagreement``: ``log(1 - |mean direction|)``) and the track as measured
#: (energy, voxels per keV, charge-weighted RMS length and width in voxels, their ratio, the
#: largest voxel charge, the number of voxels)
NETWORK_FEATURES = ("log_kappa_geo", "log_kappa_mix", "log_kappa_spread", "log_disagreement",
                    "energy_kev", "voxels_per_kev", "log_width", "log_length",
                    "log_max_charge", "log_n_voxels", "log_elongation")


def _check_kappa_calibration(cal) -> dict:
    if isinstance(cal, dict) and cal.get("kind") == "mlp":
        from astroreco.nn.vmf_calibrator import check_vmf_calibrator

        cal = check_vmf_calibrator(cal)
        unknown = sorted(set(cal["features"]) - set(NETWORK_FEATURES))
        if unknown:
            raise InputError(f"kappa_calibration: unknown features {unknown}, expected some "
                             f"of {list(NETWORK_FEATURES)}")
        return cal
    try:
        edges = [float(e) for e in cal["energy_edges_kev"]]
        features = [str(f) for f in cal.get("features", [])]
        coef = [[float(v) for v in row] for row in cal["coef"]]
        mean = [[float(v) for v in row] for row in cal.get("feature_mean", [[]] * len(coef))]
        std = [[float(v) for v in row] for row in cal.get("feature_std", [[]] * len(coef))]
    except (KeyError, TypeError, ValueError):
        raise InputError("kappa_calibration: expected 'energy_edges_kev', 'coef' (one list "
                         "per energy bin) and optionally 'features', 'feature_mean', "
                         "'feature_std'") from None
    unknown = sorted(set(features) - set(CALIBRATION_FEATURES))
    if unknown:
        raise InputError(f"kappa_calibration: unknown features {unknown}, expected some of "
                         f"{list(CALIBRATION_FEATURES)}")
    m, n_coef = len(coef), 2 + 2 * len(features)
    if m == 0 or len(edges) != m - 1 or len(mean) != m or len(std) != m \
            or any(len(row) != n_coef for row in coef) \
            or any(len(row) != len(features) for row in mean + std):
        raise InputError(f"kappa_calibration: expected per energy bin {n_coef} coefficients "
                         f"and {len(features)} feature means and widths, and m-1 edges")
    flat = edges + [v for row in coef + mean + std for v in row]
    if not all(np.isfinite(flat)) or any(v <= 0 for row in std for v in row) \
            or any(e1 <= e0 for e0, e1 in zip(edges, edges[1:])):
        raise InputError("kappa_calibration: expected finite values, feature widths > 0 and "
                         "increasing energy edges")
    return {"energy_edges_kev": edges, "features": features, "feature_mean": mean,
            "feature_std": std, "coef": coef}


def measured_energy_kev(offsets, values) -> np.ndarray:
    """Per-event energy measured from the track's total charge: electrons x W of the
    default fill (He:CO2 70:30, 760 Torr, 20 C), in keV."""
    from astroreco.physics.gas import he_co2

    offsets = np.asarray(offsets, np.int64)
    total = np.concatenate([[0.0], np.cumsum(np.asarray(values, np.float64))])
    charge = total[offsets[1:]] - total[offsets[:-1]]
    return charge * he_co2().w_ev * 1e-3


def calibration_features(offsets, values) -> dict:
    """Measured per-event quantities of voxel events: ``energy_kev``
    (:func:`measured_energy_kev`) and :data:`CALIBRATION_FEATURES`."""
    energy = measured_energy_kev(offsets, values)
    n_voxels = np.diff(np.asarray(offsets, np.int64))
    return {"energy_kev": energy,
            "voxels_per_kev": n_voxels / np.where(energy > 0, energy, 1.0)}


def track_features(offsets, coords, values) -> dict:
    """Charge-weighted shape of each track in voxel units: ``log_length`` and ``log_width``
    (log RMS along the principal axis and across it), ``log_elongation`` (log of the
    ratio of the two largest second moments), ``log_max_charge`` and ``log_n_voxels``."""
    offsets = np.asarray(offsets, np.int64)
    n = len(offsets) - 1
    x = np.asarray(coords, np.float64)
    q = np.asarray(values, np.float64)
    event = np.repeat(np.arange(n), np.diff(offsets))
    qsum = np.bincount(event, q, n)
    centre = np.stack([np.bincount(event, q * x[:, a], n) for a in range(3)], 1) / qsum[:, None]
    r = x - centre[event]
    cov = np.empty((n, 3, 3))
    for a in range(3):
        for b in range(a, 3):
            cov[:, a, b] = cov[:, b, a] = np.bincount(event, q * r[:, a] * r[:, b], n) / qsum
    ev = np.linalg.eigvalsh(cov)[:, ::-1]
    qmax = np.maximum.reduceat(q, offsets[:-1]) if len(q) else np.zeros(n)
    return {"log_length": 0.5 * np.log(np.maximum(ev[:, 0], 1e-12)),
            "log_width": 0.5 * np.log(np.maximum(ev[:, 1] + ev[:, 2], 1e-12)),
            "log_elongation": np.log(np.maximum(ev[:, 0], 1e-12) / (ev[:, 1] + 1e-9)),
            "log_max_charge": np.log(np.maximum(qmax, 1e-12)),
            "log_n_voxels": np.log(np.maximum(np.diff(offsets), 1))}


def pass_features(directions, kappas) -> dict:
    """The test-time passes' agreement: ``directions`` ``(n, p, 3)`` and ``kappas``
    ``(n, p)`` of ``p`` passes (in the grid frame) -> ``log_kappa_geo``,
    ``log_kappa_spread`` and ``log_disagreement`` (see :data:`NETWORK_FEATURES`)."""
    log_k = np.log(np.maximum(np.asarray(kappas, np.float64), 1e-12))
    agree = np.linalg.norm(np.asarray(directions, np.float64).mean(1), axis=1)
    return {"log_kappa_geo": log_k.mean(1), "log_kappa_spread": log_k.std(1),
            "log_disagreement": np.log(np.clip(1.0 - agree, 1e-6, None))}


def apply_kappa_calibration(kappa, measured: dict, cal: dict | None, scale: float = 1.0):
    """``kappa`` after the calibration map of :class:`TpcNetConfig` ``.kappa_calibration``
    (per bin of measured energy, :func:`~astroreco.stats.kappa_maps.apply_kappa_feature_map`
    with the bin's standardised features) and the plain ``scale``; ``measured`` as
    :func:`calibration_features` returns it."""
    from astroreco.stats.kappa_maps import apply_kappa_feature_map

    kappa = np.asarray(kappa, np.float64)
    if cal is None:
        return kappa * scale
    if cal.get("kind") == "mlp":
        from astroreco.nn.vmf_calibrator import apply_vmf_calibrator

        f = np.stack([np.asarray(measured[name], np.float64) for name in cal["features"]], 1)
        return apply_vmf_calibrator(cal, f) * scale
    which = np.searchsorted(np.asarray(cal["energy_edges_kev"]), measured["energy_kev"],
                            side="right")
    out = np.empty_like(kappa)
    for i, coef in enumerate(cal["coef"]):
        sel = which == i
        if not sel.any():
            continue
        f = None
        if cal["features"]:
            f = np.stack([(np.asarray(measured[name], np.float64)[sel] - mu) / sd
                          for name, mu, sd in zip(cal["features"], cal["feature_mean"][i],
                                                  cal["feature_std"][i])], 1)
        out[sel] = apply_kappa_feature_map(kappa[sel], coef, f)
    return out * scale


CALIBRATION_METHODS = ("mlp", "linear")


def _calibration_events(net, files, n_events, progress):
    """Uncalibrated predictions, features and truth of the events in ``files``."""
    from astroreco.detectors.tpc.pipeline import EVENT_SCHEMA, read_voxels
    from astroreco.io.store import EventFile
    from astroreco.progress import progress_bar

    sizes = []
    for path in files:
        with EventFile(path, EVENT_SCHEMA) as ef:
            sizes.append(ef.n_events if n_events is None else min(int(n_events), ef.n_events))
    direction, kappa, truth, measured = [], [], [], []
    with progress_bar(f"predicting {sum(sizes)} calibration events", total=sum(sizes),
                      enabled=progress) as bar:
        for path, n in zip(files, sizes):
            with EventFile(path, EVENT_SCHEMA) as ef:
                t = ef.truth(["dir_x", "dir_y", "dir_z"], 0, n)
            truth.append(np.stack([t["dir_x"], t["dir_y"], t["dir_z"]], 1))
            for s in range(0, n, 2000):
                e = min(n, s + 2000)
                d, k, m = net.predict(*read_voxels(path, s, e), features=True)
                direction.append(d)
                kappa.append(k)
                measured.append(m)
                bar.advance(e - s)
    measured = {k: np.concatenate([m[k] for m in measured]) for k in measured[0]}
    return (np.concatenate(direction), np.concatenate(kappa).astype(np.float64),
            np.concatenate(truth), measured, sizes)


def calibrate_kappa(model_dir, events, *, method: str = "mlp", n_events: int | None = None,
                    device: str = "cpu", energy_bins: int = 3, features=None,
                    members: int = 5, min_events: int = 500, seed: int = 0,
                    balance: float = 0.0, progress: bool = True) -> dict:
    """Fit the model's ``kappa`` map on validation ``events`` (one file or several, never
    used for training or testing) and store it in ``model_dir/config.json`` (rewritten
    atomically) as ``kappa_calibration``.

    ``method="mlp"`` (default): an ensemble of ``members`` small networks maps the
    :data:`NETWORK_FEATURES` (or the given ``features``) to ``log kappa``
    (:func:`~astroreco.nn.vmf_calibrator.fit_vmf_calibrator`).  The network's own
    ``kappa`` ranks its events poorly where the test-time passes disagree and where the
    energy and diffusion differ from the training mix; the passes' agreement and the
    measured track shape mend that.  ``balance > 0`` weighs each event's likelihood by the
    inverse density of the network's own ``log kappa`` to that power
    (:func:`~astroreco.nn.vmf_calibrator.balance_weights`), so that the few events of the
    low-``kappa`` tail, where head-tail flips sit, count for more.  It is off by default:
    fitted on 184k validation recoils and tested on four development sets (20k recoils
    each, 40/50 keV x 200/443 um), three fits with ``balance=0.5`` that differ only in
    their seed or in float rounding gave largest per-set deviations of 15%, 19% and 53%,
    and unweighted fits 19% and 37%, at the same likelihood (within 0.001 per event): the
    fit's own variance, not the weighting, sets the tail bins.  ``balance=1``
    over-weighted the tail (likelihood worse by 0.01).

    ``method="linear"``: the events are split into ``energy_bins`` equal-width bins of
    measured energy (between its 1st and 99th percentiles); in each, ``log kappa -> c_0 +
    c_1 log kappa + sum_j z_j (c_2j+2 + c_2j+3 log kappa)`` is fitted by maximum likelihood
    (:func:`~astroreco.stats.kappa_maps.vmf_kappa_feature_map`) with the bin's
    standardised ``features`` ``z_j`` (default :data:`CALIBRATION_FEATURES`; none:
    ``kappa -> s kappa^b``).

    The model's own inference settings (symmetries averaged) are used; the map replaces any
    earlier one.  Returns the map, the events used and their mean cosine distance.
    """
    import json
    from pathlib import Path

    from astroreco.stats.kappa_maps import vmf_kappa_feature_map
    from astroreco.stats.directional import cosine_distance

    if method not in CALIBRATION_METHODS:
        raise InputError(f"method {method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
    if isinstance(energy_bins, bool) or int(energy_bins) != energy_bins or energy_bins < 1:
        raise InputError(f"energy_bins: expected an integer >= 1, got {energy_bins!r}")
    allowed = NETWORK_FEATURES if method == "mlp" else CALIBRATION_FEATURES
    features = [str(f) for f in (allowed if features is None else features)]
    unknown = sorted(set(features) - set(allowed))
    if unknown:
        raise InputError(f"features: unknown {unknown}, expected some of {list(allowed)}")
    if method == "mlp" and not features:
        raise InputError("features: the mlp map needs at least one feature")
    files = [events] if isinstance(events, (str, Path)) else list(events)
    if not files:
        raise InputError("events: expected at least one event file")
    from astroreco.detectors.tpc.neural import NeuralReconstructor

    net = NeuralReconstructor(model_dir, device=device)
    if net.config.architecture == "rcn":
        raise InputError(f"{model_dir}: an RCN predicts no kappa to calibrate")
    # calibrate what the network predicts, not an earlier calibration of it
    net.config.kappa_calibration, net.config.kappa_scale = None, 1.0
    d, kappa, truth, measured, sizes = _calibration_events(net, files, n_events, progress)
    n = len(kappa)
    cd = cosine_distance(d, truth)
    if method == "mlp":
        from astroreco.nn.vmf_calibrator import fit_vmf_calibrator

        if n < min_events:
            raise InputError(f"{', '.join(map(str, files))}: {n} events for the kappa "
                             f"calibration, expected >= {min_events}")
        f = np.stack([measured[name] for name in features], 1)
        by = "log_kappa_mix" if "log_kappa_mix" in features else features[0]
        cal = fit_vmf_calibrator(f, d, truth, features, members=members, seed=seed,
                                 balance=balance, balance_by=by, progress=progress)
        counts = [n]
    else:
        angle = np.arccos(np.clip(1.0 - cd, -1.0, 1.0))
        energy = measured["energy_kev"]
        lo, hi = np.quantile(energy, [0.01, 0.99])
        edges = list(np.linspace(lo, hi, int(energy_bins) + 1)[1:-1]) if hi > lo else []
        which = np.searchsorted(edges, energy, side="right")
        counts = np.bincount(which, minlength=len(edges) + 1)
        if counts.min() < min_events:
            raise InputError(f"{', '.join(map(str, files))}: {counts.min()} events in an "
                             f"energy bin of the kappa calibration, expected >= "
                             f"{min_events} (more events or fewer --energy-bins)")
        coef, mean, std = [], [], []
        for i in range(len(edges) + 1):
            sel = which == i
            f = np.stack([measured[name][sel] for name in features], 1) if features else None
            mu = f.mean(0) if features else np.zeros(0)
            sd = f.std(0) if features else np.zeros(0)
            sd = np.where(sd > 0, sd, 1.0)
            coef.append(vmf_kappa_feature_map(angle[sel], kappa[sel],
                                              (f - mu) / sd if features else None))
            mean.append([float(v) for v in mu])
            std.append([float(v) for v in sd])
        cal = {"energy_edges_kev": [float(e) for e in edges], "features": features,
               "feature_mean": mean, "feature_std": std, "coef": coef}
    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text())
    config["network"]["kappa_calibration"] = cal
    config["network"]["kappa_scale"] = 1.0
    config.setdefault("training", {})["kappa_calibration"] = {
        "events": [str(f) for f in files] if len(files) > 1 else str(files[0]),
        "n_events": int(n), "events_per_file": [int(v) for v in sizes], "method": method,
        "tta": net.config.tta, "events_per_bin": [int(c) for c in counts]}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    tmp.replace(path)
    return {"model": str(model_dir), "method": method, "kappa_calibration": cal,
            "events_per_bin": [int(c) for c in counts], "n_events": int(n),
            "cos_dist": float(cd.mean())}
