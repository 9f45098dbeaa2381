"""Models composed of a backbone and named task heads (detector-agnostic).

A model maps a batch (dict of tensors) to a dict of outputs, which is what the training
engine and the task losses expect.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiTaskNet(nn.Module):
    """Backbone features shared by several heads.

    Parameters
    ----------
    backbone : nn.Module
        ``(N, C, H, W) -> (N, F)``; must have ``n_features``.
    heads : dict of str -> nn.Module
        Each maps features to that task's output (a tensor or a tuple of tensors).  Heads
        run in the given order.
    input_key : str
        Batch entry holding the image.
    feed : dict of str -> list of str, optional
        ``{"angle": ["impact"]}`` appends the (detached) first output of the ``impact``
        head to the features the ``angle`` head sees; its ``in_features`` must include them.
    scalar_keys : list of str, optional
        Batch entries ``(N,)`` or ``(N, k)`` appended to the backbone features before every
        head (e.g. a measured total energy); the heads' ``in_features`` must include them.
    """

    def __init__(self, backbone: nn.Module, heads: dict, *, input_key: str = "image",
                 feed: dict | None = None, scalar_keys=()):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads)
        self.input_key = input_key
        self.feed = dict(feed or {})
        self.scalar_keys = tuple(scalar_keys)

    def forward(self, batch: dict) -> dict:
        features = self.backbone(batch[self.input_key])  # (N, F)
        if self.scalar_keys:
            extra = [batch[k].reshape(len(features), -1).to(features.dtype)
                     for k in self.scalar_keys]
            features = torch.cat([features, *extra], dim=1)  # (N, F + k)
        outputs = {}
        for name, head in self.heads.items():
            x = features
            if name in self.feed:
                extra = [_first(outputs[src]).detach().flatten(1) for src in self.feed[name]]
                x = torch.cat([features] + extra, dim=1)
            outputs[name] = head(x)
        return outputs


class EnsembleDirectionNet(nn.Module):
    """An M-head ensemble predicting unit direction vectors: output ``(N, M, D)``.

    ``backbone`` maps ``(N, C, H, W) -> (N, M, D)`` (e.g. a VGG multi-head network).
    """

    def __init__(self, backbone: nn.Module, *, output: str = "direction",
                 input_key: str = "image"):
        super().__init__()
        self.backbone = backbone
        self.output = output
        self.input_key = input_key

    def forward(self, batch: dict) -> dict:
        v = self.backbone(batch[self.input_key])  # (N, M, D)
        return {self.output: F.normalize(v, dim=-1, eps=1e-12)}


class RegressionNet(nn.Module):
    """A backbone whose output is the prediction itself (e.g. a ResNet with ``fc``)."""

    def __init__(self, backbone: nn.Module, *, output: str, input_key: str = "image"):
        super().__init__()
        self.backbone = backbone
        self.output = output
        self.input_key = input_key

    def forward(self, batch: dict) -> dict:
        return {self.output: self.backbone(batch[self.input_key])}


class SparseMultiTaskNet(MultiTaskNet):
    """:class:`MultiTaskNet` on sparse voxels given as padded batch arrays.

    The batch holds ``coords`` ``(N, V, 3)`` integer voxel indices, ``values`` ``(N, V)``
    (or ``(N, V, C)``) and ``n_voxels`` ``(N,)``: event ``n`` uses its first
    ``n_voxels[n]`` rows (see :func:`astroreco.nn.sparse.from_padded`).  The backbone maps
    the resulting :class:`~astroreco.nn.sparse.SparseVoxels` to ``(N, F)``; an optional
    ``trunk`` (e.g. :func:`astroreco.nn.heads.mlp`) runs on those features before the heads.

    Parameters
    ----------
    backbone : nn.Module
        Sparse ``SparseVoxels -> (N, F)``, e.g. :class:`astroreco.nn.sparse.SparseBackbone3d`.
    heads : dict of str -> nn.Module
    spatial_shape : tuple of int
        The voxel grid ``(D, H, W)``.
    trunk : nn.Module, optional
        Shared layers between backbone and heads.
    keys : (str, str, str)
        Batch entries of the coordinates, values and counts.
    """

    def __init__(self, backbone: nn.Module, heads: dict, *, spatial_shape, trunk=None,
                 keys=("coords", "values", "n_voxels")):
        super().__init__(backbone, heads, input_key=keys[0])
        self.trunk = trunk if trunk is not None else nn.Identity()
        self.spatial_shape = tuple(int(s) for s in spatial_shape)
        self.keys = tuple(keys)

    def forward(self, batch: dict) -> dict:
        from astroreco.nn.sparse import from_padded

        c, v, n = (batch[k] for k in self.keys)
        features = self.trunk(self.backbone(from_padded(c, v, n, self.spatial_shape)))
        return {name: head(features) for name, head in self.heads.items()}


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x
