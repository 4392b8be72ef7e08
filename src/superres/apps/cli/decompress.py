"""``superres decompress``: restore an image from an ``.srz`` file."""

from __future__ import annotations

import argparse

from superres.apps.cli.common import EXIT_OK, add_threads

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  superres decompress photo.srz -o restored.png
  superres decompress photo.srz -o out/restored.webp --device cpu --overwrite
"""


DESCRIPTION = """\
Decode an .srz file and restore it to full size with the model it names.

The output is checked (extension, existing file, folders) before the file is decoded;
its folder is created if needed, and nothing is written unless decoding succeeds.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    de = subparsers.add_parser(
        "decompress", help="restore an image from an .srz file",
        description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    de.add_argument("input", metavar="INPUT", help=".srz file")
    de.add_argument("-o", "--output", required=True,
                    help="output image; the format comes from its extension (.png, .jpg, "
                         ".webp, .avif, .tif, ...)")  # fmt: skip
    de.add_argument("--overwrite", action="store_true", help="replace an existing output")
    de.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: automatic)")
    add_threads(de)
    de.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    de.set_defaults(func=run)
    return de


def run(args: argparse.Namespace) -> int:
    from superres import codec
    from superres.inference import engine

    engine.set_threads(args.threads)
    # Device, output name, existing output and folders are checked before the decode; every
    # failure is a SuperresError that main prints as one line (exit 1).
    image = codec.decompress_file(
        args.input, args.output, overwrite=args.overwrite, device=args.device
    )
    if not args.quiet:
        h, w = image.pixels.shape[:2]
        print(f"{args.output}: {w}x{h}")
    return EXIT_OK
