"""TPC event files: simulate recoils into the HDF5 event store, read sparse voxels back.

Hits are the non-empty voxels of each event in COO form, ``(i, j, k, electrons)``, with
``i, j, k`` in ``[0, grid_size)``; the truth table holds the initial direction, the start
point, the energy and the smearing (:data:`~astroreco.detectors.tpc.simulate.TRUTH_FIELDS`).
"""

from __future__ import annotations

import numpy as np

from astroreco.detectors.tpc.simulate import (TRUTH_FIELDS, RecoilSimulator, TpcConfig)
from astroreco.errors import InputError
from astroreco.io.store import EventFile, EventSchema, EventWriter, check_run_args, columns
from astroreco.progress import progress_bar

EVENT_SCHEMA = EventSchema(
    detector="tpc",
    hits=columns([("i", "i2", "", "voxel index along x"), ("j", "i2", "", "voxel index along y"),
                  ("k", "i2", "", "voxel index along z"),
                  ("electrons", "f4", "", "ionisation electrons in the voxel")]),
    truth=columns(TRUTH_FIELDS),
)


def parse_values(text, name: str) -> tuple[str, tuple]:
    """``'40'`` (fixed), ``'40,50'`` (one of, equally likely) or ``'160:466'`` (uniform).

    Returns ``(kind, values)`` with kind ``fixed``, ``choice`` or ``uniform``.
    """
    s = str(text).strip()
    try:
        if ":" in s:
            lo, hi = (float(v) for v in s.split(":"))
            if not lo <= hi:
                raise ValueError
            return "uniform", (lo, hi)
        values = tuple(float(v) for v in s.split(","))
    except ValueError:
        raise InputError(f"--{name} {text!r}: expected a number, 'a,b,...' or 'low:high'") \
            from None
    if not all(np.isfinite(values)):
        raise InputError(f"--{name} {text!r}: expected finite numbers")
    return ("fixed", values) if len(values) == 1 else ("choice", values)


def _energies(kind, values, seed: int, first: int, n: int) -> np.ndarray:
    """Per-event energies of events ``first..first+n-1``, independent of the chunking."""
    if kind == "fixed":
        return np.full(n, values[0])
    out = np.empty(n)
    for m in range(n):
        gen = np.random.default_rng(np.random.SeedSequence([int(seed), first + m, 11]))
        out[m] = gen.uniform(*values) if kind == "uniform" else gen.choice(values)
    return out


def simulate(out, *, n_events: int, energy="40", sigma="160:466", seed: int = 0,
             config: TpcConfig | None = None, chunk_size: int = 10_000,
             overwrite: bool = False, progress: bool = True) -> dict:
    """Simulate electron recoils into a TPC event file (HDF5, written atomically).

    Parameters
    ----------
    out : path-like
        Event file to write.
    n_events : int
        Recoils to simulate; tracks not contained in the grid are not stored.
    energy : str or float
        keV: ``40``, ``40,45,50`` (one of them per event) or ``40:50`` (uniform).
    sigma : str or float
        Gaussian smearing (um): ``200`` (fixed, test sets) or ``160:466`` (per-track uniform,
        training sets).
    seed : int
        Run seed; event ``k`` depends only on ``(seed, k)``.

    Returns
    -------
    dict
        Summary: file, events stored and simulated, containment, mean track length and
        electrons per stored track.
    """
    check_run_args(n_events, chunk_size, seed)
    e_kind, e_values = parse_values(energy, "energy")
    s_kind, s_values = parse_values(sigma, "sigma")
    if s_kind == "choice":
        raise InputError(f"--sigma {sigma!r}: expected a number or 'low:high'")
    sigma_um = s_values[0] if s_kind == "fixed" else s_values
    config = config or TpcConfig()
    sim = RecoilSimulator(config)
    meta = {"detector": config.to_dict(), "n_events": int(n_events), "seed": int(seed),
            "energy_kev": {"kind": e_kind, "values": list(e_values)},
            "sigma_um": {"kind": s_kind, "values": list(s_values)}}
    lengths, electrons = [], []
    with EventWriter(out, EVENT_SCHEMA, config=meta, overwrite=overwrite) as writer, \
            progress_bar(f"simulating {n_events} recoils", total=n_events,
                         enabled=progress) as bar:
        for first in range(0, n_events, chunk_size):
            n = min(chunk_size, n_events - first)
            batch = sim.simulate(n, energy_kev=_energies(e_kind, e_values, seed, first, n),
                                 sigma_um=sigma_um, seed=seed, first=first,
                                 progress=bar.advance)
            c = batch.coords
            writer.append(batch.offsets, hits={"i": c[:, 0], "j": c[:, 1], "k": c[:, 2],
                                               "electrons": batch.values},
                          truth=batch.truth, n_simulated=batch.n_simulated)
            lengths.append(batch.truth["length_cm"])
            electrons.append(batch.truth["n_electrons"])
        stored = writer.n_events
    lengths, electrons = np.concatenate(lengths), np.concatenate(electrons)
    return {"file": str(out), "n_stored": stored, "n_simulated": int(n_events),
            "containment": stored / n_events,
            "mean_length_cm": float(lengths.mean()) if stored else None,
            "mean_electrons": float(electrons.mean()) if stored else None}


