"""SRCNN (Dong et al., ECCV 2014 / TPAMI 2016): the first CNN for super-resolution."""

from __future__ import annotations

import math

from torch import Tensor, nn

from superres.core.resize import imresize
from superres.models.registry import register_model


@register_model("srcnn", description="SRCNN 9-5-5, 64/32 filters (Dong et al. 2016)", scales=None)
class SRCNN(nn.Module):
    """SRCNN (Dong, Loy, He, Tang, "Image Super-Resolution Using Deep Convolutional Networks").

    x -> bicubic x scale -> conv f1 (n1) -> ReLU -> conv f2 (n2) -> ReLU -> conv f3 -> y

    Args:
        scale: Upscaling factor (any integer: the network runs at HR resolution).
        n1, n2: Filters of the first two layers.
        f1, f2, f3: Kernel sizes (9-5-5 in the TPAMI paper, 9-1-5 in the ECCV one).
        in_channels: Image channels (3: RGB; the paper used 1: luminance).
    """

    def __init__(
        self,
        scale: int = 4,
        n1: int = 64,
        n2: int = 32,
        f1: int = 9,
        f2: int = 5,
        f3: int = 5,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, n1, f1, padding=f1 // 2), nn.ReLU(inplace=True),
            nn.Conv2d(n1, n2, f2, padding=f2 // 2), nn.ReLU(inplace=True),
            nn.Conv2d(n2, in_channels, f3, padding=f3 // 2),
        )  # fmt: skip
        self.receptive_field = 2 + math.ceil((f1 // 2 + f2 // 2 + f3 // 2) / scale)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(imresize(x, self.scale))
