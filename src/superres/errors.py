"""One error hierarchy: every failure a user can cause is a :class:`SuperresError`.

``str(err)`` is always one line that names the file (or the option, or the setting) and
the problem, so the CLI and the service can print or return it unchanged::

    try:
        superres.upscale_file("in.png", "out.png", model)
    except superres.SuperresError as err:
        print(err)                      # "in.png: truncated PNG file"

Library messages never name CLI flags; the CLI and the service translate. The classes also
derive from the built-in exception that fits (``ValueError`` for bad input, ``RuntimeError``
for a state of the machine), so ``except ValueError`` keeps working.

This module is a leaf: it imports nothing from the package, and every layer may import it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ContainerError",
    "DeviceError",
    "FolderError",
    "ImageError",
    "SlowTileWarning",
    "SuperresError",
    "SuperresWarning",
    "TrainingError",
    "one_line",
    "read_problem",
]


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def read_problem(err: OSError, kind: str) -> str:
    """Why a file could not be opened or read, in the words every reader of this package
    uses: "no such file", "is a folder, not KIND", "permission denied" or "cannot read the
    file (REASON)". ``kind`` names what was expected ("an .srz file", "a checkpoint")."""
    if isinstance(err, FileNotFoundError):
        return "no such file"
    if isinstance(err, IsADirectoryError):
        return f"is a folder, not {kind}"
    if isinstance(err, PermissionError):
        return "permission denied"
    return f"cannot read the file ({err.strerror or err})"


class SuperresError(Exception):
    """Base of every error this package raises for input, files, settings or devices."""

    def __init__(self, message: object) -> None:
        super().__init__(one_line(message))


class ImageError(SuperresError):
    """A file could not be read or written; ``str()`` is one line naming the file."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = one_line(problem)
        super().__init__(f"{self.path}: {self.problem}")


class FolderError(SuperresError, FileNotFoundError):
    """A folder of images that is missing or holds no image; one line naming it."""


class CheckpointError(SuperresError, ValueError):
    """A file that is not a loadable superres checkpoint; one line with the path."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = one_line(problem)
        super().__init__(f"{path}: {self.problem}")


class ContainerError(SuperresError, ValueError):
    """An ``.srz`` file or codec payload is invalid; ``str()`` is one line."""


class ConfigError(SuperresError, ValueError):
    """An invalid setting (a training config key, an argument value); one line naming it."""


class TrainingError(SuperresError, RuntimeError):
    """Training cannot start or go on (bad data, a non-finite loss); one line."""


class DeviceError(SuperresError, RuntimeError, ValueError):
    """A device that was asked for is unknown (a ``ValueError``) or not available on this
    machine (a ``RuntimeError``)."""


class SuperresWarning(UserWarning):
    """Base of the warnings this package gives (the CLI prints them as one line)."""


class SlowTileWarning(SuperresWarning):
    """A tile size so small for the model's context that most of the work is context."""
