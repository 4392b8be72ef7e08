"""Pixel losses between SR and HR patches (``loss.name`` in the config)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - torch is imported lazily: `superres --help` stays fast
    from torch import Tensor

    from superres.training.config import LossConfig

__all__ = ["make_loss"]


def make_loss(config: LossConfig) -> Callable[[Tensor, Tensor], Tensor]:
    """The pixel loss ``f(sr, hr) -> scalar`` (mean over all elements).

    With ``config.luma_weight`` w > 0 the loss is ``(1 - w) f(sr, hr) + w f(Y(sr), Y(hr))``,
    Y the BT.601 luma the evaluator scores (:func:`superres.core.metrics.rgb_to_y`, here on the
    0..1 scale) of RGB patches.
    """
    import torch
    from torch import nn

    if config.name == "l1":
        pixel = nn.functional.l1_loss
    elif config.name == "mse":
        pixel = nn.functional.mse_loss
    else:
        eps2 = config.eps**2

        def pixel(sr: Tensor, hr: Tensor) -> Tensor:
            return torch.sqrt((sr - hr).square() + eps2).mean()

    w = config.luma_weight
    if w == 0:
        return pixel
    from superres.core.metrics import rgb_to_y

    def luma(x: Tensor) -> Tensor:
        return rgb_to_y(x) / 255.0 if x.shape[1] == 3 else x

    def weighted(sr: Tensor, hr: Tensor) -> Tensor:
        return (1 - w) * pixel(sr, hr) + w * pixel(luma(sr), luma(hr))

    return weighted
