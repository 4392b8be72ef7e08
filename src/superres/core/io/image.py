"""The in-memory image (:class:`Image`), output formats and bit-depth helpers."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from superres.errors import ConfigError, ImageError

#: Largest input accepted by default (pixels); ``SUPERRES_MAX_PIXELS`` overrides it.
DEFAULT_MAX_PIXELS = 256_000_000

#: Output extension -> Pillow format.
FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".avif": "AVIF",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
SUPPORTED_OUTPUT_EXTENSIONS: tuple[str, ...] = tuple(FORMATS)

#: What :func:`read_image` reads: a path, the bytes of a file, or a binary file object.
ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO


def output_format(name: str | os.PathLike[str]) -> str:
    """The Pillow format an output path or format name stands for: ``"out.jpg"``, ``".jpg"``,
    ``"jpg"`` and ``"JPEG"`` all give ``"JPEG"``.

    Raises:
        ImageError: an extension or name :func:`write_image` cannot write.
    """
    text = os.fspath(name)
    suffix = Path(text).suffix.lower() if ("." in text and not text.startswith(".")) else ""
    key = suffix or ("." + text.lower().lstrip("."))
    fmt = FORMATS.get(key)
    if fmt is None:
        shown = suffix or text or "(none)"
        raise ImageError(
            text,
            f"unsupported output format {shown!r} "
            f"(use one of {', '.join(SUPPORTED_OUTPUT_EXTENSIONS)})",
        )
    return fmt


EIGHT_BIT_FORMATS = ("JPEG", "WEBP", "AVIF")


@dataclasses.dataclass(frozen=True)
class Image:
    """An image as arrays, with what must survive a round trip kept aside.

    Attributes:
        pixels: ``H x W x C`` (C = 1 grey or 3 RGB), uint8 or uint16, not premultiplied.
        alpha: ``H x W`` alpha of the same dtype, or None.
        icc_profile: ICC profile bytes to copy to the output, or None.
        exif: EXIF bytes (orientation already applied and reset), or None.
        mode: Pillow mode of the source file (informational, e.g. ``"P"``, ``"CMYK"``).
        source_format: Pillow's name of the source file's format (``"JPEG"``, ``"PNG"``...),
            empty when the image did not come from a file.
        lossy: Whether the source was coded lossily (JPEG, lossy WebP, AVIF): its pixels
            carry codec artefacts, which a network trained for decoded input restores best.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    mode: str = ""
    source_format: str = ""
    lossy: bool = False

    def __post_init__(self) -> None:
        p = self.pixels
        if p.dtype not in (np.uint8, np.uint16):
            raise TypeError(f"pixels must be uint8 or uint16, got {p.dtype}")
        if p.ndim != 3 or p.shape[2] not in (1, 3):
            raise ValueError(f"pixels must be H x W x 1 or H x W x 3, got shape {p.shape}")
        a = self.alpha
        if a is not None and (a.shape != p.shape[:2] or a.dtype != p.dtype):
            raise ValueError(f"alpha must be {p.shape[:2]} {p.dtype}, got {a.shape} {a.dtype}")

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def bits(self) -> int:
        """8 or 16."""
        return 16 if self.pixels.dtype == np.uint16 else 8


def to_8bit(a: np.ndarray) -> np.ndarray:
    """Round 16-bit values to the nearest 8-bit level (x * 255 / 65535, half up)."""
    if a.dtype == np.uint8:
        return a
    return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def split_alpha(array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The one alpha split of an ``H x W [x C]`` uint8/uint16 array: C = 2 (grey + alpha)
    and C = 4 (RGBA) give ``(colour H x W x C-1, alpha H x W)``, C = 1 and 3 give
    ``(array H x W x C, None)``; both parts are contiguous.

    Raises:
        ConfigError: another dtype or channel count (a ``ValueError``).
    """
    if array.dtype not in (np.uint8, np.uint16):
        raise ConfigError(f"expected a uint8 or uint16 array, got {array.dtype}")
    pixels = array[:, :, None] if array.ndim == 2 else array
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ConfigError(f"expected an array H x W x C with C in 1..4, got shape {array.shape}")
    if pixels.shape[2] in (1, 3):
        return np.ascontiguousarray(pixels), None
    return np.ascontiguousarray(pixels[:, :, :-1]), np.ascontiguousarray(pixels[:, :, -1])


def describe_error(err: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for error text."""
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]
