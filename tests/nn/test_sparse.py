"""Sparse 3D convolutions: the torch backend against dense PyTorch, spconv against torch."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from astroreco.errors import InputError
from astroreco.nn import sparse
from astroreco.nn.sparse import (PAPER_LAYERS, SparseBackbone3d, SparseConv3d, SparseMaxPool3d,
                                 SparseReLU, SparseSequential, SparseToDense, SparseVoxels,
                                 SubMConv3d, available_backends, from_padded, set_backend)

SHAPE = (9, 10, 11)  # not a cube: catches mixed-up axes
SMALL_LAYERS = (("subm", 4, 3), ("conv", 5, 3, 2), ("pool", 2), ("conv", 3, 2, 1, 1))


def _padded(n_voxels, shape=SHAPE, channels=2, dtype=torch.float64, seed=0):
    """Padded (coords, values, n_voxels); padding rows hold junk that must be ignored."""
    g = torch.Generator().manual_seed(seed)
    n, v = len(n_voxels), max(n_voxels) + 2
    d, h, w = shape
    lin = torch.stack([torch.randperm(d * h * w, generator=g)[:v] for _ in range(n)])
    coords = torch.stack([lin // (h * w), (lin // w) % h, lin % w], dim=-1)  # (N, V, 3)
    values = torch.randn(n, v, channels, generator=g, dtype=dtype)
    pad = torch.arange(v) >= torch.tensor(n_voxels)[:, None]
    coords[pad], values[pad] = -7, math.nan
    return coords, values, torch.tensor(n_voxels)


def _batch(n_voxels=(30, 5, 17), shape=SHAPE, channels=2, dtype=torch.float64, seed=0):
    return from_padded(*_padded(n_voxels, shape, channels, dtype, seed), shape)


def _track_batch(n_events=2, n_steps=260, shape=(120, 120, 120), dtype=torch.float64, seed=0):
    """Random-walk tracks (~200 distinct voxels each) through the grid centre."""
    g = torch.Generator().manual_seed(seed)
    coords, n = [], []
    for _ in range(n_events):
        steps = torch.randint(-1, 2, (n_steps, 3), generator=g)
        pos = (torch.tensor(shape) // 2 + steps.cumsum(0)).clamp(0, min(shape) - 1)
        uniq = torch.unique(pos, dim=0)
        coords.append(uniq)
        n.append(len(uniq))
    v = max(n)
    c = torch.zeros(n_events, v, 3, dtype=torch.long)
    for i, u in enumerate(coords):
        c[i, :len(u)] = u
    values = torch.rand(n_events, v, generator=g, dtype=dtype) * 10
    return from_padded(c, values, torch.tensor(n), shape)


def _at(dense, coords):
    """Rows ``(M, C)`` of a dense ``(N, C, D, H, W)`` tensor at ``coords`` ``(M, 4)``."""
    c = coords.long()
    return dense[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]


def _sites(coords):
    return {tuple(r) for r in coords.tolist()}


def _mask(x):
    """``(N, 1, D, H, W)`` indicator of the active sites."""
    return SparseToDense()(x.replace(torch.ones_like(x.features[:, :1])))


def _grads(out, upstream, inputs):
    return torch.autograd.grad((out * upstream).sum(), inputs)


@pytest.fixture
def two_threads():
    """Two torch threads during the test (spconv's CPU kernels go wrong with more than one)."""
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


# --- torch backend against dense PyTorch -------------------------------------------------

# (layer factory, dense forward (layer, dense input with zeros, dense input with -inf))
CONV_CASES = {
    "subm_k3": (lambda: SubMConv3d(2, 3, 3, backend="torch"),
                lambda m, d, _: F.conv3d(d, m.weight, m.bias, padding=1)),
    "subm_k5_nobias": (lambda: SubMConv3d(2, 3, 5, bias=False, backend="torch"),
                       lambda m, d, _: F.conv3d(d, m.weight, None, padding=2)),
    "conv_k3_s2_p0": (lambda: SparseConv3d(2, 3, 3, 2, 0, backend="torch"),
                      lambda m, d, _: F.conv3d(d, m.weight, m.bias, stride=2)),
    "conv_k3_s2_p1": (lambda: SparseConv3d(2, 3, 3, 2, 1, backend="torch"),
                      lambda m, d, _: F.conv3d(d, m.weight, m.bias, stride=2, padding=1)),
    "conv_k2_s2_p0": (lambda: SparseConv3d(2, 3, 2, 2, 0, backend="torch"),
                      lambda m, d, _: F.conv3d(d, m.weight, m.bias, stride=2)),
    "conv_k4_s1_p1": (lambda: SparseConv3d(2, 3, 4, 1, 1, backend="torch"),
                      lambda m, d, _: F.conv3d(d, m.weight, m.bias, padding=1)),
    "conv_k6_s2_p0": (lambda: SparseConv3d(2, 3, 6, 2, 0, backend="torch"),
                      lambda m, d, _: F.conv3d(d, m.weight, m.bias, stride=2)),
    "pool_k2": (lambda: SparseMaxPool3d(2, backend="torch"),
                lambda m, _, d: F.max_pool3d(d, 2).clamp_min(0)),
    "pool_k3_s2": (lambda: SparseMaxPool3d(3, 2, backend="torch"),
                   lambda m, _, d: F.max_pool3d(d, 3, 2).clamp_min(0)),
}


def _expected_sites(layer, x):
    """Active output sites: every site whose receptive field holds an active input."""
    if isinstance(layer, SubMConv3d):
        return _sites(x.coords)
    k, s, p = layer.kernel_size, layer.stride, getattr(layer, "padding", 0)
    m = _mask(x)
    hit = F.conv3d(m, torch.ones(1, 1, k, k, k, dtype=m.dtype), stride=s, padding=p) > 0
    return _sites(hit.nonzero()[:, [0, 2, 3, 4]])


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_torch_backend_matches_dense(case, dtype, tol):
    make, dense_forward = CONV_CASES[case]
    torch.manual_seed(1)
    layer = make().to(dtype)
    x = _batch(dtype=dtype)
    x.features.requires_grad_(True)
    y = layer(x)
    assert _sites(y.coords) == _expected_sites(layer, x)
    assert y.coords.dtype == torch.int32 and y.batch_size == 3

    d0 = SparseToDense()(x)  # zeros at inactive sites
    d_inf = torch.where(_mask(x) > 0, d0, torch.tensor(-math.inf, dtype=dtype))
    dense_out = dense_forward(layer, d0, d_inf)
    assert y.spatial_shape == tuple(dense_out.shape[2:])
    ref = _at(dense_out, y.coords)
    torch.testing.assert_close(y.features, ref, atol=tol, rtol=tol)

    upstream = _at(torch.randn(dense_out.shape, dtype=dtype), y.coords)
    inputs = [x.features, *layer.parameters()]
    for got, want in zip(_grads(y.features, upstream, inputs), _grads(ref, upstream, inputs)):
        torch.testing.assert_close(got, want, atol=tol, rtol=tol)


def test_conv_weights_are_conv3d_shaped_and_initialised():
    torch.manual_seed(0)
    conv, ref = SparseConv3d(4, 6, 3, 2, backend="torch"), nn.Conv3d(4, 6, 3, 2)
    assert conv.weight.shape == ref.weight.shape and conv.bias.shape == ref.bias.shape
    bound = 1 / math.sqrt(4 * 27)
    assert conv.weight.abs().max() <= bound and conv.bias.abs().max() <= bound
    assert conv.weight.std() > 0.4 * bound
    assert SubMConv3d(2, 3, 5, bias=False, backend="torch").bias is None


def test_relu_to_dense_and_sequential():
    x = _batch()
    seq = SparseSequential(SubMConv3d(2, 4, 3, backend="torch"), SparseReLU()).double()
    y = seq(x)
    assert isinstance(y, SparseVoxels) and (y.features >= 0).all()
    assert torch.equal(y.coords, x.coords)
    dense = SparseToDense()(x)
    assert dense.shape == (3, 2, *SHAPE)
    torch.testing.assert_close(_at(dense, x.coords), x.features)
    assert dense.abs().sum() == pytest.approx(x.features.abs().sum().item())


# --- spconv backend against torch backend ------------------------------------------------

LAYER_FACTORIES = {
    "subm_k3": lambda b: SubMConv3d(2, 3, 3, backend=b),
    "subm_k5": lambda b: SubMConv3d(2, 4, 5, bias=False, backend=b),
    "subm_k1": lambda b: SubMConv3d(2, 3, 1, backend=b),
    "conv_k3_s2_p0": lambda b: SparseConv3d(2, 3, 3, 2, 0, backend=b),
    "conv_k3_s2_p1": lambda b: SparseConv3d(2, 3, 3, 2, 1, backend=b),
    "conv_k2_s2_p0": lambda b: SparseConv3d(2, 3, 2, 2, 0, backend=b),
    "conv_k4_s1_p1": lambda b: SparseConv3d(2, 3, 4, 1, 1, backend=b),
    "conv_k3_s1_p0": lambda b: SparseConv3d(2, 3, 3, 1, 0, backend=b),
    "pool_k2": lambda b: SparseMaxPool3d(2, backend=b),
    "pool_k3_s2": lambda b: SparseMaxPool3d(3, 2, backend=b),
}


def _by_site(y, upstream_dense):
    """Output features sorted by site, and the per-site upstream gradient."""
    keys = sparse._linear_keys(y.coords[:, 0].long(), y.coords[:, 1:].long(), y.spatial_shape)
    order = keys.argsort()
    return y.coords[order], y.features[order], _at(upstream_dense, y.coords)


@pytest.mark.parametrize("case", list(LAYER_FACTORIES))
def test_spconv_matches_torch(case, two_threads):
    pytest.importorskip("spconv")
    x = _batch(n_voxels=(60, 5, 41))
    x.features.requires_grad_(True)
    results = {}
    for backend in ("torch", "spconv"):
        torch.manual_seed(3)
        layer = LAYER_FACTORIES[case](backend).double()
        y = layer(x)
        if not results:
            upstream = torch.randn(x.batch_size, y.features.shape[1], *y.spatial_shape,
                                   dtype=torch.float64)
        coords, features, up = _by_site(y, upstream)
        grads = _grads(y.features, up, [x.features, *layer.parameters()])
        results[backend] = (y.spatial_shape, coords, features, grads)
        assert torch.get_num_threads() == 2  # restored after the spconv calls
    (shape_t, coords_t, feat_t, grads_t), (shape_s, coords_s, feat_s, grads_s) = \
        results["torch"], results["spconv"]
    assert shape_t == shape_s and torch.equal(coords_t, coords_s)
    torch.testing.assert_close(feat_s, feat_t, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads_s, grads_t):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_spconv_paper_backbone_matches_torch(two_threads):
    pytest.importorskip("spconv")
    x = _track_batch()
    assert 150 < x.features.shape[0] / 2 < 260
    x.features.requires_grad_(True)
    torch.manual_seed(0)
    net = SparseBackbone3d(PAPER_LAYERS, backend="torch").double()
    upstream = torch.randn(2, net.n_features, dtype=torch.float64)
    inputs = [x.features, *net.parameters()]
    out_t = net(x)
    grads_t = _grads(out_t, upstream, inputs)
    set_backend(net, "spconv")
    out_s = net(x)
    grads_s = _grads(out_s, upstream, inputs)
    assert torch.get_num_threads() == 2
    assert out_t.shape == (2, 2160) and (out_t != 0).any()
    torch.testing.assert_close(out_s, out_t, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads_s, grads_t):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# --- backends, state dicts ---------------------------------------------------------------

def test_spconv_stream_patch_is_idempotent():
    pytest.importorskip("spconv")
    from astroreco.nn import sparse_kernels

    ops = sparse_kernels._spconv_ops()
    patched = ops.get_current_stream
    assert sparse_kernels._spconv_ops().get_current_stream is patched
    assert patched.__wrapped__ is not patched  # the original, to undo the patch
    if not torch.cuda.is_available():
        assert patched() == 0


def test_available_backends_and_unavailable_spconv(monkeypatch):
    assert available_backends()[0] == "torch"
    monkeypatch.setattr(sparse, "_has_spconv", lambda: False)
    assert available_backends() == ("torch",)
    assert SubMConv3d(1, 2, 3).backend == "torch"  # auto falls back
    with pytest.raises(InputError, match="pip install spconv") as err:
        SubMConv3d(1, 2, 3, backend="spconv")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="pip install spconv"):
        set_backend(SparseBackbone3d(SMALL_LAYERS, spatial_shape=(16, 16, 16)), "spconv")
    with pytest.raises(InputError, match="'cuda'"):
        SparseMaxPool3d(2, backend="cuda")


