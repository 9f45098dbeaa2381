"""ECAL event files: simulate showers into the HDF5 event store, read the images back.

An ECAL event is a dense ``(n_layers, n_cells)`` image of cell energies (MeV), stored as the
per-event column ``/events/image``; the truth table holds the particle, its energy, direction
and incident point (:data:`~astroreco.detectors.ecal.simulate.TRUTH_FIELDS`).
Reconstructions are stored under ``/reco/<method>`` with :data:`RECO_FIELDS`.
"""

from __future__ import annotations

import warnings

import numpy as np

from astroreco.detectors.ecal.geometry import EcalGeometry
from astroreco.errors import InputError
from astroreco.io.store import (Column, EventFile, EventSchema, EventWriter,
                                check_output_path, check_run_args, columns)
from astroreco.progress import progress_bar

#: what every reconstruction stores (name, dtype, unit, description)
RECO_FIELDS = (
    ("theta_deg", "f4", "deg", "polar angle of the shower axis (180 = vertically down)"),
    ("phi_deg", "f4", "deg", "azimuth of the shower axis, from +x towards +y"),
    ("x0_mm", "f4", "mm", "incident point on the front face, x"),
    ("y0_mm", "f4", "mm", "incident point on the front face, y"),
    ("sigma_theta_deg", "f4", "deg", "predicted uncertainty of theta (NaN: none)"),
    ("sigma_x0_mm", "f4", "mm", "predicted uncertainty of x0 (NaN: none)"),
    ("sigma_y0_mm", "f4", "mm", "predicted uncertainty of y0 (NaN: none)"),
    ("flags", "u1", "", "bit 0: the fit failed; bit 1: energy outside the model's range"),
)

#: ``flags`` bits
FLAG_FAILED = 1
FLAG_OUT_OF_RANGE = 2


def event_schema(geometry: EcalGeometry | None = None) -> EventSchema:
    """The ECAL event-file schema for ``geometry`` (default: the AMS-02-like 18 x 72)."""
    from astroreco.detectors.ecal.simulate import TRUTH_FIELDS

    g = geometry or EcalGeometry()
    image = Column("image", "f4", "MeV", "cell energies, (layer, cell), electromagnetic scale",
                   (g.n_layers, g.n_cells))
    return EventSchema(detector="ecal", hits=(), per_event=(image,),
                       truth=columns(TRUTH_FIELDS))


EVENT_SCHEMA = event_schema()


def parse_range(text, name: str, *, positive: bool = False) -> float | tuple[float, float]:
    """``'10'`` (fixed) or ``'2.5:4000'`` (a range) -> a float or a ``(low, high)`` pair."""
    s = str(text).strip()
    try:
        values = tuple(float(v) for v in s.split(":"))
    except ValueError:
        raise InputError(f"--{name} {text!r}: expected a number or 'low:high'") from None
    if len(values) not in (1, 2) or not all(np.isfinite(values)) \
            or (len(values) == 2 and not values[0] <= values[1]) \
            or (positive and min(values) <= 0):
        raise InputError(f"--{name} {text!r}: expected a {'positive ' if positive else ''}"
                         f"number or 'low:high' with low <= high")
    return values[0] if len(values) == 1 else values


