"""Writing images: formats from the extension, 16-bit PNG/TIFF encoders, atomic output."""

from __future__ import annotations

import dataclasses
import io as _bytesio
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image as PILImage

from superres.core.io.atomic import atomic_write
from superres.core.io.image import (
    EIGHT_BIT_FORMATS,
    FORMATS,
    SUPPORTED_OUTPUT_EXTENSIONS,
    Image,
    describe_error,
    to_8bit,
)
from superres.errors import ImageError


def to_pil(image: Image) -> PILImage.Image:
    """A PIL image from an :class:`Image`; ICC profile and EXIF go into ``info``.

    PIL has no 16-bit RGB mode, so 16-bit colour images are rounded to 8 bits (16-bit grey
    stays ``I;16``).
    """
    pixels, alpha = image.pixels, image.alpha
    if pixels.dtype == np.uint16 and pixels.shape[2] == 1 and alpha is None:
        im = PILImage.fromarray(np.ascontiguousarray(pixels[:, :, 0]))
    else:
        pixels = to_8bit(pixels)
        alpha = None if alpha is None else to_8bit(alpha)
        if pixels.shape[2] == 1:
            grey = pixels[:, :, 0]
            im = PILImage.fromarray(grey if alpha is None else np.dstack([grey, alpha]))
        else:
            im = PILImage.fromarray(pixels if alpha is None else np.dstack([pixels, alpha]))
    if image.icc_profile:
        im.info["icc_profile"] = image.icc_profile
    if image.exif:
        im.info["exif"] = image.exif
    return im


# --------------------------------------------------------------------------- writing


