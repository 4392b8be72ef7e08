"""Tile geometry: cores, blend regions, model inputs and raised-cosine blend weights.

The tiling scheme of :mod:`superres.inference.engine` (and of the region-adaptive model,
:mod:`superres.models.adaptive`) along one axis. An axis of ``length`` LR pixels is cut at
``bounds`` into *cores*; each tile owns a *blend region* (its core widened by ``overlap // 2``
before and ``overlap - overlap // 2`` after each seam it shares), and the model sees the region
plus ``context`` pixels on each side (clamped at the image border). Across the ``overlap``
pixels around a seam the two tiles' weights follow complementary raised-cosine ramps; the
weights are separable and normalised, so every output pixel's weights sum to one.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

__all__ = ["Axis"]


@dataclasses.dataclass(frozen=True)
class Axis:
    """Tiling of one axis: cores, blend regions, model inputs and normalised weights."""

    length: int
    bounds: tuple[int, ...]  # core boundaries, 0 = b_0 < ... < b_n = length
    overlap: int
    context: int
    scale: int

    @classmethod
    def plan(cls, length: int, tile: int, overlap: int, context: int, scale: int) -> Axis:
        n = 1 if tile <= 0 or tile >= length else math.ceil(length / tile)
        bounds = tuple(round(i * length / n) for i in range(n + 1))
        return cls(length, bounds, overlap if n > 1 else 0, context, scale)

    @property
    def count(self) -> int:
        return len(self.bounds) - 1

    def region(self, i: int) -> tuple[int, int]:
        """LR span ``[r0, r1)`` where tile ``i`` has non-zero weight."""
        lo = self.bounds[i] - self.overlap // 2 if i > 0 else 0
        last = i == self.count - 1
        hi = self.length if last else self.bounds[i + 1] + self.overlap - self.overlap // 2
        return max(lo, 0), min(hi, self.length)

    def input_span(self, i: int) -> tuple[int, int]:
        """LR span fed to the model for tile ``i``: the region plus context."""
        r0, r1 = self.region(i)
        return max(r0 - self.context, 0), min(r1 + self.context, self.length)

    def raw_weight(self, i: int) -> Tensor:
        """Unnormalised float64 weights of tile ``i`` over its HR region."""
        r0, r1 = self.region(i)
        s = self.scale
        centres = torch.arange(r0 * s, r1 * s, dtype=torch.float64) + 0.5
        weight = torch.ones_like(centres)
        width = self.overlap * s
        if width == 0:
            return weight
        if i > 0:  # ramp up across the seam at bounds[i]
            start = (self.bounds[i] - self.overlap // 2) * s
            t = ((centres - start) / width).clamp(0, 1)
            weight = weight * torch.sin(t * math.pi / 2) ** 2
        if i < self.count - 1:  # ramp down across the seam at bounds[i + 1]
            start = (self.bounds[i + 1] - self.overlap // 2) * s
            t = ((centres - start) / width).clamp(0, 1)
            weight = weight * torch.cos(t * math.pi / 2) ** 2
        return weight

    def weights(self) -> list[Tensor]:
        """Normalised float32 weights of every tile (they sum to one at every HR pixel)."""
        raw = [self.raw_weight(i) for i in range(self.count)]
        total = torch.zeros(self.length * self.scale, dtype=torch.float64)
        for i, w in enumerate(raw):
            r0, r1 = self.region(i)
            total[r0 * self.scale : r1 * self.scale] += w
        out = []
        for i, w in enumerate(raw):
            r0, r1 = self.region(i)
            out.append((w / total[r0 * self.scale : r1 * self.scale]).float())
        return out

    @classmethod
    def fixed(cls, length: int, tile: int, overlap: int, context: int, scale: int) -> Axis:
        """Cores of exactly ``tile`` pixels from the start (the last one shorter), so that
        core ``i`` covers ``[i * tile, (i + 1) * tile)``: the grid of a per-tile score map."""
        if tile <= 0 or tile >= length:
            return cls(length, (0, length), 0, context, scale)
        bounds = (*range(0, length, tile), length)
        return cls(length, bounds, overlap, context, scale)
