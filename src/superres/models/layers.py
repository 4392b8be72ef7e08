"""Small shared blocks: attention, residual block, upsampler.

Each block records how far it looks: ``radius`` is the reach of one output pixel in pixels
of the block's input (a :class:`~fractions.Fraction` of LR pixels for the upsampler), which
models add up into their ``receptive_field``. ``is_global = True`` marks global operations
(the registry then reports the model's tiling as approximate).
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor, nn

__all__ = ["ATTENTIONS", "ChannelAttention", "ResBlock", "SpatialAttention", "Upsampler"]


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention (Hu et al., CVPR 2018), as in RCAN.

    x -> global avg pool -> 1x1 (C -> C/r) -> ReLU -> 1x1 (C/r -> C) -> sigmoid -> x * w
    """

    radius = 0
    is_global = True

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.excite = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1), nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return x * self.excite(self.pool(x))


class SpatialAttention(nn.Module):
    """Spatial attention of CBAM (Woo et al., ECCV 2018); local, so tiling stays exact.

    x -> [mean_c(x), max_c(x)] -> kxk conv (2 -> 1) -> sigmoid -> x * w
    """

    is_global = False

    def __init__(self, channels: int = 0, reduction: int = 0, kernel_size: int = 7) -> None:
        super().__init__()  # channels/reduction accepted for a uniform attention signature
        self.radius = kernel_size // 2
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


ATTENTIONS: dict[str, type[nn.Module]] = {"channel": ChannelAttention, "spatial": SpatialAttention}


class ResBlock(nn.Module):
    """Residual block of EDSR (Lim et al. 2017); with channel attention, RCAN's RCAB.

    x -> conv -> ReLU -> conv -> [attention] -> * res_scale -> + x
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        res_scale: float = 1.0,
        attention: str | None = None,
        reduction: int = 16,
    ) -> None:
        super().__init__()
        if attention is not None and attention not in ATTENTIONS:
            raise ValueError(f"attention must be None or one of {sorted(ATTENTIONS)}")
        pad = kernel_size // 2
        layers = [
            nn.Conv2d(channels, channels, kernel_size, padding=pad), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size, padding=pad),
        ]  # fmt: skip
        if attention is not None:
            layers.append(ATTENTIONS[attention](channels, reduction))
        self.body = nn.Sequential(*layers)
        self.res_scale = res_scale
        self.radius = 2 * pad + getattr(layers[-1], "radius", 0)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) * self.res_scale


class Upsampler(nn.Sequential):
    """Learned upsampling by ``scale``: sub-pixel convolution or transposed convolution.

    pixelshuffle (Shi et al. 2016): [3x3 conv (C -> C r^2) -> PixelShuffle(r)] per stage,
    r = 3 for x3, else one r = 2 stage per factor of two (x4 = two x2 stages).
    deconv (Dong et al. 2016): one kxk ConvTranspose2d with stride ``scale``, padded so that
    the output is exactly ``scale`` times the input and centred on it (``kernel_size``
    defaults to ``2 * scale + 1``; it is unused by pixelshuffle).
    """

    MODES = ("pixelshuffle", "deconv")

    def __init__(
        self,
        scale: int,
        channels: int,
        mode: str = "pixelshuffle",
        out_channels: int | None = None,
        kernel_size: int | None = None,
    ) -> None:
        if not self.supports(scale, mode):
            raise ValueError(f"Upsampler({mode!r}) cannot upsample by {scale}")
        out_channels = out_channels or channels
        layers: list[nn.Module] = []
        if mode == "deconv":
            kernel_size = kernel_size or 2 * scale + 1
            pad = max(0, (kernel_size - scale + 1) // 2)
            layers.append(
                nn.ConvTranspose2d(
                    channels,
                    out_channels,
                    kernel_size,
                    stride=scale,
                    padding=pad,
                    output_padding=2 * pad + scale - kernel_size,
                )
            )
            radius = Fraction(max(pad, kernel_size - 1 - pad), scale)
        else:
            stages = [3] if scale == 3 else [2] * int(math.log2(scale))
            radius, done = Fraction(0), 1
            for i, r in enumerate(stages):
                out = out_channels if i == len(stages) - 1 else channels
                layers += [nn.Conv2d(channels, out * r * r, 3, padding=1), nn.PixelShuffle(r)]
                radius, done = radius + Fraction(1, done), done * r
        super().__init__(*layers)
        self.radius = radius  # LR pixels

    @staticmethod
    def supports(scale: int, mode: str = "pixelshuffle") -> bool:
        """Whether ``mode`` can upsample by ``scale`` (deconv: any; pixelshuffle: 3, 2^k)."""
        if mode not in Upsampler.MODES:
            raise ValueError(f"mode must be one of {Upsampler.MODES}, got {mode!r}")
        if mode == "deconv":
            return scale >= 1
        return scale == 3 or (scale >= 2 and scale & (scale - 1) == 0)
