"""Region-adaptive super-resolution: each LR tile goes to the network its content needs.

ClassSR (Kong et al., CVPR 2021), ARM and APE (ECCV 2022) route image patches by difficulty
so that flat regions (sky, walls, out-of-focus background) skip the expensive network::

    x -> difficulty per T x T tile (core.regions: mean |Laplacian| of the luma)
      -> class per tile (thresholds chosen on training images, cheapest class first)
      -> the tiles of one class, with the context of the largest member, batched per shape
         -> that class's member network, one batched forward
      -> blended into the output with raised-cosine weights across every tile seam

Tiles of a class run as one batch (chunked only to bound memory), never one by one: a
per-patch loop is why ClassSR saves FLOPs but not time. Each tile's input carries the full
receptive field of its member, so a tile's output equals that member's whole-image output
there; across the ``overlap`` pixels around a seam the two tiles' outputs are cross-faded,
so a class boundary shows no seam. The routing depends on where the tile grid falls, so the
inference engine treats the model as ``"approximate"`` for its own (much larger) tiles.

Cost: every routed tile carries the full receptive field of the largest member (63 LR
pixels for the quality tier), so small tiles pay a large context overhead: with 32-pixel
tiles an isolated tile's input is about 17 times its core. The shipped settings must weigh
this against the share routed to cheap members (merging runs of same-class tiles into one
input is the next step).

Members are ordinary modules (``create_model`` or loaded checkpoints) of one scale;
:func:`superres.weights.zoo.resolve` builds the shipped ``adaptive`` model from
``weights/adaptive.json`` (members, thresholds and how they were calibrated).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from superres.core.regions import classify, difficulty, tile_areas
from superres.core.tiles import Axis

__all__ = ["AdaptiveSR"]

#: LR pixels (tiles x batch x area, context included) per batched forward of one member.
CHUNK_PIXELS = 1 << 17


class AdaptiveSR(nn.Module):
    """Route LR tiles by difficulty to ``members`` (cheapest first) and blend the results.

    Args:
        members: One module per class, all of the same ``scale``, each with an int
            ``receptive_field`` (modules from :func:`~superres.models.create_model`).
        thresholds: ``len(members) - 1`` increasing difficulty thresholds
            (:func:`superres.core.regions.classify`).
        tile: Side of the routed LR tiles.
        overlap: Blend width (LR pixels) across each seam between tiles.
    """

    def __init__(
        self,
        members: Sequence[nn.Module],
        thresholds: Sequence[float],
        *,
        tile: int = 32,
        overlap: int = 8,
    ) -> None:
        super().__init__()
        if len(thresholds) != len(members) - 1:
            raise ValueError(
                f"{len(members)} members need {len(members) - 1} thresholds, got {len(thresholds)}"
            )
        scales = {int(m.scale) for m in members}
        if len(scales) != 1:
            raise ValueError(f"members must share one scale, got {sorted(scales)}")
        if not 0 <= overlap <= tile // 2:
            raise ValueError(f"overlap must be in [0, tile / 2], got {overlap} for tile {tile}")
        self.members = nn.ModuleList(members)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.tile, self.overlap = int(tile), int(overlap)
        self.scale = scales.pop()
        self.context = max(int(m.receptive_field) for m in members)
        self.receptive_field = self.context + self.tile  # routing sees the whole tile

    def classes(self, lr: Tensor | np.ndarray) -> np.ndarray:
        """The class of every tile of ``lr`` (``(3, h, w)`` float tensor in [0, 1], or an
        ``H x W x C`` array): ``ceil(h / tile) x ceil(w / tile)`` uint8."""
        if isinstance(lr, Tensor):
            lr = lr.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        return classify(difficulty(lr, self.tile), self.thresholds)

    def histogram(self, lr: Tensor | np.ndarray) -> list[float]:
        """Share of the image's area routed to each member (sums to 1)."""
        grid = self.classes(lr)
        size = lr.shape[-2:] if isinstance(lr, Tensor) else lr.shape[:2]
        area = tile_areas(tuple(size), self.tile)
        return [float(area[grid == c].sum() / area.sum()) for c in range(len(self.members))]

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        s = self.scale
        grid = self.classes(x[0])  # the colour decides; an alpha batch follows it
        rows = Axis.fixed(h, self.tile, self.overlap, self.context, s)
        cols = Axis.fixed(w, self.tile, self.overlap, self.context, s)
        wy = [t.to(x.device) for t in rows.weights()]
        wx = [t.to(x.device) for t in cols.weights()]
        out = torch.zeros(n, 3, h * s, w * s, device=x.device, dtype=torch.float32)
        groups: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
        for bi in range(rows.count):
            iy0, iy1 = rows.input_span(bi)
            for bj in range(cols.count):
                ix0, ix1 = cols.input_span(bj)
                groups.setdefault((int(grid[bi, bj]), iy1 - iy0, ix1 - ix0), []).append((bi, bj))
        for (cls, ih, iw), tiles in groups.items():
            per_chunk = max(1, CHUNK_PIXELS // (n * ih * iw))
            for start in range(0, len(tiles), per_chunk):
                chunk = tiles[start : start + per_chunk]
                batch = torch.cat(
                    [x[:, :, slice(*rows.input_span(bi)), slice(*cols.input_span(bj))]
                     for bi, bj in chunk]
                )  # fmt: skip
                sr = self.members[cls](batch.to(x.dtype)).float()
                for k, (bi, bj) in enumerate(chunk):
                    (ry0, ry1), (rx0, rx1) = rows.region(bi), cols.region(bj)
                    iy0, ix0 = rows.input_span(bi)[0], cols.input_span(bj)[0]
                    crop = sr[k * n : (k + 1) * n, :, (ry0 - iy0) * s : (ry1 - iy0) * s,
                              (rx0 - ix0) * s : (rx1 - ix0) * s]  # fmt: skip
                    weight = wy[bi][:, None] * wx[bj][None, :]
                    out[:, :, ry0 * s : ry1 * s, rx0 * s : rx1 * s].addcmul_(crop, weight)
        return out
