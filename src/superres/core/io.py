"""Reading and writing image files: modes, alpha, 16-bit, EXIF orientation, ICC/EXIF, atomic writes.

Data flow::

    file --read_image--> Image(pixels H x W x C uint8|uint16, alpha H x W | None, icc, exif)
         --write_image (format from the extension, temp file + rename)--> file

Every failure a user can cause (missing, unreadable, truncated, non-image, over-limit or
unsupported files; an existing output) raises :class:`ImageError`, whose message is one line
``"<path>: <problem>"`` (``"<bytes>: ..."`` for bytes, the object's ``name`` or
``"<BytesIO>"`` for a file object). Nothing is written for a failed read, and a failed write
leaves no file behind: writes go to a temporary file beside the target that is fsynced,
renamed into place only once it is complete, and the folder is fsynced after the rename.

Thread safety: reading never changes process-wide state. Pillow's decompression-bomb limit
(``PIL.Image.MAX_IMAGE_PIXELS``) and ``ImageFile.LOAD_TRUNCATED_IMAGES`` are left as they
are: the file's header is parsed by Pillow's format plugin directly (without the bomb check
of ``PIL.Image.open``), and the size is checked against :func:`max_pixels` before any pixel
is decoded. Truncated data is an error unless the process itself has set
``LOAD_TRUNCATED_IMAGES``.

16-bit colour: Pillow keeps 16 bits for greyscale (``I;16``) but reduces 16-bit RGB(A)
PNG and TIFF to 8 bits. This module recovers the low bytes by decoding the same file a second
time with the opposite byte order (the decoder still does the unfiltering/decompression in
C), and writes 16-bit RGB(A) PNG and TIFF with its own small encoders. JPEG, WebP and AVIF
are 8-bit formats: 16-bit images are rounded to 8 bits when saved to them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io as _bytesio
import os
import struct
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from superres.errors import ConfigError, ImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_OUTPUT_EXTENSIONS",
    "Image",
    "ImageError",
    "ImageSource",
    "atomic_write",
    "atomic_write_bytes",
    "encode_image",
    "from_pil",
    "max_pixels",
    "output_format",
    "read_image",
    "source_name",
    "to_pil",
    "write_image",
]

#: Largest input accepted by default (pixels); ``SUPERRES_MAX_PIXELS`` overrides it.
DEFAULT_MAX_PIXELS = 256_000_000

#: Output extension -> Pillow format.
_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".avif": "AVIF",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
SUPPORTED_OUTPUT_EXTENSIONS: tuple[str, ...] = tuple(_FORMATS)

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
    fmt = _FORMATS.get(key)
    if fmt is None:
        shown = suffix or text or "(none)"
        raise ImageError(
            text,
            f"unsupported output format {shown!r} "
            f"(use one of {', '.join(SUPPORTED_OUTPUT_EXTENSIONS)})",
        )
    return fmt


_EIGHT_BIT_FORMATS = ("JPEG", "WEBP", "AVIF")


@dataclasses.dataclass(frozen=True)
class Image:
    """An image as arrays, with what must survive a round trip kept aside.

    Attributes:
        pixels: ``H x W x C`` (C = 1 grey or 3 RGB), uint8 or uint16, not premultiplied.
        alpha: ``H x W`` alpha of the same dtype, or None.
        icc_profile: ICC profile bytes to copy to the output, or None.
        exif: EXIF bytes (orientation already applied and reset), or None.
        mode: Pillow mode of the source file (informational, e.g. ``"P"``, ``"CMYK"``).
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    mode: str = ""

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


# --------------------------------------------------------------------------- atomic writes


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, overwrite: bool = True
) -> Path:
    """Write ``data`` to ``path`` durably and atomically (see :func:`atomic_write`).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    return atomic_write(path, lambda file: file.write(data), overwrite=overwrite)


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[BinaryIO], object],
    *,
    overwrite: bool = True,
) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it into place.

    The one atomic write of the package: the temporary file is flushed and fsynced, renamed
    onto ``path`` (or hard-linked, when ``overwrite`` is False, so that a file that appeared
    meanwhile is never replaced), and the folder is fsynced so the rename survives a crash.
    Readers never see a partial file; on any error the temporary file is removed and
    ``path`` is untouched. ``write`` may stream (outputs too large to hold twice).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: file exists")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o644)
            write(file)
            file.flush()
            os.fsync(file.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic and fails if the target appeared meanwhile
            except FileExistsError:
                raise FileExistsError(f"{path}: file exists") from None
            except OSError:  # file systems without hard links
                os.replace(tmp, path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened/fsynced)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # e.g. file systems that do not support fsync on folders
        pass
    finally:
        os.close(fd)


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
            raise ImageError(label, f"cannot read ({_describe(err)})") from None
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
            _load(label, im)
            return _to_image(label, im, low, grey)
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
        raise ImageError(label, f"cannot decode the image ({_describe(err)})") from None


def _describe(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]


def _load(path: Path, im: PILImage.Image) -> None:
    try:
        im.load()
    except OSError as err:
        text = str(err).lower()
        if "truncated" in text or "premature" in text or "broken" in text:
            raise ImageError(path, f"truncated or corrupt image data ({_describe(err)})") from None
        raise ImageError(path, f"cannot decode the image ({_describe(err)})") from None


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


# --------------------------------------------------------------------------- PIL conversion


def from_pil(im: PILImage.Image) -> Image:
    """An :class:`Image` from a PIL image (EXIF orientation applied, metadata kept)."""
    if not isinstance(im, PILImage.Image):
        raise TypeError(f"expected a PIL image, got {type(im).__name__}")
    im.load()
    return _to_image(Path(getattr(im, "filename", "") or "<PIL image>"), im, None)


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


def to_8bit(a: np.ndarray) -> np.ndarray:
    """Round 16-bit values to the nearest 8-bit level (x * 255 / 65535, half up)."""
    if a.dtype == np.uint8:
        return a
    return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


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
    fmt = _FORMATS.get(path.suffix.lower())
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
        raise ImageError(path, f"cannot write the image ({_describe(err)})") from None
    return path


def encode_image(image: Image, fmt: str, *, quality: int | None = None) -> bytes:
    """The bytes of ``image`` encoded as ``fmt`` (``"PNG"``, ``"JPEG"``, ``"WEBP"``, ...)."""
    fmt = fmt.upper()
    pixels, alpha = image.pixels, image.alpha
    if fmt == "PNG":
        buffer = _bytesio.BytesIO()
        _write_png(buffer, image)
        return buffer.getvalue()
    sixteen = pixels.dtype == np.uint16 and fmt not in _EIGHT_BIT_FORMATS
    if sixteen and (pixels.shape[2] == 3 or alpha is not None):
        return _tiff16(pixels, alpha, image.icc_profile)
    if fmt in _EIGHT_BIT_FORMATS:
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
