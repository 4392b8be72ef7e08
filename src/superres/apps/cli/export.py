"""``superres export``: a model to ONNX (dynamic batch and size)."""

from __future__ import annotations

import argparse
from pathlib import Path

from superres.apps.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_quiet,
    error,
    int_option,
    one_line,
    scale_choice,
)

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  superres export quality --scale 4 -o quality_x4.onnx
  superres export runs/espcn_x2/best.safetensors -o espcn_x2.onnx
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    ex = subparsers.add_parser(
        "export", help="export a model to ONNX (dynamic batch and size)",
        description="Export a shipped model or a checkpoint to ONNX, for 'superres upscale "
                    "--backend onnx' or any onnxruntime.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    ex.add_argument("model", metavar="MODEL",
                    help="shipped name (fast, quality) or a .safetensors checkpoint")  # fmt: skip
    ex.add_argument("--scale", "-s", type=scale_choice, default=None,
                    help="scale of a shipped name (default 4); a checkpoint has its own "
                         "(if given, it must match)")  # fmt: skip
    ex.add_argument("--format", "-f", default="onnx", help="output format: onnx (default)")
    ex.add_argument("-o", "--output", required=True, metavar="FILE", help="output .onnx file")
    ex.add_argument("--opset", default="17", metavar="N", help="ONNX opset, 17 to 20 (default 17)")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_quiet(ex, "print nothing on success")
    ex.set_defaults(func=run)
    return ex


def run(args: argparse.Namespace) -> int:
    if args.format != "onnx":
        raise UsageError(f"--format must be onnx (the one export format), got '{args.format}'")
    opset = int_option(args.opset, "--opset")
    output = Path(args.output)
    if output.is_dir():
        raise UsageError(f"{output}: is a folder; give an output .onnx file")
    if output.exists() and not args.overwrite:
        error(f"{output}: output exists (use --overwrite to replace it)")
        return EXIT_FAILED

    from superres.inference.onnx_backend import export_onnx
    from superres.weights import zoo

    try:
        model = zoo.resolve(args.model, args.scale)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(one_line(err)) from None
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, output, opset, overwrite=args.overwrite)
    except (ValueError, ImportError) as err:  # bicubic, opset range, onnx not installed
        raise UsageError(one_line(err)) from None
    except (FileExistsError, RuntimeError, OSError) as err:
        error(one_line(err))
        return EXIT_FAILED
    if not args.quiet:
        name = model.metadata.get("name", model.arch)
        print(
            f"{output}: {name} ({model.arch}) x{model.scale}, ONNX opset {opset}, "
            f"{output.stat().st_size:,} bytes"
        )
    return EXIT_OK
