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

from astroreco.losses.base import Loss, unit_vector
from astroreco.losses.classification import CrossEntropyLoss
from astroreco.losses.directional import (CosineLoss, VonMisesFisherLoss, VonMisesLoss,
                                          paper_log_c3)
from astroreco.losses.maps import BCEDiceLoss, FocalBCELoss, SoftDiceLoss
from astroreco.losses.regression import (GaussianNLLLoss, MSELoss, MultipleChoiceLoss,
                                         ResolutionWeightedMSELoss)

__all__ = ["BCEDiceLoss", "CosineLoss", "CrossEntropyLoss", "FocalBCELoss", "GaussianNLLLoss",
           "Loss", "MSELoss", "MultipleChoiceLoss", "ResolutionWeightedMSELoss",
           "SoftDiceLoss", "VonMisesFisherLoss", "VonMisesLoss", "paper_log_c3",
           "unit_vector"]
