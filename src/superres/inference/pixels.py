"""Pixels in, pixels out: 8/16-bit arrays and :class:`~superres.core.io.Image` through the
tile loop, with alpha, grey images and an optional final resize (``outscale``).

Data flow of :func:`upscale_array` (one LR tile at a time, one band of output rows at a time)::

    uint8/uint16 tile -> float [0, 1] (premultiplied by alpha, grey -> RGB) -> model
      -> weighted into a float band -> finished rows -> [resize to outscale] -> un-premultiply
      -> round/clip into the preallocated uint8/uint16 output
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from superres.core.resize import imresize, resize_weights, to_levels
from superres.errors import ConfigError
from superres.inference.device import select_device
from superres.inference.loop import Progress, has_tensors, tile_loop
from superres.inference.plan import as_srmodel, on_device, resolve_overlap, resolve_tile
from superres.models import SRModel

if TYPE_CHECKING:  # pragma: no cover
    from superres.core import io

__all__ = ["RowResizer", "output_size", "quantise", "to_float", "upscale_array", "upscale_image"]

#: Finished rows are converted to integers in chunks of about this many float bytes.
CHUNK_BYTES = 16 << 20


class RowResizer:
    """Streaming MATLAB-bicubic resize of rows arriving top to bottom.

    Equivalent to ``imresize(whole, size=(out_h, out_w))`` (antialiased when shrinking), but
    only keeps the input rows that later output rows still need.
    """

    def __init__(self, in_size: tuple[int, int], out_size: tuple[int, int], emit) -> None:
        (self.in_h, self.in_w), (self.out_h, self.out_w) = in_size, out_size
        self.emit = emit
        index, weight = resize_weights(self.in_h, self.out_h, self.out_h / self.in_h, True)
        self.index, self.weight = index, weight.float()
        self.ready = torch.cummax(index.max(dim=1).values, dim=0).values  # row r needs < this+1
        low = index.min(dim=1).values.flip(0)
        self.keep = torch.cummin(low, dim=0).values.flip(0)  # rows >= r need nothing below
        self.buffer: Tensor | None = None
        self.start = 0  # input row index of buffer[..., 0, :]
        self.received = 0
        self.next_row = 0

    def __call__(self, rows: Tensor) -> None:
        if self.out_w != self.in_w:
            rows = imresize(rows, size=(rows.shape[-2], self.out_w))
        self.buffer = rows if self.buffer is None else torch.cat([self.buffer, rows], dim=-2)
        self.received += rows.shape[-2]
        end = int(torch.searchsorted(self.ready, torch.tensor([self.received - 1]), right=True))
        if end > self.next_row:
            index = (self.index[self.next_row : end] - self.start).to(rows.device)
            weight = self.weight[self.next_row : end].to(rows.device)
            out = None
            for tap in range(index.shape[1]):
                term = self.buffer[..., index[:, tap], :] * weight[:, tap, None]
                out = term if out is None else out.add_(term)
            self.next_row = end
            self.emit(out)
        if self.next_row < self.out_h:
            drop = int(self.keep[self.next_row]) - self.start
            if drop > 0:
                self.buffer = self.buffer[..., drop:, :]
                self.start += drop


def output_size(h: int, w: int, model: SRModel, outscale: float | None) -> tuple[int, int]:
    if outscale is None:
        return h * model.scale, w * model.scale
    if not isinstance(outscale, (int, float)) or not math.isfinite(outscale) or outscale <= 0:
        raise ConfigError(f"outscale must be a positive number, got {outscale!r}")
    return max(1, round(h * outscale)), max(1, round(w * outscale))


def upscale_array(
    pixels: np.ndarray,
    model: SRModel | nn.Module,
    *,
    alpha: np.ndarray | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    device: str | torch.device | None = None,
    outscale: float | None = None,
    progress: Progress | None = None,
    ensemble: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Super-resolve an 8- or 16-bit image array without holding the float output.

    Colour is premultiplied by alpha before the model and divided by the upscaled alpha
    after it, so transparent pixels (whatever colour they store) do not bleed dark or
    coloured fringes into edges. Alpha goes through the *same* model and tiles, replicated
    to RGB, in the same batch as the colour; each colour channel is divided by the matching
    channel of the upscaled alpha, and the output alpha is the mean of its three channels.
    So an edge of a uniform white (or grey) area keeps its colour exactly for any model,
    and for other colours the colour and its coverage are sharpened alike; a different
    upscaler for alpha (say bicubic) would brighten or darken edges wherever the model
    sharpens more or less than it. Upscaled alpha is clipped to [0, 1]; where it rounds to
    0 the colour is set to 0. A fully opaque alpha is not run through the model.

    Grey images (C = 1) are replicated to RGB for the model and the output is the mean of
    the three channels (equal to each of them for a model that treats channels alike; the
    same convention as :func:`superres.evaluation.super_resolve`).

    16-bit input is scaled by 1/65535 into float and the output rounded from float straight
    to 16 bits: no 8-bit step.

    Args:
        pixels: ``H x W x C`` (C = 1 or 3) or ``H x W``, uint8 or uint16.
        model: The model; never modified (with a ``device`` other than its own, a copy of
            it runs there).
        alpha: Optional ``H x W`` alpha of the same dtype.
        tile: Core size in LR pixels; None: automatic (the whole image if it fits the memory
            budget); 0: no tiling.
        overlap: Blend width in LR pixels (None: :func:`default_overlap`).
        device: Where to run: None keeps the model's device (CPU for a parameter-free
            model); otherwise see :func:`select_device`.
        outscale: Final scale when it differs from ``model.scale``: the model output is
            resized (MATLAB bicubic, antialiased when shrinking) to
            ``round(H * outscale) x round(W * outscale)``, band by band, from float.
        progress: Optional ``callback(done_tiles, total_tiles)``.
        ensemble: Geometric self-ensemble: average the model's output over the 8 flips and
            rotations of every tile (8x the compute; tiling and memory bounds unchanged).

    Returns:
        ``(pixels, alpha)`` at the output size, same dtype and layout; alpha is None when
        none was given.
    """
    model = as_srmodel(model)
    pixels, squeeze, alpha, opaque = _checked(pixels, alpha)
    h, w, channels = pixels.shape
    if device is None:
        dev = model.device
    else:
        dev = select_device(device)
        if has_tensors(model) and model.device != dev:
            model = on_device(model, dev)
    out_h, out_w = output_size(h, w, model, outscale)
    sr_h, sr_w = h * model.scale, w * model.scale
    source = _Source(pixels, alpha, dev)
    tile = resolve_tile(model, tile, dev, max(sr_w, out_w), source.batch)
    overlap = resolve_overlap(model, tile, overlap)
    sink = _Sink((out_h, out_w), channels, pixels.dtype, with_alpha=alpha is not None)
    emit = sink.emit if (out_h, out_w) == (sr_h, sr_w) else None
    if emit is None:
        emit = RowResizer((sr_h, sr_w), (out_h, out_w), sink.emit)
    tile_loop(model, source.fetch, (h, w), source.batch, dev, tile, overlap,
              _chunked(emit, channels), progress, ensemble)  # fmt: skip
    if sink.row != out_h:  # pragma: no cover - an internal invariant
        raise RuntimeError(f"tile loop produced {sink.row} of {out_h} rows")
    out, alpha_out = sink.pixels, sink.alpha
    if opaque:
        alpha_out = np.full((out_h, out_w), np.iinfo(pixels.dtype).max, dtype=pixels.dtype)
    return (out[:, :, 0] if squeeze else out), alpha_out


