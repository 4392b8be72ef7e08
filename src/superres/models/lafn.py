"""LAFN, the quality tier: residual local feature blocks (RLFN, Kong et al., CVPRW 2022) with a
*local* spatial attention in place of RLFN's strided/pooled ESA, so the whole network stays
translation-equivariant and tiles exactly.

x -> conv3 (C) = f -> [LAFB] x N -> conv3 -> + f -> conv3 (3 s^2) -> + repeat(x, s^2)
  -> PixelShuffle(s) -> y

LAFB:  h = conv3(lrelu(conv3(lrelu(conv3(x))))) + x ;  h = conv1(h) ;  out = h * LSA(h)
LSA:   a = conv1(h) (C -> c) ; m = a + conv3_d4(relu(conv3_d2(relu(conv3(a)))))
       -> conv1 (c -> C) -> sigmoid     (dilations 1, 2, 4: a 15x15 window for a few FLOPs)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from superres.models.registry import register_model


class LocalSpatialAttention(nn.Module):
    """Per-pixel, per-channel gate from a dilated 15x15 neighbourhood (an unstrided ESA)."""

    is_global = False

    def __init__(self, channels: int, reduced: int = 16) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(channels, reduced, 1)
        self.conv1 = nn.Conv2d(reduced, reduced, 3, padding=1)
        self.conv2 = nn.Conv2d(reduced, reduced, 3, padding=2, dilation=2)
        self.conv3 = nn.Conv2d(reduced, reduced, 3, padding=4, dilation=4)
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.radius = 1 + 2 + 4

    def forward(self, x: Tensor) -> Tensor:
        a = self.squeeze(x)
        m = self.conv3(F.relu(self.conv2(F.relu(self.conv1(a))))) + a
        return x * torch.sigmoid(self.expand(m))


class LocalAttentionFeatureBlock(nn.Module):
    """Three 3x3 convolutions with a skip, a 1x1 fusion and local spatial attention."""

    def __init__(self, channels: int, reduced: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=1)
        self.fuse = nn.Conv2d(channels, channels, 1)
        self.attention = LocalSpatialAttention(channels, reduced)
        self.radius = 3 + self.attention.radius

    def forward(self, x: Tensor) -> Tensor:
        h = F.leaky_relu(self.conv1(x), 0.05)
        h = F.leaky_relu(self.conv2(h), 0.05)
        h = self.fuse(self.conv3(h) + x)
        return self.attention(h)


@register_model(
    "lafn",
    description="LAFN: residual local feature blocks with local spatial attention (quality tier)",
)
class LAFN(nn.Module):
    """Local-attention feature network (the quality tier).

    Args:
        scale: 2, 3 or 4.
        channels: Feature channels C.
        n_blocks: Number of blocks N.
        reduced: Channels inside the spatial attention.
        in_channels: Image channels.
    """

    def __init__(
        self,
        scale: int = 4,
        channels: int = 48,
        n_blocks: int = 6,
        reduced: int = 16,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.blocks = nn.Sequential(
            *[LocalAttentionFeatureBlock(channels, reduced) for _ in range(n_blocks)]
        )
        self.body_tail = nn.Conv2d(channels, channels, 3, padding=1)
        self.to_subpixels = nn.Conv2d(channels, in_channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        self.scale = scale
        self.receptive_field = 1 + sum(b.radius for b in self.blocks) + 1 + 1

    def forward(self, x: Tensor) -> Tensor:
        return self.reconstruct(self.head(x), x)

    @torch.no_grad()
    def init_unloaded_(self, names: list[str]) -> list[int]:
        """Start the blocks that ``init_from`` weights had none of (a deeper network from a
        shallower one's weights) as near-identity maps, so the network begins as the one it
        grew from: the last 3x3 convolution zero (it learns first, from the block's input
        through conv1 and conv2), the 1x1 fusion the identity and the attention gate open
        (sigmoid(8) = 0.9997, zero weights). Returns the names of the tensors it set.

        Args:
            names: Tensor names of this module that the weights did not provide.
        """
        missing = set(names)
        grown: list[str] = []
        for i, block in enumerate(self.blocks):
            own = [f"blocks.{i}.{n}" for n in block.state_dict()]
            if not set(own) <= missing:
                continue
            block.conv3.weight.zero_()
            block.conv3.bias.zero_()
            eye = torch.eye(block.fuse.out_channels, dtype=block.fuse.weight.dtype)
            block.fuse.weight.copy_(eye[:, :, None, None])
            block.fuse.bias.zero_()
            block.attention.expand.weight.zero_()
            block.attention.expand.bias.fill_(8.0)
            grown += own
        return grown

    def reconstruct(self, features: Tensor, x: Tensor) -> Tensor:
        """The blocks and the tail on the head's ``features`` of the LR image ``x``."""
        features = self.body_tail(self.blocks(features)) + features
        residual = torch.repeat_interleave(x, self.scale * self.scale, dim=1)
        return self.shuffle(self.to_subpixels(features) + residual)
