"""The kernels behind :mod:`astroreco.nn.sparse`'s two backends.

``torch``: the site pairs of every kernel offset found by hashing linearised coordinates,
then gather, one matrix product per offset, and ``index_add`` (:func:`_subm_rulebook`,
:func:`_conv_rulebook`, :func:`_gather_gemm_scatter`).  ``spconv``: its rulebook and
gather-GEMM-scatter kernels on our parameters, with the two fixes a CPU-only torch needs
(the stream getter, one OpenMP thread); see :mod:`astroreco.nn.sparse` for why.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from astroreco.nn.sparse import SparseVoxels


def _linear_keys(batch: torch.Tensor, xyz: torch.Tensor, shape) -> torch.Tensor:
    """int64 ``((b D + x) H + y) W + z`` of ``batch`` ``(...)`` and ``xyz`` ``(..., 3)``."""
    d, h, w = shape
    return ((batch * d + xyz[..., 0]) * h + xyz[..., 1]) * w + xyz[..., 2]


def _decode_keys(keys: torch.Tensor, shape) -> torch.Tensor:
    """Inverse of :func:`_linear_keys`: ``(M,)`` keys -> ``(M, 4)`` ``(b, x, y, z)`` int64."""
    d, h, w = shape
    z, rest = keys % w, keys // w
    y, rest = rest % h, rest // h
    x, b = rest % d, rest // d
    return torch.stack([b, x, y, z], dim=1)


def _output_shape(shape, k: int, stride: int, padding: int) -> tuple:
    return tuple((s + 2 * padding - k) // stride + 1 for s in shape)


def _kernel_offsets(k: int, device) -> torch.Tensor:
    """``(k^3, 3)`` int64 offsets in ``nn.Conv3d``'s weight order (row-major ``kd, kh, kw``)."""
    r = torch.arange(k, device=device)
    return torch.cartesian_prod(r, r, r).reshape(-1, 3)


def _subm_rulebook(coords: torch.Tensor, shape, k: int):
    """Pairs of a submanifold convolution.

    Returns ``(in_site (P,), out_site (P,), counts (K,))``, the pairs grouped by kernel
    offset: ``out[out_site] += W[offset] @ in[in_site]``.
    """
    c = coords.long()
    keys = _linear_keys(c[:, 0], c[:, 1:], shape)  # (M,)
    sorted_keys, order = keys.sort()
    offsets = _kernel_offsets(k, c.device) - k // 2  # (K, 3)
    inside = torch.ones(len(offsets), len(c), dtype=torch.bool, device=c.device)  # (K, M)
    for axis in range(3):
        nb = c[:, 1 + axis] + offsets[:, axis, None]  # (K, M) neighbour coordinate
        inside &= (nb >= 0) & (nb < shape[axis])
    # the key is linear in (x, y, z): a neighbour inside the grid is the key plus a shift
    nb_keys = keys + _linear_keys(torch.zeros_like(offsets[:, 0]), offsets, shape)[:, None]
    pos = torch.searchsorted(sorted_keys, nb_keys).clamp_(max=len(sorted_keys) - 1)
    found = inside & (sorted_keys[pos] == nb_keys)  # (K, M)
    offset_id, out_site = found.nonzero(as_tuple=True)  # grouped by offset
    return order[pos[offset_id, out_site]], out_site, found.sum(1)


