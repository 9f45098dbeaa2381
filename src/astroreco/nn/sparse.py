"""Sparse 3D convolutions on voxel clouds, with two interchangeable backends.

A batch of voxel clouds is a :class:`SparseVoxels`: the features ``(M, C)`` of the ``M``
active sites of all events and their coordinates ``(M, 4)`` = ``(batch_index, x, y, z)`` on
a grid ``(D, H, W)``.  The layers follow spconv's semantics (and those of the sparse
networks built with it):

* :class:`SubMConv3d` -- submanifold convolution, odd kernel ``k``: the output sites are the
  input sites and ``out[s] = bias + sum_o W[o] @ in[s + o - k // 2]`` over the kernel
  offsets ``o`` whose input site is active.
* :class:`SparseConv3d` -- regular convolution: output grid ``floor((S + 2p - k) / s) + 1``,
  an output site is active when at least one active input lies in its receptive field, and
  its value is that of a dense ``nn.Conv3d`` with zeros at the inactive sites.
* :class:`SparseMaxPool3d` -- output sites as for a convolution; the value is the maximum
  over the active inputs of the window, floored at zero (spconv starts from a zero output:
  ``max(0, max_active)``; the two coincide after a ReLU).
* :class:`SparseReLU`, :class:`SparseToDense`, :class:`SparseSequential`, and
  :class:`SparseBackbone3d`, which stacks them from a short layer specification.

Every convolution owns ``weight`` ``(out, in, k, k, k)`` and ``bias`` ``(out,)`` exactly like
``nn.Conv3d`` (same initialisation), so a state dict is the same whichever backend runs:

``"torch"``
    Pure PyTorch: the input -> output site pairs of every kernel offset are found by hashing
    linearised coordinates (sorted keys and ``torch.searchsorted``, or ``torch.unique``),
    then gather, one matrix product per kernel offset, and ``index_add``.  Runs on any
    device, differentiable by autograd; the reference and the fallback.
``"spconv"``
    spconv's rulebook and gather-GEMM-scatter kernels (``pip install spconv`` for the CPU
    build, ``spconv-cuXXX`` matching the CUDA version otherwise), on our parameters.  Two
    fixes for a CPU-only torch: the backward pass asks for ``torch.cuda.current_stream()``
    (its stream getter is wrapped to return 0, the stream its CPU kernels ignore, when torch
    has no CUDA), and with more than one OpenMP thread its CPU convolution kernels return
    wrong sums (measured with spconv 2.3.8: errors of order 1 in outputs and gradients of
    submanifold and regular convolutions, strided or not, with 2 threads).  Its OpenMP
    calls bind to torch's runtime, so every spconv call on CPU runs with
    ``torch.set_num_threads(1)`` and restores the count afterwards.
``"auto"``
    spconv when it can be imported, else torch.

The kernels of both backends live in :mod:`astroreco.nn.sparse_kernels`.

Events without voxels (``n_voxels = 0``) are allowed: they have no active site in any
layer, and :class:`SparseToDense` gives zeros for them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from astroreco.errors import InputError
from astroreco.nn.sparse_kernels import (_conv_rulebook, _decode_keys, _gather_gemm_scatter,
                                         _linear_keys, _output_shape, _spconv_rulebook,
                                         _spconv_weight, _SpconvConvFunction,
                                         _SpconvMaxPoolFunction, _subm_rulebook)

__all__ = ["PAPER_LAYERS", "SparseBackbone3d", "SparseConv3d", "SparseMaxPool3d",
           "SparseReLU", "SparseSequential", "SparseToDense", "SparseVoxels", "SubMConv3d",
           "available_backends", "from_padded", "set_backend"]

#: the seed paper's backbone: 120^3 -> 6^3 x 10 = 2160 features
PAPER_LAYERS = (("subm", 32, 7), ("subm", 40, 5), ("conv", 50, 6, 2), ("pool", 2),
                ("conv", 30, 3, 2), ("conv", 10, 3, 1), ("pool", 2))

BACKENDS = ("torch", "spconv")


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------

@dataclass
class SparseVoxels:
    """Active sites of a batch of voxel grids.

    Attributes
    ----------
    features : torch.Tensor
        ``(M, C)`` float, one row per active site.
    coords : torch.Tensor
        ``(M, 4)`` int32 ``(batch_index, x, y, z)``, each in ``[0, batch_size)`` and
        ``[0, spatial_shape)``, no site twice.
    spatial_shape : tuple of int
        ``(D, H, W)``: ``x`` runs along ``D``, ``z`` along ``W``.
    batch_size : int
        ``N``, including events without active sites.
    """

    features: torch.Tensor
    coords: torch.Tensor
    spatial_shape: tuple
    batch_size: int

    def __post_init__(self) -> None:
        self.spatial_shape = tuple(int(s) for s in self.spatial_shape)
        self.batch_size = int(self.batch_size)
        f, c = self.features, self.coords
        if (f.dim() != 2 or c.dim() != 2 or c.shape[1] != 4 or c.shape[0] != f.shape[0]
                or len(self.spatial_shape) != 3):
            raise InputError(f"SparseVoxels: expected features (M, C), coords (M, 4) and a "
                             f"3D spatial_shape, got {tuple(f.shape)}, {tuple(c.shape)} and "
                             f"{self.spatial_shape}")

    def replace(self, features: torch.Tensor) -> SparseVoxels:
        """The same sites with other features ``(M, C')``."""
        return SparseVoxels(features, self.coords, self.spatial_shape, self.batch_size)


def from_padded(coords, values, n_voxels, spatial_shape) -> SparseVoxels:
    """Sparse voxels from padded per-event arrays.

    Parameters
    ----------
    coords : torch.Tensor
        ``(N, V, 3)`` integer voxel indices ``(x, y, z)``.
    values : torch.Tensor
        ``(N, V)`` or ``(N, V, C)`` float voxel values.
    n_voxels : torch.Tensor
        ``(N,)`` integer: event ``n`` uses its first ``n_voxels[n]`` rows (the rest is
        padding and ignored; 0 is an event without voxels).
    spatial_shape : (int, int, int)
        The grid ``(D, H, W)``.

    Returns
    -------
    SparseVoxels
        Rows in event order, then in the order given; ``features`` ``(M, C)`` (``C = 1``
        for 2D ``values``), ``batch_size = N``.

    Raises
    ------
    InputError
        Wrong shapes or dtypes, ``n_voxels`` outside ``[0, V]``, a voxel outside the grid, a
        non-finite value, or a coordinate twice in one event.
    """
    coords, values, n_voxels = (torch.as_tensor(a) for a in (coords, values, n_voxels))
    try:
        shape = tuple(int(s) for s in spatial_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"from_padded: spatial_shape must be 3 positive integers, got "
                         f"{spatial_shape!r}")
    if coords.dim() != 3 or coords.shape[2] != 3:
        raise InputError(f"from_padded: coords must be (N, V, 3), got {tuple(coords.shape)}")
    if coords.dtype.is_floating_point or coords.dtype.is_complex or coords.dtype == torch.bool:
        raise InputError(f"from_padded: coords must be integers, got {coords.dtype}")
    n, v = coords.shape[:2]
    if values.dim() not in (2, 3) or tuple(values.shape[:2]) != (n, v):
        raise InputError(f"from_padded: values must be (N, V) or (N, V, C) = ({n}, {v}[, C]), "
                         f"got {tuple(values.shape)}")
    if not values.dtype.is_floating_point:
        raise InputError(f"from_padded: values must be floating point, got {values.dtype}")
    if n_voxels.shape != (n,) or n_voxels.dtype.is_floating_point:
        raise InputError(f"from_padded: n_voxels must be ({n},) integers, got "
                         f"{tuple(n_voxels.shape)} {n_voxels.dtype}")
    device = values.device
    coords, n_voxels = coords.to(device).long(), n_voxels.to(device).long()
    bad = (n_voxels < 0) | (n_voxels > v)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise InputError(f"from_padded: n_voxels must be in [0, {v}], got {int(n_voxels[i])} "
                         f"for event {i}")
    used = torch.arange(v, device=device) < n_voxels[:, None]  # (N, V)
    outside = used & ((coords < 0) | (coords >= torch.tensor(shape, device=device))).any(-1)
    if outside.any():
        i, j = (int(t) for t in outside.nonzero()[0])
        raise InputError(f"from_padded: voxel {j} of event {i} at {tuple(coords[i, j].tolist())} "
                         f"is outside the grid {shape}")
    values = values if values.dim() == 3 else values[..., None]  # (N, V, C)
    nonfinite = used & ~torch.isfinite(values).all(-1)
    if nonfinite.any():
        i, j = (int(t) for t in nonfinite.nonzero()[0])
        raise InputError(f"from_padded: voxel {j} of event {i} has a non-finite value")
    batch = torch.arange(n, device=device)[:, None].expand(n, v)[used]  # (M,)
    xyz = coords[used]  # (M, 3)
    keys = _linear_keys(batch, xyz, shape)
    sorted_keys = keys.sort().values
    dup = sorted_keys[1:] == sorted_keys[:-1]
    if dup.any():
        site = _decode_keys(sorted_keys[1:][dup][:1], shape)[0].tolist()
        raise InputError(f"from_padded: event {site[0]} has voxel {tuple(site[1:])} twice")
    coords4 = torch.cat([batch[:, None], xyz], dim=1).int()  # (M, 4)
    return SparseVoxels(values[used], coords4, shape, n)


# --------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _has_spconv() -> bool:
    try:
        import spconv.pytorch  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install (missing native library) counts as absent
        return False
    return True


def available_backends() -> tuple[str, ...]:
    """``("torch",)``, or ``("torch", "spconv")`` where spconv can be imported."""
    return ("torch", "spconv") if _has_spconv() else ("torch",)


def _resolve_backend(backend: str) -> str:
    if backend == "auto":
        return "spconv" if _has_spconv() else "torch"
    if backend not in BACKENDS:
        raise InputError(f"sparse backend {backend!r}: expected auto, torch or spconv")
    if backend == "spconv" and not _has_spconv():
        raise InputError("sparse backend 'spconv' is not available: install it with "
                         "`pip install spconv` (CPU) or spconv-cuXXX matching your CUDA "
                         "version, or use backend='torch'")
    return backend


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------

def _check_int(value, name: str, minimum: int) -> int:
    try:
        ok = not isinstance(value, bool) and int(value) == value and value >= minimum
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


class _SparseLayer(nn.Module):
    """A layer that runs on either backend (attribute ``backend``: "torch" or "spconv")."""

    def __init__(self, backend: str) -> None:
        super().__init__()
        self.backend = _resolve_backend(backend)

    def _check(self, x) -> None:
        if not isinstance(x, SparseVoxels):
            raise InputError(f"{type(self).__name__}: expected SparseVoxels, got "
                             f"{type(x).__name__}")


class _SparseConvBase(_SparseLayer):
    """``weight`` ``(out, in, k, k, k)`` and ``bias`` ``(out,)``, initialised as nn.Conv3d's."""

    def __init__(self, in_channels, out_channels, kernel_size, bias: bool, backend: str):
        super().__init__(backend)
        self.in_channels = _check_int(in_channels, "in_channels", 1)
        self.out_channels = _check_int(out_channels, "out_channels", 1)
        self.kernel_size = _check_int(kernel_size, "kernel_size", 1)
        k = self.kernel_size
        self.weight = nn.Parameter(torch.empty(self.out_channels, self.in_channels, k, k, k))
        self.bias = nn.Parameter(torch.empty(self.out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Conv3d's: Kaiming-uniform weight (a = sqrt 5), bias U(+-1/sqrt(fan_in))."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size ** 3)
            nn.init.uniform_(self.bias, -bound, bound)

    def _check(self, x) -> None:
        super()._check(x)
        if x.features.shape[1] != self.in_channels:
            raise InputError(f"{type(self).__name__}: expected {self.in_channels} input "
                             f"channels, got {x.features.shape[1]}")

    def _finish(self, features, x: SparseVoxels, coords, shape) -> SparseVoxels:
        if self.bias is not None:
            features = features + self.bias
        return SparseVoxels(features, coords, shape, x.batch_size)

    def _empty(self, x: SparseVoxels, shape) -> SparseVoxels:
        """No active input site: no output site (the product keeps the weight in the graph)."""
        features = x.features @ self.weight.flatten(2)[:, :, 0].T  # (0, C_out)
        return self._finish(features, x, x.coords, shape)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"bias={self.bias is not None}, backend={self.backend!r}")


class SubMConv3d(_SparseConvBase):
    """Submanifold sparse convolution: output sites = input sites.

    ``out[s] = bias + sum_o W[o] @ in[s + o - k // 2]`` over the kernel offsets ``o`` whose
    input site is active.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int
        Odd ``k`` (a ``k^3`` cube centred on the site).
    bias : bool
    backend : {"auto", "torch", "spconv"}

    Shapes
    ------
    ``SparseVoxels (M, in_channels) -> SparseVoxels (M, out_channels)``, same coordinates.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 bias: bool = True, backend: str = "auto") -> None:
        if isinstance(kernel_size, int) and kernel_size % 2 == 0:
            raise InputError(f"SubMConv3d: kernel_size must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, bias, backend)

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        self._check(x)
        shape, k = x.spatial_shape, self.kernel_size
        if x.features.shape[0] == 0:
            return self._empty(x, shape)
        if self.backend == "spconv":
            _, pairs, counts = _spconv_rulebook(x, k, 1, k // 2, subm=True)
            out = _SpconvConvFunction.apply(x.features, _spconv_weight(self.weight), pairs,
                                            counts, x.features.shape[0], True)
        else:
            in_site, out_site, counts = _subm_rulebook(x.coords, shape, k)
            out = _gather_gemm_scatter(x.features, self.weight, in_site, out_site, counts,
                                       x.features.shape[0])
        return self._finish(out, x, x.coords, shape)


class SparseConv3d(_SparseConvBase):
    """Regular sparse convolution: a dense ``nn.Conv3d`` restricted to the active outputs.

    An output site is active when an active input lies in its receptive field; its value is
    the dense convolution of the input with zeros at the inactive sites.

    Parameters
    ----------
    in_channels, out_channels, kernel_size : int
    stride : int
    padding : int
        Zero padding on every side.
    bias : bool
    backend : {"auto", "torch", "spconv"}

    Shapes
    ------
    ``SparseVoxels (M, in_channels)`` on ``(D, H, W)`` -> ``SparseVoxels (M', out_channels)``
    on ``floor((S + 2 padding - kernel_size) / stride) + 1`` per axis.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, padding: int = 0, bias: bool = True,
                 backend: str = "auto") -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias, backend)
        self.stride = _check_int(stride, "stride", 1)
        self.padding = _check_int(padding, "padding", 0)

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        self._check(x)
        k, s, p = self.kernel_size, self.stride, self.padding
        shape = _output_shape(x.spatial_shape, k, s, p)
        if min(shape) < 1:
            raise InputError(f"SparseConv3d: grid {x.spatial_shape} is too small for "
                             f"kernel {k}, stride {s}, padding {p}")
        if x.features.shape[0] == 0:
            return self._empty(x, shape)
        if self.backend == "spconv":
            coords, pairs, counts = _spconv_rulebook(x, k, s, p, subm=False)
            out = _SpconvConvFunction.apply(x.features, _spconv_weight(self.weight), pairs,
                                            counts, coords.shape[0], False)
        else:
            in_site, out_site, counts, coords = _conv_rulebook(x.coords, x.spatial_shape,
                                                               shape, k, s, p)
            out = _gather_gemm_scatter(x.features, self.weight, in_site, out_site, counts,
                                       coords.shape[0])
        return self._finish(out, x, coords, shape)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", stride={self.stride}, padding={self.padding}"


class SparseMaxPool3d(_SparseLayer):
    """Sparse max-pooling: ``max(0, max over the active inputs of the window)``.

    Output sites as for a :class:`SparseConv3d` without padding.  The zero floor is spconv's
    (its output starts at zero); after a ReLU it changes nothing.  The gradient goes to the
    maximal input (spconv: to every input equal to the maximum; the torch backend splits it
    between ties, which only exact ties tell apart).

    Parameters
    ----------
    kernel_size : int
    stride : int, optional
        Default ``kernel_size``.
    backend : {"auto", "torch", "spconv"}

    Shapes
    ------
    ``SparseVoxels (M, C)`` -> ``SparseVoxels (M', C)`` on
    ``floor((S - kernel_size) / stride) + 1`` per axis.
    """

    def __init__(self, kernel_size: int, stride: int | None = None,
                 backend: str = "auto") -> None:
        super().__init__(backend)
        self.kernel_size = _check_int(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _check_int(stride, "stride", 1)

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        self._check(x)
        k, s = self.kernel_size, self.stride
        shape = _output_shape(x.spatial_shape, k, s, 0)
        if min(shape) < 1:
            raise InputError(f"SparseMaxPool3d: grid {x.spatial_shape} is too small for "
                             f"kernel {k}, stride {s}")
        f = x.features
        if f.shape[0] == 0:
            return SparseVoxels(f, x.coords, shape, x.batch_size)
        if self.backend == "spconv":
            coords, pairs, counts = _spconv_rulebook(x, k, s, 0, subm=False)
            out = _SpconvMaxPoolFunction.apply(f, pairs, counts, coords.shape[0])
        else:
            in_site, out_site, _, coords = _conv_rulebook(x.coords, x.spatial_shape, shape,
                                                          k, s, 0)
            index = out_site[:, None].expand(-1, f.shape[1])  # (P, C)
            out = f.new_zeros(coords.shape[0], f.shape[1]).scatter_reduce(
                0, index, f[in_site], "amax", include_self=True)
        return SparseVoxels(out, coords, shape, x.batch_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, backend={self.backend!r}"


class SparseReLU(nn.Module):
    """``relu(features)`` on the same sites."""

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        return x.replace(F.relu(x.features))


class SparseToDense(nn.Module):
    """``SparseVoxels (M, C)`` -> dense ``(N, C, D, H, W)``, zeros at the inactive sites."""

    def forward(self, x: SparseVoxels) -> torch.Tensor:
        n, (d, h, w), c = x.batch_size, x.spatial_shape, x.features.shape[1]
        idx = x.coords.long()
        dense = x.features.new_zeros(n, d, h, w, c).index_put(
            (idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]), x.features)  # (N, D, H, W, C)
        return dense.permute(0, 4, 1, 2, 3).contiguous()  # (N, C, D, H, W)


class SparseSequential(nn.Sequential):
    """``nn.Sequential`` of sparse layers: passes a :class:`SparseVoxels` through."""


def set_backend(module: nn.Module, backend: str) -> nn.Module:
    """Switch every sparse layer inside ``module`` to ``backend`` (in place; returns it).

    ``backend`` is "auto", "torch" or "spconv"; the parameters are untouched.
    """
    backend = _resolve_backend(backend)
    for m in module.modules():
        if isinstance(m, _SparseLayer):
            m.backend = backend
    return module


# --------------------------------------------------------------------------------------------
# backbone
# --------------------------------------------------------------------------------------------

def _parse_layer(layer) -> tuple:
    """A layer spec as a tuple, checked: ("subm", out, k) | ("conv", out, k, stride[, padding])
    | ("pool", k)."""
    layer = tuple(layer)
    kind = layer[0] if layer else None
    sizes = {"subm": (3,), "conv": (4, 5), "pool": (2,)}
    if kind not in sizes or len(layer) not in sizes[kind]:
        raise InputError(f"SparseBackbone3d: bad layer {layer!r}: expected ('subm', out, k), "
                         "('conv', out, k, stride[, padding]) or ('pool', k)")
    return (kind, *(_check_int(v, f"layer {layer!r}", 0 if i == 3 else 1)
                    for i, v in enumerate(layer[1:])))


class SparseBackbone3d(nn.Module):
    """Sparse 3D convolution stack, then dense and flattened: ``SparseVoxels -> (N, F)``.

    Parameters
    ----------
    layers : sequence of tuples
        ``("subm", out, k)`` (:class:`SubMConv3d`), ``("conv", out, k, stride)`` (optionally
        a 5th entry, the padding; :class:`SparseConv3d`), each followed by a ReLU, and
        ``("pool", k)`` (:class:`SparseMaxPool3d`, stride ``k``).  :data:`PAPER_LAYERS` is
        the seed paper's.
    in_channels : int
    spatial_shape : (int, int, int)
        Input grid ``(D, H, W)``.
    backend : {"auto", "torch", "spconv"}

    Attributes
    ----------
    n_features : int
        ``F = C_last * D' * H' * W'`` from the shape arithmetic (2160 for
        :data:`PAPER_LAYERS` on 120^3: ``6^3 x 10``).
    out_shape : (int, int, int, int)
        ``(C_last, D', H', W')`` before the flatten.

    Shapes
    ------
    ``SparseVoxels (M, in_channels)`` on ``spatial_shape`` -> ``(N, n_features)``; the flatten
    keeps the spatial layout (channel-major, as ``torch.flatten`` of ``(N, C, D, H, W)``).
    """

    def __init__(self, layers, in_channels: int = 1, spatial_shape=(120, 120, 120),
                 backend: str = "auto") -> None:
        super().__init__()
        self.layers = tuple(_parse_layer(layer) for layer in layers)
        self.in_channels = _check_int(in_channels, "in_channels", 1)
        self.spatial_shape = tuple(int(s) for s in spatial_shape)
        if len(self.spatial_shape) != 3 or min(self.spatial_shape) < 1:
            raise InputError(f"SparseBackbone3d: spatial_shape must be 3 positive integers, "
                             f"got {tuple(spatial_shape)}")
        modules, ch, shape = [], self.in_channels, self.spatial_shape
        for layer in self.layers:
            kind = layer[0]
            if kind == "subm":
                modules += [SubMConv3d(ch, layer[1], layer[2], backend=backend), SparseReLU()]
                ch = layer[1]
            elif kind == "conv":
                _, out, k, stride, *pad = layer
                pad = pad[0] if pad else 0
                modules += [SparseConv3d(ch, out, k, stride, pad, backend=backend),
                            SparseReLU()]
                ch, shape = out, _output_shape(shape, k, stride, pad)
            else:
                modules.append(SparseMaxPool3d(layer[1], backend=backend))
                shape = _output_shape(shape, layer[1], layer[1], 0)
            if min(shape) < 1:
                raise InputError(f"SparseBackbone3d: the grid {self.spatial_shape} shrinks to "
                                 f"{shape} at layer {layer!r}")
        self.net = SparseSequential(*modules)
        self.to_dense = SparseToDense()
        self.out_shape = (ch, *shape)
        self.n_features = math.prod(self.out_shape)

    def forward(self, x: SparseVoxels) -> torch.Tensor:
        """``SparseVoxels (M, in_channels)`` -> ``(N, n_features)``."""
        if not isinstance(x, SparseVoxels):
            raise InputError(f"SparseBackbone3d: expected SparseVoxels, got {type(x).__name__}")
        if x.spatial_shape != self.spatial_shape or x.features.shape[1] != self.in_channels:
            raise InputError(f"SparseBackbone3d: expected {self.in_channels} channels on "
                             f"{self.spatial_shape}, got {x.features.shape[1]} on "
                             f"{x.spatial_shape}")
        return self.to_dense(self.net(x)).flatten(1)  # (N, C * D' * H' * W')
