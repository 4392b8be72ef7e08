"""The Python API: what ``import superres`` offers. The CLI is a thin layer over it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image as PILImage

from superres.core import io
from superres.evaluation import EvalResult
from superres.evaluation import evaluate as _evaluate
from superres.inference import engine
from superres.models import SRModel
from superres.weights import zoo

__all__ = ["load_model", "model_for_scale", "upscale", "evaluate"]

ImageLike = TypeVar("ImageLike", PILImage.Image, np.ndarray)
SCALES = (2, 3, 4)


def load_model(
    name_or_path: str | Path | None = None, scale: int | None = None, device: str | None = None
) -> SRModel:
    """Load a model: a shipped name (``"quality"``, ``"fast"``), ``"bicubic"`` or a checkpoint.

    Args:
        name_or_path: Shipped name, ``bicubic`` or a ``.safetensors`` path. None: the default
            model (the quality tier once shipped).
        scale: Scale to load for shipped names (default 4); checked against a checkpoint.
        device: Optional torch device to move the model to.

    Returns:
        The model with its descriptor (``arch``, ``scale``, ``in_channels``, ``num_params``...).
    """
    model = zoo.resolve(name_or_path, scale)
    if device is not None:
        model = model.to(engine.select_device(device))
    return model


def model_for_scale(
    model: SRModel | str | Path | None, outscale: float | None
) -> tuple[SRModel, float | None]:
    """Pick the model that serves an output scale, and the resize still needed after it.

    For a name, the smallest shipped scale >= ``outscale`` is loaded (the largest one if
    ``outscale`` exceeds them all); a checkpoint path or a loaded model is used as it is.
    ``outscale=None`` means x4 for a name and the model's own scale otherwise. The second
    value is None when the model's own scale already gives the output scale.
    """
    if outscale is not None and (outscale <= 0 or not math.isfinite(outscale)):
        raise ValueError(f"outscale must be a positive number, got {outscale}")
    if not isinstance(model, SRModel):
        name = zoo.default_model_name() if model is None else str(model)
        if name in zoo.available_names():
            target = 4.0 if outscale is None else outscale
            have = sorted({w.scale for w in zoo.shipped_weights() if w.name == name}) or SCALES
            candidates = [s for s in have if s >= target - 1e-9] or [max(have)]
            model = zoo.resolve(name, candidates[0])
            outscale = target
        else:
            model = zoo.resolve(name)
    if outscale is None:
        return model, None
    resize = None if abs(outscale - model.scale) < 1e-9 else float(outscale)
    return model, resize


def upscale(
    image: ImageLike,
    model: SRModel | str | Path | None = None,
    scale: float | None = None,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImageLike:
    """Super-resolve a PIL image or an ``H x W x C`` uint8/uint16 array.

    Args:
        image: PIL image (any mode :mod:`superres.core.io` reads) or numpy array ``H x W``,
            ``H x W x 1``, ``H x W x 3`` or ``H x W x 4`` (RGBA), uint8 or uint16.
        model: Loaded model, shipped name, ``"bicubic"`` or checkpoint path. None: default.
        scale: Output scale. For names, the weights of this scale are used; a factor no
            model has (e.g. 1.5 or 3.5) runs the next larger scale and resizes with
            antialiasing. For a loaded model, None means its own scale. Default 4 for names.
        tile: Tile size in input pixels (None: automatic, 0: no tiling).
        overlap: Tile overlap in input pixels (None: from the model's receptive field).
        device: ``cpu``, ``cuda``, ``mps`` or None (automatic).
        progress: Optional ``callback(done_tiles, total_tiles)``.

    Returns:
        The same kind as ``image``: a PIL image (ICC profile and EXIF kept) or an array of
        the same dtype and channel layout.
    """
    net, outscale = model_for_scale(model, None if scale is None else float(scale))
    dev = engine.select_device(device)
    net = net.to(dev)
    if isinstance(image, PILImage.Image):
        img = io.from_pil(image)
        out = engine.upscale_image(
            img, net, tile=tile, overlap=overlap, device=dev, outscale=outscale, progress=progress
        )
        return io.to_pil(out)
    if isinstance(image, np.ndarray):
        return _upscale_ndarray(image, net, tile, overlap, dev, outscale, progress)
    raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")


def _upscale_ndarray(array, net, tile, overlap, device, outscale, progress) -> np.ndarray:
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"expected a uint8 or uint16 array, got {array.dtype}")
    squeeze = array.ndim == 2
    if squeeze:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an array H x W x C with C in 1..4, got shape {array.shape}")
    channels = array.shape[2]
    alpha = array[:, :, -1] if channels in (2, 4) else None
    colour = array[:, :, : channels - 1] if alpha is not None else array
    alpha = None if alpha is None else np.ascontiguousarray(alpha)
    pixels, alpha_out = engine.upscale_array(
        np.ascontiguousarray(colour), net, alpha=alpha,
        tile=tile, overlap=overlap, device=device, outscale=outscale, progress=progress,
    )  # fmt: skip
    if alpha_out is not None:
        pixels = np.concatenate([pixels, alpha_out[:, :, None]], axis=2)
    return pixels[:, :, 0] if squeeze else pixels


def evaluate(
    model: SRModel | str | Path | None,
    folders: str | Path | Sequence[str | Path],
    scale: int | None = None,
    *,
    tile: int | None = None,
    device: str | None = None,
) -> EvalResult:
    """Benchmark a model on HR folders (modcrop, MATLAB-bicubic LR, Y-channel PSNR/SSIM).

    Returns the numbers ``superres eval`` prints; ``result.to_dict()`` is its JSON.
    """
    name = None
    if not isinstance(model, SRModel):
        name = str(model) if model is not None else zoo.default_model_name()
        model = zoo.resolve(model, scale)
    dev = engine.select_device(device)
    return _evaluate(model.to(dev), folders, scale, tile=tile, device=dev, name=name)
