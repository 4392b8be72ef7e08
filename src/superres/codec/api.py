"""SR-assisted compression: store a downscaled image with a standard codec, restore it on decoding.

Data flow::

    image --(8-bit, pad to a multiple of s, MATLAB bicubic / s)--> LR [--adapt_lr-->]
          --codec--> payload --container.pack (+ ICC, EXIF)--> .srz bytes
    .srz --unpack--> payload --codec--> LR --(model or Lanczos) x s, crop to W x H--> image

With a region of interest (``roi=``), the file also holds the mask and an enhancement layer
(the residual between the image and the restored base, over the region, with the same codec:
:mod:`superres.codec.roi`); the base and enhancement qualities are chosen together so that
the whole file meets ``target_bpp`` and the ROI-weighted squared error is smallest. With
``adapt_steps`` the encoder refines the LR image for the restorer first
(:func:`superres.codec.pipeline.adapt_lr`); decoders are unchanged.

This module holds the in-memory API (:func:`compress`, :func:`compress_detailed`,
:func:`decompress`); the steps it is made of are in :mod:`superres.codec.pipeline` and the
file functions in :mod:`superres.codec.files`.

Geometry: the image is padded on the bottom/right by mirroring (as ``imresize`` does at
borders) to ``(ceil(H/s) * s) x (ceil(W/s) * s)`` and shrunk by exactly ``1/s`` with
:func:`superres.core.resize.imresize`; nothing is cropped. The decoder restores ``x s`` and crops
the padding off, so every LR pixel stands for exactly ``s x s`` original pixels and no
sub-pixel shift or second resampling is introduced (a direct resize from ``W x H`` to
``ceil(W/s)`` would stretch the image by up to ``s`` pixels across its width).

Limits: no alpha (a fully opaque alpha channel is dropped, any other is an error); 16-bit
input is rounded to 8 bits; grey stays grey.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image as PILImage

from superres.codec import container, models, pipeline, roi
from superres.codec.base import Codec, ContainerError, get_codec
from superres.codec.pipeline import downscale, restore  # noqa: F401  (importable from here too)
from superres.core import io, regions
from superres.core.metrics import psnr_rgb
from superres.errors import ConfigError, DeviceError, SuperresWarning
from superres.inference import engine
from superres.inference.loop import Progress

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "ADAPT_STEPS",
    "AUTO_SCALES",
    "ROI_WEIGHT",
    "Compressed",
    "TargetBitrateError",
    "TargetBitrateWarning",
    "compress",
    "compress_detailed",
    "decompress",
    "prepare",
]

#: Scales ``scale="auto"`` tries.
AUTO_SCALES = (1, 2, 3, 4)

#: Adaptive-downscaling steps of ``superres compress --adapt`` with no number: on two Kodak
#: images at x2, 10 steps gave 80-90 % of 20 steps' gain at JPEG q80 and WebP q60 / q90.
ADAPT_STEPS = 10

#: The most adaptive-downscaling steps accepted (each costs a forward and backward pass).
MAX_ADAPT_STEPS = 200

#: Default ``roi_weight``: how many times a region-of-interest pixel's squared error counts
#: as much as another pixel's when the base and enhancement qualities are chosen.
ROI_WEIGHT = 8.0
#: Most base qualities the region-of-interest search tries (each costs one restoration).
_ROI_PROBES = 5
ImageInput = io.Image | PILImage.Image | np.ndarray
RoiInput = regions.MaskSource | Literal["auto"]


class TargetBitrateWarning(SuperresWarning):
    """``target_bpp`` is below what the lowest quality gives and ``allow_over`` was given:
    the lowest quality was used."""


class TargetBitrateError(ConfigError):
    """``target_bpp`` is below what the lowest quality gives (and ``allow_over`` is False)."""


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
            computed (``scale="auto"`` or ``roi``); else None.
        roi_quality: Codec quality of the enhancement layer (files with a region of
            interest; else None).
        roi_bytes: Bytes of the enhancement layer and the mask (0 without a region).
    """

    data: bytes
    codec: str
    quality: int
    scale: int
    model: str
    bpp: float
    met_target: bool = True
    psnr: float | None = None
    roi_quality: int | None = None
    roi_bytes: int = 0


