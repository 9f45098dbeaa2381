"""U-Nets for dense (per-pixel) prediction: a plain one and a multi-input one.

* :class:`UNet2d` -- the encoder-decoder with skip connections of Ronneberger et al. 2015
  ("U-Net: convolutional networks for biomedical image segmentation", arXiv:1505.04597),
  with padded convolutions so that the output has the input's size.
* :class:`MultiInputUNet` -- one small convolutional branch per input map (e.g. one per
  energy bin of a counts cube), the branch features concatenated, then a :class:`UNet2d`:
  the layout of the multi-input U-Net used for gamma-ray point sources (Panes et al. 2021,
  "Identification of point sources in gamma rays using U-shaped convolutional neural
  networks and a data challenge", arXiv:2103.11068).

Both return logits ``(N, out_channels, H, W)`` (apply a sigmoid for probabilities; train
with :class:`astroreco.losses.FocalBCELoss` / :class:`~astroreco.losses.SoftDiceLoss`).
Nothing here knows a detector.
"""

from __future__ import annotations

import torch
from torch import nn

from astroreco.errors import InputError

__all__ = ["MultiInputUNet", "UNet2d", "double_conv"]

NORMS = ("batch", "group", "instance", "none")
UPSAMPLINGS = ("transpose", "bilinear")


def _norm(kind: str, channels: int, branches: int = 1) -> nn.Module:
    """Normalisation layer; a group never straddles two of ``branches`` channel blocks."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":  # per branch: 8 groups or fewer, a divisor of its channels
        per = channels // branches
        groups = max(g for g in range(1, min(8, per) + 1) if per % g == 0)
        return nn.GroupNorm(branches * groups, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


def double_conv(in_ch: int, out_ch: int, norm: str = "batch", groups: int = 1
                ) -> nn.Sequential:
    """Two (3x3 conv, padding 1 -> norm -> ReLU): ``(N, in_ch, H, W) -> (N, out_ch, H, W)``.

    ``groups > 1`` makes ``groups`` independent stacks (channels split in equal groups, as
    :class:`torch.nn.Conv2d`; group norms stay inside a stack); the convolutions have a
    bias only when ``norm="none"``.
    """
    bias = norm == "none"
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, groups=groups, bias=bias),
        _norm(norm, out_ch, groups), nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, groups=groups, bias=bias),
        _norm(norm, out_ch, groups), nn.ReLU(inplace=True))


def _check_image(owner: str, x: torch.Tensor, channels: int, depth: int) -> None:
    """InputError unless ``x`` is ``(N, channels, H, W)``, H and W positive multiples of 2^depth."""
    step = 2 ** depth
    if (x.dim() != 4 or x.shape[1] != channels or x.shape[2] % step or x.shape[3] % step
            or x.shape[2] == 0 or x.shape[3] == 0):
        raise InputError(f"{owner}: input has shape {tuple(x.shape)}; expected "
                         f"(N, {channels}, H, W) with H and W positive multiples of "
                         f"2**depth = {step}")


class _Up(nn.Module):
    """Double the resolution, concatenate the skip, double conv.

    ``(N, 2c, h, w), (N, c, 2h, 2w) -> (N, c, 2h, 2w)``.
    """

    def __init__(self, channels: int, norm: str, up: str) -> None:
        super().__init__()
        if up == "transpose":
            self.up = nn.ConvTranspose2d(2 * channels, channels, 2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(2 * channels, channels, 1))
        self.conv = double_conv(2 * channels, channels, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (N, c, 2h, 2w)
        return self.conv(torch.cat([skip, x], dim=1))  # (N, 2c, 2h, 2w) -> (N, c, 2h, 2w)


class UNet2d(nn.Module):
    """Encoder-decoder with skip connections; output logits of the input's size.

    Level ``i = 0 .. depth`` works at ``(H / 2^i, W / 2^i)`` with ``width * 2^i``
    channels; each level is :func:`double_conv` (two 3x3 conv + norm + ReLU).  Down: 2x2
    max-pool.  Up: 2x2 transposed convolution (``up="transpose"``) or bilinear upsampling
    plus a 1x1 convolution (``up="bilinear"``), concatenation with the encoder feature map
    of that level, double conv.  A final 1x1 convolution gives ``out_channels`` logits.

    Parameters
    ----------
    in_channels, out_channels : int
    width : int
        Channels of the full-resolution level (64 in Ronneberger et al. 2015).
    depth : int
        Number of poolings (4 in Ronneberger et al. 2015); ``H`` and ``W`` must be
        multiples of ``2**depth``.
    norm : {"batch", "group", "instance", "none"}
    up : {"transpose", "bilinear"}

    Shapes
    ------
    ``(N, in_channels, H, W) -> (N, out_channels, H, W)`` (logits).

    Parameter count (``up="transpose"``): ``UNet2d(6)`` (width 16, depth 3) has 483,169
    parameters; ``UNet2d(6, width=64, depth=4)`` 31,039,361.
    """

    def __init__(self, in_channels: int, out_channels: int = 1, *, width: int = 16,
                 depth: int = 3, norm: str = "batch", up: str = "transpose") -> None:
        super().__init__()
        if min(in_channels, out_channels, width) < 1 or depth < 0:
            raise InputError(f"UNet2d: expected positive in_channels, out_channels, width and "
                             f"depth >= 0, got {in_channels}, {out_channels}, {width}, {depth}")
        if norm not in NORMS:
            raise InputError(f"UNet2d: norm {norm!r}, expected one of {', '.join(NORMS)}")
        if up not in UPSAMPLINGS:
            raise InputError(f"UNet2d: up {up!r}, expected one of {', '.join(UPSAMPLINGS)}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.depth = int(depth)
        widths = [width * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([double_conv(in_channels, widths[0], norm)] + [
            double_conv(widths[i - 1], widths[i], norm) for i in range(1, depth + 1)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(_Up(widths[i], norm, up) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W) -> (N, out_channels, H, W)`` logits."""
        _check_image("UNet2d", x, self.in_channels, self.depth)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))  # (N, width 2^i, H / 2^i, W / 2^i)
            skips.append(x)
        x = skips.pop()  # bottleneck (N, width 2^depth, H / 2^depth, W / 2^depth)
        for up in self.up:
            x = up(x, skips.pop())  # one level up: channels halved, size doubled
        return self.head(x)  # (N, out_channels, H, W)


