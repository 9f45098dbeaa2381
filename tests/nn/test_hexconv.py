"""Hexagonal convolution: stencil, masked gradients, 60-degree equivariance, axial rotation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astroreco.nn.hexconv import (HexConv2d, hex_distance, hex_kernel_mask,
                                  hex_neighbour_offsets, rotate_axial)

SQ3 = np.sqrt(3.0)


def _physical(q, r):
    """Centre of axial (q, r): x = q + r/2, y = -r*sqrt(3)/2 (y up, rows going down)."""
    return np.asarray(q + r / 2.0, dtype=float), np.asarray(-r * SQ3 / 2.0, dtype=float)


def _direct(x, weight, bias, stride):
    """Reference: explicit sum over the 7 stencil offsets, numpy, zero padding.

    x (N, C, H, W), weight (O, C, 3, 3) -> (N, O, ceil(H/stride), ceil(W/stride)).
    """
    n, c, h, w = x.shape
    pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, weight.shape[0], h, w))
    for dr, dq in hex_neighbour_offsets():
        shifted = pad[:, :, 1 + dr:1 + dr + h, 1 + dq:1 + dq + w]  # x[r + dr, q + dq]
        out += np.einsum("nchw,oc->nohw", shifted, weight[:, :, dr + 1, dq + 1])
    out += bias[None, :, None, None]
    return out[:, :, ::stride, ::stride]


def test_stencil_offsets_and_mask():
    offsets = hex_neighbour_offsets()
    assert offsets[0] == (0, 0) and len(set(offsets)) == 7
    mask = hex_kernel_mask()
    assert mask.sum() == 7 and mask[0, 0] == 0 and mask[2, 2] == 0
    for i in range(1, 7):  # neighbours listed counter-clockwise: i -> i + 1 is +60 degrees
        dr, dq = offsets[i]
        dr2, dq2 = offsets[i % 6 + 1]
        assert rotate_axial(dq, dr, 1) == (dq2, dr2)
        assert hex_distance(dq, dr) == 1


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shape", [(2, 3, 9, 11), (1, 1, 8, 8)])
def test_matches_direct_neighbour_sum(stride, shape):
    torch.manual_seed(0)
    conv = HexConv2d(shape[1], 4, stride=stride).double()
    with torch.no_grad():  # make the masked taps non-zero: they must still be ignored
        conv.weight.add_(torch.randn_like(conv.weight))
    x = torch.randn(*shape, dtype=torch.float64)
    got = conv(x).detach().numpy()
    want = _direct(x.numpy(), conv.weight.detach().numpy(), conv.bias.detach().numpy(), stride)
    assert got.shape == want.shape == (shape[0], 4, -(-shape[2] // stride),
                                       -(-shape[3] // stride))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_masked_taps_get_zero_gradient():
    torch.manual_seed(1)
    conv = HexConv2d(3, 5, stride=2)
    assert torch.all(conv.weight[:, :, 0, 0] == 0) and torch.all(conv.weight[:, :, 2, 2] == 0)
    conv(torch.randn(2, 3, 10, 10)).square().sum().backward()
    grad = conv.weight.grad
    assert torch.all(grad[:, :, 0, 0] == 0) and torch.all(grad[:, :, 2, 2] == 0)
    assert torch.count_nonzero(grad * conv.mask) == grad.numel() // 9 * 7
    assert "mask" not in conv.state_dict()


# --- 60-degree equivariance -------------------------------------------------------------

RADIUS = 5  # input support: hex disk of this radius around the canvas centre


def _canvas_centre(stride):
    """Centre index c (even for stride 2, so the centre survives subsampling)."""
    c = RADIUS + 2
    return c + (c % 2) * (stride == 2)


def _rasterise(values, size):
    """Dict {(q, r): value array (C,)} -> image (C, size, size), [.., r, q]."""
    n_ch = len(next(iter(values.values())))
    img = np.zeros((n_ch, size, size))
    for (q, r), v in values.items():
        img[:, r, q] = v
    return img


def _rotate_image(img, centre, k):
    """Rotate a (C, S, S) hexagonal image by k*60 degrees about pixel (centre, centre).

    Only the hex disk of radius `centre` maps into the canvas; everything else must be 0.
    """
    size = img.shape[-1]
    q, r = np.meshgrid(np.arange(size), np.arange(size))  # q varies along columns
    disk = hex_distance(q - centre, r - centre) <= centre
    assert np.all(img[:, ~disk] == 0), "content outside the rotatable disk"
    q2, r2 = rotate_axial(q[disk] - centre, r[disk] - centre, k)
    out = np.zeros_like(img)
    out[:, r2 + centre, q2 + centre] = img[:, r[disk], q[disk]]
    return out


def _isotropic_conv(c_in, c_out, stride, seed):
    """HexConv2d whose 6 neighbour taps are equal (per channel pair): rotation invariant."""
    g = torch.Generator().manual_seed(seed)
    conv = HexConv2d(c_in, c_out, stride=stride, bias=False).double()  # bias: not 0 outside
    w_centre = torch.randn(c_out, c_in, generator=g, dtype=torch.float64)
    w_ring = torch.randn(c_out, c_in, generator=g, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(w_ring[:, :, None, None] * conv.mask)
        conv.weight[:, :, 1, 1] = w_centre
    return conv


def _hex_input(c_in, centre, seed):
    """Random values on the hex disk of radius RADIUS, as a dict of axial coordinates."""
    rng = np.random.default_rng(seed)
    return {(centre + dq, centre + dr): rng.normal(size=c_in)
            for dq in range(-RADIUS, RADIUS + 1) for dr in range(-RADIUS, RADIUS + 1)
            if hex_distance(dq, dr) <= RADIUS}


def _rotated_pair(conv, c_in, stride, k, seed=3):
    """(conv(rotate(x)), rotate(conv(x))) as numpy arrays (C_out, S', S')."""
    centre = _canvas_centre(stride)
    size = 2 * centre + 1
    values = _hex_input(c_in, centre, seed)
    rotated = {}
    for (q, r), v in values.items():  # rotate the coordinates, then re-rasterise
        q2, r2 = rotate_axial(q - centre, r - centre, k)
        rotated[(q2 + centre, r2 + centre)] = v
    x = torch.from_numpy(_rasterise(values, size))[None]
    x_rot = torch.from_numpy(_rasterise(rotated, size))[None]
    with torch.no_grad():
        y = conv(x)[0].numpy()
        y_of_rot = conv(x_rot)[0].numpy()
    return y_of_rot, _rotate_image(y, centre // stride, k)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_isotropic_kernel_is_rotation_equivariant(stride, k):
    conv = _isotropic_conv(2, 3, stride, seed=k)
    y_of_rot, rot_of_y = _rotated_pair(conv, 2, stride, k)
    assert np.abs(rot_of_y).max() > 0.1
    np.testing.assert_allclose(y_of_rot, rot_of_y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
def test_generic_kernel_is_not_rotation_equivariant(stride):
    torch.manual_seed(4)
    conv = HexConv2d(2, 3, stride=stride, bias=False).double()
    y_of_rot, rot_of_y = _rotated_pair(conv, 2, stride, 1)
    assert not np.allclose(y_of_rot, rot_of_y, atol=1e-3)


# --- axial rotation ---------------------------------------------------------------------

def _random_axial(n=200, seed=5):
    rng = np.random.default_rng(seed)
    return rng.integers(-20, 21, n), rng.integers(-20, 21, n)


def test_rotate_six_steps_is_identity_and_preserves_distance():
    q, r = _random_axial()
    for clockwise in (False, True):
        q6, r6 = rotate_axial(q, r, 6, clockwise=clockwise)
        np.testing.assert_array_equal(q6, q)
        np.testing.assert_array_equal(r6, r)
        for k in range(-7, 8):
            qk, rk = rotate_axial(q, r, k, clockwise=clockwise)
            np.testing.assert_array_equal(hex_distance(qk, rk), hex_distance(q, r))
    assert rotate_axial(3, -1, 2) == rotate_axial(3, -1, 4, clockwise=True)
    assert rotate_axial(3, -1, -1) == rotate_axial(3, -1, 1, clockwise=True)
    assert isinstance(rotate_axial(3, -1, 1)[0], int)


@pytest.mark.parametrize("k", range(0, 7))
def test_rotation_matches_rotation_matrix_in_physical_frame(k):
    q, r = _random_axial()
    x, y = _physical(q, r)
    for clockwise, sign in ((False, 1.0), (True, -1.0)):
        a = sign * k * np.pi / 3  # counter-clockwise angle in the (x, y-up) frame
        xr, yr = _physical(*rotate_axial(q, r, k, clockwise=clockwise))
        np.testing.assert_allclose(xr, np.cos(a) * x - np.sin(a) * y, atol=1e-12)
        np.testing.assert_allclose(yr, np.sin(a) * x + np.cos(a) * y, atol=1e-12)


def test_cube_step_minus_r_minus_s_minus_q_is_clockwise():
    """The textbook step (q, r, s) -> (-r, -s, -q) is clockwise in this frame."""
    q, r = _random_axial()
    s = -q - r
    np.testing.assert_array_equal(np.stack(rotate_axial(q, r, 1, clockwise=True)),
                                  np.stack((-r, -s)))
    x, y = _physical(-r, -s)  # a -60 degree (clockwise) turn of (x, y)
    x0, y0 = _physical(q, r)
    a = -np.pi / 3
    np.testing.assert_allclose(x, np.cos(a) * x0 - np.sin(a) * y0, atol=1e-12)
    np.testing.assert_allclose(y, np.sin(a) * x0 + np.cos(a) * y0, atol=1e-12)
