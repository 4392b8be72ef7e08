"""The learning-rate schedule: a pure function of the config and the iteration."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from superres.training.config import TrainConfig

__all__ = ["learning_rate"]


def learning_rate(config: TrainConfig, iteration: int) -> float:
    """Learning rate of the optimiser step taken at ``iteration`` (0-based).

    Linear warm-up from ``lr / warmup`` to ``lr`` over the first ``schedule.warmup`` steps,
    then constant, multi-step (``lr * gamma ** (milestones passed)``) or cosine (from ``lr`` to
    ``schedule.min_lr`` at the last iteration).
    """
    base, s = config.optim.lr, config.schedule
    if iteration < s.warmup:
        return base * (iteration + 1) / s.warmup
    if s.name == "constant":
        return base
    if s.name == "multistep":
        return base * s.gamma ** sum(iteration >= m for m in s.milestones)
    span = max(1, config.iterations - 1 - s.warmup)
    progress = min(1.0, (iteration - s.warmup) / span)
    return s.min_lr + (base - s.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
