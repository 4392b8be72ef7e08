"""ESPCN (Shi et al., CVPR 2016): features at LR resolution, one sub-pixel convolution."""

from __future__ import annotations

from torch import Tensor, nn

from superres.models.registry import register_model

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


@register_model(
    "espcn", description="ESPCN 5-3-3, 64/32 filters, tanh (Shi et al. 2016)", scales=None
)
class ESPCN(nn.Module):
    """ESPCN ("Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
    Convolutional Neural Network").

    x -> conv5 (n1) -> act -> conv3 (n2) -> act -> conv3 (C scale^2) -> PixelShuffle(scale) -> y

    Args:
        scale: Upscaling factor (any integer).
        n1, n2: Filters of the two hidden layers.
        act: ``"tanh"`` (paper) or ``"relu"``.
        in_channels: Image channels (3: RGB; the paper used 1: luminance).
    """

    def __init__(
        self, scale: int = 4, n1: int = 64, n2: int = 32, act: str = "tanh", in_channels: int = 3
    ) -> None:
        super().__init__()
        if act not in _ACTIVATIONS:
            raise ValueError(f"act must be one of {sorted(_ACTIVATIONS)}, got {act!r}")
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, n1, 5, padding=2), _ACTIVATIONS[act](),
            nn.Conv2d(n1, n2, 3, padding=1), _ACTIVATIONS[act](),
            nn.Conv2d(n2, in_channels * scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        )  # fmt: skip
        self.receptive_field = 2 + 1 + 1

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)
