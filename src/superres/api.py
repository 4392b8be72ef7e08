"""The Python API: what ``import superres`` offers. The CLI is a thin layer over it.

In memory::

    model = superres.load_model("quality", scale=4)      # cached: loaded once per process
    big = superres.upscale(pil_image, model)             # PIL in, PIL out; arrays too

Files and bytes (what a service or a batch job calls)::

    superres.upscale_file("in.jpg", "out.png", "quality")            # atomic write
    png = superres.upscale_bytes(request_body, "fast", format="png")
    for result in superres.run_jobs(superres.plan_jobs(["photos/"], "big/"), model):
        print(result.job.target, result.status, result.error)

Thread safety: a loaded model is never modified by :func:`upscale`, :func:`upscale_file`,
:func:`upscale_bytes` or :func:`evaluate` (running it on another device runs a copy), so one
model can serve several threads at once and they get the results a serial call gets. Models
returned by :func:`load_model` come from a per-process cache and are shared: do not change
them (train them, move them with ``.to()``, edit ``metadata``); load a private one with
``load_model(..., cache=False)`` for that.

Errors: every failure a caller can cause raises a :class:`superres.SuperresError` whose
message is one line naming the file or the setting (``ImageError`` for files,
``ConfigError`` for settings such as a scale the model does not have).
"""

from __future__ import annotations

import copy
import math
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
from PIL import Image as PILImage

from superres.core import io
from superres.core.degrade import IMAGE_EXTENSIONS
from superres.errors import ConfigError, ImageError, SuperresError
from superres.evaluation import EvalResult
from superres.evaluation import evaluate as evaluate_folders
from superres.inference import engine
from superres.models import SRModel
from superres.weights import zoo

__all__ = [
    "Job",
    "JobResult",
    "ScaleError",
    "clear_model_cache",
    "evaluate",
    "load_model",
    "model_for_scale",
    "output_suffix",
    "plan_jobs",
    "resolve_model",
    "run_jobs",
    "upscale",
    "upscale_bytes",
    "upscale_burst",
    "upscale_burst_file",
    "upscale_file",
    "upscale_video",
]

ImageLike = TypeVar("ImageLike", PILImage.Image, np.ndarray)
T = TypeVar("T")
SCALES = (2, 3, 4)
#: The tier trained for codec-decoded input: the default for a lossy-coded input (JPEG, lossy
#: WebP, AVIF), whose blocking and ringing the clean-input tier would sharpen.
DECODED_INPUT_TIER = "codec"
Progress = Callable[[int, int], None]


class ScaleError(ConfigError):
    """A model of one scale was asked to run at another; ``have`` and ``wanted`` say which."""

    def __init__(self, name: str, have: int, wanted: int) -> None:
        self.name, self.have, self.wanted = name, have, wanted
        super().__init__(
            f"{name}: the model is x{have}, not x{wanted} (ask for an output scale of "
            f"{wanted:g} to run it at x{have} and resize its output)"
        )


# --------------------------------------------------------------------------- models

#: Loaded models by (kind, name or file identity, scale[, device]); least recently used last.
_CACHE: OrderedDict[tuple, SRModel] = OrderedDict()
_CACHE_SIZE = 8
_CACHE_LOCK = threading.RLock()