def compress(
    image: ImageInput,
    *,
    codec: str = "jpeg",
    quality: int | None = None,
    target_bpp: float | None = None,
    scale: int | Literal["auto"] = 1,
    model: str | None = None,
    subsampling: str | None = None,
    allow_over: bool = False,
    device: str | None = None,
    roi: RoiInput | None = None,
    roi_weight: float = ROI_WEIGHT,
    tile: int | None = None,
    progress: Progress | None = None,
    adapt_steps: int = 0,
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
        allow_over=allow_over,
        device=device,
        roi=roi,
        roi_weight=roi_weight,
        tile=tile,
        progress=progress,
        adapt_steps=adapt_steps,
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
    allow_over: bool = False,
    device: str | None = None,
    roi: RoiInput | None = None,
    roi_weight: float = ROI_WEIGHT,
    tile: int | None = None,
    progress: Progress | None = None,
    adapt_steps: int = 0,
) -> Compressed:
    """Compress an image, returning the ``.srz`` bytes with the settings chosen.

    Args:
        image: :class:`superres.core.io.Image`, PIL image, or array ``H x W``, ``H x W x 1``,
            ``H x W x 3`` (or with a 2nd/4th alpha channel that is fully opaque), uint8 or
            uint16. ICC profile and EXIF of an Image or PIL image are stored.
        codec: A name from :func:`superres.codec.list_codecs` (``"jpeg"``, ``"webp"``,
            ``"avif"``).
        quality: Codec quality (default: the codec's :attr:`~superres.codec.Codec.default_quality`
            when ``target_bpp`` is not given either). Exclusive with ``target_bpp``.
        target_bpp: Bits per original pixel the whole file may use: the highest quality
            that fits is found by bisection (at most 7 encodes). If even the lowest quality
            does not fit, :class:`TargetBitrateError` is raised, unless ``allow_over``.
        scale: 1 (plain codec), 2, 3 or 4 (store the image that much smaller and restore it
            on decoding), or ``"auto"`` (needs ``target_bpp``): each of :data:`AUTO_SCALES`
            is encoded at the target, decoded, and the one with the best PSNR-RGB is kept
            (among those that meet the target; if none does, the smallest file).
        model: Restorer for scales > 1, by name (:data:`superres.codec.models.MODELS`).
            None: the best shipped tier with weights for the scale (``codec``, trained on
            decoded images, then ``quality``, then ``fast``), else ``bicubic``. Scale 1
            always uses ``lanczos`` (no restoration).
        subsampling: Chroma subsampling ``"4:2:0"`` or ``"4:4:4"`` (jpeg, avif); None: 4:2:0.
        allow_over: When ``target_bpp`` cannot be met, use the lowest quality anyway (with
            a :class:`TargetBitrateWarning` and ``met_target=False``) instead of raising.
        device: Torch device on which ``scale="auto"`` and ``roi`` run the restorer to score
            each choice and ``adapt_steps`` refines the LR (None: automatic, as
            :func:`decompress`); checked, and otherwise unused, for a fixed scale without
            ``roi`` or ``adapt_steps``.
        roi: A region of interest, restored with higher fidelity than the rest at the same
            ``target_bpp`` (which it needs): an ``H x W`` bool (or grey) array, a mask
            image's path or bytes, a PIL image (white = the region; any size, resized:
            :func:`superres.core.regions.load_mask`), or ``"auto"`` (the most salient
            quarter: :func:`superres.core.regions.auto_mask`). The file then also holds the
            mask (8x8-pixel cells) and an enhancement layer: the residual between the image
            and the restored base, over the region, coded with the same codec. The base and
            enhancement qualities are searched together (up to 5 base qualities, each
            restored once) for the smallest ``roi_weight``-weighted squared error of the
            decoded file among those that meet ``target_bpp``, every byte counted.
        roi_weight: How many times a region pixel's squared error counts as much as another
            pixel's in that search (>= 1; default :data:`ROI_WEIGHT`): higher gives the
            region more of the bits and the rest fewer.
        tile: LR tile side of the restorations that ``scale="auto"`` and ``roi`` run (None:
            the engine's plan); the choice does not depend on it (the restorers tile
            exactly).
        progress: ``callback(done_tiles, total_tiles)`` called between the tiles of each
            of those restorations (the counts start again at each), and with
            ``(done_steps, adapt_steps)`` during adaptive downscaling; an exception it
            raises stops the compression, so a caller can cancel one.
        adapt_steps: Adaptive downscaling (0: off; :data:`ADAPT_STEPS` is a good choice):
            this many gradient steps refine the LR image so that the file's restorer brings
            it back closer to the image (:func:`superres.codec.pipeline.adapt_lr`). Only
            the encoder changes (slower: each step is a forward and backward pass of the
            restorer over the image, ~1.4 s for a 768x512 image at x2 on 2 CPU cores); the
            file decodes as any other. Needs a network restorer; ignored at scale 1 (also
            within ``scale="auto"``).

    Raises:
        ConfigError: invalid arguments, alpha, an image too large, a model without
            weights for the scale, ``roi`` without ``target_bpp``, or a mask array of the
            wrong shape or type (a ``ValueError``).
        ImageError: a mask file that is missing or unreadable, or a mask that selects
            nothing (all black).
        TargetBitrateError: ``target_bpp`` cannot be met and ``allow_over`` is False.
        DeviceError: ``device`` is unknown or not available.
    """
    pixels, icc, exif = prepare(image)
    mask = None
    if roi is not None:
        if target_bpp is None:
            raise ConfigError("a region of interest (roi) needs target_bpp")
        if isinstance(roi_weight, bool) or not (
            isinstance(roi_weight, (int, float)) and math.isfinite(roi_weight) and roi_weight >= 1
        ):
            raise ConfigError(f"roi_weight must be a number >= 1, got {roi_weight!r}")
        mask = regions.region_of_interest(roi, pixels)
    return _compress_pixels(
        pixels, icc, exif, codec=codec, quality=quality, target_bpp=target_bpp, scale=scale,
        model=model, subsampling=subsampling, allow_over=allow_over, device=device,
        mask=mask, roi_weight=float(roi_weight), run=dict(tile=tile, progress=progress),
        adapt_steps=adapt_steps,
    )  # fmt: skip


