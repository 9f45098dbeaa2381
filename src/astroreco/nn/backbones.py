"""Image backbones: a CPU-scale conv net, multi-head VGG, and torchvision-compatible ResNets.

Every model takes an image tensor ``(N, C, H, W)`` (square ``H == W == image_size``; a
hexagonal lattice in the axial convention of :mod:`astroreco.nn.hexconv` when
``hexagonal=True``) and knows nothing of the detector that made it.

* :class:`CompactConvNet` -- five conv blocks and a dense layer, ``(N, n_features)``.
* :class:`VGGMultiHead` -- VGG blocks with a shared trunk and ``n_heads`` ensemble heads
  (the last block plus a dense head each, as in Lee et al. 2015, "Why M heads are better
  than one"), ``(N, n_heads, out_dim)``.
* :func:`resnet18`, :func:`resnet34` -- ResNets whose state-dict names and shapes are
  torchvision's, so :func:`load_torchvision_weights` can load a file a user has on disk.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from astroreco.errors import InputError
from astroreco.nn.hexconv import HexConv2d

__all__ = ["BasicBlock", "CompactConvNet", "ResNet", "SmallImageResNet", "VGGMultiHead",
           "conv_block",
           "load_torchvision_weights", "resnet18", "resnet34", "vgg16_multihead",
           "vgg_multihead_cpu"]


def conv_block(in_ch: int, out_ch: int, stride: int = 1, hexagonal: bool = False
               ) -> nn.Sequential:
    """3x3 convolution (no bias) + BatchNorm2d + ReLU.

    ``HexConv2d`` (7-pixel hexagonal stencil) if ``hexagonal`` else ``Conv2d`` (padding 1).
    Shapes: ``(N, in_ch, H, W) -> (N, out_ch, ceil(H / stride), ceil(W / stride))``.
    """
    if hexagonal:
        conv = HexConv2d(in_ch, out_ch, stride=stride, bias=False)
    else:
        conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class CompactConvNet(nn.Module):
    """The CPU-scale backbone: five conv blocks (more with ``stem``), flatten, one dense layer.

    Parameters
    ----------
    in_channels, image_size : int
        Input ``(N, in_channels, S, S)``, ``S = image_size`` a positive multiple of 4.
    widths : (int, int, int)
        Channels of the three resolution levels.
    n_features : int
        Output width (attribute ``n_features``).
    hexagonal : bool
        Use :class:`HexConv2d` (input on a hexagonal lattice in axial storage).
    stem : int
        Conv blocks at full resolution before the first stride-2 block (the most expensive
        ones: each adds ``S^2 w0^2`` multiply-adds per stencil tap).

    Shapes
    ------
    ``(N, in_channels, S, S) -> (N, n_features)``.  The flatten keeps the spatial layout
    (needed to regress directions), so the dense layer is tied to ``image_size``.
    """

    def __init__(self, in_channels: int, image_size: int, widths=(16, 32, 64),
                 n_features: int = 128, hexagonal: bool = True, stem: int = 1) -> None:
        super().__init__()
        if stem < 1:
            raise InputError(f"CompactConvNet: stem must be >= 1, got {stem}")
        if image_size <= 0 or image_size % 4:
            raise InputError(f"CompactConvNet: image_size must be a positive multiple of 4, "
                             f"got {image_size}")
        if len(widths) != 3:
            raise InputError(f"CompactConvNet: widths needs 3 entries, got {tuple(widths)}")
        w0, w1, w2 = widths
        self.in_channels, self.image_size, self.n_features = in_channels, image_size, n_features
        self.features = nn.Sequential(
            conv_block(in_channels, w0, hexagonal=hexagonal),  # (N, w0, S, S)
            *(conv_block(w0, w0, hexagonal=hexagonal) for _ in range(stem - 1)),
            conv_block(w0, w1, stride=2, hexagonal=hexagonal),  # (N, w1, S/2, S/2)
            conv_block(w1, w1, hexagonal=hexagonal),  # (N, w1, S/2, S/2)
            conv_block(w1, w2, stride=2, hexagonal=hexagonal),  # (N, w2, S/4, S/4)
            conv_block(w2, w2, hexagonal=hexagonal),  # (N, w2, S/4, S/4)
        )
        side = image_size // 4
        self.head = nn.Sequential(nn.Flatten(),  # (N, w2 * (S/4)^2)
                                  nn.Linear(w2 * side * side, n_features),  # (N, n_features)
                                  nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, S, S) -> (N, n_features)``."""
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise InputError(f"CompactConvNet: expected input (N, {expected[0]}, "
                             f"{expected[1]}, {expected[2]}), got {tuple(x.shape)}")
        return self.head(self.features(x))