def read_voxels(path, start: int = 0, stop: int | None = None):
    """Sparse voxels of a TPC event file: ``(offsets, coords (n, 3) int64, electrons)``.

    Checks what a sparse network needs: indices inside the grid, no duplicate voxel within an
    event, finite non-negative values, no empty event.
    """
    with EventFile(path, EVENT_SCHEMA) as ef:
        offsets, hits = ef.hits(start, stop)
        grid = int(ef.config.get("detector", {}).get("grid_size", TpcConfig().grid_size))
    coords = np.stack([hits["i"], hits["j"], hits["k"]], axis=1).astype(np.int64)
    check_voxels(offsets, coords, hits["electrons"], grid, where=str(path))
    return offsets, coords, hits["electrons"]


def check_voxels(offsets, coords, values, grid_size: int, where: str = "voxels") -> None:
    """One-line InputError for voxels a 3D reconstruction cannot use."""
    offsets = np.asarray(offsets)
    coords = np.asarray(coords)
    values = np.asarray(values)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise InputError(f"{where}: expected voxel coordinates of shape (n, 3), got "
                         f"{coords.shape}")
    if len(values) != len(coords) or offsets[-1] != len(coords):
        raise InputError(f"{where}: {len(coords)} voxel coordinates, {len(values)} values and "
                         f"offsets ending at {offsets[-1]} do not match")
    sizes = np.diff(offsets)
    if np.any(sizes <= 0):
        raise InputError(f"{where}: event {int(np.flatnonzero(sizes <= 0)[0])} has no voxels")
    bad = (coords < 0) | (coords >= grid_size)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        event = int(np.searchsorted(offsets, row, side="right") - 1)
        raise InputError(f"{where}: event {event} has a voxel at {coords[row].tolist()}, "
                         f"outside the {grid_size}^3 grid")
    if not np.all(np.isfinite(values)):
        row = int(np.flatnonzero(~np.isfinite(values))[0])
        event = int(np.searchsorted(offsets, row, side="right") - 1)
        raise InputError(f"{where}: event {event} has a non-finite voxel value")
    if np.any(values < 0):
        raise InputError(f"{where}: negative voxel values")
    event = np.repeat(np.arange(len(sizes)), sizes)
    flat = ((event * grid_size + coords[:, 0]) * grid_size + coords[:, 1]) * grid_size \
        + coords[:, 2]
    uniq, counts = np.unique(flat, return_counts=True)
    if np.any(counts > 1):
        dup = int(uniq[np.argmax(counts > 1)])
        raise InputError(f"{where}: event {dup // grid_size ** 3} has duplicate voxel "
                         f"coordinates")


#: reconstruction methods of :func:`reconstruct`; those marked use simulation truth
METHODS = {"nonml": False, "nonml_truth_ht": True, "best_expected": True, "nn": False}

#: what every method stores under /reco/<name>
RECO_FIELDS = (
    ("dir_x", "f4", "", "reconstructed initial direction, x (NaN when the track fails)"),
    ("dir_y", "f4", "", "reconstructed initial direction, y"),
    ("dir_z", "f4", "", "reconstructed initial direction, z"),
    ("kappa", "f4", "", "von Mises-Fisher concentration (NaN for methods without one)"),
    ("status", "u1", "", "0: reconstructed; 1: the track fails the method's selection"),
)