def clear_model_cache() -> None:
    """Forget every model :func:`load_model` cached (they are freed once unreferenced)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _cache_key(name_or_path: str | os.PathLike[str] | None, scale: int | None) -> tuple | None:
    text = zoo.default_model_name() if name_or_path is None else os.fspath(name_or_path)
    if text in zoo.available_names():
        return ("name", text, 4 if scale is None else scale)
    path = Path(text).expanduser()
    try:
        stat = path.stat()
    except OSError:
        return None  # resolve() reports what is wrong
    if not path.is_file():
        return None
    # A rewritten checkpoint (same path, new training step) is a new entry.
    return ("file", str(path.resolve()), stat.st_mtime_ns, stat.st_size, scale)


def _cache_get(key: tuple) -> SRModel | None:
    model = _CACHE.get(key)
    if model is not None:
        _CACHE.move_to_end(key)
    return model


def _cache_put(key: tuple, model: SRModel) -> SRModel:
    _CACHE[key] = model
    _CACHE.move_to_end(key)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return model


def _int_scale(scale: float | None) -> int | None:
    if scale is None:
        return None
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise ConfigError(f"scale must be an integer model scale, got {scale!r}") from None
    if not value.is_integer() or value < 1:
        raise ConfigError(
            f"scale must be an integer model scale, got {scale!r} (an output scale such as "
            "1.5 is the outscale argument)"
        )
    return int(value)


def _load(name_or_path: str | os.PathLike[str] | None, scale: int | None) -> SRModel:
    """Load without the cache; a checkpoint of another scale is a :class:`ScaleError`."""
    text = zoo.default_model_name() if name_or_path is None else os.fspath(name_or_path)
    if text in zoo.available_names():
        return zoo.resolve(text, scale)
    model = zoo.resolve(text)  # a checkpoint (or an error naming what `text` is not)
    if scale is not None and model.scale != scale:
        raise ScaleError(text, model.scale, scale)
    return model


def load_model(
    name_or_path: str | os.PathLike[str] | None = None,
    scale: int | None = None,
    device: str | None = None,
    *,
    cache: bool = True,
) -> SRModel:
    """Load a model: a shipped name (``"quality"``, ``"fast"``), ``"bicubic"`` or a checkpoint.

    Repeated calls with the same name and scale (or the same, unchanged checkpoint file)
    return the same model object from a small per-process cache, so a service or a loop
    does not reload weights. Nothing in this package modifies a model it runs; do not
    modify a cached one yourself (``cache=False`` gives a private copy to train or move).

    Args:
        name_or_path: Shipped name, ``bicubic`` or a ``.safetensors`` path. None: the default
            model (the quality tier once shipped).
        scale: Scale to load for shipped names (default 4). A checkpoint has its own scale:
            None takes it, another value is a :class:`ScaleError`.
        device: Optional torch device for the weights (``cpu``, ``cuda``, ``mps``, ``auto``).
        cache: Use the model cache (default True).

    Returns:
        The model with its descriptor (``arch``, ``scale``, ``in_channels``, ``num_params``...).

    Raises:
        ScaleError: a checkpoint of another scale than ``scale``.
        ValueError: an unknown name, or a name without weights at ``scale``.
        CheckpointError: a file that is not a loadable checkpoint.
        DeviceError: an unknown or unavailable device.
    """
    wanted = _int_scale(scale)
    dev = None if device is None else engine.select_device(device)
    key = _cache_key(name_or_path, wanted) if cache else None
    if key is None:
        model = _load(name_or_path, wanted)
        return model if dev is None else model.to(dev)  # a fresh model: moved in place
    with _CACHE_LOCK:
        model = _cache_get(key) or _cache_put(key, _load(name_or_path, wanted))
        if dev is None or model.device == dev:
            return model
        moved_key = (*key, str(dev))
        return _cache_get(moved_key) or _cache_put(moved_key, copy.deepcopy(model).to(dev))


def resolve_model(
    model: SRModel | str | os.PathLike[str] | None,
    scale: int | None = None,
    outscale: float | None = None,
    *,
    device: str | None = None,
    image: io.Image | None = None,
) -> tuple[SRModel, float | None]:
    """The model an upscale runs and the resize still needed after it.

    Args:
        model: A loaded model, a shipped name, ``bicubic``, a checkpoint path or None (the
            default model).
        scale: The model scale: for a name, the weights of this scale; for a loaded model or
            a checkpoint it must be their own scale (:class:`ScaleError` otherwise: it is
            never silently run at another scale and resized).
        outscale: Any output factor (> 0). For a name without ``scale``, the smallest shipped
            scale >= ``outscale`` is loaded (the largest if ``outscale`` exceeds them all);
            the output is resized to ``outscale`` when the model's scale differs.
        device: Where a model loaded here is put (None: automatic); a loaded model is left
            where it is.
        image: The input, when known: with ``model=None`` a lossy-coded input
            (``image.lossy``) gets :data:`DECODED_INPUT_TIER` when it is shipped at the scale
            that would run, a lossless one the default tier (see :func:`default_model_for`).

    Returns:
        ``(model, resize)``: ``resize`` is None when the model's own scale is the output
        scale, else the output factor to resize to.
    """
    wanted = _int_scale(scale)
    if outscale is not None:
        try:
            outscale = float(outscale)
        except (TypeError, ValueError):
            raise ConfigError(f"outscale must be a positive number, got {outscale!r}") from None
        if not (outscale > 0 and math.isfinite(outscale)):
            raise ConfigError(f"outscale must be a positive number, got {outscale!r}")
    if isinstance(model, SRModel):
        if wanted is not None and model.scale != wanted:
            name = str(model.metadata.get("name") or model.arch)
            raise ScaleError(name, model.scale, wanted)
        net = model
    else:
        text = default_model_for(image, wanted, outscale) if model is None else os.fspath(model)
        auto = "auto" if device is None else device
        if text in zoo.available_names() and wanted is None:
            target = 4.0 if outscale is None else outscale
            have = sorted({w.scale for w in zoo.shipped_weights() if w.name == text}) or SCALES
            candidates = [s for s in have if s >= target - 1e-9] or [max(have)]
            net = load_model(text, candidates[0], device=auto)
            outscale = target
        else:
            net = load_model(text, wanted, device=auto)
    if outscale is None or abs(outscale - net.scale) < 1e-9:
        return net, None
    return net, outscale


def _run_scale(name: str, wanted: int | None, outscale: float | None) -> int | None:
    """The shipped scale :func:`resolve_model` loads for ``name`` (None: not shipped)."""
    have = sorted({w.scale for w in zoo.shipped_weights() if w.name == name})
    if wanted is not None:
        return wanted if wanted in have else None
    if not have:
        return None
    target = 4.0 if outscale is None else float(outscale)
    return ([s for s in have if s >= target - 1e-9] or [max(have)])[0]


def default_model_for(
    image: io.Image | None, scale: int | None = None, outscale: float | None = None
) -> str:
    """The shipped tier that runs when no model is given: :data:`DECODED_INPUT_TIER` for a
    lossy-coded input (JPEG, lossy WebP, AVIF) when it is shipped at the scale that would
    run, else the default tier (quality). Numpy arrays and unknown inputs are lossless."""
    default = zoo.default_model_name()
    if image is None or not image.lossy or DECODED_INPUT_TIER not in zoo.available_names():
        return default
    wanted = _int_scale(scale)
    run = _run_scale(default, wanted, outscale) or wanted
    have = run is not None and _run_scale(DECODED_INPUT_TIER, run, None) is not None
    return DECODED_INPUT_TIER if have else default


def model_label(model: SRModel) -> str:
    """``"quality x4"``: a model's name (or architecture) and scale, as summaries print it."""
    return f"{model.metadata.get('name', model.arch)} x{model.scale}"


