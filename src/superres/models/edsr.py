"""EDSR (Lim et al., CVPRW 2017): residual blocks without batch norm, pixel-shuffle tail."""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor, nn

from superres.models.layers import ResBlock, Upsampler
from superres.models.registry import register_model

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
SCALES = (2, 3, 4, 8)


def image_mean(in_channels: int) -> Tensor:
    """The DIV2K RGB mean EDSR/RCAN subtract, ``(1, C, 1, 1)`` (its average if C != 3)."""
    mean = DIV2K_MEAN if in_channels == 3 else (sum(DIV2K_MEAN) / 3,) * in_channels
    return torch.tensor(mean).view(1, in_channels, 1, 1)


class EDSR(nn.Module):
    """EDSR ("Enhanced Deep Residual Networks for Single Image Super-Resolution").

    x - mean -> conv = f -> [ResBlock] x n_blocks -> conv -> + f -> Upsampler -> conv -> + mean

    Args:
        scale: Upscaling factor (2, 3, 4 or 8).
        n_feats: Feature channels.
        n_blocks: Residual blocks.
        res_scale: Residual scaling of each block (0.1 for the large EDSR).
        attention: Optional attention inside each block: None, ``"channel"``, ``"spatial"``.
        upsampler: ``"pixelshuffle"`` (paper) or ``"deconv"``.
        in_channels: Image channels.
    """

    def __init__(
        self,
        scale: int = 4,
        n_feats: int = 64,
        n_blocks: int = 16,
        res_scale: float = 1.0,
        attention: str | None = None,
        upsampler: str = "pixelshuffle",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", image_mean(in_channels), persistent=False)
        self.head = nn.Conv2d(in_channels, n_feats, 3, padding=1)
        blocks = [
            ResBlock(n_feats, res_scale=res_scale, attention=attention) for _ in range(n_blocks)
        ]
        self.body = nn.Sequential(*blocks, nn.Conv2d(n_feats, n_feats, 3, padding=1))
        self.upsample = Upsampler(scale, n_feats, mode=upsampler)
        self.tail = nn.Conv2d(n_feats, in_channels, 3, padding=1)
        lr_radius = 1 + sum(b.radius for b in blocks) + 1
        self.receptive_field = math.ceil(lr_radius + self.upsample.radius + Fraction(1, scale))

    def forward(self, x: Tensor) -> Tensor:
        f = self.head(x - self.mean)
        return self.tail(self.upsample(self.body(f) + f)) + self.mean


@register_model(
    description="EDSR-baseline: 16 blocks, 64 features (Lim et al. 2017)", scales=SCALES
)
def edsr_baseline(
    scale: int = 4,
    n_feats: int = 64,
    n_blocks: int = 16,
    res_scale: float = 1.0,
    attention: str | None = None,
    upsampler: str = "pixelshuffle",
    in_channels: int = 3,
) -> EDSR:
    """EDSR-baseline (about 1.5M parameters at x4)."""
    return EDSR(scale, n_feats, n_blocks, res_scale, attention, upsampler, in_channels)


@register_model(
    description="EDSR: 32 blocks, 256 features, res_scale 0.1 (Lim et al. 2017)", scales=SCALES
)
def edsr(
    scale: int = 4,
    n_feats: int = 256,
    n_blocks: int = 32,
    res_scale: float = 0.1,
    attention: str | None = None,
    upsampler: str = "pixelshuffle",
    in_channels: int = 3,
) -> EDSR:
    """The large EDSR of the paper (about 43M parameters at x4)."""
    return EDSR(scale, n_feats, n_blocks, res_scale, attention, upsampler, in_channels)