def simulate(out, *, n_events: int, energy="2.5:4000", theta="155:180", particle: str = "e-",
             variant: bool = False, seed: int = 0, chunk_size: int = 20_000,
             overwrite: bool = False, progress: bool = True) -> dict:
    """Simulate showers into an ECAL event file (HDF5, written atomically).

    Parameters
    ----------
    out : path-like
        Event file to write.
    n_events : int
        Showers to simulate; those failing the fiducial cut (entry and exit at least 2 cells
        from the sides) are not stored.
    energy : str or float
        GeV: ``10`` (fixed) or ``2.5:4000`` (drawn from E^-1, the seed's spectrum).
    theta : str or float
        Polar angle (deg): ``180`` (vertical) or ``155:180`` (uniform in cos theta).
    particle : str
        ``e-``, ``e+`` or ``gamma``.
    variant : bool
        Simulate the detector variant (miscalibrated and dead cells, more noise) that stands
        in for the sim-to-real gap.
    seed : int
        Run seed; shower ``k`` depends only on ``(seed, k)``.

    Returns
    -------
    dict
        Summary: file, showers stored and simulated.
    """
    from astroreco.detectors.ecal.simulate import EcalSimConfig, ShowerSimulator

    check_run_args(n_events, chunk_size, seed)
    e = parse_range(energy, "energy", positive=True)
    th = parse_range(theta, "theta")
    config = EcalSimConfig.variant() if variant else EcalSimConfig()
    sim = ShowerSimulator(config)
    meta = {"detector": config.to_dict(), "n_events": int(n_events), "seed": int(seed),
            "energy_gev": e, "theta_deg": th, "particle": particle, "variant": bool(variant)}
    schema = event_schema(config.geometry)
    with EventWriter(out, schema, config=meta, overwrite=overwrite) as writer, \
            progress_bar(f"simulating {n_events} {particle} showers", total=n_events,
                         enabled=progress) as bar:
        for first in range(0, n_events, chunk_size):
            n = min(chunk_size, n_events - first)
            batch = sim.simulate(n, energy_gev=e, theta_deg=th, particle=particle,
                                 seed=seed, first_index=first)
            m = len(batch.images)
            writer.append(np.zeros(m + 1, np.int64), hits={},
                          per_event={"image": batch.images}, truth=batch.truth,
                          n_simulated=batch.n_simulated)
            bar.advance(n)
        stored = writer.n_events
    return {"file": str(out), "n_stored": stored, "n_simulated": int(n_events),
            "fiducial_fraction": stored / n_events}


def read_images(path, start: int = 0, stop: int | None = None) -> np.ndarray:
    """``(n, n_layers, n_cells)`` float32 cell energies (MeV) of an ECAL event file, checked:
    finite and not negative beyond the noise."""
    with EventFile(path, EVENT_SCHEMA) as ef:
        images = np.asarray(ef.per_event("image", start, stop), np.float32)
    check_images(images, where=str(path))
    return images


def check_images(images, where: str = "images", geometry: EcalGeometry | None = None):
    """Raise a one-line :class:`InputError` unless ``images`` is a finite, non-negative
    ``(n, n_layers, n_cells)`` array (cell energies in MeV after pedestal subtraction and
    the threshold)."""
    g = geometry or EcalGeometry()
    a = np.asarray(images)
    if a.ndim != 3 or a.shape[1:] != (g.n_layers, g.n_cells):
        raise InputError(f"{where}: expected images of shape (n, {g.n_layers}, {g.n_cells}), "
                         f"got {a.shape}")
    if not np.all(np.isfinite(a)):
        bad = int(np.flatnonzero(~np.isfinite(a).all(axis=(1, 2)))[0])
        raise InputError(f"{where}: NaN or infinite cell energies (first in event {bad})")
    if np.any(a < 0):
        bad = int(np.flatnonzero((a < 0).any(axis=(1, 2)))[0])
        raise InputError(f"{where}: negative cell energies (first in event {bad}); expected "
                         f"energies >= 0 MeV after the threshold")


#: reconstruction methods: centre of gravity, neighbour-cell ratio, a trained network
METHODS = ("cog", "cell_ratio", "nn")


def default_scurve_path():
    """The shipped S-curve table of the neighbour-cell-ratio method (``models/ecal``)."""
    from astroreco.io.modeldir import shipped_model_dir

    return shipped_model_dir("ecal") / "scurve.json"


def make_scurve(out, *, n_events: int = 100_000, seed: int = 7, overwrite: bool = False,
                progress: bool = True) -> dict:
    """Derive the neighbour-cell-ratio S-curve table from ``n_events`` simulated electrons
    (the seed's spectrum and angles, nominal detector) and write it as JSON."""
    from astroreco.detectors.ecal.classical import derive_scurve
    from astroreco.detectors.ecal.simulate import EcalSimConfig, ShowerSimulator

    out = check_output_path(out, overwrite)
    config = EcalSimConfig()
    sim = ShowerSimulator(config)
    images, truth = [], {k: [] for k in ("theta_deg", "phi_deg", "x0_mm", "y0_mm")}
    with progress_bar(f"simulating {n_events} showers for the S-curve", total=n_events,
                      enabled=progress) as bar:
        for first in range(0, n_events, 20_000):
            n = min(20_000, n_events - first)
            b = sim.simulate(n, seed=seed, first_index=first)
            images.append(b.images)
            for k in truth:
                truth[k].append(b.truth[k])
            bar.advance(n)
    truth = {k: np.concatenate(v) for k, v in truth.items()}
    table = derive_scurve(np.concatenate(images), truth, config.geometry,
                          provenance={"simulation": "e-, 2.5-4000 GeV (E^-1), theta 155-180 "
                                      "deg, nominal detector", "n_simulated": int(n_events),
                                      "seed": int(seed)})
    table.save(out)
    return {"file": str(out), "n_events": int(len(truth["theta_deg"]))}


