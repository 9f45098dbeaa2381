"""Detector-agnostic training losses: directions, angles, uncertainties, ensembles, maps.

Every loss is a :class:`Loss`: ``loss(prediction, target, weight=None)``.  The base class
checks shapes (an :class:`~astroreco.errors.InputError` with a one-line message naming
both shapes), asks the subclass for one loss per event, ``per_event -> (N,)``, then applies
the optional per-event weights and the reduction.  A prediction with several parts, e.g.
``(vector, kappa)`` from :class:`astroreco.nn.heads.DirectionKappaHead`, is a tuple; the
names of its parts are :attr:`Loss.parts` and their shapes :attr:`Loss.shapes`.

All code is float32-safe: concentrations ``kappa`` from ``1e-8`` to ``1e30`` and zero
prediction vectors give finite losses and gradients.  Angles are in radians.  The
segmentation losses (:class:`FocalBCELoss`, :class:`SoftDiceLoss`, :class:`BCEDiceLoss`)
take logits and target maps in ``[0, 1]`` of one shape ``(N, ...)``, finite for logits
of any size.
"""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F
from torch import nn

from astroreco.errors import InputError

__all__ = ["BCEDiceLoss", "CosineLoss", "FocalBCELoss", "GaussianNLLLoss", "Loss", "MSELoss",
           "MultipleChoiceLoss", "ResolutionWeightedMSELoss", "SoftDiceLoss",
           "VonMisesFisherLoss", "VonMisesLoss", "unit_vector"]

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

    def forward(self, prediction, target, weight=None) -> torch.Tensor:
        self.check(prediction, target, weight)
        loss = self.per_event(prediction, target)
        if weight is not None:
            loss = loss * weight
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.mean() if weight is None else loss.sum() / weight.sum()


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


class CosineLoss(Loss):
    """One minus the cosine of the angle between prediction and target.

    .. math:: l = 1 - \\hat p \\cdot \\hat t

    ``prediction`` ``(N, D)`` is any vector (normalised here with :func:`unit_vector`, so
    a zero vector gives ``l = 1`` and a finite gradient); ``target`` ``(N, D)`` is the true
    direction, normalised too.  ``l`` lies in ``[0, 2]``.
    """

    def per_event(self, prediction, target):
        return 1.0 - (unit_vector(prediction) * unit_vector(target)).sum(dim=-1)


class MSELoss(Loss):
    """Squared distance per event, e.g. for an impact point.

    .. math:: l = \\sum_{d=1}^{D} (p_d - t_d)^2

    ``prediction`` and ``target`` are ``(N, D)`` in the same units; ``l`` is in those units
    squared.
    """

    def per_event(self, prediction, target):
        return ((prediction - target) ** 2).sum(dim=-1)


class ResolutionWeightedMSELoss(Loss):
    r"""Squared residuals in units of an expected resolution, summed over the ``D`` outputs.

    .. math:: l = \sum_{d=1}^{D} \left(\frac{p_d - t_d}{\sigma_d}\right)^2

    ``prediction`` ``(N, D)``; ``target`` ``(N, 2D)``: the true values then the resolutions
    ``sigma_d > 0`` expected for that event (e.g. ``sigma(E) = sqrt(a^2/E + b^2)``), in the
    same units.  Events whose expected resolution is poor then count less, as in the
    AMS-02 ECAL network (seed 003).  ``sigma`` is floored at ``1e-6`` so that the loss stays
    finite.
    """

    shapes = {"prediction": ("N", "D"), "target": ("N", "T")}

    def check(self, prediction, target, weight=None) -> None:
        super().check(prediction, target, weight)
        if target.shape[1] != 2 * prediction.shape[1]:
            raise InputError(f"ResolutionWeightedMSELoss: target has shape "
                             f"{_fmt(tuple(target.shape))}; expected (N, "
                             f"{2 * prediction.shape[1]}): values then resolutions")

    def per_event(self, prediction, target):
        value, sigma = target.split(prediction.shape[1], dim=-1)
        return (((prediction - value) / sigma.clamp_min(1e-6)) ** 2).sum(dim=-1)


