"""LR synthesis, the one way the project makes training and benchmark inputs from HR images.

Data flow::

    HR file --load_hr--> uint8 H x W x C (16-bit rounded to 8 bits: the protocol's grid)
      --modcrop(scale)--> HR --make_lr (MATLAB bicubic 1/scale, rounded to 8 bits)--> LR

:func:`make_lr` works on float tensors in [0, 1], :func:`make_lr_array` on uint8 arrays; both
give the same pixels. :func:`list_images` is the one listing of an image folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from superres.core.io import read_image, to_8bit
from superres.core.resize import imresize, quantize, to_levels
from superres.errors import FolderError, ImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "dihedral",
    "list_images",
    "load_hr",
    "make_lr",
    "make_lr_array",
    "modcrop",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name.

    Raises:
        FolderError: ``folder`` is not a folder or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FolderError(f"{folder}: no images found")
    return files


def modcrop(image: Tensor | np.ndarray, scale: int) -> Tensor | np.ndarray:
    """Crop the bottom/right so that height and width are multiples of ``scale``.

    Works on tensors ``(..., H, W)`` and numpy arrays ``(H, W[, C])``.
    """
    if isinstance(image, np.ndarray):
        h, w = image.shape[:2]
        return image[: h - h % scale, : w - w % scale]
    h, w = image.shape[-2:]
    return image[..., : h - h % scale, : w - w % scale]


def load_hr(path: str | Path, *, channels: Literal["rgb", "keep"] = "rgb") -> np.ndarray:
    """Read an HR image as ``H x W x C`` uint8 (the one HR loader of training and evaluation).

    Alpha is dropped and 16-bit images are rounded to the nearest 8-bit level (training and
    evaluation work on the 8-bit grid, as the literature does).

    Args:
        channels: ``"rgb"``: one-channel images are replicated to RGB (C = 3); ``"keep"``:
            they stay one-channel (benchmarks score a grey image on its grey level).

    Raises:
        ImageError: unreadable file.
    """
    pixels = read_image(path).pixels
    if pixels.dtype == np.uint16:
        pixels = to_8bit(pixels)
    elif pixels.dtype != np.uint8:  # pragma: no cover - io returns uint8/uint16 only
        raise ImageError(path, f"unsupported pixel type {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if channels == "rgb" and pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3])


def make_lr(hr: Tensor, scale: int) -> Tensor:
    """LR input of a modcropped float HR image: MATLAB bicubic ``1/scale``, rounded to 8 bits."""
    return quantize(imresize(hr, 1.0 / scale))


def make_lr_array(hr: np.ndarray, scale: int) -> np.ndarray:
    """LR of a modcropped ``H x W x C`` uint8 HR image: ``make_lr`` on the 8-bit grid."""
    x = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1))).float() / 255
    lr = to_levels(imresize(x, 1.0 / scale)).to(torch.uint8)
    return np.ascontiguousarray(lr.numpy().transpose(1, 2, 0))


def rescale_array(image: np.ndarray, factor: float) -> np.ndarray:
    """An ``H x W x C`` uint8 image resized by ``factor`` with MATLAB-bicubic (antialiased
    when shrinking), rounded to 8 bits: a smaller copy of a training image, new content at
    another scale for the same network."""
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255
    out = to_levels(imresize(x, float(factor))).to(torch.uint8)
    return np.ascontiguousarray(out.numpy().transpose(1, 2, 0))


def dihedral(image: np.ndarray, transform: int) -> np.ndarray:
    """One of the 8 symmetries of the square applied to an ``H x W [x C]`` array (a view).

    Bit 0 flips vertically, bit 1 horizontally, bit 2 transposes (after the flips);
    ``transform = 0`` is the identity.
    """
    if not 0 <= transform < 8:
        raise ValueError(f"dihedral transform must be in 0..7, got {transform}")
    if transform & 1:
        image = image[::-1]
    if transform & 2:
        image = image[:, ::-1]
    if transform & 4:
        image = image.swapaxes(0, 1)
    return image
