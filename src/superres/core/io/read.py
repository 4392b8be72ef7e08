"""Reading images from paths, bytes and binary file objects (see :mod:`superres.core.io`)."""

from __future__ import annotations

import contextlib
import dataclasses
import io as _bytesio
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from superres.core.io.image import DEFAULT_MAX_PIXELS, Image, ImageSource, describe_error
from superres.errors import ImageError

# --------------------------------------------------------------------------- reading


def max_pixels() -> int:
    """The input size limit: ``SUPERRES_MAX_PIXELS`` if set, else :data:`DEFAULT_MAX_PIXELS`."""
    value = os.environ.get("SUPERRES_MAX_PIXELS", "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(float(value))
    except ValueError:
        raise ValueError(f"SUPERRES_MAX_PIXELS={value!r} is not a number") from None
    return limit if limit > 0 else DEFAULT_MAX_PIXELS


def source_name(source: ImageSource) -> str:
    """How messages name ``source``: the path, ``"<bytes>"``, or a file object's ``name``
    (``"<BytesIO>"`` and the like when it has none)."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    name = getattr(source, "name", None)
    if isinstance(name, (str, os.PathLike)) and os.fspath(name):
        return os.fspath(name)
    return f"<{type(source).__name__}>"


def _opener(source: ImageSource, label: Path) -> Callable[[], BinaryIO]:
    """A function returning a fresh binary stream over ``source`` each time it is called."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageError(label, "no such file")
        if path.is_dir():
            raise ImageError(label, "is a folder, not an image file")
        return lambda: open(path, "rb")  # noqa: SIM115 - closed by the caller's `with`
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif callable(getattr(source, "read", None)):
        try:
            data = source.read()
        except PermissionError:
            raise ImageError(label, "permission denied") from None
        except OSError as err:
            raise ImageError(label, f"cannot read ({describe_error(err)})") from None
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"{label}: expected a binary file object, got {type(data).__name__}")
        data = bytes(data)
    else:
        raise TypeError(
            f"expected a path, bytes or a binary file object, got {type(source).__name__}"
        )
    if not data:
        raise ImageError(label, "empty file")
    return lambda: _bytesio.BytesIO(data)


def _open(file: BinaryIO) -> PILImage.Image:
    """Parse an image header like ``PIL.Image.open``, but without its decompression-bomb
    check (the caller checks the size against its own limit), so that no process-wide
    setting is ever changed. Tries the formats Pillow knows, in Pillow's order.
    """
    prefix = file.read(16)
    tried: set[str] = set()
    for loader in (PILImage.preinit, PILImage.init):
        loader()
        for fmt in list(PILImage.ID):
            if fmt in tried or fmt not in PILImage.OPEN:
                continue
            tried.add(fmt)
            factory, accept = PILImage.OPEN[fmt]
            try:
                verdict = True if accept is None else accept(prefix)
                if not verdict or isinstance(verdict, str):
                    continue
                file.seek(0)
                return factory(file, "")
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue
    raise UnidentifiedImageError("cannot identify image file")


def read_image(source: ImageSource, *, limit: int | None = None) -> Image:
    """Read an image from a file, its bytes or a binary file object; apply EXIF orientation.

    Modes: 1, L, I;16 (and 16-bit grey PNG/TIFF) give one channel; RGB, P, CMYK, YCbCr, LAB,
    HSV give three; LA, PA, RGBA (and P with transparency) add an alpha channel. 16-bit
    RGB(A) PNG and TIFF keep 16 bits. CMYK with an ICC profile is converted to sRGB through
    the profile (the CMYK profile is then not carried to the output).

    Thread-safe: nothing process-wide is changed (see the module docstring).

    Args:
        source: A path, the bytes of an image file, or a binary file object (read from its
            current position to the end).
        limit: Largest accepted width x height (None: :func:`max_pixels`); checked from the
            header, before any pixel data is decoded.

    Raises:
        ImageError: the file is missing, a folder, unreadable, not an image, truncated or
            corrupt, over the size limit, or of an unsupported mode. The message names the
            path, ``<bytes>`` or the file object (see :func:`source_name`).
        TypeError: ``source`` is none of the above (a text file, say).
    """
    label = Path(source_name(source))
    limit = max_pixels() if limit is None else limit
    try:
        opener = _opener(source, label)
        with opener() as file:
            try:
                im = _open(file)
            except UnidentifiedImageError:
                raise ImageError(
                    label, "not an image file (or a format Pillow cannot read)"
                ) from None
            width, height = im.size
            if width * height > limit:
                raise ImageError(
                    label,
                    f"image is {width}x{height} = {width * height} pixels, over the limit of "
                    f"{limit} (set SUPERRES_MAX_PIXELS to raise it)",
                )
            if width < 1 or height < 1:
                raise ImageError(label, f"empty image ({width}x{height})")
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)  # animated or multi-page: the first frame
            low = _low_bytes(opener, im)
            grey = _grey_source(im)  # (the tile list is gone after loading)
            fmt = str(im.format or "")
            lossy = fmt in LOSSY_FORMATS and not (fmt == "WEBP" and _webp_lossless(opener))
            _load(label, im)
            image = _to_image(label, im, low, grey)
            return dataclasses.replace(image, source_format=fmt, lossy=lossy)
    except ImageError:
        raise
    except PILImage.DecompressionBombError:
        raise ImageError(
            label,
            "over Pillow's decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS) while decoding",
        ) from None
    except PermissionError:
        raise ImageError(label, "permission denied") from None
    except MemoryError:
        raise ImageError(label, "out of memory while decoding") from None
    except (OSError, ValueError, SyntaxError, struct.error, EOFError, IndexError) as err:
        raise ImageError(label, f"cannot decode the image ({describe_error(err)})") from None


