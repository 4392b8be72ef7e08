"""Shared fixtures: where the benchmark/training images live.

Real images are read from ``$SUPERRES_DATA`` or ``../shared/data`` beside the checkout and
are never copied into the repository; tests that need them skip when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """The folder holding Set5, Set14, BSD100, T91, BSD200, Kodak24."""
    env = os.environ.get("SUPERRES_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def dataset(name: str) -> Path:
    """Path of one dataset folder; skips the calling test when it is absent."""
    path = data_root() / name
    if not path.is_dir():
        pytest.skip(f"dataset {name} not found under {data_root()} (set SUPERRES_DATA)")
    return path


@pytest.fixture
def set5() -> Path:
    return dataset("Set5")
