"""The ``superres`` command line: :func:`main` and one module per subcommand."""

from superres.apps.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
