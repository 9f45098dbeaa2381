"""Classifier networks on cut-outs, detector-agnostic.

* :class:`TimeEnergyConvNet` -- a 3D CNN on per-object cubes ``(N, T, E, S, S)``: the
  ``E`` maps (e.g. energy bins) are channels, the convolutions run over (time, row,
  column), and the features are the mean and the standard deviation over time of the
  spatially averaged maps, so a variable object (a flaring source) differs from a steady
  one by its features' spread.
* :class:`CutoutClassifierNet` -- logits from one or more backbones on named batch
  entries plus scalar side inputs (the seed 002 source classifiers).
"""

from __future__ import annotations

import torch
from torch import nn

from astroreco.errors import InputError

__all__ = ["CutoutClassifierNet", "TimeEnergyConvNet"]


class TimeEnergyConvNet(nn.Module):
    """3D CNN on per-source cubes ``(N, T, E, S, S)``: energy bins as channels,
    convolutions over (time, row, column) (see :mod:`astroreco.detectors.sky.classify` for the sky's use).

    Shapes: ``(N, T, E, S, S)`` -> transposed to ``(N, E, T, S, S)`` -> three 3x3x3
    conv + BatchNorm3d + ReLU blocks, the last two with stride (1, 2, 2) ->
    ``(N, w2, T, S/4, S/4)`` -> mean over space ``(N, w2, T)`` -> mean and std over time
    ``(N, 2 w2)`` = ``n_features``.
    """

    def __init__(self, n_energy: int, widths=(8, 16, 32)):
        super().__init__()
        w0, w1, w2 = (int(w) for w in widths)

        def block(a, b, stride):
            return nn.Sequential(nn.Conv3d(a, b, 3, stride=stride, padding=1, bias=False),
                                 nn.BatchNorm3d(b), nn.ReLU(inplace=True))

        self.n_energy = int(n_energy)
        self.features = nn.Sequential(block(self.n_energy, w0, 1),     # (N, w0, T, S, S)
                                      block(w0, w1, (1, 2, 2)),        # (N, w1, T, S/2, S/2)
                                      block(w1, w2, (1, 2, 2)))        # (N, w2, T, S/4, S/4)
        self.n_features = 2 * w2

    def forward(self, cube: torch.Tensor) -> torch.Tensor:
        if cube.dim() != 5 or cube.shape[2] != self.n_energy:
            raise InputError(f"TimeEnergyConvNet: expected input (N, T, {self.n_energy}, S, "
                             f"S), got {tuple(cube.shape)}")
        x = self.features(cube.transpose(1, 2))            # (N, w2, T, S/4, S/4)
        x = x.mean(dim=(3, 4))                             # (N, w2, T)
        std = x.std(dim=2, unbiased=False) if x.shape[2] > 1 else torch.zeros_like(x[..., 0])
        return torch.cat([x.mean(dim=2), std], dim=1)      # (N, 2 w2)


class CutoutClassifierNet(nn.Module):
    """Logits from one or more backbones on named batch entries, plus scalar side inputs.

    ``branches`` maps a batch key to a backbone with ``n_features``; the features of all
    branches and the batch's ``scalar_keys`` (``(N,)`` or ``(N, k)``, ``n_scalars`` values
    in all) are concatenated, ``(N, sum F + n_scalars)``, and a ReLU MLP of widths
    ``hidden`` ends in ``n_classes`` logits: ``{"logits": (N, n_classes)}``.
    """

    def __init__(self, branches: dict, n_scalars: int, scalar_keys, hidden, n_classes: int):
        super().__init__()
        from astroreco.nn.heads import mlp

        self.branches = nn.ModuleDict(branches)
        self.scalar_keys = tuple(scalar_keys)
        n_in = sum(b.n_features for b in self.branches.values()) + int(n_scalars)
        self.mlp = mlp(n_in, tuple(hidden), ("relu",) * len(hidden))
        self.logits = nn.Linear(self.mlp.n_features, int(n_classes))

    def forward(self, batch: dict) -> dict:
        parts = [b(batch[k]) for k, b in self.branches.items()]           # (N, F_k)
        n = len(parts[0])
        parts += [batch[k].reshape(n, -1).to(parts[0].dtype) for k in self.scalar_keys]
        return {"logits": self.logits(self.mlp(torch.cat(parts, dim=1)))}
