"""Output heads: shapes, valid ranges for any finite input, finite gradients, a small fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from astroreco.errors import InputError
from astroreco.losses import VonMisesLoss
from astroreco.nn.heads import AngleHead, DirectionHead, DirectionKappaHead, GaussianHead, KappaHead

SCALES = [0.0, 1e-6, 1.0, 1e3, 1e6, -1e6]


def _features(n=6, f=5, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, f, generator=g) * scale).requires_grad_(True)


def _outputs(out):
    return out if isinstance(out, tuple) else (out,)


def _assert_finite_grads(head, features, out):
    sum(o.sum() for o in _outputs(out)).backward()
    assert torch.isfinite(features.grad).all()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_output_shapes():
    x = _features(n=7, f=5)
    assert DirectionHead(5, 3)(x).shape == (7, 3)
    assert KappaHead(5)(x).shape == (7,)
    v, k = AngleHead(5)(x)
    assert v.shape == (7, 2) and k.shape == (7,)
    v, k = DirectionKappaHead(5)(x)
    assert v.shape == (7, 3) and k.shape == (7,)
    v, k = DirectionKappaHead(5, dim=4)(x)
    assert v.shape == (7, 4)
    m, lv = GaussianHead(5, 2)(x)
    assert m.shape == (7, 2) and lv.shape == (7, 2)


@pytest.mark.parametrize("scale", SCALES[1:])
@pytest.mark.parametrize("dim", [2, 3])
def test_direction_head_unit_norm_any_scale(scale, dim):
    head = DirectionHead(5, dim)
    x = _features(scale=scale)
    u = head(x)
    np.testing.assert_allclose(u.norm(dim=1).detach().numpy(), 1.0, rtol=1e-5)
    _assert_finite_grads(head, x, u)


def test_direction_head_zero_raw_output_is_finite():
    head = DirectionHead(5, 3)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.zero_()
    x = _features()
    u = head(x)
    assert torch.equal(u, torch.zeros(6, 3))
    _assert_finite_grads(head, x, (u * torch.tensor([1.0, 2.0, 3.0])).sum())


@pytest.mark.parametrize("kappa_max", [None, 50.0])
@pytest.mark.parametrize("scale", SCALES)
def test_kappa_head_within_bounds(scale, kappa_max):
    torch.manual_seed(1)
    head = KappaHead(5, kappa_min=1e-3, kappa_max=kappa_max)
    x = _features(scale=scale)
    k = head(x)
    assert torch.isfinite(k).all() and (k >= 1e-3).all()
    if kappa_max is not None:
        assert (k <= kappa_max).all()
    _assert_finite_grads(head, x, k)


def test_kappa_head_bound_is_smooth_and_follows_softplus_below():
    """kappa = kmin + s c / (s + c), s = softplus(raw): monotone, ~kmin + s for s << c."""
    head = KappaHead(1, kappa_min=0.01, kappa_max=1e4)
    with torch.no_grad():
        head.linear.weight.fill_(1.0)
        head.linear.bias.zero_()
    raw = torch.linspace(-50, 2e5, 4001, dtype=torch.float32)[:, None]
    k = head(raw).detach().double().numpy()
    assert np.all(np.diff(k) > 0)
    s = np.log1p(np.exp(np.minimum(raw[:, 0].double().numpy(), 50)))
    small = s < 10
    np.testing.assert_allclose(k[small], 0.01 + s[small], rtol=2e-3, atol=1e-6)
    assert k[-1] == pytest.approx(1e4, rel=1e-1) and k[-1] <= 1e4


@pytest.mark.parametrize("scale", SCALES)
def test_direction_kappa_heads_valid(scale):
    torch.manual_seed(2)
    for head, dim in ((AngleHead(5, kappa_max=1e3), 2), (DirectionKappaHead(5), 3)):
        x = _features(scale=scale)
        v, k = head(x)
        assert v.shape == (6, dim)
        if scale != 0.0:
            np.testing.assert_allclose(v.norm(dim=1).detach().numpy(), 1.0, rtol=1e-5)
        assert (k > 0).all() and torch.isfinite(k).all()
        _assert_finite_grads(head, x, (v, k))


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("log_var_range", [(-12.0, 6.0), (-3.0, 1.0)])
def test_gaussian_head_log_var_in_range(scale, log_var_range):
    torch.manual_seed(3)
    head = GaussianHead(5, 3, log_var_range=log_var_range)
    x = _features(scale=scale)
    m, lv = head(x)
    lo, hi = log_var_range
    assert torch.isfinite(m).all()
    assert (lv >= lo).all() and (lv <= hi).all()
    _assert_finite_grads(head, x, (m, lv))


def test_gaussian_head_log_var_reaches_both_ends():
    head = GaussianHead(1, 1, log_var_range=(-12.0, 6.0))
    with torch.no_grad():
        head.linear.weight.fill_(1.0)
        head.linear.bias.zero_()
    _, lv = head(torch.tensor([[-100.0], [0.0], [100.0]]))
    np.testing.assert_allclose(lv[:, 0].detach().numpy(), [-12.0, -3.0, 6.0], atol=1e-5)


def test_angle_head_fits_axial_von_mises_data():
    """AngleHead + VonMisesLoss(2) recover mean and concentration of axial data."""
    rng = np.random.default_rng(4)
    mu2, kappa = 0.8, 4.0  # mean of 2 phi, concentration
    phi = 0.5 * rng.vonmises(mu2, kappa, 4000) + np.pi * rng.integers(0, 2, 4000)
    target = torch.tensor(phi, dtype=torch.float32)
    features = torch.ones(4000, 1)
    torch.manual_seed(5)
    head, loss = AngleHead(1), VonMisesLoss(harmonic=2)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead on a shared machine
    try:
        for _ in range(300):
            opt.zero_grad()
            loss(head(features), target).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    v, k = head(features[:1])
    mu_hat = math.atan2(v[0, 1].item(), v[0, 0].item())
    assert abs(mu_hat - mu2) < 0.05
    assert k.item() == pytest.approx(kappa, rel=0.1)


@pytest.mark.parametrize("call, needle", [
    (lambda: DirectionHead(0, 3), "in_features"),
    (lambda: DirectionHead(4, 0), "dim"),
    (lambda: KappaHead(4, kappa_min=0.0), "kappa_min"),
    (lambda: KappaHead(4, kappa_min=1.0, kappa_max=0.5), "kappa_max"),
    (lambda: GaussianHead(4, 2, log_var_range=(3.0, -3.0)), "log_var_range"),
    (lambda: GaussianHead(4, 2)(torch.zeros(3, 5)), "(N, 4)"),
    (lambda: DirectionHead(4, 3)(torch.zeros(4)), "(N, 4)"),
])
def test_bad_arguments_raise_input_error(call, needle):
    with pytest.raises(InputError, match=None) as info:
        call()
    assert needle in str(info.value) and "\n" not in str(info.value)


# --- MLP branches -----------------------------------------------------------------------

def test_mlp_layers_and_width():
    from astroreco.nn.heads import mlp

    m = mlp(500, (200, 50), ("relu", "tanh"))
    kinds = [type(layer).__name__ for layer in m]
    assert kinds == ["Linear", "ReLU", "Linear", "Tanh"] and m.n_features == 50
    assert m(torch.randn(3, 500)).shape == (3, 50)
    assert mlp(7, (), ()).n_features == 7


@pytest.mark.parametrize("args, needle", [((10, (5,), ("relu", "tanh")), "activations"),
                                          ((10, (5,), ("sigmoid",)), "activation"),
                                          ((10, (0,), ("relu",)), "width")])
def test_mlp_bad_arguments(args, needle):
    from astroreco.nn.heads import mlp

    with pytest.raises(InputError, match=needle):
        mlp(*args)


@pytest.mark.parametrize("scale", [0.0, 1.0, 1e4])
def test_branched_direction_kappa_head_is_valid_and_has_separate_branches(scale):
    from astroreco.losses import VonMisesFisherLoss
    from astroreco.nn.heads import BranchedDirectionKappaHead

    torch.manual_seed(0)
    head = BranchedDirectionKappaHead(20, 3, kappa_min=1e-3)
    x = scale * torch.randn(8, 20, requires_grad=True)
    vec, kappa = head(x)
    assert vec.shape == (8, 3) and kappa.shape == (8,)
    assert torch.allclose(vec.norm(dim=1), torch.ones(8), atol=1e-5)
    assert torch.all(kappa >= 1e-3)
    target = torch.nn.functional.normalize(torch.randn(8, 3), dim=1)
    VonMisesFisherLoss()((vec, kappa), target).backward()
    grads = [p.grad for p in head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the two branches share no parameter
    ids = {id(p) for p in head.direction.parameters()}
    assert not ids & {id(p) for p in head.kappa.parameters()}


def test_gaussian_head_starts_at_the_requested_log_variance():
    from astroreco.nn.heads import GaussianHead

    head = GaussianHead(5, 3, log_var_range=(-18.0, 4.0), init_log_var=0.0)
    torch.nn.init.zeros_(head.linear.weight)
    _, log_var = head(torch.randn(7, 5))
    assert torch.allclose(log_var, torch.zeros(7, 3), atol=1e-5)
    with pytest.raises(InputError, match="init_log_var"):
        GaussianHead(5, 3, log_var_range=(-1.0, 1.0), init_log_var=2.0)
