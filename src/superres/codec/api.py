"""SR-assisted compression: store a downscaled image with a standard codec, restore it on decoding.

Data flow::

    image --(8-bit, pad to a multiple of s, MATLAB bicubic / s)--> LR --codec--> payload
          --container.pack (+ ICC, EXIF)--> .srz bytes
    .srz --unpack--> payload --codec--> LR --(model or Lanczos) x s, crop to W x H--> image

Geometry: the image is padded on the bottom/right by mirroring (as ``imresize`` does at
borders) to ``(ceil(H/s) * s) x (ceil(W/s) * s)`` and shrunk by exactly ``1/s`` with
:func:`superres.core.resize.imresize`; nothing is cropped. The decoder restores ``x s`` and crops
the padding off, so every LR pixel stands for exactly ``s x s`` original pixels and no
sub-pixel shift or second resampling is introduced (a direct resize from ``W x H`` to
``ceil(W/s)`` would stretch the image by up to ``s`` pixels across its width).

v1 limits: no alpha (a fully opaque alpha channel is dropped, any other is an error); 16-bit
input is rounded to 8 bits; grey stays grey.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image as PILImage

from superres.codec import container, models
from superres.codec.base import Codec, ContainerError, get_codec
from superres.core import io
from superres.core.metrics import psnr_rgb
from superres.core.resize import imresize
from superres.inference import engine
from superres.models import SRModel
from superres.weights import zoo

__all__ = [
    "AUTO_SCALES",
    "Compressed",
    "TargetBitrateWarning",
    "compress",
    "compress_detailed",
    "compress_file",
    "decompress",
    "decompress_file",
]

#: Scales ``scale="auto"`` tries.
AUTO_SCALES = (1, 2, 3, 4)
ImageInput = io.Image | PILImage.Image | np.ndarray
_Restorer = tuple[SRModel | None, str, bytes]  # loaded model (None: Lanczos), name, hash


class TargetBitrateWarning(UserWarning):
    """``target_bpp`` is below what the lowest quality gives; the lowest quality was used."""


@dataclasses.dataclass(frozen=True)
class Compressed:
    """One compressed image and how it was made.

    Attributes:
        data: The ``.srz`` file.
        codec: Codec name.
        quality: Codec quality used.
        scale: Downscaling factor used.
        model: Restoration model name (:data:`superres.codec.models.MODELS`).
        bpp: ``len(data) * 8 / (W * H)``, original pixels, whole file.
        met_target: False when ``target_bpp`` was asked for and even the lowest quality
            exceeds it (the lowest quality is then used).
        psnr: PSNR-RGB (dB) of the decoded image against the 8-bit input, when it was
            computed (``scale="auto"``); else None.
    """

    data: bytes
    codec: str
    quality: int
    scale: int
    model: str
    bpp: float
    met_target: bool = True
    psnr: float | None = None


def compress(
    image: ImageInput,
    *,
    codec: str = "jpeg",
    quality: int | None = None,
    target_bpp: float | None = None,
    scale: int | Literal["auto"] = 1,
    model: str | None = None,
    subsampling: str | None = None,
) -> bytes:
    """Compress an image to ``.srz`` bytes; see :func:`compress_detailed` for the arguments."""
    return compress_detailed(
        image,
        codec=codec,
        quality=quality,
        target_bpp=target_bpp,
        scale=scale,
        model=model,
        subsampling=subsampling,
    ).data


def compress_detailed(
    image: ImageInput,
    *,
    codec: str = "jpeg",
    quality: int | None = None,
    target_bpp: float | None = None,
    scale: int | Literal["auto"] = 1,
    model: str | None = None,
    subsampling: str | None = None,
) -> Compressed:
    """Compress an image, returning the ``.srz`` bytes with the settings chosen.

    Args:
        image: :class:`superres.core.io.Image`, PIL image, or array ``H x W``, ``H x W x 1``,
            ``H x W x 3`` (or with a 2nd/4th alpha channel that is fully opaque), uint8 or
            uint16. ICC profile and EXIF of an Image or PIL image are stored.
        codec: ``"jpeg"``, ``"webp"`` or ``"avif"``.
        quality: Codec quality (default: the codec's). Exclusive with ``target_bpp``.
        target_bpp: Bits per original pixel the whole file may use: the highest quality
            that fits is found by bisection (at most 7 encodes). If even the lowest quality
            does not fit, it is used anyway, with a :class:`TargetBitrateWarning` and
            ``met_target=False``.
        scale: 1 (plain codec), 2, 3 or 4 (store the image that much smaller and restore it
            on decoding), or ``"auto"`` (needs ``target_bpp``): each of :data:`AUTO_SCALES`
            is encoded at the target, decoded, and the one with the best PSNR-RGB is kept
            (among those that meet the target; if none does, the smallest file).
        model: Restorer for scales > 1, by name (:data:`superres.codec.models.MODELS`).
            None: the best shipped tier with weights for the scale (``codec``, trained on
            decoded images, then ``quality``, then ``fast``), else ``bicubic``. Scale 1
            always uses ``lanczos`` (no restoration).
        subsampling: Chroma subsampling ``"4:2:0"`` or ``"4:4:4"`` (jpeg, avif); None: 4:2:0.

    Raises:
        ValueError: invalid arguments, alpha, an image too large, or a model without
            weights for the scale.
    """
    pixels, icc, exif = _prepare(image)
    chosen = get_codec(codec)
    if quality is not None and target_bpp is not None:
        raise ValueError("give quality or target_bpp, not both")
    if target_bpp is not None and not (math.isfinite(target_bpp) and target_bpp > 0):
        raise ValueError(f"target_bpp must be a positive number, got {target_bpp!r}")
    options = {} if subsampling is None else {"subsampling": subsampling}
    if quality is None and target_bpp is None:
        quality = chosen.default_quality
    if scale != "auto":
        if scale not in container.SCALES or isinstance(scale, bool):
            raise ValueError(f"scale must be 1, 2, 3, 4 or 'auto', got {scale!r}")
        restorer = _restorer(model, int(scale))
        result = _compress_at(
            pixels, icc, exif, chosen, quality, target_bpp, scale, restorer, options
        )
        return _warn_if_missed(result, target_bpp)
    if target_bpp is None:
        raise ValueError("scale='auto' needs target_bpp")
    if model is not None:
        models.model_id(model)  # an unknown name is an error, not a reason to skip scales
    results: list[Compressed] = []
    for s in AUTO_SCALES:
        try:
            restorer = _restorer(None if s == 1 else model, s)
        except ValueError:
            continue  # this model has no weights at this scale
        result = _compress_at(pixels, icc, exif, chosen, None, target_bpp, s, restorer, options)
        header, payload, _, _ = container.unpack(result.data, max_pixels=pixels[..., 0].size)
        decoded = _decode_pixels(header, payload, restorer[0])
        results.append(dataclasses.replace(result, psnr=psnr_rgb(decoded, pixels)))
    if len(results) == 1 and model not in (None, "lanczos"):
        raise ValueError(f"restoration model {model!r} has no weights for any scale > 1")
    met = [r for r in results if r.met_target]
    best = max(met, key=lambda r: r.psnr) if met else min(results, key=lambda r: r.bpp)
    return _warn_if_missed(best, target_bpp)


def decompress(data: bytes, *, device: str | None = None) -> io.Image:
    """Decode ``.srz`` bytes.

    Args:
        data: The file's bytes (never trusted).
        device: Torch device for an SR network (None: automatic); unused otherwise.

    Returns:
        The image at its original size (uint8, grey or RGB) with its ICC profile and EXIF.

    Raises:
        ContainerError: the data is not a valid ``.srz`` file, or its restoration model is
            not installed (or has other weights than the file was made for).
    """
    header, payload, icc, exif = container.unpack(data)
    net = None
    if header.model_id != models.LANCZOS:
        net, _ = models.load_restorer(
            header.model_id,
            header.scale,
            expected_hash=header.model_hash,
            device=engine.select_device(device),
        )
    pixels = _decode_pixels(header, payload, net)
    mode = "L" if header.channels == 1 else "RGB"
    return io.Image(pixels=pixels, icc_profile=icc, exif=exif, mode=mode)


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
) -> Compressed:
    """Compress the image file ``src`` to the ``.srz`` file ``dst`` (written atomically).

    Other arguments are those of :func:`compress_detailed`.

    Raises:
        ImageError: ``src`` cannot be read, ``dst`` exists (and not ``overwrite``) or cannot
            be written.
        ValueError: invalid arguments or image (see :func:`compress_detailed`).
    """
    dst = _check_output(dst, overwrite)
    result = compress_detailed(
        io.read_image(src),
        codec=codec,
        quality=quality,
        target_bpp=target_bpp,
        scale=scale,
        model=model,
        subsampling=subsampling,
    )
    try:
        io.atomic_write_bytes(dst, result.data, overwrite=overwrite)
    except FileExistsError:
        raise io.ImageError(dst, "output exists (use --overwrite to replace it)") from None
    except OSError as err:
        raise io.ImageError(dst, f"cannot write the file ({err.strerror or err})") from None
    return result


def decompress_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    device: str | None = None,
) -> io.Image:
    """Decode the ``.srz`` file ``src`` and write the image to ``dst`` (format from its extension).

    Nothing is written unless decoding succeeds; the write is atomic.

    Returns:
        The decoded image.

    Raises:
        ImageError: ``src`` cannot be read, ``dst`` exists (and not ``overwrite``) or cannot
            be written.
        ContainerError: ``src`` is not a valid ``.srz`` file (the message names it).
    """
    src, dst = Path(src), _check_output(dst, overwrite)
    try:
        data = src.read_bytes()
    except FileNotFoundError:
        raise io.ImageError(src, "no such file") from None
    except IsADirectoryError:
        raise io.ImageError(src, "is a folder, not an .srz file") from None
    except OSError as err:
        raise io.ImageError(src, f"cannot read the file ({err.strerror or err})") from None
    try:
        image = decompress(data, device=device)
    except ContainerError as err:
        raise ContainerError(f"{src}: {err}") from None
    io.write_image(dst, image, overwrite=overwrite)
    return image


# --------------------------------------------------------------------------- helpers


def _check_output(dst: str | os.PathLike[str], overwrite: bool) -> Path:
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise io.ImageError(dst, "output exists (use --overwrite to replace it)")
    if not dst.parent.is_dir():
        raise io.ImageError(dst, f"folder {dst.parent} does not exist")
    return dst


def _prepare(image: ImageInput) -> tuple[np.ndarray, bytes | None, bytes | None]:
    """8-bit ``H x W x C`` pixels, ICC and EXIF of any accepted input."""
    if isinstance(image, PILImage.Image):
        image = io.from_pil(image)
    elif isinstance(image, np.ndarray):
        array = image[:, :, None] if image.ndim == 2 else image
        if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
            raise ValueError(f"expected an array H x W x C with C in 1..4, got {image.shape}")
        if array.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"expected a uint8 or uint16 array, got {array.dtype}")
        alpha = array[:, :, -1] if array.shape[2] in (2, 4) else None
        colour = array[:, :, :-1] if alpha is not None else array
        image = io.Image(pixels=np.ascontiguousarray(colour), alpha=alpha)
    elif not isinstance(image, io.Image):
        raise TypeError(f"expected an Image, PIL image or numpy array, got {type(image).__name__}")
    pixels, alpha = image.pixels, image.alpha
    if alpha is not None and int(alpha.min()) != int(np.iinfo(alpha.dtype).max):
        raise ValueError(".srz does not store transparency: flatten the image's alpha first")
    pixels = io.to_8bit(pixels)  # nearest 8-bit level, as for 8-bit file formats
    h, w = pixels.shape[:2]
    limit = io.max_pixels()
    if h < 1 or w < 1 or w * h > limit:
        raise ValueError(f"image is {w}x{h}, outside 1..{limit} pixels (SUPERRES_MAX_PIXELS)")
    return np.ascontiguousarray(pixels), image.icc_profile, image.exif


def _restorer(model: str | None, scale: int) -> _Restorer:
    """``(loaded model or None, name, hash)`` of the restorer for ``scale``."""
    if scale == 1:
        if model not in (None, "lanczos"):
            raise ValueError(f"scale 1 stores the full image: there is nothing for {model!r} to do")
        return None, "lanczos", bytes(4)
    if model is None:
        shipped = {w.name for w in zoo.shipped_weights() if w.scale == scale}
        model = next((n for n in ("codec", "quality", "fast") if n in shipped), "bicubic")
    net, digest = models.load_restorer(model, scale)
    return net, models.MODELS[models.model_id(model)], digest


def _downscale(pixels: np.ndarray, scale: int) -> np.ndarray:
    """Mirror-pad to a multiple of ``scale`` and shrink by exactly ``1/scale`` (uint8)."""
    h, w, _ = pixels.shape
    lr_h, lr_w = math.ceil(h / scale), math.ceil(w / scale)
    padded = np.pad(pixels, ((0, lr_h * scale - h), (0, lr_w * scale - w), (0, 0)), "symmetric")
    hr = torch.from_numpy(padded).permute(2, 0, 1).float().div_(255.0)
    lr = imresize(hr, size=(lr_h, lr_w))
    lr = lr.clamp_(0, 1).mul_(255.0).add_(0.5).floor_().to(torch.uint8)
    return np.ascontiguousarray(lr.permute(1, 2, 0).numpy())


def _compress_at(
    pixels: np.ndarray,
    icc: bytes | None,
    exif: bytes | None,
    codec: Codec,
    quality: int | None,
    target_bpp: float | None,
    scale: int,
    restorer: _Restorer,
    options: dict[str, str],
) -> Compressed:
    """Encode at one scale, at ``quality`` or at the best quality that fits ``target_bpp``."""
    h, w, channels = pixels.shape
    _, name, digest = restorer
    lr = pixels if scale == 1 else _downscale(pixels, scale)
    header = container.Header(
        width=w,
        height=h,
        channels=channels,
        scale=scale,
        codec_id=codec.codec_id,
        model_id=models.model_id(name),
        model_hash=digest,
    )

    def encode(q: int) -> bytes:
        return container.pack(header, codec.encode(lr, q, **options), icc, exif)

    def bpp(data: bytes) -> float:
        return len(data) * 8 / (w * h)

    met = True
    if target_bpp is None:
        quality = codec.check_quality(quality)
        data = encode(quality)
    else:
        quality, data, met = _fit(encode, codec.quality_range, lambda d: bpp(d) <= target_bpp)
    return Compressed(data, codec.name, quality, scale, name, bpp(data), met)


def _warn_if_missed(result: Compressed, target_bpp: float | None) -> Compressed:
    if not result.met_target:
        warnings.warn(
            f"{result.codec} x{result.scale}: even quality {result.quality} needs "
            f"{result.bpp:.4f} bpp, above the target {target_bpp}",
            TargetBitrateWarning,
            stacklevel=3,
        )
    return result


def _fit(
    encode: Callable[[int], bytes], quality_range: tuple[int, int], fits: Callable[[bytes], bool]
) -> tuple[int, bytes, bool]:
    """Bisect the highest quality whose file ``fits`` (``(lowest, its file, False)`` if none).

    Invariant: ``good`` fits (or is below the range) and ``bad`` does not (or is above it),
    so the answer fits and the quality one above it does not; 101 qualities take 7 encodes.
    """
    low, high = quality_range
    tried: dict[int, bytes] = {}
    good, bad = low - 1, high + 1
    while bad - good > 1:
        mid = (good + bad) // 2
        tried[mid] = encode(mid)
        if fits(tried[mid]):
            good = mid
        else:
            bad = mid
    if good < low:
        return low, tried[low], False
    return good, tried[good], True


def _decode_pixels(header: container.Header, payload: bytes, net: SRModel | None) -> np.ndarray:
    """Decode the payload and restore it to the original size."""
    lr = get_codec(header.codec_id).decode(payload, header.lr_size, channels=header.channels)
    if header.scale == 1:
        return lr
    return restore(lr, header.scale, (header.height, header.width), net)


def restore(lr: np.ndarray, scale: int, size: tuple[int, int], net: SRModel | None) -> np.ndarray:
    """Upscale a decoded ``lr`` (``h x w x C`` uint8) ``scale`` times with ``net`` (None:
    Lanczos) and crop the padding off to ``size`` = ``(H, W)``."""
    lr_h, lr_w, channels = lr.shape
    if net is None:
        im = PILImage.fromarray(lr[:, :, 0] if channels == 1 else lr)
        sr = np.asarray(im.resize((lr_w * scale, lr_h * scale), PILImage.Resampling.LANCZOS))
        sr = sr.reshape(lr_h * scale, lr_w * scale, channels)
    else:
        sr, _ = engine.upscale_array(lr, net)
    return np.ascontiguousarray(sr[: size[0], : size[1]])
