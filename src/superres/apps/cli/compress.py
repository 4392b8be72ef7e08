"""``superres compress``: an image to an ``.srz`` file (codec at a reduced size + a restorer)."""

from __future__ import annotations

import argparse
import sys

from superres.apps.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_threads,
    error,
    positive_float,
)

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  superres compress photo.png -o photo.srz --quality 40
  superres compress photo.png -o photo.srz --target-bpp 0.3 --scale auto
"""


def _scale_arg(text: str) -> int | str:
    if text == "auto":
        return text
    if text not in ("1", "2", "3", "4"):
        raise argparse.ArgumentTypeError(f"expected 1, 2, 3, 4 or auto, got '{text}'")
    return int(text)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    co = subparsers.add_parser(
        "compress", help="compress an image to .srz (codec + super-resolution)",
        description="Compress an image to .srz: encode it with a codec (at a reduced size "
                    "for --scale > 1) and record the model that restores it. Give exactly one "
                    "of --quality or --target-bpp.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    co.add_argument("input", metavar="INPUT", help="image file")
    co.add_argument("-o", "--output", required=True, help="output .srz file")
    co.add_argument("--codec", "-c", default="jpeg", choices=("jpeg", "webp", "avif"),
                    help="codec of the payload (default jpeg)")  # fmt: skip
    co.add_argument("--quality", type=int, default=None, metavar="Q",
                    help="codec quality (this or --target-bpp is required)")  # fmt: skip
    co.add_argument("--target-bpp", type=positive_float, default=None, metavar="B",
                    help="highest quality whose whole file fits B bits per pixel "
                         "(this or --quality is required)")  # fmt: skip
    co.add_argument("--scale", "-s", type=_scale_arg, default=1,
                    help="1 (plain codec, the default), 2, 3, 4 or auto (best PSNR at the "
                         "target; needs --target-bpp)")  # fmt: skip
    co.add_argument("--model", "-m", default=None,
                    help="restoration model: lanczos, bicubic, fast, quality, codec "
                         "(default: the best shipped for the scale)")  # fmt: skip
    co.add_argument("--subsampling", choices=("4:2:0", "4:4:4"), default=None,
                    help="chroma subsampling for jpeg/avif (default 4:2:0)")  # fmt: skip
    co.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_threads(co)
    co.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    co.set_defaults(func=run)
    return co


def run(args: argparse.Namespace) -> int:
    import warnings

    from superres import codec
    from superres.core import io
    from superres.inference import engine

    engine.set_threads(args.threads)
    if (args.quality is None) == (args.target_bpp is None):
        raise UsageError("give exactly one of --quality Q or --target-bpp B")
    if args.scale == "auto" and args.target_bpp is None:
        raise UsageError("--scale auto needs --target-bpp")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", codec.TargetBitrateWarning)
        try:
            result = codec.compress_file(
                args.input, args.output, codec=args.codec, quality=args.quality,
                target_bpp=args.target_bpp, scale=args.scale, model=args.model,
                subsampling=args.subsampling, overwrite=args.overwrite,
            )  # fmt: skip
        except io.ImageError as err:
            error(str(err))
            return EXIT_FAILED
        except ValueError as err:  # bad settings for this image (alpha, model, ...)
            error(f"{args.input}: {' '.join(str(err).split())}")
            return EXIT_FAILED
    for warning in caught:
        if issubclass(warning.category, codec.TargetBitrateWarning):
            print(f"superres: warning: {warning.message}", file=sys.stderr)
    if not args.quiet:
        model = f", restored by {result.model}" if result.scale > 1 else ""
        print(
            f"{args.output}: {len(result.data):,} bytes, {result.bpp:.4f} bpp "
            f"({result.codec} quality {result.quality}, x{result.scale}{model})"
        )
    return EXIT_OK
