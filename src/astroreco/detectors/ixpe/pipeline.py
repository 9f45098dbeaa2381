"""The IXPE verbs as plain functions: simulate, reconstruct (evaluate lives in evaluate.py).

The command line (``astroreco ixpe ...``) is a thin wrapper over these functions; notebooks
and tests call them directly with the same keyword arguments.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from astroreco.detectors.ixpe import moments as moments_mod
from astroreco.detectors.ixpe.simulate import (TRUTH_FIELDS, EnergySpectrum, GpdConfig,
                                               GpdSimulator, SourceConfig, TrackBatch,
                                               config_dict)
from astroreco.errors import InputError
from astroreco.io.store import (Column, EventFile, EventSchema, EventWriter,
                                check_output_path, check_run_args, columns,
                                write_reconstruction)
from astroreco.progress import progress_bar

#: what an IXPE event file holds
EVENT_SCHEMA = EventSchema(
    detector="ixpe",
    hits=columns([("col", "i2", "", "pixel column"), ("row", "i2", "", "pixel row"),
                  ("charge", "f4", "e-", "pixel charge after noise and zero suppression")]),
    per_event=(Column("window", "i2", "", "read-out window (min_col, max_col, min_row, max_row)",
                      (4,)),),
    truth=columns(TRUTH_FIELDS),
)

#: reconstruction methods known to ``reconstruct``
METHODS = ("moments", "nn")


def available_methods() -> list[str]:
    """Methods ``reconstruct`` can run here (``nn`` needs the shipped model or a model dir)."""
    from astroreco.detectors.ixpe.neural import default_model_dir

    return [m for m in METHODS if m != "nn" or (default_model_dir() / "config.json").exists()]


@functools.lru_cache(maxsize=4)
def _simulator(config: GpdConfig) -> GpdSimulator:
    return GpdSimulator(config)


def _simulate_chunk(config: GpdConfig, source: SourceConfig, first: int, n: int, seed: int,
                    n_threads=None) -> TrackBatch:
    """One shard of a run (a module-level function so that dask workers can run it)."""
    return _simulator(config).simulate(source, n, seed=seed, first=first, n_threads=n_threads)


def simulate(out, *, n_events: int, energy="4", polarization_degree: float = 0.0,
             polarization_angle_deg: float = 0.0, seed: int = 0, spot_radius_mm: float = 1.0,
             detector: GpdConfig | None = None, spectrum: EnergySpectrum | None = None,
             workers: int = 1, scheduler: str | None = None, chunk_size: int = 50_000,
             overwrite: bool = False, progress: bool = True) -> dict:
    """Simulate IXPE photoelectron tracks into an HDF5 event file.

    Parameters
    ----------
    out : path-like
        Event file to write (HDF5, written atomically).
    n_events : int
        Photons to simulate; events that do not trigger are not stored.
    energy : str or float
        ``4`` (fixed, keV) or ``"2:8"`` (uniform); ignored when ``spectrum`` is given.
    polarization_degree : float
        In [0, 1].
    polarization_angle_deg : float
        Counter-clockwise from the detector x axis (degrees).
    seed : int
        Run seed: event k is drawn from stream (seed, k), so the output does not depend on
        ``workers`` or ``chunk_size``.
    workers : int
        1: this process (threads over the CPUs).  N > 1: a dask LocalCluster of N processes.
    scheduler : str, optional
        Address of a running dask scheduler (a real cluster); overrides ``workers``.

    Returns
    -------
    dict
        Summary: file, events stored, events simulated, trigger efficiency.
    """
    check_run_args(n_events, chunk_size, seed)
    spectrum = spectrum or EnergySpectrum.parse(energy)
    source = SourceConfig(spectrum, float(polarization_degree),
                          float(np.radians(polarization_angle_deg)),
                          spot_radius_mm=float(spot_radius_mm))
    detector = detector or GpdConfig()
    chunks = [(s, min(chunk_size, n_events - s)) for s in range(0, n_events, chunk_size)]
    meta = config_dict(detector, source, n_events, seed)
    with EventWriter(out, EVENT_SCHEMA, config=meta, overwrite=overwrite) as writer, \
            progress_bar(f"simulating {n_events} tracks", total=n_events,
                         enabled=progress) as bar:
        for batch in _run_chunks(detector, source, chunks, seed, workers, scheduler):
            writer.append(batch.offsets, hits={"col": batch.col, "row": batch.row,
                                               "charge": batch.charge},
                          per_event={"window": batch.window}, truth=batch.truth,
                          n_simulated=batch.n_simulated)
            bar.advance(batch.n_simulated)
        stored = writer.n_events
    return {"file": str(out), "n_stored": stored, "n_simulated": n_events,
            "trigger_efficiency": stored / n_events}


def _run_chunks(detector, source, chunks, seed, workers, scheduler):
    """Yield the chunks' batches in order, locally or on a dask cluster."""
    if scheduler is None and workers <= 1:
        for first, n in chunks:
            yield _simulate_chunk(detector, source, first, n, seed)
        return
    from dask.distributed import Client, LocalCluster

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = [client.submit(_simulate_chunk, detector, source, first, n, seed, 1,
                                 pure=False) for first, n in chunks]
        for fut in futures:  # in order: the file does not depend on which finishes first
            yield fut.result()
            fut.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def read_tracks(path, start=0, stop=None) -> tuple[np.ndarray, dict]:
    """Ragged pixels of an IXPE event file: (offsets, {col, row, charge})."""
    with EventFile(path, EVENT_SCHEMA) as ef:
        return ef.hits(start, stop)


