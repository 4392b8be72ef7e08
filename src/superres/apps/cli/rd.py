"""``superres rd``: rate-distortion curves and BD-rate of ``.srz`` on a folder of images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from superres.apps.cli.common import EXIT_OK, UsageError, add_threads, progress_enabled
from superres.apps.cli.compress import CodecChoices

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  superres rd --data Kodak24 --codec jpeg --scales 1,2 --json rd.json --plot rd.png
  superres rd --data Kodak24 --codec webp --scales 2,4 --models codec,lanczos --bpp-window 0.1,0.3
"""


DESCRIPTION = """\
Encode every image of a folder at a range of qualities and scales, and print PSNR and
MS-SSIM against bits per pixel, with the BD-rate of each curve against the codec at
full resolution.

Every image is read before any is measured: one that cannot be read stops the run with
a one-line error naming it (an average over fewer images would not be the folder's).
"""


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got '{text}'"
        ) from None


def _window(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in bpp, got '{text}'") from None
    if not 0 <= low < high:
        raise argparse.ArgumentTypeError(f"expected 0 <= LOW < HIGH, got '{text}'")
    return low, high


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    rdp = subparsers.add_parser(
        "rd", help="rate-distortion curves and BD-rate of .srz on a folder",
        description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    rdp.add_argument("--data", required=True, metavar="DIR", help="folder of images (Kodak24)")
    rdp.add_argument("--codec", "-c", default="jpeg", choices=CodecChoices(), metavar="CODEC",
                     help="codec: %(choices)s (default %(default)s)")  # fmt: skip
    rdp.add_argument("--scales", type=_int_list, default=[1, 2, 4],
                     help="comma-separated scales; 1 (full size) is the reference "
                          "(default 1,2,4)")  # fmt: skip
    rdp.add_argument("--models", default=None,
                     help="comma-separated restorers for scales > 1 (default: the best shipped; "
                          "add lanczos to compare)")  # fmt: skip
    rdp.add_argument("--qualities", type=_int_list, default=None,
                     help="codec qualities (default: a dense set per codec)")  # fmt: skip
    rdp.add_argument("--bpp-window", type=_window, default=(0.1, 0.4), metavar="LOW,HIGH",
                     help="bpp range of the BD-rate (default 0.1,0.4)")  # fmt: skip
    rdp.add_argument("--json", type=Path, default=None, metavar="FILE",
                     help="write CompressAI-style JSON")  # fmt: skip
    rdp.add_argument("--plot", type=Path, default=None, metavar="FILE",
                     help="write a PSNR-bpp plot (.png/.svg/.pdf; needs matplotlib)")  # fmt: skip
    add_threads(rdp)
    rdp.add_argument("--quiet", "-q", action="store_true",
                     help="no progress bars (drawn only when stderr is a terminal)")  # fmt: skip
    rdp.set_defaults(func=run)
    return rdp


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from superres.codec import rd
    from superres.core.io import atomic_write_bytes
    from superres.inference import engine

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
    model_names = args.models.split(",") if args.models else [None]
    curves = []
    for scale in sorted(set(args.scales)):
        for model in model_names if scale > 1 else [None]:
            label = f"{args.codec} x{scale}" + (f" + {model}" if model and scale > 1 else "")
            bar = tqdm(
                desc=label, unit="enc", leave=False, disable=not progress_enabled(args.quiet)
            )

            def progress(done: int, total: int, bar: tqdm = bar) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                curves.append(rd.rd_curve(images, args.codec, scale, args.qualities,
                                          model=model, progress=progress))  # fmt: skip
            except ValueError as err:
                raise UsageError(" ".join(str(err).split())) from None
            finally:
                bar.close()
    reference = curves[0]
    primary = next((c.model for c in curves if c.scale > 1), None)  # the first restorer
    front = rd.pareto_front([c for c in curves if c.scale == 1 or c.model == primary])
    low, high = args.bpp_window
    print(f"{args.data}: {len(images)} images, codec {args.codec}")
    bd: dict[str, float | None] = {}
    for curve in [*curves, front]:
        print(f"\n{curve.name}")
        print(
            f"  {'quality':>7} {'bpp':>7} {'PSNR-RGB':>9} {'MS-SSIM':>8} {'enc s':>6} {'dec s':>6}"
        )
        for p in curve.points:
            print(f"  {p.quality:>7} {p.bpp:>7.4f} {p.psnr:>9.3f} {p.ms_ssim:>8.4f} "
                  f"{p.encoding_time:>6.3f} {p.decoding_time:>6.3f}")  # fmt: skip
        if curve is reference:
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
        payload["curves"] = [rd.to_compressai(c) for c in curves]
        payload["bd_rate"] = {"reference": reference.name, "bpp_window": [low, high],
                              "percent": bd}  # fmt: skip
        atomic_write_bytes(args.json, (json.dumps(payload, indent=2) + "\n").encode())
    if args.plot:
        try:
            rd.plot([*curves, front], args.plot, title=f"{Path(args.data).name}, {args.codec}",
                    window=(low, high), max_bpp=max(1.0, 2 * high))  # fmt: skip
        except ImportError as err:
            raise UsageError(str(err)) from None
    return EXIT_OK
