"""Region maps: how hard each tile is, which pixels matter, and a picture of both.

Data flow::

    image --luma--> difficulty (mean |Laplacian| per tile) --classify(thresholds)--> classes
    image --saliency (spectral residual, 64 px)--> [0, 1] map --auto_mask--> bool mask
    mask file / bytes / array / PIL image --load_mask(size)--> bool mask (white = interest)
    classes + mask --RegionMap (resolution-independent, to_bytes/to_dict)--> routing, bits
    image + RegionMap --draw--> picture (translucent class colours, mask outline)

Everything here is training-free and cheap (numpy and torch built-ins). Measured by
``python benchmarks/region_pictures.py --timing`` on Kodak ``kodim23`` (768x512) in one
process on this project's machine (2 x86-64 cores, shared with two training jobs at the
time): :func:`difficulty` 1.6 ms, :func:`saliency` 12 ms, a whole :class:`RegionMap` with
:func:`auto_mask` 24 ms, against 4.7 s for the quality tier at x4 on the same input (0.03 %,
0.26 % and 0.51 %; against about 1.5 s, README's idle-machine 640x480 figure scaled by the
pixel count, 0.1 %, 0.8 % and 1.6 %).

Errors a user can cause are :class:`~superres.errors.ImageError` (a mask file that is
missing, unreadable, not an image, or all black; the message names the file) or
:class:`~superres.errors.ConfigError` (an array of the wrong shape or dtype, bad thresholds),
one line each.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import struct
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image as PILImage

from superres.core.io import Image, from_pil, read_image, source_name
from superres.errors import ConfigError, ContainerError, ImageError, SuperresError

__all__ = [
    "CLASS_COLOURS",
    "REFERENCE_QUANTILES",
    "RegionMap",
    "auto_mask",
    "classify",
    "default_thresholds",
    "difficulty",
    "draw",
    "legend",
    "load_mask",
    "luma",
    "palette",
    "region_of_interest",
    "saliency",
    "tile_areas",
    "tile_means",
]

#: Long side of the luma on which :func:`saliency` works (Hou & Zhang use 64).
SALIENCY_SIDE = 64

#: Difficulty of the 35,200 32x32 tiles of the 200 BSD200 training images (T91's are a
#: little higher in the flat half) at the 0, 5, ..., 100 % quantiles;
#: :func:`default_thresholds` cuts it into classes of equal share, so the classes mean the
#: same on every image. Recomputed by ``python benchmarks/region_pictures.py --reference``.
REFERENCE_QUANTILES: tuple[float, ...] = (
    0.0, 0.00691, 0.00947, 0.0134, 0.0187, 0.0249, 0.0319, 0.0393, 0.0472, 0.0569, 0.0669,
    0.0771, 0.0879, 0.0991, 0.111, 0.125, 0.14, 0.159, 0.185, 0.227, 0.59,
)  # fmt: skip

#: Colours of the difficulty classes in pictures, by name; :func:`palette` picks from them
#: so that the easiest class is always blue and the hardest red.
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "blue": (40, 110, 230),
    "cyan": (30, 200, 220),
    "green": (40, 200, 90),
    "yellow": (250, 200, 30),
    "orange": (250, 130, 20),
    "red": (240, 40, 40),
}

_PALETTES = {
    1: ("blue",),
    2: ("blue", "red"),
    3: ("blue", "yellow", "red"),
    4: ("blue", "green", "yellow", "red"),
    5: ("blue", "green", "yellow", "orange", "red"),
    6: ("blue", "cyan", "green", "yellow", "orange", "red"),
}

_MAP_MAGIC = b"SRRM"
_MAP_VERSION = 1

MaskSource = str | os.PathLike[str] | bytes | bytearray | memoryview | np.ndarray | PILImage.Image


# --------------------------------------------------------------------------- luma and scores


def luma(image: np.ndarray) -> np.ndarray:
    """Full-range BT.601 luma in [0, 1] as ``H x W`` float32.

    Args:
        image: ``H x W`` or ``H x W x C`` (C = 1 grey, 3 RGB, 2/4 with alpha, which is
            ignored), uint8, uint16, bool or float (taken to be in [0, 1]).

    Raises:
        ConfigError: another shape or dtype.
    """
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ConfigError(f"expected an image array H x W [x C], got shape {a.shape}")
    if a.dtype == np.uint8:
        x = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        x = a.astype(np.float32) / 65535.0
    elif a.dtype == np.bool_ or np.issubdtype(a.dtype, np.floating):
        x = a.astype(np.float32)
    else:
        raise ConfigError(f"expected a uint8, uint16 or float image array, got {a.dtype}")
    if x.shape[2] >= 3:
        return 0.299 * x[:, :, 0] + 0.587 * x[:, :, 1] + 0.114 * x[:, :, 2]
    return np.ascontiguousarray(x[:, :, 0])


def _check_tile(tile: int) -> int:
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1:
        raise ConfigError(f"tile must be a positive integer, got {tile!r}")
    return int(tile)


def tile_areas(size: tuple[int, int], tile: int) -> np.ndarray:
    """Pixels in each ``tile x tile`` cell of an ``h x w`` image (the right and bottom
    cells may be smaller): int64, shape ``ceil(h / tile) x ceil(w / tile)``."""
    tile = _check_tile(tile)
    h, w = size
    rows = np.minimum(tile, h - tile * np.arange(-(-h // tile)))
    cols = np.minimum(tile, w - tile * np.arange(-(-w // tile)))
    return np.outer(rows, cols)


def tile_means(values: np.ndarray, tile: int) -> np.ndarray:
    """Mean of ``values`` (``H x W``) over each ``tile x tile`` cell, float32, shape
    ``ceil(H / tile) x ceil(W / tile)``; the cells at the right and bottom edges may be
    smaller and are averaged over the pixels they have."""
    tile = _check_tile(tile)
    h, w = values.shape
    gh, gw = -(-h // tile), -(-w // tile)
    padded = np.zeros((gh * tile, gw * tile), np.float64)
    padded[:h, :w] = values
    sums = padded.reshape(gh, tile, gw, tile).sum(axis=(1, 3))
    return (sums / tile_areas((h, w), tile)).astype(np.float32)


def difficulty(lr: np.ndarray, tile: int) -> np.ndarray:
    """Training-free difficulty of each tile: the mean absolute Laplacian of the luma.

    The score is high-frequency energy (the routing signal of ARM and AMSR, ECCV 2022) in
    [0, 1] intensity units (full-range luma; the 4-neighbour Laplacian ``4 y - sum of the
    neighbours``, edges replicated), so it is independent of bit depth and comparable across
    images: a flat tile scores 0, fine texture a few hundredths to tenths (see
    :data:`REFERENCE_QUANTILES`). Each tile's score depends only on the pixels of the tile
    and its one-pixel border, so it does not change when the image around it is cropped.
    About 2 ms on a 768x512 RGB image (under 0.1 % of the quality tier's x4 time).

    Args:
        lr: The image to route, ``H x W [x C]``, uint8, uint16 or float in [0, 1].
        tile: Tile side in pixels of ``lr``.

    Returns:
        ``ceil(H / tile) x ceil(W / tile)`` float32 scores (edge tiles may be smaller).

    Raises:
        ConfigError: a bad array or tile.
    """
    tile = _check_tile(tile)
    y = luma(lr)
    p = np.pad(y, 1, mode="edge")
    lap = np.abs((y - p[:-2, 1:-1]) + (y - p[2:, 1:-1]) + (y - p[1:-1, :-2]) + (y - p[1:-1, 2:]))
    return tile_means(lap, tile)


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in thresholds)
    except (TypeError, ValueError):
        raise ConfigError(f"thresholds must be numbers, got {thresholds!r}") from None
    if not all(math.isfinite(t) for t in values):
        raise ConfigError(f"thresholds must be finite, got {list(values)}")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ConfigError(f"thresholds must be strictly increasing, got {list(values)}")
    if len(values) > 254:
        raise ConfigError(f"at most 254 thresholds (255 classes), got {len(values)}")
    return values


def classify(scores: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Difficulty classes: the number of thresholds each score reaches (0 = easiest).

    With thresholds ``(t1, t2)``: ``score < t1`` is class 0, ``t1 <= score < t2`` class 1,
    ``score >= t2`` class 2.

    Returns:
        uint8 array of the shape of ``scores``.

    Raises:
        ConfigError: thresholds that are not finite and strictly increasing.
    """
    values = _check_thresholds(thresholds)
    s = np.asarray(scores)
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    cuts = np.asarray(values, dtype=s.dtype)  # float32 scores meet float32 thresholds
    return np.searchsorted(cuts, s, side="right").astype(np.uint8)


def default_thresholds(classes: int) -> tuple[float, ...]:
    """``classes - 1`` thresholds that split :data:`REFERENCE_QUANTILES` (tiles of natural
    training images) into classes of equal share, for example ``3 -> (0.03683, 0.1031)``.

    Raises:
        ConfigError: ``classes`` outside 1..20.
    """
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)):
        raise ConfigError(f"classes must be an integer, got {classes!r}")
    if not 1 <= classes <= 20:
        raise ConfigError(f"classes must be between 1 and 20, got {classes}")
    q = np.linspace(0.0, 1.0, len(REFERENCE_QUANTILES))
    cuts = np.interp(np.arange(1, classes) / classes, q, np.asarray(REFERENCE_QUANTILES))
    return tuple(float(f"{c:.4g}") for c in cuts)


