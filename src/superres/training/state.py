"""The training state: what ``--resume`` reads, and what initialises a fresh run.

``state.safetensors`` holds the model, EMA, optimiser state flattened into named tensors
(``optim.state.<param index>.<name>``), RNG states as uint8 tensors and, as JSON metadata,
the iteration, config, optimiser param groups, scheduler and progress counters. No pickle
anywhere; it is replaced atomically. :func:`init_from_checkpoint` starts a run from another
model's weights (every tensor whose name and shape match).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superres.training.config import ConfigError

if TYPE_CHECKING:  # pragma: no cover - torch is imported lazily: `superres --help` stays fast
    import torch
    from torch import Tensor, nn

    from superres.training.config import TrainConfig
    from superres.training.ema import EMA

__all__ = [
    "RESUMABLE_CHANGES",
    "STATE_FILE",
    "cpu_tensors",
    "diff_keys",
    "init_from_checkpoint",
    "load_training_state",
    "optimizer_from_flat",
    "optimizer_to_flat",
    "read_state_metadata",
    "rng_state",
    "save_training_state",
    "set_rng_state",
]

STATE_FILE = "state.safetensors"
STATE_FORMAT = "superres-train-state"
STATE_VERSION = 1

#: Config keys that may change when resuming (they do not affect the trained weights, except
#: ``iterations``, which also stretches a cosine schedule).
RESUMABLE_CHANGES = frozenset(
    {
        "iterations", "output", "log_every", "val_every", "checkpoint_every", "device",
        "threads", "tensorboard", "debug_nan_at", "data.val", "data.workers",
        "data.prefetch", "data.cache_dir",
    }
)  # fmt: skip


def init_from_checkpoint(module: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Load every tensor of ``path`` whose name and shape match ``module``'s.

    ``path`` is an inference checkpoint or a training state (whose EMA weights are used).

    A model with an ``init_unloaded_(names)`` method (LAFN: blocks added to a shallower
    network start as near-identity maps) may initialise the tensors the file lacks (not those
    of another shape) itself; it returns the names it set.

    Returns:
        ``(loaded, skipped)``: tensor names loaded, and ``"name (reason)"`` for the module's
        tensors not loaded (left at their initialisation, or as ``init_unloaded_`` set them).

    Raises:
        ConfigError: the file cannot be read.
    """
    import safetensors
    import safetensors.torch

    path = Path(path)
    try:
        tensors = safetensors.torch.load_file(str(path), device="cpu")
        with safetensors.safe_open(str(path), framework="pt") as file:
            meta = file.metadata() or {}
    except FileNotFoundError:
        raise ConfigError(f"init_from: {path}: no such file") from None
    except Exception as exc:  # safetensors raises its own error types
        raise ConfigError(f"init_from: {path}: not a safetensors file ({exc})") from None
    if meta.get("format") == STATE_FORMAT:
        prefix = "ema." if any(k.startswith("ema.") for k in tensors) else "model."
        tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    state = module.state_dict()
    loaded, skipped = [], []
    for name, tensor in state.items():
        other = tensors.get(name)
        if other is None:
            skipped.append(f"{name} (not in file)")
        elif other.shape != tensor.shape:
            skipped.append(
                f"{name} (shape {tuple(other.shape)} in file, {tuple(tensor.shape)} in model)"
            )
        else:
            state[name] = other.to(dtype=tensor.dtype)
            loaded.append(name)
    module.load_state_dict(state, strict=True)
    grow = getattr(module, "init_unloaded_", None)
    absent = [s.split(" ")[0] for s in skipped if s.endswith("(not in file)")]
    if grow is not None and absent:  # a model may start what the file lacks its own way
        grown = set(grow(absent))
        skipped = [
            s.replace("(not in file)", "(not in file: its block starts near-identity)")
            if s.split(" ")[0] in grown else s
            for s in skipped
        ]  # fmt: skip
    return loaded, skipped


# --------------------------------------------------------------------------- state files


