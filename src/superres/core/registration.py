"""Sub-pixel registration of burst frames by phase correlation, warping, and confidence maps.

Sign convention (the one of :mod:`superres.core.burst`): a shift ``(dy, dx)`` of ``moving``
relative to ``reference`` means ``moving(y, x) ~ reference(y + dy, x + dx)``. Hence
``warp(reference, (dy, dx)) ~ moving`` and ``warp(moving, (-dy, -dx)) ~ reference``: to bring
frame ``k`` onto the reference grid, warp it by minus its registered shift.

Method (:func:`phase_correlation`): luma (``0.299 R + 0.587 G + 0.114 B``) of both images,
mean removed, times a separable Tukey window; the normalised cross-power spectrum
``R conj(M) / |R conj(M)|`` weighted by a smooth low-pass (aliasing of the LR frames lives at
high frequencies), its inverse FFT, the integer peak (wrapped: indices past ``N / 2`` are
negative shifts), then the cross-correlation resampled on a ``1 / upsample`` grid around the
peak by a matrix-multiply DFT (Guizar-Sicairos, Thurman & Fienup, "Efficient subpixel image
registration algorithms", Opt. Lett. 33(2), 2008), refined once more around the new peak.
Registration runs in float64 with ``torch.fft`` on the images' device; deterministic.

:func:`warp` is a Fourier (band-limited) shift of a reflect-padded image; :func:`confidence`
turns the local difference between the reference and a warped frame into a [0, 1] weight, so
that moving objects and misregistered regions count less in fusion.

Not here: affine/rotation refinement (translations only).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from superres.errors import ConfigError

__all__ = ["confidence", "luma", "phase_correlation", "register", "warp"]

_LUMA = (0.299, 0.587, 0.114)


def luma(image: Tensor) -> Tensor:
    """``(H, W)`` float64 grey level of an ``(H, W)``, ``(1, H, W)`` or ``(3, H, W)`` image.

    Three channels give ``0.299 R + 0.587 G + 0.114 B``; other channel counts their mean.
    """
    if image.ndim == 2:
        return image.double()
    if image.ndim != 3:
        raise ConfigError(f"image: expected (H, W) or (C, H, W), got {tuple(image.shape)}")
    x = image.double()
    if x.shape[0] == 3:
        return _LUMA[0] * x[0] + _LUMA[1] * x[1] + _LUMA[2] * x[2]
    return x.mean(dim=0)


def _tukey(n: int, alpha: float) -> Tensor:
    """Tukey (tapered cosine) window of length ``n``: flat middle, ``alpha`` of it tapered."""
    if n < 3 or alpha <= 0:
        return torch.ones(n, dtype=torch.float64)
    t = torch.arange(n, dtype=torch.float64) / (n - 1)
    w = torch.ones(n, dtype=torch.float64)
    edge = alpha / 2
    low, high = t < edge, t > 1 - edge
    w[low] = 0.5 * (1 - torch.cos(math.pi * t[low] / edge))
    w[high] = 0.5 * (1 - torch.cos(math.pi * (1 - t[high]) / edge))
    return w


def _window(h: int, w: int, window: bool | float, device: torch.device) -> Tensor | None:
    if window is False:
        return None
    alpha = 0.5 if window is True else float(window)
    return (_tukey(h, alpha)[:, None] * _tukey(w, alpha)[None, :]).to(device)


def _lowpass(h: int, w: int, cutoff: float, device: torch.device) -> Tensor | None:
    """Smooth radial weight ``cos^2`` from 1 at DC to 0 at ``cutoff`` (cycles/pixel, <= 0.5)."""
    if cutoff >= 0.5 * math.sqrt(2):
        return None
    fy = torch.fft.fftfreq(h, dtype=torch.float64, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64, device=device)[None, :]
    r = torch.sqrt(fy**2 + fx**2) / cutoff
    return torch.where(r < 1, torch.cos(0.5 * math.pi * r) ** 2, torch.zeros_like(r))


def _spectrum(image: Tensor, win: Tensor | None) -> Tensor:
    x = luma(image)
    x = x - x.mean()
    if win is not None:
        x = x * win
    return torch.fft.rfft2(x)


def _upsampled_cc(product: Tensor, w: int, center: Tensor, upsample: int, size: int) -> Tensor:
    """Real cross-correlation of a half spectrum ``product`` on ``size x size`` points spaced
    ``1 / upsample`` and centred on ``center`` (pixels), by matrix-multiply DFT."""
    h, device = product.shape[0], product.device
    offsets = (torch.arange(size, dtype=torch.float64, device=device) - size // 2) / upsample
    ys, xs = float(center[0]) + offsets, float(center[1]) + offsets
    fy = torch.fft.fftfreq(h, dtype=torch.float64, device=device)
    fx = torch.fft.rfftfreq(w, dtype=torch.float64, device=device)
    # Hermitian weights: every rfft column but DC (and Nyquist for even w) stands for two.
    weight = torch.full((fx.numel(),), 2.0, dtype=torch.float64, device=device)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    ey = torch.exp(2j * math.pi * ys[:, None] * fy[None, :])  # (size, h)
    ex = torch.exp(2j * math.pi * fx[:, None] * xs[None, :])  # (w//2+1, size)
    return (ey @ product @ (ex * weight[:, None])).real


def _peak(cc: Tensor) -> tuple[int, int]:
    index = int(torch.argmax(cc))
    return index // cc.shape[1], index % cc.shape[1]


def _shift_from_spectra(
    ref_freq: Tensor, mov_freq: Tensor, w: int, upsample: int, lowpass: Tensor | None
) -> tuple[float, float]:
    product = ref_freq * mov_freq.conj()
    product = product / product.abs().clamp_min(1e-12)
    if lowpass is not None:
        product = product * lowpass
    h = product.shape[0]
    cc = torch.fft.irfft2(product, s=(h, w))
    py, px = _peak(cc)
    center = torch.tensor(
        [py - h if py > h // 2 else py, px - w if px > w // 2 else px], dtype=torch.float64
    )
    if upsample > 1:
        # Coarse pass over +-1.5 pixels on a 1/upsample grid, then a fine pass (1/upsample^2)
        # over +-1.5 coarse steps: the precision of upsample^2 at the cost of two small DFTs.
        size = int(math.ceil(1.5 * upsample)) * 2 + 1
        cc = _upsampled_cc(product, w, center, upsample, size)
        iy, ix = _peak(cc)
        center = center + (torch.tensor([iy, ix], dtype=torch.float64) - size // 2) / upsample
        fine = upsample * upsample
        size = int(math.ceil(1.5 * upsample)) * 2 + 1
        cc = _upsampled_cc(product, w, center, fine, size)
        iy, ix = _peak(cc)
        center = center + (torch.tensor([iy, ix], dtype=torch.float64) - size // 2) / fine
    return float(center[0]), float(center[1])


def _check_pair(reference: Tensor, moving: Tensor) -> None:
    if reference.shape[-2:] != moving.shape[-2:]:
        raise ConfigError(
            f"moving: size {tuple(moving.shape[-2:])} differs from the reference's "
            f"{tuple(reference.shape[-2:])}"
        )
    if min(reference.shape[-2:]) < 4:
        raise ConfigError(f"reference: image {tuple(reference.shape[-2:])} too small to register")


def _check_options(upsample: int, lowpass: float) -> None:
    if isinstance(upsample, bool) or not isinstance(upsample, int) or upsample < 1:
        raise ConfigError(f"upsample: expected an integer >= 1, got {upsample!r}")
    if not lowpass > 0:
        raise ConfigError(f"lowpass: expected a cutoff > 0 cycles/pixel, got {lowpass!r}")


def phase_correlation(
    reference: Tensor,
    moving: Tensor,
    *,
    upsample: int = 20,
    window: bool | float = True,
    lowpass: float = 0.35,
) -> tuple[float, float]:
    """Sub-pixel translation ``(dy, dx)`` of ``moving`` relative to ``reference``.

    ``moving(y, x) ~ reference(y + dy, x + dx)``, the convention of
    :attr:`superres.core.burst.Burst.shifts`. Shifts are found in ``(-N/2, N/2]`` per axis.

    Args:
        reference: ``(H, W)`` or ``(C, H, W)``; three channels are registered on their luma.
        moving: Same size as ``reference``.
        upsample: Sub-pixel grid of the refinement; two passes give a precision of
            ``1 / upsample**2`` pixel. 1 returns the integer peak.
        window: True for a Tukey window with ``alpha = 0.5``, a float for another ``alpha``
            (1.0 is Hann), False for none.
        lowpass: Radial cutoff in cycles/pixel of the ``cos^2`` weight on the normalised
            cross-power spectrum (0.5 * sqrt(2) or more: no weighting).

    Raises:
        ConfigError: different sizes, an image under 4x4 or a bad option.
    """
    _check_pair(reference, moving)
    _check_options(upsample, lowpass)
    h, w = reference.shape[-2:]
    win = _window(h, w, window, reference.device)
    lp = _lowpass(h, w, lowpass, reference.device)
    return _shift_from_spectra(_spectrum(reference, win), _spectrum(moving, win), w, upsample, lp)


def register(
    frames: Tensor,
    reference: int = 0,
    *,
    upsample: int = 20,
    window: bool | float = True,
    lowpass: float = 0.35,
) -> Tensor:
    """Shifts ``(dy, dx)`` of every frame relative to frame ``reference``.

    Args:
        frames: ``(N, C, H, W)`` burst.
        reference: Index of the reference frame (its row is ``(0, 0)``).
        upsample, window, lowpass: As in :func:`phase_correlation`.

    Returns:
        ``(N, 2)`` float64 CPU tensor, row ``k`` the shift of frame ``k`` in the convention of
        :func:`phase_correlation`.

    Raises:
        ConfigError: a bad shape, reference index or option.
    """
    if frames.ndim != 4:
        raise ConfigError(f"frames: expected (N, C, H, W), got {tuple(frames.shape)}")
    n = frames.shape[0]
    if isinstance(reference, bool) or not isinstance(reference, int) or not -n <= reference < n:
        raise ConfigError(f"reference: index {reference!r} out of range for {n} frames")
    reference %= n
    _check_pair(frames[0], frames[0])
    _check_options(upsample, lowpass)
    h, w = frames.shape[-2:]
    win = _window(h, w, window, frames.device)
    lp = _lowpass(h, w, lowpass, frames.device)
    ref_freq = _spectrum(frames[reference], win)
    shifts = torch.zeros(n, 2, dtype=torch.float64)
    for k in range(n):
        if k != reference:
            mov_freq = _spectrum(frames[k], win)
            shifts[k] = torch.tensor(
                _shift_from_spectra(ref_freq, mov_freq, w, upsample, lp), dtype=torch.float64
            )
    return shifts


def warp(frame: Tensor, shift: tuple[float, float] | Tensor, *, pad: int = 8) -> Tensor:
    """Translate ``frame`` by a sub-pixel ``shift``: ``out(y, x) = frame(y + dy, x + dx)``.

    A Fourier (band-limited, sinc) shift of the frame reflect-padded by ``ceil(|shift|) + pad``
    pixels per side, so content entering at a border is the mirror image rather than the
    opposite border. Integer shifts move pixels exactly (up to float rounding).

    Args:
        frame: ``(H, W)`` or ``(..., C, H, W)`` float tensor.
        shift: ``(dy, dx)`` in pixels, the convention of :func:`phase_correlation`
            (``warp(reference, shift) ~ moving``; ``warp(moving, -shift) ~ reference``).
        pad: Extra reflect margin beyond the shift.

    Returns:
        Tensor of ``frame``'s shape and dtype, not clamped (computed in float32, or float64
        for float64 frames).
    """
    dy, dx = (float(v) for v in (shift.tolist() if isinstance(shift, Tensor) else shift))
    if not (math.isfinite(dy) and math.isfinite(dx)):
        raise ConfigError(f"shift: expected finite (dy, dx), got {(dy, dx)}")
    shape, dtype = frame.shape, frame.dtype
    h, w = shape[-2:]
    work = torch.float64 if dtype == torch.float64 else torch.float32
    x = frame.reshape(-1, 1, h, w).to(work)
    py = min(math.ceil(abs(dy)) + pad, h - 1)
    px = min(math.ceil(abs(dx)) + pad, w - 1)
    if py > 0 or px > 0:
        x = F.pad(x, (px, px, py, py), mode="reflect")
    hp, wp = x.shape[-2:]
    fy = torch.fft.fftfreq(hp, dtype=torch.float64, device=x.device)[:, None]
    fx = torch.fft.rfftfreq(wp, dtype=torch.float64, device=x.device)[None, :]
    spectrum = torch.fft.rfft2(x)
    ramp = torch.exp(2j * math.pi * (fy * dy + fx * dx)).to(spectrum.dtype)
    out = torch.fft.irfft2(spectrum * ramp, s=(hp, wp))
    out = out[..., py : py + h, px : px + w]
    return out.reshape(shape).to(dtype)


def confidence(reference: Tensor, warped: Tensor, *, sigma: float, radius: int = 2) -> Tensor:
    """Per-pixel fusion weight in [0, 1]: ``exp(-d^2 / (2 sigma^2))``, ``d`` the local mean of
    ``|reference - warped|`` (averaged over channels, then over a ``(2 radius + 1)^2`` box).

    Args:
        reference: ``(H, W)`` or ``(C, H, W)`` reference frame in [0, 1].
        warped: A frame already warped onto the reference grid, same shape.
        sigma: Difference (on the [0, 1] scale) at which the weight falls to ``exp(-1/2)``;
            a few times the noise level.
        radius: Half-size of the box smoothing (0: none).

    Returns:
        ``(H, W)`` float tensor in [0, 1] (1 where the frames agree).

    Raises:
        ConfigError: different shapes or a bad ``sigma`` / ``radius``.
    """
    if reference.shape != warped.shape:
        raise ConfigError(
            f"warped: shape {tuple(warped.shape)} differs from the reference's "
            f"{tuple(reference.shape)}"
        )
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ConfigError(f"sigma: expected a finite value > 0, got {sigma!r}")
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
        raise ConfigError(f"radius: expected an integer >= 0, got {radius!r}")
    diff = (reference.double() - warped.double()).abs()
    if diff.ndim == 3:
        diff = diff.mean(dim=0)
    if radius > 0:
        diff = F.avg_pool2d(
            diff[None, None],
            kernel_size=2 * radius + 1,
            stride=1,
            padding=radius,
            count_include_pad=False,
        )[0, 0]
    weight = torch.exp(-(diff**2) / (2.0 * sigma**2))
    return weight.to(reference.dtype if reference.is_floating_point() else torch.float32)
