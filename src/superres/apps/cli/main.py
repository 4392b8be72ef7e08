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
import warnings
from collections.abc import Sequence

from superres import __version__
from superres.apps.cli import (
    bench,
    burst,
    compress,
    decompress,
    explain,
    export,
    models,
    rd,
    regions,
    serve,
    train,
    upscale,
    video,
)
from superres.apps.cli import eval as evaluate
from superres.apps.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    Parser,
    UsageError,
    error,
    warning,
)

__all__ = ["build_parser", "main"]

#: The subcommands, in the order ``--help`` lists them.
COMMANDS = (
    upscale,
    evaluate,
    compress,
    decompress,
    rd,
    export,
    bench,
    models,
    train,
    regions,
    explain,
    burst,
    video,
    serve,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``superres`` parser with every subcommand."""
    parser = Parser(
        prog="superres", description="Image super-resolution: upscale, evaluate, train."
    )
    parser.add_argument("--version", action="version", version=f"superres {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status. The package's own warnings print as one
    ``superres: warning:`` line each (once per message), others as Python prints them."""
    from superres.errors import SuperresError, SuperresWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", SuperresWarning)  # every call, deduplicated below
            show, shown = warnings.showwarning, set()

            def one_line(message, category, filename, lineno, file=None, line=None):
                if issubclass(category, SuperresWarning):
                    if str(message) not in shown:
                        shown.add(str(message))
                        warning(message)
                else:
                    show(message, category, filename, lineno, file, line)

            warnings.showwarning = one_line
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