def _conv_rulebook(coords: torch.Tensor, shape, out_shape, k: int, stride: int, padding: int):
    """Pairs and output sites of a regular convolution (or pooling window).

    Returns ``(in_site (P,), out_site (P,), counts (K,), out_coords (M', 4) int32)``, the
    pairs grouped by kernel offset, output sites sorted by linearised key.
    """
    c = coords.long()
    num = c[None, :, 1:] + padding - _kernel_offsets(k, c.device)[:, None]  # (K, M, 3) = s*out
    limit = stride * torch.tensor(out_shape, device=c.device)
    valid = ((num >= 0) & (num % stride == 0) & (num < limit)).all(-1)  # (K, M)
    offset_id, in_site = valid.nonzero(as_tuple=True)
    keys = _linear_keys(c[in_site, 0], num[offset_id, in_site] // stride, out_shape)  # (P,)
    out_keys, out_site = torch.unique(keys, sorted=True, return_inverse=True)
    return in_site, out_site, valid.sum(1), _decode_keys(out_keys, out_shape).int()


def _gather_gemm_scatter(features, weight, in_site, out_site, counts, n_out):
    """``out[out_site] += W[offset] @ features[in_site]``, one product per kernel offset."""
    w = weight.flatten(2)  # (C_out, C_in, K)
    x = features[in_site]  # (P, C_in)
    parts = [xo @ w[:, :, o].T for o, xo in enumerate(x.split(counts.tolist())) if len(xo)]
    contrib = torch.cat(parts) if parts else x @ w[:, :, 0].T  # (P, C_out)
    return features.new_zeros(n_out, w.shape[0]).index_add_(0, out_site, contrib)


def _spconv_ops():
    """spconv's ops module, its stream getter made safe for a torch without CUDA (once)."""
    from spconv.pytorch import ops

    get = ops.get_current_stream
    if not getattr(get, "astroreco_cpu_safe", False):
        @functools.wraps(get)
        def get_current_stream():
            # 0 is the default stream; spconv's CPU kernels never use it
            return get() if torch.cuda.is_available() else 0

        get_current_stream.astroreco_cpu_safe = True  # __wrapped__ holds the original
        ops.get_current_stream = get_current_stream
    return ops


@contextmanager
def _one_thread_on_cpu(device: torch.device):
    """Run spconv's CPU kernels with one torch thread (with more their sums are wrong).

    spconv's OpenMP calls bind to torch's libgomp (loaded first, globally), so
    ``torch.set_num_threads`` sets the size of their thread team too.
    """
    n = torch.get_num_threads()
    if device.type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _spconv_weight(weight: torch.Tensor) -> torch.Tensor:
    """Our ``(out, in, k, k, k)`` weight in the layout spconv's kernels expect."""
    from spconv.constants import ALL_WEIGHT_IS_KRSC, FILTER_HWIO

    if ALL_WEIGHT_IS_KRSC:
        return weight.permute(0, 2, 3, 4, 1).contiguous()  # (out, k, k, k, in)
    if FILTER_HWIO:
        return weight.permute(2, 3, 4, 1, 0).contiguous()  # (k, k, k, in, out)
    return weight.permute(2, 3, 4, 0, 1).contiguous()  # (k, k, k, out, in)


def _spconv_rulebook(x: SparseVoxels, k: int, stride: int, padding: int, subm: bool):
    """spconv's ``(out_coords (M', 4) int32, pairs (2, K, M), pair_counts (K,))``."""
    from spconv.core import ConvAlgo

    ops = _spconv_ops()
    with _one_thread_on_cpu(x.features.device):
        return ops.get_indice_pairs(x.coords.int().contiguous(), x.batch_size,
                                    list(x.spatial_shape), ConvAlgo.Native, [k] * 3,
                                    [stride] * 3, [padding] * 3, [1] * 3, [0] * 3, subm, False)


class _SpconvConvFunction(torch.autograd.Function):
    """spconv's gather-GEMM-scatter convolution, forward and backward on one CPU thread."""

    @staticmethod
    def forward(ctx, features, filters, pairs, pair_counts, n_out: int, subm: bool):
        ops = _spconv_ops()
        features = features.contiguous()
        with _one_thread_on_cpu(features.device):
            out = ops.indice_conv(features, filters, pairs, pair_counts, n_out, False, subm)
        ctx.save_for_backward(features, filters, pairs, pair_counts)
        ctx.subm = subm
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        features, filters, pairs, pair_counts = ctx.saved_tensors
        ops = _spconv_ops()
        with _one_thread_on_cpu(grad_out.device):
            d_features, d_filters = ops.indice_conv_backward(
                features, filters, grad_out.contiguous(), pairs, pair_counts, False, ctx.subm)
        return d_features, d_filters, None, None, None, None


class _SpconvMaxPoolFunction(torch.autograd.Function):
    """spconv's sparse max-pooling, forward and backward on one CPU thread."""

    @staticmethod
    def forward(ctx, features, pairs, pair_counts, n_out: int):
        ops = _spconv_ops()
        features = features.contiguous()
        with _one_thread_on_cpu(features.device):
            out = ops.indice_maxpool(features, pairs, pair_counts, n_out)
        ctx.save_for_backward(features, out, pairs, pair_counts)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        features, out, pairs, pair_counts = ctx.saved_tensors
        ops = _spconv_ops()
        with _one_thread_on_cpu(grad_out.device):
            d_features = ops.indice_maxpool_backward(features, out, grad_out.contiguous(),
                                                     pairs, pair_counts)
        return d_features, None, None, None