def _vgg_block(in_ch: int, width: int, n_convs: int, hexagonal: bool) -> nn.Sequential:
    """``n_convs`` conv blocks, 2x2 max-pool: (N, in_ch, H, W) -> (N, width, H/2, W/2)."""
    layers = [conv_block(in_ch if i == 0 else width, width, hexagonal=hexagonal)
              for i in range(n_convs)]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class VGGMultiHead(nn.Module):
    """VGG-style network whose last block and dense head are replicated ``n_heads`` times.

    All blocks but the last form a shared trunk; each head is the last block, an adaptive
    average pool to ``head_pool x head_pool``, ``Linear -> ReLU -> Linear``.  The heads are
    independently initialised ensemble members sharing the trunk (Lee et al. 2015).

    Parameters
    ----------
    in_channels, image_size : int
        Input ``(N, in_channels, image_size, image_size)``; ``image_size >= 2**len(blocks)``
        (each block halves the side; the adaptive pool accepts any remaining size).
    out_dim : int
        Outputs per head.
    n_heads : int
    blocks : sequence of (width, n_convs)
    hexagonal : bool
        :class:`HexConv2d` convolutions.  The 2x2 max-pool keeps the ``(2q, 2r)``
        sub-lattice, which is hexagonal again (its pooling window is not symmetric).
    head_hidden, head_pool : int
        Hidden width and pooled side of the dense heads.

    Shapes
    ------
    ``(N, in_channels, S, S) -> (N, n_heads, out_dim)``.
    """

    def __init__(self, in_channels: int, image_size: int, out_dim: int, n_heads: int = 8,
                 blocks=((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
                 hexagonal: bool = False, head_hidden: int = 256, head_pool: int = 2) -> None:
        super().__init__()
        blocks = tuple((int(w), int(n)) for w, n in blocks)
        if not blocks or n_heads < 1:
            raise InputError("VGGMultiHead: needs at least one block and one head")
        if image_size < 2 ** len(blocks):
            raise InputError(f"VGGMultiHead: image_size {image_size} is too small for "
                             f"{len(blocks)} pooling blocks (needs >= {2 ** len(blocks)})")
        self.n_heads, self.out_dim = n_heads, out_dim
        trunk, ch = [], in_channels
        for width, n_convs in blocks[:-1]:  # each: (N, ch, s, s) -> (N, width, s/2, s/2)
            trunk.append(_vgg_block(ch, width, n_convs, hexagonal))
            ch = width
        self.trunk = nn.Sequential(*trunk)
        width, n_convs = blocks[-1]
        self.heads = nn.ModuleList(nn.Sequential(
            _vgg_block(ch, width, n_convs, hexagonal),  # (N, width, s', s')
            nn.AdaptiveAvgPool2d(head_pool),  # (N, width, head_pool, head_pool)
            nn.Flatten(),  # (N, width * head_pool^2)
            nn.Linear(width * head_pool * head_pool, head_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(head_hidden, out_dim),  # (N, out_dim)
        ) for _ in range(n_heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, S, S) -> (N, n_heads, out_dim)``."""
        z = self.trunk(x)
        return torch.stack([head(z) for head in self.heads], dim=1)


def vgg16_multihead(in_channels: int, image_size: int, out_dim: int, n_heads: int = 8,
                    hexagonal: bool = False, **kwargs) -> VGGMultiHead:
    """Paper scale: the five VGG-16 blocks (13 convs), 8 heads; image_size >= 32."""
    return VGGMultiHead(in_channels, image_size, out_dim, n_heads=n_heads,
                        blocks=((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
                        hexagonal=hexagonal, **kwargs)


def vgg_multihead_cpu(in_channels: int, image_size: int, out_dim: int, n_heads: int = 8,
                      hexagonal: bool = False, **kwargs) -> VGGMultiHead:
    """CPU scale: blocks ``((16, 1), (32, 1), (64, 2))``, 8 heads; image_size >= 8."""
    kwargs.setdefault("head_hidden", 64)
    return VGGMultiHead(in_channels, image_size, out_dim, n_heads=n_heads,
                        blocks=((16, 1), (32, 1), (64, 2)), hexagonal=hexagonal, **kwargs)


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: two 3x3 convs and an identity/1x1 shortcut.

    ``(N, inplanes, H, W) -> (N, planes, H / stride, W / stride)``.
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with torchvision's module names, so its state dicts load as they are.

    Shapes: ``(N, in_channels, H, W)`` (``H, W >= 32`` for the default stem) ->
    ``(N, num_outputs)``; layer4 leaves ``(N, 512, H/32, W/32)``.
    """

    def __init__(self, layers, num_outputs: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)  # H/2
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # H/4
        self.layer1 = self._make_layer(64, layers[0])  # (N, 64, H/4, W/4)
        self.layer2 = self._make_layer(128, layers[1], stride=2)  # (N, 128, H/8, W/8)
        self.layer3 = self._make_layer(256, layers[2], stride=2)  # (N, 256, H/16, W/16)
        self.layer4 = self._make_layer(512, layers[3], stride=2)  # (N, 512, H/32, W/32)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # (N, 512, 1, 1)
        self.fc = nn.Linear(512, num_outputs)  # (N, num_outputs)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W) -> (N, num_outputs)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class SmallImageResNet(nn.Module):
    """The ResNet-18 layout for small, non-square images (e.g. 18 x 72 calorimeter cells).

    A 3x3 stem at full resolution (no stride, no max-pool: the image is already coarse),
    then four stages of two :class:`BasicBlock` s with strides ``strides`` and widths
    ``width x (1, 2, 4, 8)``: 17 convolutions, as ResNet-18 (``width=64`` is its size).
    The last feature map is flattened (``pool="flatten"``: keeps where things are, which a
    position regression needs) or averaged (``pool="avg"``), then one dense layer with ReLU
    gives ``n_features``.

    Shapes: ``(N, in_channels, H, W) -> (N, n_features)``.
    """

    def __init__(self, in_channels: int, image_shape, *, width: int = 16,
                 strides=(1, 2, 2, 2), pool: str = "flatten", n_features: int = 256) -> None:
        super().__init__()
        h, w = (int(v) for v in image_shape)
        if h < 1 or w < 1 or width < 1 or len(strides) != 4:
            raise InputError(f"SmallImageResNet: expected a positive image shape and width "
                             f"and 4 strides, got {image_shape}, {width}, {tuple(strides)}")
        if pool not in ("flatten", "avg"):
            raise InputError(f"SmallImageResNet: pool {pool!r}, expected 'flatten' or 'avg'")
        self.in_channels, self.image_shape = int(in_channels), (h, w)
        self.n_features = int(n_features)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),  # (N, width, H, W)
            nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.inplanes = width
        stages = []
        for i, stride in enumerate(strides):
            planes = width * 2 ** i
            down = None
            if stride != 1 or self.inplanes != planes:
                down = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride=stride,
                                               bias=False), nn.BatchNorm2d(planes))
            stages += [BasicBlock(self.inplanes, planes, stride, down),
                       BasicBlock(planes, planes)]
            self.inplanes = planes
            h, w = (h - 1) // stride + 1, (w - 1) // stride + 1  # conv 3x3, padding 1
        self.stages = nn.Sequential(*stages)  # (N, 8 width, h, w)
        flat = self.inplanes * (h * w if pool == "flatten" else 1)
        self.pool = nn.Flatten() if pool == "flatten" else nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (N, flat)
        self.fc = nn.Sequential(nn.Linear(flat, self.n_features), nn.ReLU(inplace=True))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W) -> (N, n_features)``."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_channels, *self.image_shape):
            raise InputError(f"SmallImageResNet: expected input (N, {self.in_channels}, "
                             f"{self.image_shape[0]}, {self.image_shape[1]}), got "
                             f"{tuple(x.shape)}")
        return self.fc(self.pool(self.stages(self.stem(x))))