def _compress_pixels(
    pixels: np.ndarray,
    icc: bytes | None,
    exif: bytes | None,
    *,
    codec: str,
    quality: int | None,
    target_bpp: float | None,
    scale: int | Literal["auto"],
    model: str | None,
    subsampling: str | None,
    allow_over: bool,
    device: str | None,
    mask: np.ndarray | None = None,
    roi_weight: float = ROI_WEIGHT,
    run: dict | None = None,
    adapt_steps: int = 0,
) -> Compressed:
    """:func:`compress_detailed` on prepared pixels; ``run`` holds the ``tile`` and
    ``progress`` of the restorations it scores with."""
    run = run or {}
    chosen = _codec(codec)
    _check_adapt(adapt_steps, model)
    if quality is not None and target_bpp is not None:
        raise ConfigError("give quality or target_bpp, not both")
    if target_bpp is not None and not (
        isinstance(target_bpp, (int, float)) and math.isfinite(target_bpp) and target_bpp > 0
    ):
        raise ConfigError(f"target_bpp must be a positive number, got {target_bpp!r}")
    options = {} if subsampling is None else {"subsampling": subsampling}
    if quality is None and target_bpp is None:
        quality = chosen.default_quality
    if scale != "auto":
        if scale not in container.SCALES or isinstance(scale, bool):
            raise ConfigError(f"scale must be 1, 2, 3, 4 or 'auto', got {scale!r}")
        runs_net = mask is not None or (adapt_steps > 0 and scale > 1)  # the encoder runs it
        dev = None
        if device is not None or runs_net:
            dev = engine.select_device(device)  # a device that cannot run is an error either way
        restorer = pipeline.choose_restorer(model, int(scale), device=dev if runs_net else None)
        lr = pipeline.stored_lr(pixels, int(scale), restorer.net, adapt_steps, device=dev,
                                progress=run.get("progress"))  # fmt: skip
        if mask is not None:
            result, _ = _compress_roi_at(
                pixels, icc, exif, chosen, target_bpp, scale, restorer, options, mask,
                roi_weight, dev, run, lr,
            )  # fmt: skip
            return _check_target(result, target_bpp, allow_over)
        result = _compress_at(
            pixels, icc, exif, chosen, quality, target_bpp, scale, restorer, options, lr
        )
        return _check_target(result, target_bpp, allow_over)
    if target_bpp is None:
        raise ConfigError("scale='auto' needs target_bpp")
    if model is not None:
        models.model_id(model)  # an unknown name is an error, not a reason to skip scales
    dev = engine.select_device(device)
    results: list[tuple[Compressed, float]] = []  # and the score to maximise
    for s in AUTO_SCALES:
        try:
            restorer = pipeline.choose_restorer(None if s == 1 else model, s, device=dev)
        except DeviceError:
            raise
        except ValueError:
            continue  # this model has no weights at this scale
        lr = pipeline.stored_lr(pixels, s, restorer.net, adapt_steps, device=dev,
                                progress=run.get("progress"))  # fmt: skip
        if mask is not None:
            result, cost = _compress_roi_at(
                pixels, icc, exif, chosen, target_bpp, s, restorer, options, mask, roi_weight,
                dev, run, lr,
            )  # fmt: skip
            results.append((result, -cost))
            continue
        result = _compress_at(pixels, icc, exif, chosen, None, target_bpp, s, restorer, options, lr)
        header, payload, _, _ = container.unpack(result.data, max_pixels=pixels[..., 0].size)
        decoded = pipeline.decode_pixels(header, payload, restorer.net, device=dev, **run)
        result = dataclasses.replace(result, psnr=psnr_rgb(decoded, pixels))
        results.append((result, result.psnr))
    if len(results) == 1 and model not in (None, "lanczos"):
        raise ConfigError(f"restoration model {model!r} has no weights for any scale > 1")
    met = [r for r in results if r[0].met_target]
    if met:
        best = max(met, key=lambda r: r[1])[0]
    else:
        best = min((r[0] for r in results), key=lambda r: r.bpp)
    return _check_target(best, target_bpp, allow_over)


