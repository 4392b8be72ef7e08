"""Classical multi-frame fusion: shift-and-add by kernel regression onto the HR grid, then
Fourier-domain deconvolution.

Data flow (Farsiu et al. 2004; Wronski et al. 2019 for the robustness weights)::

    frames (N, C, h, w) + shifts (N, 2) [+ weights (N, h, w)]
      --each frame's samples placed at their HR positions, splatted with a Gaussian of
        width sigma (numerator: weighted values, denominator: weights)--> estimate (C, H, W)
      --wiener_deconvolve(psf = pixel integration (box or bicubic) * Gaussian(sigma))--> HR

Shifts follow :mod:`superres.core.registration`: ``frame_k(y, x) ~ reference(y + dy, x + dx)``
in LR pixels, so LR pixel ``i`` of frame ``k`` sits at HR position ``(i + 1/2 + dy) s - 1/2``
of the reference's HR grid (pixel centres, ``s`` the scale). Under pure translation every
sample of a frame has the same sub-pixel phase, so splatting a frame is one separable
convolution of its zero-inserted samples: the cost is ``O(N)`` convolutions at HR size.

With one frame the result is Gaussian interpolation plus deconvolution (a single-image
baseline); with more frames at distinct phases the HR grid fills in and the deconvolution
recovers detail that aliasing folded into each frame. ``sigma`` and the deconvolution
strength depend on the scale, the degradation and N: :data:`FUSION_PARAMS` holds the values
chosen on training bursts (``python tools/calibrate_fusion.py``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from superres.core.burst import downscale
from superres.core.deconvolution import box_psf, wiener_deconvolve
from superres.core.resize import cubic, imresize
from superres.errors import ConfigError

__all__ = [
    "DEGRADATIONS",
    "back_project",
    "FUSION_PARAMS",
    "fuse_classical",
    "fusion_params",
    "fusion_psf",
    "shift_and_add",
    "splat",
    "translate",
]

DEGRADATIONS = ("area", "bicubic")

#: ``(degradation, scale) -> {frames: (sigma, strength)}`` chosen on training bursts by
#: ``python tools/calibrate_fusion.py`` (24 central 240x240 crops of T91 + BSD200 + BSD200test
#: images, best mean PSNR-Y of the fusion alone, before back-projection); other N interpolate
#: in log N, other scales use the nearest calibrated one.
FUSION_PARAMS: dict[tuple[str, int], dict[int, tuple[float, float]]] = {
    ("area", 2): {1: (0.55, 0.08), 2: (0.55, 0.02), 4: (0.4, 0.02), 8: (0.4, 0.01),
                  16: (0.4, 0.01)},
    ("area", 4): {1: (2.0, 0.04), 2: (0.75, 0.08), 4: (0.55, 0.04), 8: (0.4, 0.02),
                  16: (0.4, 0.01)},
    ("bicubic", 2): {1: (1.0, 0.005), 2: (0.75, 0.005), 4: (0.75, 0.005), 8: (0.75, 0.0025),
                     16: (0.75, 0.0025)},
    ("bicubic", 4): {1: (2.0, 0.02), 2: (0.75, 0.08), 4: (0.55, 0.04), 8: (0.4, 0.01),
                     16: (0.4, 0.005)},
}  # fmt: skip


def _check_degradation(degradation: str) -> str:
    if degradation not in DEGRADATIONS:
        raise ConfigError(
            f"degradation must be one of {', '.join(DEGRADATIONS)}, got {degradation!r}"
        )
    return degradation


def fusion_params(degradation: str, scale: int, frames: int) -> tuple[float, float]:
    """The calibrated ``(sigma, strength)`` for ``frames`` frames at ``scale``."""
    _check_degradation(degradation)
    scales = sorted(s for d, s in FUSION_PARAMS if d == degradation)
    nearest = min(scales, key=lambda s: (abs(s - scale), s))
    table = FUSION_PARAMS[(degradation, nearest)]
    counts = sorted(table)
    n = min(max(frames, counts[0]), counts[-1])
    hi = next(c for c in counts if c >= n)
    lo = max(c for c in counts if c <= n)
    if hi == lo:
        return table[lo]
    t = (math.log(n) - math.log(lo)) / (math.log(hi) - math.log(lo))
    (s0, l0), (s1, l1) = table[lo], table[hi]
    return s0 + t * (s1 - s0), math.exp(math.log(l0) + t * (math.log(l1) - math.log(l0)))


def _gaussian_taps(sigma: float, phase: float, radius: int) -> Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float64) - phase
    return torch.exp(-(t**2) / (2 * sigma**2))


def fusion_psf(scale: int, degradation: str, sigma: float) -> Tensor:
    """1-D kernel of the fused estimate: the pixel integration of ``degradation`` (an
    ``s``-wide box, or MATLAB's antialiasing cubic widened ``s`` times) convolved with the
    normalised splatting Gaussian."""
    _check_degradation(degradation)
    if degradation == "area":
        pixel = box_psf(scale)
    else:
        t = torch.arange(-2 * scale, 2 * scale + 1, dtype=torch.float64)
        pixel = cubic(t / scale).double()
        pixel = pixel / pixel.sum()
    radius = max(1, math.ceil(3 * sigma))
    gauss = _gaussian_taps(sigma, 0.0, radius)
    gauss = gauss / gauss.sum()
    # Full convolution: len(pixel) + 2 radius taps.
    kernel = F.conv1d(
        F.pad(pixel[None, None], (2 * radius, 2 * radius)), gauss.flip(0)[None, None]
    )[0, 0]
    return kernel / kernel.sum()


def _paste(offset: int, length: int, size: int) -> tuple[slice, slice] | None:
    """Destination and source slices of a 1-D run of ``length`` samples whose first one lands
    at ``offset`` in ``[0, size)`` (clipped; None when nothing overlaps)."""
    d0, d1 = max(0, offset), min(size, offset + length)
    return (slice(d0, d1), slice(d0 - offset, d1 - offset)) if d1 > d0 else None


def splat(
    frames: Tensor,
    shifts: Tensor,
    scale: int,
    *,
    sigma: float,
    weights: Tensor | None = None,
    bursts: int = 1,
) -> Tensor:
    """The frames' samples placed where their motion puts them on the reference's HR grid,
    splatted with a Gaussian and summed per burst: ``(bursts, C + 1, h s, w s)``, the
    weighted values and (last channel) the weights.

    A frame's samples share one sub-pixel phase, so its splat is a separable transposed
    convolution of the LR frame with stride ``s`` (the phase's taps) and a whole-pixel
    offset: the work is ``O(h w)`` per frame, whatever the scale.

    Args:
        frames: ``(M, C, h, w)`` float frames, ``M = bursts * N`` (burst ``b``'s frames are
            rows ``b N .. b N + N - 1``).
        shifts: ``(M, 2)`` motion ``(dy, dx)`` of each frame in LR pixels.
        scale: Integer upscaling factor.
        sigma: Width (HR pixels) of the Gaussian each sample is splatted with.
        weights: Optional ``(M, h, w)`` per-sample confidence in [0, 1].
        bursts: Number of bursts the frames are grouped in.
    """
    if frames.ndim != 4 or tuple(shifts.shape) != (frames.shape[0], 2):
        raise ConfigError(
            f"expected frames (N, C, h, w) and shifts (N, 2), got {tuple(frames.shape)} and "
            f"{tuple(shifts.shape)}"
        )
    if not sigma > 0:
        raise ConfigError(f"sigma must be positive, got {sigma}")
    m, c, h, w = frames.shape
    if bursts < 1 or m % bursts:
        raise ConfigError(f"{m} frames do not split into {bursts} bursts")
    s = int(scale)
    radius = max(1, math.ceil(3 * sigma))
    size = 2 * radius + 1
    big_h, big_w = h * s, w * s
    values = frames.float()
    if weights is None:
        values = torch.cat([values, torch.ones_like(values[:, :1])], 1)
    else:
        weight = weights.float().to(frames.device)[:, None]
        values = torch.cat([values * weight, weight], 1)
    out = torch.zeros(bursts, c + 1, big_h, big_w, dtype=torch.float32, device=frames.device)
    per_burst = m // bursts
    # Frames per transposed convolution: bounds the intermediate to ~2^25 floats.
    chunk = max(1, min(m, 2**25 // ((c + 1) * (big_h + size) * (big_w + size))))
    motion = shifts.double().cpu().tolist()
    for first in range(0, m, chunk):
        ks = range(first, min(m, first + chunk))
        taps = torch.zeros(2, len(ks), size, dtype=torch.float64)
        offsets = []
        for i, k in enumerate(ks):
            dy, dx = motion[k]
            iy, ix = math.floor(dy + 0.5), math.floor(dx + 0.5)  # whole LR pixels of motion
            oy, ox = (0.5 + dy - iy) * s - 0.5, (0.5 + dx - ix) * s - 0.5  # in [-1/2, s - 1/2)
            qy, qx = math.floor(oy), math.floor(ox)
            taps[0, i] = _gaussian_taps(sigma, oy - qy, radius)
            taps[1, i] = _gaussian_taps(sigma, ox - qx, radius)
            # HR row of the first tap of sample (0, 0): its centre qy + iy s, minus radius.
            offsets.append((qy + iy * s - radius, qx + ix * s - radius))
        groups = len(ks) * (c + 1)
        ky, kx = taps.float().to(frames.device).repeat_interleave(c + 1, dim=1)
        x = values[first : first + len(ks)].reshape(1, groups, h, w)
        x = F.conv_transpose2d(x, kx[:, None, None, :], stride=(1, s), groups=groups)
        x = F.conv_transpose2d(x, ky[:, None, :, None], stride=(s, 1), groups=groups)
        x = x.reshape(len(ks), c + 1, *x.shape[-2:])
        for i, k in enumerate(ks):
            rows = _paste(offsets[i][0], x.shape[-2], big_h)
            cols = _paste(offsets[i][1], x.shape[-1], big_w)
            if rows is None or cols is None:
                continue  # the frame lies outside the reference's view
            out[k // per_burst, :, rows[0], cols[0]] += x[i, :, rows[1], cols[1]]
    return out


def shift_and_add(
    frames: Tensor, shifts: Tensor, scale: int, *, sigma: float, weights: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Kernel-regression accumulation of registered frames onto the reference's HR grid: the
    sum of :func:`splat` over the frames, normalised.

    Args:
        frames: ``(N, C, h, w)`` float frames.
        shifts: ``(N, 2)`` motion ``(dy, dx)`` of each frame in LR pixels.
        scale: Integer upscaling factor.
        sigma: Width (HR pixels) of the Gaussian each sample is splatted with.
        weights: Optional ``(N, h, w)`` per-sample confidence in [0, 1].

    Returns:
        ``(estimate, density)``: the ``(C, h s, w s)`` weighted mean and the ``(h s, w s)``
        total weight (where it is tiny the estimate is extrapolated from far samples).
    """
    total = splat(frames, shifts, scale, sigma=sigma, weights=weights)[0]
    density = total[-1]
    return total[:-1] / density.clamp(min=1e-6), density


def fuse_classical(
    frames: Tensor,
    shifts: Tensor,
    scale: int,
    *,
    degradation: Literal["area", "bicubic"] = "area",
    sigma: float | None = None,
    strength: float | None = None,
    weights: Tensor | None = None,
) -> Tensor:
    """Shift-and-add, then deconvolution of :func:`fusion_psf`: ``(C, h s, w s)``, not clamped.

    ``sigma`` and ``strength`` default to the calibrated :func:`fusion_params` for N frames.
    """
    _check_degradation(degradation)
    default_sigma, default_strength = fusion_params(degradation, scale, frames.shape[0])
    sigma = default_sigma if sigma is None else float(sigma)
    strength = default_strength if strength is None else float(strength)
    estimate, _ = shift_and_add(frames, shifts, scale, sigma=sigma, weights=weights)
    return wiener_deconvolve(estimate, fusion_psf(scale, degradation, sigma), strength)


def _cubic_taps(phase: float) -> Tensor:
    """4 Keys-cubic taps (a = -1/2) sampling at offset ``phase`` in [0, 1) from tap 1."""
    t = torch.tensor([1 + phase, phase, 1 - phase, 2 - phase], dtype=torch.float64)
    return cubic(t).float()


def translate(image: Tensor, shift: Tensor | tuple[float, float]) -> Tensor:
    """``out(y, x) = image(y + dy, x + dx)`` in the spatial domain: the whole-pixel part by
    mirrored slicing, the fraction by separable 4-tap cubic interpolation (Keys, a = -1/2).
    A fast stand-in for :func:`superres.core.registration.warp` (a few slices instead of FFTs
    over a padded image) inside the back-projection loop; whole-pixel shifts are exact."""
    dy, dx = (float(v) for v in shift)
    h, w = image.shape[-2:]
    out = image
    for axis, d, n in ((-2, dy, h), (-1, dx, w)):
        i = math.floor(d)
        f = d - i
        pad = min(abs(i) + 3, n - 1)
        sides = (pad, pad, 0, 0) if axis == -1 else (0, 0, pad, pad)
        wide = F.pad(out.reshape(-1, 1, *out.shape[-2:]), sides, mode="reflect")
        if abs(i) + 3 > pad:  # tiny image: extend the mirror by replication
            extra = abs(i) + 3 - pad
            wide = F.pad(wide, (extra, extra, 0, 0) if axis == -1 else (0, 0, extra, extra),
                         mode="replicate")  # fmt: skip
            pad += extra
        start = pad + i - 1  # taps read pixels y + i - 1 .. y + i + 2
        taps = ((1, 1.0),) if f == 0 else tuple(enumerate(_cubic_taps(f).tolist()))
        acc = None
        for k, weight in taps:
            part = wide.narrow(axis, start + k, n) * weight
            acc = part if acc is None else acc.add_(part)
        out = acc.reshape(*image.shape[:-2], *acc.shape[-2:])
    return out


def back_project(
    estimate: Tensor,
    frames: Tensor,
    shifts: Tensor,
    scale: int,
    *,
    degradation: Literal["area", "bicubic"] = "area",
    iterations: int = 20,
    step: float = 1.5,
    weights: Tensor | None = None,
) -> Tensor:
    """Iterative back-projection (Irani and Peleg 1991) of an HR ``estimate`` against every
    frame: ``x += step * mean_k warp_k^-1(up(w_k (y_k - down(warp_k(x)))))``.

    The forward model of frame ``k`` is the protocol's (:mod:`superres.core.burst`): the
    reference's HR image translated by the frame's shift times ``scale`` (a Fourier warp),
    then downscaled by ``degradation``; ``up`` is bicubic interpolation. Each pass pulls the
    estimate towards agreement with all N frames at once, which no single frame constrains.

    Args:
        estimate: ``(C, h s, w s)`` starting point (for example a fused or SR image).
        frames: ``(N, C, h, w)`` the burst; ``shifts``: ``(N, 2)`` LR motion of each frame.
        iterations: Passes; ``step``: the update's gain.
        weights: Optional ``(N, h, w)`` robustness weights applied to each residual.

    Returns:
        The refined ``(C, h s, w s)`` estimate (not clamped).
    """
    _check_degradation(degradation)
    if iterations < 0:
        raise ConfigError(f"iterations must be >= 0, got {iterations}")
    x = estimate.float().clone()
    n = frames.shape[0]
    motion = [shifts[k].double() * scale for k in range(n)]  # LR motion in HR pixels
    for _ in range(int(iterations)):
        update = torch.zeros_like(x)
        for k in range(n):
            moved = float(motion[k].abs().max()) > 0
            seen = translate(x, motion[k]) if moved else x
            residual = frames[k].float() - downscale(seen[None], scale, degradation)[0]
            if weights is not None:
                residual = residual * weights[k]
            if degradation == "area":  # the box's adjoint (times scale^2): replicate
                back = residual.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
            else:
                back = imresize(residual, scale)
            update += translate(back, -motion[k]) if moved else back
        x += (step / n) * update
    return x
