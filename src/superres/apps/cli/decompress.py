"""``superres decompress``: restore an image from an ``.srz`` file."""

from __future__ import annotations

import argparse

from superres.apps.cli.common import EXIT_FAILED, EXIT_OK, add_threads, error

__all__ = ["add_parser", "run"]

EPILOG = """\
example:
  superres decompress photo.srz -o restored.png
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    de = subparsers.add_parser(
        "decompress", help="restore an image from an .srz file",
        description="Decode an .srz file and restore it to full size with the model it names.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    de.add_argument("input", metavar="INPUT", help=".srz file")
    de.add_argument("-o", "--output", required=True, help="output image (format from extension)")
    de.add_argument("--overwrite", action="store_true", help="replace an existing output")
    de.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: automatic)")
    add_threads(de)
    de.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    de.set_defaults(func=run)
    return de


def run(args: argparse.Namespace) -> int:
    from superres import codec
    from superres.core import io
    from superres.inference import engine

    engine.set_threads(args.threads)
    try:
        image = codec.decompress_file(
            args.input, args.output, overwrite=args.overwrite, device=args.device
        )
    except (io.ImageError, codec.ContainerError) as err:
        error(str(err))
        return EXIT_FAILED
    if not args.quiet:
        h, w = image.pixels.shape[:2]
        print(f"{args.output}: {w}x{h}")
    return EXIT_OK