def decompress(
    data: bytes,
    *,
    device: str | None = None,
    tile: int | None = None,
    progress: Progress | None = None,
) -> io.Image:
    """Decode ``.srz`` bytes.

    Args:
        data: The file's bytes (never trusted: the container's checksums are verified
            before any byte reaches the codec's decoder).
        device: Torch device for the restorer (None: automatic); checked even when the
            file needs no network.
        tile: LR tile side of the restoration (None: the engine's plan). The pixels do not
            depend on it (the restorers tile exactly); it bounds memory.
        progress: ``callback(done_tiles, total_tiles)`` called between tiles; an exception
            it raises stops the decoding (how a caller cancels one).

    Returns:
        The image at its original size (uint8, grey or RGB) with its ICC profile and EXIF;
        a file with a region of interest gets its enhancement layer added on the region.

    Raises:
        ContainerError: the data is not a valid ``.srz`` file, or its restoration model is
            not installed (or has other weights than the file was made for).
        DeviceError: ``device`` is unknown or not available.
    """
    dev = engine.select_device(device)
    contents = container.parse(data)
    header = contents.header
    net = None
    if header.model_id != models.LANCZOS:
        net, _ = models.load_restorer(
            header.model_id, header.scale, expected_hash=header.model_hash, device=dev
        )
    pixels = pipeline.decode_contents(contents, net, device=dev, tile=tile, progress=progress)
    mode = "L" if header.channels == 1 else "RGB"
    return io.Image(pixels=pixels, icc_profile=contents.icc, exif=contents.exif, mode=mode)


# --------------------------------------------------------------------------- helpers


def _codec(name: str | int) -> Codec:
    """The codec a caller named (an unknown id is a bad argument here, not a bad file)."""
    try:
        return get_codec(name)
    except ContainerError as err:
        raise ConfigError(str(err)) from None