def model_for_scale(
    model: SRModel | str | os.PathLike[str] | None, outscale: float | None
) -> tuple[SRModel, float | None]:
    """:func:`resolve_model` with an output scale only (kept for existing callers)."""
    return resolve_model(model, outscale=outscale)


# --------------------------------------------------------------------------- in memory


def upscale(
    image: ImageLike,
    model: SRModel | str | os.PathLike[str] | None = None,
    scale: int | None = None,
    *,
    outscale: float | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    device: str | None = None,
    progress: Progress | None = None,
    ensemble: bool = False,
) -> ImageLike:
    """Super-resolve a PIL image or an ``H x W x C`` uint8/uint16 array.

    Args:
        image: PIL image (any mode :mod:`superres.core.io` reads) or numpy array ``H x W``,
            ``H x W x 1``, ``H x W x 3`` or ``H x W x 4`` (RGBA), uint8 or uint16.
        model: Loaded model, shipped name, ``"bicubic"`` or checkpoint path. None: default.
            A loaded model is not modified and may be shared between threads.
        scale: Model scale (see :func:`resolve_model`): for names the weights of this scale
            (default 4); for a loaded model or a checkpoint, None or its own scale.
        outscale: Any output factor (e.g. 1.5 or 3.5): runs the next larger model scale and
            resizes with antialiasing (MATLAB bicubic).
        tile: Tile size in input pixels (None: automatic, 0: no tiling).
        overlap: Tile overlap in input pixels (None: from the model's receptive field).
        device: ``cpu``, ``cuda``, ``mps`` or None: a loaded model runs where its weights
            are, a model loaded by name on the automatic device.
        progress: Optional ``callback(done_tiles, total_tiles)``.
        ensemble: Geometric self-ensemble: average the output over the 8 flips and rotations
            (about 8x the time, the same memory bounds; README gives the gain per tier).

    Returns:
        The same kind as ``image``: a PIL image (ICC profile and EXIF kept) or an array of
        the same dtype and channel layout.
    """
    source = io.from_pil(image) if isinstance(image, PILImage.Image) else None
    net, resize = resolve_model(model, scale, outscale, device=device, image=source)
    options = dict(
        tile=tile, overlap=overlap, device=device, outscale=resize, progress=progress,
        ensemble=ensemble,
    )  # fmt: skip
    if source is not None:
        out = engine.upscale_image(source, net, **options)
        return io.to_pil(out)
    if isinstance(image, np.ndarray):
        return _upscale_ndarray(image, net, options)
    raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")


def _upscale_ndarray(array: np.ndarray, net: SRModel, options: dict) -> np.ndarray:
    colour, alpha = io.split_alpha(array)
    squeeze = array.ndim == 2
    pixels, alpha_out = engine.upscale_array(colour, net, alpha=alpha, **options)
    if alpha_out is not None:
        pixels = np.concatenate([pixels, alpha_out[:, :, None]], axis=2)
    return pixels[:, :, 0] if squeeze else pixels


def _upscale_image(
    source: io.ImageSource,
    model: SRModel | str | os.PathLike[str] | None,
    scale: int | None,
    outscale: float | None,
    tile: int | None,
    overlap: int | None,
    device: str | None,
    progress: Progress | None,
    ensemble: bool = False,
) -> tuple[io.Image, SRModel]:
    """Read ``source`` and upscale it: ``(result, the model that ran)``. Settings are checked
    before anything is decoded; with ``model=None`` the tier is chosen by the input
    (:func:`default_model_for`)."""
    net, resize = resolve_model(model, scale, outscale, device=device)
    image = io.read_image(source)
    if model is None:
        net, resize = resolve_model(None, scale, outscale, device=device, image=image)
    try:
        result = engine.upscale_image(
            image, net, tile=tile, overlap=overlap, device=device, outscale=resize,
            progress=progress, ensemble=ensemble,
        )  # fmt: skip
        return result, net
    except MemoryError:
        raise ImageError(io.source_name(source), "out of memory while upscaling") from None
    except ValueError as err:  # tile/overlap settings the image cannot use
        if isinstance(err, SuperresError):
            raise
        raise ConfigError(f"{io.source_name(source)}: {err}") from None


# --------------------------------------------------------------------------- files and bytes