def write_image(
    path: str | os.PathLike[str],
    image: Image,
    *,
    overwrite: bool = False,
    quality: int | None = None,
) -> Path:
    """Write ``image`` atomically, in the format its extension names.

    PNG and TIFF keep 16 bits and alpha; JPEG has no alpha, so a transparent image is
    composited over white; JPEG, WebP and AVIF store 8 bits. The ICC profile and EXIF are
    written to every format that holds them (EXIF is not written to 16-bit RGB TIFF).

    Args:
        path: Output file; its extension picks the format (see
            :data:`SUPPORTED_OUTPUT_EXTENSIONS`).
        image: What to write.
        overwrite: Replace an existing file (otherwise an existing file is an error:
            ``ImageError`` ``"<path>: output exists"``).
        quality: Lossy quality 1-100 for JPEG (default 95), WebP (default 95) and AVIF
            (default 90); ignored for PNG and TIFF.

    Raises:
        ImageError: unknown extension, existing file, missing folder, or a write error.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(
            path,
            f"unsupported output extension {path.suffix or '(none)'!r} "
            f"(use one of {', '.join(SUPPORTED_OUTPUT_EXTENSIONS)})",
        )
    if quality is not None and not 1 <= int(quality) <= 100:
        raise ImageError(path, f"quality must be between 1 and 100, got {quality}")
    if path.exists() and not overwrite:
        raise ImageError(path, "output exists")
    if not path.parent.is_dir():
        raise ImageError(path, f"folder {path.parent} does not exist")
    try:
        if fmt == "PNG":  # streamed: a huge output is never held twice in memory
            atomic_write(path, lambda f: _write_png(f, image), overwrite=overwrite)
        else:
            data = encode_image(image, fmt, quality=quality)
            atomic_write(path, lambda f: f.write(data), overwrite=overwrite)
    except ImageError:
        raise
    except FileExistsError:
        raise ImageError(path, "output exists") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except (OSError, ValueError) as err:
        raise ImageError(path, f"cannot write the image ({describe_error(err)})") from None
    return path


def encode_image(image: Image, fmt: str, *, quality: int | None = None) -> bytes:
    """The bytes of ``image`` encoded as ``fmt`` (``"PNG"``, ``"JPEG"``, ``"WEBP"``, ...)."""
    fmt = fmt.upper()
    pixels, alpha = image.pixels, image.alpha
    if fmt == "PNG":
        buffer = _bytesio.BytesIO()
        _write_png(buffer, image)
        return buffer.getvalue()
    sixteen = pixels.dtype == np.uint16 and fmt not in EIGHT_BIT_FORMATS
    if sixteen and (pixels.shape[2] == 3 or alpha is not None):
        return _tiff16(pixels, alpha, image.icc_profile)
    if fmt in EIGHT_BIT_FORMATS:
        pixels, alpha = to_8bit(pixels), None if alpha is None else to_8bit(alpha)
    if fmt == "JPEG" and alpha is not None:
        pixels, alpha = _over_white(pixels, alpha), None
    im = to_pil(dataclasses.replace(image, pixels=pixels, alpha=alpha))
    options: dict[str, object] = {}
    if image.icc_profile:
        options["icc_profile"] = image.icc_profile
    if image.exif:
        options["exif"] = image.exif
    if fmt == "JPEG":
        options.update(quality=quality or 95, optimize=True)
    elif fmt == "WEBP":
        options.update(quality=quality or 95, method=4)
    elif fmt == "AVIF":
        options.update(quality=quality or 90)
    elif fmt == "PNG":
        options.update(compress_level=6)
    elif fmt == "TIFF":
        options.update(compression="tiff_deflate")
    buffer = _bytesio.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


def _over_white(pixels: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    peak = float(np.iinfo(pixels.dtype).max)
    a = alpha.astype(np.float32)[:, :, None] / peak
    out = pixels.astype(np.float32) * a + peak * (1.0 - a)
    return np.floor(out + 0.5).clip(0, peak).astype(pixels.dtype)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


#: Rows of a PNG filtered and compressed at a time (bounded memory for any image size).
_PNG_BAND_BYTES = 8 << 20


def _write_png(file: BinaryIO, image: Image, level: int = 6) -> None:
    """Stream ``image`` as a PNG (8 or 16 bits; grey, grey+alpha, RGB or RGBA) into ``file``.

    Every row uses the Paeth filter (computed vectorised from the original rows, which is
    what makes it cheap on the encoding side); rows are filtered and deflated band by band,
    so memory stays bounded whatever the image size. ICC goes into iCCP, EXIF into eXIf.
    """
    pixels, alpha = image.pixels, image.alpha
    h, w, c = pixels.shape
    channels = c + (alpha is not None)
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    depth = 16 if pixels.dtype == np.uint16 else 8
    bpp = channels * depth // 8
    file.write(b"\x89PNG\r\n\x1a\n")
    file.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0)))
    if image.icc_profile:
        file.write(_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(image.icc_profile)))
    if image.exif:
        exif = image.exif
        file.write(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    compressor = zlib.compressobj(level)
    row_bytes = w * bpp
    band = max(1, _PNG_BAND_BYTES // row_bytes)
    previous = np.zeros(row_bytes, np.int16)
    for top in range(0, h, band):
        rows = pixels[top : top + band]
        if alpha is not None:
            rows = np.concatenate([rows, alpha[top : top + band, :, None]], axis=2)
        if depth == 16:
            rows = rows.astype(">u2")
        data = np.ascontiguousarray(rows).view(np.uint8).reshape(len(rows), row_bytes)
        x = data.astype(np.int16)
        up = np.concatenate([previous[None], x[:-1]])
        left = np.zeros_like(x)
        left[:, bpp:] = x[:, :-bpp]
        upleft = np.zeros_like(x)
        upleft[:, bpp:] = up[:, :-bpp]
        pa = np.abs(up - upleft)
        pb = np.abs(left - upleft)
        pc = np.abs(left + up - 2 * upleft)
        predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        out = np.empty((len(rows), row_bytes + 1), np.uint8)
        out[:, 0] = 4  # Paeth
        out[:, 1:] = (x - predictor).astype(np.uint8)  # wraps modulo 256
        previous = x[-1]
        compressed = compressor.compress(out.tobytes())
        if compressed:
            file.write(_chunk(b"IDAT", compressed))
    file.write(_chunk(b"IDAT", compressor.flush()))
    file.write(_chunk(b"IEND", b""))


def _tiff16(pixels: np.ndarray, alpha: np.ndarray | None, icc: bytes | None) -> bytes:
    """A little-endian, Deflate-compressed, single-strip 16-bit RGB or RGBA TIFF."""
    h, w, _ = pixels.shape
    if pixels.shape[2] == 1:  # 16-bit grey + alpha: stored as RGBA, which every reader takes
        pixels = np.repeat(pixels, 3, axis=2)
    planes = pixels if alpha is None else np.concatenate([pixels, alpha[:, :, None]], axis=2)
    spp = planes.shape[2]
    strip = zlib.compress(planes.astype("<u2").tobytes(), 6)
    photometric = 2
    entries: list[tuple[int, int, int, bytes | int]] = []  # tag, type, count, value

    def add(tag: int, typ: int, values: list[int] | bytes) -> None:
        if isinstance(values, bytes):
            entries.append((tag, typ, len(values), values))
        else:
            fmt = {3: "<H", 4: "<I"}[typ]
            entries.append((tag, typ, len(values), b"".join(struct.pack(fmt, v) for v in values)))

    add(256, 4, [w])
    add(257, 4, [h])
    add(258, 3, [16] * spp)
    add(259, 3, [8])  # Adobe Deflate
    add(262, 3, [photometric])
    add(273, 4, [0])  # strip offset, patched below
    add(277, 3, [spp])
    add(278, 4, [h])
    add(279, 4, [len(strip)])
    add(284, 3, [1])
    if alpha is not None:
        add(338, 3, [2])  # unassociated alpha
    if icc:
        add(34675, 7, icc)
    entries.sort(key=lambda e: e[0])
    ifd_offset = 8
    ifd_size = 2 + 12 * len(entries) + 4
    extra_offset = ifd_offset + ifd_size
    extra = bytearray()
    strip_offset_index = [i for i, e in enumerate(entries) if e[0] == 273][0]
    # Lay out the out-of-line values, then the strip.
    placed: list[bytes] = []
    for _, _, _, value in entries:
        assert isinstance(value, bytes)
        if len(value) <= 4:
            placed.append(value.ljust(4, b"\x00"))
        else:
            placed.append(struct.pack("<I", extra_offset + len(extra)))
            extra += value
            if len(extra) % 2:
                extra += b"\x00"
    strip_offset = extra_offset + len(extra)
    placed[strip_offset_index] = struct.pack("<I", strip_offset)
    ifd = bytearray(struct.pack("<H", len(entries)))
    for (tag, typ, count, _), value in zip(entries, placed, strict=True):
        ifd += struct.pack("<HHI", tag, typ, count) + value
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + bytes(ifd) + bytes(extra) + strip
