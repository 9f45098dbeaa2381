import numpy as np
import pytest
from scipy import stats

from astroreco import rng


def test_streams_are_reproducible_and_distinct():
    a = rng.uniform_array(7, 3, 1000)
    b = rng.uniform_array(7, 3, 1000)
    c = rng.uniform_array(7, 4, 1000)
    d = rng.uniform_array(8, 3, 1000)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, d)


def test_uniform_moments_open_interval():
    u = rng.uniform_array(1, 0, 200_000)
    assert u.min() > 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
    assert abs(u.var() - 1 / 12) < 0.002
    # neighbouring values are uncorrelated
    assert abs(np.corrcoef(u[1:], u[:-1])[0, 1]) < 0.01


def test_ziggurat_normals_are_standard_normal():
    z = rng.normal_ziggurat_array(3, 1, 200_000)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 0.01 and z.std() == pytest.approx(1.0, abs=0.01)
    assert (z > 3.5).mean() == pytest.approx(stats.norm.sf(3.5), rel=0.3)
