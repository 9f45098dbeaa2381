"""Losses on directions: cosine, von Mises on the circle, von Mises-Fisher on the sphere."""

from __future__ import annotations

import math

import torch

from astroreco.errors import InputError
from astroreco.losses.base import _LOG_2PI, _LOG_4PI, Loss, unit_vector


class CosineLoss(Loss):
    """One minus the cosine of the angle between prediction and target.

    .. math:: l = 1 - \\hat p \\cdot \\hat t

    ``prediction`` ``(N, D)`` is any vector (normalised here with :func:`unit_vector`, so
    a zero vector gives ``l = 1`` and a finite gradient); ``target`` ``(N, D)`` is the true
    direction, normalised too.  ``l`` lies in ``[0, 2]``.
    """

    def per_event(self, prediction, target):
        return 1.0 - (unit_vector(prediction) * unit_vector(target)).sum(dim=-1)


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