def resnet18(num_outputs: int = 1000, in_channels: int = 3) -> ResNet:
    """ResNet-18 (torchvision layout; 11,689,512 parameters at the defaults)."""
    return ResNet((2, 2, 2, 2), num_outputs, in_channels)


def resnet34(num_outputs: int = 1000, in_channels: int = 3) -> ResNet:
    """ResNet-34 (torchvision layout; 21,797,672 parameters at the defaults)."""
    return ResNet((3, 4, 6, 3), num_outputs, in_channels)


def _few(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


def _read_state_dict(path: Path) -> dict:
    """Tensors of a ``.pth``/``.pt`` (weights-only unpickler) or ``.safetensors`` file."""
    suffix = path.suffix.lower()
    if suffix not in (".pth", ".pt", ".safetensors"):
        raise InputError(f"{path}: unsupported weights file type {suffix!r} "
                         "(expected .pth, .pt or .safetensors)")
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{path}: cannot read weights ({reason})") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise InputError(f"{path}: does not hold a state dict of named tensors")
    return state


def load_torchvision_weights(model: nn.Module, path, *, train: str = "last") -> nn.Module:
    """Load a torchvision-format ResNet state dict from a file into ``model``.

    Parameters
    ----------
    model : ResNet
        E.g. ``resnet34(num_outputs=4, in_channels=1)``.
    path : str or Path
        ``.pth``/``.pt`` (read with ``torch.load(..., weights_only=True)``: no arbitrary
        object is ever unpickled) or ``.safetensors``.
    train : {"last", "all"}
        "last": only ``fc`` stays trainable (``requires_grad=False`` elsewhere), the
        transfer-learning set-up of the IXPE seed paper.  Note that BatchNorm running
        statistics still update in ``train()`` mode; call ``.eval()`` on frozen parts to
        keep them.  "all": every parameter trainable.

    Returns
    -------
    nn.Module
        ``model``, loaded in place.

    Raises
    ------
    InputError
        Missing or unreadable file, missing/unexpected keys, a shape mismatch.

    Notes
    -----
    * ``conv1.weight`` with a different number of input channels ``C`` than the file's:
      the file's kernel is averaged over its input channels and repeated ``C`` times.  A
      1-channel image ``x`` then gives the pretrained response to the grey image
      ``(x, x, x)`` divided by 3.
    * ``fc.*`` is kept as initialised when its shapes differ from the file's (a new task
      head) or when the file has no ``fc``; otherwise it is loaded.
    * Everything else must match exactly; otherwise :class:`InputError`.
    """
    if train not in ("last", "all"):
        raise InputError(f"train must be 'last' or 'all', got {train!r}")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such weights file")
    state = _read_state_dict(path)
    own = model.state_dict()
    head = {k for k in own if k.startswith("fc.")}
    missing = set(own) - set(state) - head
    unexpected = set(state) - set(own)
    if missing or unexpected:
        parts = ([f"missing keys {_few(missing)}"] if missing else []) + \
                ([f"unexpected keys {_few(unexpected)}"] if unexpected else [])
        raise InputError(f"{path}: not a state dict for this model: {'; '.join(parts)}")
    keep_head = any(k not in state or state[k].shape != own[k].shape for k in head)
    new = {}
    for key, value in own.items():
        if key in head and keep_head:
            new[key] = value
            continue
        src = state[key]
        if (key == "conv1.weight" and src.dim() == 4 and src.shape[1] != value.shape[1]
                and src.shape[0] == value.shape[0] and src.shape[2:] == value.shape[2:]):
            src = src.mean(dim=1, keepdim=True).repeat(1, value.shape[1], 1, 1)
        if src.shape != value.shape:
            raise InputError(f"{path}: {key} has shape {tuple(src.shape)} in the file but "
                             f"{tuple(value.shape)} in the model")
        new[key] = src
    model.load_state_dict(new)
    for name, param in model.named_parameters():
        param.requires_grad_(train == "all" or name.startswith("fc."))
    return model
