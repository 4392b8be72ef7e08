"""The tile loop: run a model over an image tile by tile and blend the tiles.

:func:`tile_loop` is the one place where a model meets a whole image; :func:`upscale_tensor`
(float in, float out) and :func:`superres.inference.pixels.upscale_array` (8/16-bit in and
out) feed it. See :mod:`superres.inference.engine` for the tiling scheme and memory bounds.

Thread safety: the loop never changes the caller's model in a way another call can observe.
The CPU path's one-time conversion of the weights to channels-last runs under a lock, before
any tile of that module is computed, so concurrent calls on one model see either the module
before conversion (and wait) or after it; ``eval()`` is set only on a module in training mode
and restored afterwards.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Callable

import torch
from torch import Tensor, nn

from superres.errors import ConfigError, SlowTileWarning
from superres.inference.device import tune_cpu_allocator
from superres.inference.plan import (
    Axis,
    as_srmodel,
    eval_mode,
    model_context,
    resolve_overlap,
    resolve_tile,
)
from superres.models import SRModel

__all__ = [
    "dihedral",
    "undo_dihedral",
    "has_tensors",
    "is_channels_last",
    "run_model",
    "tile_loop",
    "upscale_tensor",
    "use_channels_last",
]

Progress = Callable[[int, int], None]

#: An out-of-memory tile is halved until its pieces are this many pixels beyond the context.
MIN_SPLIT = 8
#: Model input over image pixels above which a tile size is reported as slow.
SLOW_TILE_WORK = 8.0
#: Modules whose weights were converted to channels-last by the CPU path.
_channels_last: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_channels_last_lock = threading.Lock()


def use_channels_last(model: SRModel, device: torch.device) -> bool:
    """Convert a convolutional torch model's weights to channels-last once (CPU only).

    oneDNN's convolutions run faster on NHWC data (fast x4 at 640x480: 0.19 -> 0.15 s, quality
    x2: 1.5 -> 1.2 s, with the tuned allocator); the input tiles are converted to match.

    The conversion changes only the memory layout (every value and result stays the same)
    and runs under a lock, so a concurrent call on the same module waits for it rather than
    running on half-converted weights.
    """
    module = model.module
    if device.type != "cpu":
        return False
    if module in _channels_last:
        return True
    if not any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in module.modules()):
        return False
    with _channels_last_lock:
        if module not in _channels_last:
            module.to(memory_format=torch.channels_last)
            _channels_last.add(module)
    return True


def is_channels_last(module: nn.Module) -> bool:
    """Whether :func:`use_channels_last` converted ``module``."""
    return module in _channels_last


def has_tensors(model: SRModel) -> bool:
    return any(True for _ in model.module.parameters()) or any(True for _ in model.module.buffers())


def run_model(model: SRModel, x: Tensor, ensemble: bool = False) -> Tensor:
    """Forward ``x`` (already on the compute device), padding to ``size_multiple``.

    With ``ensemble``, the geometric self-ensemble (Lim et al., EDSR+, 2017): the mean of
    ``T^-1(model(T(x)))`` over the 8 flips and 90-degree rotations ``T``, one pass at a time,
    so a tile's memory is that of one pass plus the output accumulator.
    """
    if not ensemble:
        return _forward(model, x)
    total = None
    for transform in range(8):
        y = undo_dihedral(_forward(model, dihedral(x, transform)), transform)
        total = y if total is None else total.add_(y)
    return total.div_(8)


def dihedral(x: Tensor, transform: int) -> Tensor:
    """One of the 8 symmetries of the square on ``(..., H, W)``: bit 0 flips H, bit 1 flips W,
    bit 2 transposes (after the flips); 0 is the identity."""
    if transform & 1:
        x = x.flip(-2)
    if transform & 2:
        x = x.flip(-1)
    if transform & 4:
        x = x.transpose(-2, -1)
    return x


def undo_dihedral(x: Tensor, transform: int) -> Tensor:
    """The inverse of :func:`dihedral` with the same ``transform``."""
    if transform & 4:
        x = x.transpose(-2, -1)
    if transform & 2:
        x = x.flip(-1)
    if transform & 1:
        x = x.flip(-2)
    return x


def _forward(model: SRModel, x: Tensor) -> Tensor:
    h, w = x.shape[-2:]
    mult = max(1, model.size_multiple)
    pad_h, pad_w = (-h) % mult, (-w) % mult
    if pad_h or pad_w:
        x = nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    x = x.to(model.dtype)
    if model.module in _channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = model.module(x)
    s = model.scale
    if y.shape[-2:] != (x.shape[-2] * s, x.shape[-1] * s) or y.shape[1] != 3:
        raise RuntimeError(
            f"{model.arch}: expected output (N, 3, {x.shape[-2] * s}, {x.shape[-1] * s}) "
            f"from input {tuple(x.shape)}, got {tuple(y.shape)}"
        )
    return y[..., : h * s, : w * s].float()


def _is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":  # pragma: no cover - no MPS in CI
        torch.mps.empty_cache()


def run_model_or_split(model: SRModel, x: Tensor, cap: list[int], ensemble: bool = False) -> Tensor:
    """:func:`run_model`, splitting ``x`` in halves (recursively) when it runs out of memory.

    The halves overlap by the model's context, so for ``"exact"`` models the stitched
    result equals a single pass. ``cap[0]`` is the largest input (pixels) known to fit:
    after one out-of-memory error later tiles are split up front instead of failing again.

    Raises:
        MemoryError: even pieces of a few context widths do not fit.
    """
    h, w = x.shape[-2:]
    if h * w <= cap[0]:
        try:
            return run_model(model, x, ensemble)
        except Exception as err:
            if not _is_out_of_memory(err):
                raise
            _release(x.device)
            cap[0] = min(cap[0], h * w // 2)
    context = model_context(model)
    dim = 3 if w >= h else 2
    n = x.shape[dim]
    if n < 2 * context + 2 * MIN_SPLIT:
        raise MemoryError(f"out of memory even for a {h}x{w} tile of {model.arch}")
    mid = n // 2
    start_b = max(mid - context, 0)
    first = run_model_or_split(model, x.narrow(dim, 0, min(mid + context, n)), cap, ensemble)
    second = run_model_or_split(model, x.narrow(dim, start_b, n - start_b), cap, ensemble)
    s = model.scale
    first = first.narrow(dim, 0, mid * s)
    second = second.narrow(dim, (mid - start_b) * s, (n - mid) * s)
    return torch.cat([first, second], dim=dim)


def input_pixels(axis: Axis) -> int:
    """LR pixels the model reads along ``axis``, context and overlaps included."""
    return sum(b - a for a, b in map(axis.input_span, range(axis.count)))


def _check_work(rows: Axis, cols: Axis, tile: int, context: int) -> None:
    """Warn when the tiles' inputs add up to many times the image (tiny tiles around a
    wide context: each tile computes mostly the context it shares with its neighbours)."""
    work = input_pixels(rows) * input_pixels(cols) / (rows.length * cols.length)
    if work > SLOW_TILE_WORK:
        warnings.warn(
            f"tile {tile} is small for this model (it reads {context} pixels of context around "
            f"each tile), so it computes {work:.0f}x the image's pixels; a larger tile, or none, "
            "is much faster",
            SlowTileWarning,
            stacklevel=3,
        )


def tile_loop(
    model: SRModel,
    fetch: Callable[[int, int, int, int], Tensor],
    size: tuple[int, int],
    batch: int,
    device: torch.device,
    tile: int,
    overlap: int,
    emit: Callable[[Tensor], None],
    progress: Progress | None,
    ensemble: bool = False,
) -> None:
    """Run the model tile by tile and ``emit`` finished float rows ``(batch, 3, r, W)``.

    Args:
        fetch: ``(y0, y1, x0, x1) -> (batch, 3, y1 - y0, x1 - x0)`` float input on ``device``.
        size: LR ``(h, w)``.
        emit: Called with consecutive bands of finished output rows, top to bottom.
    """
    h, w = size
    s = model.scale
    context = model_context(model)
    rows = Axis.plan(h, tile, overlap, context, s)
    cols = Axis.plan(w, tile, overlap, context, s)
    _check_work(rows, cols, tile, context)
    row_weights = [t.to(device) for t in rows.weights()]
    col_weights = [t.to(device) for t in cols.weights()]
    total = rows.count * cols.count
    done = 0
    if progress is not None:
        progress(0, total)
    out_w = w * s
    fits = [h * w]  # largest model input known to fit (lowered on out-of-memory errors)
    carry: Tensor | None = None
    channels_last = False
    if device.type == "cpu":
        tune_cpu_allocator()
        # outside inference mode: the converted weights stay normal (trainable) tensors
        channels_last = use_channels_last(model, device)
    with torch.inference_mode(), eval_mode(model.module):
        for bi in range(rows.count):
            ry0, ry1 = rows.region(bi)
            iy0, iy1 = rows.input_span(bi)
            band: Tensor | None = None  # a single tile is the whole output: nothing to blend
            if total > 1:  # bands in the model's output layout: blending reads memory in order
                if channels_last:
                    band = torch.zeros(batch, (ry1 - ry0) * s, out_w, 3, device=device)
                    band = band.permute(0, 3, 1, 2)
                else:
                    band = torch.zeros(batch, 3, (ry1 - ry0) * s, out_w, device=device)
            if carry is not None:
                band[:, :, : carry.shape[2]] = carry
            wy = row_weights[bi][:, None]
            for bj in range(cols.count):
                rx0, rx1 = cols.region(bj)
                ix0, ix1 = cols.input_span(bj)
                sr = run_model_or_split(model, fetch(iy0, iy1, ix0, ix1), fits, ensemble)
                crop = sr[..., (ry0 - iy0) * s : (ry1 - iy0) * s, (rx0 - ix0) * s : (rx1 - ix0) * s]
                if band is None:
                    band = crop
                else:
                    band[..., rx0 * s : rx1 * s].addcmul_(crop, wy * col_weights[bj][None, :])
                del sr, crop
                done += 1
                if progress is not None:
                    progress(done, total)
            finished = (rows.region(bi + 1)[0] - ry0) * s if bi + 1 < rows.count else band.shape[2]
            emit(band[:, :, :finished])
            carry = band[:, :, finished:].clone() if finished < band.shape[2] else None
            del band


def upscale_tensor(
    lr: Tensor,
    model: SRModel | nn.Module,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    progress: Progress | None = None,
    ensemble: bool = False,
) -> Tensor:
    """Super-resolve a float batch with overlapping, blended tiles.

    Args:
        lr: ``(N, 3, h, w)`` or ``(3, h, w)`` float tensor, nominal range [0, 1].
        model: The model; it runs on the device of its weights (a parameter-free model runs
            on ``lr``'s device).
        tile: Core size in LR pixels; None: automatic; 0: the whole image in one pass.
        overlap: Blend width in LR pixels around each seam (None: :func:`default_overlap`).
        progress: Optional ``callback(done_tiles, total_tiles)``.
        ensemble: Average over the 8 flips and rotations (8x the compute, same memory
            bounds; see :func:`run_model`).

    Returns:
        Float32 ``(N, 3, h * scale, w * scale)`` (or unbatched) on ``lr``'s device, neither
        clamped nor rounded. For ``"exact"`` models it equals ``model(lr)`` up to float
        rounding whatever ``tile`` and ``overlap`` are.
    """
    model = as_srmodel(model)
    batched = lr.ndim == 4
    if not batched:
        if lr.ndim != 3:
            raise ConfigError(f"expected (N, 3, h, w) or (3, h, w), got {tuple(lr.shape)}")
        lr = lr[None]
    if lr.shape[1] != 3:
        raise ConfigError(f"expected 3 channels, got {lr.shape[1]}")
    n, _, h, w = lr.shape
    s = model.scale
    device = model.device if has_tensors(model) else lr.device
    tile = resolve_tile(model, tile, device, w * s, n)
    overlap = resolve_overlap(model, tile, overlap)
    out = torch.empty(n, 3, h * s, w * s, dtype=torch.float32, device=lr.device)
    row = [0]

    def fetch(y0: int, y1: int, x0: int, x1: int) -> Tensor:
        return lr[:, :, y0:y1, x0:x1].to(device=device, dtype=torch.float32)

    def emit(rows: Tensor) -> None:
        out[:, :, row[0] : row[0] + rows.shape[2]] = rows
        row[0] += rows.shape[2]

    tile_loop(model, fetch, (h, w), n, device, tile, overlap, emit, progress, ensemble)
    return out if batched else out[0]