# --------------------------------------------------------------------------- masks


def _resize_mask_plane(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``plane`` (``h x w`` grey levels) at ``size``: pixel-centre nearest along an axis that
    grows (a drawn mask stays crisp, corners included), the box average along one that
    shrinks (a cell is white when at least half of what it covers is)."""
    h, w = size
    ph, pw = plane.shape
    if h >= ph:
        plane = plane[np.minimum(((np.arange(h) + 0.5) * ph / h).astype(np.int64), ph - 1)]
    if w >= pw:
        plane = plane[:, np.minimum(((np.arange(w) + 0.5) * pw / w).astype(np.int64), pw - 1)]
    return _smooth_resize(plane, size, "area")


def _smooth_resize(plane: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Box-average (``area``) or bilinear resize of an ``h x w`` analysis map: for the
    saliency map, which is smooth, these are ten times cheaper than the bicubic resampler
    at full size and indistinguishable after the Gaussian."""
    if plane.shape == tuple(size):
        return plane.astype(np.float32, copy=False)
    x = torch.from_numpy(np.ascontiguousarray(plane, np.float32))[None, None]
    if mode == "area":
        out = torch.nn.functional.interpolate(x, size=size, mode="area")
    else:
        out = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return out[0, 0].numpy()


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"size must be (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise ConfigError(f"size must be positive, got {h}x{w}")
    return h, w


def _mask_plane(source: MaskSource, label: str) -> np.ndarray:
    """The mask's grey level in [0, 1] (``h x w`` float32), transparent pixels black."""
    if isinstance(source, np.ndarray):
        a = source
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
            raise ConfigError(
                f"{label}: a mask array must be H x W (or H x W x 1), got shape {source.shape}"
            )
        if a.dtype == np.bool_:
            return a.astype(np.float32)
        if a.dtype == np.uint8:
            return a.astype(np.float32) / 255.0
        if a.dtype == np.uint16:
            return a.astype(np.float32) / 65535.0
        if np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all():
                raise ConfigError(f"{label}: the mask array has non-finite values")
            return a.astype(np.float32)
        raise ConfigError(
            f"{label}: a mask array must be bool, uint8, uint16 or float, got {a.dtype}"
        )
    if isinstance(source, PILImage.Image):
        image = from_pil(source)
    elif isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        image = read_image(source)  # ImageError: missing, unreadable, not an image
    else:
        raise ConfigError(
            f"{label}: a mask must be an image file, its bytes, a PIL image or an array, "
            f"got {type(source).__name__}"
        )
    return _image_plane(image)


def _image_plane(image: Image) -> np.ndarray:
    plane = luma(image.pixels)
    if image.alpha is not None:
        plane = plane * luma(image.alpha)
    return plane


def load_mask(source: MaskSource, size: tuple[int, int], *, name: str | None = None) -> np.ndarray:
    """A region-of-interest mask, resized to ``size``: white (>= half grey) is the region.

    A greyscale, 1-bit or colour image (its luma; transparent pixels count as black) of
    any size is resized (nearest when enlarged, box-averaged when shrunk) and thresholded
    at half, so a mask drawn at another resolution selects the same part of the picture.

    Args:
        source: A path, the bytes of an image file, a PIL image, or an ``H x W`` array
            (bool; uint8/uint16 full scale; float in [0, 1]).
        size: ``(height, width)`` of the image the mask applies to.
        name: What error messages call the mask (default: the path, ``<bytes>``,
            ``mask``).

    Returns:
        ``height x width`` bool array.

    Raises:
        ImageError: a file that is missing, unreadable or not an image, or a mask that
            selects nothing (all black, or a region that vanishes at ``size``).
        ConfigError: an array of the wrong shape or dtype, another type, a bad ``size``.
    """
    h, w = _check_size(size)
    if name is not None:
        label = name
    elif isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        label = source_name(source)
    else:
        label = "mask"
    plane = _mask_plane(source, label)
    if not (plane >= 0.5).any():
        raise ImageError(label, "the mask selects nothing (it is all black)")
    mask = _resize_mask_plane(plane, (h, w)) >= 0.5
    if not mask.any():
        raise ImageError(label, f"the mask selects nothing once resized to {w}x{h}")
    return mask


def _gaussian_blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(3 * sigma + 0.5))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    out = np.pad(plane, ((radius, radius), (0, 0)), mode="reflect" if plane.shape[0] > radius
                 else "edge")  # fmt: skip
    out = sum(k[i] * out[i : i + plane.shape[0]] for i in range(len(k)))
    out = np.pad(out, ((0, 0), (radius, radius)), mode="reflect" if plane.shape[1] > radius
                 else "edge")  # fmt: skip
    return sum(k[i] * out[:, i : i + plane.shape[1]] for i in range(len(k)))


