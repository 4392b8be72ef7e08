"""Rate-distortion evaluation of SR-assisted compression, and the Bjøntegaard delta rate.

For every image of a folder, every curve (a scale and a restoration model) and every codec
quality, the image is compressed to a complete ``.srz`` file, decoded and restored exactly
as :func:`superres.codec.decompress` does, and scored on its 8-bit output:

* **bpp**: all bytes of the ``.srz`` file x 8 / original pixel count (container header and
  metadata included; test images carry no ICC/EXIF);
* **psnr-rgb**: PSNR over the three RGB channels at peak 255, no border crop;
* **ms-ssim-rgb**: 5-scale MS-SSIM on RGB in [0, 1] (:func:`superres.core.metrics.ms_ssim`);
* **encoding/decoding time**: seconds per image (downscale + encode + pack; unpack +
  decode + restore), on this process's threads;
* with a region of interest (``roi=``): **psnr-rgb** inside and outside the mask, on every
  curve, and :func:`roi_curve`, the files made with ``compress(roi=...)`` at target bpps.

Each quality point is averaged over the images, the way CompressAI reports codecs, and
:func:`to_compressai` writes a curve in CompressAI's JSON shape. :func:`bd_rate` is the
Bjøntegaard delta rate (VCEG-M33): a cubic fit of log-rate as a function of PSNR for both
curves, integrated over the PSNR interval where both curves lie inside a stated bpp window.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from superres.codec import api, container, models, pipeline
from superres.codec.base import Codec, get_codec
from superres.core import io, regions
from superres.core.metrics import ms_ssim, psnr_rgb
from superres.errors import ConfigError

__all__ = [
    "DEFAULT_QUALITIES",
    "Curve",
    "RDPoint",
    "bd_rate",
    "check_adapt",
    "check_images",
    "curve_from_rows",
    "curve_settings",
    "default_qualities",
    "load_images",
    "measure_image",
    "pareto_front",
    "psnr_regions",
    "rd_curve",
    "roi_curve",
    "roi_masks",
    "to_compressai",
]

#: Default quality points of the built-in codecs: dense where the bitrates of interest
#: (< 1 bpp) are. Other registered codecs get :func:`default_qualities`' even spread.
DEFAULT_QUALITIES: dict[str, tuple[int, ...]] = {
    "jpeg": (3, 5, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 75, 90),
    "webp": (0, 5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90),
    "avif": (0, 10, 20, 30, 40, 50, 55, 60, 65, 70, 75, 80, 90),
}


def default_qualities(codec: str) -> tuple[int, ...]:
    """The quality points :func:`rd_curve` measures by default for a registered codec:
    :data:`DEFAULT_QUALITIES`, or 13 points spread evenly over its quality range."""
    chosen = get_codec(codec)
    if chosen.name in DEFAULT_QUALITIES:
        return DEFAULT_QUALITIES[chosen.name]
    low, high = chosen.quality_range
    return tuple(dict.fromkeys(round(q) for q in np.linspace(low, high, 13)))


@dataclasses.dataclass(frozen=True)
class RDPoint:
    """One quality setting (or, on an ROI curve, one target bpp), averaged over the images.

    ``psnr_roi`` and ``psnr_outside`` (PSNR-RGB inside and outside the region of interest)
    are set when the curve was measured with a mask; ``target_bpp`` on ROI curves, whose
    ``quality`` is then the mean base quality, rounded.
    """

    quality: int
    bpp: float
    psnr: float
    ms_ssim: float
    encoding_time: float
    decoding_time: float
    psnr_roi: float | None = None
    psnr_outside: float | None = None
    target_bpp: float | None = None


@dataclasses.dataclass(frozen=True)
class Curve:
    """A rate-distortion curve: one codec at one scale with one restorer (``roi``: made
    with a region-of-interest enhancement layer, :func:`roi_curve`; ``adapt``: the encoder's
    adaptive-downscaling steps, :func:`superres.codec.pipeline.adapt_lr`)."""

    codec: str
    scale: int
    model: str
    points: tuple[RDPoint, ...]
    roi: bool = False
    adapt: int = 0

    @property
    def name(self) -> str:
        if self.scale == 0:  # a Pareto front (see pareto_front)
            return f"{self.codec} {self.model}"
        if self.scale == 1:
            name = f"{self.codec} (full resolution)"
        else:
            name = f"{self.codec} x{self.scale} + {self.model}"
        if self.adapt:
            name = f"{name}, adaptive downscaling ({self.adapt} steps)"
        return f"{name}, ROI layer" if self.roi else name

    def column(self, field: str) -> list[float]:
        return [getattr(p, field) for p in self.points]


def load_images(folder: str | Path) -> list[tuple[str, np.ndarray]]:
    """``(name, H x W x 3 uint8)`` of every image in ``folder`` (grey becomes RGB, 16-bit is
    rounded to 8, alpha is dropped: :func:`superres.core.degrade.load_hr`).

    Every image is read before any is measured, and one that cannot be read stops the
    whole measurement (an average over fewer images would not be the folder's).

    Raises:
        FolderError: ``folder`` is not a folder or holds no image.
        ImageError: an image cannot be read (the message names it).
    """
    from superres.core.degrade import list_images, load_hr

    return [(path.name, load_hr(path)) for path in list_images(folder)]


def roi_masks(
    images: Sequence[tuple[str, np.ndarray]], roi: regions.MaskSource | str
) -> list[np.ndarray]:
    """The region of interest of each image: ``roi`` (a mask file, its bytes or an array,
    resized to each image; or ``"auto"``, each image's saliency) as ``H x W`` bool.

    Raises:
        ImageError, ConfigError: as :func:`superres.core.regions.region_of_interest`.
    """
    return [regions.region_of_interest(roi, pixels) for _, pixels in images]


def psnr_regions(
    decoded: np.ndarray, original: np.ndarray, mask: np.ndarray
) -> tuple[float, float]:
    """PSNR-RGB of ``decoded`` against ``original`` inside and outside ``mask`` (``inf``
    inside/outside when equal there; ``nan`` for a side with no pixel)."""

    def on(where: np.ndarray) -> float:
        if not where.any():
            return math.nan
        return psnr_rgb(decoded[where][None], original[where][None])

    return on(mask), on(~mask)


def rd_curve(
    images: Sequence[tuple[str, np.ndarray]],
    codec: str,
    scale: int,
    qualities: Sequence[int] | None = None,
    *,
    model: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    masks: Sequence[np.ndarray] | None = None,
    adapt_steps: int = 0,
) -> Curve:
    """Measure one curve: ``codec`` at ``scale``, restored by ``model``, at ``qualities``.

    Args:
        images: From :func:`load_images` (RGB uint8).
        codec: Codec name.
        scale: 1 (the codec at full resolution) or 2..4.
        qualities: Codec qualities (default :func:`default_qualities`).
        model: Restorer name for scale > 1 (default: as :func:`~superres.codec.compress`).
        progress: Called with ``(done, total)`` after every encode/decode.
        masks: A region of interest per image (:func:`roi_masks`): the points then also
            have PSNR-RGB inside and outside it.
        adapt_steps: Encode with adaptive downscaling (as ``compress(adapt_steps=...)``;
            a network restorer at scale > 1 only); its time counts as encoding time.

    Raises:
        ConfigError: an unknown codec or model, a quality out of range, no images, or an
            image smaller than 161 pixels a side (MS-SSIM's five scales); checked before
            anything is measured. All are ``ValueError`` s.
    """
    chosen, qualities = curve_settings(codec, qualities)
    check_images(images, masks)
    restorer = pipeline.choose_restorer(model if scale > 1 else None, scale)
    check_adapt(restorer, scale, adapt_steps)
    rows = np.zeros((len(qualities), ROW_FIELDS))
    total = len(images) * len(qualities)
    for k, (_, pixels) in enumerate(images):

        def step(i: int, k: int = k) -> None:
            if progress is not None:
                progress(k * len(qualities) + i, total)

        rows += measure_image(pixels, chosen, scale, qualities, restorer,
                              None if masks is None else masks[k], step, adapt_steps)  # fmt: skip
    return curve_from_rows(chosen.name, scale, restorer.name, qualities, rows / len(images),
                           masks is not None, adapt_steps)  # fmt: skip


def check_adapt(restorer: pipeline.Restorer, scale: int, adapt_steps: int) -> None:
    """Raise ConfigError unless ``adapt_steps`` is 0 or ``restorer`` is a network (adaptive
    downscaling refines the LR image against it)."""
    if adapt_steps and restorer.net is None:
        raise ConfigError(f"adaptive downscaling needs a network restorer at a scale > 1, "
                          f"not {restorer.name} at x{scale}")  # fmt: skip


#: Columns of :func:`measure_image`'s rows: bpp, PSNR-RGB, MS-SSIM, encoding and decoding
#: seconds, PSNR-RGB inside and outside the region of interest (0 without one).
ROW_FIELDS = 7


def measure_image(
    pixels: np.ndarray,
    codec: Codec,
    scale: int,
    qualities: Sequence[int],
    restorer: pipeline.Restorer,
    mask: np.ndarray | None = None,
    step: Callable[[int], None] | None = None,
    adapt_steps: int = 0,
) -> np.ndarray:
    """One image's contribution to :func:`rd_curve`: a ``len(qualities) x`` :data:`ROW_FIELDS`
    array, one row per quality (``.srz`` encoded at ``scale``, decoded and restored by
    ``restorer``); ``step(i)`` is called after quality ``i`` (1-based). :func:`rd_curve`
    averages these rows over the images, so a caller that measures images elsewhere (the
    Ray engine) gets the same curve from :func:`curve_from_rows`. With ``adapt_steps``, the
    LR image is refined once (:func:`superres.codec.pipeline.adapt_lr`) for all qualities,
    and that time is added to every quality's encoding time."""
    h, w, channels = pixels.shape
    header = container.Header(
        width=w, height=h, channels=channels, scale=scale, codec_id=codec.codec_id,
        model_id=models.model_id(restorer.name), model_hash=restorer.hash,
    )  # fmt: skip
    rows = np.zeros((len(qualities), ROW_FIELDS))
    start = time.perf_counter()
    lr = pipeline.stored_lr(pixels, scale, restorer.net, adapt_steps)
    downscale_time = time.perf_counter() - start
    for i, q in enumerate(qualities):
        start = time.perf_counter()
        data = container.pack(header, codec.encode(lr, q))
        encoded = time.perf_counter()
        parsed, payload, _, _ = container.unpack(data, max_pixels=h * w)
        decoded = pipeline.decode_pixels(parsed, payload, restorer.net)
        finished = time.perf_counter()
        inside = psnr_regions(decoded, pixels, mask) if mask is not None else (0.0, 0.0)
        rows[i] = (
            len(data) * 8 / (h * w),
            psnr_rgb(decoded, pixels),
            ms_ssim(decoded, pixels),
            encoded - start + downscale_time,
            finished - encoded,
            *inside,
        )
        if step is not None:
            step(i + 1)
    return rows


def curve_from_rows(
    codec: str,
    scale: int,
    restorer: str,
    qualities: Sequence[int],
    rows: np.ndarray,
    regional: bool,
    adapt: int = 0,
) -> Curve:
    """The :class:`Curve` of the image-averaged rows of :func:`measure_image` (``regional``:
    the points carry the PSNR inside and outside the region of interest; ``adapt``: its
    adaptive-downscaling steps)."""
    points = tuple(_point(q, row, regional) for q, row in zip(qualities, rows, strict=True))
    return Curve(codec, scale, restorer, points, adapt=adapt)


def roi_curve(
    images: Sequence[tuple[str, np.ndarray]],
    codec: str,
    scale: int,
    targets: Sequence[float],
    masks: Sequence[np.ndarray],
    *,
    model: str | None = None,
    roi_weight: float = api.ROI_WEIGHT,
    progress: Callable[[int, int], None] | None = None,
) -> Curve:
    """Measure files made with a region-of-interest layer (:func:`superres.codec.compress`
    with ``roi=``) at each of ``targets`` bpp, decoded as :func:`superres.codec.decompress`
    decodes them. A target an image cannot meet is measured at the smallest file (its bpp,
    above the target, is what is averaged).

    Args:
        images: From :func:`load_images`.
        codec, scale, model: As :func:`rd_curve`.
        targets: Target bpps (each > 0).
        masks: The region of each image (:func:`roi_masks`).
        roi_weight: As :func:`superres.codec.compress`.
        progress: Called with ``(done, total)`` after every file.

    Raises:
        ConfigError: as :func:`rd_curve`, or a target that is not a positive number.
    """
    chosen = get_codec(codec)
    if not targets or any(not (isinstance(t, (int, float)) and t > 0) for t in targets):
        raise ConfigError(f"targets must be positive bpps, got {list(targets)!r}")
    check_images(images, masks)
    restorer = pipeline.choose_restorer(model if scale > 1 else None, scale)
    rows = np.zeros((len(targets), 8))  # ... as rd_curve, and the base quality
    total, done = len(images) * len(targets), 0
    for k, (_, pixels) in enumerate(images):
        h, w = pixels.shape[:2]
        for i, target in enumerate(targets):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", api.TargetBitrateWarning)
                result = api.compress_detailed(
                    pixels, codec=chosen.name, target_bpp=float(target), scale=scale,
                    model=restorer.name, roi=masks[k], roi_weight=roi_weight, allow_over=True,
                )  # fmt: skip
            encoded = time.perf_counter()
            decoded = api.decompress(result.data).pixels
            finished = time.perf_counter()
            rows[i] += (
                len(result.data) * 8 / (h * w),
                psnr_rgb(decoded, pixels),
                ms_ssim(decoded, pixels),
                encoded - start,
                finished - encoded,
                *psnr_regions(decoded, pixels, masks[k]),
                result.quality,
            )
            done += 1
            if progress is not None:
                progress(done, total)
    rows /= len(images)
    points = tuple(
        dataclasses.replace(_point(round(row[7]), row[:7], True), target_bpp=float(t))
        for t, row in zip(targets, rows, strict=True)
    )
    return Curve(chosen.name, scale, restorer.name, points, roi=True)


def curve_settings(codec: str, qualities: Sequence[int] | None) -> tuple[Codec, tuple[int, ...]]:
    """The codec of a curve and its qualities (None: :func:`default_qualities`), checked.

    Raises:
        ConfigError: an unknown codec or a quality out of its range (``ValueError`` s).
    """
    chosen = get_codec(codec)
    qualities = tuple(qualities or default_qualities(chosen.name))
    for q in qualities:
        chosen.check_quality(q)
    return chosen, qualities


def check_images(
    images: Sequence[tuple[str, np.ndarray]], masks: Sequence[np.ndarray] | None
) -> None:
    """What :func:`rd_curve` refuses before it measures anything: no images, an image under
    161 pixels a side (MS-SSIM's five scales), masks that do not match the images.

    Raises:
        ConfigError: one of those (a ``ValueError``), naming the image.
    """
    if not images:
        raise ConfigError("no images to measure")
    for image_name, pixels in images:
        h, w = pixels.shape[:2]
        if min(h, w) < 161:
            raise ConfigError(f"{image_name} is {w}x{h}: MS-SSIM needs at least 161 pixels a side")
    if masks is not None:
        if len(masks) != len(images):
            raise ConfigError(f"{len(masks)} masks for {len(images)} images")
        for (image_name, pixels), mask in zip(images, masks, strict=True):
            if mask.shape != pixels.shape[:2] or mask.dtype != np.bool_:
                raise ConfigError(f"{image_name}: the mask is not an H x W bool array of its size")


def _point(quality: int, row: np.ndarray, regional: bool) -> RDPoint:
    values = [float(v) for v in row]
    return RDPoint(
        quality, *values[:5],
        psnr_roi=values[5] if regional else None,
        psnr_outside=values[6] if regional else None,
    )  # fmt: skip


def pareto_front(curves: Sequence[Curve]) -> Curve:
    """The best operating points of several curves of one codec (choose the scale per
    bitrate): their upper envelope. A measured point is kept when no other curve is higher
    at its bitrate (between two of a curve's points, by linear interpolation in log-rate:
    the codec's intermediate qualities lie there) and it beats every kept point with fewer
    bits."""
    if not curves:
        raise ValueError("no curves")

    if any(c.roi for c in curves):
        raise ValueError("an ROI curve is not a whole-image operating point (leave it out)")
    rated = [sorted((p.bpp, p.psnr) for p in c.points if p.bpp > 0) for c in curves]

    def beaten(point: RDPoint, own: Curve) -> bool:
        return any(
            other is not own and pts and pts[0][0] <= point.bpp <= pts[-1][0]
            and _psnr_at(pts, point.bpp) > point.psnr
            for other, pts in zip(curves, rated, strict=True)
        )  # fmt: skip

    tagged = sorted(
        ((p, c) for c in curves for p in c.points if not beaten(p, c)),
        key=lambda pc: (pc[0].bpp, -pc[0].psnr),
    )
    front: list[RDPoint] = []
    for point, _ in tagged:
        if not front or point.psnr > front[-1].psnr:
            front.append(point)
    scales = "/".join(f"x{c.scale}" for c in sorted(curves, key=lambda c: c.scale))
    models_used = "/".join(dict.fromkeys(c.model for c in curves if c.scale > 1))
    adaptive = ", adaptive" if any(c.adapt for c in curves) else ""
    return Curve(curves[0].codec, 0, f"best of {scales} ({models_used}{adaptive})", tuple(front))


def _psnr_at(points: Sequence[tuple[float, float]], bpp: float) -> float:
    """PSNR at ``bpp`` by linear interpolation in log-rate (points sorted by rate)."""
    rates = np.log([r for r, _ in points])
    return float(np.interp(math.log(bpp), rates, [d for _, d in points]))


def bd_rate(
    reference: Sequence[tuple[float, float]],
    test: Sequence[tuple[float, float]],
    window: tuple[float, float] | None = None,
) -> tuple[float, tuple[float, float]]:
    """Bjøntegaard delta rate of ``test`` against ``reference``, in percent.

    Args:
        reference, test: ``(bpp, psnr)`` points of each curve.
        window: ``(low, high)`` bpp: the integration runs over the PSNR interval where both
            curves lie between ``low`` and ``high`` bpp (and within their measured points).
            None: their whole overlap.

    Returns:
        ``(bd_rate_percent, (psnr_low, psnr_high))``; negative means ``test`` needs fewer
        bits for the same PSNR.

    Raises:
        ValueError: fewer than two points in the window, or no PSNR overlap.
    """
    low, high = window or (0.0, math.inf)
    if not 0 <= low < high:
        raise ValueError(f"invalid bpp window {window}")
    fits, intervals = [], []
    for label, points in (("reference", reference), ("test", test)):
        points = sorted((float(r), float(d)) for r, d in points if r > 0)
        points = [p for i, p in enumerate(points) if i == 0 or p[1] > max(d for _, d in points[:i])]
        rates = [r for r, _ in points]
        if len(points) < 2:
            raise ValueError(f"the {label} curve has fewer than 2 increasing points")
        lo, hi = max(low, rates[0]), min(high, rates[-1])
        if lo >= hi:
            raise ValueError(
                f"the {label} curve ({rates[0]:.3f}..{rates[-1]:.3f} bpp) has nothing in the "
                f"window {low}..{high} bpp"
            )
        intervals.append((_psnr_at(points, lo), _psnr_at(points, hi)))
        # Fit on the points in the window plus one neighbour beyond each end.
        inside = [i for i, r in enumerate(rates) if lo <= r <= hi]
        first = max(0, (inside[0] if inside else np.searchsorted(rates, lo)) - 1)
        last = min(len(points), (inside[-1] if inside else np.searchsorted(rates, hi)) + 2)
        chosen = points[first:last]
        degree = min(3, len(chosen) - 1)
        fits.append(np.polyfit([d for _, d in chosen], np.log([r for r, _ in chosen]), degree))
    p_low = max(intervals[0][0], intervals[1][0])
    p_high = min(intervals[0][1], intervals[1][1])
    if p_low >= p_high:
        raise ValueError(
            f"the curves do not overlap in PSNR inside the window {low}..{high} bpp "
            f"(reference {intervals[0][0]:.2f}..{intervals[0][1]:.2f} dB, "
            f"test {intervals[1][0]:.2f}..{intervals[1][1]:.2f} dB)"
        )
    integrals = []
    for fit in fits:
        antiderivative = np.polyint(fit)
        integrals.append(np.polyval(antiderivative, p_high) - np.polyval(antiderivative, p_low))
    mean_log_ratio = (integrals[1] - integrals[0]) / (p_high - p_low)
    return float((math.exp(mean_log_ratio) - 1) * 100), (float(p_low), float(p_high))


def to_compressai(curve: Curve, description: str = "") -> dict:
    """The curve in CompressAI's results JSON shape (plus ``psnr-rgb-roi`` and
    ``psnr-rgb-outside`` when measured with a region of interest, and ``target_bpp`` on an
    ROI curve)."""
    results = {
        "quality": curve.column("quality"),
        "bpp": curve.column("bpp"),
        "psnr-rgb": curve.column("psnr"),
        "ms-ssim-rgb": curve.column("ms_ssim"),
        "encoding_time": curve.column("encoding_time"),
        "decoding_time": curve.column("decoding_time"),
    }
    if curve.points and curve.points[0].psnr_roi is not None:
        results["psnr-rgb-roi"] = curve.column("psnr_roi")
        results["psnr-rgb-outside"] = curve.column("psnr_outside")
    if curve.roi:
        results["target_bpp"] = curve.column("target_bpp")
    return {"name": curve.name, "description": description, "results": results}


def plot(
    curves: Sequence[Curve],
    path: str | Path,
    title: str = "",
    *,
    window: tuple[float, float] | None = None,
    max_bpp: float | None = None,
) -> None:
    """Write a PSNR-vs-bpp plot of ``curves`` (needs matplotlib: ``superres[plot]``).

    A best-of front (:func:`pareto_front`) is drawn as a wide light band under the curves;
    ``window`` (the BD-rate's bpp window) is shaded; ``max_bpp`` limits the x axis (and the
    y axis to the points within it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'superres[plot]'") from None
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    for curve in curves:
        x, y = curve.column("bpp"), curve.column("psnr")
        if curve.scale == 0:
            ax.plot(x, y, "-", color="0.6", linewidth=7, alpha=0.35, zorder=0, label=curve.name)
        else:
            style = "--" if curve.scale == 1 else "-"
            ax.plot(x, y, style, marker=".", label=curve.name)
    if window:
        ax.axvspan(
            *window, color="0.9", zorder=-1, label=f"BD-rate window {window[0]:g}-{window[1]:g} bpp"
        )
    ax.set_xlabel("bits per pixel (whole .srz file)")
    ax.set_ylabel("PSNR-RGB (dB)")
    ax.set_xlim(left=0, right=max_bpp)
    if max_bpp:
        shown = [p.psnr for c in curves for p in c.points if p.bpp <= max_bpp]
        if shown:
            ax.set_ylim(min(shown) - 0.5, max(shown) + 0.5)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png")

    io.atomic_write(Path(path), write, overwrite=True)
    plt.close(fig)
