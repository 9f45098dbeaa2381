"""Losses: values against SciPy, gradients against closed forms, extremes, ensembles, shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from astroreco.errors import InputError
from astroreco.losses import (CosineLoss, GaussianNLLLoss, MSELoss, MultipleChoiceLoss,
                              VonMisesFisherLoss, VonMisesLoss, unit_vector)

KAPPAS = [1e-8, 1e-3, 1.0, 1e3, 1e6, 1e30]
DTYPES = [torch.float32, torch.float64]


def t64(x, grad=False):
    return torch.tensor(np.asarray(x, dtype=np.float64), dtype=torch.float64, requires_grad=grad)


def _unit_rows(rng, n, d=3):
    v = rng.normal(size=(n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _wrap(a):
    """Angle wrapped to [-pi, pi)."""
    return np.mod(a + np.pi, 2 * np.pi) - np.pi


def _coth_minus_inv(k):
    """coth(k) - 1/k, with its series below 1e-3."""
    k = np.asarray(k, dtype=float)
    small = k < 1e-3
    ks = np.where(small, 1.0, k)  # placeholder where the series is used
    return np.where(small, k / 3 - k ** 3 / 45, 1 / np.tanh(ks) - 1 / ks)


# ------------------------------------------------------------------------------------------
# values against references
# ------------------------------------------------------------------------------------------

def test_cosine_matches_numpy_formula():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(50, 3)) * rng.uniform(0.01, 100, size=(50, 1))
    t = _unit_rows(rng, 50)
    got = CosineLoss(reduction="none")(t64(p), t64(t)).numpy()
    expected = 1 - np.sum(p * t, axis=1) / np.linalg.norm(p, axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_mse_is_per_event_sum_of_squares():
    rng = np.random.default_rng(1)
    p, t = rng.normal(size=(20, 2)), rng.normal(size=(20, 2))
    got = MSELoss(reduction="none")(t64(p), t64(t)).numpy()
    np.testing.assert_allclose(got, ((p - t) ** 2).sum(axis=1), rtol=1e-12)


@pytest.mark.parametrize("harmonic", [1, 2, 3])
def test_von_mises_matches_scipy_density_of_h_phi(harmonic):
    rng = np.random.default_rng(harmonic)
    n = 200
    phi = rng.uniform(-3 * np.pi, 3 * np.pi, n)
    mu = rng.uniform(-np.pi, np.pi, n)
    kappa = 10 ** rng.uniform(-3, 3, n)
    vec = rng.uniform(0.1, 10, (n, 1)) * np.stack([np.cos(mu), np.sin(mu)], axis=1)
    got = VonMisesLoss(harmonic, reduction="none")((t64(vec), t64(kappa)), t64(phi)).numpy()
    expected = -stats.vonmises.logpdf(_wrap(harmonic * phi - mu), kappa)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kappa", [0.3, 3.0, 50.0])
def test_von_mises_harmonic_2_is_normalised_over_the_full_circle(kappa):
    """The documented constant convention: exp(-l) integrates to 1 over phi in [0, 2 pi)."""
    phi = np.linspace(0, 2 * np.pi, 20001)[:-1]
    n = phi.size
    pred = (t64(np.tile([np.cos(0.7), np.sin(0.7)], (n, 1))), t64(np.full(n, kappa)))
    nll = VonMisesLoss(2, reduction="none")(pred, t64(phi)).numpy()
    assert np.exp(-nll).mean() * 2 * np.pi == pytest.approx(1.0, rel=1e-9)


def test_von_mises_fisher_matches_scipy():
    vmf = getattr(stats, "vonmises_fisher", None)
    if vmf is None:
        pytest.skip("scipy.stats.vonmises_fisher needs SciPy >= 1.11")
    rng = np.random.default_rng(3)
    n = 40
    mu, x = _unit_rows(rng, n), _unit_rows(rng, n)
    kappa = 10 ** rng.uniform(-1.5, 3, n)
    vec = mu * rng.uniform(0.1, 10, (n, 1))
    got = VonMisesFisherLoss(reduction="none")((t64(vec), t64(kappa)), t64(x)).numpy()
    expected = np.array([-vmf(mu[i], kappa[i]).logpdf(x[i]) for i in range(n)])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_gaussian_nll_matches_scipy_norm():
    rng = np.random.default_rng(4)
    mean, x = rng.normal(size=(30, 2)), rng.normal(size=(30, 2)) * 3
    log_var = rng.uniform(-10, 5, size=(30, 2))
    got = GaussianNLLLoss(reduction="none")((t64(mean), t64(log_var)), t64(x)).numpy()
    expected = -stats.norm.logpdf(x, mean, np.exp(0.5 * log_var)).sum(axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_limits_of_the_normalisations_float64():
    """Small- and large-kappa limits, independent of the implementation's formulas."""
    k = np.array([1e-8, 1e6, 1e30])
    one = np.ones_like(k)
    vm = VonMisesLoss(1, reduction="none")((t64(np.stack([one, 0 * one], 1)), t64(k)),
                                           t64(0 * one)).numpy()
    np.testing.assert_allclose(vm[0], np.log(2 * np.pi) - 1e-8, atol=1e-12)
    np.testing.assert_allclose(vm[1:], 0.5 * np.log(2 * np.pi / k[1:]) + 1 / (8 * k[1:]),
                               atol=1e-10)
    x = np.stack([one, 0 * one, 0 * one], 1)
    vmf = VonMisesFisherLoss(reduction="none")((t64(x), t64(k)), t64(x)).numpy()
    np.testing.assert_allclose(vmf[0], np.log(4 * np.pi) - 1e-8, atol=1e-12)
    np.testing.assert_allclose(vmf[1:], np.log(2 * np.pi / k[1:]), rtol=1e-12)


