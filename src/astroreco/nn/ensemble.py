r"""Deep ensembles (Lakshminarayanan et al. 2017, "Simple and scalable predictive uncertainty
estimation using deep ensembles"): ``M`` copies of one network, initialised and trained
independently, each predicting a Gaussian (mean and log-variance) per output.

- :func:`cutout_gaussian_net`: a small CNN on cut-outs ``(N, C, S, S)`` with scalar side
  inputs and a :class:`~astroreco.nn.heads.GaussianHead`; one ensemble member.
- :class:`DeepEnsemble`: runs its members on a batch and stacks their outputs ``(M, N, ...)``.
- :func:`combine_gaussian`: the members' Gaussians as one mixture: its mean, and its
  variance split into the aleatoric part (mean of the members' variances, the noise each
  member sees in the data) and the epistemic part (variance of the members' means, their
  disagreement).
- :func:`combine_categorical`: the members' class probabilities averaged.

Nothing here knows a detector.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from astroreco.errors import InputError

__all__ = ["DeepEnsemble", "LOG_VAR_LIMIT", "combine_categorical", "combine_gaussian",
           "cutout_gaussian_net"]

#: log-variances are clamped to ``[-LOG_VAR_LIMIT, LOG_VAR_LIMIT]`` before ``exp``, as in
#: :class:`~astroreco.losses.GaussianNLLLoss`
LOG_VAR_LIMIT = 30.0


def cutout_gaussian_net(in_channels: int, size: int, n_outputs: int, *, n_scalars: int = 0,
                        widths=(8, 16, 32), n_features: int = 64, hidden=(64,),
                        log_var_range=(-12.0, 6.0), init_log_var: float | None = 0.0,
                        input_key: str = "image", scalar_keys: Sequence[str] = (),
                        output: str = "gaussian") -> nn.Module:
    """One ensemble member: cut-out CNN + scalars -> MLP -> Gaussian head.

    :class:`~astroreco.nn.backbones.CompactConvNet` (square conv, five 3x3 blocks, two
    stride-2 steps, dense layer to ``n_features``), the batch's ``scalar_keys`` appended to
    its features (``n_scalars`` values in all), a ReLU MLP of widths ``hidden`` and a
    :class:`~astroreco.nn.heads.GaussianHead` of ``n_outputs``.

    Shapes: ``batch[input_key]`` ``(N, in_channels, size, size)`` (``size`` a multiple of
    4), scalars ``(N, k)``; output ``{output: (mean (N, n_outputs), log_var (N, n_outputs))}``.
    """
    from astroreco.nn.backbones import CompactConvNet
    from astroreco.nn.heads import BranchHead, GaussianHead
    from astroreco.nn.models import MultiTaskNet

    backbone = CompactConvNet(int(in_channels), int(size), widths=tuple(widths),
                              n_features=int(n_features), hexagonal=False)
    hidden = tuple(int(h) for h in hidden)
    head = BranchHead(int(n_features) + int(n_scalars), hidden, ("relu",) * len(hidden),
                      lambda n: GaussianHead(n, int(n_outputs), tuple(log_var_range),
                                             init_log_var))
    return MultiTaskNet(backbone, {output: head}, input_key=input_key,
                        scalar_keys=tuple(scalar_keys))


class DeepEnsemble(nn.Module):
    """``M`` independent members with the same outputs, run on one batch.

    Parameters
    ----------
    members : sequence of nn.Module
        Each ``member(batch) -> dict`` of tensors or tuples of tensors, the same keys and
        shapes for every member.  Their weights are ``members.<k>.<name>`` in the
        ensemble's state dict, so one safetensors file holds the whole ensemble.

    Notes
    -----
    ``forward(batch)`` returns the members' outputs stacked on a new first axis: a tensor
    ``(N, ...)`` becomes ``(M, N, ...)``, a tuple becomes a tuple of such stacks.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        members = list(members)
        if not members:
            raise InputError("DeepEnsemble: expected at least one member")
        self.members = nn.ModuleList(members)

    def __len__(self) -> int:
        return len(self.members)

    def forward(self, batch: dict) -> dict:
        outs = [m(batch) for m in self.members]
        stacked = {}
        for key, first in outs[0].items():
            if isinstance(first, (tuple, list)):
                stacked[key] = tuple(torch.stack([o[key][i] for o in outs])
                                     for i in range(len(first)))  # each (M, N, ...)
            else:
                stacked[key] = torch.stack([o[key] for o in outs])  # (M, N, ...)
        return stacked


def combine_gaussian(means, log_vars) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Mean and variance of an equal-weight mixture of ``M`` Gaussians, per output.

    .. math::
        \mu = \frac1M \sum_m \mu_m, \qquad
        \sigma^2_{ale} = \frac1M \sum_m \sigma_m^2, \qquad
        \sigma^2_{epi} = \frac1M \sum_m (\mu_m - \mu)^2

    and the mixture's variance is :math:`\sigma^2_{ale} + \sigma^2_{epi}`
    (Lakshminarayanan et al. 2017, sec. 2.4).  ``log_vars`` are clamped to
    ``[-LOG_VAR_LIMIT, LOG_VAR_LIMIT]`` first, so every result is finite for finite means.

    Parameters
    ----------
    means, log_vars : array-like (M, N, D)
        Members' means and natural-log variances (numpy or torch).

    Returns
    -------
    mean, aleatoric_var, epistemic_var : np.ndarray (N, D) float64
    """
    m = _as_array("means", means)
    lv = _as_array("log_vars", log_vars)
    if m.ndim != 3 or m.shape != lv.shape or m.shape[0] < 1:
        raise InputError(f"combine_gaussian: expected means and log_vars of one shape "
                         f"(M, N, D) with M >= 1, got {m.shape} and {lv.shape}")
    if np.isnan(lv).any() or not np.isfinite(m).all():
        raise InputError("combine_gaussian: NaN or infinite means, or NaN log-variances")
    var = np.exp(np.clip(lv, -LOG_VAR_LIMIT, LOG_VAR_LIMIT))
    mean = m.mean(axis=0)
    epistemic = ((m - mean) ** 2).mean(axis=0)
    return mean, var.mean(axis=0), epistemic


def combine_categorical(probs) -> np.ndarray:
    """``(N, C)`` mean of the members' class probabilities ``(M, N, C)``."""
    p = _as_array("probs", probs)
    if p.ndim != 3 or p.shape[0] < 1:
        raise InputError(f"combine_categorical: expected probabilities (M, N, C), got "
                         f"shape {p.shape}")
    return p.mean(axis=0)


def _as_array(name, value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    try:
        return np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected an array of numbers") from None
