"""Per-pixel losses on logit maps: focal BCE, soft Dice, BCE + Dice."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from astroreco.errors import InputError
from astroreco.losses.base import Loss, _check_positive, _fmt, _match_shapes


class _MapLoss(Loss):
    """Base of the per-pixel losses: logits and a target map of one shape ``(N, ...)``.

    ``prediction``: logits ``z``, any shape ``(N, d1, ...)`` with at least 2 axes (e.g. the
    ``(N, C, H, W)`` of :class:`astroreco.nn.unet.UNet2d`); ``target``: the same shape,
    values in ``[0, 1]`` (hard 0/1 masks or soft targets).  One loss per event ``(N,)``.
    """

    shapes = {"prediction": ("N", "..."), "target": ("N", "...")}

    def check(self, prediction, target, weight=None) -> None:
        (logits,) = self.split(prediction)
        owner = type(self).__name__
        if logits.dim() < 2:
            raise InputError(f"{owner}: prediction has shape {_fmt(logits.shape)}; expected "
                             f"(N, ...) with at least 2 axes, e.g. (N, C, H, W)")
        pattern = ("N",) + tuple(f"d{i}" for i in range(1, logits.dim()))
        items = [("prediction", logits, pattern), ("target", target, pattern)]
        if weight is not None:
            items.append(("weight", weight, ("N",)))
        _match_shapes(owner, items)
        if not bool(((target >= 0) & (target <= 1)).all()):
            raise InputError(f"{owner}: target: expected values in [0, 1] (NaN or values "
                             f"outside found)")


class FocalBCELoss(_MapLoss):
    r"""Focal binary cross-entropy on logits, for maps where most pixels are background.

    With :math:`p = \sigma(z)` and target :math:`t \in [0, 1]`, per element

    .. math::
        l = -|t - p|^\gamma \left[\alpha\, w_+\, t \log p
            + (1 - \alpha)(1 - t) \log(1 - p)\right],

    averaged over all elements of an event (``C x H x W``).  For hard targets this is the
    focal loss of Lin et al. 2017 ("Focal loss for dense object detection",
    arXiv:1708.02002, eq. 5): :math:`|t - p|^\gamma` is :math:`(1 - p)^\gamma` where
    ``t = 1`` and :math:`p^\gamma` where ``t = 0``; for soft targets the factor
    :math:`|t - p|^\gamma` (the "quality focal loss" of Li et al. 2020, arXiv:2006.04388)
    keeps the minimum at ``p = t``.  ``gamma = 0``, ``alpha = None`` (both weights 1) and
    ``pos_weight = None`` give the plain binary cross-entropy
    (:func:`torch.nn.functional.binary_cross_entropy_with_logits`).

    Computed from :math:`\log p = \mathrm{logsigmoid}(z)`,
    :math:`\log(1 - p) = \mathrm{logsigmoid}(-z)` and
    :math:`t - p = t\,\sigma(-z) - (1 - t)\,\sigma(z)`, never from ``1 - p``: finite loss and
    gradients for logits of any size (``+-1e4`` included, where the loss is ~1e4).

    Parameters
    ----------
    alpha : float in [0, 1] or None
        Weight of the positive term (``1 - alpha`` of the negative one); ``None``: 1 and 1.
        Lin et al. use 0.25 with ``gamma = 2``.
    gamma : float
        Focusing exponent: 0, or >= 1 (for ``0 < gamma < 1`` the gradient of
        :math:`|t - p|^\gamma` is infinite at ``p = t``).
    pos_weight : float > 0 or None
        Extra weight :math:`w_+` of the positive term (as in
        ``binary_cross_entropy_with_logits``), e.g. the background-to-source pixel ratio.
    reduction : str
        See :class:`Loss`.
    """

    def __init__(self, alpha: float | None = 0.25, gamma: float = 2.0,
                 pos_weight: float | None = None, reduction: str = "mean"):
        super().__init__(reduction)
        if alpha is not None and not (isinstance(alpha, (int, float))
                                      and 0.0 <= float(alpha) <= 1.0):
            raise InputError(f"alpha: expected a number in [0, 1] or None, got {alpha!r}")
        if not (isinstance(gamma, (int, float)) and (gamma == 0 or 1 <= gamma < math.inf)):
            raise InputError(f"gamma: expected 0 or a number >= 1, got {gamma!r}")
        self.alpha = None if alpha is None else float(alpha)
        self.gamma = float(gamma)
        self.pos_weight = _check_positive("pos_weight", pos_weight, allow_none=True)

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, gamma={self.gamma}, pos_weight={self.pos_weight}, "
                + super().extra_repr())

    def per_element(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of every element, the shape of ``logits`` (shapes not checked)."""
        pos = target * F.logsigmoid(logits)  # t log p
        neg = (1.0 - target) * F.logsigmoid(-logits)  # (1 - t) log(1 - p)
        if self.pos_weight is not None:
            pos = pos * self.pos_weight
        if self.alpha is not None:
            pos, neg = self.alpha * pos, (1.0 - self.alpha) * neg
        loss = -(pos + neg)
        if self.gamma:
            diff = target * torch.sigmoid(-logits) - (1.0 - target) * torch.sigmoid(logits)
            loss = loss * diff.abs() ** self.gamma  # |t - p|^gamma
        return loss

    def per_event(self, prediction, target):
        return self.per_element(prediction, target).flatten(1).mean(dim=1)