def upscale_bytes(
    data: bytes,
    model: SRModel | str | os.PathLike[str] | None = None,
    *,
    format: str = "png",
    scale: int | None = None,
    outscale: float | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    device: str | None = None,
    quality: int | None = None,
    progress: Progress | None = None,
    ensemble: bool = False,
) -> bytes:
    """Upscale the bytes of an image file (or a binary file object) into encoded bytes.

    Args:
        data: The encoded input (any format :func:`superres.core.io.read_image` reads), or a
            binary file object.
        model: As for :func:`upscale`.
        format: Output format: ``png`` (default), ``jpeg``/``jpg``, ``webp``, ``avif``,
            ``tiff``/``tif`` (an extension with its dot works too).
        scale, outscale, tile, overlap, device, progress, ensemble: As for :func:`upscale`.
        quality: Lossy quality 1-100 (JPEG/WebP default 95, AVIF 90).

    Raises:
        ImageError: unreadable input (named ``<bytes>``) or an unsupported ``format``.
        ConfigError: a scale, outscale, tile or overlap the model or image cannot use.
    """
    fmt = io.output_format(format)
    _check_quality(quality)
    result, _ = _upscale_image(
        data, model, scale, outscale, tile, overlap, device, progress, ensemble
    )
    return io.encode_image(result, fmt, quality=quality)


def _check_quality(quality: int | None) -> None:
    """A lossy quality must be 1-100 (checked before any work)."""
    if quality is not None and not 1 <= int(quality) <= 100:
        raise ConfigError(f"quality must be between 1 and 100, got {quality}")


def _check_target(target: Path, overwrite: bool, make_folders: bool) -> None:
    """What can be known about an output before any work: format, existence, its folder."""
    io.output_format(target)
    if target.is_dir():
        raise ImageError(target, "is a folder; the output must be a file")
    if target.exists() and not overwrite:
        raise ImageError(target, "output exists")
    folder = target.parent
    if folder.is_dir():
        return
    if not make_folders:
        raise ImageError(target, f"folder {folder} does not exist")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ImageError(target, f"cannot create folder {folder} ({reason})") from None


def upscale_file(
    src: io.ImageSource,
    dst: str | os.PathLike[str],
    model: SRModel | str | os.PathLike[str] | None = None,
    *,
    scale: int | None = None,
    outscale: float | None = None,
    overwrite: bool = False,
    tile: int | None = None,
    overlap: int | None = None,
    device: str | None = None,
    quality: int | None = None,
    make_folders: bool = True,
    progress: Progress | None = None,
    ensemble: bool = False,
) -> Path:
    """Upscale one image file into another, written atomically in the format of its extension.

    The output's extension, existence and folder are checked (and missing folders created)
    before the model is loaded or the input decoded; the output appears only once complete.

    Args:
        src: Input path (or bytes, or a binary file object).
        dst: Output path; its extension picks the format (``.png``, ``.jpg``, ``.webp``,
            ``.avif``, ``.tif``).
        model, scale, outscale, tile, overlap, device, progress, ensemble: As for
            :func:`upscale`.
        overwrite: Replace an existing ``dst`` (otherwise it is an ``ImageError``).
        quality: Lossy quality 1-100 for JPEG, WebP and AVIF.
        make_folders: Create ``dst``'s missing folders (default True).

    Returns:
        ``dst`` as a path.

    Raises:
        ImageError: unreadable input; an existing, unwritable or unsupported output; an
            output folder that cannot be created.
        ConfigError: a scale, outscale, tile or overlap the model or image cannot use.
    """
    return _upscale_file(
        src, Path(dst), model, scale, outscale, overwrite, tile, overlap, device, quality,
        make_folders, progress, ensemble,
    )[0]  # fmt: skip


def _upscale_file(
    src: io.ImageSource,
    target: Path,
    model: SRModel | str | os.PathLike[str] | None,
    scale: int | None,
    outscale: float | None,
    overwrite: bool,
    tile: int | None,
    overlap: int | None,
    device: str | None,
    quality: int | None,
    make_folders: bool,
    progress: Progress | None,
    ensemble: bool,
) -> tuple[Path, SRModel, bool]:
    """:func:`upscale_file`, also returning the model that ran and whether the input was
    lossy-coded."""
    _check_quality(quality)
    if isinstance(src, (str, os.PathLike)) and (not Path(src).exists() or Path(src).is_dir()):
        io.read_image(src)  # raises the one-line error for a missing path or a folder
    _check_target(target, overwrite, make_folders)
    result, net = _upscale_image(
        src, model, scale, outscale, tile, overlap, device, progress, ensemble
    )
    path = io.write_image(target, result, overwrite=overwrite, quality=quality)
    return path, net, result.lossy


# --------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class Job:
    """One input file and the output it is written to."""

    source: Path
    target: Path


@dataclass(frozen=True)
class JobResult:
    """What became of one :class:`Job`: ``done``, ``skipped`` (the output exists and
    overwriting was not asked for) or ``failed`` (``error`` says why, in one line)."""

    job: Job
    status: Literal["done", "skipped", "failed"]
    error: SuperresError | None = None
    #: The model that ran (``"codec x4"``, see :func:`model_label`); empty unless done.
    model: str = ""
    #: Whether the input was lossy-coded (``io.Image.lossy``); False unless done.
    lossy: bool = False


def output_suffix(source: str | os.PathLike[str], ext: str = "auto") -> str:
    """The output extension for ``source``: ``ext`` (``png``, ``.jpg``...), or with ``auto``
    the input's own when it can be written, else ``.png``."""
    if ext != "auto":
        suffix = ext.lower() if ext.startswith(".") else f".{ext.lower()}"
        io.output_format(suffix)  # ImageError for a format that cannot be written
        return suffix
    suffix = Path(source).suffix.lower()
    return suffix if suffix in io.SUPPORTED_OUTPUT_EXTENSIONS else ".png"


