"""FSRCNN (Dong, Loy, Tang, ECCV 2016): SRCNN at LR resolution with a deconvolution at the end."""

from __future__ import annotations

import math

from torch import Tensor, nn

from superres.models.layers import Upsampler
from superres.models.registry import register_model


class FSRCNN(nn.Module):
    """FSRCNN(d, s, m) ("Accelerating the Super-Resolution Convolutional Neural Network").

    x -> conv5 (d) -> [1x1 shrink (s) -> [conv3 (s)] x m -> 1x1 expand (d)] -> deconv9 x scale -> y
    (every convolution followed by PReLU)

    Args:
        scale: Upscaling factor (any integer: only the deconvolution depends on it).
        d: Feature channels (LR feature extraction and expansion).
        s: Shrunk channels of the mapping layers.
        m: Number of 3x3 mapping layers.
        in_channels: Image channels (3: RGB; the paper used 1: luminance).
    """

    def __init__(
        self, scale: int = 4, d: int = 56, s: int = 12, m: int = 4, in_channels: int = 3
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, d, 5, padding=2), nn.PReLU(d)]
        layers += [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        self.upsample = Upsampler(scale, d, mode="deconv", out_channels=in_channels, kernel_size=9)
        for conv in self.body:  # the paper's init: He for the convolutions, N(0, 0.001) deconv
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_normal_(conv.weight, a=0.25, nonlinearity="leaky_relu")
                nn.init.zeros_(conv.bias)
        nn.init.normal_(self.upsample[0].weight, std=0.001)
        nn.init.zeros_(self.upsample[0].bias)
        self.receptive_field = 2 + m + math.ceil(self.upsample.radius)

    def forward(self, x: Tensor) -> Tensor:
        return self.upsample(self.body(x))


@register_model(description="FSRCNN(56, 12, 4) (Dong et al. 2016)", scales=None)
def fsrcnn(scale: int = 4, d: int = 56, s: int = 12, m: int = 4, in_channels: int = 3) -> FSRCNN:
    """FSRCNN(56, 12, 4), the paper's accurate configuration."""
    return FSRCNN(scale, d, s, m, in_channels)


@register_model(description="FSRCNN-s(32, 5, 1), the paper's fast configuration", scales=None)
def fsrcnn_s(scale: int = 4, d: int = 32, s: int = 5, m: int = 1, in_channels: int = 3) -> FSRCNN:
    """FSRCNN-s(32, 5, 1), the paper's small configuration."""
    return FSRCNN(scale, d, s, m, in_channels)
