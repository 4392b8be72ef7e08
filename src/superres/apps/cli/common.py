"""What the subcommands share: exit codes, the one-line error, argument types, options.

Argument types raise :class:`argparse.ArgumentTypeError` with a message that names what was
expected and what was given (``--threads: expected a positive integer, got 'abc'``), and the
parser (:class:`Parser`) turns every usage error into one line instead of a usage block.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from superres.errors import one_line

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Parser",
    "UsageError",
    "add_model_options",
    "add_quiet",
    "add_threads",
    "check_output_file",
    "cli_message",
    "error",
    "int_option",
    "non_negative_int",
    "one_line",
    "positive_float",
    "positive_int",
    "progress_enabled",
    "scale_choice",
    "warning",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: The help text of ``--model`` (upscale, eval).
MODEL_HELP = (
    "shipped model name (fast, quality, ...; see 'superres models'), 'bicubic' or a "
    ".safetensors checkpoint (default: quality, the best shipped tier)"
)


class UsageError(Exception):
    """Bad command-line usage: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (:class:`UsageError`), not a block.

    ``--help`` and ``--version`` still print and exit as usual.
    """

    def error(self, message: str) -> NoReturn:
        text = message[len("argument ") :] if message.startswith("argument ") else message
        raise UsageError(f"{text} (see '{self.prog} --help')")


#: Library phrases -> what a command-line user does about them (library messages never
#: name flags; the CLI adds them).
_HINTS = {
    "output exists": "output exists (use --overwrite to replace it)",
    "output exists (pass overwrite=True to replace it)": (
        "output exists (use --overwrite to replace it)"
    ),
}


def cli_message(message: object) -> str:
    """A library message in command-line terms, as one line (an ``output exists`` error gets
    ``(use --overwrite to replace it)``)."""
    text = one_line(message)
    for phrase, hint in _HINTS.items():
        if text.endswith(f": {phrase}") or text == phrase:
            return text[: len(text) - len(phrase)] + hint
    return text


def error(message: object) -> None:
    """Print ``superres: error: <message>`` as one line on stderr (see :func:`cli_message`)."""
    print(f"superres: error: {cli_message(message)}", file=sys.stderr)


def warning(message: object) -> None:
    """Print ``superres: warning: <message>`` as one line on stderr."""
    print(f"superres: warning: {one_line(message)}", file=sys.stderr)


def progress_enabled(quiet: bool = False) -> bool:
    """Whether to draw progress bars: not ``--quiet`` and stderr is a terminal."""
    if quiet:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


# --------------------------------------------------------------------------- argument types


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (``--threads``)."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (``--tile`` where 0 means no tiling, ``--overlap``)."""
    return _int_at_least(text, 0, "a non-negative integer")


def positive_float(text: str) -> float:
    """A finite number > 0 (``--outscale``, ``--target-bpp``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'")
    return value


def scale_choice(text: str) -> int:
    """A model scale: 2, 3 or 4."""
    if text.strip() not in ("2", "3", "4"):
        raise argparse.ArgumentTypeError(f"expected 2, 3 or 4, got '{text}'")
    return int(text)


def check_output_file(path: str | os.PathLike[str] | None, option: str) -> None:
    """A file a command writes at the end (``--json``, ``--plot``): refuse, before any work,
    a folder or a missing parent folder."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{option} {target}: is a folder; give a file name")
    if not target.parent.is_dir():
        raise UsageError(f"{option} {target}: folder {target.parent} does not exist")


def int_option(text: str | None, option: str) -> int | None:
    """Parse an integer option inside a command, so a bad value is a one-line usage error."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{option} must be an integer, got '{text}'") from None


# --------------------------------------------------------------------------- options


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=positive_int, default=None, metavar="N",
        help="CPU threads (default: torch's choice)",
    )  # fmt: skip


def add_quiet(parser: argparse.ArgumentParser, help: str = "no progress output") -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help=help)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--device``, ``--threads``, ``--tile`` and ``--quiet``."""
    parser.add_argument("--model", "-m", default=None, metavar="MODEL", help=MODEL_HELP)
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or mps (default: automatic)"
    )
    add_threads(parser)
    parser.add_argument(
        "--tile", type=non_negative_int, default=None, metavar="T",
        help="tile size in input pixels (default: automatic, 0: no tiling)",
    )  # fmt: skip
    add_quiet(parser, "no progress output (bars are drawn only when stderr is a terminal)")
