"""VDSR (Kim, Lee, Lee, CVPR 2016): a very deep network learning the residual over bicubic."""

from __future__ import annotations

import math

from torch import Tensor, nn

from superres.core.resize import imresize
from superres.models.registry import register_model


@register_model("vdsr", description="VDSR, 20 layers of 64 filters (Kim et al. 2016)", scales=None)
class VDSR(nn.Module):
    """VDSR ("Accurate Image Super-Resolution Using Very Deep Convolutional Networks").

    x -> bicubic x scale = u -> [conv -> ReLU] x (depth - 1) -> conv -> + u -> y

    Args:
        scale: Upscaling factor (any integer: the network runs at HR resolution).
        depth: Convolution layers (20 in the paper).
        n_feats: Filters per hidden layer.
        in_channels: Image channels (3: RGB; the paper used 1: luminance).
    """

    def __init__(
        self, scale: int = 4, depth: int = 20, n_feats: int = 64, in_channels: int = 3
    ) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(in_channels, n_feats, 3, padding=1), nn.ReLU(True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.ReLU(True)]
        self.body = nn.Sequential(*layers, nn.Conv2d(n_feats, in_channels, 3, padding=1))
        for m in self.body:  # He initialisation, as in the paper
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.receptive_field = 2 + math.ceil(depth / scale)

    def forward(self, x: Tensor) -> Tensor:
        upsampled = imresize(x, self.scale)
        return upsampled + self.body(upsampled)
