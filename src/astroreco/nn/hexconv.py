"""Convolution on a hexagonal lattice stored in axial coordinates.

Storage convention
------------------
A hexagonal image is an ordinary tensor ``(N, C, H, W)``: element ``[..., r, q]`` is the
hexagon at *axial* coordinates ``(q, r)`` (row ``r``, axial column ``q``).  The six
neighbours of ``(q, r)`` are::

    (q + 1, r), (q + 1, r - 1), (q, r - 1), (q - 1, r), (q - 1, r + 1), (q, r + 1)

In a 3x3 kernel indexed ``[dr + 1, dq + 1]`` the two corners ``(dr, dq) = (-1, -1)`` and
``(+1, +1)`` are therefore *not* neighbours; masking them to zero leaves the 7-pixel
hexagonal stencil::

    dr = -1:  [0, 1, 1]
    dr =  0:  [1, 1, 1]
    dr = +1:  [1, 1, 0]

Physical frame and rotation sense
---------------------------------
With unit hexagon spacing, the centre of ``(q, r)`` is at ``x = q + r / 2``,
``y = -r * sqrt(3) / 2``: ``y`` points *up*, rows go *down* the screen as ``r`` grows.
In this frame :func:`rotate_axial` with ``clockwise=False`` (the default) turns by
``+60`` degrees per step, counter-clockwise.  In cube coordinates ``(q, r, s = -q - r)``
one counter-clockwise step is ``(q, r, s) -> (-s, -q, -r)``; the often quoted step
``(q, r, s) -> (-r, -s, -q)`` is its inverse, i.e. *clockwise* in this frame (both are
checked by the tests against the rotation matrix).

Strided convolution
-------------------
The sub-lattice ``{(2q, 2r)}`` of a hexagonal lattice is again hexagonal, with the same
axial neighbour structure (its neighbours are the ``(2q + 2 dq, 2r + 2 dr)`` for the same
six ``(dq, dr)``).  A stride-2 :class:`HexConv2d` (padding 1) computes its output at input
pixel ``(2i, 2j)`` and stores it at ``[i, j]``, so its output is a hexagonal image in the
same convention and stride-2 hexagonal convolutions can be stacked.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HexConv2d", "hex_distance", "hex_kernel_mask", "hex_neighbour_offsets",
           "rotate_axial"]

# (dr, dq) of the stencil: centre first, then the six neighbours counter-clockwise
# (physical frame of the module docstring) starting east at (dq, dr) = (+1, 0).
_OFFSETS = ((0, 0), (0, 1), (-1, 1), (-1, 0), (0, -1), (1, -1), (1, 0))


def hex_neighbour_offsets() -> tuple[tuple[int, int], ...]:
    """The 7 ``(dr, dq)`` offsets of the hexagonal stencil.

    Returns
    -------
    tuple of 7 (int, int)
        The centre ``(0, 0)`` first, then the six neighbours counter-clockwise starting
        east, ``(0, 1)``; the neighbour ``i + 1`` is neighbour ``i`` rotated by
        ``+60`` degrees (``rotate_axial(dq, dr, 1)``).
    """
    return _OFFSETS


def hex_kernel_mask(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 3x3 hexagonal stencil mask, indexed ``[dr + 1, dq + 1]``.

    Returns
    -------
    torch.Tensor, shape (3, 3)
        1 on the 7 stencil taps, 0 on ``(dr, dq) = (-1, -1)`` and ``(+1, +1)``.
    """
    mask = torch.zeros(3, 3, dtype=dtype)
    for dr, dq in _OFFSETS:
        mask[dr + 1, dq + 1] = 1
    return mask


def rotate_axial(q, r, k: int, clockwise: bool = False):
    """Rotate axial coordinates about the origin by ``k * 60`` degrees.

    Parameters
    ----------
    q, r : int or integer ndarray (any matching shapes)
        Axial coordinates.
    k : int
        Number of 60-degree steps (any integer; taken modulo 6).
    clockwise : bool
        False (default): counter-clockwise in the frame ``x = q + r / 2``,
        ``y = -r * sqrt(3) / 2`` (y up, rows going down the screen), one step being
        ``(q, r, s) -> (-s, -q, -r)`` in cube coordinates.  True: the opposite sense,
        ``(q, r, s) -> (-r, -s, -q)``.

    Returns
    -------
    (q', r') : same type as the input
        The rotated coordinates; hex distances to the origin are preserved.
    """
    k = int(k) % 6
    if clockwise:
        k = (6 - k) % 6
    s = -q - r
    for _ in range(k):
        q, r, s = -s, -q, -r
    return q, r


def hex_distance(q, r):
    """Hex (graph) distance of axial ``(q, r)`` to the origin: ``(|q| + |r| + |q + r|) / 2``.

    Parameters
    ----------
    q, r : int or integer ndarray

    Returns
    -------
    int or integer ndarray
    """
    return (np.abs(q) + np.abs(r) + np.abs(q + r)) // 2


class HexConv2d(nn.Conv2d):
    """3x3 convolution restricted to the 7-pixel hexagonal stencil.

    A ``Conv2d(in_channels, out_channels, 3, stride, padding=1)`` whose weight is multiplied
    by the fixed mask :func:`hex_kernel_mask` (a non-persistent buffer ``mask``) in every
    forward pass: the masked taps contribute exactly nothing and their entries of
    ``weight`` receive a zero gradient.  They are also zeroed at initialisation so that
    ``weight`` shows the effective kernel.  See the module docstring for the storage
    convention and for why ``stride=2`` keeps the output hexagonal.

    Parameters
    ----------
    in_channels, out_channels : int
    stride : int
        1 or 2.
    bias : bool

    Shapes
    ------
    input ``(N, in_channels, H, W)`` -> output ``(N, out_channels, ceil(H / stride),
    ceil(W / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 bias: bool = True) -> None:
        if stride not in (1, 2):
            raise ValueError(f"HexConv2d stride must be 1 or 2, got {stride}")
        super().__init__(in_channels, out_channels, kernel_size=3, stride=stride,
                         padding=1, bias=bias)
        self.register_buffer("mask", hex_kernel_mask(self.weight.dtype), persistent=False)
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Masked convolution: ``(N, C_in, H, W) -> (N, C_out, H', W')``."""
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)