def reconstruct(events, *, method: str = "nonml", name: str | None = None, model=None,
                nonml=None, epsilon_cm: float = 0.3, tta: int | None = None,
                backend: str | None = None, device: str = "cpu", chunk_size: int = 20_000,
                progress: bool = True) -> dict:
    """Reconstruct every event of ``events`` and store the result under ``/reco/<name>``.

    Parameters
    ----------
    events : path-like
        TPC event file.
    method : str
        ``nonml`` (the seed's 3D two-step moments, head-tail from the principal axis),
        ``nonml_truth_ht`` (the same with the true head-tail: a reference, not an
        analysis), ``best_expected`` (truth start point and head-tail: a reference) or
        ``nn`` (a trained network).
    name : str, optional
        Name under ``/reco`` (default: ``method``), e.g. ``nonml_tuned`` or ``hcn``.
    model : path-like, optional
        Model directory for ``nn`` (default: the shipped model, ``models/tpc``).
    nonml : NonMLConfig or dict, optional
        Non-ML parameters (default: the seed's ``r_min 1.5, r_max 3, w0 0.05 cm``).
    epsilon_cm : float
        Best-Expected sphere radius.
    tta, backend, device :
        ``nn`` only: cube symmetries averaged, sparse backend, torch device.

    Returns
    -------
    dict
        Summary: method, name, events, failed tracks, efficiency.
    """
    from astroreco.detectors.tpc import best_expected, nonml as nonml_mod
    from astroreco.io.store import write_reconstruction

    if method not in METHODS:
        raise InputError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    name = name or method
    cfg = nonml if isinstance(nonml, nonml_mod.NonMLConfig) else \
        nonml_mod.NonMLConfig(**(nonml or {}))
    truth_names = ["dir_x", "dir_y", "dir_z", "start_x_cm", "start_y_cm", "start_z_cm"]
    net = None
    if method == "nn":
        from astroreco.detectors.tpc.neural import NeuralReconstructor

        net = NeuralReconstructor(model, device=device, tta=tta, backend=backend)
    with EventFile(events, EVENT_SCHEMA) as ef:
        n = ef.n_events
        if METHODS[method]:
            try:
                ef.truth(truth_names, 0, min(n, 1))
            except InputError as exc:
                raise InputError(f"--method {method} needs simulation truth: {exc}") from None
    parts = []
    with progress_bar(f"{name}: reconstructing {n} events", total=n, enabled=progress) as bar:
        for s in range(0, n, chunk_size):
            e = min(n, s + chunk_size)
            offsets, coords, values = read_voxels(events, s, e)
            if METHODS[method]:
                with EventFile(events, EVENT_SCHEMA) as ef:
                    t = ef.truth(truth_names, s, e)
                truth = np.stack([t["dir_x"], t["dir_y"], t["dir_z"]], 1)
                start = np.stack([t["start_x_cm"], t["start_y_cm"], t["start_z_cm"]], 1)
            m = e - s
            if method in ("nonml", "nonml_truth_ht"):
                r = nonml_mod.reconstruct(offsets, coords, values, cfg,
                                          truth if method == "nonml_truth_ht" else None)
                part = {k: r[k] for k in ("dir_x", "dir_y", "dir_z", "status")}
                part["kappa"] = np.full(m, np.nan, np.float32)
            elif method == "best_expected":
                r = best_expected.reconstruct(offsets, coords, values, start, truth,
                                              epsilon_cm=epsilon_cm)
                d = r["direction"]
                part = {"dir_x": d[:, 0], "dir_y": d[:, 1], "dir_z": d[:, 2],
                        "kappa": np.full(m, np.nan), "status": r["status"]}
            else:
                r = net.reconstruct(offsets, coords, values)
                part = {k: r[k] for k in ("dir_x", "dir_y", "dir_z", "kappa", "status")}
            parts.append(part)
            bar.advance(m)
    table = {f: np.concatenate([p[f] for p in parts]).astype(dt) if parts else np.zeros(0, dt)
             for f, dt, *_ in RECO_FIELDS}
    config = {"method": method}
    if method in ("nonml", "nonml_truth_ht"):
        config["nonml"] = cfg.to_dict()
    elif method == "best_expected":
        config["epsilon_cm"] = float(epsilon_cm)
    else:
        config.update(net.config_dict())
    write_reconstruction(events, name, table, fields=RECO_FIELDS, config=config,
                         overwrite=True)
    failed = int(np.count_nonzero(table["status"]))
    return {"method": method, "name": name, "n_events": int(n), "file": str(events),
            "failed": failed, "efficiency": (n - failed) / n if n else None}
