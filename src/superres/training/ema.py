"""Exponential moving average of the weights (what is validated and exported)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - torch is imported lazily: `superres --help` stays fast
    from torch import nn

__all__ = ["EMA"]


class EMA:
    """Exponential moving average of a module's parameters (buffers are copied).

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the
    average forgets the random initial weights quickly (with a constant 0.999 they would
    still weigh 37 % after 1000 iterations and spoil early validation).
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def update(self, module: nn.Module, step: int | None = None) -> None:
        """Blend ``module`` in; ``step`` is the number of updates before this one."""
        import torch

        decay = self.decay if step is None else min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            self._update(module, decay)

    def _update(self, module: nn.Module, decay: float) -> None:
        for ema, p in zip(self.module.parameters(), module.parameters(), strict=True):
            ema.lerp_(p.detach(), 1.0 - decay)
        for ema, b in zip(self.module.buffers(), module.buffers(), strict=True):
            ema.copy_(b)
