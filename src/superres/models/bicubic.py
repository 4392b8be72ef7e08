"""The ``bicubic`` pseudo-model: MATLAB bicubic interpolation, no parameters."""

from __future__ import annotations

from torch import Tensor, nn

from superres.core.resize import imresize
from superres.models.registry import register_model


@register_model("bicubic", description="MATLAB bicubic interpolation (no parameters)", scales=None)
class Bicubic(nn.Module):
    """Bicubic upsampling (Keys 1981, MATLAB ``imresize``): the baseline every SR paper beats.

    x -> imresize(x, scale)
    """

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.receptive_field = 2  # the cubic kernel reaches 2 LR pixels each way

    def forward(self, x: Tensor) -> Tensor:
        return imresize(x, self.scale)
