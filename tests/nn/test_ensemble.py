"""Deep ensembles: mixture moments of the members' Gaussians, stacking of their outputs,
the cut-out member network."""

import numpy as np
import pytest
import torch

from astroreco.errors import InputError
from astroreco.nn.ensemble import (LOG_VAR_LIMIT, DeepEnsemble, combine_categorical,
                                   combine_gaussian, cutout_gaussian_net)


def test_identical_members_have_no_epistemic_variance():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(7, 3))
    log_var = rng.normal(size=(7, 3))
    m, ale, epi = combine_gaussian(np.stack([mean] * 4), np.stack([log_var] * 4))
    assert np.allclose(m, mean)
    assert np.allclose(ale, np.exp(log_var))
    assert np.array_equal(epi, np.zeros_like(epi))


def test_known_mixture_moments():
    """Two members N(-1, 1) and N(3, 4): mean 1, aleatoric (1 + 4)/2, epistemic 4; the
    total equals the mixture's variance E[x^2] - E[x]^2 computed directly."""
    means = np.array([[[-1.0]], [[3.0]]])                     # (M=2, N=1, D=1)
    log_vars = np.log(np.array([[[1.0]], [[4.0]]]))
    m, ale, epi = combine_gaussian(means, log_vars)
    assert m[0, 0] == pytest.approx(1.0)
    assert ale[0, 0] == pytest.approx(2.5)
    assert epi[0, 0] == pytest.approx(4.0)
    second = np.mean([1.0 + 1.0, 4.0 + 9.0])                   # E[x^2] of each member
    assert ale[0, 0] + epi[0, 0] == pytest.approx(second - 1.0)


def test_monte_carlo_mixture_variance():
    rng = np.random.default_rng(1)
    means = rng.normal(size=(5, 1, 2))
    log_vars = rng.normal(size=(5, 1, 2))
    m, ale, epi = combine_gaussian(means, log_vars)
    k = rng.integers(0, 5, 400_000)
    x = means[k, 0] + np.exp(0.5 * log_vars[k, 0]) * rng.standard_normal((k.size, 2))
    assert np.allclose(x.mean(0), m[0], atol=0.01)
    assert np.allclose(x.var(0), (ale + epi)[0], rtol=0.02)


def test_extreme_log_variances_stay_finite():
    means = np.zeros((3, 2, 1))
    log_vars = np.array([1e4, -1e4, 0.0])[:, None, None] * np.ones((3, 2, 1))
    m, ale, epi = combine_gaussian(means, log_vars)
    assert np.all(np.isfinite(ale)) and np.all(ale > 0)
    assert ale[0, 0] == pytest.approx((np.exp(LOG_VAR_LIMIT) + np.exp(-LOG_VAR_LIMIT) + 1) / 3)
    # torch input works too
    m2, _, _ = combine_gaussian(torch.zeros(2, 4, 3), torch.full((2, 4, 3), 50.0))
    assert m2.shape == (4, 3)


def test_bad_shapes_and_values():
    with pytest.raises(InputError, match="same shape|one shape"):
        combine_gaussian(np.zeros((2, 3, 1)), np.zeros((2, 3, 2)))
    with pytest.raises(InputError, match="NaN"):
        combine_gaussian(np.full((1, 1, 1), np.nan), np.zeros((1, 1, 1)))
    with pytest.raises(InputError, match="at least one"):
        DeepEnsemble([])
    with pytest.raises(InputError, match="probabilities"):
        combine_categorical(np.zeros((3, 2)))


def test_ensemble_stacks_member_outputs():
    torch.manual_seed(0)
    members = [cutout_gaussian_net(3, 8, 2, n_scalars=2, widths=(2, 4, 4), n_features=8,
                                   hidden=(8,), scalar_keys=("offset",), output="g")
               for _ in range(3)]
    ens = DeepEnsemble(members).eval()
    batch = {"image": torch.randn(5, 3, 8, 8), "offset": torch.randn(5, 2)}
    with torch.no_grad():
        mean, log_var = ens(batch)["g"]
        single = members[1](batch)["g"][0]
    assert mean.shape == log_var.shape == (3, 5, 2)
    assert torch.allclose(mean[1], single)
    assert not torch.allclose(mean[0], mean[1])          # independently initialised
    assert set(k.split(".")[1] for k in ens.state_dict()) == {"0", "1", "2"}
    assert np.allclose(combine_categorical(np.full((3, 4, 2), 0.5)), 0.5)


def test_public_api():
    from astroreco.nn import ensemble

    assert set(ensemble.__all__) == {"DeepEnsemble", "LOG_VAR_LIMIT", "combine_categorical",
                                     "combine_gaussian", "cutout_gaussian_net"}
