"""``.srz`` files: :func:`compress_file` and :func:`decompress_file`, and the output check
they run before any work.

The cheap checks come first (the device, the output's name, an existing output, a file
where a folder should be), then the input is read and the work done; the output's folder
is created only once there is something to write, and every write is atomic, so a failure
leaves nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from superres.codec import api
from superres.codec.base import ContainerError
from superres.core import io
from superres.errors import ImageError, read_problem
from superres.inference import engine

__all__ = ["check_output", "compress_file", "decompress_file"]


def compress_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    codec: str = "jpeg",
    quality: int | None = None,
    target_bpp: float | None = None,
    scale: int | Literal["auto"] = 1,
    model: str | None = None,
    subsampling: str | None = None,
    overwrite: bool = False,
    allow_over: bool = False,
    device: str | None = None,
    roi: api.RoiInput | None = None,
    roi_weight: float = api.ROI_WEIGHT,
    adapt_steps: int = 0,
) -> api.Compressed:
    """Compress the image file ``src`` to the ``.srz`` file ``dst`` (written atomically).

    ``dst`` is checked before ``src`` is read; its folder is created (with its parents)
    only once the file is ready to be written, so a failure leaves nothing behind. Other
    arguments are those of :func:`superres.codec.compress_detailed`.

    Raises:
        ImageError: ``src`` cannot be read or holds what ``.srz`` cannot store (alpha, too
            many pixels), ``dst`` exists (and not ``overwrite``), or ``dst`` or its folder
            cannot be written; a mask file (``roi``) cannot be read or selects nothing (the
            message names the mask).
        TargetBitrateError: ``target_bpp`` cannot be met (the message names ``src``).
        ConfigError, DeviceError: invalid arguments (see :func:`superres.codec.compress_detailed`).
    """
    dst = check_output(dst, overwrite=overwrite)
    if device is not None:
        engine.select_device(device)
    try:
        pixels, icc, exif = api.prepare(io.read_image(src))
    except ImageError:
        raise
    except ValueError as err:  # alpha, size: a problem of this file
        raise ImageError(src, str(err)) from None
    try:
        result = api.compress_detailed(
            io.Image(pixels, icc_profile=icc, exif=exif), codec=codec, quality=quality,
            target_bpp=target_bpp, scale=scale, model=model, subsampling=subsampling,
            allow_over=allow_over, device=device, roi=roi, roi_weight=roi_weight,
            adapt_steps=adapt_steps,
        )  # fmt: skip
    except api.TargetBitrateError as err:
        raise api.TargetBitrateError(f"{src}: {err}") from None
    _make_folder(dst)
    try:
        io.atomic_write_bytes(dst, result.data, overwrite=overwrite)
    except FileExistsError:
        raise ImageError(dst, "output exists") from None
    except OSError as err:
        raise ImageError(dst, f"cannot write the file ({err.strerror or err})") from None
    return result


def decompress_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    device: str | None = None,
) -> io.Image:
    """Decode the ``.srz`` file ``src`` and write the image to ``dst`` (format from its extension).

    The cheap checks come first (the device, ``dst``'s extension, an existing ``dst``, a
    file where its folder should be), then ``src`` is read and decoded; ``dst``'s folder is
    created only after decoding succeeded, and the write is atomic, so nothing is written
    unless the whole decode succeeds.

    Returns:
        The decoded image.

    Raises:
        ImageError: ``src`` cannot be read; ``dst`` has an unsupported extension, exists
            (and not ``overwrite``) or cannot be written.
        ContainerError: ``src`` is not a valid ``.srz`` file (the message names it).
        DeviceError: ``device`` is unknown or not available.
    """
    dev = engine.select_device(device)
    src = Path(src)
    dst = check_output(dst, overwrite=overwrite, extensions=io.SUPPORTED_OUTPUT_EXTENSIONS)
    try:
        data = src.read_bytes()
    except OSError as err:
        raise ImageError(src, read_problem(err, "an .srz file")) from None
    try:
        image = api.decompress(data, device=dev)
    except ContainerError as err:
        raise ContainerError(f"{src}: {err}") from None
    _make_folder(dst)
    io.write_image(dst, image, overwrite=overwrite)
    return image


def check_output(
    dst: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    extensions: tuple[str, ...] | None = None,
) -> Path:
    """Check an output path before any work is done for it; returns it as a :class:`Path`.

    Its folder need not exist (:func:`compress_file` and :func:`decompress_file` create
    it), but nothing on the way may be a file.

    Args:
        dst: The output file.
        overwrite: Whether an existing file may be replaced.
        extensions: Accepted suffixes (lower case, with the dot); None accepts any.

    Raises:
        ImageError: ``dst`` is a folder, exists (and not ``overwrite``), has an extension
            not in ``extensions``, or a file stands where one of its folders should be.
    """
    dst = Path(dst)
    if extensions is not None and dst.suffix.lower() not in extensions:
        raise ImageError(
            dst,
            f"unsupported output extension {dst.suffix or '(none)'!r} "
            f"(use one of {', '.join(extensions)})",
        )
    if dst.is_dir():
        raise ImageError(dst, "is a folder")
    if dst.exists() and not overwrite:
        raise ImageError(dst, "output exists")
    folder = next((p for p in dst.parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise ImageError(dst, f"{folder} is a file, not a folder")
    return dst


def _make_folder(dst: Path) -> None:
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ImageError(
            dst, f"cannot create the folder {dst.parent} ({err.strerror or err})"
        ) from None