def saliency(image: np.ndarray, *, side: int = SALIENCY_SIDE, sigma: float = 2.5) -> np.ndarray:
    """Spectral-residual saliency (Hou & Zhang, CVPR 2007), a detector without weights.

    luma -> resize to ``side`` px long side -> FFT: log amplitude A, phase P ->
    R = A - mean3x3(A) -> |IFFT(exp(R + iP))|^2 -> Gaussian(``sigma``) -> [0, 1] -> resize
    to the image. What stands out from the image's average spectrum (an object on a plain
    background, a sign, a face in a scene) scores high. About 12 ms on a 768x512 image
    (under 1 % of the quality tier's x4 time).

    Args:
        image: ``H x W [x C]`` uint8, uint16 or float in [0, 1].
        side: Long side of the analysis (Hou & Zhang: 64).
        sigma: Gaussian smoothing in analysis pixels.

    Returns:
        ``H x W`` float32 in [0, 1] (all zeros for an image without structure).
    """
    y = luma(image)
    h, w = y.shape
    f = min(1.0, side / max(h, w))
    small_size = (max(1, round(h * f)), max(1, round(w * f)))
    small = _smooth_resize(y, small_size, "area").astype(np.float64)
    spectrum = np.fft.fft2(small - small.mean())
    amplitude = np.abs(spectrum)
    log_amp = np.log(amplitude + 1e-9)
    padded = np.pad(log_amp, 1, mode="wrap")  # the spectrum is periodic
    sh, sw = log_amp.shape
    local = sum(padded[i : i + sh, j : j + sw] for i in range(3) for j in range(3)) / 9.0
    phase = spectrum / np.maximum(amplitude, 1e-12)
    sal = np.abs(np.fft.ifft2(np.exp(log_amp - local) * phase)) ** 2
    if amplitude.max() < 1e-6:  # a flat image
        return np.zeros((h, w), np.float32)
    sal = _gaussian_blur(sal, sigma)
    lo, hi = float(sal.min()), float(sal.max())
    if hi - lo < 1e-12:
        return np.zeros((h, w), np.float32)
    sal = ((sal - lo) / (hi - lo)).astype(np.float32)
    return np.clip(_smooth_resize(sal, (h, w), "bilinear"), 0.0, 1.0)


