"""``superres rd``: rate-distortion curves and BD-rate of ``.srz`` on a folder of images."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from superres.apps.cli.common import (
    EXIT_OK,
    UsageError,
    add_threads,
    positive_int,
    progress_enabled,
)
from superres.apps.cli.compress import CodecChoices, roi_weight_arg
from superres.apps.cli.engines import add_engine_options, ray_cluster

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  superres rd --data Kodak24 --codec jpeg --scales 1,2 --json rd.json --plot rd.png
  superres rd --data Kodak24 --codec webp --scales 2,4 --models codec,lanczos --bpp-window 0.1,0.3
  superres rd --data Kodak24 --codec jpeg --scales 2 --roi centre.png --roi-bpp 0.25 --json roi.json
  superres rd --data Kodak24 --codec jpeg --scales 1,2,4 --engine ray --workers 2
  superres rd --data Kodak24 --codec webp --scales 2 --adapt 10 --bpp-window 0.1,0.3
"""


DESCRIPTION = """\
Encode every image of a folder at a range of qualities and scales, and print PSNR and
MS-SSIM against bits per pixel, with the BD-rate of each curve against the codec at
full resolution.

Every image is read before any is measured: one that cannot be read stops the run with
a one-line error naming it (an average over fewer images would not be the folder's).

With --roi MASK (one mask for every image, resized to each; or auto, each image's
saliency), every point also gets PSNR-RGB inside and outside the region, and each scale
gets an "ROI layer" curve: files made with compress --roi at the --roi-bpp targets. ROI
curves are left out of the BD-rates and the best-of curve (they trade the rest of the
image for the region).

With --adapt STEPS, every scale > 1 also gets a curve of the first restorer encoded with
adaptive downscaling (compress --adapt STEPS: the stored image refined for the restorer,
once per image for all qualities), and those curves get a best-of curve of their own.
"""


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got '{text}'"
        ) from None


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive bpps, got '{text}'")
    return values


