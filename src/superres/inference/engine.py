"""Tiled, blended, memory-bounded inference: the one place where models meet whole images.

Data flow of :func:`upscale_array` (one LR tile at a time, one band of output rows at a time)::

    uint8/uint16 tile -> float [0, 1] (premultiplied by alpha, grey -> RGB) -> model
      -> weighted into a float band -> finished rows -> [resize to outscale] -> un-premultiply
      -> round/clip into the preallocated uint8/uint16 output

Tiling (all sizes in LR pixels):

* The image is cut into a grid of *cores* of at most ``tile`` pixels (equal-sized along each
  axis, so there are no sliver tiles). The core boundaries are the seams.
* Each tile owns a *blend region*: its core widened by ``overlap // 2`` before and
  ``overlap - overlap // 2`` after each seam shared with a neighbour. Across the ``overlap``
  pixels around a seam the two tiles' weights follow complementary raised-cosine ramps
  (``cos^2`` / ``sin^2``, evaluated at output pixel centres); elsewhere a tile's weight is 1.
  The weights are separable and normalised by their sums, so every output pixel's weights
  add up to one and no weight image is ever stored.
* The model sees the blend region plus ``context`` more pixels on every side (clamped only at
  the true image border). For ``tiling == "exact"`` models ``context = receptive_field``, so
  every output pixel with non-zero weight was computed from exactly the same inputs as in
  a whole-image pass: tiled and untiled results agree to float rounding (~1e-6). Models with
  global operations (``"approximate"``, e.g. RCAN's channel attention, which pools over the
  whole input) get ``context = min(receptive_field, 32)``; their tiles see different pooled
  statistics, so they differ slightly from a whole-image pass (see :func:`default_overlap`).

Memory: the automatic tile size comes from a probe forward pass and the memory the device
has (see :func:`default_tile`); a tile that still runs out of memory is split in halves that
overlap by the context (exact for ``"exact"`` models) and later tiles are split up front,
instead of the whole run failing. Tiles are processed row-band by row-band. Only the float
rows of the band being finished (plus the ``overlap`` rows it shares with the next band) are
kept; finished rows are quantised straight into the preallocated output array, so the full-
resolution float image is never materialised. With ``outscale``, the finished rows stream
through a separable MATLAB-bicubic resampler (:func:`superres.core.resize.resize_weights`) that
keeps only the rows its kernel still needs; the result equals ``imresize(whole_sr,
size=...)`` up to float rounding.

CPU fast path (measured with ``superres bench``; README "Speed and deployment"): on the CPU
the tile loop runs convolutional models in channels-last layout (the module's weights are
converted once, in place) and, on Linux with glibc, raises malloc's mmap threshold once per
process (see :func:`tune_cpu_allocator`), so that each layer's activations reuse memory freed
by the previous layer instead of being fresh zero-filled pages; at 640x480 the two together
make the fast x4 model about 2.6x and the quality x4 model about 2.9x faster than the bare
NCHW module (``benchmarks/cpu_fast_path.py``).

Backends: the loop only calls ``model.module`` on float tensors, so any module with the
descriptor attributes runs through it; :class:`superres.inference.onnx_backend.OnnxModel` wraps an
onnxruntime session that way (``superres upscale --backend onnx``).
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import platform
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from superres.core.resize import imresize, resize_weights
from superres.errors import DeviceError
from superres.models import SRModel

if TYPE_CHECKING:  # pragma: no cover
    from superres.core import io

__all__ = [
    "default_overlap",
    "default_tile",
    "select_device",
    "release_cpu_memory",
    "set_threads",
    "tune_cpu_allocator",
    "upscale_array",
    "upscale_image",
    "upscale_tensor",
]

Progress = Callable[[int, int], None]

#: Blend width of approximate models (LR pixels).
APPROX_OVERLAP = 16
#: Context of approximate models is ``min(receptive_field, APPROX_CONTEXT)``.
APPROX_CONTEXT = 32
#: Bounds of the default blend width of exact models.
MIN_OVERLAP, MAX_OVERLAP = 2, 16
#: Activation memory one tile may use (estimated from a probe forward pass).
CPU_TILE_BYTES = 512 << 20  # or a quarter of the available RAM when that is less
MIN_CPU_TILE_BYTES = 16 << 20
MPS_TILE_BYTES = 1 << 30
CUDA_TILE_BYTES = 4 << 30
#: Float accumulator of one band of output rows (automatic tiles only).
BAND_BYTES = 128 << 20
#: Finished rows are converted to integers in chunks of about this many float bytes.
CHUNK_BYTES = 16 << 20
MIN_TILE, MAX_TILE = 32, 2048
#: An out-of-memory tile is halved until its pieces are this many pixels beyond the context.
MIN_SPLIT = 8

_PROBE_SIZE = 16
_bytes_per_pixel_cache: weakref.WeakKeyDictionary[nn.Module, float] = weakref.WeakKeyDictionary()
#: Modules whose weights were converted to channels-last by the CPU path.
_channels_last: weakref.WeakSet[nn.Module] = weakref.WeakSet()
#: glibc ``mallopt`` parameters and the values :func:`tune_cpu_allocator` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = 2 << 30
_allocator_state: list[bool | None] = [None]  # None: not tried yet; then whether it applied
_libc: list[ctypes.CDLL] = []  # glibc, once tune_cpu_allocator applied


# --------------------------------------------------------------------------- devices, threads


def select_device(device: str | torch.device | None = None) -> torch.device:
    """Resolve a device name, checking that it is usable.

    Args:
        device: ``None`` or ``"auto"`` (CUDA if available, else MPS, else CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``, ``"mps"``, or a :class:`torch.device`.

    Raises:
        DeviceError: not a device name this package supports, or a device that exists in
            torch but is not available on this machine (one line saying why and what to use
            instead).
    """
    if device is None or (isinstance(device, str) and device.strip().lower() in ("", "auto")):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(device.strip().lower())
    except (RuntimeError, ValueError, TypeError):
        raise DeviceError(
            f"unknown device {device!r} (expected auto, cpu, cuda, cuda:N or mps)"
        ) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no GPU found"
            raise DeviceError(
                f"device '{device}' requested but CUDA is not available ({why}); "
                "use 'cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(
                f"device '{device}' requested but only {count} CUDA device(s) exist "
                f"(cuda:0..cuda:{count - 1})"
            )
        return dev
    if dev.type == "mps":
        if not _mps_available():
            raise DeviceError(
                f"device '{device}' requested but MPS (Apple GPU) is not available; "
                "use 'cpu' or 'auto'"
            )
        return dev
    raise DeviceError(f"unsupported device {device!r} (expected auto, cpu, cuda, cuda:N or mps)")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def set_threads(n: int | None) -> None:
    """Set the number of CPU threads torch uses for inference (None: leave torch's default).

    Raises:
        ValueError: ``n`` is not a positive integer.
    """
    if n is None:
        return
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    torch.set_num_threads(int(n))


# --------------------------------------------------------------------------- CPU fast path


def tune_cpu_allocator() -> bool:
    """Let large CPU tensors reuse freed memory instead of fresh pages (glibc only; once).

    glibc serves allocations above a dynamic threshold (at most 32 MiB) with ``mmap`` and
    returns them to the system on ``free``, so every layer of a large tile writes into fresh
    pages that the kernel must fault in and zero: on this project's reference machine that
    doubled the time of the fast x4 model at 640x480. This raises the mmap threshold to
    1 GiB and the trim threshold to 2 GiB (``mallopt``), so freed activations stay in the
    heap and are reused by the next layer and the next tile, as PyTorch's CUDA caching
    allocator does on a GPU. The cost: memory freed by the process stays mapped to it (up to
    about the largest tile's activations) until :func:`release_cpu_memory` or exit.

    Called by the tile loop the first time it runs on the CPU. Set the environment variable
    ``SUPERRES_TUNE_MALLOC=0`` to leave the allocator alone. Process-wide and permanent.

    Returns:
        Whether the allocator is tuned (False on other C libraries and when disabled).
    """
    if _allocator_state[0] is not None:
        return bool(_allocator_state[0])
    applied = False
    if os.environ.get("SUPERRES_TUNE_MALLOC", "1") != "0" and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL("libc.so.6")
            applied = bool(
                libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
            )
            if applied:
                _libc.append(libc)
        except (OSError, AttributeError):
            applied = False
    _allocator_state[0] = applied
    return applied


def release_cpu_memory() -> None:
    """Give memory that the process freed back to the system (glibc ``malloc_trim``).

    With :func:`tune_cpu_allocator` in effect, memory freed after an upscale stays with the
    process for the next one (trimming after every call would make the fast x4 model at
    640x480 about 30 % slower: 0.155 -> 0.20 s). Call this in a long-lived process that
    wants it back, e.g. after a batch of images. No-op when the allocator is not tuned.
    """
    if _libc:
        _libc[0].malloc_trim(0)


def _use_channels_last(model: SRModel, device: torch.device) -> bool:
    """Convert a convolutional torch model's weights to channels-last once (CPU only).

    oneDNN's convolutions run faster on NHWC data (fast x4 at 640x480: 0.19 -> 0.15 s, quality
    x2: 1.5 -> 1.2 s, with the tuned allocator); the input tiles are converted to match.
    """
    module = model.module
    if device.type != "cpu":
        return False
    if module in _channels_last:
        return True
    if not any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in module.modules()):
        return False
    module.to(memory_format=torch.channels_last)
    _channels_last.add(module)
    return True


# --------------------------------------------------------------------------- defaults


def _as_srmodel(model: SRModel | nn.Module) -> SRModel:
    if isinstance(model, SRModel):
        return model
    if isinstance(model, nn.Module):
        return SRModel.from_module(model)
    raise TypeError(f"expected an SRModel or a module from create_model, got {type(model)}")


def default_overlap(model: SRModel | nn.Module) -> int:
    """Default blend width (LR pixels) around each seam between tiles.

    * ``"exact"`` models: ``receptive_field // 2`` bounded to [2, 16]. The context added
      around every tile (the full receptive field) already makes the result seamless; the
      blend band is a safety margin against float differences between convolution
      algorithms at different tile sizes and against a slightly under-reported receptive
      field, and costs little because it grows with the model's reach only up to 16.
    * ``"approximate"`` models (global pooling, e.g. RCAN): 16, with ``min(receptive_field,
      32)`` pixels of context. Their tiles pool channel statistics over the tile instead of
      the image, so results differ slightly from a whole-image pass: with random weights,
      ``rcan_small`` (default configuration, x2, 113x103 input, 24-pixel tiles) differs by
      at most 4e-5 (PSNR 108 dB); trained weights, whose attention varies more with
      content, differ more, and larger tiles (the automatic size) differ less. Use
      ``tile=0`` where bit-exactness matters more than memory.
    """
    model = _as_srmodel(model)
    if model.tiling == "exact":
        return min(max(model.receptive_field // 2, MIN_OVERLAP), MAX_OVERLAP)
    return APPROX_OVERLAP


def _context(model: SRModel) -> int:
    """LR pixels of real input added around each tile's blend region."""
    if model.tiling == "exact":
        return model.receptive_field
    return min(model.receptive_field, APPROX_CONTEXT)


def _bytes_per_lr_pixel(model: SRModel) -> float:
    """Peak activation bytes per LR input pixel, estimated from one small forward pass.

    Hooks record the largest output of any submodule; the peak is taken as three such
    tensors alive at once (input, output and a residual) in float32. A module that runs
    elsewhere (:class:`superres.inference.onnx_backend.OnnxModule`) states the figure as its
    ``bytes_per_lr_pixel`` attribute instead (measured on the torch model at export).
    """
    module = model.module
    declared = getattr(module, "bytes_per_lr_pixel", None)
    if declared is not None:  # runtimes without hookable layers (ONNX) state their estimate
        return float(declared)
    cached = _bytes_per_pixel_cache.get(module)
    if cached is not None:
        return cached
    mult = max(1, model.size_multiple)
    size = math.ceil(_PROBE_SIZE / mult) * mult
    largest = [0]

    def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, Tensor):
            largest[0] = max(largest[0], out.numel())

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    try:
        x = torch.zeros(1, model.in_channels, size, size, device=model.device, dtype=model.dtype)
        with torch.inference_mode(), _eval_mode(module):
            module(x)
    finally:
        for handle in handles:
            handle.remove()
    value = 3 * 4 * largest[0] / (size * size)
    _bytes_per_pixel_cache[module] = value
    return value


def available_memory() -> int | None:
    """Bytes of RAM the system can still give this process (Linux ``MemAvailable``, or
    psutil when installed); None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def _tile_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(min(free // 4, CUDA_TILE_BYTES))
    if device.type == "mps":
        return MPS_TILE_BYTES
    available = available_memory()
    if available is None:
        return CPU_TILE_BYTES
    return int(max(min(available // 4, CPU_TILE_BYTES), MIN_CPU_TILE_BYTES))


def default_tile(model: SRModel | nn.Module, device: str | torch.device | None = None) -> int:
    """Automatic tile (core) size in LR pixels for ``model`` on ``device``.

    The tile input (core plus overlap and context on each side) is sized so that the
    model's activations, estimated from a probe forward pass, fit the device budget
    (on CPU 512 MiB, or a quarter of the available RAM when that is less; 1 GiB on MPS; a
    quarter of free memory up to 4 GiB on CUDA); the result is a multiple of 8 in
    [32, 2048]. Should a tile still run out of memory, :func:`_run_model_or_split` splits it.
    """
    model = _as_srmodel(model)
    dev = model.device if device is None else select_device(device)
    side = math.isqrt(int(_tile_budget(dev) / max(_bytes_per_lr_pixel(model), 1.0)))
    margin = 2 * _context(model) + default_overlap(model)
    core = (side - margin) // 8 * 8
    return int(min(max(core, MIN_TILE), MAX_TILE))


# --------------------------------------------------------------------------- tiling plan


@dataclasses.dataclass(frozen=True)
class _Axis:
    """Tiling of one axis: cores, blend regions, model inputs and normalised weights."""

    length: int
    bounds: tuple[int, ...]  # core boundaries, 0 = b_0 < ... < b_n = length
    overlap: int
    context: int
    scale: int

    @classmethod
    def plan(cls, length: int, tile: int, overlap: int, context: int, scale: int) -> _Axis:
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


def _resolve_overlap(model: SRModel, tile: int, overlap: int | None) -> int:
    if overlap is None:
        overlap = default_overlap(model)
        return min(overlap, tile // 2) if tile > 0 else overlap
    if isinstance(overlap, bool) or int(overlap) != overlap or overlap < 0:
        raise ValueError(f"overlap must be a non-negative integer, got {overlap!r}")
    if tile > 0 and overlap > tile // 2:
        raise ValueError(f"overlap ({overlap}) must be at most half the tile size ({tile})")
    return int(overlap)


def _resolve_tile(
    model: SRModel, tile: int | None, device: torch.device, out_width: int, batch: int
) -> int:
    """The core size to use (0: a single tile)."""
    if tile is not None:
        if isinstance(tile, bool) or int(tile) != tile or tile < 0:
            raise ValueError(f"tile must be a non-negative integer (0: no tiling), got {tile!r}")
        return int(tile)
    auto = default_tile(model, device)
    # Bound the float band accumulator: (tile + overlap) * scale rows of the output width.
    row_bytes = out_width * batch * 3 * 4
    band_rows = BAND_BYTES // max(row_bytes, 1) // model.scale - default_overlap(model)
    return max(min(auto, band_rows // 8 * 8), MIN_TILE)


# --------------------------------------------------------------------------- the tile loop


class _EvalMode:
    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.training = module.training

    def __enter__(self) -> None:
        self.module.eval()

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.training)


def _eval_mode(module: nn.Module) -> _EvalMode:
    return _EvalMode(module)


def _run_model(model: SRModel, x: Tensor) -> Tensor:
    """Forward ``x`` (already on the compute device), padding to ``size_multiple``."""
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


def _run_model_or_split(model: SRModel, x: Tensor, cap: list[int]) -> Tensor:
    """:func:`_run_model`, splitting ``x`` in halves (recursively) when it runs out of memory.

    The halves overlap by the model's context, so for ``"exact"`` models the stitched
    result equals a single pass. ``cap[0]`` is the largest input (pixels) known to fit:
    after one out-of-memory error later tiles are split up front instead of failing again.

    Raises:
        MemoryError: even pieces of a few context widths do not fit.
    """
    h, w = x.shape[-2:]
    if h * w <= cap[0]:
        try:
            return _run_model(model, x)
        except Exception as err:
            if not _is_out_of_memory(err):
                raise
            _release(x.device)
            cap[0] = min(cap[0], h * w // 2)
    context = _context(model)
    dim = 3 if w >= h else 2
    n = x.shape[dim]
    if n < 2 * context + 2 * MIN_SPLIT:
        raise MemoryError(f"out of memory even for a {h}x{w} tile of {model.arch}")
    mid = n // 2
    start_b = max(mid - context, 0)
    first = _run_model_or_split(model, x.narrow(dim, 0, min(mid + context, n)), cap)
    second = _run_model_or_split(model, x.narrow(dim, start_b, n - start_b), cap)
    s = model.scale
    first = first.narrow(dim, 0, mid * s)
    second = second.narrow(dim, (mid - start_b) * s, (n - mid) * s)
    return torch.cat([first, second], dim=dim)


def _tile_loop(
    model: SRModel,
    fetch: Callable[[int, int, int, int], Tensor],
    size: tuple[int, int],
    batch: int,
    device: torch.device,
    tile: int,
    overlap: int,
    emit: Callable[[Tensor], None],
    progress: Progress | None,
) -> None:
    """Run the model tile by tile and ``emit`` finished float rows ``(batch, 3, r, W)``.

    Args:
        fetch: ``(y0, y1, x0, x1) -> (batch, 3, y1 - y0, x1 - x0)`` float input on ``device``.
        size: LR ``(h, w)``.
        emit: Called with consecutive bands of finished output rows, top to bottom.
    """
    h, w = size
    s = model.scale
    context = _context(model)
    rows = _Axis.plan(h, tile, overlap, context, s)
    cols = _Axis.plan(w, tile, overlap, context, s)
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
        channels_last = _use_channels_last(model, device)
    with torch.inference_mode(), _eval_mode(model.module):
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
                sr = _run_model_or_split(model, fetch(iy0, iy1, ix0, ix1), fits)
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


class _RowResizer:
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


def _has_tensors(model: SRModel) -> bool:
    return any(True for _ in model.module.parameters()) or any(True for _ in model.module.buffers())


def _output_size(h: int, w: int, model: SRModel, outscale: float | None) -> tuple[int, int]:
    if outscale is None:
        return h * model.scale, w * model.scale
    if not isinstance(outscale, (int, float)) or not math.isfinite(outscale) or outscale <= 0:
        raise ValueError(f"outscale must be a positive number, got {outscale!r}")
    return max(1, round(h * outscale)), max(1, round(w * outscale))


# --------------------------------------------------------------------------- public API


def upscale_tensor(
    lr: Tensor,
    model: SRModel | nn.Module,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    progress: Progress | None = None,
) -> Tensor:
    """Super-resolve a float batch with overlapping, blended tiles.

    Args:
        lr: ``(N, 3, h, w)`` or ``(3, h, w)`` float tensor, nominal range [0, 1].
        model: The model; it runs on the device of its weights (a parameter-free model runs
            on ``lr``'s device).
        tile: Core size in LR pixels; None: automatic; 0: the whole image in one pass.
        overlap: Blend width in LR pixels around each seam (None: :func:`default_overlap`).
        progress: Optional ``callback(done_tiles, total_tiles)``.

    Returns:
        Float32 ``(N, 3, h * scale, w * scale)`` (or unbatched) on ``lr``'s device, neither
        clamped nor rounded. For ``"exact"`` models it equals ``model(lr)`` up to float
        rounding whatever ``tile`` and ``overlap`` are.
    """
    model = _as_srmodel(model)
    batched = lr.ndim == 4
    if not batched:
        if lr.ndim != 3:
            raise ValueError(f"expected (N, 3, h, w) or (3, h, w), got {tuple(lr.shape)}")
        lr = lr[None]
    if lr.shape[1] != 3:
        raise ValueError(f"expected 3 channels, got {lr.shape[1]}")
    n, _, h, w = lr.shape
    s = model.scale
    device = model.device if _has_tensors(model) else lr.device
    tile = _resolve_tile(model, tile, device, w * s, n)
    overlap = _resolve_overlap(model, tile, overlap)
    out = torch.empty(n, 3, h * s, w * s, dtype=torch.float32, device=lr.device)
    row = [0]

    def fetch(y0: int, y1: int, x0: int, x1: int) -> Tensor:
        return lr[:, :, y0:y1, x0:x1].to(device=device, dtype=torch.float32)

    def emit(rows: Tensor) -> None:
        out[:, :, row[0] : row[0] + rows.shape[2]] = rows
        row[0] += rows.shape[2]

    _tile_loop(model, fetch, (h, w), n, device, tile, overlap, emit, progress)
    return out if batched else out[0]


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
        model: The model (moved in place to ``device`` when one is given).
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

    Returns:
        ``(pixels, alpha)`` at the output size, same dtype and layout; alpha is None when
        none was given.
    """
    model = _as_srmodel(model)
    if pixels.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"expected uint8 or uint16 pixels, got {pixels.dtype}")
    squeeze = pixels.ndim == 2
    if squeeze:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise ValueError(f"expected pixels H x W x C with C = 1 or 3, got {pixels.shape}")
    h, w, channels = pixels.shape
    if h < 1 or w < 1:
        raise ValueError(f"empty image {h}x{w}")
    peak = float(np.iinfo(pixels.dtype).max)
    if alpha is not None:
        if alpha.shape != (h, w):
            raise ValueError(f"alpha shape {alpha.shape} does not match the image {(h, w)}")
        if alpha.dtype != pixels.dtype:
            raise TypeError(f"alpha dtype {alpha.dtype} differs from pixels dtype {pixels.dtype}")
    opaque = alpha is not None and int(alpha.min()) == int(peak)
    use_alpha = alpha is not None and not opaque
    if device is None:
        dev = model.device
    else:
        dev = select_device(device)
        model.to(dev)
    out_h, out_w = _output_size(h, w, model, outscale)
    sr_h, sr_w = h * model.scale, w * model.scale
    batch = 2 if use_alpha else 1
    tile = _resolve_tile(model, tile, dev, max(sr_w, out_w), batch)
    overlap = _resolve_overlap(model, tile, overlap)

    out = np.empty((out_h, out_w, channels), dtype=pixels.dtype)
    alpha_out = np.empty((out_h, out_w), dtype=pixels.dtype) if use_alpha else None
    row = [0]

    def fetch(y0: int, y1: int, x0: int, x1: int) -> Tensor:
        colour = _to_float(pixels[y0:y1, x0:x1], dev, peak).permute(2, 0, 1)  # (C, th, tw)
        colour = colour.expand(3, -1, -1) if channels == 1 else colour
        if not use_alpha:
            return colour[None]
        a = _to_float(alpha[y0:y1, x0:x1], dev, peak)[None]
        return torch.stack([colour * a, a.expand(3, -1, -1)])

    def finish(rows: Tensor) -> None:  # (K, r, out_w): colour channels, then alpha channels
        colour = rows[:channels]
        if use_alpha:
            alpha_channels = rows[channels:]
            a = alpha_channels.mean(dim=0).clamp(0, 1)
            divisor = alpha_channels.clamp(0.5 / peak, 1.0)
            colour = torch.where(a > 0.5 / peak, colour / divisor, 0.0)
            alpha_out[row[0] : row[0] + rows.shape[1]] = _quantise(a, peak, pixels.dtype)
        q = _quantise(colour.permute(1, 2, 0), peak, pixels.dtype)
        out[row[0] : row[0] + rows.shape[1]] = q
        row[0] += rows.shape[1]

    sink = finish
    if (out_h, out_w) != (sr_h, sr_w):
        sink = _RowResizer((sr_h, sr_w), (out_h, out_w), finish)

    def emit(rows: Tensor) -> None:  # (batch, 3, r, W) -> (K, r, W), in chunks of rows
        step = max(1, CHUNK_BYTES // (rows.shape[0] * 3 * rows.shape[3] * 4))
        for top in range(0, rows.shape[2], step):
            chunk = rows[:, :, top : top + step]
            if channels == 1:
                chunk = chunk.mean(dim=1, keepdim=True)
            sink(chunk.flatten(0, 1))

    _tile_loop(model, fetch, (h, w), batch, dev, tile, overlap, emit, progress)
    assert row[0] == out_h, (row[0], out_h)
    if opaque:
        alpha_out = np.full((out_h, out_w), int(peak), dtype=pixels.dtype)
    if squeeze:
        out = out[:, :, 0]
    return out, alpha_out


def _to_float(array: np.ndarray, device: torch.device, peak: float) -> Tensor:
    if array.dtype == np.uint8:  # move the bytes, convert on the device
        return torch.from_numpy(np.array(array)).to(device).float().div_(peak)  # (a copy)
    return torch.from_numpy(array.astype(np.float32)).to(device).div_(peak)


def _quantise(x: Tensor, peak: float, dtype: np.dtype) -> np.ndarray:
    """Round half up and clip a [0, 1] float tensor to integers 0..peak (MATLAB's rule)."""
    # clamp(x * peak + 0.5, 0, peak) truncated equals floor(clamp(x, 0, 1) * peak + 0.5)
    q = (x * peak).add_(0.5).clamp_(0, peak)
    if dtype == np.uint8:
        return q.to(torch.uint8).cpu().numpy()
    return q.floor_().to(torch.int32).cpu().numpy().astype(dtype)


def upscale_image(image: io.Image, model: SRModel | nn.Module, **kw: Any) -> io.Image:
    """Upscale an :class:`superres.core.io.Image`; ICC profile, EXIF and mode are kept.

    Keyword arguments are those of :func:`upscale_array` (``tile``, ``overlap``, ``device``,
    ``outscale``, ``progress``).
    """
    pixels, alpha = upscale_array(image.pixels, model, alpha=image.alpha, **kw)
    return dataclasses.replace(image, pixels=pixels, alpha=alpha)
