"""Spurious-modulation calibration: measured on unpolarized events, subtracted per event."""

from __future__ import annotations

import numpy as np
import pytest

from astroreco.detectors.ixpe.spurious import SpuriousCalibration
from astroreco.errors import InputError
from astroreco.stats.directional import sample_modulated_angles


def _sample(n, a, phi0, seed, energy):
    rng = np.random.default_rng(seed)
    return sample_modulated_angles(n, a, phi0, rng), np.full(n, energy)


def test_calibration_removes_a_detector_modulation():
    # a detector with 4% spurious modulation at 2 keV (phase 0) and 1% at 4 keV (phase 30)
    cal_phi = np.concatenate([_sample(200_000, 0.04, 0.0, 1, 2.0)[0],
                              _sample(200_000, 0.01, np.radians(30), 2, 4.0)[0]])
    cal_e = np.repeat([2.0, 4.0], 200_000)
    cal = SpuriousCalibration.measure(cal_phi, cal_e, [1.5, 3.0, 5.0], method="moments")
    assert cal.n == (200_000, 200_000)
    assert cal.q[0] == pytest.approx(0.04, abs=0.01) and abs(cal.u[0]) < 0.01
    # independent unpolarized test events: the raw amplitude is ~4%, corrected ~0
    phi, e = _sample(100_000, 0.04, 0.0, 3, 2.0)
    raw = 2 * np.hypot(np.mean(np.cos(2 * phi)), np.mean(np.sin(2 * phi)))
    res = cal.residual(phi, e)
    assert raw > 5 * res["amplitude_err_2"]
    assert res["significance_2"] < 3.5
    # a real polarization survives the correction
    pol, e4 = _sample(100_000, 0.30, np.radians(60), 4, 4.0)
    q, u = cal.stokes(pol, e4)
    assert np.hypot(q.mean(), u.mean()) == pytest.approx(0.30, abs=0.015)
    assert np.degrees(0.5 * np.arctan2(u.mean(), q.mean())) == pytest.approx(60, abs=2)


def test_save_load_and_bad_input(tmp_path):
    phi, e = _sample(1000, 0.0, 0.0, 5, 3.0)
    cal = SpuriousCalibration.measure(phi, e, [2.0, 4.0])
    path = cal.save(tmp_path / "cal.json")
    assert SpuriousCalibration.load(path) == cal
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="not an astroreco"):
        SpuriousCalibration.load(tmp_path / "bad.json")
    with pytest.raises(InputError, match="no events"):
        SpuriousCalibration.measure(phi, e, [2.0, 4.0, 6.0])
    with pytest.raises(InputError, match="increasing"):
        SpuriousCalibration.measure(phi, e, [4.0, 2.0])
    with pytest.raises(InputError, match="one energy per angle"):
        SpuriousCalibration.measure(phi, e[:10], [2.0, 4.0])