def _check_fraction(fraction: float) -> float:
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise ConfigError(f"fraction must be a number in (0, 1], got {fraction!r}") from None
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction!r}")
    return value


def auto_mask(image: np.ndarray, fraction: float = 0.25) -> np.ndarray:
    """The most salient ``fraction`` of the image (:func:`saliency`) as a bool mask.

    Pixels whose saliency reaches the ``1 - fraction`` quantile are selected (ties may add
    a few). An image without salient structure (a flat or periodic one) gets the centred
    rectangle of the same area, the centre prior of photographs.

    Raises:
        ConfigError: ``fraction`` outside (0, 1] or a bad array.
    """
    fraction = _check_fraction(fraction)
    sal = saliency(image)
    h, w = sal.shape
    if fraction >= 1.0:
        return np.ones((h, w), bool)
    level = float(np.quantile(sal, 1.0 - fraction))
    if float(sal.max()) - level < 1e-6:  # nothing stands out: the centre
        k = math.sqrt(fraction)
        mh, mw = max(1, round(h * k)), max(1, round(w * k))
        mask = np.zeros((h, w), bool)
        top, left = (h - mh) // 2, (w - mw) // 2
        mask[top : top + mh, left : left + mw] = True
        return mask
    return sal >= level


def region_of_interest(
    spec: MaskSource, image: np.ndarray, *, fraction: float = 0.25, name: str | None = None
) -> np.ndarray:
    """``"auto"`` -> :func:`auto_mask` of ``image``; anything else -> :func:`load_mask` at
    the image's size. What ``--mask MASK|auto`` style options resolve through.

    Raises:
        ImageError, ConfigError: as :func:`load_mask` and :func:`auto_mask`.
    """
    if isinstance(spec, str) and spec == "auto":
        return auto_mask(image, fraction)
    a = np.asarray(image)
    if a.ndim < 2:
        raise ConfigError(f"expected an image array H x W [x C], got shape {a.shape}")
    return load_mask(spec, (a.shape[0], a.shape[1]), name=name)