def _checked(
    pixels: np.ndarray, alpha: np.ndarray | None
) -> tuple[np.ndarray, bool, np.ndarray | None, bool]:
    """``(H x W x C pixels, was 2-D, alpha to run or None, alpha given but fully opaque)``."""
    if pixels.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"expected uint8 or uint16 pixels, got {pixels.dtype}")
    squeeze = pixels.ndim == 2
    if squeeze:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise ValueError(f"expected pixels H x W x C with C = 1 or 3, got {pixels.shape}")
    h, w, _ = pixels.shape
    if h < 1 or w < 1:
        raise ValueError(f"empty image {h}x{w}")
    if alpha is None:
        return pixels, squeeze, None, False
    if alpha.shape != (h, w):
        raise ValueError(f"alpha shape {alpha.shape} does not match the image {(h, w)}")
    if alpha.dtype != pixels.dtype:
        raise TypeError(f"alpha dtype {alpha.dtype} differs from pixels dtype {pixels.dtype}")
    if int(alpha.min()) == int(np.iinfo(pixels.dtype).max):
        return pixels, squeeze, None, True
    return pixels, squeeze, alpha, False


class _Source:
    """LR tiles as float: grey replicated to RGB; with alpha, a batch of two (colour
    premultiplied by alpha, and alpha replicated to RGB) through the same model and tiles."""

    def __init__(self, pixels: np.ndarray, alpha: np.ndarray | None, device: torch.device):
        self.pixels, self.alpha, self.device = pixels, alpha, device
        self.peak = float(np.iinfo(pixels.dtype).max)
        self.batch = 1 if alpha is None else 2

    def fetch(self, y0: int, y1: int, x0: int, x1: int) -> Tensor:
        colour = to_float(self.pixels[y0:y1, x0:x1], self.device, self.peak).permute(2, 0, 1)
        colour = colour.expand(3, -1, -1) if colour.shape[0] == 1 else colour
        if self.alpha is None:
            return colour[None]
        a = to_float(self.alpha[y0:y1, x0:x1], self.device, self.peak)[None]
        return torch.stack([colour * a, a.expand(3, -1, -1)])