# ------------------------------------------------------------------------------------------
# gradients against closed forms
# ------------------------------------------------------------------------------------------

def test_von_mises_gradients_closed_form():
    rng = np.random.default_rng(5)
    n, h = 60, 2
    phi, mu = rng.uniform(-np.pi, np.pi, n), rng.uniform(-np.pi, np.pi, n)
    kappa = 10 ** rng.uniform(-3, 3, n)
    r = rng.uniform(0.5, 3, n)
    vec = t64(r[:, None] * np.stack([np.cos(mu), np.sin(mu)], 1), grad=True)
    k = t64(kappa, grad=True)
    VonMisesLoss(h, reduction="sum")((vec, k), t64(phi)).backward()
    d = h * phi - mu
    expected_k = special.i1e(kappa) / special.i0e(kappa) - np.cos(d)
    np.testing.assert_allclose(k.grad.numpy(), expected_k, rtol=1e-9, atol=1e-12)
    dl_dmu = -kappa * np.sin(d)  # l = -kappa cos(h phi - mu) + const
    dmu_dv = np.stack([-np.sin(mu), np.cos(mu)], 1) / r[:, None]
    np.testing.assert_allclose(vec.grad.numpy(), dl_dmu[:, None] * dmu_dv, rtol=1e-8,
                               atol=1e-9)


def test_von_mises_fisher_gradients_closed_form():
    rng = np.random.default_rng(6)
    n = 60
    mu, x = _unit_rows(rng, n), _unit_rows(rng, n)
    kappa = np.concatenate([10 ** rng.uniform(-6, 4, n - 4), [0.0099, 0.0101, 1e-8, 1e8]])
    r = rng.uniform(0.5, 3, n)
    vec, k = t64(mu * r[:, None], grad=True), t64(kappa, grad=True)
    VonMisesFisherLoss(reduction="sum")((vec, k), t64(x)).backward()
    cos = np.sum(mu * x, axis=1)
    # d/dk [-log C3(k)] = coth k - 1/k;  d/dk [-k mu.x] = -mu.x
    np.testing.assert_allclose(k.grad.numpy(), _coth_minus_inv(kappa) - cos, rtol=1e-8,
                               atol=1e-12)
    expected_v = -kappa[:, None] * (x - cos[:, None] * mu) / r[:, None]
    np.testing.assert_allclose(vec.grad.numpy(), expected_v, rtol=1e-8, atol=1e-9)