def test_auto_backend_prefers_spconv():
    expected = "spconv" if "spconv" in available_backends() else "torch"
    assert SparseConv3d(1, 2, 3).backend == expected


def test_set_backend_switches_every_sparse_layer():
    net = SparseBackbone3d(SMALL_LAYERS, spatial_shape=(16, 16, 16), backend="torch")
    for backend in available_backends():
        assert set_backend(net, backend) is net
        layers = [m for m in net.modules() if isinstance(m, (SubMConv3d, SparseConv3d,
                                                             SparseMaxPool3d))]
        assert len(layers) == 4 and all(m.backend == backend for m in layers)


def test_state_dict_round_trip_between_backends():
    spconv = "spconv" in available_backends()
    x = _batch(n_voxels=(40, 12), shape=(16, 16, 16), channels=1, seed=4)
    torch.manual_seed(0)
    a = SparseBackbone3d(SMALL_LAYERS, spatial_shape=(16, 16, 16), backend="torch").double()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(1)
    b = SparseBackbone3d(SMALL_LAYERS, spatial_shape=(16, 16, 16),
                         backend="spconv" if spconv else "torch").double()
    assert {k: v.shape for k, v in a.state_dict().items()} == \
        {k: v.shape for k, v in b.state_dict().items()}
    b.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(b(x), a(x), atol=1e-10, rtol=1e-10)
    assert a.net[0].weight.shape == (4, 1, 3, 3, 3)