class VonMisesLoss(Loss):
    r"""Heteroscedastic von Mises negative log-likelihood of an angle with ``h``-fold symmetry.

    ``prediction = (vector, kappa)``: ``vector`` ``(N, 2)`` whose direction is the mean
    ``mu`` of ``h * phi`` (normalised here), ``kappa`` ``(N,)`` the concentration, > 0;
    ``target``: angles ``phi`` ``(N,)`` in radians.  With :math:`I_0` the modified Bessel
    function (von Mises density, e.g. Mardia & Jupp 2000, *Directional Statistics*):

    .. math::
        l = -\\kappa \\cos(h\\phi - \\mu) + \\log 2\\pi + \\log I_0(\\kappa),
        \\qquad \\log I_0(\\kappa) = \\log \\mathrm{i0e}(\\kappa) + \\kappa,

    computed as :math:`\\kappa(1 - \\cos) + \\log \\mathrm{i0e}(\\kappa) + \\log 2\\pi`,
    which is stable for every ``kappa``.  Constant convention: ``l = -log f(h phi)`` with
    ``f`` the von Mises density, i.e. ``scipy.stats.vonmises.logpdf(h*phi, kappa, loc=mu)``
    negated.  This is also the exact density of ``phi`` on the whole circle ``[0, 2 pi)``
    (its integral over ``phi`` is 1), so no Jacobian term is added; the ``- log h`` for
    ``phi`` restricted to one period ``[0, 2 pi / h)`` is left out (a constant).

    With ``mean_loss="cosine"`` the mean and the concentration are learned separately: the
    mean direction from the cosine loss :math:`1 - \cos(h\phi - \mu)`, the same for every
    event, and ``kappa`` from the NLL above with the mean detached,

    .. math::
        l = 1 - \cos(h\phi - \mu) + \kappa(1 - \cos(h\phi - \bar\mu))
            + \log \mathrm{i0e}(\kappa) + \log 2\pi,

    (:math:`\bar\mu`: ``mu`` without gradient).  The value is the NLL plus the cosine loss.
    With the NLL alone the gradient on ``mu`` is ``kappa sin(h phi - mu)``: events the network
    finds hard (small ``kappa``) barely move the mean, the heteroscedastic-NLL weakness that
    Seitzer et al. (2022, "On the pitfalls of heteroscedastic uncertainty estimation with
    probabilistic neural networks") describe for the Gaussian.  The cosine loss weighs every
    event's mean alike, which is what the average of ``cos(h (phi_reco - phi))`` -- the
    modulation factor for ``h = 2`` -- asks for.

    Parameters
    ----------
    harmonic : int
        ``h``: 2 for axial data such as photoelectron emission angles (``phi`` and
        ``phi + pi`` equivalent), 1 for ordinary angles.
    mean_loss : {"nll", "cosine"}
        What trains the mean direction (see above).
    reduction : str
        See :class:`Loss`.
    """

    parts = ("vector", "kappa")
    shapes = {"vector": ("N", 2), "kappa": ("N",), "target": ("N",)}
    MEAN_LOSSES = ("nll", "cosine")

    def __init__(self, harmonic: int = 2, mean_loss: str = "nll", reduction: str = "mean"):
        super().__init__(reduction)
        if int(harmonic) != harmonic or harmonic < 1:
            raise InputError(f"harmonic: expected a positive integer, got {harmonic!r}")
        if mean_loss not in self.MEAN_LOSSES:
            raise InputError(f"mean_loss {mean_loss!r}: expected one of "
                             f"{', '.join(self.MEAN_LOSSES)}")
        self.harmonic = int(harmonic)
        self.mean_loss = mean_loss

    def extra_repr(self) -> str:
        return (f"harmonic={self.harmonic}, mean_loss={self.mean_loss}, "
                + super().extra_repr())

    def per_event(self, prediction, target):
        vector, kappa = prediction
        psi = self.harmonic * target
        cos = (unit_vector(vector) * torch.stack((torch.cos(psi), torch.sin(psi)), -1)).sum(-1)
        if self.mean_loss == "cosine":
            cosine = 1.0 - cos
            cos = cos.detach()
        nll = (kappa * (1.0 - cos).clamp_min(0.0) + torch.log(torch.special.i0e(kappa))
               + _LOG_2PI)
        return nll + cosine if self.mean_loss == "cosine" else nll


