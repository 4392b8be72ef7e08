"""``superres compress``: an image to an ``.srz`` file (codec at a reduced size + a restorer)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from superres.apps.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_threads,
    error,
    non_negative_int,
    positive_float,
)

__all__ = ["CodecChoices", "add_parser", "roi_weight_arg", "run"]

EPILOG = """\
examples:
  superres compress photo.png -o photo.srz --quality 40
  superres compress photo.png -o out/photo.srz --codec webp --target-bpp 0.3 --scale auto
  superres compress photo.png -o photo.srz --target-bpp 0.1 --scale 2 --allow-over
  superres compress photo.png -o photo.srz --codec webp --target-bpp 0.25 --scale 2 --roi face.png
  superres compress photo.png -o photo.srz --quality 50 --scale 2 --adapt
"""


class CodecChoices:
    """The names of the registered codecs (:func:`superres.codec.list_codecs`), as argparse
    ``choices``: read from the registry only when a value is checked or help is printed,
    so building the parser imports no codec (nor torch)."""

    def _names(self) -> list[str]:
        from superres.codec.base import list_codecs

        return list_codecs()

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


DESCRIPTION = """\
Compress an image to .srz: encode it with a codec (at a reduced size for --scale > 1)
and record the model that restores it on decompression.

Exactly one of --quality or --target-bpp is required. Defaults: --codec jpeg,
--scale 1, --model the best shipped for the scale, --subsampling 4:2:0. The output's
folder is created if needed; nothing is written if compression fails.

--roi MASK (white = the region, any size) or --roi auto (the most salient quarter)
spends more of the --target-bpp on the region: the file adds an enhancement layer over
it, and the region is restored with higher fidelity, the rest with less.
"""


def _scale_arg(text: str) -> int | str:
    if text == "auto":
        return text
    if text not in ("1", "2", "3", "4"):
        raise argparse.ArgumentTypeError(f"expected 1, 2, 3, 4 or auto, got '{text}'")
    return int(text)


def roi_weight_arg(text: str) -> float:
    """argparse type of ``--roi-weight``: a finite number >= 1."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 1 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got '{text}'")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    co = subparsers.add_parser(
        "compress", help="compress an image to .srz (codec + super-resolution)",
        description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    co.add_argument("input", metavar="INPUT", help="image file")
    co.add_argument("-o", "--output", required=True, help="output .srz file")
    co.add_argument("--codec", "-c", default="jpeg", choices=CodecChoices(), metavar="CODEC",
                    help="codec of the payload: %(choices)s (default %(default)s)")  # fmt: skip
    co.add_argument("--quality", type=int, default=None, metavar="Q",
                    help="codec quality, e.g. 1-100 for jpeg (this or --target-bpp is "
                         "required)")  # fmt: skip
    co.add_argument("--target-bpp", type=positive_float, default=None, metavar="B",
                    help="highest quality whose whole file fits B bits per pixel "
                         "(this or --quality is required); a target even the lowest "
                         "quality misses is an error unless --allow-over")  # fmt: skip
    co.add_argument("--allow-over", action="store_true",
                    help="with --target-bpp: when even the lowest quality is over the target, "
                         "write it anyway (a warning, exit 0)")  # fmt: skip
    co.add_argument("--scale", "-s", type=_scale_arg, default=1,
                    help="1 (plain codec, the default), 2, 3, 4 or auto (best PSNR at the "
                         "target; needs --target-bpp)")  # fmt: skip
    co.add_argument("--model", "-m", default=None,
                    help="restoration model: lanczos, bicubic, fast, quality, codec "
                         "(default: the best shipped for the scale)")  # fmt: skip
    co.add_argument("--subsampling", choices=("4:2:0", "4:4:4"), default=None,
                    help="chroma subsampling for jpeg/avif (default 4:2:0)")  # fmt: skip
    co.add_argument("--device", default=None,
                    help="where --scale auto runs the restorer to score each scale: cpu, "
                         "cuda, cuda:N or mps (default: automatic)")  # fmt: skip
    co.add_argument("--roi", default=None, metavar="MASK|auto",
                    help="region of interest: a mask image (white = the region; resized to "
                         "the image) or auto (saliency); needs --target-bpp")  # fmt: skip
    co.add_argument("--roi-weight", type=roi_weight_arg, default=None, metavar="W",
                    help="how many times a region pixel's squared error counts as much as "
                         "another's when the bits are shared out (default 8)")  # fmt: skip
    co.add_argument("--adapt", type=non_negative_int, nargs="?", const=None, default=0,
                    metavar="STEPS",
                    help="adaptive downscaling: refine the stored image for the restorer "
                         "with STEPS gradient steps (default 10 when STEPS is left out); a "
                         "slower encoder, an ordinary file, a better restoration")  # fmt: skip
    co.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_threads(co)
    co.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    co.set_defaults(func=run)
    return co


def run(args: argparse.Namespace) -> int:
    from superres import codec
    from superres.errors import SuperresError
    from superres.inference import engine

    if (args.quality is None) == (args.target_bpp is None):
        raise UsageError("give exactly one of --quality Q or --target-bpp B")
    if args.scale == "auto" and args.target_bpp is None:
        raise UsageError("--scale auto needs --target-bpp")
    if args.allow_over and args.target_bpp is None:
        raise UsageError("--allow-over goes with --target-bpp")
    if args.roi is not None and args.target_bpp is None:
        raise UsageError("--roi needs --target-bpp")
    if args.roi_weight is not None and args.roi is None:
        raise UsageError("--roi-weight goes with --roi")
    roi_weight = codec.ROI_WEIGHT if args.roi_weight is None else args.roi_weight
    adapt = codec.ADAPT_STEPS if args.adapt is None else args.adapt
    if adapt > codec.api.MAX_ADAPT_STEPS:
        raise UsageError(f"--adapt takes at most {codec.api.MAX_ADAPT_STEPS} steps, got {adapt}")
    if adapt and args.scale == 1:
        raise UsageError("--adapt needs --scale 2, 3, 4 or auto: scale 1 stores the image itself")
    engine.set_threads(args.threads)
    # a TargetBitrateWarning (with --allow-over) prints as one line: see main
    try:
        result = codec.compress_file(
            args.input, args.output, codec=args.codec, quality=args.quality,
            target_bpp=args.target_bpp, scale=args.scale, model=args.model,
            subsampling=args.subsampling, overwrite=args.overwrite,
            allow_over=args.allow_over, device=args.device, roi=args.roi,
            roi_weight=roi_weight, adapt_steps=adapt,
        )  # fmt: skip
    except codec.TargetBitrateError as err:
        error(f"{err} (--allow-over writes it anyway)")
        return EXIT_FAILED
    except SuperresError:
        raise  # main prints it as one line
    except ValueError as err:  # anything else about these settings for this image
        error(f"{args.input}: {err}")
        return EXIT_FAILED
    if not args.quiet:
        model = f", restored by {result.model}" if result.scale > 1 else ""
        if adapt and result.scale > 1:
            model += f", adaptive downscaling {adapt} steps"
        region = ""
        if result.roi_quality is not None:
            region = (
                f"; region of interest: {result.roi_bytes:,} bytes, enhancement quality "
                f"{result.roi_quality}"
            )
        print(
            f"{args.output}: {len(result.data):,} bytes, {result.bpp:.4f} bpp "
            f"({result.codec} quality {result.quality}, x{result.scale}{model}{region})"
        )
    return EXIT_OK
