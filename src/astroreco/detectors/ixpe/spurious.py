"""Spurious-modulation calibration: the detector's response to unpolarized light, subtracted.

A Gas Pixel Detector answers unpolarized photons with a small modulation of its own (here
from the GEM holes sitting at a fixed offset from the pixel centres; in flight detectors
also from the ASIC and GEM non-uniformities).  IXPE measures it with unpolarized calibration
sources and subtracts it event by event from the Stokes parameters (Rankin et al. 2022,
AJ 163, 39):

.. math:: Q_i = 2\\cos 2\\phi_i - \\hat q(E_i), \\qquad U_i = 2\\sin 2\\phi_i - \\hat u(E_i)

with :math:`\\hat q, \\hat u` the mean ``2 cos 2 phi``, ``2 sin 2 phi`` of the calibration
events in the energy bin of event ``i`` (the ixpeobssim normalisation, in which a density
``1 + a cos 2(phi - phi0)`` has mean ``Q = a cos 2 phi0``).  The calibration is measured
per reconstruction method, on events independent of those it corrects.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from astroreco.errors import InputError
from astroreco.stats.directional import check_angles


@dataclass(frozen=True)
class SpuriousCalibration:
    """Mean spurious Stokes parameters per energy bin (from unpolarized events).

    Attributes
    ----------
    edges_kev : tuple of float
        ``K + 1`` increasing bin edges (keV); events outside use the nearest bin.
    q, u : tuple of float
        ``K`` means of ``2 cos 2 phi`` and ``2 sin 2 phi``.
    n : tuple of int
        Calibration events per bin.
    method : str
        The reconstruction it was measured for.
    """

    edges_kev: tuple
    q: tuple
    u: tuple
    n: tuple
    method: str = ""

    @classmethod
    def measure(cls, phi, energy_kev, edges_kev, *, method: str = "") -> SpuriousCalibration:
        """Measure the calibration on unpolarized events (angles in rad, energies in keV)."""
        phi = check_angles(phi)
        energy = np.asarray(energy_kev, dtype=np.float64).ravel()
        edges = np.asarray(edges_kev, dtype=np.float64)
        if energy.shape != phi.shape:
            raise InputError(f"energy_kev: expected one energy per angle ({phi.size}), "
                             f"got {energy.size}")
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise InputError("edges_kev: expected at least two increasing bin edges")
        k = np.clip(np.searchsorted(edges, energy, side="right") - 1, 0, edges.size - 2)
        n = np.bincount(k, minlength=edges.size - 1)
        if np.any(n == 0):
            raise InputError(f"calibration: no events in the bin starting at "
                             f"{edges[np.argmin(n)]:g} keV")
        q = np.bincount(k, 2.0 * np.cos(2.0 * phi), minlength=edges.size - 1) / n
        u = np.bincount(k, 2.0 * np.sin(2.0 * phi), minlength=edges.size - 1) / n
        return cls(tuple(map(float, edges)), tuple(map(float, q)), tuple(map(float, u)),
                   tuple(map(int, n)), method)

    def _bins(self, energy_kev):
        edges = np.asarray(self.edges_kev)
        energy = np.asarray(energy_kev, dtype=np.float64).ravel()
        return np.clip(np.searchsorted(edges, energy, side="right") - 1, 0, edges.size - 2)

    def stokes(self, phi, energy_kev):
        """Corrected per-event ``(Q_i, U_i)``, undivided by the modulation factor."""
        phi = check_angles(phi)
        k = self._bins(energy_kev)
        if k.size != phi.size:
            raise InputError(f"energy_kev: expected one energy per angle ({phi.size}), "
                             f"got {k.size}")
        return (2.0 * np.cos(2.0 * phi) - np.asarray(self.q)[k],
                2.0 * np.sin(2.0 * phi) - np.asarray(self.u)[k])

    def residual(self, phi, energy_kev) -> dict:
        """cos 2phi amplitude left after the correction, with its error and significance.

        ``a = hypot(mean Q_i, mean U_i)``; its error per component is
        ``sqrt(2 / N + 2 / N_cal)`` (the test sample and the calibration sample both
        fluctuate; ``N_cal`` in the bins used, weighted by the events in each).
        """
        q_i, u_i = self.stokes(phi, energy_kev)
        n = q_i.size
        k = self._bins(energy_kev)
        n_cal = np.asarray(self.n)[k]
        err = math.sqrt(2.0 / n + float(np.mean(2.0 / n_cal)))
        amp = math.hypot(float(q_i.mean()), float(u_i.mean()))
        return {"amplitude_2": amp, "amplitude_err_2": err, "significance_2": amp / err,
                "n": n}

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def save(self, path) -> Path:
        """Write as JSON (temp file + rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"format": "astroreco-spurious", **self.to_dict()},
                                  indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> SpuriousCalibration:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable calibration file ({exc})") from None
        if not isinstance(d, dict) or d.pop("format", None) != "astroreco-spurious":
            raise InputError(f"{path}: not an astroreco spurious-modulation calibration")
        try:
            cal = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        except TypeError as exc:
            raise InputError(f"{path}: unexpected calibration fields ({exc})") from None
        if len(cal.edges_kev) != len(cal.q) + 1 or len(cal.q) != len(cal.u):
            raise InputError(f"{path}: expected len(edges_kev) = len(q) + 1 = len(u) + 1")
        return cal


def measure_from_file(events, *, method: str, edges_kev=(1.0, 2.5, 3.5, 4.5, 5.5, 7.0, 15.0),
                      out=None) -> SpuriousCalibration:
    """Measure the calibration of ``method`` on an unpolarized IXPE event file.

    Events are binned by the method's reconstructed ``energy_kev`` (what flight data has).
    Writes JSON to ``out`` when given.
    """
    from astroreco.detectors.ixpe.pipeline import EVENT_SCHEMA
    from astroreco.io.store import EventFile

    with EventFile(events, EVENT_SCHEMA) as ef:
        degree = float(ef.config.get("source", {}).get("polarization_degree", 0.0))
        if degree != 0.0:
            raise InputError(f"{events}: simulated with polarization degree {degree:g}; the "
                             "spurious-modulation calibration needs unpolarized events")
        r = ef.reco(method, ["phi", "energy_kev"])
    ok = np.isfinite(r["phi"]) & np.isfinite(r["energy_kev"])
    edges = np.asarray(edges_kev, dtype=np.float64)
    if not ok.any():
        raise InputError(f"{events}: no reconstructed {method} events to calibrate on")
    k = np.clip(np.searchsorted(edges, r["energy_kev"][ok], side="right") - 1, 0,
                edges.size - 2)
    counts = np.bincount(k, minlength=edges.size - 1)
    # merge empty bins into the next non-empty one (the last into the previous)
    merged = [edges[0]] + [edges[i + 1] for i in range(counts.size) if counts[i] > 0]
    merged[-1] = edges[-1]
    cal = SpuriousCalibration.measure(r["phi"][ok], r["energy_kev"][ok], merged,
                                      method=method)
    if out is not None:
        cal.save(out)
    return cal
