"""MATLAB-compatible bicubic resampling, batched in torch.

This is the one resampler of the project: LR synthesis for training and evaluation, the
``bicubic`` baseline, pre-upsampling models (SRCNN, VDSR) and ``--outscale`` all call it.

It reproduces MATLAB's ``imresize(img, scale, 'bicubic')`` (default ``Antialiasing=true``):

* the cubic convolution kernel with ``a = -0.5`` (Keys, 1981);
* when shrinking (scale < 1) the kernel is widened by ``1 / scale`` and its amplitude scaled
  by ``scale``, which low-pass filters the input (antialiasing);
* sample positions ``u = x / scale + 0.5 * (1 - 1 / scale)`` (1-based, pixel centres);
* borders handled by symmetric padding (``aux = [1..n, n..1]``);
* weights of each output sample normalised to sum to one;
* the dimension with the smaller scale factor is resized first (rows first on a tie).

The functions work on floating-point tensors ``(..., H, W)`` and neither round nor clamp:
use :func:`quantize` to mimic MATLAB's conversion back to ``uint8``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["cubic", "imresize", "quantize", "resize_weights", "to_levels"]

# Above this many entries the dense (out x in) weight matrix is replaced by a gather.
_DENSE_LIMIT = 1 << 22


def cubic(x: Tensor) -> Tensor:
    """Keys' cubic convolution kernel with ``a = -0.5`` (MATLAB's ``cubic``)."""
    absx = x.abs()
    absx2 = absx * absx
    absx3 = absx2 * absx
    near = (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((absx > 1) & (absx <= 2))
    return near + far


def resize_weights(
    in_length: int, out_length: int, scale: float, antialias: bool = True
) -> tuple[Tensor, Tensor]:
    """Sample indices and weights of one dimension, as MATLAB's ``contributions``.

    Args:
        in_length: Input length along the dimension.
        out_length: Output length along the dimension.
        scale: Scale factor (output / input) used for the kernel and sample positions.
        antialias: Widen the kernel when shrinking (MATLAB's default).

    Returns:
        ``(indices, weights)``, both ``(out_length, P)``: 0-based input indices (already
        mirrored into range) and float64 weights whose rows sum to one.
    """
    if in_length < 1 or out_length < 1:
        raise ValueError(f"cannot resize a length of {in_length} to {out_length}")
    # Cached tensors must be ordinary tensors even when first built under inference_mode,
    # or a later autograd pass through imresize (training) could not save them.
    with torch.inference_mode(False):
        return _resize_weights(in_length, out_length, float(scale), bool(antialias))


@lru_cache(maxsize=256)
def _resize_weights(
    in_length: int, out_length: int, scale: float, antialias: bool
) -> tuple[Tensor, Tensor]:
    kernel_width = 4.0
    shrink = scale < 1 and antialias
    if shrink:
        kernel_width /= scale
    x = torch.arange(1, out_length + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * cubic(scale * distance) if shrink else cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Symmetric padding: 1-based index i maps into aux = [1..n, n..1].
    period = 2 * in_length
    mirrored = torch.remainder(indices - 1, period).long()
    mirrored = torch.where(mirrored >= in_length, period - 1 - mirrored, mirrored)
    # Drop tap columns that are zero for every output sample (as MATLAB does).
    keep = weights.abs().sum(dim=0) > 0
    return mirrored[:, keep].contiguous(), weights[:, keep].contiguous()


def _resize_last_dim(x: Tensor, out_length: int, scale: float, antialias: bool) -> Tensor:
    in_length = x.shape[-1]
    indices, weights = resize_weights(in_length, out_length, float(scale), antialias)
    if in_length * out_length <= _DENSE_LIMIT:
        # Dense matrix: duplicate mirrored indices accumulate, a single fast matmul.
        matrix = torch.zeros(out_length, in_length, dtype=torch.float64)
        matrix.scatter_add_(1, indices, weights)
        return x @ matrix.to(dtype=x.dtype, device=x.device).T
    idx = indices.to(x.device)
    w = weights.to(dtype=x.dtype, device=x.device)
    out = x.new_zeros((*x.shape[:-1], out_length))
    for tap in range(idx.shape[1]):  # memory stays O(output) instead of O(output * taps)
        out += x[..., idx[:, tap]] * w[:, tap]
    return out


def _resize_dim(x: Tensor, dim: int, out_length: int, scale: float, antialias: bool) -> Tensor:
    if dim == x.ndim - 1:
        return _resize_last_dim(x, out_length, scale, antialias)
    return _resize_last_dim(x.transpose(dim, -1), out_length, scale, antialias).transpose(dim, -1)


def imresize(
    x: Tensor,
    scale: float | tuple[float, float] | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> Tensor:
    """Resize the last two dimensions of ``x`` exactly as MATLAB's bicubic ``imresize``.

    Args:
        x: Floating-point tensor ``(..., H, W)``; integer tensors are converted to float32.
        scale: Scale factor, or ``(scale_h, scale_w)``. The output size is
            ``ceil(H * scale_h) x ceil(W * scale_w)``, as in MATLAB.
        size: Output ``(H, W)``; the scale per dimension is then ``out / in``.
            Exactly one of ``scale`` and ``size`` must be given.
        antialias: Low-pass filter when shrinking (MATLAB's default). Has no effect when
            enlarging.

    Returns:
        The resized tensor, same dtype and device, not rounded or clamped.
    """
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    if x.ndim < 2:
        raise ValueError(f"expected a tensor (..., H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    in_h, in_w = x.shape[-2:]
    if size is not None:
        out_h, out_w = int(size[0]), int(size[1])
        scale_h, scale_w = out_h / in_h, out_w / in_w
    else:
        scale_h, scale_w = (scale, scale) if isinstance(scale, (int, float)) else scale
        if scale_h <= 0 or scale_w <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        # Round away float noise (e.g. 0.1 * 30 = 3.0000000000000004) before the ceil.
        out_h = math.ceil(round(in_h * scale_h, 8))
        out_w = math.ceil(round(in_w * scale_w, 8))
    if out_h < 1 or out_w < 1:
        raise ValueError(f"output size {out_h}x{out_w} is empty")
    order = [(-2, out_h, scale_h), (-1, out_w, scale_w)]
    if scale_w < scale_h:
        order.reverse()
    for dim, length, s in order:
        if length != x.shape[dim] or s != 1:
            x = _resize_dim(x, x.ndim + dim, length, s, antialias)
    return x


def to_levels(x: Tensor, bits: int = 8) -> Tensor:
    """The integer levels ``0 .. 2**bits - 1`` of a [0, 1] float tensor, as MATLAB converts to
    ``uint8``/``uint16``: clamped, rounded half up. The one rounding of the project (evaluation,
    LR synthesis and the pixels the inference engine writes all go through it).

    Returns a float tensor holding whole numbers (``.to(torch.uint8)`` is exact).
    """
    peak = float((1 << bits) - 1)
    # floor(clamp(x * peak + 0.5, 0, peak)) equals floor(clamp(x, 0, 1) * peak + 0.5)
    return (x * peak).add_(0.5).clamp_(0, peak).floor_()


def quantize(x: Tensor, bits: int = 8) -> Tensor:
    """Round a [0, 1] tensor to the grid of an unsigned ``bits``-bit image, as MATLAB does:
    :func:`to_levels`, mapped back to [0, 1]."""
    return to_levels(x, bits) / float((1 << bits) - 1)