#: Formats whose files are (nearly always) coded lossily. WebP is checked for its lossless
#: bitstream; lossless AVIF (rare: 4:4:4 with identity matrix) is counted as lossy.
LOSSY_FORMATS = ("JPEG", "MPO", "WEBP", "AVIF")


def _webp_lossless(opener: Callable[[], BinaryIO]) -> bool:
    """Whether a WebP file's image bitstream is ``VP8L`` (lossless) rather than ``VP8 ``.

    Walks the RIFF chunks (``VP8X`` files carry the bitstream after their feature chunks).
    """
    with opener() as file:
        head = file.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
            return False
        for _ in range(64):
            chunk = file.read(8)
            if len(chunk) < 8:
                return False
            kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if kind == b"VP8L":
                return True
            if kind == b"VP8 ":
                return False
            file.seek(size + (size & 1), 1)
    return False


def _load(path: Path, im: PILImage.Image) -> None:
    try:
        im.load()
    except OSError as err:
        text = str(err).lower()
        if "truncated" in text or "premature" in text or "broken" in text:
            raise ImageError(
                path, f"truncated or corrupt image data ({describe_error(err)})"
            ) from None
        raise ImageError(path, f"cannot decode the image ({describe_error(err)})") from None


_SIXTEEN = {
    ";16B": ";16L",
    ";16L": ";16B",
    ";16N": ";16B" if sys.byteorder == "little" else ";16L",
}


def _low_bytes(opener: Callable[[], BinaryIO], im: PILImage.Image) -> np.ndarray | None:
    """For 16-bit RGB(A)/LA files that Pillow reduces to 8 bits, the dropped low bytes.

    The file is opened again with each tile's raw mode switched to the opposite byte order,
    so Pillow's unpacker picks the low byte of every sample instead of the high one.
    """
    if im.mode not in ("RGB", "RGBA") or im.format not in ("PNG", "TIFF"):
        return None
    tiles = list(im.tile)
    if not tiles:
        return None
    swapped = []
    for tile in tiles:
        args = tile.args
        raw = args if isinstance(args, str) else (args[0] if args else None)
        if not isinstance(raw, str) or raw[-4:] not in _SIXTEEN or raw.startswith("LA"):
            return None  # 8-bit, or 16-bit grey+alpha (no unpacker for its low bytes)
        new_raw = raw[:-4] + _SIXTEEN[raw[-4:]]
        new_args = new_raw if isinstance(args, str) else (new_raw, *args[1:])
        swapped.append(tile._replace(args=new_args))
    with opener() as file:
        twin = _open(file)
        if getattr(twin, "n_frames", 1) > 1:
            twin.seek(0)
        twin.tile = swapped
        try:
            twin.load()
        except (OSError, ValueError):
            return None  # the main decode reports what is wrong with the file
        return np.asarray(twin)


