"""The weights shipped inside the package (``superres/weights``) and name resolution.

Shipped files are named ``<name>_x<scale>.safetensors`` (for example ``quality_x4``); each
has a model card ``<name>.md`` beside it. ``resolve`` turns what a user types after
``--model`` into a loaded :class:`~superres.models.SRModel`:

1. an existing file path -> that checkpoint;
2. a shipped name (``fast``, ``quality``, ...) -> its weights at the requested scale;
3. ``bicubic`` or ``wiener`` -> a parameter-free baseline at the requested scale
   (``PARAMETER_FREE``);
4. ``adaptive`` -> the region-adaptive pseudo-model (:mod:`superres.models.adaptive`) at a
   scale listed in ``adaptive.json``: its member tiers and the thresholds chosen for them on
   training images.

A registered architecture without shipped weights is an error: random weights are never
what a user wants from ``upscale``. Use :func:`superres.models.create_model` to build one
for training.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from superres.models import SRModel, create_model, list_models
from superres.weights.checkpoint import load_checkpoint, read_checkpoint_metadata

__all__ = [
    "DEFAULT_MODEL",
    "WEIGHTS_DIR",
    "ShippedWeights",
    "adaptive_config",
    "resolve",
    "shipped_weights",
]

WEIGHTS_DIR = Path(__file__).parent
# The default of `superres upscale`, `superres eval` and the Python API: the best shipped
# tier when one exists, else the bicubic baseline.
_PREFERRED_DEFAULTS = ("quality", "fast", "bicubic")
_NAME_RE = re.compile(r"^(?P<name>[a-z0-9_]+?)_x(?P<scale>\d+)\.safetensors$")


@dataclass(frozen=True)
class ShippedWeights:
    """One weights file inside the package."""

    name: str
    scale: int
    path: Path

    def metadata(self) -> dict:
        return read_checkpoint_metadata(self.path)


def shipped_weights() -> list[ShippedWeights]:
    """All weights files shipped in the package, sorted by name then scale."""
    found = []
    if WEIGHTS_DIR.is_dir():
        for path in WEIGHTS_DIR.iterdir():
            match = _NAME_RE.match(path.name)
            if match:
                found.append(ShippedWeights(match["name"], int(match["scale"]), path))
    return sorted(found, key=lambda w: (w.name, w.scale))


def default_model_name() -> str:
    """The name ``model=None`` stands for."""
    names = {w.name for w in shipped_weights()}
    return next(n for n in _PREFERRED_DEFAULTS if n in names or n == "bicubic")


DEFAULT_MODEL = default_model_name()

#: Parameter-free pseudo-models ``resolve`` builds at any scale (no weights file).
PARAMETER_FREE = ("bicubic", "wiener")

#: The region-adaptive model's settings per scale (written by tools/calibrate_adaptive.py).
ADAPTIVE_FILE = WEIGHTS_DIR / "adaptive.json"


def adaptive_config() -> dict[str, dict[str, Any]]:
    """``adaptive.json``: ``{"4": {"members": [...], "thresholds": [...], "tile": T,
    "overlap": O, "calibration": {...}}, ...}`` for every scale the adaptive model has
    (empty when the file is absent)."""
    if not ADAPTIVE_FILE.is_file():
        return {}
    return json.loads(ADAPTIVE_FILE.read_text(encoding="utf-8"))


def _adaptive(scale: int) -> SRModel:
    from superres.models.adaptive import AdaptiveSR

    config = adaptive_config()
    entry = config.get(str(scale))
    if entry is None:
        if not config:
            raise ValueError("model 'adaptive' is not shipped yet: no member networks are "
                             "calibrated for it at any scale (see README, Regions and "
                             "attention)")  # fmt: skip
        have = ", ".join(f"x{s}" for s in sorted(config, key=int))
        raise ValueError(f"model 'adaptive' has no x{scale} settings (available: {have})")
    members = [resolve(name, scale) for name in entry["members"]]
    module = AdaptiveSR(
        [m.module.eval() for m in members], entry["thresholds"], tile=entry["tile"],
        overlap=entry["overlap"],
    )  # fmt: skip
    hparams = {k: entry[k] for k in ("members", "thresholds", "tile", "overlap")}
    return SRModel(
        module=module.eval(), arch="adaptive", scale=scale, hparams={**hparams, "scale": scale},
        metadata={"name": "adaptive", "calibration": entry.get("calibration", {})},
        tiling="approximate", receptive_field=module.receptive_field,
    )  # fmt: skip


def resolve(name_or_path: str | Path | None = None, scale: int | None = None) -> SRModel:
    """Load a model by shipped name, checkpoint path or ``bicubic``.

    Args:
        name_or_path: Shipped name, path to a ``.safetensors`` checkpoint, or ``bicubic``.
            None means the default model.
        scale: Wanted scale. Required to pick among a shipped name's scales (default 4);
            for a checkpoint it must match the file's scale if given.

    Raises:
        ValueError: unknown name, unavailable scale, or a checkpoint of another scale.
    """
    if name_or_path is None:
        name_or_path = default_model_name()
    text = str(name_or_path)
    if text == "adaptive":
        return _adaptive(4 if scale is None else int(scale))
    path = Path(text).expanduser()
    named = text in PARAMETER_FREE or any(w.name == text for w in shipped_weights())
    # A shipped name wins over a same-named file or folder in the working directory.
    if not named and (path.suffix == ".safetensors" or path.exists() or "/" in text):
        model = load_checkpoint(path)
        if scale is not None and model.scale != scale:
            raise ValueError(f"{path}: the model is x{model.scale}, but x{scale} was asked for")
        return model
    wanted = 4 if scale is None else int(scale)
    shipped = [w for w in shipped_weights() if w.name == text]
    if shipped:
        for weights in shipped:
            if weights.scale == wanted:
                model = load_checkpoint(weights.path)
                model.metadata.setdefault("name", text)
                return model
        have = ", ".join(f"x{w.scale}" for w in shipped)
        raise ValueError(f"model '{text}' has no x{wanted} weights (available: {have})")
    if text in PARAMETER_FREE:
        return SRModel.from_module(create_model(text, scale=wanted), metadata={"name": text})
    if text in list_models():
        raise ValueError(
            f"'{text}' is an architecture without shipped weights; pass a trained "
            f"checkpoint (.safetensors) or one of: {', '.join(available_names())}"
        )
    raise ValueError(
        f"unknown model '{text}': not a file, and not one of: {', '.join(available_names())}"
    )


def available_names() -> list[str]:
    """Names ``resolve`` accepts besides file paths."""
    adaptive = {"adaptive"} if adaptive_config() else set()
    return sorted({w.name for w in shipped_weights()} | set(PARAMETER_FREE) | adaptive)
