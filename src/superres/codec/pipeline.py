"""The steps of the ``.srz`` pipeline that compression, decompression and rate-distortion
measurement share::

    image --downscale [--adapt_lr]--> LR --(codec, container: superres.codec.api)--> .srz
    .srz --(container, codec)--> decode_pixels: LR --restore (choose_restorer's net)--> image
    decode_contents: decode_pixels + the ROI enhancement layer (superres.codec.roi), if any

:func:`downscale` is the exact ``1/scale`` shrink of the mirror-padded image (see
:mod:`superres.codec.api` for the geometry), :func:`adapt_lr` the optional encoder-side
refinement of that LR image for the file's restorer, :func:`choose_restorer` the restorer a file
records, :func:`decode_pixels` a payload to original-size pixels, as
:func:`superres.codec.decompress` computes them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image as PILImage

from superres.codec import container, models, roi
from superres.codec.base import get_codec
from superres.core.resize import imresize, to_levels
from superres.errors import ConfigError
from superres.inference import engine
from superres.inference.device import select_device
from superres.inference.loop import Progress, has_tensors
from superres.inference.plan import model_context, on_device
from superres.models import SRModel
from superres.weights import zoo

__all__ = [
    "ADAPT_STEP",
    "Restorer",
    "adapt_lr",
    "choose_restorer",
    "decode_contents",
    "decode_pixels",
    "downscale",
    "restore",
    "stored_lr",
]


class Restorer(NamedTuple):
    """The restoration model of one scale, as :func:`choose_restorer` loads it.

    Attributes:
        net: The loaded model; None for Lanczos (and for scale 1, which restores nothing).
        name: Its name in :data:`superres.codec.models.MODELS`.
        hash: The 4-byte weights hash the header stores (:func:`~superres.codec.model_hash`).
    """

    net: SRModel | None
    name: str
    hash: bytes


def choose_restorer(model: str | None, scale: int, *, device: str | None = None) -> Restorer:
    """Load the restorer that :func:`superres.codec.compress` would record for ``scale``.

    Args:
        model: A name from :data:`superres.codec.models.MODELS`, or None for the default:
            the best shipped tier with weights for ``scale`` (``codec``, ``quality``,
            ``fast``), else ``bicubic``. Scale 1 always gets ``lanczos`` (nothing to restore).
        scale: 1 to 4.
        device: Torch device to load a network on (None: where it loads, the CPU).

    Raises:
        ConfigError: an unknown name, a model at scale 1, or no weights for ``scale``.
    """
    if scale == 1:
        if model not in (None, "lanczos"):
            raise ConfigError(
                f"scale 1 stores the full image: there is nothing for {model!r} to do"
            )
        return Restorer(None, "lanczos", bytes(4))
    if model is None:
        shipped = {w.name for w in zoo.shipped_weights() if w.scale == scale}
        model = next((n for n in ("codec", "quality", "fast") if n in shipped), "bicubic")
    ident = models.model_id(model)
    net, digest = models.load_restorer(model, scale, device=device)
    return Restorer(net, models.MODELS[ident], digest)


def downscale(pixels: np.ndarray, scale: int) -> np.ndarray:
    """The LR image ``.srz`` stores: mirror-pad to a multiple of ``scale`` and shrink by
    exactly ``1/scale`` with MATLAB bicubic (the geometry: :mod:`superres.codec.api`).

    Args:
        pixels: ``H x W x C`` uint8.
        scale: 1 to 4 (1 returns ``pixels``).

    Returns:
        ``ceil(H / scale) x ceil(W / scale) x C`` uint8.
    """
    if scale == 1:
        return pixels
    h, w, _ = pixels.shape
    lr_h, lr_w = math.ceil(h / scale), math.ceil(w / scale)
    padded = np.pad(pixels, ((0, lr_h * scale - h), (0, lr_w * scale - w), (0, 0)), "symmetric")
    hr = torch.from_numpy(padded).permute(2, 0, 1).float().div_(255.0)
    lr = imresize(hr, size=(lr_h, lr_w))
    lr = to_levels(lr).to(torch.uint8)
    return np.ascontiguousarray(lr.permute(1, 2, 0).numpy())


#: Adam step of :func:`adapt_lr`, in [0, 1] pixel units (0.5 of an 8-bit level).
ADAPT_STEP = 2e-3


def adapt_lr(
    pixels: np.ndarray,
    lr: np.ndarray,
    scale: int,
    net: SRModel,
    steps: int,
    *,
    device: str | torch.device | None = None,
    tile: int = 256,
    progress: Progress | None = None,
) -> np.ndarray:
    """Content-adaptive downscaling: refine the LR image so that ``net`` restores it closer
    to ``pixels``, before it is coded.

    Starting from ``lr`` (:func:`downscale`'s result), ``steps`` Adam steps (step
    :data:`ADAPT_STEP`) lower the mean squared error between ``net``'s restoration (cropped
    to the image, as :func:`restore` crops it) and ``pixels``, the LR values kept in [0, 1];
    the result is rounded to 8 bits. Only the encoder changes: the file is an ordinary
    ``.srz`` that any decoder restores with the same weights (the header's hash pins them).
    This is the idea of task-aware downscaling (Kim et al., ECCV 2018) with the upscaler
    frozen: the restorer's errors are pre-compensated in the pixels it will be given. The
    codec is left out of the loop (pushing gradients through its quantiser made files
    larger and no better), so the same LR serves every quality.

    The gradient is taken tile by tile (cores of ``tile`` LR pixels, each widened by the
    restorer's receptive field), so memory is bounded as in :func:`restore`; for
    ``tiling == "exact"`` restorers it equals the whole-image gradient.

    Args:
        pixels: The original ``H x W x C`` uint8 image (C = 1 or 3).
        lr: Its ``ceil(H / scale) x ceil(W / scale) x C`` uint8 LR image.
        scale: 2 to 4.
        net: The restorer the file will record (a network: Lanczos has nothing to adapt to).
        steps: Number of Adam steps (0 returns ``lr``).
        device: Where to run (None: the model's device).
        tile: LR core side of the gradient tiles.
        progress: ``callback(done_steps, steps)`` after each step; an exception it raises
            stops the adaptation.

    Returns:
        The refined LR image, same shape and dtype as ``lr``.
    """
    if steps <= 0:
        return lr
    if net.size_multiple != 1:
        raise ConfigError(f"adaptive downscaling needs a restorer that takes any input size, "
                          f"not {net.arch} (sides a multiple of {net.size_multiple})")  # fmt: skip
    dev = net.device if device is None else select_device(device)
    if has_tensors(net) and net.device != dev:
        net = on_device(net, dev)  # a copy: the caller's (shared, cached) restorer stays put
    module = net.module
    h, w, channels = pixels.shape
    lr_h, lr_w = lr.shape[:2]
    target = torch.from_numpy(np.array(pixels)).to(dev).permute(2, 0, 1).float().div_(255.0)
    x = torch.from_numpy(np.array(lr)).to(dev).permute(2, 0, 1).float().div_(255.0)
    x.requires_grad_(True)
    optimiser = torch.optim.Adam([x], lr=ADAPT_STEP)
    context = model_context(net)  # as restore's tiles: the receptive field of exact models
    cores = [
        (y0, min(y0 + tile, lr_h), x0, min(x0 + tile, lr_w))
        for y0 in range(0, lr_h, tile)
        for x0 in range(0, lr_w, tile)
    ]
    for step in range(steps):
        optimiser.zero_grad(set_to_none=False)
        for y0, y1, x0, x1 in cores:
            # the core's HR rows and columns inside the image (the padding is cropped off)
            hy1, hx1 = min(y1 * scale, h), min(x1 * scale, w)
            if y0 * scale >= hy1 or x0 * scale >= hx1:
                continue
            iy0, iy1 = max(y0 - context, 0), min(y1 + context, lr_h)
            ix0, ix1 = max(x0 - context, 0), min(x1 + context, lr_w)
            window = x[:, iy0:iy1, ix0:ix1]
            if channels == 1:
                window = window.expand(3, -1, -1)  # grey in and out as the engine does it
            out = module(window[None])[0]
            out = out[:, (y0 - iy0) * scale :, (x0 - ix0) * scale :]
            out = out[:, : hy1 - y0 * scale, : hx1 - x0 * scale]
            if channels == 1:
                out = out.mean(0, keepdim=True)
            ref = target[:, y0 * scale : hy1, x0 * scale : hx1]
            # only x's gradient: a shared restorer's weights get no .grad
            ((out - ref).square().sum() / target.numel()).backward(inputs=[x])
        optimiser.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        if progress is not None:
            progress(step + 1, steps)
    refined = x.detach().mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return np.ascontiguousarray(refined.permute(1, 2, 0).cpu().numpy())


def stored_lr(
    pixels: np.ndarray,
    scale: int,
    net: SRModel | None,
    adapt_steps: int = 0,
    *,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """The LR image a file at ``scale`` restored by ``net`` stores: :func:`downscale`,
    refined by :func:`adapt_lr` when ``adapt_steps`` > 0 and there is a network to adapt to
    (Lanczos, ``net`` None, and scale 1 take the plain downscale)."""
    lr = downscale(pixels, scale)
    if scale == 1 or adapt_steps <= 0 or net is None:
        return lr
    return adapt_lr(pixels, lr, scale, net, adapt_steps, device=device, progress=progress)


def decode_pixels(
    header: container.Header,
    payload: bytes,
    net: SRModel | None,
    *,
    device: str | torch.device | None = None,
    tile: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Decode a payload and restore it to the original size, as :func:`decompress` does.

    Args:
        header, payload: From :func:`superres.codec.unpack`.
        net: The file's restorer (:func:`choose_restorer` or
            :func:`superres.codec.models.load_restorer`); None for Lanczos.
        device: Where ``net`` runs (None: its own device).
        tile, progress: As for :func:`restore`.

    Returns:
        ``H x W x C`` uint8 at the header's original size.

    Raises:
        ContainerError: the payload is corrupt or of another size than the header says.
    """
    lr = get_codec(header.codec_id).decode(payload, header.lr_size, channels=header.channels)
    if header.scale == 1:
        return lr
    size = (header.height, header.width)
    return restore(lr, header.scale, size, net, device=device, tile=tile, progress=progress)


def restore(
    lr: np.ndarray,
    scale: int,
    size: tuple[int, int],
    net: SRModel | None,
    *,
    device: str | torch.device | None = None,
    tile: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Upscale a decoded ``lr`` (``h x w x C`` uint8) ``scale`` times with ``net`` (None:
    Lanczos) and crop the padding off to ``size`` = ``(H, W)``; ``device`` is where ``net``
    runs (None: its own device), ``tile`` its LR tile side (None: the engine's plan; the
    restorers tile exactly, so the pixels do not depend on it) and ``progress`` a
    ``callback(done_tiles, total_tiles)`` called between tiles (an exception it raises
    stops the restoration: how the web service cancels a job past its deadline)."""
    lr_h, lr_w, channels = lr.shape
    if net is None:
        im = PILImage.fromarray(lr[:, :, 0] if channels == 1 else lr)
        sr = np.asarray(im.resize((lr_w * scale, lr_h * scale), PILImage.Resampling.LANCZOS))
        sr = sr.reshape(lr_h * scale, lr_w * scale, channels)
    else:
        sr, _ = engine.upscale_array(lr, net, device=device, tile=tile, progress=progress)
    return np.ascontiguousarray(sr[: size[0], : size[1]])


def decode_contents(
    contents: container.Contents,
    net: SRModel | None,
    *,
    device: str | torch.device | None = None,
    tile: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Decode a parsed file to original-size pixels, as :func:`decompress` does: the base
    layer (:func:`decode_pixels`) plus, in a file with a region of interest, the
    enhancement layer on the mask (:mod:`superres.codec.roi`). ``tile`` and ``progress``
    as for :func:`restore`.

    The mask and the enhancement are checked and decoded before the base is restored, so a
    bad one costs no network run.

    Raises:
        ContainerError: a corrupt payload, mask or enhancement layer.
    """
    header = contents.header
    mask_body = contents.section(container.SECTION_ROI_MASK)
    layers = enhancement = None
    if mask_body is not None:
        layers = roi.decode_mask(mask_body, (header.height, header.width))
        body = contents.section(container.SECTION_ENHANCEMENT)
        assert body is not None  # the container has both or neither
        enhancement = roi.decode_enhancement(
            get_codec(header.codec_id), body, layers, header.channels
        )
    pixels = decode_pixels(
        header, contents.payload, net, device=device, tile=tile, progress=progress
    )
    if layers is None:
        return pixels
    return roi.apply_enhancement(pixels, enhancement, layers)
