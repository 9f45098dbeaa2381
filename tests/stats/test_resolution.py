"""Resolution in energy bins and the sqrt(a^2/E + b^2) fit, against known inputs."""

import numpy as np
import pytest

from astroreco.errors import InputError
from astroreco.stats.resolution import (binned_resolution, fit_stochastic_constant,
                                        gaussian_core_fit)


def test_gaussian_core_fit_ignores_tails():
    rng = np.random.default_rng(0)
    core = rng.normal(0.3, 2.0, 20000)
    tails = rng.normal(0.0, 30.0, 1000)           # 5% of wide outliers
    f = gaussian_core_fit(np.concatenate([core, tails]))
    assert f["mean"] == pytest.approx(0.3, abs=0.05)
    assert f["sigma"] == pytest.approx(2.0, rel=0.05)
    assert np.concatenate([core, tails]).std() > 5  # the plain RMS would be far off
    with pytest.raises(InputError):
        gaussian_core_fit([1.0, 2.0])


def test_stochastic_constant_fit_recovers_a_and_b():
    rng = np.random.default_rng(1)
    e = np.exp(rng.uniform(np.log(2.5), np.log(4000), 200000))
    r = rng.normal(0.0, np.sqrt(3.0 ** 2 / e + 0.2 ** 2))
    rows = binned_resolution(e, r, np.geomspace(2.5, 4000, 13))
    assert len(rows) == 12 and all(abs(x["mean"]) < 5 * x["mean_err"] for x in rows)
    fit = fit_stochastic_constant([x["e_eff"] for x in rows], [x["sigma"] for x in rows],
                                  [x["sigma_err"] for x in rows])
    assert fit["a"] == pytest.approx(3.0, rel=0.03)
    assert fit["b"] == pytest.approx(0.2, rel=0.03)
    assert 0 < fit["a_err"] < 0.1 and 0 < fit["b_err"] < 0.01
    with pytest.raises(InputError):
        binned_resolution(e, r[:10], [1, 2])
