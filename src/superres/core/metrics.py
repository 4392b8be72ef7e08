"""Image-quality metrics with the conventions of the super-resolution literature.

SR convention (``psnr``, ``ssim``): images are 8-bit RGB, compared on the Y channel of
ITU-R BT.601 YCbCr, ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with RGB in [0, 1]
(so Y is in [16, 235] on the 0..255 scale), after cropping ``crop`` pixels from every
border (``crop = scale``). One-channel images are scored on their grey level. SSIM is
Wang et al. (2004) with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
L = 255, computed on the valid region (as MATLAB's reference ``ssim_index``).

Compression convention (``psnr_rgb``, ``ms_ssim``): all three RGB channels, no crop.

Inputs are tensors or arrays ``(C, H, W)`` / ``(N, C, H, W)`` for tensors and
``(H, W, C)`` / ``(H, W)`` for numpy arrays. Floating-point inputs are taken to be in
[0, 1]; ``uint8`` / ``uint16`` inputs are scaled by their maximum.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ms_ssim", "psnr", "psnr_rgb", "rgb_to_y", "ssim", "to_tensor"]

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def to_tensor(image: Tensor | np.ndarray) -> Tensor:
    """Return ``image`` as a float64 tensor ``(N, C, H, W)`` in [0, 1].

    uint8 and uint16 inputs are scaled by 1/255 and 1/65535; float inputs are taken as they
    are. Other integer types (int32, int64, uint32, bool...) are refused: scoring them as if
    they were in [0, 1] would give meaningless figures.

    Raises:
        TypeError: an unsupported dtype.
    """
    if isinstance(image, np.ndarray):
        peaks = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
        if image.dtype not in peaks and not np.issubdtype(image.dtype, np.floating):
            raise TypeError(
                f"unsupported array dtype {image.dtype}: give uint8, uint16 or float in [0, 1]"
            )
        array = image.astype(np.float64) / peaks.get(image.dtype, 1.0)
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3:
            raise ValueError(f"expected an array (H, W[, C]), got shape {image.shape}")
        tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    elif isinstance(image, Tensor):
        tensor = image.detach().to("cpu")
        if tensor.dtype == torch.uint8:
            tensor = tensor.double() / 255.0
        elif tensor.dtype == torch.uint16:
            tensor = tensor.double() / 65535.0
        elif not tensor.is_floating_point():
            raise TypeError(
                f"unsupported tensor dtype {tensor.dtype}: give uint8, uint16 or float in [0, 1]"
            )
        tensor = tensor.double()
    else:
        raise TypeError(f"expected a tensor or numpy array, got {type(image).__name__}")
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim == 3:
        tensor = tensor[None]
    if tensor.ndim != 4:
        raise ValueError(f"expected (N, C, H, W), got shape {tuple(tensor.shape)}")
    return tensor


def rgb_to_y(image: Tensor) -> Tensor:
    """BT.601 luma on the 0..255 scale (``16 + 65.481 R + 128.553 G + 24.966 B``).

    Args:
        image: ``(N, 3, H, W)`` RGB in [0, 1].

    Returns:
        ``(N, 1, H, W)`` float Y in [16, 235]. Not rounded.
    """
    r, g, b = image[:, 0:1], image[:, 1:2], image[:, 2:3]
    return 16.0 + _Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b


def _luma_255(image: Tensor | np.ndarray, crop: int, y_channel: bool) -> Tensor:
    x = to_tensor(image)
    if x.shape[1] == 3 and y_channel:
        x = rgb_to_y(x)
    elif x.shape[1] == 1 or not y_channel:
        x = x * 255.0
    else:
        raise ValueError(f"expected 1 or 3 channels for the Y channel, got {x.shape[1]}")
    if crop > 0:
        if x.shape[-1] <= 2 * crop or x.shape[-2] <= 2 * crop:
            raise ValueError(f"image {tuple(x.shape[-2:])} too small for a border crop of {crop}")
        x = x[..., crop:-crop, crop:-crop]
    return x


def _check_same_shape(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}")


def psnr(
    sr: Tensor | np.ndarray, hr: Tensor | np.ndarray, crop: int = 0, y_channel: bool = True
) -> float:
    """Peak signal-to-noise ratio in dB on the Y channel (grey level for 1-channel images).

    Args:
        sr: Restored image.
        hr: Ground truth, same shape.
        crop: Pixels removed from every border before comparing (the SR convention is
            ``crop = scale``).
        y_channel: Compare BT.601 Y (default); if False compare all channels.

    Returns:
        PSNR in dB (``inf`` for identical images). For a batch, the mean over images.
    """
    a, b = _luma_255(sr, crop, y_channel), _luma_255(hr, crop, y_channel)
    _check_same_shape(a, b)
    mse = ((a - b) ** 2).flatten(1).mean(dim=1)
    values = [math.inf if m == 0 else 10 * math.log10(255.0**2 / float(m)) for m in mse]
    return float(np.mean(values))


def psnr_rgb(sr: Tensor | np.ndarray, hr: Tensor | np.ndarray, bits: int = 8) -> float:
    """PSNR over all RGB channels without cropping (the image-compression convention)."""
    a, b = to_tensor(sr), to_tensor(hr)
    _check_same_shape(a, b)
    mse = ((a - b) ** 2).flatten(1).mean(dim=1)
    values = [math.inf if m == 0 else -10 * math.log10(float(m)) for m in mse]
    return float(np.mean(values))


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: Tensor, taps: Tensor, dim: int) -> Tensor:
    """Valid 1-D correlation of ``x`` with ``taps`` along ``dim``, as a sum of shifted
    slices (float64 grouped convolutions take a slow path on CPU; this is ~10x faster)."""
    size = x.shape[dim] - taps.numel() + 1
    out = x.narrow(dim, 0, size) * taps[0]
    for k in range(1, taps.numel()):
        out.add_(x.narrow(dim, k, size), alpha=float(taps[k]))
    return out


def _ssim_maps(a: Tensor, b: Tensor, peak: float) -> tuple[Tensor, Tensor]:
    """SSIM and contrast-structure maps (valid region), per channel.

    The 11x11 Gaussian window is separable, so it is applied as two 1-D passes over the
    five statistics stacked along the channel axis (one convolution call per pass).
    """
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    channels = a.shape[1]
    g = _gaussian_1d().to(a.dtype)
    stats = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    stats = _blur(_blur(stats, g, dim=2), g, dim=3)
    mu_a, mu_b, e_aa, e_bb, e_ab = stats.split(channels, dim=1)
    sigma_a = e_aa - mu_a**2
    sigma_b = e_bb - mu_b**2
    sigma_ab = e_ab - mu_a * mu_b
    cs = (2 * sigma_ab + c2) / (sigma_a + sigma_b + c2)
    luminance = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return luminance * cs, cs


def ssim(
    sr: Tensor | np.ndarray, hr: Tensor | np.ndarray, crop: int = 0, y_channel: bool = True
) -> float:
    """Structural similarity on the Y channel (grey level for 1-channel images).

    Gaussian 11x11 window, sigma 1.5, valid region, on the 0..255 scale; see the module
    docstring. For a batch, the mean over images.
    """
    a, b = _luma_255(sr, crop, y_channel), _luma_255(hr, crop, y_channel)
    _check_same_shape(a, b)
    if min(a.shape[-2:]) < 11:
        raise ValueError(f"image {tuple(a.shape[-2:])} is smaller than the 11x11 SSIM window")
    ssim_map, _ = _ssim_maps(a, b, 255.0)
    return float(ssim_map.flatten(1).mean(dim=1).mean())


_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(sr: Tensor | np.ndarray, hr: Tensor | np.ndarray) -> float:
    """Multi-scale SSIM (Wang et al., 2003) over RGB channels, 5 scales, on [0, 1] data.

    Each scale halves the image with a 2x2 average pool (odd sizes padded); the
    contrast-structure terms of the first four scales and the full SSIM of the last are
    combined with the standard weights.
    Needs images of at least 161 pixels on the short side (as in CompressAI/pytorch-msssim).
    """
    a, b = to_tensor(sr), to_tensor(hr)
    _check_same_shape(a, b)
    if min(a.shape[-2:]) < 161:
        raise ValueError(f"image {tuple(a.shape[-2:])} too small for 5-scale MS-SSIM (>= 161)")
    weights = torch.tensor(_MS_SSIM_WEIGHTS, dtype=torch.float64)
    values = []
    for level in range(len(_MS_SSIM_WEIGHTS)):
        ssim_map, cs_map = _ssim_maps(a, b, 1.0)
        if level < len(_MS_SSIM_WEIGHTS) - 1:
            values.append(torch.relu(cs_map.flatten(2).mean(-1)))
            pad = [a.shape[-2] % 2, a.shape[-1] % 2]  # as pytorch-msssim: keep odd edges
            a, b = F.avg_pool2d(a, 2, padding=pad), F.avg_pool2d(b, 2, padding=pad)
        else:
            values.append(torch.relu(ssim_map.flatten(2).mean(-1)))
    stacked = torch.stack(values, dim=0)  # (levels, N, C)
    score = torch.prod(stacked ** weights[:, None, None], dim=0).mean(dim=1)
    return float(score.mean())
