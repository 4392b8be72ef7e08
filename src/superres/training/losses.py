"""Pixel losses between SR and HR patches (``loss.name`` in the config)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - torch is imported lazily: `superres --help` stays fast
    from torch import Tensor

    from superres.training.config import LossConfig

__all__ = ["make_loss"]


def make_loss(config: LossConfig) -> Callable[[Tensor, Tensor], Tensor]:
    """The pixel loss ``f(sr, hr) -> scalar`` (mean over all elements)."""
    import torch
    from torch import nn

    if config.name == "l1":
        return nn.functional.l1_loss
    if config.name == "mse":
        return nn.functional.mse_loss
    eps2 = config.eps**2

    def charbonnier(sr: Tensor, hr: Tensor) -> Tensor:
        return torch.sqrt((sr - hr).square() + eps2).mean()

    return charbonnier
