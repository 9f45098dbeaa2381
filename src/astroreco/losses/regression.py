"""Regression losses: (resolution-weighted) MSE, Gaussian NLL, multiple-choice ensembles."""

from __future__ import annotations

import torch

from astroreco.errors import InputError
from astroreco.losses.base import _LOG_2PI, Loss, _fmt


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
    (a position in mm next to a slope) is not drowned by the others.  ``log_var`` is
    clamped to ``[-LOG_VAR_LIMIT, LOG_VAR_LIMIT] = [-30, 30]`` inside the loss so that ``exp(-log_var)`` stays finite in float32; beyond these ends the loss is
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
