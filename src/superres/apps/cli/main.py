"""Command-line interface: ``superres <command> ...``.

:func:`main` assembles the parser from one module per subcommand (each has
``add_parser(subparsers)`` and ``run(args) -> int``) and is callable in-process with an argv
list (``main(["upscale", "in.png", "-o", "out.png"])``), so tests exercise exactly what users
run. Exit codes: 0 success, 1 some input failed (any :class:`superres.SuperresError`: one
line ``superres: error: <message>``), 2 usage error (one line too), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from superres import __version__
from superres.apps.cli import bench, compress, decompress, export, models, rd, upscale
from superres.apps.cli import eval as evaluate
from superres.apps.cli.common import EXIT_FAILED, EXIT_USAGE, Parser, UsageError, error

__all__ = ["build_parser", "main"]

#: The subcommands, in the order ``--help`` lists them (``train`` comes last).
COMMANDS = (upscale, evaluate, compress, decompress, rd, export, bench, models)


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    """``superres train``: from its own module once it exists, else from the training loop."""
    import importlib
    import importlib.util

    if importlib.util.find_spec("superres.apps.cli.train") is not None:
        importlib.import_module("superres.apps.cli.train").add_parser(subparsers)
        return
    from superres.training import loop as train  # the registration before the CLI split

    if not hasattr(train, "add_arguments"):  # mid-move: the loop no longer parses options
        return
    tr = subparsers.add_parser("train", help="train a model from a YAML config (torchrun for DDP)")
    train.add_arguments(tr)
    tr.set_defaults(func=train.run_cli)


def build_parser() -> argparse.ArgumentParser:
    """The ``superres`` parser with every subcommand."""
    parser = Parser(
        prog="superres", description="Image super-resolution: upscale, evaluate, train."
    )
    parser.add_argument("--version", action="version", version=f"superres {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    _add_train(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    from superres.errors import SuperresError

    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as err:
        error(err)
        return EXIT_USAGE
    except SuperresError as err:
        error(err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
