"""JPEG, WebP and AVIF through Pillow, in process (no external binaries).

Encoders write the bare image: no EXIF, ICC or XMP (the ``.srz`` container keeps those), and
the JPEG encoder also drops the JFIF APP0 segment (18 bytes that only carry a pixel density;
decoders assume YCbCr for three components without it). Settings:

* ``jpeg`` (id 1): quality 1-100, ``optimize=True`` (optimal Huffman tables), chroma
  ``subsampling`` ``"4:2:0"`` (default) or ``"4:4:4"``; grey is stored as one component.
* ``webp`` (id 2): lossy, quality 0-100, ``method=6`` (slowest, smallest); WebP is always
  4:2:0 and has no grey mode, so grey is stored as RGB and converted back on decoding.
* ``avif`` (id 3): quality 0-100, ``speed=6`` (libavif's 0 = slowest/smallest .. 10 =
  fastest; 6 is Pillow's default and encodes a 512x512 image in about half a second on one
  core), ``subsampling`` ``"4:2:0"`` (default) or ``"4:4:4"``; grey is stored as YUV 4:0:0.

Decoders accept only their own format, check the size from the header against the expected
size before decoding any pixel, and turn every Pillow failure into :class:`ContainerError`.
They touch no Pillow global (the decompression-bomb limit is left alone: the expected size,
which the container checked against its own limit, is what bounds the work; only WebP's
plugin still applies Pillow's limit, see :func:`_open`), so any number of threads may decode
at once.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image as PILImage

from superres.codec.base import Codec, ContainerError, register_codec
from superres.errors import ConfigError

__all__ = ["AvifCodec", "JpegCodec", "WebpCodec"]

_SUBSAMPLINGS = ("4:2:0", "4:4:4")


def _to_pil(pixels: np.ndarray) -> PILImage.Image:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        raise ValueError(f"expected a uint8 array, got {getattr(pixels, 'dtype', type(pixels))}")
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3) or min(pixels.shape[:2]) < 1:
        raise ValueError(f"expected pixels H x W x 1 or H x W x 3, got shape {pixels.shape}")
    grey = pixels.shape[2] == 1
    return PILImage.fromarray(np.ascontiguousarray(pixels[:, :, 0] if grey else pixels))


def _options(codec: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"{codec} has no option {', '.join(unknown)}")
    subsampling = options.get("subsampling")
    if subsampling is not None and subsampling not in _SUBSAMPLINGS:
        raise ConfigError(
            f"{codec} subsampling must be one of {', '.join(_SUBSAMPLINGS)}, got {subsampling!r}"
        )


def _save(im: PILImage.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


def _describe(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]


def _open(fmt: str, data: bytes) -> PILImage.Image:
    """Open ``data`` as ``fmt`` only, reading its header but no pixel.

    What ``PIL.Image.open(..., formats=[fmt])`` does, less its decompression-bomb check:
    the caller checks the size against its own limit, and the check cannot be switched off
    per call without changing ``PIL.Image.MAX_IMAGE_PIXELS`` for every thread. (WebP's
    plugin runs the check itself, error-only, at twice the limit: a WebP payload over
    that, 179 M pixels by default, is refused unless the process raises the limit.)
    """
    if fmt not in PILImage.OPEN:
        PILImage.init()
    factory, accept = PILImage.OPEN[fmt]
    verdict = True if accept is None else accept(data[:16])
    if not verdict or isinstance(verdict, str):  # a str says why Pillow cannot open it
        raise ContainerError(verdict if isinstance(verdict, str) else f"not a {fmt} stream")
    return factory(io.BytesIO(data), "")


def _decode(
    name: str, fmt: str, data: bytes, expected_size: tuple[int, int], channels: int | None
) -> np.ndarray:
    """Open ``data`` as ``fmt`` only, check its size, then decode and convert it.

    Thread-safe: no Pillow global is read-modified-written (truncated data is an error as
    long as the process keeps ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` at its default False).
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    height, width = (int(v) for v in expected_size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                im = _open(fmt, bytes(data))
            except PILImage.DecompressionBombError:  # (WebP's plugin checks it itself)
                raise ContainerError(
                    f"{name} payload is over Pillow's decompression-bomb limit "
                    f"(PIL.Image.MAX_IMAGE_PIXELS = {PILImage.MAX_IMAGE_PIXELS})"
                ) from None
            except Exception as err:  # any Pillow failure on untrusted bytes
                raise ContainerError(
                    f"{name} payload is not a valid {fmt} image ({_describe(err)})"
                ) from None
            if im.size != (width, height):
                raise ContainerError(
                    f"{name} payload is {im.size[0]}x{im.size[1]}, the header says {width}x{height}"
                )
            im.load()
            mode = {1: "L", 3: "RGB"}.get(channels or 0, "L" if im.mode == "L" else "RGB")
            if im.mode != mode:
                im = im.convert(mode)
            pixels = np.asarray(im)
    except ContainerError:
        raise
    except Exception as err:  # truncated/corrupt data, MemoryError...: never escape as is
        raise ContainerError(f"{name} payload is corrupt ({_describe(err)})") from None
    return np.ascontiguousarray(pixels.reshape(height, width, -1))


class JpegCodec(Codec):
    """Baseline JPEG with optimised Huffman tables (libjpeg through Pillow)."""

    name = "jpeg"
    codec_id = 1
    quality_range = (1, 100)
    default_quality = 75

    def encode(self, pixels: np.ndarray, quality: int, **options: Any) -> bytes:
        """Encode; option ``subsampling``: ``"4:2:0"`` (default) or ``"4:4:4"``."""
        _options(self.name, options, ("subsampling",))
        data = _save(
            _to_pil(pixels),
            "JPEG",
            quality=self.check_quality(quality),
            optimize=True,
            subsampling=options.get("subsampling") or "4:2:0",
        )
        return _strip_jfif(data)

    def decode(
        self, data: bytes, expected_size: tuple[int, int], *, channels: int | None = None
    ) -> np.ndarray:
        return _decode(self.name, "JPEG", data, expected_size, channels)


def _strip_jfif(data: bytes) -> bytes:
    """Drop the JFIF APP0 segment that directly follows SOI, if there is one."""
    if data[2:4] == b"\xff\xe0" and data[6:11] == b"JFIF\x00":
        return data[:2] + data[4 + int.from_bytes(data[4:6], "big") :]
    return data


class WebpCodec(Codec):
    """Lossy WebP (VP8, 4:2:0) at ``method=6`` (libwebp through Pillow)."""

    name = "webp"
    codec_id = 2
    quality_range = (0, 100)
    default_quality = 80

    def encode(self, pixels: np.ndarray, quality: int, **options: Any) -> bytes:
        """Encode; ``subsampling`` may only be ``"4:2:0"`` (WebP has nothing else)."""
        _options(self.name, options, ("subsampling",))
        if options.get("subsampling") not in (None, "4:2:0"):
            raise ConfigError("webp is always 4:2:0; use jpeg or avif for 4:4:4")
        im = _to_pil(pixels)
        quality = self.check_quality(quality)
        return _save(im.convert("RGB"), "WEBP", quality=quality, method=6, lossless=False)

    def decode(
        self, data: bytes, expected_size: tuple[int, int], *, channels: int | None = None
    ) -> np.ndarray:
        return _decode(self.name, "WEBP", data, expected_size, channels)


class AvifCodec(Codec):
    """AVIF (AV1 intra) at ``speed=6`` (libavif through Pillow >= 11.3)."""

    name = "avif"
    codec_id = 3
    quality_range = (0, 100)
    default_quality = 75
    speed = 6

    def encode(self, pixels: np.ndarray, quality: int, **options: Any) -> bytes:
        """Encode; option ``subsampling``: ``"4:2:0"`` (default) or ``"4:4:4"``."""
        _options(self.name, options, ("subsampling",))
        return _save(
            _to_pil(pixels),
            "AVIF",
            quality=self.check_quality(quality),
            speed=self.speed,
            subsampling=options.get("subsampling") or "4:2:0",
        )

    def decode(
        self, data: bytes, expected_size: tuple[int, int], *, channels: int | None = None
    ) -> np.ndarray:
        return _decode(self.name, "AVIF", data, expected_size, channels)


for _codec in (JpegCodec(), WebpCodec(), AvifCodec()):
    register_codec(_codec)