def test_gaussian_gradients_closed_form():
    rng = np.random.default_rng(7)
    mean, x = rng.normal(size=(40, 3)), rng.normal(size=(40, 3))
    log_var = rng.uniform(-29, 29, size=(40, 3))
    m, lv = t64(mean, grad=True), t64(log_var, grad=True)
    GaussianNLLLoss(reduction="sum")((m, lv), t64(x)).backward()
    inv = np.exp(-log_var)
    np.testing.assert_allclose(m.grad.numpy(), (mean - x) * inv, rtol=1e-10)
    np.testing.assert_allclose(lv.grad.numpy(), 0.5 * (1 - (x - mean) ** 2 * inv), rtol=1e-10)


@pytest.mark.parametrize("kappa", KAPPAS)
def test_kappa_gradients_accurate_in_float32(kappa):
    """d l / d kappa in float32 within 1e-4 of the closed forms from 1e-8 to 1e30."""
    rng = np.random.default_rng(12)
    mu, x = _unit_rows(rng, 8), _unit_rows(rng, 8)
    cos = np.sum(mu * x, axis=1)
    k = torch.full((8,), kappa, dtype=torch.float32, requires_grad=True)
    f32 = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    VonMisesFisherLoss(reduction="sum")((f32(mu), k), f32(x)).backward()
    expected = _coth_minus_inv(np.full(8, kappa)) - cos
    np.testing.assert_allclose(k.grad.numpy(), expected, atol=1e-4)

    d = rng.uniform(-np.pi, np.pi, 8)
    k.grad = None
    vec = np.stack([np.ones(8), np.zeros(8)], 1)
    VonMisesLoss(1, reduction="sum")((f32(vec), k), f32(d)).backward()
    expected = special.i1e(kappa) / special.i0e(kappa) - np.cos(d)
    np.testing.assert_allclose(k.grad.numpy(), expected, atol=1e-4)


def _gradcheck_cases():
    rng = np.random.default_rng(8)
    n = 5
    unit = _unit_rows(rng, n)
    return [
        ("cosine", CosineLoss(), (t64(rng.normal(size=(n, 3)), True),), t64(unit)),
        ("mse", MSELoss(), (t64(rng.normal(size=(n, 2)), True),), t64(rng.normal(size=(n, 2)))),
        ("vm1", VonMisesLoss(1), (t64(rng.normal(size=(n, 2)), True),
                                  t64([0.003, 0.3, 1.0, 5.0, 40.0], True)),
         t64(rng.uniform(-4, 4, n))),
        ("vm2", VonMisesLoss(2), (t64(rng.normal(size=(n, 2)), True),
                                  t64(rng.uniform(0.1, 9, n), True)),
         t64(rng.uniform(-4, 4, n))),
        ("vmf", VonMisesFisherLoss(), (t64(rng.normal(size=(n, 3)), True),
                                       t64([0.003, 0.02, 1.0, 5.0, 40.0], True)), t64(unit)),
        ("gauss", GaussianNLLLoss(), (t64(rng.normal(size=(n, 2)), True),
                                      t64(rng.uniform(-5, 5, (n, 2)), True)),
         t64(rng.normal(size=(n, 2)))),
        ("mcl", MultipleChoiceLoss(VonMisesFisherLoss(), 0.8),
         (t64(rng.normal(size=(n, 3, 3)), True), t64(rng.uniform(0.5, 5, (n, 3)), True)),
         t64(unit)),
    ]