# --- backbone ----------------------------------------------------------------------------

def test_paper_layers_n_features():
    net = SparseBackbone3d(PAPER_LAYERS, backend="torch")
    assert net.n_features == 2160 and net.out_shape == (10, 6, 6, 6)
    assert SparseBackbone3d([list(layer) for layer in PAPER_LAYERS], backend="torch").layers \
        == PAPER_LAYERS


@pytest.mark.parametrize("layers, shape, match", [
    (PAPER_LAYERS, (30, 30, 30), "shrinks"),
    ((("subm", 4, 4),), (8, 8, 8), "odd"),
    ((("conv", 4, 3),), (8, 8, 8), "bad layer"),
    ((("dense", 4),), (8, 8, 8), "bad layer"),
    ((("pool", 0),), (8, 8, 8), "expected an integer"),
    (SMALL_LAYERS, (8, 8), "spatial_shape"),
])
def test_backbone_rejects_bad_specs(layers, shape, match):
    with pytest.raises(InputError, match=match) as err:
        SparseBackbone3d(layers, spatial_shape=shape, backend="torch")
    assert "\n" not in str(err.value)


def test_backbone_rejects_wrong_input():
    net = SparseBackbone3d(SMALL_LAYERS, spatial_shape=(16, 16, 16), backend="torch")
    with pytest.raises(InputError, match="channels"):
        net(_batch(n_voxels=(3,), shape=(16, 16, 16), channels=2))
    with pytest.raises(InputError, match="16, 16, 15"):
        net(_batch(n_voxels=(3,), shape=(16, 16, 15), channels=1))
    with pytest.raises(InputError, match="SparseVoxels"):
        net(torch.zeros(1, 1, 16, 16, 16))


