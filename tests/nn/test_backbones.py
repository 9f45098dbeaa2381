"""Backbones: shapes, hexagonal variants, torchvision-compatible ResNets and weight loading."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from astroreco.errors import InputError
from astroreco.nn.backbones import (CompactConvNet, VGGMultiHead, conv_block,
                                    load_torchvision_weights, resnet18, resnet34,
                                    vgg16_multihead, vgg_multihead_cpu)
from astroreco.nn.hexconv import HexConv2d


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def _plain_convs(model):
    return [m for m in model.modules() if type(m) is nn.Conv2d]


def _hex_convs(model):
    return [m for m in model.modules() if isinstance(m, HexConv2d)]


def _all_params_get_gradient(model, x):
    model(x).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# --- small conv nets --------------------------------------------------------------------

@pytest.mark.parametrize("hexagonal", [False, True])
def test_conv_block(hexagonal):
    block = conv_block(2, 5, stride=2, hexagonal=hexagonal)
    assert isinstance(block[0], HexConv2d) == hexagonal and block[0].bias is None
    assert block(torch.randn(3, 2, 9, 9)).shape == (3, 5, 5, 5)


@pytest.mark.parametrize("size", [24, 32])
@pytest.mark.parametrize("hexagonal", [False, True])
def test_compact_conv_net(size, hexagonal):
    torch.manual_seed(0)
    net = CompactConvNet(2, size, widths=(4, 8, 8), n_features=16, hexagonal=hexagonal)
    assert net.n_features == 16
    assert len(_hex_convs(net)) == (5 if hexagonal else 0)
    assert len(_plain_convs(net)) == (0 if hexagonal else 5)
    assert net.head[1].in_features == 8 * (size // 4) ** 2  # flatten keeps the layout
    x = torch.randn(3, 2, size, size)
    assert net(x).shape == (3, 16)
    _all_params_get_gradient(net, x)


def test_compact_conv_net_stem_adds_full_resolution_blocks():
    torch.manual_seed(2)
    plain = CompactConvNet(1, 12, widths=(4, 8, 8), n_features=8)
    deep = CompactConvNet(1, 12, widths=(4, 8, 8), n_features=8, stem=3)
    assert len(_hex_convs(deep)) == 7
    # the default keeps the layer names of saved models; the stem blocks are 4 -> 4 channels
    assert list(plain.state_dict())[:3] == list(deep.state_dict())[:3]
    extra = sum(p.numel() for p in deep.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 2 * (4 * 4 * 9 + 2 * 4)  # two 3x3 kernels (masked in use) + BatchNorm
    x = torch.randn(2, 1, 12, 12)
    assert deep(x).shape == (2, 8)
    _all_params_get_gradient(deep, x)
    with pytest.raises(InputError, match="stem must be >= 1"):
        CompactConvNet(1, 12, stem=0)


def test_compact_conv_net_rejects_bad_sizes():
    with pytest.raises(InputError, match="multiple of 4"):
        CompactConvNet(1, 30)
    net = CompactConvNet(1, 24, widths=(2, 2, 2), n_features=4)
    with pytest.raises(InputError, match=r"expected input \(N, 1, 24, 24\)"):
        net(torch.randn(2, 1, 28, 28))


@pytest.mark.parametrize("size", [24, 32])
@pytest.mark.parametrize("hexagonal", [False, True])
def test_vgg_multihead_cpu(size, hexagonal):
    torch.manual_seed(1)
    net = vgg_multihead_cpu(1, size, out_dim=3, hexagonal=hexagonal)
    assert len(net.heads) == 8 and net.n_heads == 8
    assert len(_hex_convs(net)) == (2 + 8 * 2 if hexagonal else 0)
    assert len(_plain_convs(net)) == (0 if hexagonal else 2 + 8 * 2)
    x = torch.randn(2, 1, size, size)
    y = net(x)
    assert y.shape == (2, 8, 3)
    assert not torch.allclose(y[:, 0], y[:, 1])  # independently initialised heads
    _all_params_get_gradient(net, x)


def test_vgg_multihead_smallest_image_and_too_small():
    net = VGGMultiHead(1, 8, 2, n_heads=2, blocks=((4, 1), (4, 1), (8, 1)), head_hidden=8)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 2, 2)
    assert net(torch.randn(2, 1, 13, 13)).shape == (2, 2, 2)  # adaptive pool: any size
    with pytest.raises(InputError, match="too small"):
        VGGMultiHead(1, 7, 2, blocks=((4, 1), (4, 1), (8, 1)))
    with pytest.raises(InputError, match="too small"):
        vgg_multihead_cpu(1, 4, 2)


def test_vgg16_multihead_structure():
    with torch.device("meta"):  # paper scale: build without allocating memory
        net = vgg16_multihead(1, 64, out_dim=2)
    assert len(net.trunk) == 4 and len(net.heads) == 8
    assert len(_plain_convs(net.trunk)) == 2 + 2 + 3 + 3
    assert all(len(_plain_convs(h)) == 3 for h in net.heads)  # 13 convs per member
    with pytest.raises(InputError, match="too small"):
        vgg16_multihead(1, 16, out_dim=2)


# --- ResNet -----------------------------------------------------------------------------

@pytest.mark.parametrize("factory, n_params, n_keys", [
    # torchvision figures: resnet18 11,689,512 and resnet34 21,797,672 parameters.
    # State-dict keys: stem conv1 (1) + bn1 (5: weight, bias, running_mean, running_var,
    # num_batches_tracked) + fc (2) = 8; 12 per BasicBlock (conv1, bn1, conv2, bn2);
    # 6 per downsample (conv + bn), in layer2..layer4 only.
    # resnet18: 8 blocks -> 8 + 96 + 18 = 122; resnet34: 16 blocks -> 8 + 192 + 18 = 218.
    (resnet18, 11_689_512, 122),
    (resnet34, 21_797_672, 218),
])
def test_resnet_matches_torchvision_layout(factory, n_params, n_keys):
    with torch.device("meta"):
        model = factory()
    assert _n_params(model) == n_params
    keys = set(model.state_dict())
    assert len(keys) == n_keys
    assert {"conv1.weight", "bn1.num_batches_tracked", "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.running_mean", "layer4.1.bn2.running_var",
            "fc.weight", "fc.bias"} <= keys
    assert not any(k.startswith("layer1.0.downsample") for k in keys)
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert model.conv1.padding == (3, 3) and model.conv1.bias is None


def test_resnet34_keys():
    with torch.device("meta"):
        keys = set(resnet34().state_dict())
    assert "layer4.2.bn2.running_var" in keys and "layer4.3.conv1.weight" not in keys
    assert "layer3.5.conv2.weight" in keys and "layer3.6.conv2.weight" not in keys


def test_resnet_forward_small_image():
    torch.manual_seed(2)
    model = resnet18(num_outputs=4, in_channels=1)
    x = torch.randn(2, 1, 32, 32)
    assert model(x).shape == (2, 4)
    _all_params_get_gradient(model, x)


# --- loading torchvision weights ----------------------------------------------------------

@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    """A resnet34(1000 outputs, 3 channels) state dict saved as .pth and .safetensors."""
    torch.manual_seed(3)
    source = resnet34()
    with torch.no_grad():  # make BN buffers distinguishable from a fresh model's
        for name, buf in source.named_buffers():
            buf.add_(torch.rand_like(buf.float()).to(buf.dtype) + 1)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    folder = tmp_path_factory.mktemp("weights")
    torch.save(state, folder / "resnet34.pth")
    save_file(state, str(folder / "resnet34.safetensors"))
    return state, folder


@pytest.mark.parametrize("name", ["resnet34.pth", "resnet34.safetensors"])
def test_load_adapts_conv1_and_keeps_new_head(imagenet_like, name):
    state, folder = imagenet_like
    torch.manual_seed(4)
    model = resnet34(num_outputs=4, in_channels=1)
    fc_before = {k: v.clone() for k, v in model.fc.state_dict().items()}
    assert load_torchvision_weights(model, folder / name) is model
    got = model.state_dict()
    torch.testing.assert_close(got["conv1.weight"],
                               state["conv1.weight"].mean(dim=1, keepdim=True), rtol=0, atol=0)
    for key, value in got.items():
        if key.startswith("fc."):
            torch.testing.assert_close(value, fc_before[key[3:]], rtol=0, atol=0)
        elif key != "conv1.weight":
            torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}


def test_load_all_trainable_multichannel_and_same_head(imagenet_like):
    state, folder = imagenet_like
    model = resnet34(num_outputs=1000, in_channels=2)
    load_torchvision_weights(model, str(folder / "resnet34.pth"), train="all")
    mean = state["conv1.weight"].mean(dim=1, keepdim=True)
    torch.testing.assert_close(model.conv1.weight, mean.repeat(1, 2, 1, 1), rtol=0, atol=0)
    torch.testing.assert_close(model.fc.weight, state["fc.weight"], rtol=0, atol=0)
    assert all(p.requires_grad for p in model.parameters())


def _save(tmp_path, state, name="w.pth"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_load_errors(tmp_path, imagenet_like):
    state, folder = imagenet_like
    model = resnet34(num_outputs=4, in_channels=1)
    with pytest.raises(InputError, match="no such weights file"):
        load_torchvision_weights(model, tmp_path / "absent.pth")
    with pytest.raises(InputError, match="train must be"):
        load_torchvision_weights(model, folder / "resnet34.pth", train="some")
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="unsupported weights file type"):
        load_torchvision_weights(model, tmp_path / "w.bin")
    for name in ("junk.pth", "junk.safetensors"):
        (tmp_path / name).write_bytes(b"not a weights file at all")
        with pytest.raises(InputError, match="cannot read weights"):
            load_torchvision_weights(model, tmp_path / name)
    with pytest.raises(InputError, match="state dict of named tensors"):
        load_torchvision_weights(model, _save(tmp_path, [torch.zeros(2)]))


class _Payload:
    """An arbitrary object: the weights-only unpickler must refuse it."""

    def __reduce__(self):
        return (print, ("unpickled!",))


def test_load_never_unpickles_objects(tmp_path, capsys):
    path = _save(tmp_path, {"conv1.weight": _Payload()})
    with pytest.raises(InputError, match="cannot read weights"):
        load_torchvision_weights(resnet18(), path)
    assert "unpickled!" not in capsys.readouterr().out


def test_load_key_and_shape_errors(tmp_path):
    torch.manual_seed(5)
    state = resnet18().state_dict()
    model = resnet18(num_outputs=4, in_channels=1)
    missing = {k: v for k, v in state.items() if not k.startswith("layer3.1.")}
    with pytest.raises(InputError, match=r"missing keys layer3\.1\.bn1\.bias.*\(\+9 more\)"):
        load_torchvision_weights(model, _save(tmp_path, missing))
    extra = dict(state, **{"layer5.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(InputError, match=r"unexpected keys layer5\.0\.conv1\.weight$"):
        load_torchvision_weights(model, _save(tmp_path, extra))
    bad = dict(state, **{"layer2.0.conv1.weight": torch.zeros(128, 64, 1, 1)})
    with pytest.raises(InputError, match=r"layer2\.0\.conv1\.weight has shape "
                                         r"\(128, 64, 1, 1\) in the file but "
                                         r"\(128, 64, 3, 3\) in the model"):
        load_torchvision_weights(model, _save(tmp_path, bad))
    with pytest.raises(InputError, match="not a state dict for this model"):
        load_torchvision_weights(resnet34(), _save(tmp_path, state))  # 18 into 34
    headless = {k: v for k, v in state.items() if not k.startswith("fc.")}
    load_torchvision_weights(model, _save(tmp_path, headless))  # no fc in file: fine
    assert model.fc.weight.requires_grad and not model.conv1.weight.requires_grad
