"""superres: image super-resolution toolkit.

>>> import superres
>>> model = superres.load_model("bicubic", scale=2)
>>> big = superres.upscale(pil_image, model)          # doctest: +SKIP
>>> superres.upscale_file("in.jpg", "out.png", "fast")  # doctest: +SKIP

The public names are imported lazily so that ``import superres`` and the CLI's ``--help``
stay fast and submodules can be imported on their own.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "upscale": "superres.api",
    "upscale_file": "superres.api",
    "upscale_bytes": "superres.api",
    "upscale_burst": "superres.api",
    "upscale_burst_file": "superres.api",
    "upscale_video": "superres.api",
    "load_model": "superres.api",
    "clear_model_cache": "superres.api",
    "evaluate": "superres.api",
    "plan_jobs": "superres.api",
    "run_jobs": "superres.api",
    "Job": "superres.api",
    "JobResult": "superres.api",
    "ScaleError": "superres.api",
    "SRModel": "superres.models",
    "create_model": "superres.models",
    "list_models": "superres.models",
    "compress": "superres.codec",
    "decompress": "superres.codec",
    "SuperresError": "superres.errors",
    "ImageError": "superres.errors",
    "CheckpointError": "superres.errors",
    "ContainerError": "superres.errors",
    "ConfigError": "superres.errors",
    "TrainingError": "superres.errors",
    "DeviceError": "superres.errors",
    "FolderError": "superres.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'superres' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