def reconstruct(events, *, method: str = "moments", model=None, tta: int | None = None,
                device: str = "cpu", fits=None, spurious=None, overwrite: bool = False,
                chunk_size: int = 200_000, progress: bool = True) -> dict:
    """Reconstruct every event of ``events`` and store the result under ``/reco/<method>``.

    Parameters
    ----------
    events : path-like
        IXPE event file (from :func:`simulate`, or converted data).
    method : str
        ``moments`` (the classical reconstruction) or ``nn`` (a trained network).
    model : path-like, optional
        Model directory for ``nn`` (default: the shipped model, ``models/ixpe``).
    tta : int, optional
        Lattice symmetries averaged by ``nn`` (default: the model's setting).
    device : str
        torch device for ``nn``.
    fits : path-like, optional
        Also write an IXPE Level-2 FITS file readable by ixpeobssim's ``xpbin``.
    spurious : path-like or SpuriousCalibration, optional
        With ``fits``: subtract this spurious-modulation calibration (measured for the same
        method, ``astroreco ixpe spurious``) from the Level-2 Q and U.
    overwrite : bool
        Replace an existing FITS file.  A reconstruction stored under the same method name
        is always replaced (re-running a reconstruction updates it).

    Returns
    -------
    dict
        Summary: method, events, counts per status flag.
    """
    if method not in METHODS:
        raise InputError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if fits is not None:
        check_output_path(fits, overwrite)
    if spurious is not None:
        if fits is None:
            raise InputError("--spurious: corrects the Level-2 output; give --fits too")
        spurious = _spurious_for(spurious, method)
    if method == "moments":
        reconstructor = _MomentsReconstructor()
    else:
        from astroreco.detectors.ixpe.neural import NeuralReconstructor

        reconstructor = NeuralReconstructor(model, device=device, tta=tta)
    with EventFile(events, EVENT_SCHEMA) as ef:
        n = ef.n_events
        config = ef.config
        parts = []
        with progress_bar(f"{method}: reconstructing {n} tracks", total=n,
                          enabled=progress) as bar:
            for s, e in ef.iter_chunks(chunk_size):
                offsets, hits = ef.hits(s, e)
                parts.append(reconstructor.reconstruct(offsets, hits["col"], hits["row"],
                                                       hits["charge"]))
                bar.advance(e - s)
    fields = reconstructor.fields
    table = {f[0]: np.concatenate([p[f[0]] for p in parts]) if parts else
             np.zeros(0, f[1]) for f in fields}
    if method == "moments":
        table["energy_kev"] = charge_to_energy(table["pha"], config)
        fields = fields + (("energy_kev", "f4", "keV",
                            "energy from the cluster charge (nominal gain)"),)
    write_reconstruction(events, method, table, fields=fields,
                         config={"method": method, "config": reconstructor.config_dict()},
                         overwrite=True)
    if fits is not None:
        write_fits(events, fits, method=method, spurious=spurious, overwrite=overwrite)
    status = table["status"]
    return {"method": method, "n_events": int(n), "file": str(events),
            "status_counts": {name: int(np.count_nonzero(status & bit))
                              for bit, name in reconstructor.status_bits.items()},
            "fits": None if fits is None else str(fits)}


