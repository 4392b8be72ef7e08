"""The one atomic write of the package (temporary file, fsync, rename, fsync the folder)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# --------------------------------------------------------------------------- atomic writes


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, overwrite: bool = True
) -> Path:
    """Write ``data`` to ``path`` durably and atomically (see :func:`atomic_write`).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    return atomic_write(path, lambda file: file.write(data), overwrite=overwrite)


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[BinaryIO], object],
    *,
    overwrite: bool = True,
) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it into place.

    The one atomic write of the package: the temporary file is flushed and fsynced, renamed
    onto ``path`` (or hard-linked, when ``overwrite`` is False, so that a file that appeared
    meanwhile is never replaced), and the folder is fsynced so the rename survives a crash.
    Readers never see a partial file; on any error the temporary file is removed and
    ``path`` is untouched. ``write`` may stream (outputs too large to hold twice).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: file exists")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o644)
            write(file)
            file.flush()
            os.fsync(file.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic and fails if the target appeared meanwhile
            except FileExistsError:
                raise FileExistsError(f"{path}: file exists") from None
            except OSError:  # file systems without hard links
                os.replace(tmp, path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened/fsynced)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # e.g. file systems that do not support fsync on folders
        pass
    finally:
        os.close(fd)
