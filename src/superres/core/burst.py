"""The benchmark protocol for synthetic bursts (multi-image SR): HR image -> N shifted LR frames.

Protocol, for an HR image ``hr`` ``(C, H, W)`` in [0, 1], an integer ``scale`` ``s`` and
``frames`` ``N``:

1. Common region. ``Hc = ((H - s) // s) * s`` and ``Wc = ((W - s) // s) * s``: the largest
   multiples of ``s`` that leave ``s - 1`` spare rows/columns for every shift. The image must
   give ``Hc, Wc >= s`` (so ``H, W >= 2 s``).
2. Shifts. Frame 0 is unshifted, ``(dy_0, dx_0) = (0, 0)``. Frame ``k >= 1`` gets an integer
   HR shift ``(dy_k, dx_k)`` drawn uniformly from ``{0, ..., s - 1}^2`` by
   ``numpy.random.default_rng(seed).integers(0, s, size=(N - 1, 2))`` (first column ``dy``).
3. Translation. Frame ``k`` before downscaling is the crop ``hr[:, dy:dy + Hc, dx:dx + Wc]``:
   its pixel ``(y, x)`` is ``hr`` at ``(y + dy, x + dx)``. Frame 0 is ``hr[:, 0:Hc, 0:Wc]``,
   returned as :attr:`Burst.reference_hr`, the ground truth on frame 0's grid.
4. Downscaling by ``s``: ``"area"`` is the ``s x s`` box average (``avg_pool2d``), ``"bicubic"``
   is MATLAB's antialiased bicubic :func:`~superres.core.resize.imresize` by ``1 / s``. Both
   give frames ``(C, Hc / s, Wc / s)``.
5. Noise (optional): Gaussian, standard deviation ``noise`` on the [0, 1] scale, drawn from the
   same generator after the shifts (one ``(N, C, h, w)`` draw), added before rounding.
6. Rounding: :func:`~superres.core.resize.quantize` to the 8-bit grid (clamped to [0, 1]).

The true motion of frame ``k`` in LR pixels is ``(dy_k, dx_k) / s`` (:attr:`Burst.shifts`), with
the sign convention of :func:`superres.core.registration.phase_correlation`:
``frame_k(y, x) ~ frame_0(y + dy, x + dx)``. Shifts lie in ``[0, 1)`` and are multiples of
``1 / s``.

Scoring: the fused SR image (``(C, Hc, Wc)``, on frame 0's HR grid) is compared with
``reference_hr`` by PSNR on the BT.601 Y channel with a :data:`burst_psnr_border` (16) pixel
border cropped (:func:`score_burst`, which calls :func:`superres.core.metrics.psnr`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from superres.core.metrics import psnr
from superres.core.resize import imresize, quantize
from superres.errors import ConfigError

__all__ = ["DOWNSCALERS", "Burst", "burst_psnr_border", "downscale", "make_burst", "score_burst"]

burst_psnr_border = 16
"""Pixels cropped from every border of the HR grid when a fused burst is scored."""

DOWNSCALERS = ("area", "bicubic")


@dataclass(frozen=True)
class Burst:
    """A synthetic burst and its ground truth.

    Attributes:
        frames: ``(N, C, h, w)`` LR frames on the 8-bit grid in [0, 1]; frame 0 is the reference.
        shifts: ``(N, 2)`` float64 true motion ``(dy, dx)`` of each frame in LR pixels
            (``hr_shifts / scale``); row 0 is ``(0, 0)``.
        hr_shifts: ``(N, 2)`` int64 integer HR shifts ``(dy, dx)``.
        reference_hr: ``(C, h * scale, w * scale)`` HR ground truth on frame 0's grid.
        scale: The downscaling factor.
        downscaler: ``"area"`` or ``"bicubic"``.
        noise: The Gaussian noise sigma (on [0, 1]) added before rounding.
    """

    frames: Tensor
    shifts: Tensor
    hr_shifts: Tensor
    reference_hr: Tensor
    scale: int
    downscaler: str
    noise: float


def downscale(hr: Tensor, scale: int, downscaler: Literal["area", "bicubic"] = "area") -> Tensor:
    """Downscale ``hr`` ``(..., H, W)`` (``H``, ``W`` multiples of ``scale``) by ``scale``.

    ``"area"``: the ``scale x scale`` box average; ``"bicubic"``: MATLAB's antialiased bicubic
    ``imresize(hr, 1 / scale)``. Not rounded.

    Raises:
        ConfigError: an unknown downscaler.
    """
    if downscaler == "area":
        shape = hr.shape
        flat = hr.reshape(-1, 1, *shape[-2:])
        out = F.avg_pool2d(flat, kernel_size=scale, stride=scale)
        return out.reshape(*shape[:-2], *out.shape[-2:])
    if downscaler == "bicubic":
        return imresize(hr, 1.0 / scale)
    raise ConfigError(
        f"downscaler: unknown value {downscaler!r} (expected one of {', '.join(DOWNSCALERS)})"
    )


def _check(hr: Tensor, scale: int, frames: int, downscaler: str, noise: float) -> None:
    if not isinstance(hr, Tensor) or hr.ndim != 3 or not hr.is_floating_point():
        shape = tuple(hr.shape) if isinstance(hr, Tensor) else type(hr).__name__
        raise ConfigError(f"hr: expected a float tensor (C, H, W) in [0, 1], got {shape}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ConfigError(f"scale: expected an integer >= 1, got {scale!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ConfigError(f"frames: expected an integer >= 1, got {frames!r}")
    if downscaler not in DOWNSCALERS:
        raise ConfigError(
            f"downscaler: unknown value {downscaler!r} (expected one of {', '.join(DOWNSCALERS)})"
        )
    if not np.isfinite(noise) or noise < 0:
        raise ConfigError(f"noise: expected a finite sigma >= 0, got {noise!r}")
    h, w = hr.shape[-2:]
    if h < 2 * scale or w < 2 * scale:
        raise ConfigError(
            f"hr: image {h}x{w} too small for a burst at scale {scale} "
            f"(needs at least {2 * scale}x{2 * scale})"
        )


def make_burst(
    hr: Tensor,
    scale: int,
    frames: int,
    *,
    downscaler: Literal["area", "bicubic"] = "area",
    noise: float = 0.0,
    seed: int | np.random.Generator = 0,
) -> Burst:
    """Make a synthetic burst of ``frames`` LR frames from ``hr`` (the protocol of this module).

    Args:
        hr: ``(C, H, W)`` float HR image in [0, 1], ``H, W >= 2 * scale``.
        scale: Integer downscaling factor ``>= 1``.
        frames: Number of frames ``N >= 1`` (frame 0 is the unshifted reference).
        downscaler: ``"area"`` (box average) or ``"bicubic"`` (MATLAB ``imresize``).
        noise: Gaussian sigma on the [0, 1] scale, added before rounding (0: none).
        seed: Seed of ``numpy.random.default_rng``, or a generator (which is advanced).

    Returns:
        The :class:`Burst`. Same seed and arguments give the same burst.

    Raises:
        ConfigError: an invalid argument (one line naming it).
    """
    _check(hr, scale, frames, downscaler, noise)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    h, w = hr.shape[-2:]
    hc, wc = (h - scale) // scale * scale, (w - scale) // scale * scale
    hr_shifts = np.zeros((frames, 2), dtype=np.int64)
    if frames > 1:
        hr_shifts[1:] = rng.integers(0, scale, size=(frames - 1, 2))
    crops = torch.stack([hr[:, dy : dy + hc, dx : dx + wc] for dy, dx in hr_shifts.tolist()])
    lr = downscale(crops, scale, downscaler)
    if noise > 0:
        lr = lr + torch.from_numpy(rng.normal(0.0, noise, size=tuple(lr.shape))).to(lr)
    hr_shifts_t = torch.from_numpy(hr_shifts)
    return Burst(
        frames=quantize(lr),
        shifts=hr_shifts_t.double() / scale,
        hr_shifts=hr_shifts_t,
        reference_hr=hr[:, :hc, :wc].clone(),
        scale=scale,
        downscaler=downscaler,
        noise=float(noise),
    )


def score_burst(sr: Tensor, reference_hr: Tensor) -> float:
    """PSNR (dB) of a fused burst on the Y channel, :data:`burst_psnr_border` pixels cropped.

    Args:
        sr: ``(C, Hc, Wc)`` restored image on frame 0's HR grid, in [0, 1].
        reference_hr: :attr:`Burst.reference_hr`.
    """
    return psnr(sr, reference_hr, crop=burst_psnr_border)
