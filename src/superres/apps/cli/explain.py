"""``superres explain``: picture a model's attention gates on an image, one panel per block."""

from __future__ import annotations

import argparse

from superres.apps.cli.common import (
    EXIT_OK,
    MODEL_HELP,
    UsageError,
    add_quiet,
    add_threads,
    one_line,
    positive_int,
    scale_choice,
)

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  superres explain photo.png -o attention.png
  superres explain photo.png -o attention.png --model quality --scale 2
  superres explain photo.png -o attention.png -m runs/rcan_x4/best.safetensors

The quality tier's panels are the spatial gate of each block (its sigmoid, averaged over
channels) at the input's size: dark where the block suppresses its features, bright where
it passes them. Channel attention (RCAN) is drawn as one strip per block, a bar per
channel. A model without attention layers is refused.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    ex = subparsers.add_parser(
        "explain", help="draw a model's attention gates on an image",
        description="Run a model once on an image and draw what its attention layers "
                    "pass and suppress: the input and one panel per block.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    ex.add_argument("input", metavar="INPUT", help="image file (the network's input)")
    ex.add_argument("-o", "--output", required=True, metavar="ATTN",
                    help="picture to write (.png, .jpg, .webp, ...)")  # fmt: skip
    ex.add_argument("--model", "-m", default="quality", metavar="MODEL",
                    help=MODEL_HELP.replace("default: quality, the best shipped tier",
                                            "default: quality"))  # fmt: skip
    ex.add_argument("--scale", "-s", type=scale_choice, default=None,
                    help="model scale 2, 3 or 4 (default: 4 for a shipped name, a "
                         "checkpoint's own scale)")  # fmt: skip
    ex.add_argument(
        "--max-side",
        type=positive_int,
        default=1024,
        metavar="PX",
        help="reduce a longer input to this long side first (default 1024)",
    )
    ex.add_argument(
        "--panel",
        type=positive_int,
        default=256,
        metavar="PX",
        help="long side of each panel in the picture (default 256)",
    )
    ex.add_argument(
        "--columns", type=positive_int, default=4, metavar="N", help="panels per row (default 4)"
    )
    ex.add_argument("--overwrite", action="store_true", help="replace an existing output")
    ex.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: cpu)")
    add_threads(ex)
    add_quiet(ex, "print nothing on success")
    ex.set_defaults(func=run)
    return ex


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from superres import api
    from superres.core.io import Image, output_format, read_image, write_image
    from superres.errors import ImageError, SuperresError
    from superres.inference import engine, explain

    if args.max_side < 16:
        raise UsageError(f"--max-side must be at least 16, got {args.max_side}")
    if not 32 <= args.panel <= 2048:
        raise UsageError(f"--panel must be 32 to 2048, got {args.panel}")
    output = Path(args.output)
    output_format(output)  # ImageError for an unknown extension, before any work
    if output.exists() and not args.overwrite:
        raise ImageError(output, "output exists")
    if not output.parent.is_dir():
        raise ImageError(output, f"folder {output.parent} does not exist")

    engine.set_threads(args.threads)
    try:
        model = api.load_model(args.model, scale=args.scale, device=args.device or "cpu")
    except api.ScaleError as err:
        raise UsageError(
            f"{err.name}: the model is x{err.have}, so --scale {err.wanted} is refused (leave "
            f"out --scale to use it at x{err.have})"
        ) from None
    except SuperresError:
        raise  # a bad checkpoint or device: one line, exit 1
    except (ValueError, FileNotFoundError) as err:  # an unknown name, a missing scale
        raise UsageError(one_line(err)) from None
    explain.require_attention(model)  # ConfigError before the image is read
    image = read_image(args.input)
    picture, gates = explain.explain(image.pixels, model, max_side=args.max_side,
                                     panel=args.panel, columns=args.columns)  # fmt: skip
    write_image(output, Image(picture), overwrite=args.overwrite)
    if not args.quiet:
        ph, pw = picture.shape[:2]
        print(f"{output}: {pw}x{ph}, {len(gates)} attention layers of {api.model_label(model)}")
        for gate in gates:
            v = gate.values
            print(f"  {gate.name} ({gate.kind}, {gate.layer}): mean {v.mean():.3f}, "
                  f"min {v.min():.3f}, max {v.max():.3f}")  # fmt: skip
    return EXIT_OK