def prepare(image: ImageInput) -> tuple[np.ndarray, bytes | None, bytes | None]:
    """What ``.srz`` stores of an input: 8-bit ``H x W x C`` pixels (C = 1 or 3), the ICC
    profile and the EXIF (None when absent).

    Accepts what :func:`compress_detailed` accepts; 16-bit is rounded to the nearest 8-bit
    level and a fully opaque alpha is dropped.

    Raises:
        ConfigError: an array of another shape or dtype, transparency, or more pixels than
            :func:`superres.core.io.max_pixels`.
        TypeError: not an image or array.
    """
    if isinstance(image, PILImage.Image):
        image = io.from_pil(image)
    elif isinstance(image, np.ndarray):
        colour, alpha = io.split_alpha(image)
        image = io.Image(pixels=colour, alpha=alpha)
    elif not isinstance(image, io.Image):
        raise TypeError(f"expected an Image, PIL image or numpy array, got {type(image).__name__}")
    pixels, alpha = image.pixels, image.alpha
    if alpha is not None and int(alpha.min()) != int(np.iinfo(alpha.dtype).max):
        raise ConfigError(".srz does not store transparency: flatten the image's alpha first")
    pixels = io.to_8bit(pixels)  # nearest 8-bit level, as for 8-bit file formats
    h, w = pixels.shape[:2]
    limit = io.max_pixels()
    if h < 1 or w < 1 or w * h > limit:
        raise ConfigError(f"image is {w}x{h}, outside 1..{limit} pixels (SUPERRES_MAX_PIXELS)")
    return np.ascontiguousarray(pixels), image.icc_profile, image.exif