@pytest.mark.parametrize("case", _gradcheck_cases(), ids=lambda c: c[0])
def test_gradcheck_float64(case):
    _, loss, parts, target = case
    weight = t64(np.linspace(0.5, 2.0, target.shape[0]))

    def f(*p):
        return loss(p[0] if len(p) == 1 else p, target, weight)

    assert torch.autograd.gradcheck(f, parts, eps=1e-6, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------------------
# extremes
# ------------------------------------------------------------------------------------------

def _finite_loss_and_grads(loss, parts, target):
    value = loss(tuple(parts) if len(parts) > 1 else parts[0], target)
    value.sum().backward()
    assert torch.isfinite(value).all(), value
    for p in parts:
        assert p.grad is not None and torch.isfinite(p.grad).all(), p.grad
    return value


def test_von_mises_cosine_mean_loss_splits_the_gradients():
    """mean_loss="cosine": value NLL + (1 - cos); the mean gets the cosine loss's gradient,
    the same for every kappa, and kappa gets the NLL's.  (Not a gradcheck case: by design
    the gradient is not the derivative of the value.)"""
    rng = np.random.default_rng(12)
    n = 50
    phi = t64(rng.uniform(-4, 4, n))
    vec0 = rng.normal(size=(n, 2))
    kappa0 = 10 ** rng.uniform(-3, 2, n)

    def run(mean_loss):
        vec, kappa = t64(vec0, True), t64(kappa0, True)
        value = VonMisesLoss(2, mean_loss=mean_loss, reduction="none")((vec, kappa), phi)
        value.sum().backward()
        return value.detach(), vec.grad, kappa.grad

    nll, g_vec_nll, g_kappa_nll = run("nll")
    both, g_vec, g_kappa = run("cosine")
    mu = np.arctan2(vec0[:, 1], vec0[:, 0])
    cosine = 1 - np.cos(2 * phi.numpy() - mu)
    np.testing.assert_allclose(both.numpy(), nll.numpy() + cosine, rtol=1e-12)
    np.testing.assert_allclose(g_kappa.numpy(), g_kappa_nll.numpy(), rtol=1e-12)
    # d/dvec (1 - cos): the NLL's mean gradient divided by kappa
    np.testing.assert_allclose(g_vec.numpy(), g_vec_nll.numpy() / kappa0[:, None],
                               rtol=1e-8, atol=1e-12)


def test_von_mises_bad_mean_loss():
    with pytest.raises(InputError, match="mean_loss 'mse'"):
        VonMisesLoss(2, mean_loss="mse")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kappa", KAPPAS)
@pytest.mark.parametrize("mean_loss", ["nll", "cosine"])
@pytest.mark.parametrize("harmonic", [1, 2])
def test_von_mises_extremes_finite(dtype, kappa, harmonic, mean_loss):
    rng = np.random.default_rng(9)
    mu = np.array([0.0, 0.0, 0.0, 1.0])
    vec = np.stack([np.cos(mu), np.sin(mu)], 1)
    vec[3] = 0.0  # zero prediction vector
    # aligned, exactly opposite (h phi - mu = pi), random, zero vector
    phi = np.array([0.0, np.pi / harmonic, rng.uniform(-np.pi, np.pi), 0.3])
    parts = [torch.tensor(vec, dtype=dtype, requires_grad=True),
             torch.full((4,), kappa, dtype=dtype, requires_grad=True)]
    loss = VonMisesLoss(harmonic, mean_loss=mean_loss, reduction="none")
    value = _finite_loss_and_grads(loss, parts, torch.tensor(phi, dtype=dtype))
    if kappa <= 1e3:  # float32 agrees with float64 to its resolution
        ref = loss((t64(vec), t64(np.full(4, kappa))), t64(phi))
        np.testing.assert_allclose(value.detach().double().numpy(), ref.numpy(),
                                   atol=1e-5 + 1e-6 * kappa)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kappa", KAPPAS)
def test_von_mises_fisher_extremes_finite(dtype, kappa):
    x = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.6, 0.0, 0.8], [1.0, 0.0, 0.0]])
    vec = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    parts = [torch.tensor(vec, dtype=dtype, requires_grad=True),
             torch.full((4,), kappa, dtype=dtype, requires_grad=True)]
    value = _finite_loss_and_grads(VonMisesFisherLoss(reduction="none"), parts,
                                   torch.tensor(x, dtype=dtype))
    if kappa <= 1e3:
        ref = VonMisesFisherLoss(reduction="none")((t64(vec), t64(np.full(4, kappa))), t64(x))
        np.testing.assert_allclose(value.detach().double().numpy(), ref.numpy(),
                                   atol=1e-5 + 1e-6 * kappa)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cosine_zero_and_opposite_prediction(dtype):
    p = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -2.0], [0.0, 0.0, 1e-30]], dtype=dtype,
                     requires_grad=True)
    t = torch.tensor([[0.0, 0.0, 1.0]] * 3, dtype=dtype)
    value = _finite_loss_and_grads(CosineLoss(reduction="none"), [p], t)
    np.testing.assert_allclose(value.detach().numpy(), [1.0, 2.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log_var", [-12.0, 6.0, -30.0, 30.0, -80.0, 80.0, -1e4, 1e4])
def test_gaussian_extremes_finite(dtype, log_var):
    mean = torch.tensor([[0.0, 1.0], [3.0, -1e3]], dtype=dtype, requires_grad=True)
    lv = torch.full((2, 2), log_var, dtype=dtype, requires_grad=True)
    target = torch.tensor([[0.0, 0.0], [-2.0, 1e3]], dtype=dtype)
    _finite_loss_and_grads(GaussianNLLLoss(), [mean, lv], target)


def test_gaussian_clamp_is_documented_limit():
    mean, target = t64([[0.0]]), t64([[1.0]])
    loss = GaussianNLLLoss(reduction="none")
    at = loss((mean, t64([[-30.0]])), target)
    assert loss((mean, t64([[-1e4]])), target).item() == at.item()
    inside = loss((mean, t64([[-29.0]])), target).item()
    assert inside == pytest.approx(0.5 * (-29 + np.exp(29) + np.log(2 * np.pi)), rel=1e-12)


def test_unit_vector_large_and_zero():
    x = torch.tensor([[1e30, 1e30], [0.0, 0.0], [3.0, 4.0]], dtype=torch.float32)
    u = unit_vector(x)
    np.testing.assert_allclose(u.numpy(), [[2 ** -0.5] * 2, [0, 0], [0.6, 0.8]], rtol=1e-6)


# ------------------------------------------------------------------------------------------
# multiple-choice ensembles
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("best_weight", [0.7, 1.0])
def test_multiple_choice_weights_and_gradients(best_weight):
    target = t64([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    heads = np.array([
        [[0.0, 1.0, 0.0], [1.0, 0.1, 0.0], [-1.0, 0.0, 0.0]],  # head 1 is best
        [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.2, 1.0, 0.1]],   # head 2 is best
    ])
    best = [1, 2]
    base = CosineLoss(reduction="none")
    per_head = np.stack([base(t64(heads[:, m]), target).numpy() for m in range(3)], axis=1)
    assert list(per_head.argmin(axis=1)) == best

    pred = t64(heads, grad=True)
    got = MultipleChoiceLoss(base, best_weight, reduction="none")(pred, target)
    w = np.full((2, 3), (1 - best_weight) / 2)
    w[[0, 1], best] = best_weight
    np.testing.assert_allclose(got.detach().numpy(), (w * per_head).sum(axis=1), rtol=1e-12)

    got.sum().backward()
    for m in range(3):
        head = t64(heads[:, m], grad=True)
        (g,) = torch.autograd.grad(base(head, target).sum(), head)
        np.testing.assert_allclose(pred.grad[:, m].numpy(), w[:, m:m + 1] * g.numpy(),
                                   rtol=1e-12, atol=1e-15)
    if best_weight == 1.0:
        assert pred.grad[0, [0, 2]].abs().max() == 0 and pred.grad[0, 1].abs().max() > 0


def test_multiple_choice_single_head_is_base_loss_with_tuple_prediction():
    rng = np.random.default_rng(10)
    vec, kappa, x = rng.normal(size=(7, 3)), rng.uniform(0.1, 50, 7), _unit_rows(rng, 7)
    weight = t64(rng.uniform(0.1, 2, 7))
    base = VonMisesFisherLoss()
    expected = base((t64(vec), t64(kappa)), t64(x), weight)
    got = MultipleChoiceLoss(base, 0.9)((t64(vec[:, None]), t64(kappa[:, None])), t64(x), weight)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_multiple_choice_per_head_matches_base_loop():
    rng = np.random.default_rng(11)
    vec, kappa, phi = rng.normal(size=(6, 4, 2)), rng.uniform(0.1, 9, (6, 4)), rng.uniform(0, 3, 6)
    base = VonMisesLoss(2, reduction="none")
    got = MultipleChoiceLoss(base).per_head((t64(vec), t64(kappa)), t64(phi)).numpy()
    for m in range(4):
        np.testing.assert_allclose(got[:, m], base((t64(vec[:, m]), t64(kappa[:, m])),
                                                   t64(phi)).numpy(), rtol=1e-12)


# ------------------------------------------------------------------------------------------
# reductions, weights, bad input
# ------------------------------------------------------------------------------------------

def test_reductions_and_weights():
    pred, target = torch.zeros(3, 1), torch.tensor([[1.0], [2.0], [3.0]])
    w = torch.tensor([1.0, 0.0, 3.0])  # sum(w) = 4 != N: the weighted mean divides by it
    assert MSELoss(reduction="none")(pred, target).tolist() == [1.0, 4.0, 9.0]
    assert MSELoss(reduction="sum")(pred, target).item() == 14.0
    assert MSELoss()(pred, target).item() == pytest.approx(14.0 / 3)
    assert MSELoss(reduction="none")(pred, target, w).tolist() == [1.0, 0.0, 27.0]
    assert MSELoss(reduction="sum")(pred, target, w).item() == 28.0
    assert MSELoss()(pred, target, w).item() == pytest.approx(28.0 / 4)


def _vm(n=5, d=2, k_shape=None):
    return (torch.zeros(n, d), torch.ones(k_shape or (n,)))


@pytest.mark.parametrize("call, needles", [
    (lambda: CosineLoss()(torch.zeros(5, 3), torch.zeros(5, 2)),
     ["CosineLoss", "prediction has shape (5, 3)", "target has (5, 2)"]),
    (lambda: CosineLoss()(torch.zeros(5, 3), torch.zeros(4, 3)), ["(5, 3)", "(4, 3)"]),
    (lambda: CosineLoss()(torch.zeros(5, 3, 1), torch.zeros(5, 3)), ["(5, 3, 1)", "(N, D)"]),
    (lambda: VonMisesLoss()(_vm(d=3), torch.zeros(5)), ["vector", "(5, 3)", "(N, 2)"]),
    (lambda: VonMisesLoss()(_vm(k_shape=(5, 1)), torch.zeros(5)), ["kappa", "(5, 1)", "(N,)"]),
    (lambda: VonMisesLoss()(_vm(k_shape=(4,)), torch.zeros(5)), ["(4,)", "(5, 2)"]),
    (lambda: VonMisesLoss()(torch.zeros(5, 2), torch.zeros(5)), ["tuple (vector, kappa)"]),
    (lambda: VonMisesLoss()((*_vm(), torch.zeros(5)), torch.zeros(5)), ["length 3"]),
    (lambda: VonMisesLoss()(_vm(), [0.0] * 5), ["target as a tensor"]),
    (lambda: VonMisesFisherLoss()(_vm(d=3), torch.zeros(5, 2)), ["target", "(5, 2)", "(N, 3)"]),
    (lambda: GaussianNLLLoss()((torch.zeros(5, 3), torch.zeros(5, 2)), torch.zeros(5, 3)),
     ["mean has shape (5, 3)", "log_var has (5, 2)"]),
    (lambda: MSELoss()(torch.zeros(5, 2), torch.zeros(5, 2), torch.ones(4)),
     ["weight", "(4,)"]),
    (lambda: MultipleChoiceLoss(VonMisesFisherLoss())(
        (torch.zeros(5, 4, 3), torch.ones(5, 3)), torch.zeros(5, 3)),
     ["MultipleChoiceLoss", "kappa", "(5, 3)", "(N, M, ...)"]),
    (lambda: MultipleChoiceLoss(VonMisesFisherLoss())(
        (torch.zeros(5, 4, 3), torch.ones(5, 4)), torch.zeros(5, 2)),
     ["MultipleChoiceLoss", "VonMisesFisherLoss", "target", "(5, 2)"]),
    (lambda: MSELoss(reduction="avg"), ["reduction", "'avg'"]),
    (lambda: VonMisesLoss(harmonic=0), ["harmonic"]),
    (lambda: MultipleChoiceLoss(CosineLoss(), best_weight=1.5), ["best_weight"]),
    (lambda: MultipleChoiceLoss(torch.nn.MSELoss()), ["base", "MSELoss"]),
])
def test_bad_input_raises_one_line_input_error(call, needles):
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


# ------------------------------------------------------------------------------------------
# the TPC seed paper's log C3 (kept as an option): where it fails
# ------------------------------------------------------------------------------------------

def test_paper_log_c3_is_close_below_and_above_its_switch():
    from astroreco.losses import paper_log_c3

    k = np.concatenate([np.linspace(1e-3, 2.64, 200), np.linspace(2.66, 50, 200)])
    exact = np.log(k) - np.log(4 * np.pi) - (k + np.log(-np.expm1(-2 * k)) - np.log(2))
    got = paper_log_c3(t64(k)).numpy()
    rel = np.abs(got - exact) / np.abs(exact)
    assert rel.max() < 2e-3  # the paper quotes 0.14% at most
    assert rel.max() > 1e-4  # ... and it is not exact


def test_paper_log_c3_fails_where_the_stable_form_does_not():
    x = torch.tensor([[0.0, 0.0, 1.0]])
    mu = torch.tensor([[0.0, 0.6, 0.8]])

    def grad(log_c3, kappa, dtype=torch.float32):
        k = torch.tensor([kappa], dtype=dtype, requires_grad=True)
        VonMisesFisherLoss(log_c3=log_c3)((mu.to(dtype), k), x.to(dtype)).backward()
        return k.grad.item()

    # NaN gradient at large kappa in float32 (the unused Taylor branch overflows)
    for kappa in (800.0, 1e4):
        assert np.isnan(grad("paper", kappa))
        assert np.isfinite(grad("stable", kappa))
    assert np.isfinite(grad("paper", 500.0))
    # a jump of the kappa gradient across the switch at 2.65, absent from the stable form
    jump = abs(grad("paper", 2.65 + 1e-6, torch.float64) - grad("paper", 2.65 - 1e-6,
                                                                  torch.float64))
    smooth = abs(grad("stable", 2.65 + 1e-6, torch.float64) - grad("stable", 2.65 - 1e-6,
                                                                    torch.float64))
    assert jump > 1e-3 and smooth < 1e-5
    with pytest.raises(InputError, match="log_c3 'taylor'"):
        VonMisesFisherLoss(log_c3="taylor")


def test_resolution_weighted_mse_is_the_seeds_loss():
    from astroreco.losses import ResolutionWeightedMSELoss

    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[0.0, 0.0, 1.0, 2.0], [3.0, 4.0, 3.0, 2.0]], dtype=torch.float64)
    loss = ResolutionWeightedMSELoss(reduction="none")(pred, target)
    assert loss.tolist() == pytest.approx([1.0 + 1.0, 1.0 + 4.0])
    loss.sum().backward()
    assert torch.isfinite(pred.grad).all()
    # a vanishing resolution stays finite (floored), a huge one gives a vanishing loss
    for sigma in (0.0, 1e-30, 1e30):
        t = torch.tensor([[0.5, sigma]], dtype=torch.float32)
        p = torch.tensor([[0.0]], requires_grad=True)
        value = ResolutionWeightedMSELoss()(p, t)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(p.grad).all()
    with pytest.raises(InputError, match="values then resolutions"):
        ResolutionWeightedMSELoss()(torch.zeros(3, 2), torch.zeros(3, 2))


def test_beta_nll_keeps_the_minimum_and_weights_by_the_variance():
    mean = torch.tensor([[0.0, 0.0]], requires_grad=True)
    target = torch.tensor([[1.0, 2.0]])
    # two events, two outputs on very different scales: per output the weights are
    # sigma^(2 beta) relative to the batch mean, so each output keeps an equal share
    mean2 = torch.zeros(2, 2)
    target2 = torch.tensor([[1.0, 1e-3], [2.0, 2e-3]])
    log_var = torch.log(torch.tensor([[1.0, 1e-6], [4.0, 4e-6]]))
    plain = GaussianNLLLoss(reduction="none")((mean2, log_var), target2)
    beta = GaussianNLLLoss(beta=0.5, reduction="none")((mean2, log_var), target2)
    per_term = 0.5 * (log_var + (target2 - mean2) ** 2 / log_var.exp() + math.log(2 * math.pi))
    w = torch.tensor([[1.0, 1e-3], [2.0, 2e-3]])
    w = w / w.mean(dim=0, keepdim=True)                  # [[2/3, 2/3], [4/3, 4/3]]
    assert torch.allclose(beta, (per_term * w).sum(dim=1))
    assert torch.allclose(plain, per_term.sum(dim=1))
    # the variance gradient still vanishes where the variance equals the squared residual
    log_var = torch.log(target ** 2).clone().requires_grad_(True)
    GaussianNLLLoss(beta=1.0)((mean, log_var), target).backward()
    assert torch.allclose(log_var.grad, torch.zeros(1, 2), atol=1e-6)
    with pytest.raises(InputError, match="beta"):
        GaussianNLLLoss(beta=2.0)
