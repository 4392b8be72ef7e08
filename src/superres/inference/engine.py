"""Tiled, blended, memory-bounded inference: the public face of the inference layer.

The work is split by stage: :mod:`.device` (devices, threads, allocator), :mod:`.plan`
(tile size, overlap, context), :mod:`.loop` (the tile loop) and :mod:`.pixels` (8/16-bit
arrays, alpha, outscale). This module gathers their public functions and describes the
scheme they implement.

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

from superres.inference.device import (
    available_memory,
    release_cpu_memory,
    select_device,
    set_threads,
    tune_cpu_allocator,
)
from superres.inference.loop import upscale_tensor
from superres.inference.pixels import upscale_array, upscale_image
from superres.inference.plan import default_overlap, default_tile

__all__ = [
    "available_memory",
    "default_overlap",
    "default_tile",
    "release_cpu_memory",
    "select_device",
    "set_threads",
    "tune_cpu_allocator",
    "upscale_array",
    "upscale_image",
    "upscale_tensor",
]
