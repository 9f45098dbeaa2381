"""Gas mixtures: composition, density and the atomic data the transport needs.

A :class:`Gas` is a list of elements with the number of atoms of each per mean molecule
(mole-fraction weighted), a pressure and a temperature; densities follow the ideal gas law.

Atomic data (per element):

- ``Z``, ``A`` (g/mol);
- ``I`` (eV): mean excitation energies of ICRU Report 37 for the elemental gases
  (H 19.2, He 41.8, N 82.0, O 95.0, Ne 137, Ar 188) and graphite for C (78.0); mixtures use
  Bragg additivity, ``ln I = sum(n_i Z_i ln I_i) / sum(n_i Z_i)``, unless the gas overrides it;
- K-shell binding energy, KLL Auger electron energy and K fluorescence yield (keV, keV, 1);
- photoabsorption cross section (cm^2/g) tabulated at 1-50 keV from the Elam, Ravel & Sieber
  (2002) tables (Radiat. Phys. Chem. 63, 121), interpolated log-log.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from astroreco.errors import InputError

AVOGADRO = 6.02214076e23
BOLTZMANN_J_K = 1.380649e-23

#: photon energies (keV) of the photoabsorption tables
PHOTO_ENERGY_KEV = np.array(
    [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 15.0, 20.0, 30.0, 50.0]
)


@dataclass(frozen=True)
class Element:
    """Atomic data of one element (see the module docstring for sources)."""

    symbol: str
    z: int
    a_g_mol: float
    i_ev: float
    k_binding_kev: float
    auger_kev: float
    fluorescence_yield: float
    photo_cm2_g: tuple[float, ...] = field(repr=False)

    def photo_cross_section_cm2(self, energy_kev):
        """Photoabsorption cross section per atom (cm^2) at ``energy_kev`` (log-log interp.)."""
        mu = np.exp(np.interp(np.log(energy_kev), np.log(PHOTO_ENERGY_KEV),
                              np.log(np.asarray(self.photo_cm2_g))))
        return mu * self.a_g_mol / AVOGADRO


ELEMENTS = {
    e.symbol: e
    for e in [
        Element("H", 1, 1.008, 19.2, 0.0136, 0.0, 0.0,
                (6.818, 1.752, 0.6638, 0.3116, 0.1677, 0.06292, 0.02932, 0.0157, 0.009264,
                 0.005865, 0.002723, 0.001454, 0.000674, 0.0002499, 6.167e-05, 1.058e-05)),
        Element("He", 2, 4.0026, 41.8, 0.0246, 0.0, 0.0,
                (60.44, 16.38, 6.504, 3.108, 1.681, 0.637, 0.3048, 0.1653, 0.09758, 0.06184,
                 0.0292, 0.01573, 0.007335, 0.002752, 0.0006874, 0.0001195)),
        Element("C", 6, 12.011, 78.0, 0.2842, 0.26, 0.0014,
                (2210.0, 699.4, 301.7, 155.3, 89.65, 37.24, 18.66, 10.54, 6.483, 4.241, 2.076,
                 1.153, 0.5586, 0.2177, 0.05707, 0.01042)),
        Element("N", 7, 14.007, 82.0, 0.4099, 0.38, 0.0031,
                (3310.0, 1081.0, 476.0, 248.3, 144.8, 60.97, 30.87, 17.59, 10.89, 7.167,
                 3.543, 1.982, 0.9674, 0.3808, 0.101, 0.01866)),
        Element("O", 8, 15.999, 95.0, 0.5431, 0.51, 0.0058,
                (4588.0, 1547.0, 693.7, 366.8, 216.0, 92.29, 47.2, 27.1, 16.88, 11.17, 5.567,
                 3.134, 1.542, 0.6124, 0.1641, 0.03068)),
        Element("Ne", 10, 20.180, 137.0, 0.8702, 0.80, 0.016,
                (7407.0, 2664.0, 1241.0, 672.9, 403.8, 177.2, 92.37, 53.84, 33.91, 22.64,
                 11.45, 6.522, 3.253, 1.313, 0.3594, 0.06868)),
        # Argon: the table crosses the K edge (3.206 keV); below it the L shell absorbs
        # (binding ~0.25 keV), handled by the photoabsorption code of the detector.
        Element("Ar", 18, 39.948, 188.0, 3.2059, 2.95, 0.109,
                (3181.0, 1102.0, 509.4, 276.9, 168.2, 755.4, 421.0, 258.1, 169.4, 117.0,
                 62.32, 36.92, 19.27, 8.207, 2.403, 0.4946)),
    ]
}

_FORMULA_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*)")


def parse_formula(formula: str) -> dict[str, int]:
    """Atoms per molecule of a simple chemical formula: ``"C2H6O"`` -> ``{C: 2, H: 6, O: 1}``."""
    atoms: dict[str, int] = {}
    pos = 0
    for m in _FORMULA_TOKEN.finditer(formula):
        if m.start() != pos:
            break
        symbol, count = m.group(1), int(m.group(2) or 1)
        if symbol not in ELEMENTS:
            raise InputError(f"gas formula {formula!r}: unknown element {symbol!r} "
                             f"(known: {', '.join(ELEMENTS)})")
        atoms[symbol] = atoms.get(symbol, 0) + count
        pos = m.end()
    if pos != len(formula) or not atoms:
        raise InputError(f"gas formula {formula!r}: expected element symbols with counts, "
                         "e.g. 'C2H6O'")
    return atoms


@dataclass(frozen=True)
class Gas:
    """A gas mixture at a given pressure and temperature.

    Parameters
    ----------
    name : str
        Label, e.g. ``"DME"``.
    atoms_per_molecule : dict
        Element symbol -> atoms per mean molecule (mole-fraction weighted).
    pressure_bar, temperature_k : float
        Thermodynamic state (ideal gas).
    w_ev : float
        Mean energy to create one ionisation electron (eV).
    fano : float
        Fano factor of the number of ionisation electrons.
    i_ev : float or None
        Mean excitation energy override (eV); Bragg additivity when None.
    """

    name: str
    atoms_per_molecule: dict
    pressure_bar: float
    temperature_k: float
    w_ev: float
    fano: float
    i_ev: float | None = None

    def __post_init__(self):
        for sym, n in self.atoms_per_molecule.items():
            if sym not in ELEMENTS:
                raise InputError(f"gas {self.name}: unknown element {sym!r}")
            if not n > 0:
                raise InputError(f"gas {self.name}: atoms of {sym} must be > 0, got {n}")
        if not (self.pressure_bar > 0 and self.temperature_k > 0):
            raise InputError(f"gas {self.name}: pressure and temperature must be > 0")
        if not (self.w_ev > 0 and self.fano >= 0):
            raise InputError(f"gas {self.name}: W must be > 0 and Fano >= 0")

    @classmethod
    def from_molecules(cls, name, mole_fractions, *, pressure_bar, temperature_k, w_ev,
                       fano, i_ev=None):
        """Build a mixture from molecular formulas and mole fractions (normalised to 1)."""
        total = float(sum(mole_fractions.values()))
        if not total > 0:
            raise InputError(f"gas {name}: mole fractions must sum to > 0")
        atoms: dict[str, float] = {}
        for formula, frac in mole_fractions.items():
            for sym, n in parse_formula(formula).items():
                atoms[sym] = atoms.get(sym, 0.0) + n * frac / total
        return cls(name, atoms, pressure_bar, temperature_k, w_ev, fano, i_ev)

    @property
    def elements(self) -> list[Element]:
        return [ELEMENTS[s] for s in self.atoms_per_molecule]

    @property
    def molecule_density_cm3(self) -> float:
        """Number of (mean) molecules per cm^3."""
        return self.pressure_bar * 1e5 / (BOLTZMANN_J_K * self.temperature_k) * 1e-6

    @property
    def molar_mass_g_mol(self) -> float:
        return sum(ELEMENTS[s].a_g_mol * n for s, n in self.atoms_per_molecule.items())

    @property
    def density_g_cm3(self) -> float:
        return self.molecule_density_cm3 * self.molar_mass_g_mol / AVOGADRO

    @property
    def atom_density_cm3(self) -> np.ndarray:
        """Atoms of each element per cm^3, in the order of :attr:`elements`."""
        n = self.molecule_density_cm3
        return np.array([n * c for c in self.atoms_per_molecule.values()])

    @property
    def mean_excitation_ev(self) -> float:
        if self.i_ev is not None:
            return float(self.i_ev)
        num = sum(n * ELEMENTS[s].z * math.log(ELEMENTS[s].i_ev)
                  for s, n in self.atoms_per_molecule.items())
        den = sum(n * ELEMENTS[s].z for s, n in self.atoms_per_molecule.items())
        return math.exp(num / den)

    @property
    def electrons_per_g(self) -> float:
        """Z/A of the mixture times Avogadro: electrons per gram."""
        z = sum(n * ELEMENTS[s].z for s, n in self.atoms_per_molecule.items())
        return z * AVOGADRO / self.molar_mass_g_mol

    def photoabsorption_per_cm(self, energy_kev):
        """Linear photoabsorption coefficient (1/cm) of each element, shape (n_elements, ...)."""
        return np.array([n * el.photo_cross_section_cm2(energy_kev)
                         for n, el in zip(self.atom_density_cm3, self.elements)])

    def at(self, *, pressure_bar=None, temperature_k=None) -> "Gas":
        """The same mixture at another pressure and/or temperature."""
        return Gas(self.name, dict(self.atoms_per_molecule),
                   self.pressure_bar if pressure_bar is None else pressure_bar,
                   self.temperature_k if temperature_k is None else temperature_k,
                   self.w_ev, self.fano, self.i_ev)


def dme(pressure_mbar: float = 800.0, temperature_c: float = 20.0) -> Gas:
    """Dimethyl ether (CH3)2O, the IXPE Gas Pixel Detector fill (800 mbar at 20 C).

    W = 24.57 eV and Fano factor 0.25, the values of the mission's Geant4 simulation.
    """
    return Gas.from_molecules("DME", {"C2H6O": 1.0}, pressure_bar=pressure_mbar / 1000.0,
                              temperature_k=temperature_c + 273.15, w_ev=24.57, fano=0.25)


def he_co2(fraction_he: float = 0.7, pressure_torr: float = 760.0,
           temperature_c: float = 20.0) -> Gas:
    """He:CO2 mixture (default 70:30 at 760 Torr, 20 C), the directional-TPC fill.

    W of the mixture from the W values of the components weighted by their electron
    fractions: He 41.3 eV, CO2 33.0 eV (ICRU Report 31); Fano factor 0.2 (typical of gases).
    """
    if not 0.0 <= fraction_he <= 1.0:
        raise InputError(f"he_co2: fraction_he must be in [0, 1], got {fraction_he}")
    f_he = fraction_he * 2.0 / (fraction_he * 2.0 + (1.0 - fraction_he) * 22.0)
    w = 1.0 / (f_he / 41.3 + (1.0 - f_he) / 33.0)
    return Gas.from_molecules("He:CO2", {"He": fraction_he, "CO2": 1.0 - fraction_he},
                              pressure_bar=pressure_torr * 1.01325 / 760.0,
                              temperature_k=temperature_c + 273.15, w_ev=w, fano=0.2)
