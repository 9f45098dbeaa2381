"""Electron transport: stopping power and CSDA range against NIST ESTAR, ionisation
statistics against W and Fano, energy conservation, reproducibility."""

import numpy as np
import pytest

from astroreco.errors import InputError
from astroreco.physics.gas import Gas, dme, he_co2, parse_formula
from astroreco.physics.transport import ElectronTransport, stopping_power_kev_cm

# NIST ESTAR (Berger, Coursey, Zucker & Chang), liquid water (I = 75 eV):
# collision stopping power (MeV cm2/g) and CSDA range (g/cm2).  Above 10 keV ESTAR's Bethe
# formula holds; our gas has the same composition and I, and the density effect is negligible.
ESTAR_WATER = {
    10.0: (22.56, 2.515e-4),
    20.0: (13.17, 8.575e-4),
    50.0: (6.603, 4.320e-3),
    100.0: (4.115, 1.431e-2),
}


@pytest.fixture(scope="module")
def water():
    return Gas.from_molecules("water", {"H2O": 1.0}, pressure_bar=1.01325,
                              temperature_k=293.15, w_ev=29.6, fano=0.2, i_ev=75.0)


@pytest.mark.parametrize("energy", sorted(ESTAR_WATER))
def test_stopping_power_and_csda_range_match_estar(water, energy):
    s_ref, r_ref = ESTAR_WATER[energy]
    rho = water.density_g_cm3
    s = stopping_power_kev_cm(water, energy) / rho / 1000.0
    r = ElectronTransport(water).csda_range_cm(energy) * rho
    assert s == pytest.approx(s_ref, rel=0.01)
    assert r == pytest.approx(r_ref, rel=0.02)


def test_mean_path_length_equals_csda_range():
    t = ElectronTransport(dme())
    for e in (2.0, 6.0):
        lengths = [t.track(e, seed=3, index=i).length_cm for i in range(50)]
        # continuous slowing down: the path length is the CSDA range (to the cut-off)
        assert np.mean(lengths) == pytest.approx(t.csda_range_cm(e), rel=0.02)


def test_energy_is_conserved():
    t = ElectronTransport(he_co2())
    for i in range(20):
        path = t.track(45.0, seed=5, index=i)
        assert path.deposited_kev == pytest.approx(45.0, rel=1e-12)
        assert np.all(np.diff(path.cumulative_kev) >= 0)


def test_seeded_tracks_are_reproducible():
    t = ElectronTransport(dme())
    a = t.track(5.0, seed=11, index=4)
    b = t.track(5.0, seed=11, index=4)
    c = t.track(5.0, seed=11, index=5)
    assert np.array_equal(a.points_cm, b.points_cm)
    assert not np.array_equal(a.points_cm, c.points_cm)


def test_ionisation_mean_and_fano_variance():
    # 5.9 keV in DME: E/W = 5900 / 24.57 = 240 electrons (W = 24.57 eV, F = 0.25, the values
    # of the IXPE Geant4 simulation, Baldini et al. 2021); variance F * N.
    gas = dme()
    t = ElectronTransport(gas)
    path = t.track(5.9, seed=1)
    counts = np.array([len(t.ionisation(path, seed=2, index=i)) for i in range(3000)])
    mean = 5900.0 / gas.w_ev
    assert counts.mean() == pytest.approx(mean, abs=4 * np.sqrt(gas.fano * mean / counts.size))
    assert counts.var() == pytest.approx(gas.fano * mean, rel=0.1)


def test_ionisation_electrons_lie_on_the_path():
    t = ElectronTransport(dme())
    path = t.track(4.0, seed=1)
    e = t.ionisation(path, seed=1)
    lo = path.points_cm.min(axis=0) - 1e-12
    hi = path.points_cm.max(axis=0) + 1e-12
    assert np.all((e >= lo) & (e <= hi))


def test_gas_densities_and_formulas():
    gas = dme()  # 800 mbar, 20 C, M = 46.07 g/mol: rho = P M / (R T)
    assert gas.density_g_cm3 == pytest.approx(0.8e5 * 46.07 / (8.314462 * 293.15) * 1e-6,
                                              rel=1e-3)
    assert parse_formula("C2H6O") == {"C": 2, "H": 6, "O": 1}
    assert he_co2().at(pressure_bar=2.0).density_g_cm3 > he_co2().density_g_cm3
    with pytest.raises(InputError):
        parse_formula("Xx2")
    with pytest.raises(InputError):
        ElectronTransport(dme()).track(float("nan"), seed=1)