class MultiInputUNet(nn.Module):
    """One convolutional branch per input map, features concatenated, then a :class:`UNet2d`.

    The input ``(N, n_inputs * branch_channels, H, W)`` holds ``n_inputs`` groups of
    ``branch_channels`` consecutive channels (e.g. one counts map per energy bin:
    ``branch_channels=1``).  Branch ``k`` sees only channels
    ``k * branch_channels .. (k + 1) * branch_channels - 1`` and applies its own
    :func:`double_conv` to ``branch_width`` channels, so that each map (each energy bin,
    with its own PSF width and statistics) gets its own filters before the maps are
    combined.  The branches are one grouped convolution stack (``groups=n_inputs``), which
    is exactly ``n_inputs`` independent branches with their outputs concatenated in order
    (channels ``k * branch_width ..`` come from branch ``k``), and faster than a loop.

    Parameters
    ----------
    n_inputs : int
        Number of input maps (branches).
    branch_channels : int
        Channels per input map.
    branch_width : int
        Output channels of each branch; the U-Net sees ``n_inputs * branch_width``.
    width, depth, out_channels, norm, up
        Of the :class:`UNet2d`.

    Shapes
    ------
    ``(N, n_inputs * branch_channels, H, W) -> (N, out_channels, H, W)`` (logits); ``H``
    and ``W`` multiples of ``2**depth``.

    Sizes
    -----
    The defaults are the CPU scale (:meth:`cpu_scale`, ``branch_width=4, width=8,
    depth=3``): with ``n_inputs=6``, 123,865 parameters; a forward + backward pass (BCE
    loss) of a batch ``(32, 6, 64, 64)`` took 0.30-0.37 s on one CPU thread (torch 2.13,
    a 2-core machine shared with another job), most of it in the full-resolution layers,
    which are memory-bound.  ``branch_width=8, width=16``: 493,297 parameters, 0.59-0.62 s
    on one thread.
    :meth:`paper_scale` (``branch_width=16, width=64, depth=4``): 31,106,273 parameters
    with ``n_inputs=6`` -- the size of the original U-Net, for a GPU; the seed slides do not
    give the published network's widths.
    """

    def __init__(self, n_inputs: int, *, branch_channels: int = 1, branch_width: int = 4,
                 width: int = 8, depth: int = 3, out_channels: int = 1, norm: str = "batch",
                 up: str = "transpose") -> None:
        super().__init__()
        if min(n_inputs, branch_channels, branch_width) < 1:
            raise InputError(f"MultiInputUNet: expected positive n_inputs, branch_channels and "
                             f"branch_width, got {n_inputs}, {branch_channels}, "
                             f"{branch_width}")
        self.n_inputs, self.branch_channels = int(n_inputs), int(branch_channels)
        self.in_channels = self.n_inputs * self.branch_channels
        self.branches = double_conv(self.in_channels, n_inputs * branch_width, norm,
                                    groups=n_inputs)  # (N, n_inputs * branch_width, H, W)
        self.unet = UNet2d(n_inputs * branch_width, out_channels, width=width, depth=depth,
                           norm=norm, up=up)
        for m in self.branches.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @classmethod
    def cpu_scale(cls, n_inputs: int, **kwargs) -> "MultiInputUNet":
        """``branch_width=4, width=8, depth=3`` (the defaults): trains on a laptop CPU."""
        kwargs = {"branch_width": 4, "width": 8, "depth": 3, **kwargs}
        return cls(n_inputs, **kwargs)

    @classmethod
    def paper_scale(cls, n_inputs: int, **kwargs) -> "MultiInputUNet":
        """``branch_width=16, width=64, depth=4``: the original U-Net's size, for a GPU."""
        kwargs = {"branch_width": 16, "width": 64, "depth": 4, **kwargs}
        return cls(n_inputs, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, n_inputs * branch_channels, H, W) -> (N, out_channels, H, W)`` logits."""
        _check_image("MultiInputUNet", x, self.in_channels, self.unet.depth)
        return self.unet(self.branches(x))
