"""RCAN (Zhang et al., ECCV 2018): residual-in-residual groups of channel-attention blocks."""

from __future__ import annotations

import math
from fractions import Fraction

from torch import Tensor, nn

from superres.models.edsr import SCALES, image_mean
from superres.models.layers import ResBlock, Upsampler
from superres.models.registry import register_model


class ResidualGroup(nn.Module):
    """RCAN's residual group: x -> [RCAB] x n_blocks -> conv -> + x."""

    def __init__(self, n_feats: int, n_blocks: int, reduction: int, res_scale: float) -> None:
        super().__init__()
        blocks = [
            ResBlock(n_feats, res_scale=res_scale, attention="channel", reduction=reduction)
            for _ in range(n_blocks)
        ]
        self.body = nn.Sequential(*blocks, nn.Conv2d(n_feats, n_feats, 3, padding=1))
        self.radius = sum(b.radius for b in blocks) + 1

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class RCAN(nn.Module):
    """RCAN ("Image Super-Resolution Using Very Deep Residual Channel Attention Networks").

    x - mean -> conv = f -> [ResidualGroup] x n_groups -> conv -> + f -> Upsampler -> conv
    -> + mean; each group's RCAB is conv -> ReLU -> conv -> channel attention -> + input.

    Args:
        scale: Upscaling factor (2, 3, 4 or 8).
        n_groups: Residual groups (10 in the paper).
        n_blocks: Residual channel-attention blocks per group (20 in the paper).
        n_feats: Feature channels.
        reduction: Channel-attention reduction ratio.
        res_scale: Residual scaling inside each block.
        in_channels: Image channels.
    """

    def __init__(
        self,
        scale: int = 4,
        n_groups: int = 10,
        n_blocks: int = 20,
        n_feats: int = 64,
        reduction: int = 16,
        res_scale: float = 1.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", image_mean(in_channels), persistent=False)
        self.head = nn.Conv2d(in_channels, n_feats, 3, padding=1)
        groups = [ResidualGroup(n_feats, n_blocks, reduction, res_scale) for _ in range(n_groups)]
        self.body = nn.Sequential(*groups, nn.Conv2d(n_feats, n_feats, 3, padding=1))
        self.upsample = Upsampler(scale, n_feats)
        self.tail = nn.Conv2d(n_feats, in_channels, 3, padding=1)
        lr_radius = 1 + sum(g.radius for g in groups) + 1
        self.receptive_field = math.ceil(lr_radius + self.upsample.radius + Fraction(1, scale))

    def forward(self, x: Tensor) -> Tensor:
        f = self.head(x - self.mean)
        return self.tail(self.upsample(self.body(f) + f)) + self.mean


@register_model(
    description="RCAN: 10 groups x 20 blocks, 64 features (Zhang et al. 2018)",
    scales=SCALES,
    tiling="approximate",
)
def rcan(
    scale: int = 4,
    n_groups: int = 10,
    n_blocks: int = 20,
    n_feats: int = 64,
    reduction: int = 16,
    res_scale: float = 1.0,
    in_channels: int = 3,
) -> RCAN:
    """The paper's RCAN (about 15.6M parameters at x4)."""
    return RCAN(scale, n_groups, n_blocks, n_feats, reduction, res_scale, in_channels)


@register_model(
    description="RCAN-small: 5 groups x 10 blocks, 64 features", scales=SCALES, tiling="approximate"
)
def rcan_small(
    scale: int = 4,
    n_groups: int = 5,
    n_blocks: int = 10,
    n_feats: int = 64,
    reduction: int = 16,
    res_scale: float = 1.0,
    in_channels: int = 3,
) -> RCAN:
    """A quarter-size RCAN (about 4M parameters at x4) for quicker training."""
    return RCAN(scale, n_groups, n_blocks, n_feats, reduction, res_scale, in_channels)
