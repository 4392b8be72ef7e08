"""What the endpoints do: check an upload cheaply in the event loop, then run the work in a
worker (:mod:`superres.apps.service.pool`) over the library's API.

The cheap checks use only the file's header, so a bad upload never takes a queue slot:
:func:`probe_image` (415 not an image, 413 over the pixel limit, decompression bombs
included: a header's size is checked before any pixel is decoded) and :func:`probe_srz`.
Library errors (:class:`superres.SuperresError`) become 400 with their one-line message.
"""

from __future__ import annotations

import io as _bytesio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from superres import api, codec
from superres.apps.service.pool import JobContext
from superres.apps.service.settings import Settings
from superres.codec import container
from superres.core import io
from superres.core.metrics import psnr_rgb
from superres.errors import ContainerError, SuperresError
from superres.weights import zoo

__all__ = [
    "MEDIA_TYPES",
    "Output",
    "Rejected",
    "compress_job",
    "decompress_job",
    "library_message",
    "offered_models",
    "probe_image",
    "probe_srz",
    "upscale_job",
]

#: Pillow format -> media type of the answer.
MEDIA_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "AVIF": "image/avif",
    "TIFF": "image/tiff",
}
SRZ_MEDIA_TYPE = "application/x-superres-srz"
#: Scales offered for the parameter-free baselines (they run at any integer scale).
BASELINE_SCALES = (2, 3, 4)