def cpu_tensors(items: Iterator[tuple[str, Tensor]]) -> dict[str, Tensor]:
    """Contiguous CPU copies, each with its own storage (safetensors refuses shared ones)."""
    out, seen = {}, set()
    for name, tensor in items:
        tensor = tensor.detach().to("cpu").contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if tensor.numel() and pointer in seen:
            tensor = tensor.clone()
        seen.add(pointer)
        out[name] = tensor
    return out


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    import torch

    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in sd["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.state.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(
    optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        if name.startswith("optim.state."):
            index, key = name[len("optim.state.") :].split(".", 1)
            state.setdefault(int(index), {})[key] = tensor
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_state(device: torch.device) -> tuple[dict[str, Tensor], dict]:
    import numpy as np
    import torch

    tensors = {"rng.torch": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).view(np.uint8))
    version, internal, gauss = random.getstate()
    meta = {
        "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached": cached},
        "python": {"version": version, "state": list(internal), "gauss": gauss},
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, Tensor], meta: dict, device: torch.device) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(tensors["rng.torch"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    n = meta["numpy"]
    keys = tensors["rng.numpy"].numpy().view(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached"]))
    p = meta["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def read_state_metadata(path: str | Path) -> dict[str, Any]:
    """Decoded JSON metadata of a training-state file (iteration, config, progress...).

    Raises:
        ConfigError: not a training-state file.
    """
    import safetensors

    try:
        with safetensors.safe_open(str(path), framework="pt") as file:
            raw = file.metadata() or {}
    except Exception as exc:
        raise ConfigError(f"{path}: not a training state ({exc})") from None
    if raw.get("format") != STATE_FORMAT:
        raise ConfigError(f"{path}: not a superres training state")
    meta = {k: json.loads(v) for k, v in raw.items() if k != "format"}
    if meta.get("version", 0) > STATE_VERSION:
        raise ConfigError(f"{path}: training state version {meta['version']} is too new")
    return meta


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict) and not prefix.endswith("hparams"):
        keys = sorted(set(a) | set(b), key=str)
        out = []
        for k in keys:
            out += diff_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [prefix]


def save_training_state(
    path: Path,
    *,
    iteration: int,
    config: TrainConfig,
    model: nn.Module,
    ema: EMA | None,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    progress: dict[str, Any],
    world_size: int,
) -> None:
    """Write the training state of ``iteration`` to ``path`` (atomically)."""
    import safetensors.torch

    from superres.core.io import atomic_write_bytes
    from superres.training.config import config_to_dict
    from superres.training.schedule import learning_rate

    tensors: dict[str, Tensor] = {}
    tensors.update(cpu_tensors((f"model.{k}", v) for k, v in model.state_dict().items()))
    if ema is not None:
        tensors.update(cpu_tensors((f"ema.{k}", v) for k, v in ema.module.state_dict().items()))
    optim_tensors, optim_meta = optimizer_to_flat(optimizer)
    tensors.update(cpu_tensors(iter(optim_tensors.items())))
    rng_tensors, rng_meta = rng_state(device)
    tensors.update(cpu_tensors(iter(rng_tensors.items())))
    meta = {
        "version": STATE_VERSION,
        "iteration": iteration,
        "config": config_to_dict(config),
        "optimizer": optim_meta,
        "scheduler": {
            "name": config.schedule.name,
            "last_iteration": iteration,
            "lr": learning_rate(config, max(0, iteration - 1)),
        },
        "rng": rng_meta,
        "progress": progress,
        "world_size": world_size,
    }
    header = {k: json.dumps(v) for k, v in meta.items()}
    header["format"] = STATE_FORMAT
    data = safetensors.torch.save(tensors, metadata=header)
    atomic_write_bytes(path, data, overwrite=True)


def load_training_state(
    path: Path,
    meta: dict[str, Any],
    *,
    model: nn.Module,
    ema: EMA | None,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> tuple[int, dict[str, Any]]:
    """Restore model, EMA, optimiser and RNG states from ``path``; returns ``(iteration,
    progress counters)``."""
    import safetensors.torch

    tensors = safetensors.torch.load_file(str(path), device="cpu")

    def section(prefix: str) -> dict[str, Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    model.load_state_dict(section("model."), strict=True)
    if ema is not None:
        ema.module.load_state_dict(section("ema.") or section("model."), strict=True)
    optimizer_from_flat(optimizer, tensors, meta["optimizer"])
    set_rng_state(tensors, meta["rng"], device)
    return int(meta["iteration"]), dict(meta["progress"])