class _MomentsReconstructor:
    """The moments analysis behind the common reconstructor interface."""

    fields = moments_mod.OUTPUT_FIELDS
    status_bits = moments_mod.STATUS_BITS

    def reconstruct(self, offsets, col, row, charge):
        return moments_mod.moments_analysis(offsets, col, row, charge)

    def config_dict(self):
        return moments_mod.MomentsConfig().__dict__


def charge_to_energy(pha, config: dict) -> np.ndarray:
    """Energy (keV) from the summed charge with the nominal gain of the simulated detector."""
    det = GpdConfig(**config.get("detector", {})) if config else GpdConfig()
    w_ev = det.gas().w_ev
    return (np.asarray(pha, dtype=np.float64) * w_ev * 1e-3 / det.gem_gain).astype(np.float32)


def _spurious_for(spurious, method: str):
    """A SpuriousCalibration (loaded from a path when needed), checked against ``method``."""
    from astroreco.detectors.ixpe.spurious import SpuriousCalibration

    source = spurious
    if not isinstance(spurious, SpuriousCalibration):
        spurious = SpuriousCalibration.load(spurious)
    if spurious.method and spurious.method != method:
        where = "" if source is spurious else f"{source}: "
        raise InputError(f"{where}spurious calibration measured for method "
                         f"{spurious.method!r}, not {method!r}")
    return spurious


def write_fits(events, fits, *, method="moments", spurious=None, overwrite=False):
    """Write the ``method`` reconstruction of ``events`` as an IXPE Level-2 FITS file.

    ``spurious`` (a calibration or its JSON file, for the same method): Q and U are written
    with the spurious modulation subtracted event by event, as in IXPE's Level-2 data.
    """
    from astroreco.detectors.ixpe.level2 import write_level2

    if spurious is not None:
        spurious = _spurious_for(spurious, method)
    with EventFile(events, EVENT_SCHEMA) as ef:
        r = ef.reco(method)
    ok = np.isfinite(r["phi"]) & (r["energy_kev"] > 0) & (r["energy_kev"] < 15)
    weight = r["w_mom"] if "w_mom" in r else r["weight"]
    ok &= np.isfinite(weight)
    phi, energy = r["phi"][ok], r["energy_kev"][ok]
    stokes = None if spurious is None else spurious.stokes(phi, energy)
    write_level2(fits, phi=phi, energy_kev=energy, x_mm=r["x_mm"][ok], y_mm=r["y_mm"][ok],
                 w_mom=weight[ok], status=r["status"][ok].astype(int), stokes=stokes,
                 overwrite=overwrite)
    return Path(fits)


def describe(path) -> str:
    """One screen of what an event file holds."""
    with EventFile(path) as ef:
        return json.dumps({"file": str(path), "detector": ef.detector, "n_events": ef.n_events,
                           "n_simulated": ef.n_simulated, "methods": ef.methods,
                           "config": ef.config}, indent=2)