def reconstruct(events, *, method: str = "cog", name: str | None = None, model=None,
                scurve=None, calibration=None, device: str = "cpu",
                chunk_size: int = 50_000, progress: bool = True) -> dict:
    """Reconstruct every shower of ``events`` and store it under ``/reco/<name>``.

    Parameters
    ----------
    events : path-like
        ECAL event file.
    method : str
        ``cog`` (centre of gravity), ``cell_ratio`` (neighbour-cell ratio with the S-curve
        table ``scurve``, default the shipped one) or ``nn`` (a trained network, default
        the shipped model).
    name : str, optional
        Name under ``/reco`` (default: ``method``).
    calibration : path-like or CellCalibration, optional
        Per-cell gains and dead cells measured on the detector
        (:func:`~astroreco.detectors.ecal.calibration.intercalibrate`): the images are
        brought to the simulation's calibration before any method sees them.

    Returns
    -------
    dict
        Summary: method, name, events, failed fits, events outside the model's energies.
    """
    from astroreco.detectors.ecal import classical
    from astroreco.io.store import write_reconstruction

    if method not in METHODS:
        raise InputError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    name = name or method
    cells = None
    if calibration is not None:
        from astroreco.detectors.ecal.calibration import CellCalibration

        cells = (calibration if isinstance(calibration, CellCalibration)
                 else CellCalibration.load(calibration))
    table_sc, net = None, None
    if method == "cell_ratio":
        table_sc = classical.SCurve.load(scurve or default_scurve_path())
    elif method == "nn":
        from astroreco.detectors.ecal.neural import NeuralReconstructor

        net = NeuralReconstructor(model, device=device)
    with EventFile(events, EVENT_SCHEMA) as ef:
        n = ef.n_events
    parts = []
    with progress_bar(f"{name}: reconstructing {n} showers", total=n,
                      enabled=progress) as bar:
        for s in range(0, n, chunk_size):
            e = min(n, s + chunk_size)
            images = read_images(events, s, e)
            if cells is not None:
                images = cells.apply(images)
            nan = np.full(e - s, np.nan)
            flags = np.zeros(e - s, np.uint8)
            if method == "nn":
                r = net.reconstruct(images)
                flags[r["out_of_range"]] |= FLAG_OUT_OF_RANGE
                flags[images.sum(axis=(1, 2)) <= 0] |= FLAG_FAILED
            else:
                r = classical.centre_of_gravity(images) if method == "cog" else \
                    classical.cell_ratio(images, table_sc)
                r = {**r, "sigma_theta_deg": nan, "sigma_x0_mm": nan, "sigma_y0_mm": nan}
                flags[r["failed"]] |= FLAG_FAILED
            parts.append({**{f: r[f] for f, *_ in RECO_FIELDS if f != "flags"},
                          "flags": flags})
            bar.advance(e - s)
    table = {f: np.concatenate([p[f] for p in parts]).astype(dt) if parts else
             np.zeros(0, dt) for f, dt, *_ in RECO_FIELDS}
    config = {"method": method}
    if net is not None:
        config.update(net.config_dict())
    elif table_sc is not None:
        config["scurve"] = str(scurve or default_scurve_path())
    if cells is not None:
        config["cell_calibration"] = {
            "file": None if cells is calibration else str(calibration),
            **{k: v for k, v in cells.summary().items() if k in
               ("cells", "calibrated", "dead", "gain_rms", "n_data", "n_reference",
                "min_energy_gev")}}
    write_reconstruction(events, name, table, fields=RECO_FIELDS, config=config,
                         overwrite=True)
    failed = int(np.count_nonzero(table["flags"] & FLAG_FAILED))
    outside = int(np.count_nonzero(table["flags"] & FLAG_OUT_OF_RANGE))
    if outside:
        warnings.warn(f"{events}: {outside} of {n} showers deposit an energy outside the "
                      f"range the network was trained on; flagged (flags bit 1)", UserWarning,
                      stacklevel=2)
    return {"method": method, "name": name, "n_events": int(n), "file": str(events),
            "failed": failed, "out_of_range": outside}