def _log_sinhc_minus_k(kappa: torch.Tensor, small: float = 1e-2) -> torch.Tensor:
    """``log(sinh(k) / k) - k = log((1 - exp(-2k)) / (2k))``, stable with stable gradient.

    Below ``small`` the Taylor series ``-k + k^2/6 - k^4/180`` (error < k^6/2835) replaces the
    closed form, whose gradient cancels catastrophically as ``k -> 0`` in float32.
    """
    ks = kappa.clamp(max=small)
    series = -ks + ks * ks / 6.0 - ks ** 4 / 180.0
    kl = kappa.clamp(min=small)
    exact = torch.log(-torch.expm1(-2.0 * kl)) - torch.log(2.0 * kl)
    return torch.where(kappa < small, series, exact)


class VonMisesFisherLoss(Loss):
    r"""Heteroscedastic von Mises-Fisher negative log-likelihood on the unit sphere S2.

    ``prediction = (vector, kappa)``: ``vector`` ``(N, 3)`` along the mean direction ``mu``
    (normalised here), ``kappa`` ``(N,)`` > 0; ``target``: true unit vectors ``x``
    ``(N, 3)``.  With the normalisation of the ``p = 3`` density (Fisher 1953; Mardia &
    Jupp 2000, *Directional Statistics*):

    .. math::
        l = -\\log C_3(\\kappa) - \\kappa\\, \\mu \\cdot x, \\qquad
        \\log C_3(\\kappa) = \\log\\kappa - \\log 4\\pi - \\log\\sinh\\kappa,

    computed as :math:`\\kappa (1 - \\mu\\cdot x) + \\log 4\\pi
    + \\log\\frac{1 - e^{-2\\kappa}}{2\\kappa}`, exact and stable from ``kappa -> 0``
    (limit ``log 4 pi``) to ``kappa = 1e30``; equal to
    ``-scipy.stats.vonmises_fisher(mu, kappa).logpdf(x)``.

    Parameters
    ----------
    log_c3 : {"stable", "paper"}
        ``stable``: the form above.  ``paper``: the TPC seed paper's eq. 6, kept for
        comparison -- the 15th-order Taylor series of :math:`\log C_3` below
        ``kappa = 2.65`` and :math:`\log(\kappa / 2\pi) - \kappa` above, switched by
        ``torch.where``.  Its value is off by up to ~0.14% near the switch, its gradient
        jumps there, and in float32 the unused Taylor branch overflows at large ``kappa``,
        which turns the gradient into NaN: above ``kappa = 751.3`` with the polynomial
        written as in the paper (measured here; the onset depends on how the powers are
        evaluated, ~566 where ``kappa^14`` itself overflows).
    reduction : str
        See :class:`Loss`.
    """

    parts = ("vector", "kappa")
    shapes = {"vector": ("N", 3), "kappa": ("N",), "target": ("N", 3)}
    LOG_C3 = ("stable", "paper")

    def __init__(self, log_c3: str = "stable", reduction: str = "mean"):
        super().__init__(reduction)
        if log_c3 not in self.LOG_C3:
            raise InputError(f"log_c3 {log_c3!r}: expected one of {', '.join(self.LOG_C3)}")
        self.log_c3 = log_c3

    def extra_repr(self) -> str:
        return f"log_c3={self.log_c3}, " + super().extra_repr()

    def per_event(self, prediction, target):
        vector, kappa = prediction
        cos = (unit_vector(vector) * unit_vector(target)).sum(-1)
        if self.log_c3 == "paper":
            return -paper_log_c3(kappa) - kappa * cos
        return kappa * (1.0 - cos).clamp_min(0.0) + _LOG_4PI + _log_sinhc_minus_k(kappa)