@pytest.mark.parametrize("backend", ["torch", "spconv"])
def test_backbone_gradients_are_finite(backend, two_threads):
    if backend not in available_backends():
        pytest.skip("spconv is not installed")
    x = _track_batch(dtype=torch.float32, seed=5)
    torch.manual_seed(0)
    net = SparseBackbone3d(PAPER_LAYERS, backend=backend)
    out = net(x)
    assert out.shape == (2, 2160) and torch.isfinite(out).all()
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert net.net[0].weight.grad.abs().sum() > 0


# --- empty events ------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["torch", "spconv"])
def test_empty_events_give_zero_features(backend):
    if backend not in available_backends():
        pytest.skip("spconv is not installed")
    torch.manual_seed(0)
    net = SparseBackbone3d(SMALL_LAYERS, spatial_shape=(16, 16, 16), backend=backend).double()
    x = _batch(n_voxels=(0, 25, 0), shape=(16, 16, 16), channels=1)
    assert x.batch_size == 3 and (x.coords[:, 0] == 1).all()
    out = net(x)
    assert out.shape == (3, net.n_features)
    assert (out[[0, 2]] == 0).all() and (out[1] != 0).any()

    empty = _batch(n_voxels=(0, 0), shape=(16, 16, 16), channels=1)
    assert empty.features.shape == (0, 1)
    out = net(empty)
    assert out.shape == (2, net.n_features) and (out == 0).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