class _Sink:
    """Finished float rows ``(K, r, W)`` (colour channels, then alpha's) into the
    preallocated integer output: un-premultiplied, rounded and clipped."""

    def __init__(self, size: tuple[int, int], channels: int, dtype: np.dtype, with_alpha: bool):
        self.channels, self.dtype = channels, dtype
        self.peak = float(np.iinfo(dtype).max)
        self.pixels = np.empty((*size, channels), dtype=dtype)
        self.alpha = np.empty(size, dtype=dtype) if with_alpha else None
        self.row = 0

    def emit(self, rows: Tensor) -> None:
        colour, r0, r1 = rows[: self.channels], self.row, self.row + rows.shape[1]
        if self.alpha is not None:
            alpha_channels = rows[self.channels :]
            a = alpha_channels.mean(dim=0).clamp(0, 1)
            divisor = alpha_channels.clamp(0.5 / self.peak, 1.0)
            colour = torch.where(a > 0.5 / self.peak, colour / divisor, 0.0)
            quantise(a, self.peak, self.dtype, out=self.alpha[r0:r1])
        quantise(colour.permute(1, 2, 0), self.peak, self.dtype, out=self.pixels[r0:r1])
        self.row = r1


def _chunked(sink: Callable[[Tensor], None], channels: int) -> Callable[[Tensor], None]:
    """Band rows ``(batch, 3, r, W)`` -> ``sink((K, r', W))`` in chunks of about
    ``CHUNK_BYTES``; grey output is the mean of the three channels."""

    def emit(rows: Tensor) -> None:
        step = max(1, CHUNK_BYTES // (rows.shape[0] * 3 * rows.shape[3] * 4))
        for top in range(0, rows.shape[2], step):
            chunk = rows[:, :, top : top + step]
            if channels == 1:
                chunk = chunk.mean(dim=1, keepdim=True)
            sink(chunk.flatten(0, 1))

    return emit


def to_float(array: np.ndarray, device: torch.device, peak: float) -> Tensor:
    if array.dtype == np.uint8:  # move the bytes, convert on the device
        return torch.from_numpy(np.array(array)).to(device).float().div_(peak)  # (a copy)
    return torch.from_numpy(array.astype(np.float32)).to(device).div_(peak)


def quantise(x: Tensor, peak: float, dtype: np.dtype, out: np.ndarray | None = None) -> np.ndarray:
    """A [0, 1] float tensor as a ``dtype`` array of levels 0..peak (:func:`to_levels`).

    With ``out`` (a writable array of ``x``'s shape and ``dtype``) the levels are written
    there and ``out`` is returned; 8-bit levels go in by one float-to-byte copy (exact: they
    are whole numbers), with no intermediate byte tensor or second copy.
    """
    levels = to_levels(x, 8 if dtype == np.uint8 else 16)
    if out is None:
        out = np.empty(tuple(x.shape), dtype=dtype)
    if dtype == np.uint8:
        torch.from_numpy(out).copy_(levels)
    else:
        out[...] = levels.to(torch.int32).cpu().numpy()
    return out


def upscale_image(image: io.Image, model: SRModel | nn.Module, **kw: Any) -> io.Image:
    """Upscale an :class:`superres.core.io.Image`; ICC profile, EXIF and mode are kept.

    Keyword arguments are those of :func:`upscale_array` (``tile``, ``overlap``, ``device``,
    ``outscale``, ``progress``, ``ensemble``).
    """
    pixels, alpha = upscale_array(image.pixels, model, alpha=image.alpha, **kw)
    return dataclasses.replace(image, pixels=pixels, alpha=alpha)