class SoftDiceLoss(_MapLoss):
    r"""One minus the soft Dice coefficient of ``sigmoid(logits)`` and the target, per event.

    With :math:`p = \sigma(z)` and the sums over all elements of one event (``C x H x W``):

    .. math::
        l = 1 - \frac{2 \sum_j p_j t_j + s}{\sum_j p_j + \sum_j t_j + s}

    (a differentiable Sorensen-Dice overlap, as in Milletari et al. 2016, "V-Net",
    arXiv:1606.04797, with plain sums in the denominator).  ``l`` lies in ``[0, 1)``.  The
    smoothing ``s > 0`` keeps an empty target with an empty prediction at ``l = 0`` and the
    loss finite for every input.  Insensitive to how many pixels are background, which is
    why it is paired with a per-pixel loss (:class:`BCEDiceLoss`).

    Parameters
    ----------
    smooth : float > 0
        ``s``, in units of pixels (probability summed over pixels).
    reduction : str
        See :class:`Loss`.
    """

    def __init__(self, smooth: float = 1.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.smooth = _check_positive("smooth", smooth)

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}, " + super().extra_repr()

    def per_event(self, prediction, target):
        p = torch.sigmoid(prediction).flatten(1)  # (N, n_elements)
        t = target.flatten(1)
        overlap = 2.0 * (p * t).sum(dim=1) + self.smooth
        return 1.0 - overlap / (p.sum(dim=1) + t.sum(dim=1) + self.smooth)


class BCEDiceLoss(_MapLoss):
    r"""Binary cross-entropy plus a weighted soft Dice loss, per event.

    .. math:: l = l_\mathrm{BCE} + w_\mathrm{Dice}\, l_\mathrm{Dice}

    with :math:`l_\mathrm{BCE}` the element-averaged binary cross-entropy on logits
    (:class:`FocalBCELoss` with ``gamma = 0, alpha = None`` and ``pos_weight``) and
    :math:`l_\mathrm{Dice}` the :class:`SoftDiceLoss` with smoothing ``smooth``.

    Parameters
    ----------
    dice_weight : float >= 0
    smooth : float > 0
    pos_weight : float > 0 or None
    reduction : str
        See :class:`Loss`.
    """

    def __init__(self, dice_weight: float = 1.0, *, smooth: float = 1.0,
                 pos_weight: float | None = None, reduction: str = "mean"):
        super().__init__(reduction)
        if not (isinstance(dice_weight, (int, float)) and 0 <= dice_weight < math.inf):
            raise InputError(f"dice_weight: expected a number >= 0, got {dice_weight!r}")
        self.dice_weight = float(dice_weight)
        self.bce = FocalBCELoss(alpha=None, gamma=0.0, pos_weight=pos_weight)
        self.dice = SoftDiceLoss(smooth)

    def extra_repr(self) -> str:
        return f"dice_weight={self.dice_weight}, " + super().extra_repr()

    def per_event(self, prediction, target):
        loss = self.bce.per_event(prediction, target)
        if self.dice_weight:
            loss = loss + self.dice_weight * self.dice.per_event(prediction, target)
        return loss
