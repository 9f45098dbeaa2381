"""Output heads: map features ``(N, F)`` to the predictions the losses of
:mod:`astroreco.losses` expect.

Every head is one linear layer followed by a smooth squashing that keeps its outputs valid
for any finite input (unit vectors, ``kappa`` in ``[kappa_min, kappa_max]``, ``log_var``
inside its range) with finite gradients, in float32:

- :class:`DirectionHead`: unit vector ``(N, dim)``, for :class:`~astroreco.losses.CosineLoss`;
- :class:`KappaHead`: ``kappa`` ``(N,)``, part of the two heads below;
- :class:`AngleHead`: ``(vector (N, 2), kappa (N,))``, for
  :class:`~astroreco.losses.VonMisesLoss`;
- :class:`DirectionKappaHead`: ``(vector (N, dim), kappa (N,))``, for
  :class:`~astroreco.losses.VonMisesFisherLoss`;
- :class:`GaussianHead`: ``(mean (N, dim), log_var (N, dim))``, for
  :class:`~astroreco.losses.GaussianNLLLoss`;
- :class:`BranchHead`: any of these behind its own small MLP (:func:`mlp`), and
  :class:`BranchedDirectionKappaHead`: direction and ``kappa`` on two separate branches.

Input features that are not ``(N, in_features)`` raise :class:`~astroreco.errors.InputError`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from astroreco.errors import InputError
from astroreco.losses import unit_vector

__all__ = ["ACTIVATIONS", "AngleHead", "BranchHead", "BranchedDirectionKappaHead",
           "DirectionHead", "DirectionKappaHead", "GaussianHead", "KappaHead", "mlp"]


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise InputError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


class _Head(nn.Module):
    """One ``nn.Linear(in_features, out)`` and a check that features are ``(N, in_features)``."""

    def __init__(self, in_features, out_features: int):
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.linear = nn.Linear(self.in_features, out_features)

    def _raw(self, features: torch.Tensor) -> torch.Tensor:
        if (not isinstance(features, torch.Tensor) or features.dim() != 2
                or features.shape[1] != self.in_features):
            got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)
            raise InputError(f"{type(self).__name__}: features have shape {got}; expected "
                             f"(N, {self.in_features})")
        return self.linear(features)


class DirectionHead(_Head):
    """Unit vector: ``unit_vector(linear(features))``.

    Parameters
    ----------
    in_features : int
        ``F``.
    dim : int
        ``D``, e.g. 3 for a direction in space, 2 for a direction in a plane.
    eps : float
        Of :func:`astroreco.losses.unit_vector`: a raw output of norm below ``eps`` gives
        ``raw / eps`` (shorter than unit) instead of a singular gradient.

    Notes
    -----
    ``forward(features)`` returns:

    torch.Tensor
        ``(N, dim)``, unit norm (where ``|raw| >= eps``).
    """

    def __init__(self, in_features, dim, eps: float = 1e-6):
        super().__init__(in_features, _positive_int(dim, "dim"))
        self.dim = int(dim)
        self.eps = float(eps)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return unit_vector(self._raw(features), self.eps)


class KappaHead(_Head):
    """Concentration ``kappa > 0`` of a von Mises or von Mises-Fisher distribution.

    .. math::
        s = \\mathrm{softplus}(r), \\qquad
        \\kappa = \\kappa_{min} + s \\quad\\text{or, with } \\kappa_{max}:\\quad
        \\kappa = \\kappa_{min} + \\frac{s\\,c}{s + c},\\ c = \\kappa_{max} - \\kappa_{min}

    with ``r = linear(features)``.  The bounded form is a smooth harmonic combination: it
    follows ``kappa_min + s`` while ``s << c`` and tends to ``kappa_max`` as ``s -> inf``.

    Parameters
    ----------
    in_features : int
    kappa_min : float
        Lower bound, > 0 (dimensionless, like ``kappa``).
    kappa_max : float or None
        Upper bound, > ``kappa_min``; None for unbounded.

    Notes
    -----
    ``forward(features)`` returns:

    torch.Tensor
        ``(N,)``, in ``[kappa_min, kappa_max]`` (float rounding may reach the bounds).
    """

    def __init__(self, in_features, kappa_min: float = 1e-3, kappa_max: float | None = None):
        super().__init__(in_features, 1)
        if not (math.isfinite(kappa_min) and kappa_min > 0):
            raise InputError(f"kappa_min: expected a finite value > 0, got {kappa_min}")
        if kappa_max is not None and not (math.isfinite(kappa_max) and kappa_max > kappa_min):
            raise InputError(f"kappa_max: expected None or a finite value > kappa_min = "
                             f"{kappa_min}, got {kappa_max}")
        self.kappa_min = float(kappa_min)
        self.kappa_max = None if kappa_max is None else float(kappa_max)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        s = F.softplus(self._raw(features).squeeze(-1))
        if self.kappa_max is None:
            return self.kappa_min + s
        c = self.kappa_max - self.kappa_min
        return self.kappa_min + c * (s / (s + c))


class DirectionKappaHead(nn.Module):
    """Mean direction and concentration for :class:`~astroreco.losses.VonMisesFisherLoss`.

    A :class:`DirectionHead` and a :class:`KappaHead` on the same features.

    Parameters
    ----------
    in_features : int
    dim : int
        3 for the sphere S2.
    kappa_min, kappa_max : float, float or None
        See :class:`KappaHead`.

    Notes
    -----
    ``forward(features)`` returns:

    vector : torch.Tensor
        ``(N, dim)`` unit vector along the mean direction.
    kappa : torch.Tensor
        ``(N,)``, ``> 0``.
    """

    def __init__(self, in_features, dim=3, kappa_min: float = 1e-3,
                 kappa_max: float | None = None):
        super().__init__()
        self.direction = DirectionHead(in_features, dim)
        self.kappa = KappaHead(in_features, kappa_min, kappa_max)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.direction(features), self.kappa(features)


class AngleHead(DirectionKappaHead):
    """Mean angle and concentration for :class:`~astroreco.losses.VonMisesLoss`.

    The angle of the unit vector, ``atan2(vector[:, 1], vector[:, 0])``, is the mean ``mu``
    of ``h * phi`` (``h`` the loss's harmonic): for axial data (``h = 2``) the predicted
    angle is ``phi_hat = mu / 2``, defined modulo ``pi``.  Predicting a vector instead of an
    angle avoids the ``2 pi`` discontinuity.

    Parameters and outputs are those of :class:`DirectionKappaHead` with ``dim = 2``: the
    unit vector ``(cos mu, sin mu)`` of shape ``(N, 2)`` and ``kappa`` of shape ``(N,)``.
    """

    def __init__(self, in_features, kappa_min: float = 1e-3, kappa_max: float | None = None):
        super().__init__(in_features, 2, kappa_min, kappa_max)


class GaussianHead(_Head):
    """Mean and log-variance of a diagonal Gaussian for
    :class:`~astroreco.losses.GaussianNLLLoss`.

    .. math::
        m = r_m, \\qquad \\log\\sigma^2 = a + (b - a)\\,\\mathrm{sigmoid}(r_v)

    with ``(r_m, r_v) = linear(features)`` and ``(a, b) = log_var_range``: ``log_var`` is
    squashed smoothly into ``(a, b)`` (``(a + b) / 2`` for ``r_v = 0``), so the loss
    never sees a vanishing or exploding variance.

    Parameters
    ----------
    in_features : int
    dim : int
        ``D``.
    log_var_range : (float, float)
        ``(a, b)``, ``a < b``, natural log of the variance in target units squared.
    init_log_var : float, optional
        Where ``log_var`` starts (the bias of its half of the linear layer); the middle of
        the range when None.

    Notes
    -----
    ``forward(features)`` returns:

    mean : torch.Tensor
        ``(N, dim)``, target units.
    log_var : torch.Tensor
        ``(N, dim)``, in ``[a, b]`` (float rounding may reach the ends).
    """

    def __init__(self, in_features, dim, log_var_range: tuple[float, float] = (-12.0, 6.0),
                 init_log_var: float | None = None):
        super().__init__(in_features, 2 * _positive_int(dim, "dim"))
        lo, hi = (float(v) for v in log_var_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise InputError(f"log_var_range: expected finite (low, high) with low < high, "
                             f"got {tuple(log_var_range)}")
        self.dim = int(dim)
        self.log_var_range = (lo, hi)
        if init_log_var is not None:
            # start at the targets' own scale: from the middle of a wide range the first
            # residuals look huge, the variance is pushed into the sigmoid's flat top and the
            # mean stops learning
            if not lo < float(init_log_var) < hi:
                raise InputError(f"init_log_var {init_log_var}: expected inside "
                                 f"log_var_range {self.log_var_range}")
            frac = (float(init_log_var) - lo) / (hi - lo)
            with torch.no_grad():
                self.linear.bias[self.dim:] = math.log(frac / (1.0 - frac))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self._raw(features).split(self.dim, dim=-1)
        lo, hi = self.log_var_range
        return mean, lo + (hi - lo) * torch.sigmoid(raw)


#: activations an MLP layer may end with, by name
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "none": nn.Identity}


def mlp(in_features, widths, activations) -> nn.Sequential:
    """Linear layers of the given widths, each followed by its named activation.

    ``mlp(500, (200, 50), ("relu", "tanh"))`` is ``Linear(500, 200), ReLU, Linear(200, 50),
    Tanh``.  The result has ``n_features`` (the last width, or ``in_features`` when empty).
    """
    widths = tuple(_positive_int(w, "width") for w in widths)
    activations = tuple(activations)
    if len(activations) != len(widths):
        raise InputError(f"mlp: {len(widths)} widths but {len(activations)} activations")
    layers = []
    n = _positive_int(in_features, "in_features")
    for w, a in zip(widths, activations):
        if a not in ACTIVATIONS:
            raise InputError(f"mlp: activation {a!r}: expected one of {', '.join(ACTIVATIONS)}")
        layers += [nn.Linear(n, w), ACTIVATIONS[a]()]
        n = w
    seq = nn.Sequential(*layers)
    seq.n_features = n
    return seq


class BranchHead(nn.Module):
    """A head behind its own MLP branch: ``head(mlp(features))``.

    Parameters
    ----------
    in_features : int
    widths, activations : sequence
        The branch, see :func:`mlp`.
    head : callable
        ``head(n_features) -> nn.Module``, e.g. ``lambda n: DirectionHead(n, 3)``.
    """

    def __init__(self, in_features, widths, activations, head):
        super().__init__()
        self.branch = mlp(in_features, widths, activations)
        self.head = head(self.branch.n_features)

    def forward(self, features: torch.Tensor):
        return self.head(self.branch(features))


class BranchedDirectionKappaHead(nn.Module):
    """Mean direction and ``kappa`` from two separate MLP branches (the TPC seed's HCN).

    Same outputs as :class:`DirectionKappaHead`: ``(vector (N, dim), kappa (N,))``.

    Parameters
    ----------
    in_features : int
    dim : int
    direction_widths, direction_activations : sequence
        The direction branch (seed: ``(200, 50)``, ``("relu", "tanh")``).
    kappa_widths, kappa_activations : sequence
        The kappa branch (seed: ``(200, 50)``, ``("relu", "relu")``).
    kappa_min, kappa_max : float, float or None
        See :class:`KappaHead`.
    """

    def __init__(self, in_features, dim=3, *, direction_widths=(200, 50),
                 direction_activations=("relu", "tanh"), kappa_widths=(200, 50),
                 kappa_activations=("relu", "relu"), kappa_min: float = 1e-3,
                 kappa_max: float | None = None):
        super().__init__()
        self.direction = BranchHead(in_features, direction_widths, direction_activations,
                                    lambda n: DirectionHead(n, dim))
        self.kappa = BranchHead(in_features, kappa_widths, kappa_activations,
                                lambda n: KappaHead(n, kappa_min, kappa_max))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.direction(features), self.kappa(features)
