"""The tile plan: how large a tile is, how far tiles overlap, what context each sees.

See :mod:`superres.inference.engine` for the tiling scheme. Everything here is a pure
function of the model's descriptor, its device's memory and the image size, except the
probe forward pass of :func:`bytes_per_lr_pixel` (cached per module).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
import weakref
from typing import Any

import torch
from torch import Tensor, nn

from superres.core.tiles import Axis
from superres.errors import ConfigError
from superres.inference.device import available_memory, select_device
from superres.models import SRModel

__all__ = [
    "Axis",
    "as_srmodel",
    "bytes_per_lr_pixel",
    "default_overlap",
    "default_tile",
    "eval_mode",
    "model_context",
    "on_device",
    "resolve_overlap",
    "resolve_tile",
    "tile_budget",
]

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
MIN_TILE, MAX_TILE = 32, 2048

_PROBE_SIZE = 16
_bytes_per_pixel_cache: weakref.WeakKeyDictionary[nn.Module, float] = weakref.WeakKeyDictionary()
_probe_lock = threading.Lock()


class EvalMode:
    """Evaluation mode for the duration of a ``with`` block, touching only a module that is
    in training mode (a module already in evaluation mode, the usual case for inference, is
    left alone, so concurrent calls on one model never flip each other's flag)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.training = module.training

    def __enter__(self) -> None:
        if self.training:
            self.module.eval()

    def __exit__(self, *exc: object) -> None:
        if self.training:
            self.module.train(True)


def eval_mode(module: nn.Module) -> EvalMode:
    """:class:`EvalMode` of ``module``."""
    return EvalMode(module)


def as_srmodel(model: SRModel | nn.Module) -> SRModel:
    if isinstance(model, SRModel):
        return model
    if isinstance(model, nn.Module):
        return SRModel.from_module(model)
    raise TypeError(f"expected an SRModel or a module from create_model, got {type(model)}")


def on_device(model: SRModel, device: torch.device) -> SRModel:
    """A copy of ``model`` with its weights on ``device`` (the caller's model is not moved)."""
    module = copy.deepcopy(model.module).to(device)
    return dataclasses.replace(model, module=module, metadata=dict(model.metadata))


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
    model = as_srmodel(model)
    if model.tiling == "exact":
        return min(max(model.receptive_field // 2, MIN_OVERLAP), MAX_OVERLAP)
    return APPROX_OVERLAP


def model_context(model: SRModel) -> int:
    """LR pixels of real input added around each tile's blend region."""
    if model.tiling == "exact":
        return model.receptive_field
    return min(model.receptive_field, APPROX_CONTEXT)


def bytes_per_lr_pixel(model: SRModel) -> float:
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
        with torch.inference_mode(), eval_mode(module):
            module(x)
    finally:
        for handle in handles:
            handle.remove()
    value = 3 * 4 * largest[0] / (size * size)
    _bytes_per_pixel_cache[module] = value
    return value


def tile_budget(device: torch.device) -> int:
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
    [32, 2048]. Should a tile still run out of memory, :func:`run_model_or_split` splits it.
    """
    model = as_srmodel(model)
    dev = model.device if device is None else select_device(device)
    side = math.isqrt(int(tile_budget(dev) / max(bytes_per_lr_pixel(model), 1.0)))
    margin = 2 * model_context(model) + default_overlap(model)
    core = (side - margin) // 8 * 8
    return int(min(max(core, MIN_TILE), MAX_TILE))


# --------------------------------------------------------------------------- tiling plan


def resolve_overlap(model: SRModel, tile: int, overlap: int | None) -> int:
    if overlap is None:
        overlap = default_overlap(model)
        return min(overlap, tile // 2) if tile > 0 else overlap
    if isinstance(overlap, bool) or int(overlap) != overlap or overlap < 0:
        raise ConfigError(f"overlap must be a non-negative integer, got {overlap!r}")
    if tile > 0 and overlap > tile // 2:
        raise ConfigError(f"overlap ({overlap}) must be at most half the tile size ({tile})")
    return int(overlap)


def resolve_tile(
    model: SRModel, tile: int | None, device: torch.device, out_width: int, batch: int
) -> int:
    """The core size to use (0: a single tile)."""
    if tile is not None:
        if isinstance(tile, bool) or int(tile) != tile or tile < 0:
            raise ConfigError(f"tile must be a non-negative integer (0: no tiling), got {tile!r}")
        return int(tile)
    auto = default_tile(model, device)
    # Bound the float band accumulator: (tile + overlap) * scale rows of the output width.
    row_bytes = out_width * batch * 3 * 4
    band_rows = BAND_BYTES // max(row_bytes, 1) // model.scale - default_overlap(model)
    return max(min(auto, band_rows // 8 * 8), MIN_TILE)
