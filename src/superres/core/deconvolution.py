"""Fourier-domain deconvolution: the point-spread functions of the project's degradations,
Wiener deconvolution and Richardson-Lucy, with borders that do not ring.

Data flow::

    psf (1-D, separable; degradation_psf / box_psf / any normalised kernel)
      --transfer(psf, H, W)--> H(u, v) = P(u) P(v)  (kernel centred on pixel 0, periodic)
    image --reflect-pad to an FFT-friendly size--> rfft2 --x G(u, v)--> irfft2 --crop--> image

    G = conj(H) / (|H|^2 + lambda |w|^2)        (Wiener with a gradient prior, w = 2 pi f)

The prior is zero at DC (brightness is never scaled, unlike the constant-NSR Wiener filter)
and grows with frequency, which is where the noise and the aliasing of the LR grid live.
``lambda`` is the one knob; :mod:`superres.models.wiener` stores the values chosen on
training images. The padding mirrors the image (``reflect``), so the periodic FFT sees no
jump at the border and the result does not ring there.

:func:`degradation_psf` is the effective kernel of the single-image protocol: MATLAB bicubic
downscaling by ``1/s`` (antialiased) followed by bicubic upscaling by ``s``. That operator
is periodic with period ``s`` rather than shift-invariant; the kernel is its response to an
impulse averaged over the ``s`` phases. :func:`box_psf` is the ``s x s`` pixel integration of
the ``area`` burst protocol (:mod:`superres.core.burst`).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from superres.core.resize import imresize

__all__ = [
    "box_psf",
    "degradation_psf",
    "fft_size",
    "richardson_lucy",
    "transfer",
    "wiener_deconvolve",
    "wiener_gain",
]


@functools.lru_cache(maxsize=32)
def _degradation_psf(scale: int) -> Tensor:
    length = 64 * scale
    # On the CPU explicitly: the kernel is a constant even inside ``torch.device("meta")``.
    total = torch.zeros(length, dtype=torch.float64, device="cpu")
    for phase in range(scale):
        impulse = torch.zeros(1, 1, length, dtype=torch.float64, device="cpu")
        centre = length // 2 + phase
        impulse[..., centre] = 1.0
        response = imresize(imresize(impulse, (1, 1 / scale)), (1, scale))[0, 0]
        total += torch.roll(response, length // 2 - centre)
    total /= scale
    half = 4 * scale + 2  # the two cubic kernels (widths 4 s and 4) reach 2 s + 2 each way
    kernel = total[length // 2 - half : length // 2 + half + 1]
    return kernel / kernel.sum()


def degradation_psf(scale: int) -> Tensor:
    """Effective 1-D kernel (float64, odd length, sums to 1) of MATLAB bicubic ``1/scale``
    then bicubic ``x scale``, averaged over the ``scale`` phases."""
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    return _degradation_psf(int(scale)).clone()


def box_psf(width: float) -> Tensor:
    """1-D box of ``width`` pixels (float64, odd length, sums to 1; fractional ends weighted),
    the integration of a sensor pixel ``width`` HR pixels wide."""
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    half = math.ceil(width / 2 - 0.5)
    x = torch.arange(-half, half + 1, dtype=torch.float64)
    # Overlap of [x - 1/2, x + 1/2] with [-width/2, width/2].
    kernel = (torch.minimum(x + 0.5, torch.tensor(width / 2))
              - torch.maximum(x - 0.5, torch.tensor(-width / 2))).clamp(min=0)  # fmt: skip
    return kernel / kernel.sum()


def _check_psf(psf: Tensor) -> Tensor:
    if psf.ndim != 1 or psf.numel() % 2 != 1:
        raise ValueError(f"psf must be a 1-D kernel of odd length, got shape {tuple(psf.shape)}")
    return psf.to(torch.float64)


def transfer(psf: Tensor, height: int, width: int) -> Tensor:
    """``rfft2`` of the separable kernel ``psf x psf`` centred on pixel (0, 0) of a
    ``height x width`` periodic grid: complex128 ``(height, width // 2 + 1)``."""
    psf = _check_psf(psf)
    half = psf.numel() // 2
    if psf.numel() > min(height, width):
        raise ValueError(f"a {psf.numel()}-tap kernel does not fit a {height}x{width} grid")

    def periodic(n: int) -> Tensor:
        line = torch.zeros(n, dtype=torch.float64)
        line[: half + 1] = psf[half:]
        if half:
            line[-half:] = psf[:half]
        return line

    return torch.fft.fft(periodic(height))[:, None] * torch.fft.rfft(periodic(width))[None, :]


def fft_size(n: int) -> int:
    """The smallest even ``m >= n`` (1 for ``n <= 1``) whose only prime factors are 2, 3 and
    5: fast FFT lengths. Even, because the real FFT halves an even length: on a 2-core AVX2
    CPU ``rfft2`` + ``irfft2`` of three 1125x1125 planes took 66 ms, of 1152x1152 34 ms."""
    m = max(int(n), 1)
    if m > 1 and m % 2:
        m += 1
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 2


@functools.lru_cache(maxsize=16)
def _gain(psf_key: tuple[float, ...], height: int, width: int, strength: float) -> Tensor:
    otf = transfer(torch.tensor(psf_key, dtype=torch.float64), height, width)
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
    w2 = (2 * math.pi) ** 2 * (fy**2 + fx**2)
    return (otf.conj() / (otf.abs() ** 2 + strength * w2)).to(torch.complex64)


def wiener_gain(psf: Tensor, height: int, width: int, strength: float) -> Tensor:
    """The Wiener filter ``conj(H) / (|H|^2 + strength |w|^2)`` on a ``height x width``
    grid (complex64, ``rfft2`` layout). Cached per kernel, size and strength."""
    return _cached_gain(psf, height, width, strength).clone()


def _cached_gain(psf: Tensor, height: int, width: int, strength: float) -> Tensor:
    """:func:`wiener_gain`'s cached tensor itself, for callers that only read it."""
    if not strength > 0:
        raise ValueError(f"strength must be positive, got {strength}")
    key = tuple(float(v) for v in _check_psf(psf))
    return _gain(key, int(height), int(width), float(strength))


def _padded(image: Tensor, pad: int) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Mirror-pad the last two dims by at least ``pad`` up to fast FFT sizes; returns the
    padded image and the box ``(y0, y1, x0, x1)`` where the image sits in it."""
    h, w = image.shape[-2:]
    big_h, big_w = fft_size(h + 2 * pad), fft_size(w + 2 * pad)
    top, left = (big_h - h) // 2, (big_w - w) // 2
    box = (top, top + h, left, left + w)
    todo = [left, big_w - w - left, top, big_h - h - top]  # F.pad order
    flat = image.reshape(-1, 1, h, w)
    while any(todo):  # reflect needs pad < size: mirror again until the size is reached
        if flat.shape[-2] == 1 or flat.shape[-1] == 1:
            flat = F.pad(flat, tuple(todo), mode="replicate")
            break
        limits = [flat.shape[-1] - 1] * 2 + [flat.shape[-2] - 1] * 2
        step = [min(t, lim) for t, lim in zip(todo, limits, strict=True)]
        flat = F.pad(flat, tuple(step), mode="reflect")
        todo = [t - s for t, s in zip(todo, step, strict=True)]
    return flat.reshape(*image.shape[:-2], big_h, big_w), box


def wiener_deconvolve(
    image: Tensor, psf: Tensor, strength: float, *, pad: int | None = None
) -> Tensor:
    """Undo the blur ``psf x psf`` of ``image`` (``(..., H, W)`` float) by Wiener filtering.

    Args:
        image: The blurred image (for SR: the bicubic-upsampled LR image).
        psf: 1-D kernel of odd length, applied along both axes (:func:`degradation_psf`).
        strength: Weight of the gradient prior ``lambda`` (larger: smoother).
        pad: Mirrored border added before the FFT (default: the kernel's length plus 8).

    Returns:
        The deconvolved image, same shape and dtype, not clamped.
    """
    if image.ndim < 2:
        raise ValueError(f"expected a tensor (..., H, W), got shape {tuple(image.shape)}")
    pad = psf.numel() + 8 if pad is None else int(pad)
    padded, (y0, y1, x0, x1) = _padded(image.float(), pad)
    gain = _cached_gain(psf, *padded.shape[-2:], strength).to(padded.device)
    spectrum = torch.fft.rfft2(padded)
    spectrum *= gain
    out = torch.fft.irfft2(spectrum, s=padded.shape[-2:])
    return out[..., y0:y1, x0:x1].to(image.dtype)


def richardson_lucy(
    image: Tensor, psf: Tensor, iterations: int = 10, *, pad: int | None = None
) -> Tensor:
    """Richardson-Lucy deconvolution (maximum likelihood under Poisson noise) of a
    non-negative ``image`` blurred by ``psf x psf``, with FFT convolutions.

    The multiplicative update needs a non-negative kernel: a kernel with negative lobes
    (the bicubic one) is replaced by its positive part, renormalised.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    psf = _check_psf(psf).clamp(min=0)
    psf = psf / psf.sum()
    pad = psf.numel() + 8 if pad is None else int(pad)
    padded, (y0, y1, x0, x1) = _padded(image.float().clamp(min=0), pad)
    otf = transfer(psf, *padded.shape[-2:]).to(torch.complex64).to(padded.device)
    size = padded.shape[-2:]

    def blur(x: Tensor, kernel: Tensor) -> Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(x) * kernel, s=size)

    estimate = padded.clone()
    for _ in range(int(iterations)):
        ratio = padded / blur(estimate, otf).clamp(min=1e-6)
        estimate = estimate * blur(ratio, otf.conj())
    return estimate[..., y0:y1, x0:x1].to(image.dtype)