#: Taylor coefficients of log(sinh k / k) in k^2, k^4, ..., k^14
_LOG_SINHC_TAYLOR = (1 / 6, -1 / 180, 1 / 2835, -1 / 37800, 1 / 467775, -691 / 3831077250,
                     2 / 127702575)


def paper_log_c3(kappa: torch.Tensor, switch: float = 2.65) -> torch.Tensor:
    r"""The TPC seed paper's :math:`\log C_3(\kappa)` (its eq. 6), as published.

    ``-log 4 pi - sum_n c_n kappa^(2n)`` (15th order, powers written out as in the paper)
    below ``switch``,
    ``log(kappa / 2 pi) - kappa`` above; both branches are evaluated (``torch.where``).
    For comparison only: see :class:`VonMisesFisherLoss`.
    """
    series = sum(c * kappa ** (2 * n) for n, c in enumerate(_LOG_SINHC_TAYLOR, start=1))
    return torch.where(kappa < switch, -_LOG_4PI - series,
                       torch.log(kappa) - math.log(2.0 * math.pi) - kappa)


class GaussianNLLLoss(Loss):
    """Heteroscedastic Gaussian negative log-likelihood with a diagonal covariance.

    ``prediction = (mean, log_var)``, both ``(N, D)``: the mean and the natural log of the
    variance (units of the target squared); ``target`` ``(N, D)``.  Summed over ``D``
    (Nix & Weigend 1994, "Estimating the mean and variance of the target probability
    distribution"):

    .. math::
        l = \\frac12 \\sum_{d=1}^{D} \\left[\\log\\sigma_d^2
            + (x_d - m_d)^2 e^{-\\log\\sigma_d^2} + \\log 2\\pi\\right]

    ``beta > 0`` weights each term by the detached ``sigma^(2 beta)`` divided by its batch
    mean per output (beta-NLL; 0.5 is the usual choice): the minimum is unchanged, but the
    mean keeps learning where the variance is large, and an output with small variances
    (a position in mm next to a slope) is not drowned by the others.  ``log_var`` is clamped to ``[-LOG_VAR_LIMIT, LOG_VAR_LIMIT] =
    [-30, 30]`` inside the
    loss so that ``exp(-log_var)`` stays finite in float32; beyond these ends the loss is
    flat in ``log_var`` (zero gradient).  :class:`astroreco.nn.heads.GaussianHead` keeps
    ``log_var`` well inside, in ``(-12, 6)`` by default.
    """

    LOG_VAR_LIMIT = 30.0
    parts = ("mean", "log_var")
    shapes = {"mean": ("N", "D"), "log_var": ("N", "D"), "target": ("N", "D")}

    def __init__(self, beta: float = 0.0, reduction: str = "mean"):
        super().__init__(reduction)
        if not 0.0 <= float(beta) <= 1.0:
            raise InputError(f"beta: expected a value in [0, 1], got {beta}")
        self.beta = float(beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, " + super().extra_repr()

    def per_event(self, prediction, target):
        mean, log_var = prediction
        log_var = log_var.clamp(-self.LOG_VAR_LIMIT, self.LOG_VAR_LIMIT)
        terms = log_var + (target - mean) ** 2 * torch.exp(-log_var) + _LOG_2PI
        if self.beta:
            # beta-NLL (Seitzer et al. 2022, "On the pitfalls of heteroscedastic uncertainty
            # estimation"): each term weighted by the detached variance^beta, so that a
            # large predicted variance cannot stall the learning of the mean; the weights
            # are divided by their batch mean per output, so that outputs measured in
            # different units keep equal shares of the loss
            w = torch.exp(self.beta * log_var).detach()
            terms = terms * (w / w.mean(dim=0, keepdim=True))
        return 0.5 * terms.sum(dim=-1)


class MultipleChoiceLoss(Loss):
    """Stochastic multiple-choice learning for an ensemble of ``M`` heads.

    Each head ``m`` predicts the same target; its loss is ``base.per_event``.  Per event the
    head with the lowest loss (argmin without gradient) gets weight ``best_weight``, every
    other head ``(1 - best_weight) / (M - 1)`` (``M = 1``: weight 1):

    .. math:: l = \\sum_{m=1}^{M} w_m\\, l_m, \\qquad
        w_m = \\begin{cases} b & m = \\arg\\min_k l_k \\\\ (1-b)/(M-1) & \\text{otherwise}
        \\end{cases}

    ``best_weight = 1`` is the winner-takes-all oracle loss of stochastic multiple-choice
    learning (Lee et al. 2015, "Why M heads are better than one", arXiv:1511.06314; Lee et
    al. 2016, "Stochastic multiple choice learning for training diverse deep ensembles",
    NeurIPS); ``best_weight < 1`` is the relaxed form of Rupprecht et al. 2017 ("Learning in
    an uncertain world", ICCV), which keeps every head trained.

    ``prediction``: a tensor ``(N, M, ...)`` or a tuple whose parts are all ``(N, M, ...)``
    (the base's parts with a head axis inserted at 1); ``target`` as for ``base``.
    The base's own reduction is not used.
    """

    def __init__(self, base: Loss, best_weight: float = 0.9, reduction: str = "mean"):
        super().__init__(reduction)
        if not isinstance(base, Loss) or isinstance(base, MultipleChoiceLoss):
            raise InputError(f"base: expected an astroreco Loss, got {type(base).__name__}")
        if not 0.0 < float(best_weight) <= 1.0:
            raise InputError(f"best_weight: expected a value in (0, 1], got {best_weight}")
        self.base = base
        self.best_weight = float(best_weight)
        self.parts = base.parts

    def extra_repr(self) -> str:
        return f"best_weight={self.best_weight}, " + super().extra_repr()

    def check(self, prediction, target, weight=None) -> None:
        parts = self.split(prediction)
        lead = tuple(parts[0].shape[:2])
        for name, p in zip(self.parts, parts):
            if p.dim() < 2 or tuple(p.shape[:2]) != lead:
                raise InputError(f"MultipleChoiceLoss: prediction {name} has shape "
                                 f"{_fmt(p.shape)}; expected (N, M, ...) with (N, M) = "
                                 f"{_fmt(lead)}")
        first = tuple(p[:, 0] for p in parts)
        try:
            self.base.check(first[0] if len(first) == 1 else first, target, weight)
        except InputError as err:  # name the wrapper; shapes shown are those of one head
            raise InputError(f"MultipleChoiceLoss, per head: {err}") from None

    def per_head(self, prediction, target) -> torch.Tensor:
        """Base loss of every head, shape ``(N, M)`` (shapes not checked)."""
        parts = self.split(prediction)
        n, m = parts[0].shape[:2]
        flat = tuple(p.reshape(n * m, *p.shape[2:]) for p in parts)
        rep = target.unsqueeze(1).expand(n, m, *target.shape[1:]).reshape(n * m, *target.shape[1:])
        return self.base.per_event(flat[0] if len(flat) == 1 else flat, rep).reshape(n, m)

    def per_event(self, prediction, target):
        losses = self.per_head(prediction, target)
        m = losses.shape[1]
        if m == 1:
            return losses[:, 0]
        best = losses.detach().argmin(dim=1, keepdim=True)
        w = torch.full_like(losses, (1.0 - self.best_weight) / (m - 1))
        w = w.scatter(1, best, self.best_weight)
        return (w * losses).sum(dim=1)


# ------------------------------------------------------------------------------------------
# Segmentation: per-pixel logits against probability maps
# ------------------------------------------------------------------------------------------

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


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy of class logits, with optional class weights.

    ``prediction`` = logits ``(N, C)`` (any real values), ``target`` ``(N,)`` integer class
    indices in ``[0, C)``:

    .. math::
        l_i = -w_{y_i} \\log \\mathrm{softmax}(z_i)_{y_i}
            = w_{y_i} \\left( \\log \\sum_c e^{z_{ic}} - z_{i y_i} \\right)

    computed with ``log_softmax`` (max subtracted) in float64, each term clamped to
    :attr:`NLL_LIMIT` (``1e30``), so loss and gradient are finite for any finite float32
    logits.  With ``class_weights`` the ``"mean"`` reduction divides by the summed
    weights of the events' classes, :math:`\\sum_i w_{y_i} l_i' / \\sum_i w_{y_i}` (times
    the per-event weights when given), as :func:`torch.nn.functional.cross_entropy` does:
    an imbalanced training set is rebalanced by weights ``w_c ~ 1 / n_c``.

    Parameters
    ----------
    class_weights : sequence of C floats >= 0, optional
    reduction : str
        See :class:`Loss`.
    """

    #: largest per-event term (before the class weight); beyond it the loss is flat
    NLL_LIMIT = 1e30
    parts = ("prediction",)
    shapes = {"prediction": ("N", "C"), "target": ("N",)}

    def __init__(self, class_weights=None, reduction: str = "mean"):
        super().__init__(reduction)
        if class_weights is not None:
            w = torch.as_tensor(class_weights, dtype=torch.float32).reshape(-1)
            if w.numel() < 1 or not bool(torch.all(torch.isfinite(w) & (w >= 0))) \
                    or not float(w.sum()) > 0:
                raise InputError(f"class_weights: expected finite values >= 0 with a positive "
                                 f"sum, got {list(class_weights)!r}")
            self.register_buffer("class_weights", w, persistent=False)
        else:
            self.class_weights = None

    def _target(self, prediction, target) -> torch.Tensor:
        n_classes = prediction.shape[1]
        if target.is_floating_point() and not bool(torch.all(target == target.round())):
            raise InputError(f"{type(self).__name__}: target must hold integer class indices")
        y = target.long()
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            raise InputError(f"{type(self).__name__}: target classes expected in "
                             f"0..{n_classes - 1}, got {int(y.min())}..{int(y.max())}")
        if self.class_weights is not None and self.class_weights.numel() != n_classes:
            raise InputError(f"{type(self).__name__}: {self.class_weights.numel()} class "
                             f"weights for {n_classes} classes")
        return y

    def per_event(self, prediction, target):
        y = self._target(prediction, target)
        # float64: a logit difference beyond float32's range (|z| up to 3.4e38) stays
        # finite; terms above NLL_LIMIT are clamped (flat there) before going back
        logp = F.log_softmax(prediction.double(), dim=1)
        nll = (-logp.gather(1, y[:, None])[:, 0]).clamp(max=self.NLL_LIMIT)  # (N,)
        if self.class_weights is not None:
            nll = nll * self.class_weights.double()[y]
        return nll.to(prediction.dtype)

    def forward(self, prediction, target, weight=None) -> torch.Tensor:
        self.check(prediction, target, weight)
        loss = self.per_event(prediction, target)
        if weight is not None:
            loss = loss * weight
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        if self.class_weights is None:
            return loss.mean() if weight is None else loss.sum() / weight.sum()
        denom = self.class_weights.to(loss.dtype)[target.long()]
        if weight is not None:
            denom = denom * weight
        return loss.sum() / denom.sum()


__all__ += ["CrossEntropyLoss"]
