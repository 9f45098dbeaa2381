"""What the photons are: energy spectrum, polarization and beam spot of an IXPE run."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from astroreco.errors import InputError

#: photon energies the simulation accepts (keV): DME tables and the detector's band
ENERGY_RANGE_KEV = (1.0, 15.0)


@dataclass(frozen=True)
class EnergySpectrum:
    """Photon energy distribution, sampled by inverse CDF.

    Build with :meth:`fixed`, :meth:`uniform` or :meth:`tabulated`.
    """

    grid_kev: tuple
    cdf: tuple
    label: str

    @classmethod
    def fixed(cls, energy_kev: float) -> "EnergySpectrum":
        _check_energy(energy_kev, energy_kev)
        return cls((float(energy_kev), float(energy_kev)), (0.0, 1.0), f"{energy_kev:g} keV")

    @classmethod
    def uniform(cls, emin_kev: float, emax_kev: float) -> "EnergySpectrum":
        _check_energy(emin_kev, emax_kev)
        return cls((float(emin_kev), float(emax_kev)), (0.0, 1.0),
                   f"uniform {emin_kev:g}-{emax_kev:g} keV")

    @classmethod
    def lines(cls, energies_kev) -> "EnergySpectrum":
        """Equally populated lines (a calibration run at several energies)."""
        e = sorted(float(v) for v in energies_kev)
        if not e:
            raise InputError("energy lines: expected at least one energy")
        _check_energy(e[0], e[-1])
        grid, cdf = [], []
        for i, v in enumerate(e):
            grid += [v, v]
            cdf += [i / len(e), (i + 1) / len(e)]
        return cls(tuple(grid), tuple(cdf), "lines " + ",".join(f"{v:g}" for v in e) + " keV")

    @classmethod
    def tabulated(cls, energy_kev, dn_de, label="tabulated") -> "EnergySpectrum":
        """Piecewise-linear spectrum dN/dE (any normalisation) on an increasing grid."""
        e = np.asarray(energy_kev, dtype=float)
        f = np.asarray(dn_de, dtype=float)
        if e.ndim != 1 or e.shape != f.shape or e.size < 2:
            raise InputError("spectrum: expected two columns (energy keV, dN/dE) with >= 2 rows")
        if not (np.all(np.isfinite(e)) and np.all(np.isfinite(f)) and np.all(f >= 0)):
            raise InputError("spectrum: energies and dN/dE must be finite and dN/dE >= 0")
        if np.any(np.diff(e) <= 0):
            raise InputError("spectrum: energies must increase strictly")
        _check_energy(e[0], e[-1])
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(e))])
        if cdf[-1] <= 0:
            raise InputError("spectrum: dN/dE is zero everywhere")
        return cls(tuple(e), tuple(cdf / cdf[-1]), label)

    @classmethod
    def parse(cls, text: str) -> "EnergySpectrum":
        """'4' (fixed), '2:8' (uniform), '2,4,6' (lines) -- the command-line form."""
        expected = "expected a number (keV), a range 'EMIN:EMAX' or lines 'E1,E2,...'"
        try:
            if "," in str(text):
                return cls.lines([float(p) for p in str(text).split(",")])
            parts = [float(p) for p in str(text).split(":")]
        except ValueError:
            raise InputError(f"--energy {text!r}: {expected}") from None
        if len(parts) == 1:
            return cls.fixed(parts[0])
        if len(parts) == 2:
            return cls.uniform(*parts)
        raise InputError(f"--energy {text!r}: {expected}")


def _check_energy(emin, emax):
    lo, hi = ENERGY_RANGE_KEV
    if not (np.isfinite(emin) and np.isfinite(emax) and lo <= emin <= emax <= hi):
        raise InputError(f"energy: expected {lo:g} <= E <= {hi:g} keV (and EMIN <= EMAX), "
                         f"got {emin:g}..{emax:g}")


@dataclass(frozen=True)
class SourceConfig:
    """What the photons are: spectrum, polarization and where they hit."""

    spectrum: EnergySpectrum = field(default_factory=lambda: EnergySpectrum.fixed(4.0))
    polarization_degree: float = 0.0
    polarization_angle: float = 0.0   # rad, counter-clockwise from the detector x axis
    spot_x_mm: float = 0.0
    spot_y_mm: float = 0.0
    spot_radius_mm: float = 1.0

    def __post_init__(self):
        if not (np.isfinite(self.polarization_degree) and 0.0 <= self.polarization_degree <= 1.0):
            raise InputError("polarization degree: expected a value in [0, 1], "
                             f"got {self.polarization_degree}")
        if not np.isfinite(self.polarization_angle):
            raise InputError("polarization angle: expected a finite angle (rad)")
        if not (np.isfinite(self.spot_radius_mm) and self.spot_radius_mm >= 0):
            raise InputError("spot radius: expected >= 0 mm")
