"""Classification losses: class-weighted softmax cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from astroreco.errors import InputError
from astroreco.losses.base import Loss


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

    def mean_weights(self, target, weight):
        """The mean divides by the summed class weights (times the event weights), as
        :func:`torch.nn.functional.cross_entropy` does."""
        if self.class_weights is None:
            return weight
        w = self.class_weights[target.long()]
        return w if weight is None else w * weight
