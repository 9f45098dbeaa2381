"""Segmentation losses: values against direct formulas, BCE limit, extremes, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from astroreco.errors import InputError
from astroreco.losses import BCEDiceLoss, FocalBCELoss, SoftDiceLoss

DTYPES = [torch.float32, torch.float64]


def t64(x, grad=False):
    return torch.tensor(np.asarray(x, dtype=np.float64), dtype=torch.float64, requires_grad=grad)


def sample(rng, shape=(5, 2, 6, 7), soft=True):
    z = rng.normal(0, 3, shape)
    t = rng.uniform(0, 1, shape) if soft else (rng.uniform(0, 1, shape) < 0.2).astype(float)
    return z, t


def focal_numpy(z, t, alpha, gamma, pos_weight):
    """The documented formula, element by element, averaged per event."""
    p = 1 / (1 + np.exp(-z))
    a_pos, a_neg = (1.0, 1.0) if alpha is None else (alpha, 1 - alpha)
    w = 1.0 if pos_weight is None else pos_weight
    l = -np.abs(t - p) ** gamma * (a_pos * w * t * np.log(p) + a_neg * (1 - t) * np.log(1 - p))
    return l.reshape(len(z), -1).mean(axis=1)


def dice_numpy(z, t, smooth):
    p = (1 / (1 + np.exp(-z))).reshape(len(z), -1)
    t = t.reshape(len(t), -1)
    return 1 - (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)


@pytest.mark.parametrize("alpha, gamma, pos_weight", [(0.25, 2.0, None), (None, 1.0, 3.0),
                                                      (0.7, 0.0, 0.5), (None, 5.0, None)])
@pytest.mark.parametrize("soft", [True, False])
def test_focal_matches_direct_formula(alpha, gamma, pos_weight, soft):
    z, t = sample(np.random.default_rng(0), soft=soft)
    loss = FocalBCELoss(alpha, gamma, pos_weight, reduction="none")
    np.testing.assert_allclose(loss(t64(z), t64(t)).numpy(),
                               focal_numpy(z, t, alpha, gamma, pos_weight), rtol=1e-10)


def test_focal_hard_targets_is_lin_et_al():
    """For 0/1 targets: -alpha_t (1 - p_t)^gamma log p_t."""
    z, t = sample(np.random.default_rng(1), shape=(3, 40), soft=False)
    p = 1 / (1 + np.exp(-z))
    p_t = np.where(t == 1, p, 1 - p)
    a_t = np.where(t == 1, 0.25, 0.75)
    expected = (-a_t * (1 - p_t) ** 2 * np.log(p_t)).mean(axis=1)
    got = FocalBCELoss(reduction="none")(t64(z), t64(t)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("pos_weight", [None, 4.0])
def test_focal_reduces_to_bce(pos_weight):
    z, t = sample(np.random.default_rng(2))
    got = FocalBCELoss(alpha=None, gamma=0.0, pos_weight=pos_weight)(t64(z), t64(t))
    pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float64)
    expected = F.binary_cross_entropy_with_logits(t64(z), t64(t), pos_weight=pw)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_focal_minimum_at_the_soft_target():
    z = t64(np.linspace(-3, 3, 601)[:, None], grad=False)
    for target in (0.2, 0.5, 0.9):
        t = torch.full_like(z, target)
        values = FocalBCELoss(alpha=None, gamma=2.0, reduction="none")(z, t)
        best = torch.sigmoid(z[values.argmin(), 0]).item()
        assert abs(best - target) < 0.01


def test_dice_matches_direct_formula_and_limits():
    z, t = sample(np.random.default_rng(3))
    for smooth in (1.0, 1e-3):
        got = SoftDiceLoss(smooth, reduction="none")(t64(z), t64(t)).numpy()
        np.testing.assert_allclose(got, dice_numpy(z, t, smooth), rtol=1e-10)
    perfect = torch.full((2, 1, 8, 8), 50.0, dtype=torch.float64)
    assert SoftDiceLoss()(perfect, torch.ones_like(perfect)).item() < 1e-12
    empty = -perfect
    assert SoftDiceLoss()(empty, torch.zeros_like(empty)).item() < 1e-12
    assert SoftDiceLoss()(perfect, torch.zeros_like(perfect)).item() > 0.98


def test_bce_dice_is_the_sum():
    z, t = sample(np.random.default_rng(4))
    for w in (0.0, 1.0, 2.5):
        got = BCEDiceLoss(w, smooth=2.0, pos_weight=3.0, reduction="none")(t64(z), t64(t))
        expected = (focal_numpy(z, t, None, 0.0, 3.0) + w * dice_numpy(z, t, 2.0))
        np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-10)


def test_weights_and_reductions_apply_per_event():
    z, t = sample(np.random.default_rng(5), shape=(4, 1, 5, 5))
    w = t64([1.0, 0.0, 2.0, 1.0])
    per = FocalBCELoss(reduction="none")(t64(z), t64(t))
    got = FocalBCELoss()(t64(z), t64(t), weight=w)
    torch.testing.assert_close(got, (per * w).sum() / w.sum())
    torch.testing.assert_close(SoftDiceLoss(reduction="sum")(t64(z), t64(t)),
                               SoftDiceLoss(reduction="none")(t64(z), t64(t)).sum())


LOSSES = [FocalBCELoss(), FocalBCELoss(alpha=None, gamma=0.0, pos_weight=10.0),
          FocalBCELoss(alpha=0.5, gamma=1.0), SoftDiceLoss(), SoftDiceLoss(1e-6),
          BCEDiceLoss()]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", LOSSES, ids=lambda l: repr(l))
@pytest.mark.parametrize("target", ["zeros", "ones", "half", "mixed"])
def test_extremes_finite(dtype, loss, target):
    logits = torch.tensor([[-1e4, 1e4, -1e4, 1e4], [1e4, 1e4, 1e4, 1e4],
                           [-1e4, -1e4, -1e4, -1e4], [0.0, 30.0, -30.0, 1e-30]], dtype=dtype)
    logits = logits.reshape(4, 1, 2, 2).requires_grad_(True)
    fill = {"zeros": 0.0, "ones": 1.0, "half": 0.5}
    if target in fill:
        t = torch.full_like(logits, fill[target]).detach()
    else:
        t = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=dtype).repeat(4).reshape(4, 1, 2, 2)
    value = loss(logits, t)
    value.backward()
    assert torch.isfinite(value), value
    assert torch.isfinite(logits.grad).all(), logits.grad


def test_focal_large_logit_values_are_exact():
    """-log sigmoid(-1e4) = 1e4: no overflow, no log(0)."""
    z = torch.tensor([[1e4]])
    bce = FocalBCELoss(alpha=None, gamma=0.0)(z, torch.zeros_like(z))
    assert bce.item() == pytest.approx(1e4)
    focal = FocalBCELoss(alpha=0.25, gamma=2.0)(z, torch.zeros_like(z))
    assert focal.item() == pytest.approx(0.75e4)


def test_gradcheck_float64():
    rng = np.random.default_rng(6)
    z, t = sample(rng, shape=(2, 1, 3, 3))
    for loss in (FocalBCELoss(), FocalBCELoss(alpha=None, gamma=1.0), SoftDiceLoss(),
                 BCEDiceLoss(0.5)):
        zt = t64(z, grad=True)
        assert torch.autograd.gradcheck(lambda x: loss(x, t64(t)), (zt,))


@pytest.mark.parametrize("call, needle", [
    (lambda: FocalBCELoss()(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5)), "target has"),
    (lambda: FocalBCELoss()(torch.zeros(3), torch.zeros(3)), "at least 2 axes"),
    (lambda: SoftDiceLoss()(torch.zeros(2, 4), torch.full((2, 4), 1.5)), "[0, 1]"),
    (lambda: SoftDiceLoss()(torch.zeros(2, 4), torch.full((2, 4), float("nan"))), "[0, 1]"),
    (lambda: BCEDiceLoss()(torch.zeros(2, 4), torch.zeros(2, 4), weight=torch.ones(3)),
     "weight"),
    (lambda: FocalBCELoss(gamma=0.5), "gamma"),
    (lambda: FocalBCELoss(alpha=1.5), "alpha"),
    (lambda: FocalBCELoss(pos_weight=0.0), "pos_weight"),
    (lambda: SoftDiceLoss(smooth=0.0), "smooth"),
    (lambda: BCEDiceLoss(dice_weight=-1.0), "dice_weight"),
])
def test_bad_input_raises_one_line_input_error(call, needle):
    with pytest.raises(InputError) as err:
        call()
    assert needle in str(err.value) and "\n" not in str(err.value)