def _compress_at(
    pixels: np.ndarray,
    icc: bytes | None,
    exif: bytes | None,
    codec: Codec,
    quality: int | None,
    target_bpp: float | None,
    scale: int,
    restorer: pipeline.Restorer,
    options: dict[str, str],
    lr: np.ndarray,
) -> Compressed:
    """Encode ``lr`` (:func:`~superres.codec.pipeline.stored_lr`) at one scale, at ``quality``
    or at the best quality that fits ``target_bpp``."""
    h, w, channels = pixels.shape
    header = container.Header(
        width=w,
        height=h,
        channels=channels,
        scale=scale,
        codec_id=codec.codec_id,
        model_id=models.model_id(restorer.name),
        model_hash=restorer.hash,
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
    return Compressed(data, codec.name, quality, scale, restorer.name, bpp(data), met)


def _check_adapt(steps: int, model: str | None) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= MAX_ADAPT_STEPS:
        raise ConfigError(
            f"adapt_steps must be an integer from 0 to {MAX_ADAPT_STEPS}, got {steps!r}"
        )
    if steps and model == "lanczos":
        raise ConfigError("adaptive downscaling needs a network restorer, not lanczos")


def _check_target(result: Compressed, target_bpp: float | None, allow_over: bool) -> Compressed:
    if result.met_target:
        return result
    message = (
        f"{result.codec} x{result.scale}: even quality {result.quality} needs "
        f"{result.bpp:.4f} bpp, above the target {target_bpp} bpp"
    )
    if not allow_over:
        raise TargetBitrateError(message)
    warnings.warn(message, TargetBitrateWarning, stacklevel=4)
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


def _compress_roi_at(
    pixels: np.ndarray,
    icc: bytes | None,
    exif: bytes | None,
    codec: Codec,
    target_bpp: float,
    scale: int,
    restorer: pipeline.Restorer,
    options: dict[str, str],
    mask: np.ndarray,
    weight: float,
    device: torch.device | None,
    run: dict,
    lr: np.ndarray,
) -> tuple[Compressed, float]:
    """Encode a base layer and an ROI enhancement layer at one scale within ``target_bpp``.

    For a base quality ``qb``, the base is restored as the decoder will restore it, the
    residual over the region is coded at the highest quality whose whole file fits, and the
    decoded file is scored by ``weight * SSE(region) + SSE(rest)``. The base quality is
    searched by golden section over the qualities whose base leaves room for an enhancement
    (at most :data:`_ROI_PROBES` restorations); the lowest-scoring file is returned with its
    score. If no file fits, the smallest file tried (``met_target=False``).
    """
    h, w, channels = pixels.shape
    header = container.Header(
        width=w, height=h, channels=channels, scale=scale, codec_id=codec.codec_id,
        model_id=models.model_id(restorer.name), model_hash=restorer.hash,
    )  # fmt: skip
    mask_body, layers = roi.encode_mask(mask)
    budget = target_bpp * w * h / 8  # bytes
    low = codec.quality_range[0]
    bases: dict[int, bytes] = {}

    def base(q: int) -> bytes:
        if q not in bases:
            bases[q] = codec.encode(lr, q, **options)
        return bases[q]

    def pack(base_payload: bytes, enhancement: bytes) -> bytes:
        return container.pack(
            header, base_payload, icc, exif,
            sections=(container.Section(container.SECTION_ROI_MASK, mask_body),
                      container.Section(container.SECTION_ENHANCEMENT, enhancement)),
        )  # fmt: skip

    overhead = len(pack(b"x", b"x")) - 2
    weights = np.where(mask, weight, 1.0)

    def score(decoded: np.ndarray) -> float:
        error = (decoded.astype(np.float64) - pixels).reshape(h, w, -1)
        return float(np.sum(weights * np.sum(error * error, axis=2)))

    tried: dict[int, tuple[float, Compressed]] = {}

    def attempt(qb: int) -> float:
        """The score of the best file with base quality ``qb`` (inf if none fits)."""
        if qb in tried:
            return tried[qb][0]
        payload = base(qb)
        restored = pipeline.decode_pixels(header, payload, restorer.net, device=device, **run)
        delta = roi.residual(pixels, restored, layers)
        qe, data, met = _fit(
            lambda q: pack(payload, codec.encode(delta, q, **options)),
            codec.quality_range,
            lambda d: len(d) <= budget,
        )
        enhancement = container.parse(data, max_pixels=w * h).section(container.SECTION_ENHANCEMENT)
        decoded = roi.apply_enhancement(
            restored, roi.decode_enhancement(codec, enhancement, layers, channels), layers
        )
        cost = score(decoded) if met else math.inf
        result = Compressed(
            data, codec.name, qb, scale, restorer.name, len(data) * 8 / (w * h), met,
            psnr=psnr_rgb(decoded, pixels), roi_quality=qe,
            roi_bytes=len(enhancement) + len(mask_body),
        )  # fmt: skip
        tried[qb] = (cost, result)
        return cost

    # Above the highest base quality that leaves any room, no enhancement fits.
    top = _fit_quality(lambda q: overhead + len(base(q)) < budget, codec.quality_range)
    if top is None:  # not even the lowest base quality leaves room
        attempt(low)
        return tried[low][1], math.inf
    _golden_min(attempt, low, top, _ROI_PROBES)
    if all(math.isinf(c) for c, _ in tried.values()):
        attempt(low)  # the probes all overshot: the lowest base leaves the most room
    cost, best = min(tried.values(), key=lambda t: t[0])
    if math.isinf(cost):  # nothing fits: the smallest file
        best = min((r for _, r in tried.values()), key=lambda r: len(r.data))
    return best, cost


def _fit_quality(fits: Callable[[int], bool], quality_range: tuple[int, int]) -> int | None:
    """The highest quality for which ``fits`` holds (monotone: true up to some quality)."""
    low, high = quality_range
    good, bad = low - 1, high + 1
    while bad - good > 1:
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return None if good < low else good


def _golden_min(cost: Callable[[int], float], low: int, high: int, probes: int) -> None:
    """Probe ``cost`` at up to ``probes`` integers in ``[low, high]`` by golden-section
    search for its minimum (``cost`` memoises; the caller picks the best probe)."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = low, high
    if b - a < 2:
        for q in range(a, b + 1)[:probes]:
            cost(q)
        return
    c, d = round(b - ratio * (b - a)), round(a + ratio * (b - a))
    fc, fd = cost(c), cost(d)
    used = 2
    while used < probes and b - a > 2:
        if fc <= fd:  # the minimum is in [a, d]
            b, d, fd = d, c, fc
            c = round(b - ratio * (b - a))
            if c == d:
                c = max(a, d - 1)
            fc = cost(c)
        else:  # in [c, b]
            a, c, fc = c, d, fd
            d = round(a + ratio * (b - a))
            if d == c:
                d = min(b, c + 1)
            fd = cost(d)
        used += 1