def _window(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in bpp, got '{text}'") from None
    if not 0 <= low < high:
        raise argparse.ArgumentTypeError(f"expected 0 <= LOW < HIGH, got '{text}'")
    return low, high


def _follow(bar: Any) -> Callable[[int, int], None]:
    """A ``callback(done, total)`` that moves the tqdm ``bar`` to ``done`` of ``total``."""

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return progress


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    rdp = subparsers.add_parser(
        "rd", help="rate-distortion curves and BD-rate of .srz on a folder",
        description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    rdp.add_argument("--data", required=True, metavar="DIR", help="folder of images (Kodak24)")
    rdp.add_argument("--codec", "-c", default="jpeg", choices=CodecChoices(), metavar="CODEC",
                     help="codec: %(choices)s (default %(default)s)")  # fmt: skip
    rdp.add_argument("--scales", type=_int_list, default=[1, 2, 3, 4],
                     help="comma-separated scales; 1 (full size) is the reference "
                          "(default 1,2,3,4)")  # fmt: skip
    rdp.add_argument("--models", default=None,
                     help="comma-separated restorers for scales > 1 (default: the best shipped; "
                          "add lanczos to compare)")  # fmt: skip
    rdp.add_argument("--qualities", type=_int_list, default=None,
                     help="codec qualities (default: a dense set per codec)")  # fmt: skip
    rdp.add_argument("--bpp-window", type=_window, default=(0.1, 0.4), metavar="LOW,HIGH",
                     help="bpp range of the BD-rate (default 0.1,0.4)")  # fmt: skip
    rdp.add_argument("--roi", default=None, metavar="MASK|auto",
                     help="region of interest: a mask image (white = the region, resized to "
                          "each image) or auto (saliency): PSNR inside and outside it, and "
                          "ROI-layer curves")  # fmt: skip
    rdp.add_argument("--roi-bpp", type=_float_list, default=[0.15, 0.25, 0.4],
                     metavar="B,B,...",
                     help="targets of the ROI-layer curves (default 0.15,0.25,0.4)")  # fmt: skip
    rdp.add_argument("--roi-weight", type=roi_weight_arg, default=None, metavar="W",
                     help="as compress --roi-weight (default 8)")  # fmt: skip
    rdp.add_argument("--adapt", type=positive_int, default=None, metavar="STEPS",
                     help="also measure adaptive-downscaling curves (compress --adapt STEPS) "
                          "of the first restorer at every scale > 1")  # fmt: skip
    rdp.add_argument("--json", type=Path, default=None, metavar="FILE",
                     help="write CompressAI-style JSON")  # fmt: skip
    rdp.add_argument("--plot", type=Path, default=None, metavar="FILE",
                     help="write a PSNR-bpp plot (.png/.svg/.pdf; needs matplotlib)")  # fmt: skip
    add_threads(rdp)
    add_engine_options(rdp)
    rdp.add_argument("--quiet", "-q", action="store_true",
                     help="no progress bars (drawn only when stderr is a terminal)")  # fmt: skip
    rdp.set_defaults(func=run)
    return rdp


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from superres.codec import rd
    from superres.core.io import atomic_write_bytes
    from superres.inference import engine

    cluster = ray_cluster(args)
    if cluster is not None and args.roi is not None:
        raise UsageError("--roi runs with --engine local (its layer search is not distributed)")
    if cluster is None:
        engine.set_threads(args.threads)
    if not Path(args.data).is_dir():
        raise UsageError(f"{args.data}: not a folder")
    if any(s not in (1, 2, 3, 4) for s in args.scales) or not args.scales:
        raise UsageError(f"--scales must be a subset of 1,2,3,4, got {args.scales}")
    if 1 not in args.scales:
        args.scales = [1, *args.scales]  # the reference of every BD-rate
    if args.plot and args.plot.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise UsageError(f"{args.plot}: the plot must be .png, .svg or .pdf")
    images = rd.load_images(args.data)
    if not images:
        raise UsageError(f"{args.data}: no images")
    if args.roi_weight is not None and args.roi is None:
        raise UsageError("--roi-weight goes with --roi")
    masks = None if args.roi is None else rd.roi_masks(images, args.roi)  # before any work
    model_names = args.models.split(",") if args.models else [None]
    curves = []
    scales = sorted(set(args.scales))
    configs = [(s, m) for s in scales for m in (model_names if s > 1 else [None])]
    adaptive = [] if args.adapt is None else [(s, model_names[0]) for s in scales if s > 1]
    if adaptive and model_names[0] == "lanczos":
        raise UsageError("--adapt needs a network restorer first in --models, not lanczos")
    # (scale, restorer, adaptive-downscaling steps) per curve, for either engine
    runs = [(s, m, 0) for s, m in configs] + [(s, m, args.adapt) for s, m in adaptive]
    if cluster is not None:
        from superres.apps.batch import rd_curves

        bar = tqdm(desc=f"{args.codec}, {len(runs)} curves", unit="image", leave=False,
                   disable=not progress_enabled(args.quiet))  # fmt: skip
        try:
            curves = rd_curves(args.data, args.codec, runs, args.qualities, images=images,
                               cluster=cluster, progress=_follow(bar))  # fmt: skip
        except ValueError as err:
            raise UsageError(" ".join(str(err).split())) from None
        finally:
            bar.close()
    else:
        for scale, model, steps in runs:
            label = f"{args.codec} x{scale}" + (f" + {model}" if model and scale > 1 else "")
            label += f", adaptive {steps}" if steps else ""
            bar = tqdm(
                desc=label, unit="enc", leave=False, disable=not progress_enabled(args.quiet)
            )
            try:
                curves.append(rd.rd_curve(images, args.codec, scale, args.qualities,
                                          model=model, progress=_follow(bar),
                                          masks=masks, adapt_steps=steps))  # fmt: skip
            except ValueError as err:
                raise UsageError(" ".join(str(err).split())) from None
            finally:
                bar.close()
    roi_curves = []
    if masks is not None:
        from superres.codec import ROI_WEIGHT

        weight = ROI_WEIGHT if args.roi_weight is None else args.roi_weight
        primary = next((c.model for c in curves if c.scale > 1), None)
        for curve in [c for c in curves if (c.scale == 1 or c.model == primary) and not c.adapt]:
            bar = tqdm(desc=f"{curve.name}, ROI layer", unit="file", leave=False,
                       disable=not progress_enabled(args.quiet))  # fmt: skip
            try:
                roi_curves.append(rd.roi_curve(
                    images, args.codec, curve.scale, args.roi_bpp, masks,
                    model=curve.model if curve.scale > 1 else None, roi_weight=weight,
                    progress=_follow(bar),
                ))  # fmt: skip
            finally:
                bar.close()
    reference = curves[0]
    primary = next((c.model for c in curves if c.scale > 1), None)  # the first restorer
    front = rd.pareto_front(
        [c for c in curves if (c.scale == 1 or c.model == primary) and not c.adapt]
    )
    fronts = [front]
    if adaptive:
        fronts.append(rd.pareto_front([c for c in curves if c.scale == 1 or c.adapt]))
    low, high = args.bpp_window
    where = "" if masks is None else f", region of interest {args.roi}"
    print(f"{args.data}: {len(images)} images, codec {args.codec}{where}")
    bd: dict[str, float | None] = {}
    for curve in [*curves, *fronts, *roi_curves]:
        print(f"\n{curve.name}")
        first = "target" if curve.roi else "quality"
        regional = bool(curve.points) and curve.points[0].psnr_roi is not None
        extra = f" {'PSNR-in':>8} {'PSNR-out':>8}" if regional else ""
        print(
            f"  {first:>7} {'bpp':>7} {'PSNR-RGB':>9}{extra} {'MS-SSIM':>8} {'enc s':>6} "
            f"{'dec s':>6}"
        )
        for p in curve.points:
            key = f"{p.target_bpp:>7.3f}" if curve.roi else f"{p.quality:>7}"
            inside = f" {p.psnr_roi:>8.3f} {p.psnr_outside:>8.3f}" if regional else ""
            print(f"  {key} {p.bpp:>7.4f} {p.psnr:>9.3f}{inside} {p.ms_ssim:>8.4f} "
                  f"{p.encoding_time:>6.3f} {p.decoding_time:>6.3f}")  # fmt: skip
        if curve is reference or curve.roi:
            continue
        try:
            value, (p_low, p_high) = rd.bd_rate(
                [(p.bpp, p.psnr) for p in reference.points],
                [(p.bpp, p.psnr) for p in curve.points],
                args.bpp_window,
            )
            bd[curve.name] = value
            print(f"  BD-rate vs {reference.name}, {low:g}-{high:g} bpp "
                  f"({p_low:.2f}-{p_high:.2f} dB): {value:+.1f} %")  # fmt: skip
        except ValueError as err:
            bd[curve.name] = None
            print(f"  BD-rate vs {reference.name}: not measurable ({err})")
    if args.json:
        description = (
            f"superres rd on {args.data} ({len(images)} images), codec {args.codec}; the "
            f"best operating point per bitrate among scales {', '.join(map(str, args.scales))}"
        )
        payload = rd.to_compressai(front, description)
        payload["curves"] = [rd.to_compressai(c) for c in [*curves, *roi_curves]]
        if adaptive:
            payload["best_adaptive"] = rd.to_compressai(fronts[1])
        if masks is not None:
            payload["roi"] = {"mask": str(args.roi), "target_bpp": args.roi_bpp,
                              "weight": weight}  # fmt: skip
        payload["bd_rate"] = {"reference": reference.name, "bpp_window": [low, high],
                              "percent": bd}  # fmt: skip
        atomic_write_bytes(args.json, (json.dumps(payload, indent=2) + "\n").encode())
    if args.plot:
        try:
            rd.plot([*curves, *fronts], args.plot, title=f"{Path(args.data).name}, {args.codec}",
                    window=(low, high), max_bpp=max(1.0, 2 * high))  # fmt: skip
        except ImportError as err:
            raise UsageError(str(err)) from None
    return EXIT_OK