class Rejected(Exception):
    """A request answered with an error status and a one-line message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.message, self.headers = status, message, headers or {}
        super().__init__(message)


@dataclass(frozen=True)
class Output:
    """The body of a successful answer, its media type and its ``X-Superres-*`` headers."""

    data: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


def library_message(err: SuperresError, field_name: str) -> str:
    """The library's one-line message, with the in-memory input named by its form field
    (``<bytes>: truncated`` -> ``image: truncated``)."""
    text = str(err)
    return f"{field_name}:{text[len('<bytes>:') :]}" if text.startswith("<bytes>:") else text


def offered_models(settings: Settings) -> dict[str, tuple[int, ...]]:
    """The model names the service offers and their scales (shipped weights, or
    :data:`BASELINE_SCALES` for the parameter-free ones)."""
    scales: dict[str, set[int]] = {}
    for weights in zoo.shipped_weights():
        scales.setdefault(weights.name, set()).add(weights.scale)
    for name in zoo.PARAMETER_FREE:
        scales.setdefault(name, set()).update(BASELINE_SCALES)
    names = settings.models or tuple(sorted(scales))
    return {name: tuple(sorted(scales.get(name, ()))) for name in names}


def default_model(settings: Settings) -> str:
    """The model an upscale without ``model`` runs."""
    offered = offered_models(settings)
    if settings.default_model is not None:
        return settings.default_model
    library = zoo.default_model_name()
    return library if library in offered else next(iter(offered))


# --------------------------------------------------------------------------- cheap checks


def probe_image(data: bytes, settings: Settings, field_name: str = "image") -> tuple[int, int]:
    """The ``(width, height)`` an image file's header declares, checked against the limit.

    Raises:
        Rejected: 400 empty, 415 not an image Pillow reads, 413 over ``max_pixels`` (or
            over Pillow's own decompression-bomb limit).
    """
    if not data:
        raise Rejected(400, f"{field_name}: empty file")
    try:
        with PILImage.open(_bytesio.BytesIO(data)) as im:
            width, height = im.size
    except UnidentifiedImageError:
        raise Rejected(
            415, f"{field_name}: not an image file (or a format Pillow cannot read)"
        ) from None
    except PILImage.DecompressionBombError as err:
        raise Rejected(
            413, f"{field_name}: over the limit of {settings.max_pixels} pixels ({err})"
        ) from None
    except Exception as err:  # a header too broken to parse
        raise Rejected(400, f"{field_name}: cannot read the image header ({err})") from None
    _check_pixels(width, height, settings, field_name)
    return width, height


def probe_srz(data: bytes, settings: Settings, field_name: str = "file") -> container.Header:
    """The header of ``.srz`` bytes (checksums verified), its size checked against the limit.

    Raises:
        Rejected: 415 not an ``.srz`` file, 400 a damaged one, 413 over ``max_pixels``.
    """
    if not data.startswith(container.MAGIC):
        raise Rejected(415, f"{field_name}: not an .srz file")
    try:
        header = container.parse(data, max_pixels=1 << 64).header
    except ContainerError as err:
        raise Rejected(400, f"{field_name}: {err}") from None
    _check_pixels(header.width, header.height, settings, field_name)
    return header


def _check_pixels(width: int, height: int, settings: Settings, field_name: str) -> None:
    if width * height > settings.max_pixels:
        raise Rejected(
            413,
            f"{field_name}: image is {width}x{height} = {width * height} pixels, over the "
            f"limit of {settings.max_pixels}",
        )


def _output_format(fmt: str) -> str:
    try:
        return io.output_format(fmt)
    except SuperresError as err:
        raise Rejected(400, f"format: {err}") from None


# --------------------------------------------------------------------------- jobs


def _elapsed_ms(start: float) -> str:
    return f"{(time.perf_counter() - start) * 1000:.0f}"


def _size_of(data: bytes) -> str:
    with PILImage.open(_bytesio.BytesIO(data)) as im:
        return f"{im.width}x{im.height}"


def upscale_job(
    data: bytes,
    settings: Settings,
    *,
    model: str | None,
    scale: int | None,
    outscale: float | None,
    fmt: str,
    quality: int | None,
) -> Callable[[JobContext], Output]:
    """Check the settings of an upscale and return the job that runs it.

    Raises:
        Rejected: 400 for a model that is not offered, a scale it does not have, or a bad
            outscale, format or quality.
    """
    offered = offered_models(settings)
    name = default_model(settings) if model is None else model
    if name not in offered:
        raise Rejected(400, f"model: {name!r} is not offered (use one of {', '.join(offered)})")
    if scale is not None and scale not in offered[name]:
        have = ", ".join(map(str, offered[name])) or "none"
        raise Rejected(400, f"scale: {name} has no x{scale} (it has {have})")
    if outscale is not None and not (0 < outscale <= settings.max_outscale):
        raise Rejected(400, f"outscale must be in (0, {settings.max_outscale:g}], got {outscale:g}")
    if quality is not None and not 1 <= quality <= 100:
        raise Rejected(400, f"quality must be between 1 and 100, got {quality}")
    pil_format = _output_format(fmt)

    def run(context: JobContext) -> Output:
        start = time.perf_counter()
        net, resize = api.resolve_model(name, scale, outscale, device=settings.device)
        out = api.upscale_bytes(
            data, net, format=fmt, outscale=resize, tile=settings.tile, device=settings.device,
            quality=quality, progress=context.progress,
        )  # fmt: skip
        headers = {
            "X-Superres-Model": api.model_label(net),
            "X-Superres-Time-Ms": _elapsed_ms(start),
            "X-Superres-Size": _size_of(out),
        }
        return Output(out, MEDIA_TYPES[pil_format], headers)

    return run


def compress_job(
    data: bytes,
    settings: Settings,
    *,
    codec_name: str,
    quality: int | None,
    target_bpp: float | None,
    scale: str,
    model: str | None,
    psnr: bool,
    adapt: int = 0,
) -> Callable[[JobContext], Output]:
    """Check the settings of a compression and return the job that runs it (``adapt``:
    adaptive-downscaling steps, ``compress(adapt_steps=...)``; its steps count as progress,
    so a job past its deadline stops between two).

    Raises:
        Rejected: 400 for an unknown codec or scale, or both quality and target_bpp.
    """
    if codec_name not in codec.list_codecs():
        known = ", ".join(codec.list_codecs())
        raise Rejected(400, f"codec: unknown codec {codec_name!r} (use one of {known})")
    if scale not in ("1", "2", "3", "4", "auto"):
        raise Rejected(400, f"scale must be 1, 2, 3, 4 or auto, got {scale!r}")
    if model is not None and model not in codec.MODELS.values():
        known = ", ".join(codec.MODELS.values())
        raise Rejected(400, f"model: unknown restoration model {model!r} (use one of {known})")
    if target_bpp is not None and not (math.isfinite(target_bpp) and target_bpp > 0):
        raise Rejected(400, f"target_bpp must be a positive number, got {target_bpp!r}")
    if not 0 <= adapt <= codec.api.MAX_ADAPT_STEPS:
        raise Rejected(400, f"adapt must be 0 to {codec.api.MAX_ADAPT_STEPS} steps, got {adapt}")
    if adapt and scale == "1":
        raise Rejected(400, "adapt needs scale 2, 3, 4 or auto: scale 1 stores the image itself")
    chosen_scale: int | str = scale if scale == "auto" else int(scale)

    def run(context: JobContext) -> Output:
        start = time.perf_counter()
        image = io.read_image(data, limit=settings.max_pixels)
        context.check()
        result = codec.compress_detailed(
            image, codec=codec_name, quality=quality, target_bpp=target_bpp,
            scale=chosen_scale, model=model, device=settings.device, tile=settings.tile,
            progress=context.progress, adapt_steps=adapt,
        )  # fmt: skip
        headers = {
            "X-Superres-Codec": result.codec,
            "X-Superres-Quality": str(result.quality),
            "X-Superres-Scale": str(result.scale),
            "X-Superres-Model": result.model,
            "X-Superres-Bpp": f"{result.bpp:.4f}",
            "Content-Disposition": 'attachment; filename="image.srz"',
        }
        if adapt and result.scale > 1:
            headers["X-Superres-Adapt"] = str(adapt)
        if psnr:
            context.check()
            restored = codec.decompress(result.data, device=settings.device,
                                        tile=settings.tile, progress=context.progress)  # fmt: skip
            value = psnr_rgb(restored.pixels, codec.prepare(image)[0])
            headers["X-Superres-PSNR"] = "inf" if math.isinf(value) else f"{value:.2f}"
        headers["X-Superres-Time-Ms"] = _elapsed_ms(start)
        return Output(result.data, SRZ_MEDIA_TYPE, headers)

    return run


def decompress_job(data: bytes, settings: Settings, *, fmt: str) -> Callable[[JobContext], Output]:
    """Return the job that restores ``.srz`` bytes (already checked by :func:`probe_srz`).

    Raises:
        Rejected: 400 for a bad output format.
    """
    pil_format = _output_format(fmt)

    def run(context: JobContext) -> Output:
        start = time.perf_counter()
        image = codec.decompress(data, device=settings.device, tile=settings.tile,
                                 progress=context.progress)  # fmt: skip
        context.check()
        out = io.encode_image(image, pil_format)
        h, w = image.pixels.shape[:2]
        headers = {"X-Superres-Time-Ms": _elapsed_ms(start), "X-Superres-Size": f"{w}x{h}"}
        return Output(out, MEDIA_TYPES[pil_format], headers)

    return run