def _to_image(
    path: Path, im: PILImage.Image, low: np.ndarray | None, grey_alpha: bool = False
) -> Image:
    """Orientation, mode conversion and metadata of an opened, loaded image."""
    icc = im.info.get("icc_profile") or None
    exif_bytes: bytes | None = None
    orientation = 1
    with contextlib.suppress(Exception):
        exif = im.getexif()
        orientation = int(exif.get(0x0112, 1) or 1)
        if len(exif):
            if orientation != 1:
                exif[0x0112] = 1
            exif_bytes = exif.tobytes() or None
    mode = im.mode
    alpha: np.ndarray | None = None
    if mode == "1":
        pixels = np.asarray(im.convert("L"))
    elif mode == "L":
        pixels = np.asarray(im)
    elif mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        pixels = np.clip(arr, 0, 65535).astype(np.uint16) if arr.dtype != np.uint16 else arr
        pixels = pixels.astype(np.uint16, copy=False)
    elif mode in ("LA", "La", "PA") or (mode == "P" and "transparency" in im.info):
        if mode == "P" or mode == "PA":
            rgba = np.asarray(im.convert("RGBA"))
            pixels, alpha = rgba[:, :, :3], rgba[:, :, 3]
        else:
            la = np.asarray(im.convert("LA") if mode == "La" else im)
            pixels, alpha = la[:, :, 0], la[:, :, 1]
            if low is not None and mode == "LA":
                pixels, alpha = _join16(pixels, low[:, :, 0]), _join16(alpha, low[:, :, 1])
    elif mode in ("RGBA", "RGBa"):
        rgba = np.asarray(im.convert("RGBA") if mode == "RGBa" else im)
        pixels, alpha = rgba[:, :, :3], rgba[:, :, 3]
        if grey_alpha:
            pixels = pixels[:, :, :1]
        if low is not None and mode == "RGBA":
            pixels, alpha = _join16(pixels, low[:, :, :3]), _join16(alpha, low[:, :, 3])
    elif mode == "RGB":
        pixels = np.asarray(im)
        if low is not None:
            pixels = _join16(pixels, low)
    elif mode == "CMYK":
        pixels, icc = _cmyk_to_rgb(im, icc)
    elif mode in ("P", "RGBX", "YCbCr", "LAB", "HSV"):
        pixels = np.asarray(im.convert("RGB"))
    else:
        raise ImageError(path, f"unsupported image mode {mode}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    pixels = np.ascontiguousarray(pixels)
    if alpha is not None:
        alpha = np.ascontiguousarray(alpha)
        if alpha.dtype != pixels.dtype:  # pragma: no cover - defensive
            alpha = alpha.astype(pixels.dtype)
    pixels, alpha = _orient(pixels, alpha, orientation)
    return Image(pixels=pixels, alpha=alpha, icc_profile=icc, exif=exif_bytes, mode=mode)


def _grey_source(im: PILImage.Image) -> bool:
    """Whether Pillow widened a grey+alpha file (16-bit LA PNG) to RGBA."""
    for tile in getattr(im, "tile", None) or []:
        args = tile.args
        raw = args if isinstance(args, str) else (args[0] if args else "")
        if isinstance(raw, str) and raw.startswith("LA"):
            return True
    return False


def _join16(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    return (high.astype(np.uint16) << 8) | low.astype(np.uint16)


def _cmyk_to_rgb(im: PILImage.Image, icc: bytes | None) -> tuple[np.ndarray, bytes | None]:
    if icc:
        with contextlib.suppress(Exception):
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(_bytesio.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            rgb = ImageCms.profileToProfile(im, source, srgb, outputMode="RGB")
            return np.asarray(rgb), None
    return np.asarray(im.convert("RGB")), None


def _orient(
    pixels: np.ndarray, alpha: np.ndarray | None, orientation: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply an EXIF orientation (1..8) to arrays (the rule of ``ImageOps.exif_transpose``)."""

    def apply(a: np.ndarray) -> np.ndarray:
        if orientation == 2:
            a = a[:, ::-1]
        elif orientation == 3:
            a = a[::-1, ::-1]
        elif orientation == 4:
            a = a[::-1]
        elif orientation == 5:
            a = a.swapaxes(0, 1)
        elif orientation == 6:
            a = a.swapaxes(0, 1)[:, ::-1]
        elif orientation == 7:
            a = a.swapaxes(0, 1)[::-1, ::-1]
        elif orientation == 8:
            a = a.swapaxes(0, 1)[::-1]
        return np.ascontiguousarray(a)

    if orientation not in range(2, 9):
        return pixels, alpha
    return apply(pixels), None if alpha is None else apply(alpha)


def from_pil(im: PILImage.Image) -> Image:
    """An :class:`Image` from a PIL image (EXIF orientation applied, metadata kept)."""
    if not isinstance(im, PILImage.Image):
        raise TypeError(f"expected a PIL image, got {type(im).__name__}")
    im.load()
    image = _to_image(Path(getattr(im, "filename", "") or "<PIL image>"), im, None)
    fmt = str(getattr(im, "format", None) or "")
    lossy = fmt in LOSSY_FORMATS
    filename = getattr(im, "filename", "")
    if fmt == "WEBP" and filename and Path(filename).is_file():  # else counted as lossy
        lossy = not _webp_lossless(lambda: open(filename, "rb"))  # noqa: SIM115
    return dataclasses.replace(image, source_format=fmt, lossy=lossy)
