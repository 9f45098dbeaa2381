"""U-Nets: shapes, the size check, independent branches, gradients, a tiny overfit."""

import numpy as np
import pytest
import torch

from astroreco.errors import InputError
from astroreco.losses import BCEDiceLoss
from astroreco.nn import unet
from astroreco.nn.unet import MultiInputUNet, UNet2d


def n_params(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("up", ["transpose", "bilinear"])
@pytest.mark.parametrize("norm", ["batch", "group", "instance", "none"])
def test_unet_keeps_the_input_size(norm, up):
    net = UNet2d(3, 2, width=4, depth=2, norm=norm, up=up)
    out = net(torch.randn(2, 3, 16, 24))
    assert out.shape == (2, 2, 16, 24) and torch.isfinite(out).all()


def test_public_api():
    assert set(unet.__all__) == {"MultiInputUNet", "UNet2d", "double_conv"}


def test_unet_depth_zero_is_a_double_conv():
    assert UNet2d(1, width=4, depth=0)(torch.randn(1, 1, 5, 7)).shape == (1, 1, 5, 7)


def test_multi_input_unet_shapes():
    net = MultiInputUNet(6, branch_channels=2, branch_width=3, width=4, depth=3,
                         out_channels=2)
    assert net(torch.randn(2, 12, 32, 64)).shape == (2, 2, 32, 64)


def test_documented_parameter_counts():
    assert n_params(UNet2d(6)) == 483_169
    assert n_params(UNet2d(6, width=64, depth=4)) == 31_039_361
    assert n_params(MultiInputUNet(6)) == 123_865
    assert n_params(MultiInputUNet.cpu_scale(6)) == 123_865
    assert n_params(MultiInputUNet.paper_scale(6)) == 31_106_273


@pytest.mark.parametrize("shape", [(1, 1, 30, 32), (1, 1, 32, 36), (1, 2, 32, 32),
                                   (1, 32, 32), (1, 1, 0, 32)])
def test_bad_input_shape_names_the_shape(shape):
    net = UNet2d(1, width=2, depth=3)
    with pytest.raises(InputError, match=r"multiples of 2\*\*depth = 8") as err:
        net(torch.zeros(shape))
    assert str(tuple(shape)) in str(err.value) and "\n" not in str(err.value)
    multi = MultiInputUNet(2, width=2, depth=3)
    with pytest.raises(InputError, match="MultiInputUNet: input has shape"):
        multi(torch.zeros(1, 2, 30, 32))
    with pytest.raises(InputError, match=r"\(N, 2, H, W\)"):
        multi(torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize("kwargs", [dict(norm="layer"), dict(up="nearest"), dict(width=0),
                                    dict(depth=-1)])
def test_bad_unet_arguments(kwargs):
    with pytest.raises(InputError):
        UNet2d(1, **kwargs)
    with pytest.raises(InputError):
        MultiInputUNet(0)


@pytest.mark.parametrize("norm", ["batch", "group", "instance", "none"])
def test_branches_are_independent_and_concatenated_in_order(norm):
    """Changing input map k changes only the branch features of group k."""
    torch.manual_seed(0)
    net = MultiInputUNet(3, branch_channels=2, branch_width=4, width=4, depth=1,
                         norm=norm).eval()
    x = torch.randn(1, 6, 16, 16)
    base = net.branches(x)
    for k in range(3):
        x2 = x.clone()
        x2[:, 2 * k: 2 * k + 2] += torch.randn(1, 2, 16, 16)
        changed = (net.branches(x2) - base).abs().flatten(2).amax(dim=2)[0] > 0  # (12,)
        expected = torch.zeros(12, dtype=torch.bool)
        expected[4 * k: 4 * k + 4] = True
        assert torch.equal(changed, expected)


def test_gradient_reaches_every_branch_and_layer():
    torch.manual_seed(1)
    net = MultiInputUNet(4, branch_width=2, width=4, depth=2)
    out = net(torch.randn(2, 4, 16, 16))
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for conv in (net.branches[0], net.branches[3]):  # both grouped convs of the branches
        per_branch = conv.weight.grad.reshape(4, -1).abs().sum(dim=1)  # (n_inputs,)
        assert (per_branch > 0).all(), per_branch


def blob_masks(rng, n_maps=4, size=32, n_blobs=3, sigma=1.5):
    """Counts-like inputs (2 maps: blobs of two widths + noise) and 0/1 source masks."""
    y, x = np.mgrid[:size, :size]
    inputs = np.zeros((n_maps, 2, size, size), np.float32)
    masks = np.zeros((n_maps, 1, size, size), np.float32)
    for i in range(n_maps):
        for x0, y0 in rng.uniform(4, size - 4, (n_blobs, 2)):
            r2 = (x - x0) ** 2 + (y - y0) ** 2
            for b, width in enumerate((sigma, 2 * sigma)):
                inputs[i, b] += 3 * np.exp(-0.5 * r2 / width ** 2)
            masks[i, 0][r2 <= 4.0] = 1.0
        inputs[i] += rng.normal(0, 0.3, (2, size, size))
    return torch.from_numpy(inputs), torch.from_numpy(masks)


def test_tiny_overfit_on_four_maps():
    torch.manual_seed(0)
    x, y = blob_masks(np.random.default_rng(0))
    net = MultiInputUNet(2, branch_width=4, width=8, depth=2)
    loss_fn = BCEDiceLoss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])
    net.eval()
    with torch.no_grad():
        hit = ((torch.sigmoid(net(x)) > 0.5).float() == y).float().mean().item()
    assert hit > 0.98
