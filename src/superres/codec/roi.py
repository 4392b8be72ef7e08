"""Region-of-interest layers of ``.srz``: a compact mask and a residual enhancement layer.

Data flow (encoding, :func:`superres.codec.compress` with ``roi=``)::

    mask (H x W bool) --cells of CELL x CELL px (any pixel set)--> grid --1 bit/cell, zlib-->
        ROI mask section
    original - restored base (as the decoder will restore it) + 128, inside the grid's
        cells (128 elsewhere), over the grid's bounding box --same codec--> enhancement section

Decoding adds ``enhancement - 128`` to the restored base on the mask's cells and nowhere
else. The base is an ordinary ``.srz`` base layer, so a reader that skips the two sections
(they are optional, see :mod:`superres.codec.container`) still gets the whole image, at the
base's fidelity.

The residual is taken against the base restored on the encoder's device and threads; a
decoder whose restorer rounds differently (another device) adds it to a base that may
differ by a level here and there, which the enhancement then does not correct.

Mask section body: u8 cell size in pixels (1 to 64), then the zlib stream of the grid
``ceil(H / cell) x ceil(W / cell)``, row-major, 8 cells per byte, most significant bit
first, zero padding bits; at least one cell set. Enhancement section body: the codec payload
of the residual image, of the size of the grid's bounding box (clipped to the image).
"""

from __future__ import annotations

import math
import zlib
from typing import NamedTuple

import numpy as np

from superres.codec import container
from superres.codec.base import Codec, ContainerError

__all__ = [
    "CELL",
    "MASK_SECTION",
    "RoiLayers",
    "apply_enhancement",
    "cell_grid",
    "decode_enhancement",
    "decode_mask",
    "encode_mask",
    "expand_grid",
    "grid_box",
    "residual",
]

#: Side in pixels of the mask's cells (the JPEG block size: a neutral block costs nearly
#: nothing, and an 8-aligned region's blocks do not mix ROI and background pixels).
CELL = 8
MASK_SECTION = container.SECTION_ROI_MASK
_MAX_CELL = 64


class RoiLayers(NamedTuple):
    """A mask as it is stored: its cell grid and what follows from it.

    Attributes:
        grid: ``ceil(H / cell) x ceil(W / cell)`` bool.
        cell: Cell side in pixels.
        mask: ``H x W`` bool: the pixels the enhancement applies to (the grid's cells).
        box: ``(top, bottom, left, right)`` pixel bounds of the enhancement layer.
    """

    grid: np.ndarray
    cell: int
    mask: np.ndarray
    box: tuple[int, int, int, int]


def cell_grid(mask: np.ndarray, cell: int = CELL) -> np.ndarray:
    """The cells (``cell x cell`` pixels, the last row/column cut by the image) that hold at
    least one pixel of ``mask`` (``H x W`` bool)."""
    h, w = mask.shape
    gh, gw = math.ceil(h / cell), math.ceil(w / cell)
    padded = np.zeros((gh * cell, gw * cell), bool)
    padded[:h, :w] = mask
    return padded.reshape(gh, cell, gw, cell).any(axis=(1, 3))


def expand_grid(grid: np.ndarray, cell: int, size: tuple[int, int]) -> RoiLayers:
    """The :class:`RoiLayers` of a cell grid for an image of ``size`` = ``(H, W)``."""
    h, w = size
    mask = np.repeat(np.repeat(grid, cell, axis=0), cell, axis=1)[:h, :w]
    return RoiLayers(grid, cell, mask, grid_box(grid, cell, size))


def grid_box(grid: np.ndarray, cell: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)``: the pixel bounding box of the grid's set cells."""
    rows, cols = np.flatnonzero(grid.any(axis=1)), np.flatnonzero(grid.any(axis=0))
    h, w = size
    return (
        int(rows[0]) * cell,
        min(h, (int(rows[-1]) + 1) * cell),
        int(cols[0]) * cell,
        min(w, (int(cols[-1]) + 1) * cell),
    )


def encode_mask(mask: np.ndarray, cell: int = CELL) -> tuple[bytes, RoiLayers]:
    """The mask section body of ``mask`` (``H x W`` bool, not empty) and its layers."""
    if mask.ndim != 2 or mask.dtype != np.bool_ or not mask.any():
        raise ValueError("the mask must be a non-empty H x W bool array")
    grid = cell_grid(mask, cell)
    body = bytes([cell]) + zlib.compress(np.packbits(grid.reshape(-1)).tobytes(), 9)
    return body, expand_grid(grid, cell, mask.shape)


def decode_mask(body: bytes, size: tuple[int, int]) -> RoiLayers:
    """Parse a mask section body for an image of ``size`` = ``(H, W)``, trusting nothing.

    Raises:
        ContainerError: a bad cell size, a zlib stream that is corrupt, of another length or
            followed by other bytes, non-zero padding bits, or no cell set.
    """
    if not body:
        raise ContainerError("empty ROI mask section")
    cell = body[0]
    if not 1 <= cell <= _MAX_CELL:
        raise ContainerError(f"ROI mask cell of {cell} pixels (expected 1 to {_MAX_CELL})")
    h, w = size
    gh, gw = math.ceil(h / cell), math.ceil(w / cell)
    expected = math.ceil(gh * gw / 8)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(body[1:], expected + 1)  # never more than that is inflated
    except zlib.error as err:
        raise ContainerError(f"corrupt ROI mask ({err})") from None
    if len(raw) != expected or not inflater.eof or inflater.unused_data:
        raise ContainerError(
            f"ROI mask of the wrong size (expected {gh}x{gw} cells in one zlib stream)"
        )
    bits = np.unpackbits(np.frombuffer(raw, np.uint8))
    if bits[gh * gw :].any():
        raise ContainerError("ROI mask with non-zero padding bits")
    grid = bits[: gh * gw].reshape(gh, gw).astype(bool)
    if not grid.any():
        raise ContainerError("ROI mask selects nothing")
    return expand_grid(grid, cell, size)


def residual(original: np.ndarray, restored: np.ndarray, layers: RoiLayers) -> np.ndarray:
    """The enhancement image: ``original - restored + 128`` (clipped to 0..255) on the mask's
    cells and 128 elsewhere, over ``layers.box``; ``H x W x C`` uint8 in, box-sized out."""
    top, bottom, left, right = layers.box
    diff = original[top:bottom, left:right].astype(np.int16)
    diff -= restored[top:bottom, left:right]
    diff += 128
    diff[~layers.mask[top:bottom, left:right]] = 128
    return np.clip(diff, 0, 255).astype(np.uint8)


def apply_enhancement(
    restored: np.ndarray, enhancement: np.ndarray, layers: RoiLayers
) -> np.ndarray:
    """``restored`` (``H x W x C`` uint8) with ``enhancement - 128`` added on the mask's
    cells (a new array)."""
    out = restored.copy()
    top, bottom, left, right = layers.box
    region = out[top:bottom, left:right]
    inside = layers.mask[top:bottom, left:right]
    added = region.astype(np.int16) + enhancement.astype(np.int16) - 128
    region[inside] = np.clip(added, 0, 255).astype(np.uint8)[inside]
    return out


def decode_enhancement(codec: Codec, body: bytes, layers: RoiLayers, channels: int) -> np.ndarray:
    """Decode an enhancement section body (the size of ``layers.box``)."""
    top, bottom, left, right = layers.box
    return codec.decode(body, (bottom - top, right - left), channels=channels)
