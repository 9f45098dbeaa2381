"""The ResNet-18 layout for small images, and scalar inputs appended to backbone features."""

import pytest
import torch

from astroreco.errors import InputError
from astroreco.nn.backbones import SmallImageResNet
from astroreco.nn.models import MultiTaskNet


def test_small_resnet_has_17_convolutions_and_keeps_shapes():
    net = SmallImageResNet(2, (18, 72), width=8, n_features=32)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 17
    out = net(torch.randn(3, 2, 18, 72))
    assert out.shape == (3, 32) and torch.isfinite(out).all()
    avg = SmallImageResNet(2, (18, 72), width=8, pool="avg", n_features=16)
    assert avg(torch.randn(2, 2, 18, 72)).shape == (2, 16)
    with pytest.raises(InputError, match="expected input"):
        net(torch.randn(3, 2, 18, 71))
    with pytest.raises(InputError):
        SmallImageResNet(2, (18, 72), pool="max")


def test_scalar_inputs_reach_the_heads():
    net = SmallImageResNet(1, (6, 6), width=4, n_features=8)
    model = MultiTaskNet(net, {"y": torch.nn.Linear(9, 1)}, scalar_keys=("energy",))
    batch = {"image": torch.randn(4, 1, 6, 6), "energy": torch.zeros(4)}
    model.eval()
    a = model(batch)["y"]
    b = model({**batch, "energy": torch.full((4,), 5.0)})["y"]
    assert a.shape == (4, 1) and not torch.allclose(a, b)