# --------------------------------------------------------------------------- region map


def _cells(length: int, grid: int, tile: float, size: int) -> np.ndarray:
    """Grid index of each of ``length`` pixel centres of an axis ``size`` long in map units."""
    centres = (np.arange(length) + 0.5) * (size / length)
    return np.minimum((centres / tile).astype(np.int64), grid - 1)


def _nearest(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``plane`` resampled to ``size`` by pixel-centre nearest neighbour."""
    h, w = size
    ph, pw = plane.shape
    if (ph, pw) == (h, w):
        return plane.copy()
    rows = np.minimum(((np.arange(h) + 0.5) * ph / h).astype(np.int64), ph - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * pw / w).astype(np.int64), pw - 1)
    return plane[rows[:, None], cols[None, :]]


@dataclasses.dataclass(frozen=True, eq=False)
class RegionMap:
    """Difficulty classes on a tile grid and an optional region-of-interest mask.

    Resolution-independent: the grid and the mask are stored once and rendered at any size
    (:meth:`class_map`, :meth:`mask_at`); :meth:`resize` only rescales the geometry, so an
    LR map applies to the SR output exactly. Serialises to compact bytes
    (:meth:`to_bytes`, zlib, the mask bit-packed) or a JSON-ready dict (:meth:`to_dict`);
    both round-trip exactly.

    Attributes:
        size: ``(height, width)`` of the image the map describes.
        tile: ``(tile_h, tile_w)`` cell size in pixels of ``size`` (floats after a resize
            by a non-integer factor); cell ``(i, j)`` covers rows ``[i tile_h, (i+1)
            tile_h)`` and columns ``[j tile_w, (j+1) tile_w)``, the last ones clipped.
        classes: ``ceil(h / tile_h) x ceil(w / tile_w)`` uint8 classes (0 = easiest), or
            None for a mask-only map.
        thresholds: The difficulty thresholds the classes came from (informational).
        mask: bool mask at its own resolution covering the whole image, or None.
    """

    size: tuple[int, int]
    tile: tuple[float, float] = (32.0, 32.0)
    classes: np.ndarray | None = None
    thresholds: tuple[float, ...] = ()
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        size = _check_size(self.size)
        tile = self.tile if isinstance(self.tile, (tuple, list)) else (self.tile, self.tile)
        try:
            th, tw = (float(t) for t in tile)
        except (TypeError, ValueError):
            raise ConfigError(
                f"tile must be a number or (tile_h, tile_w), got {self.tile!r}"
            ) from None
        if not (th > 0 and tw > 0 and math.isfinite(th) and math.isfinite(tw)):
            raise ConfigError(f"tile must be positive, got {self.tile!r}")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "tile", (th, tw))
        object.__setattr__(self, "thresholds", _check_thresholds(self.thresholds))
        if self.classes is not None:
            classes = np.asarray(self.classes)
            if classes.shape != self.grid_shape:
                raise ConfigError(
                    f"classes must be {self.grid_shape[0]}x{self.grid_shape[1]} for an image "
                    f"of {size[0]}x{size[1]} in tiles of {th:g}x{tw:g}, got {classes.shape}"
                )
            if classes.size and (classes.min() < 0 or classes.max() > 255):
                raise ConfigError("classes must be in 0..255")
            object.__setattr__(self, "classes", np.ascontiguousarray(classes, np.uint8))
        if self.mask is not None:
            mask = np.asarray(self.mask)
            if mask.ndim != 2 or mask.dtype != np.bool_ or 0 in mask.shape:
                raise ConfigError(f"mask must be a 2-D bool array, got {mask.shape} {mask.dtype}")
            object.__setattr__(self, "mask", np.ascontiguousarray(mask))

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_image(
        cls,
        image: np.ndarray,
        tile: int = 32,
        thresholds: Sequence[float] | None = None,
        mask: np.ndarray | None = None,
    ) -> RegionMap:
        """The map of ``image``: :func:`difficulty` per ``tile``, :func:`classify` with
        ``thresholds`` (default: :func:`default_thresholds` ``(3)``), and ``mask`` (a bool
        array of any size, or None)."""
        values = default_thresholds(3) if thresholds is None else _check_thresholds(thresholds)
        scores = difficulty(image, tile)
        a = np.asarray(image)
        return cls(
            size=(a.shape[0], a.shape[1]),
            tile=(float(tile), float(tile)),
            classes=classify(scores, values),
            thresholds=values,
            mask=None if mask is None else np.asarray(mask, bool),
        )

    # ---------------------------------------------------------------- geometry

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the tile grid."""
        (h, w), (th, tw) = self.size, self.tile
        return max(1, math.ceil(round(h / th, 9))), max(1, math.ceil(round(w / tw, 9)))

    @property
    def n_classes(self) -> int:
        """Number of classes the thresholds define (``len(thresholds) + 1``)."""
        top = 0 if self.classes is None or not self.classes.size else int(self.classes.max())
        return max(len(self.thresholds) + 1, top + 1)

    def resize(self, to_size: tuple[int, int]) -> RegionMap:
        """The same map for the image resized to ``to_size`` (e.g. the SR output): the
        grid and the mask are kept, the tile scales with the image."""
        h, w = _check_size(to_size)
        th, tw = self.tile
        return dataclasses.replace(
            self, size=(h, w), tile=(th * h / self.size[0], tw * w / self.size[1])
        )

    def class_map(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """Per-pixel classes (uint8) at ``size`` (default: the map's own size)."""
        if self.classes is None:
            raise ConfigError("this region map has no difficulty classes")
        h, w = self.size if size is None else _check_size(size)
        gh, gw = self.grid_shape
        rows = _cells(h, gh, self.tile[0], self.size[0])
        cols = _cells(w, gw, self.tile[1], self.size[1])
        return self.classes[rows[:, None], cols[None, :]]

    def mask_at(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """The mask (bool) at ``size`` (default: the map's size), pixel-centre nearest."""
        if self.mask is None:
            raise ConfigError("this region map has no mask")
        return _nearest(self.mask, self.size if size is None else _check_size(size))

    def histogram(self) -> np.ndarray:
        """Tiles per class (int64, ``n_classes`` long)."""
        if self.classes is None:
            return np.zeros(0, np.int64)
        return np.bincount(self.classes.ravel(), minlength=self.n_classes).astype(np.int64)

    # ---------------------------------------------------------------- serialisation

    def _header(self) -> dict:
        return {
            "size": list(self.size),
            "tile": list(self.tile),
            "thresholds": list(self.thresholds),
            "grid": None if self.classes is None else list(self.classes.shape),
            "mask": None if self.mask is None else list(self.mask.shape),
        }

    def _payload(self) -> bytes:
        parts = b""
        if self.classes is not None:
            parts += self.classes.tobytes()
        if self.mask is not None:
            parts += np.packbits(self.mask, axis=None).tobytes()
        return parts

    def to_bytes(self) -> bytes:
        """Compact bytes: ``SRRM``, version, header length, JSON header, zlib(classes,
        packed mask). :meth:`from_bytes` gives an equal map."""
        header = json.dumps(self._header(), separators=(",", ":")).encode()
        body = zlib.compress(self._payload(), 9)
        return _MAP_MAGIC + struct.pack("<BI", _MAP_VERSION, len(header)) + header + body

    @classmethod
    def from_bytes(cls, data: bytes) -> RegionMap:
        """Inverse of :meth:`to_bytes`.

        Raises:
            ContainerError: data that is not a region map of a known version.
        """
        data = bytes(data)
        if len(data) < 9 or data[:4] != _MAP_MAGIC:
            raise ContainerError("not a region map (bad magic)")
        version, length = struct.unpack("<BI", data[4:9])
        if version != _MAP_VERSION:
            raise ContainerError(f"region map version {version} is not supported")
        try:
            header = json.loads(data[9 : 9 + length].decode())
        except (UnicodeDecodeError, ValueError) as err:
            raise ContainerError(f"corrupt region map ({err})") from None
        return cls._from_parts(header, data[9 + length :])

    @staticmethod
    def _inflate(body: bytes, expected: int) -> bytes:
        """zlib-decompress ``body``, which must hold exactly ``expected`` bytes (so a crafted
        stream cannot expand beyond what the header announces)."""
        inflate = zlib.decompressobj()
        try:
            payload = inflate.decompress(body, expected + 1)
        except zlib.error as err:
            raise ValueError(f"bad zlib data: {err}") from None
        if len(payload) != expected or not inflate.eof or inflate.unused_data:
            raise ValueError("the data does not match its header")
        return payload

    @classmethod
    def _from_parts(cls, header: object, body: bytes) -> RegionMap:
        try:
            if not isinstance(header, dict):
                raise TypeError("header is not an object")
            grid, mask_shape = header["grid"], header["mask"]
            n_classes = 0
            if grid is not None:
                gh, gw = (int(v) for v in grid)
                if gh < 1 or gw < 1:
                    raise ValueError(f"bad grid {gh}x{gw}")
                n_classes = gh * gw
            n_mask = 0
            if mask_shape is not None:
                mh, mw = (int(v) for v in mask_shape)
                if mh < 1 or mw < 1:
                    raise ValueError(f"bad mask size {mh}x{mw}")
                n_mask = mh * mw
            payload = cls._inflate(body, n_classes + (n_mask + 7) // 8)
            classes = mask = None
            if grid is not None:
                classes = np.frombuffer(payload, np.uint8, n_classes).reshape(gh, gw).copy()
            if mask_shape is not None:
                packed = np.frombuffer(payload, np.uint8, (n_mask + 7) // 8, n_classes)
                mask = np.unpackbits(packed)[:n_mask].reshape(mh, mw).astype(bool)
            return cls(
                size=tuple(header["size"]),
                tile=tuple(header["tile"]),
                classes=classes,
                thresholds=tuple(header["thresholds"]),
                mask=mask,
            )
        except (SuperresError, KeyError, TypeError, ValueError) as err:
            if isinstance(err, ContainerError):
                raise
            raise ContainerError(f"corrupt region map ({err})") from None

    def to_dict(self) -> dict:
        """JSON-ready dict (the arrays as base64 of :meth:`to_bytes`' zlib payload)."""
        out = self._header()
        out["version"] = _MAP_VERSION
        out["data"] = base64.b64encode(zlib.compress(self._payload(), 9)).decode("ascii")
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RegionMap:
        """Inverse of :meth:`to_dict`.

        Raises:
            ContainerError: a dict that is not a region map of a known version.
        """
        if not isinstance(data, dict) or data.get("version") != _MAP_VERSION:
            raise ContainerError("not a region map dict of a known version")
        try:
            body = base64.b64decode(data["data"], validate=True)
        except (KeyError, TypeError, ValueError) as err:
            raise ContainerError(f"corrupt region map ({err})") from None
        return cls._from_parts(data, body)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RegionMap):
            return NotImplemented

        def same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
            return (a is None and b is None) or (
                a is not None and b is not None and a.shape == b.shape and bool((a == b).all())
            )

        return (
            self.size == other.size
            and self.tile == other.tile
            and self.thresholds == other.thresholds
            and same(self.classes, other.classes)
            and same(self.mask, other.mask)
        )

    __hash__ = None  # type: ignore[assignment]


# --------------------------------------------------------------------------- pictures


def palette(classes: int) -> tuple[str, ...]:
    """Colour names (keys of :data:`CLASS_COLOURS`) of ``classes`` classes, easiest first.

    Raises:
        ConfigError: ``classes`` outside 1..6.
    """
    if classes not in _PALETTES:
        raise ConfigError(f"pictures show 1 to {len(_PALETTES)} classes, got {classes}")
    return _PALETTES[classes]


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` of its boundary (inside the region)."""
    inner = mask.copy()
    for _ in range(max(1, width)):
        p = np.pad(inner, 1, mode="edge")
        inner = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def draw(
    image: np.ndarray,
    region_map: RegionMap,
    *,
    opacity: float = 0.35,
    outline: tuple[int, int, int] = (255, 255, 255),
    grid: bool = True,
) -> np.ndarray:
    """A picture of ``region_map`` over ``image``: each tile tinted with its class colour
    (:func:`palette` of the map's classes, translucent), thin tile borders, and the mask's
    outline.

    Args:
        image: ``H x W [x C]`` uint8, uint16 or float in [0, 1]; drawn as RGB 8-bit.
        region_map: A map of any size (it is rendered at the image's size).
        opacity: Strength of the class tint.
        outline: RGB of the mask outline (drawn on a dark halo so it shows on any image).
        grid: Draw tile borders.

    Returns:
        ``H x W x 3`` uint8.

    Raises:
        ConfigError: a bad image array, or a map of more than 6 classes.
    """
    a = np.asarray(image)
    rgb = a if a.ndim == 3 else a[:, :, None]
    if rgb.dtype == np.uint16:
        rgb = (rgb.astype(np.float32) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    elif rgb.dtype != np.uint8:
        rgb = (np.clip(rgb.astype(np.float32), 0, 1) * 255.0 + 0.5).astype(np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] not in (1, 2, 3, 4):
        raise ConfigError(f"expected an image array H x W [x C], got shape {a.shape}")
    rgb = np.repeat(rgb[:, :, :1], 3, axis=2) if rgb.shape[2] < 3 else rgb[:, :, :3]
    h, w = rgb.shape[:2]
    out = rgb.astype(np.float32)
    if region_map.classes is not None:
        classes = region_map.class_map((h, w))
        names = palette(region_map.n_classes)
        colours = np.array([CLASS_COLOURS[n] for n in names], np.float32)
        out = (1.0 - opacity) * out + opacity * colours[classes]
        if grid:
            edge = np.zeros((h, w), bool)
            edge[1:, :] |= classes[1:, :] != classes[:-1, :]
            edge[:, 1:] |= classes[:, 1:] != classes[:, :-1]
            gh, gw = region_map.grid_shape
            rows = _cells(h, gh, region_map.tile[0], region_map.size[0])
            cols = _cells(w, gw, region_map.tile[1], region_map.size[1])
            edge[1:, :] |= (rows[1:] != rows[:-1])[:, None]
            edge[:, 1:] |= (cols[1:] != cols[:-1])[None, :]
            out[edge] = 0.6 * out[edge]
    if region_map.mask is not None:
        mask = region_map.mask_at((h, w))
        width = max(1, round(max(h, w) / 300))
        halo = _outline(mask, 2 * width + 1)
        out[halo] = 0.3 * out[halo]
        out[_outline(mask, width)] = np.asarray(outline, np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def legend(
    region_map: RegionMap, width: int, *, mask_label: str | None = None, height: int = 28
) -> np.ndarray:
    """A strip (``height x width x 3`` uint8, dark) naming each class with its colour, its
    difficulty range and its share of tiles, and the mask outline (``mask_label``); put it
    under :func:`draw`'s picture."""
    from PIL import ImageDraw, ImageFont

    strip = PILImage.new("RGB", (max(1, width), height), (24, 24, 28))
    pen = ImageDraw.Draw(strip)
    size = max(9, height // 2)
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, OSError):
        font = ImageFont.load_default()
    x, y = 6, (height - size) // 2
    histogram = region_map.histogram()
    total = max(1, int(histogram.sum()))
    if region_map.classes is not None:
        names = palette(region_map.n_classes)
        bounds = (0.0, *region_map.thresholds, None)
        for k, name in enumerate(names):
            pen.rectangle((x, y, x + size, y + size), fill=CLASS_COLOURS[name])
            lo, hi = bounds[k], bounds[k + 1]
            if hi is None:
                rule = "all" if k == 0 else f"d >= {lo:.3g}"
            else:
                rule = f"d < {hi:.3g}" if k == 0 else f"{lo:.3g} <= d < {hi:.3g}"
            text = f"{rule}: {100 * int(histogram[k]) / total:.0f} %"
            pen.text((x + size + 4, y - 1), text, fill=(235, 235, 235), font=font)
            x += size + 4 + int(pen.textlength(text, font=font)) + 14
    if region_map.mask is not None and mask_label:
        pen.line((x, y + size // 2, x + 2 * size, y + size // 2), fill=(255, 255, 255), width=2)
        pen.text((x + 2 * size + 4, y - 1), mask_label, fill=(235, 235, 235), font=font)
    return np.asarray(strip)