# --- from_padded -------------------------------------------------------------------------

def test_from_padded_ignores_padding_and_keeps_order():
    coords, values, n = _padded((4, 0, 2), channels=1)
    x = from_padded(coords, values[..., 0], n, SHAPE)  # (N, V) values -> C = 1
    assert x.features.shape == (6, 1) and x.batch_size == 3 and x.spatial_shape == SHAPE
    assert x.coords[:, 0].tolist() == [0, 0, 0, 0, 2, 2]
    assert torch.equal(x.coords[:4, 1:], coords[0, :4].int())
    assert torch.equal(x.features[4:, 0], values[2, :2, 0])
    assert torch.isfinite(x.features).all()


def _bad(field, fn):
    def make():
        coords, values, n = _padded((3, 2))
        args = {"coords": coords, "values": values, "n_voxels": n, "spatial_shape": SHAPE}
        args[field] = fn(args[field])
        return args
    return make


def _set(index, value):
    def fn(t):
        t = t.clone()
        t[index] = value
        return t
    return fn


@pytest.mark.parametrize("make, match", [
    (_bad("coords", _set((1, 1, 2), 11)), "outside the grid"),
    (_bad("coords", _set((0, 0, 0), -1)), "outside the grid"),
    (_bad("n_voxels", _set(1, 6)), r"n_voxels must be in \[0, 5\]"),
    (_bad("n_voxels", _set(0, -1)), r"n_voxels must be in \[0, 5\]"),
    (_bad("values", _set((1, 0, 1), math.inf)), "non-finite"),
    (_bad("values", _set((0, 2, 0), math.nan)), "non-finite"),
    (_bad("coords", lambda c: torch.cat([c[:, :1], c[:, :1], c[:, 2:]], dim=1)), "twice"),
    (_bad("coords", lambda c: c[..., :2]), r"coords must be \(N, V, 3\)"),
    (_bad("coords", lambda c: c.double()), "integers"),
    (_bad("values", lambda v: v[:1]), "values must be"),
    (_bad("values", lambda v: v.long()), "floating point"),
    (_bad("n_voxels", lambda n: n[:1]), "n_voxels must be"),
    (_bad("spatial_shape", lambda s: (9, 10)), "spatial_shape"),
    (_bad("spatial_shape", lambda s: (9, 0, 11)), "spatial_shape"),
])
def test_from_padded_errors_are_one_line(make, match):
    with pytest.raises(InputError, match=match) as err:
        from_padded(**make())
    assert "\n" not in str(err.value)


def test_sparse_voxels_checks_shapes():
    with pytest.raises(InputError, match="coords"):
        SparseVoxels(torch.zeros(3, 2), torch.zeros(3, 3, dtype=torch.int32), SHAPE, 1)