def _looks_like_folder(output: str | os.PathLike[str]) -> bool:
    text = os.fspath(output)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def plan_jobs(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    output: str | os.PathLike[str],
    recursive: bool = False,
    ext: str = "auto",
) -> list[Job]:
    """Map inputs (files and folders) to output paths, before anything is read or loaded.

    One input file and an output with an image extension (``out.png``) give one job. Any
    other case writes into the output folder: a file keeps its name (with the suffix of
    :func:`output_suffix`), a folder's images are mirrored under it (their subfolders too
    with ``recursive``; with several inputs each folder gets a subfolder of its name).
    Missing input files are kept, to be reported when they are processed.

    Raises:
        ConfigError: an output name with an extension that cannot be written (``out.bmp``),
            an output file for several inputs or a folder, an existing file where the
            output folder should be, two inputs mapped to one output, an output that would
            replace its input, or an unknown ``ext``.
    """
    sources = [Path(inputs)] if isinstance(inputs, (str, os.PathLike)) else list(map(Path, inputs))
    if not sources:
        raise ConfigError("no inputs given")
    try:
        if ext != "auto":
            output_suffix("x", ext)
    except ImageError:
        raise ConfigError(
            f"unsupported output format '{ext}' "
            f"(use one of {', '.join(e.lstrip('.') for e in io.SUPPORTED_OUTPUT_EXTENSIONS)})"
        ) from None
    out = Path(output)
    single_input = len(sources) == 1 and not sources[0].is_dir()
    if not _looks_like_folder(output) and out.suffix:
        if out.suffix.lower() not in io.SUPPORTED_OUTPUT_EXTENSIONS:
            raise ConfigError(
                f"{out}: unsupported output extension '{out.suffix}' (use one of "
                f"{', '.join(io.SUPPORTED_OUTPUT_EXTENSIONS)}; end a folder name with '/')"
            )
        if single_input:
            return _checked([Job(sources[0], out)])
        what = "a folder" if len(sources) == 1 else f"{len(sources)} inputs"
        raise ConfigError(
            f"{out}: an output file name, but the output of {what} is a folder (give a folder name)"
        )
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: the output must be a folder, and this is a file")
    jobs: list[Job] = []
    for source in sources:
        if source.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(
                p
                for p in source.glob(pattern)
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            for file in files:
                rel = file.relative_to(source)
                target = out / source.name / rel if len(sources) > 1 else out / rel
                jobs.append(Job(file, target.with_suffix(output_suffix(file, ext))))
        else:  # a file, or a missing path reported when processed
            jobs.append(Job(source, (out / source.name).with_suffix(output_suffix(source, ext))))
    return _checked(jobs)


def _checked(jobs: list[Job]) -> list[Job]:
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.target in seen:
            raise ConfigError(
                f"{job.source} and {seen[job.target]} would both be written to {job.target}"
            )
        seen[job.target] = job.source
        try:
            same = job.source.exists() and job.target.exists() and job.target.samefile(job.source)
        except OSError:
            same = False
        if same or job.target.absolute() == job.source.absolute():
            raise ConfigError(f"{job.source}: the output would replace the input")
    return jobs


def run_jobs(
    jobs: Iterable[Job],
    model: SRModel | str | os.PathLike[str] | None = None,
    *,
    scale: int | None = None,
    outscale: float | None = None,
    overwrite: bool = False,
    tile: int | None = None,
    overlap: int | None = None,
    device: str | None = None,
    quality: int | None = None,
    progress: Callable[[Job, int, int], None] | None = None,
    ensemble: bool = False,
) -> Iterator[JobResult]:
    """Upscale jobs one by one (see :func:`plan_jobs`), yielding a :class:`JobResult` each.

    An existing output is skipped unless ``overwrite``; a job that fails (unreadable input,
    an output folder that cannot be created, out of memory...) is reported and the batch
    goes on. The model is resolved once, before the first job (settings errors such as an
    unknown model or a scale the model lacks are raised, not yielded); with ``model=None``
    each input gets the tier that suits it (:func:`default_model_for`: the decoded-input
    tier for lossy-coded files), and ``JobResult.model`` says which ran.

    Args:
        progress: Optional ``callback(job, done_tiles, total_tiles)``.
        The others: as for :func:`upscale_file`.
    """
    net, resize = resolve_model(model, scale, outscale, device=device)
    if device is not None and net.device != engine.select_device(device):
        net = copy.deepcopy(net).to(engine.select_device(device))  # once, not per image
    chosen: SRModel | None = net if model is not None else None  # None: chosen per input
    for job in jobs:
        if job.target.exists() and not overwrite:
            yield JobResult(job, "skipped", ImageError(job.target, "output exists"))
            continue
        tiles = None
        if progress is not None:

            def tiles(done: int, total: int, job: Job = job) -> None:
                progress(job, done, total)

        try:
            _, ran, lossy = _upscale_file(
                job.source, job.target, chosen, scale if chosen is None else None,
                outscale if chosen is None else resize, overwrite, tile, overlap,
                device if chosen is None else None, quality, True, tiles, ensemble,
            )  # fmt: skip
        except SuperresError as err:
            yield JobResult(job, "failed", err)
            continue
        yield JobResult(job, "done", model=model_label(ran), lossy=lossy)


# --------------------------------------------------------------------------- evaluation


def evaluate(
    model: SRModel | str | os.PathLike[str] | None,
    folders: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    scale: int | None = None,
    *,
    tile: int | None = None,
    device: str | None = None,
    ensemble: bool = False,
) -> EvalResult:
    """Benchmark a model on HR folders (modcrop, MATLAB-bicubic LR, Y-channel PSNR/SSIM).

    Args:
        model: Loaded model (not modified), shipped name, ``bicubic``, checkpoint or None.
        folders: One or more folders of HR images; each is a dataset named by its folder.
        scale: For names, the weights to evaluate (default 4); for a checkpoint or a loaded
            model, None or its own scale (:class:`ScaleError` otherwise).
        tile: Tile size for the engine (None: automatic).
        device: None: a loaded model runs where it is, a name on the automatic device.
        ensemble: Score the geometric self-ensemble (8 flips and rotations averaged).

    Returns the numbers ``superres eval`` prints; ``result.to_dict()`` is its JSON.
    """
    wanted = _int_scale(scale)
    name = None
    if isinstance(model, SRModel):
        if wanted is not None and model.scale != wanted:
            raise ScaleError(str(model.metadata.get("name") or model.arch), model.scale, wanted)
    else:
        name = os.fspath(model) if model is not None else zoo.default_model_name()
        model = load_model(model, wanted, device="auto" if device is None else device)
    dev = None if device is None else engine.select_device(device)
    return evaluate_folders(
        model, folders, model.scale, tile=tile, device=dev, name=name, ensemble=ensemble
    )


# --------------------------------------------------------------------------- bursts

BurstFrame = PILImage.Image | np.ndarray | io.ImageSource

#: The shipped burst network (:class:`superres.models.burst.BurstLAFN`): the learned burst
#: method's default model at the scales it is shipped for.
BURST_MODEL = "burst"


def _frame_name(frame: object, index: int) -> str:
    if isinstance(frame, (str, os.PathLike)):
        return os.fspath(frame)
    return f"<frame {index}>"


def _read_frames(frames: Sequence[BurstFrame]) -> list[io.Image]:
    """Every frame as an :class:`~superres.core.io.Image`, all of one size and mode."""
    if isinstance(frames, (str, os.PathLike, bytes, np.ndarray, PILImage.Image)):
        raise ConfigError("frames must be a sequence of images (a list of paths or arrays)")
    frames = list(frames)
    if not frames:
        raise ConfigError("a burst needs at least one frame")
    images = []
    for index, frame in enumerate(frames):
        if isinstance(frame, PILImage.Image):
            image = io.from_pil(frame)
        elif isinstance(frame, np.ndarray):
            try:
                colour, alpha = io.split_alpha(frame)
            except ConfigError as err:
                raise ImageError(_frame_name(frame, index), str(err)) from None
            image = io.Image(colour, alpha=alpha)
        else:
            image = io.read_image(frame)
        images.append(image)
    first = images[0]

    def describe(image: io.Image) -> str:
        kind = {1: "grey", 3: "RGB"}[image.pixels.shape[2]] + (
            "A" if image.alpha is not None else ""
        )
        return f"{image.width}x{image.height} {kind} {image.bits}-bit"

    for index, image in enumerate(images[1:], start=1):
        if describe(image) != describe(first):
            raise ImageError(
                _frame_name(frames[index], index),
                f"frame {index} is {describe(image)}, but frame 0 "
                f"({_frame_name(frames[0], 0)}) is {describe(first)}: a burst's frames must "
                "share one size and mode",
            )
    return images


def burst_model(scale: int, device: str | None = None) -> SRModel | None:
    """The shipped burst network (``burst``) at ``scale``, or None where none is shipped:
    what the learned burst method runs when no model is given."""
    if not any(w.name == BURST_MODEL and w.scale == scale for w in zoo.shipped_weights()):
        return None
    return load_model(BURST_MODEL, scale=scale, device=device)


def _learned_model(
    model: SRModel | str | os.PathLike[str] | None, scale: int, device: str | None
) -> tuple[SRModel | None, object | None]:
    """What the learned burst method runs: ``(single-image model, None)`` or ``(None, burst
    network module)``; ``model=None`` is the shipped burst network where it exists."""
    net = burst_model(scale, device) if model is None else None
    if net is None:
        net, _ = resolve_model(model, scale, None, device=device)
    if getattr(net.module, "burst", False):
        return None, net.module
    return net, None


def _fuse_frames(
    frames: Sequence[BurstFrame],
    scale: int,
    method: str,
    reference: int,
    degradation: str,
    robust: bool,
    model: SRModel | str | os.PathLike[str] | None,
    tile: int | None,
    device: str | None,
) -> io.Image:
    """:func:`upscale_burst` as an :class:`~superres.core.io.Image` carrying the reference
    frame's alpha (upscaled), ICC profile and EXIF, so a file output needs no second read."""
    import torch

    from superres.core.resize import imresize, to_levels
    from superres.inference.burst import fuse_burst

    images = _read_frames(frames)
    n = len(images)
    if isinstance(reference, bool) or int(reference) != reference or not -n <= reference < n:
        raise ConfigError(f"reference frame {reference!r} out of range for {n} frames")
    ref = images[int(reference) % n]
    peak = float((1 << ref.bits) - 1)
    stack = np.stack([im.pixels for im in images]).astype(np.float32) / peak
    tensor = torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous()
    upscaled = network = None
    if method == "learned":
        net, network = _learned_model(model, scale, device)
        if net is not None:
            runs = []
            for im in images:
                sr, _ = engine.upscale_array(im.pixels, net, tile=tile, device=device)
                runs.append(torch.from_numpy(sr.astype(np.float32) / peak).permute(2, 0, 1))
            upscaled = torch.stack(runs)
    result = fuse_burst(tensor, scale, method=method, reference=int(reference) % n,
                        degradation=degradation, robust=robust, upscaled=upscaled,
                        network=network, tile=tile)  # fmt: skip
    dtype = np.uint16 if ref.bits == 16 else np.uint8
    pixels = to_levels(result.image.clamp(0, 1), ref.bits).permute(1, 2, 0).numpy()
    alpha = None
    if ref.alpha is not None:
        plane = torch.from_numpy(ref.alpha.astype(np.float32) / peak)[None]
        alpha = to_levels(imresize(plane, int(scale)).clamp(0, 1), ref.bits)[0].numpy()
        alpha = np.ascontiguousarray(alpha.astype(dtype))
    return io.Image(np.ascontiguousarray(pixels.astype(dtype)), alpha=alpha,
                    icc_profile=ref.icc_profile, exif=ref.exif)  # fmt: skip


def upscale_burst(
    frames: Sequence[BurstFrame],
    scale: int = 4,
    *,
    method: Literal["classical", "learned"] = "classical",
    reference: int = 0,
    degradation: Literal["area", "bicubic"] = "area",
    robust: bool = True,
    model: SRModel | str | os.PathLike[str] | None = None,
    tile: int | None = None,
    device: str | None = None,
) -> np.ndarray:
    """Multi-image super-resolution: fuse ``N >= 1`` frames of one scene (a burst, or
    neighbouring video frames) into one image on the reference frame's grid, ``scale`` times
    larger.

    Args:
        frames: Paths, bytes, PIL images or ``H x W x C`` uint8/uint16 arrays, all of one
            size and mode. The frames are registered by phase correlation (sub-pixel
            translations); samples that disagree with the reference after registration
            (moving objects) get low weight.
        scale: Integer upscaling factor.
        method: ``"classical"``: shift-and-add by kernel regression, then Wiener
            deconvolution (:mod:`superres.core.fusion`). ``"learned"``: a burst network
            (``model``; default the shipped ``burst`` network where it exists for
            ``scale``) fuses the registered frames in one run; a single-image ``model`` (the
            default at other scales: the quality tier) runs on every frame, and the outputs
            are registered onto the reference's HR grid and averaged with the robustness
            weights (N network runs), then back-projected against the frames.
        reference: Index of the frame whose grid (and alpha, ICC profile) the output keeps.
        degradation: The camera model whose blur is undone: ``"area"`` (each LR pixel the
            mean of its ``scale x scale`` HR pixels, a sensor) or ``"bicubic"``.
        robust: Down-weight disagreeing samples (off: plain shift-and-add).
        model: For ``"learned"``: a loaded model, shipped name or checkpoint, a burst
            network or a single-image one (default: ``burst``, else the quality tier, at
            ``scale``). Ignored by ``"classical"``.
        tile, device: As for :func:`upscale` (learned method).

    Returns:
        ``H*scale x W*scale x C`` array of the frames' dtype (alpha, if any, from the
        reference frame upscaled by bicubic interpolation).

    Raises:
        ImageError: an unreadable frame, or frames of different sizes or modes (one line
            naming the frame).
        ConfigError: a bad scale, method, reference or degradation.
    """
    image = _fuse_frames(frames, scale, method, reference, degradation, robust, model, tile,
                         device)  # fmt: skip
    out = image.pixels
    if image.alpha is not None:
        out = np.concatenate([out, image.alpha[:, :, None]], axis=2)
    return out[:, :, 0] if out.shape[2] == 1 else out


def upscale_burst_file(
    frames: Sequence[io.ImageSource],
    dst: str | os.PathLike[str],
    scale: int = 4,
    *,
    method: Literal["classical", "learned"] = "classical",
    reference: int = 0,
    degradation: Literal["area", "bicubic"] = "area",
    robust: bool = True,
    model: SRModel | str | os.PathLike[str] | None = None,
    tile: int | None = None,
    device: str | None = None,
    overwrite: bool = False,
    quality: int | None = None,
    make_folders: bool = True,
) -> Path:
    """:func:`upscale_burst` of image files into ``dst``, written atomically in the format
    of its extension (the reference frame's ICC profile and EXIF are kept). The output is
    checked before any frame is decoded; an existing ``dst`` is an error unless
    ``overwrite``."""
    _check_quality(quality)
    target = Path(dst)
    _check_target(target, overwrite, make_folders)
    image = _fuse_frames(frames, scale, method, reference, degradation, robust, model, tile,
                         device)  # fmt: skip
    return io.write_image(target, image, overwrite=overwrite, quality=quality)


# --------------------------------------------------------------------------- video


def _sliding_windows(items: Iterable[T], window: int) -> Iterator[tuple[list[T], int]]:
    """For each item t of a stream, ``(burst, reference)``: the items ``t - (window - 1)
    // 2 .. t + window // 2`` clipped to the stream, and the index of item t in it. At most
    ``window`` items are held at once (the last list is built per call)."""
    after, before = window // 2, (window - 1) // 2
    held: deque[T] = deque()
    first = 0  # index of held[0]
    seen = 0
    t = 0  # next item to emit

    def trim() -> None:
        nonlocal first
        while held and first < t - before:
            held.popleft()
            first += 1

    def emit() -> tuple[list[T], int]:
        trim()
        last = min(seen - 1, t + after)
        return list(held)[: last - first + 1], t - first

    for item in items:
        trim()
        held.append(item)
        seen += 1
        while seen - 1 >= t + after:
            yield emit()
            t += 1
    while t < seen:
        yield emit()
        t += 1


def upscale_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    scale: int = 4,
    *,
    window: int = 5,
    method: Literal["classical", "learned"] = "classical",
    model: SRModel | str | os.PathLike[str] | None = None,
    degradation: Literal["area", "bicubic"] = "area",
    robust: bool = True,
    tile: int | None = None,
    device: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Upscale a video, each frame fused with its neighbours as a burst (see
    :func:`upscale_burst`), into ``dst`` with the source's timing and audio.

    Frame t is super-resolved from the frames ``t - (window - 1) // 2 .. t + window // 2``
    (centred for an odd ``window``; clipped at the ends of the video) with frame t as the
    reference, so the output keeps frame t's grid; ``window=1`` is single-image upscaling of
    every frame. For ``"learned"`` a burst network runs once per window on all its frames; a
    single-image network runs once per frame and its output is reused by every window it
    belongs to. Frames are decoded, fused and encoded as a
    stream: at most ``window`` frames (and their network outputs) are held.

    The output (H.264, or MPEG-4 Part 2 where PyAV has no H.264 encoder; yuv420p, odd sizes
    padded by one row/column) keeps the source's frame rate, time base and timestamps, and
    its audio copied unchanged (re-encoded to AAC where the output container cannot hold
    the source's audio codec). It is written atomically: a temporary file beside ``dst``
    renamed into place once complete; an error leaves no file.

    Args:
        src: Video file (anything FFmpeg reads).
        dst: Output video; the extension picks the container (``.mp4``, ``.m4v``, ``.mov``,
            ``.mkv``, ``.avi``).
        scale: Integer upscaling factor.
        window: Frames per burst (>= 1).
        method, model, degradation, robust, tile, device: As for :func:`upscale_burst`.
        overwrite: Replace an existing ``dst``.
        progress: Optional ``callback(done_frames, total_frames)``.

    Returns:
        ``dst`` as a :class:`~pathlib.Path`.

    Raises:
        ImageError: ``src`` is not a readable video, ``dst`` exists (unless ``overwrite``),
            has an unknown extension or its folder does not exist.
        ConfigError: a bad scale, window, method or degradation, or PyAV is not installed.
    """
    import torch

    from superres.core.io import video as video_io
    from superres.core.resize import to_levels
    from superres.inference.burst import METHODS, fuse_burst

    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise ConfigError(f"scale must be a positive integer, got {scale!r}")
    if isinstance(window, bool) or int(window) != window or window < 1:
        raise ConfigError(f"window must be a positive integer, got {window!r}")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if degradation not in ("area", "bicubic"):
        raise ConfigError(f"degradation must be area or bicubic, got {degradation!r}")
    scale, window = int(scale), int(window)
    target = Path(dst)
    video_io.container_format(target)
    if target.exists() and not overwrite:
        raise ImageError(target, "output exists")
    info = video_io.probe(src)
    # a burst network runs once per window on all its frames
    net, network = _learned_model(model, scale, device) if method == "learned" else (None, None)

    def prepared(frame: video_io.Frame) -> tuple[video_io.Frame, torch.Tensor, np.ndarray]:
        lr = torch.from_numpy(frame.pixels).permute(2, 0, 1).float() / 255
        sr = None
        if net is not None:  # once per frame, reused by every window holding it
            sr, _ = engine.upscale_array(frame.pixels, net, tile=tile, device=device)
        return frame, lr, sr

    def fused() -> Iterator[video_io.Frame]:
        stream = (prepared(frame) for frame in video_io.read_video(src))
        for done, (burst, ref) in enumerate(_sliding_windows(stream, window), start=1):
            frames = torch.stack([lr for _, lr, _ in burst])
            upscaled = None
            if net is not None:
                upscaled = torch.stack(
                    [torch.from_numpy(sr).permute(2, 0, 1).float() / 255 for _, _, sr in burst]
                )
            result = fuse_burst(
                frames, scale, method=method, reference=ref, degradation=degradation,
                robust=robust, upscaled=upscaled, network=network, tile=tile,
            )  # fmt: skip
            pixels = to_levels(result.image.clamp(0, 1)).to(torch.uint8).permute(1, 2, 0)
            yield video_io.Frame(np.ascontiguousarray(pixels.numpy()), burst[ref][0].pts)
            if progress is not None:
                progress(done, max(info.frames, done))

    size = (info.width * scale, info.height * scale)
    video_io.write_video(target, fused(), like=src, info=info, size=size, overwrite=overwrite)
    return target
