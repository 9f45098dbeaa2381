"""The base of every loss (shape checks, weights, reduction) and shared helpers."""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F
from torch import nn

from astroreco.errors import InputError


_LOG_2PI = math.log(2.0 * math.pi)
_LOG_4PI = math.log(4.0 * math.pi)


def unit_vector(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Unit vector along the last axis, finite with finite gradient at ``x = 0``.

    .. math:: \\hat x = x / \\max(|x|, \\epsilon)

    (as :func:`torch.nn.functional.normalize`), exact for ``|x| >= eps``; below, the result
    is ``x / eps`` (zero for a zero vector) with gradient ``1 / eps``.  ``x`` is first divided
    by a detached ``max(max_i |x_i|, 1)``, which changes neither value nor gradient but keeps
    ``|x|^2`` from overflowing in float32.
    """
    scale = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1.0)
    return F.normalize(x / scale, dim=-1, eps=eps)


def _fmt(shape) -> str:
    dims = [str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


class Loss(nn.Module, abc.ABC):
    """Base class: shape checks, per-event weights and reduction.

    Subclasses set :attr:`parts` and :attr:`shapes` and implement :meth:`per_event`.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}
        ``"mean"`` is the weighted mean :math:`\\sum_i w_i l_i / \\sum_i w_i` (plain mean
        without weights), ``"sum"`` is :math:`\\sum_i w_i l_i`, ``"none"`` returns the
        ``(N,)`` tensor :math:`w_i l_i`.  Weights must be non-negative with a positive sum.
    """

    #: names of the prediction's tensors in order; one name means a plain tensor
    parts: tuple[str, ...] = ("prediction",)
    #: shape pattern of each part and of ``"target"``: ints are fixed sizes, letters are
    #: sizes that must agree between tensors (``N`` is the number of events)
    shapes: dict[str, tuple] = {"prediction": ("N", "D"), "target": ("N", "D")}

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise InputError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"

    def split(self, prediction) -> tuple[torch.Tensor, ...]:
        """The prediction as a tuple of :attr:`parts` tensors; InputError if it is not."""
        single = len(self.parts) == 1
        parts = (prediction,) if single else prediction
        if (not isinstance(parts, (tuple, list)) or len(parts) != len(self.parts)
                or not all(isinstance(p, torch.Tensor) for p in parts)):
            want = "a tensor" if single else f"a tuple ({', '.join(self.parts)}) of tensors"
            got = type(prediction).__name__
            if isinstance(prediction, (tuple, list)):
                got += f" of length {len(prediction)}"
            raise InputError(f"{type(self).__name__}: expected prediction as {want}, got {got}")
        return tuple(parts)

    def check(self, prediction, target, weight=None) -> None:
        """Raise InputError unless prediction, target and weight have the shapes expected."""
        parts = self.split(prediction)
        labels = ["prediction"] if len(parts) == 1 else [f"prediction {p}" for p in self.parts]
        items = [(lab, t, self.shapes[p]) for lab, p, t in zip(labels, self.parts, parts)]
        items.append(("target", target, self.shapes["target"]))
        if weight is not None:
            items.append(("weight", weight, ("N",)))
        _match_shapes(type(self).__name__, items)

    @abc.abstractmethod
    def per_event(self, prediction, target) -> torch.Tensor:
        """Loss of each event, shape ``(N,)``; shapes are already checked."""

    def mean_weights(self, target, weight):
        """The weights whose sum divides the summed loss for ``reduction="mean"`` (None: a
        plain mean).  The per-event ``weight``; a loss that weights events itself (e.g. by
        class) overrides this so that the mean stays a weighted mean."""
        return weight

    def forward(self, prediction, target, weight=None) -> torch.Tensor:
        self.check(prediction, target, weight)
        loss = self.per_event(prediction, target)
        if weight is not None:
            loss = loss * weight
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        w = self.mean_weights(target, weight)
        return loss.mean() if w is None else loss.sum() / w.sum()


def _match_shapes(owner: str, items) -> None:
    """Check ``(label, tensor, pattern)`` items in order, binding the letters of patterns."""
    bound: dict[str, tuple[int, str, tuple]] = {}
    for label, tensor, pattern in items:
        if not isinstance(tensor, torch.Tensor):
            raise InputError(f"{owner}: expected {label} as a tensor, got {type(tensor).__name__}")
        shape = tuple(tensor.shape)
        if len(shape) != len(pattern) or any(isinstance(p, int) and s != p
                                             for s, p in zip(shape, pattern)):
            raise InputError(f"{owner}: {label} has shape {_fmt(shape)}; expected {_fmt(pattern)}")
        for size, sym in zip(shape, pattern):
            if isinstance(sym, int):
                continue
            if sym in bound and bound[sym][0] != size:
                _, other, other_shape = bound[sym]
                raise InputError(f"{owner}: {other} has shape {_fmt(other_shape)} but {label} "
                                 f"has {_fmt(shape)}; expected {label} {_fmt(pattern)}")
            bound.setdefault(sym, (size, label, shape))


def _check_positive(name: str, value, allow_none: bool = False):
    if value is None and allow_none:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a positive number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"{name}: expected a positive number, got {value!r}")
    return v
