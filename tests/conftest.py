"""Shared fixtures: where the benchmark/training images live.

Real images are read from ``$SUPERRES_DATA`` or ``../shared/data`` beside the checkout and
are never copied into the repository; tests that need them skip when they are absent.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """The folder holding Set5, Set14, BSD100, T91, BSD200, Kodak24."""
    env = os.environ.get("SUPERRES_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def load_script(relative: str) -> ModuleType:
    """A script of the repository that is not a package module (``benchmarks/*.py``,
    ``tools/*.py``), imported from its file under a private module name, which stays in
    ``sys.modules`` (dataclasses and pickling look their module up there)."""
    path = REPO / relative
    name = "superres_" + relative.removesuffix(".py").replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def dataset(name: str) -> Path:
    """Path of one dataset folder; skips the calling test when it is absent."""
    path = data_root() / name
    if not path.is_dir():
        pytest.skip(f"dataset {name} not found under {data_root()} (set SUPERRES_DATA)")
    return path


@pytest.fixture
def set5() -> Path:
    return dataset("Set5")


def hide_shipped(monkeypatch: pytest.MonkeyPatch, name: str, scale: int) -> None:
    """Make this installation look as if ``name`` x``scale`` were not shipped (for the
    fallbacks and errors of an installation that lacks it), and forget the codec restorers
    already loaded."""
    from superres.codec import models as restorers
    from superres.weights import zoo

    shipped = zoo.shipped_weights()
    without = [w for w in shipped if (w.name, w.scale) != (name, scale)]
    assert len(without) == len(shipped) - 1, f"{name} x{scale} is not shipped"
    monkeypatch.setattr(zoo, "shipped_weights", lambda: without)
    monkeypatch.setattr(restorers, "_RESTORERS", {})
