"""Training: ``superres train --config FILE.yaml [--set key=value ...] [--resume]``.

One loop for one process or many (DDP)::

    config (YAML + --set) -> TrainConfig -> run folder (config.yaml)
    HR folders -> data.PatchDataset -> DataLoader(workers) -> model (bf16 autocast optional)
      -> loss -> backward -> [clip] -> Adam/AdamW (warm-up + cosine/multistep lr) -> EMA
      -> every log_every:        log.jsonl (+ TensorBoard), progress bar
      -> every val_every:        EMA weights -> evaluate_folder(val) -> last/best.safetensors
      -> every checkpoint_every: state.safetensors (atomic; what --resume reads)

The run folder (``output``) holds:

* ``config.yaml``: the resolved config.
* ``log.jsonl``: one JSON object per logged iteration: ``iteration``, ``loss`` (mean since
  the previous entry), ``lr``, ``grad_norm``, ``data_wait`` and ``step_time`` (mean seconds
  per iteration spent waiting for data, and in the whole iteration), ``elapsed``, and ``val``
  (``{dataset: {psnr, ssim}}``) when validated at that iteration.
* ``last.safetensors`` / ``best.safetensors``: inference checkpoints of the EMA weights
  (:func:`superres.weights.checkpoint.save_checkpoint`; ``superres upscale -m best.safetensors``),
  with provenance (config, training folders, iterations, wall time, hardware) and metrics
  (the validation scores). ``best`` is the highest validation PSNR so far.
* ``state.safetensors``: the training state: model, EMA, optimizer state flattened into
  named tensors (``optim.state.<param index>.<name>``), RNG states as uint8 tensors, and as
  JSON metadata the iteration, config, optimizer param groups, scheduler and progress
  counters. No pickle anywhere. It is replaced atomically, so killing the process at any
  moment leaves the previous one intact.

Determinism: every training patch is a pure function of ``(seed, iteration, position in the
global batch)`` (see :mod:`superres.training.data`) and the learning rate a pure function of the
iteration, so ``--resume`` continues bit-for-bit on the same hardware and thread count
(CPU; on GPU up to the non-determinism of the kernels), and the number of DataLoader
workers never changes the result. A non-finite loss or gradient stops training with a
one-line error (exit status 1) before the optimiser step, leaving the last checkpoints
untouched.

Distributed training (paste into README)
-----------------------------------------

``torchrun`` starts one process per GPU (or CPU process group); each process reads its
share of every global batch, so ``data.batch`` is the global batch whatever the number of
processes (it must be divisible by it). Process 0 logs, validates and writes checkpoints.

One machine, 4 GPUs::

    torchrun --standalone --nproc_per_node 4 -m superres train --config configs/x.yaml

Several machines (2 nodes x 8 GPUs here): run the same command on every node, with the same
``--master_addr`` (the address of node 0, reachable from the others) and ``--master_port``,
and each node's own ``--node_rank``::

    # on node 0 (10.0.0.1)
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 \\
        --master_addr 10.0.0.1 --master_port 29500 -m superres train --config configs/x.yaml
    # on node 1
    torchrun --nnodes 2 --node_rank 1 --nproc_per_node 8 \\
        --master_addr 10.0.0.1 --master_port 29500 -m superres train --config configs/x.yaml

The training folders must be readable at the same paths on every node. ``output`` should be
on a filesystem shared by all nodes: process 0 writes there, and on ``--resume`` every
process reads ``state.safetensors`` from it. GPUs communicate with NCCL, CPU processes with
gloo. Add ``--resume`` to the same command to continue after a failure (with no state file
yet it simply starts), which makes it safe to use in preemptible job scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superres.errors import TrainingError
from superres.training.config import (
    ConfigError,
    LossConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
)

if TYPE_CHECKING:  # pragma: no cover - torch is imported lazily: `superres --help` stays fast
    import torch
    from torch import Tensor, nn

__all__ = [
    "ConfigError",
    "TrainingError",
    "add_arguments",
    "init_from_checkpoint",
    "learning_rate",
    "make_loss",
    "read_state_metadata",
    "run_cli",
    "train",
]

STATE_FILE = "state.safetensors"
CONFIG_FILE = "config.yaml"
LOG_FILE = "log.jsonl"
LAST_FILE = "last.safetensors"
BEST_FILE = "best.safetensors"
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


# --------------------------------------------------------------------------- pieces


def learning_rate(config: TrainConfig, iteration: int) -> float:
    """Learning rate of the optimiser step taken at ``iteration`` (0-based).

    Linear warm-up from ``lr / warmup`` to ``lr`` over the first ``schedule.warmup`` steps,
    then constant, multi-step (``lr * gamma ** (milestones passed)``) or cosine (from ``lr`` to
    ``schedule.min_lr`` at the last iteration).
    """
    base, s = config.optim.lr, config.schedule
    if iteration < s.warmup:
        return base * (iteration + 1) / s.warmup
    if s.name == "constant":
        return base
    if s.name == "multistep":
        return base * s.gamma ** sum(iteration >= m for m in s.milestones)
    span = max(1, config.iterations - 1 - s.warmup)
    progress = min(1.0, (iteration - s.warmup) / span)
    return s.min_lr + (base - s.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_loss(config: LossConfig) -> Callable[[Tensor, Tensor], Tensor]:
    """The pixel loss ``f(sr, hr) -> scalar`` (mean over all elements)."""
    import torch
    from torch import nn

    if config.name == "l1":
        return nn.functional.l1_loss
    if config.name == "mse":
        return nn.functional.mse_loss
    eps2 = config.eps**2

    def charbonnier(sr: Tensor, hr: Tensor) -> Tensor:
        return torch.sqrt((sr - hr).square() + eps2).mean()

    return charbonnier


class EMA:
    """Exponential moving average of a module's parameters (buffers are copied).

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the
    average forgets the random initial weights quickly (with a constant 0.999 they would
    still weigh 37 % after 1000 iterations and spoil early validation).
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def update(self, module: nn.Module, step: int | None = None) -> None:
        """Blend ``module`` in; ``step`` is the number of updates before this one."""
        import torch

        decay = self.decay if step is None else min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            self._update(module, decay)

    def _update(self, module: nn.Module, decay: float) -> None:
        for ema, p in zip(self.module.parameters(), module.parameters(), strict=True):
            ema.lerp_(p.detach(), 1.0 - decay)
        for ema, b in zip(self.module.buffers(), module.buffers(), strict=True):
            ema.copy_(b)


def init_from_checkpoint(module: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Load every tensor of ``path`` whose name and shape match ``module``'s.

    ``path`` is an inference checkpoint or a training state (whose EMA weights are used).

    Returns:
        ``(loaded, skipped)``: tensor names loaded, and ``"name (reason)"`` for the module's
        tensors left at their initialisation.

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
    return loaded, skipped


# --------------------------------------------------------------------------- state files


def _cpu_tensors(items: Iterator[tuple[str, Tensor]]) -> dict[str, Tensor]:
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


def _optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
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


def _optimizer_from_flat(
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


def _rng_state(device: torch.device) -> tuple[dict[str, Tensor], dict]:
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


def _set_rng_state(tensors: dict[str, Tensor], meta: dict, device: torch.device) -> None:
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


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict) and not prefix.endswith("hparams"):
        keys = sorted(set(a) | set(b), key=str)
        out = []
        for k in keys:
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [prefix]


# --------------------------------------------------------------------------- distributed


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.enabled:
            dist.barrier()


def _setup_distributed(config: TrainConfig) -> tuple[_Dist, torch.device]:
    """Join the process group started by torchrun (if any) and pick this process's device."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = _Dist()
    if world > 1:
        info = _Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
        if config.data.batch % world:
            raise ConfigError(
                f"data.batch: the global batch {config.data.batch} is not divisible by the "
                f"{world} processes"
            )
    from superres.inference import engine

    if info.enabled and config.device in ("auto", "cuda") and torch.cuda.is_available():
        device = torch.device("cuda", info.local_rank)
    else:
        try:
            device = engine.select_device(config.device)
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"device: {str(exc).splitlines()[0]}") from None
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def _hardware(device: torch.device, world_size: int) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "device": device.type,
        "processes": world_size,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# --------------------------------------------------------------------------- the loop


@dataclass
class _Progress:
    """Counters kept in the training state."""

    best_psnr: float | None = None
    best_iteration: int | None = None
    elapsed: float = 0.0
    val: dict[str, Any] = field(default_factory=dict)


class _Trainer:
    def __init__(
        self, config: TrainConfig, info: _Dist, device: torch.device, progress: bool
    ) -> None:
        self.cfg, self.dist, self.device, self.show_progress = config, info, device, progress
        self.run_dir = Path(config.output)
        self.state_path = self.run_dir / STATE_FILE
        self.progress = _Progress()
        self.tb = None

    # ---- messages and files (process 0)

    def say(self, message: str) -> None:
        if self.dist.main and self.show_progress:
            from tqdm import tqdm

            tqdm.write(f"superres train: {message}", file=sys.stderr)

    def write_log(self, entry: dict[str, Any]) -> None:
        with (self.run_dir / LOG_FILE).open("a", encoding="utf-8") as file:
            file.write(json.dumps(entry) + "\n")
        if self.tb is not None:
            it = entry["iteration"]
            for key in ("loss", "lr", "grad_norm", "data_wait", "step_time"):
                if key in entry:
                    self.tb.add_scalar(f"train/{key}", entry[key], it)
            for name, scores in entry.get("val", {}).items():
                for key, value in scores.items():
                    self.tb.add_scalar(f"val/{name}/{key}", value, it)

    def _truncate_log(self, iteration: int) -> None:
        """Drop log entries of iterations after the resumed state (from a killed run)."""
        path = self.run_dir / LOG_FILE
        if not path.is_file():
            return
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["iteration"] <= iteration:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by the kill
        from superres.core.io import atomic_write_bytes

        data = "".join(f"{line}\n" for line in keep).encode()
        atomic_write_bytes(path, data, overwrite=True)

    # ---- setup

    def prepare_run_folder(self, resume: bool) -> dict[str, Any] | None:
        """Check the run folder; returns the state metadata when resuming from one."""
        meta = None
        if self.state_path.is_file():
            if not resume:
                raise ConfigError(
                    f"output: {self.run_dir} already holds a training run; pass --resume to "
                    "continue it or choose another output folder"
                )
            meta = read_state_metadata(self.state_path)
            saved = config_to_dict(config_from_dict(meta["config"]))
            diff = [
                k for k in _diff_keys(saved, config_to_dict(self.cfg)) if k not in RESUMABLE_CHANGES
            ]
            if diff:
                raise ConfigError(
                    f"cannot resume {self.run_dir}: the config differs from the saved one in "
                    f"{', '.join(diff)} (only {', '.join(sorted(RESUMABLE_CHANGES))} may change)"
                )
        if self.dist.main:
            from superres.core.io import atomic_write_bytes

            self.run_dir.mkdir(parents=True, exist_ok=True)
            text = dump_config(self.cfg).encode()
            atomic_write_bytes(self.run_dir / CONFIG_FILE, text, overwrite=True)
            if meta is None:
                with contextlib.suppress(FileNotFoundError):
                    (self.run_dir / LOG_FILE).unlink()
            else:
                self._truncate_log(meta["iteration"])
        return meta

    def load_data(self):
        from superres.training import data

        d, scale = self.cfg.data, self.cfg.model.scale

        def load():
            try:
                return data.load_pairs(d.train, scale, d.patch, cache_dir=d.cache_dir)
            except (FileNotFoundError, ValueError) as exc:
                raise ConfigError(f"data.train: {str(exc).splitlines()[0]}") from None

        if d.cache_dir is not None and self.dist.enabled:  # process 0 fills the cache first
            if self.dist.main:
                pairs, skipped = load()
            self.dist.barrier()
            if not self.dist.main:
                pairs, skipped = load()
        else:
            pairs, skipped = load()
        if d.val is not None and not Path(d.val).is_dir():
            raise ConfigError(f"data.val: {d.val}: not a folder")
        self.say(
            f"{len(pairs)} training images from {', '.join(d.train)}"
            + (f"; skipped {len(skipped)} smaller than the patch: {', '.join(skipped[:5])}"
               + (" ..." if len(skipped) > 5 else "") if skipped else "")
        )  # fmt: skip
        self.num_images = len(pairs)
        return data.PatchDataset(pairs, scale, d.patch, d.batch, self.cfg.seed, d.augment,
                                 degradation=d.degrade.degradation())  # fmt: skip

    def build_model(self, fresh: bool) -> nn.Module:
        import numpy as np
        import torch

        from superres.models import create_model

        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # restored from the training state when resuming
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        try:
            module = create_model(cfg.model.arch, scale=cfg.model.scale, **cfg.model.hparams)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model: {exc}") from None
        self.init_report: dict[str, Any] | None = None
        if cfg.init_from is not None and fresh:
            loaded, skipped = init_from_checkpoint(module, cfg.init_from)
            self.init_report = {"path": cfg.init_from, "loaded": len(loaded), "skipped": skipped}
            self.say(
                f"init_from {cfg.init_from}: loaded {len(loaded)} of "
                f"{len(loaded) + len(skipped)} tensors"
                + (f"; skipped {', '.join(skipped)}" if skipped else "")
            )
        if cfg.channels_last:
            return module.to(self.device, memory_format=torch.channels_last)
        return module.to(self.device)

    def make_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        import torch

        o = self.cfg.optim
        cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        return cls(
            module.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
        )

    # ---- checkpoints

    def provenance(self, iteration: int) -> dict[str, Any]:
        return {
            "config": config_to_dict(self.cfg),
            "train_data": [str(Path(p).resolve()) for p in self.cfg.data.train],
            "train_images": self.num_images,
            "iterations": iteration,
            "wall_time_s": round(self.elapsed(), 1),
            "hardware": _hardware(self.device, self.dist.world_size),
            "weights": "ema" if self.ema is not None else "raw",
            "init_from": self.init_report,
        }

    def export(self, iteration: int, best: bool) -> None:
        from superres.weights.checkpoint import save_checkpoint

        module = self.export_module
        kwargs = {"provenance": self.provenance(iteration), "metrics": self.progress.val}
        save_checkpoint(self.run_dir / LAST_FILE, module, **kwargs)
        if best:
            save_checkpoint(self.run_dir / BEST_FILE, module, **kwargs)

    def save_state(self, iteration: int) -> None:
        import safetensors.torch

        from superres.core.io import atomic_write_bytes

        tensors: dict[str, Tensor] = {}
        tensors.update(_cpu_tensors((f"model.{k}", v) for k, v in self.model.state_dict().items()))
        if self.ema is not None:
            ema_state = self.ema.module.state_dict().items()
            tensors.update(_cpu_tensors((f"ema.{k}", v) for k, v in ema_state))
        optim_tensors, optim_meta = _optimizer_to_flat(self.optimizer)
        tensors.update(_cpu_tensors(iter(optim_tensors.items())))
        rng_tensors, rng_meta = _rng_state(self.device)
        tensors.update(_cpu_tensors(iter(rng_tensors.items())))
        progress = {
            "best_psnr": self.progress.best_psnr,
            "best_iteration": self.progress.best_iteration,
            "elapsed": self.elapsed(),
            "val": self.progress.val,
        }
        meta = {
            "version": STATE_VERSION,
            "iteration": iteration,
            "config": config_to_dict(self.cfg),
            "optimizer": optim_meta,
            "scheduler": {
                "name": self.cfg.schedule.name,
                "last_iteration": iteration,
                "lr": learning_rate(self.cfg, max(0, iteration - 1)),
            },
            "rng": rng_meta,
            "progress": progress,
            "world_size": self.dist.world_size,
        }
        header = {k: json.dumps(v) for k, v in meta.items()}
        header["format"] = STATE_FORMAT
        data = safetensors.torch.save(tensors, metadata=header)
        atomic_write_bytes(self.state_path, data, overwrite=True)

    def load_state(self, meta: dict[str, Any]) -> int:
        import safetensors.torch

        tensors = safetensors.torch.load_file(str(self.state_path), device="cpu")

        def section(prefix: str) -> dict[str, Tensor]:
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.model.load_state_dict(section("model."), strict=True)
        if self.ema is not None:
            ema_state = section("ema.") or section("model.")
            self.ema.module.load_state_dict(ema_state, strict=True)
        _optimizer_from_flat(self.optimizer, tensors, meta["optimizer"])
        _set_rng_state(tensors, meta["rng"], self.device)
        p = meta["progress"]
        self.progress = _Progress(p["best_psnr"], p["best_iteration"], p["elapsed"], p["val"])
        return int(meta["iteration"])

    # ---- validation

    def validate(self) -> dict[str, dict[str, float]]:
        from superres.evaluation import evaluate_folder
        from superres.models import SRModel

        module = self.export_module
        was_training = module.training
        module.eval()
        try:
            result = evaluate_folder(SRModel.from_module(module), self.cfg.data.val)
        finally:
            module.train(was_training)
        return {Path(self.cfg.data.val).name: {"psnr": result.psnr, "ssim": result.ssim}}

    def elapsed(self) -> float:
        return self.progress.elapsed + time.perf_counter() - self.start_time

    # ---- main

    def setup(self, resume: bool) -> int:
        """Run folder, data, model, EMA, optimiser (and the resumed state); the first iteration."""
        cfg, info = self.cfg, self.dist
        self.start_time = time.perf_counter()
        meta = None
        try:
            meta = self.prepare_run_folder(resume) if info.main else None
        finally:
            info.barrier()
        if not info.main and self.state_path.is_file() and resume:
            meta = read_state_metadata(self.state_path)
        self.dataset = self.load_data()
        self.model = self.build_model(fresh=meta is None)
        self.ema = EMA(self.model, cfg.ema.decay) if cfg.ema.decay > 0 else None
        self.export_module = self.ema.module if self.ema is not None else self.model
        self.optimizer = self.make_optimizer(self.model)
        start = 0
        if meta is not None:
            start = self.load_state(meta)
            self.start_time = time.perf_counter()
            self.say(f"resuming {self.run_dir} at iteration {start}")
        if info.main and cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=start)
            except ImportError:  # tensorboard is optional
                self.tb = None
        num_params = sum(p.numel() for p in self.model.parameters())
        processes = f" x {info.world_size} processes" if info.enabled else ""
        self.say(
            f"{cfg.model.arch} x{cfg.model.scale} ({num_params:,} parameters) on {self.device}"
            f"{processes}; batch {cfg.data.batch} of {cfg.data.patch}x{cfg.data.patch} LR "
            f"patches; run folder {self.run_dir}"
        )
        return start

    def check_finite(self, loss: float, grad_norm: float, iteration: int) -> None:
        """Raise TrainingError (before the optimiser step) on a non-finite loss or gradient."""
        if math.isfinite(loss) and math.isfinite(grad_norm):
            return
        what, value = ("loss", loss) if not math.isfinite(loss) else ("gradient norm", grad_norm)
        if self.state_path.is_file():
            saved = read_state_metadata(self.state_path)["iteration"]
            last = f"last good training state: {self.state_path} (iteration {saved})"
        else:
            last = "no training state was written yet"
        raise TrainingError(
            f"{what} is {value} at iteration {iteration + 1}; training stopped "
            f"({last}; try a lower optim.lr or set optim.grad_clip)"
        )

    def after_step(self, iteration: int, entry: dict[str, Any]) -> None:
        """Process 0: validate, export, log and checkpoint as the intervals say."""
        cfg = self.cfg
        last_step = iteration == cfg.iterations
        validate = cfg.data.val is not None and (
            last_step or (cfg.val_every > 0 and iteration % cfg.val_every == 0)
        )
        checkpoint = last_step or iteration % cfg.checkpoint_every == 0
        if validate:
            scores = self.validate()
            self.progress.val = {k: {**v, "iteration": iteration} for k, v in scores.items()}
            psnr = next(iter(scores.values()))["psnr"]
            best = self.progress.best_psnr is None or psnr > self.progress.best_psnr
            if best:
                self.progress.best_psnr, self.progress.best_iteration = psnr, iteration
            entry = {"iteration": iteration, **entry, "val": scores}
            self.export(iteration, best=best)
            text = ", ".join(f"{k} {v['psnr']:.3f} dB / {v['ssim']:.4f}" for k, v in scores.items())
            self.say(f"iteration {iteration}: {text}{' (best)' if best else ''}")
        elif checkpoint:
            self.export(iteration, best=False)
        if entry:
            self.write_log(entry)
        if checkpoint:
            self.save_state(iteration)

    def run(self, resume: bool) -> Path:
        import torch
        import torch.distributed as dist
        from torch import nn
        from tqdm import tqdm

        from superres.training import data

        cfg, info, device = self.cfg, self.dist, self.device
        start = self.setup(resume)
        params = [p for p in self.model.parameters() if p.requires_grad]
        net: nn.Module = self.model
        if info.enabled:
            device_ids = [device.index] if device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        sampler = data.IterationBatchSampler(
            cfg.data.batch, start, cfg.iterations, info.rank, info.world_size
        )
        loader = data.make_loader(
            self.dataset, sampler, workers=cfg.data.workers, prefetch=cfg.data.prefetch,
            pin_memory=device.type == "cuda",
        )  # fmt: skip
        loss_fn = make_loss(cfg.loss)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
        bar = tqdm(
            total=cfg.iterations, initial=start, unit="it", dynamic_ncols=True, desc="train",
            disable=not (info.main and self.show_progress),
        )  # fmt: skip
        window = {"loss": 0.0, "data_wait": 0.0, "step_time": 0.0, "n": 0}
        iteration = start
        totals = [0.0, 0.0]  # seconds waiting for data, seconds in iterations
        batches = iter(loader)
        try:
            while iteration < cfg.iterations:
                t0 = time.perf_counter()
                lr_u8, hr_u8 = next(batches)
                lr = lr_u8.to(device, non_blocking=True).float().div_(255)
                hr = hr_u8.to(device, non_blocking=True).float().div_(255)
                if cfg.channels_last:
                    lr = lr.contiguous(memory_format=torch.channels_last)
                    hr = hr.contiguous(memory_format=torch.channels_last)
                data_wait = time.perf_counter() - t0
                lr_now = learning_rate(cfg, iteration)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr_now
                with autocast:
                    sr = net(lr)
                loss = loss_fn(sr.float(), hr)
                if cfg.debug_nan_at is not None and iteration == cfg.debug_nan_at:
                    loss = loss * float("nan")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optim.grad_clip is not None:
                    grad_norm = nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
                else:
                    grads = [p.grad for p in params if p.grad is not None]
                    grad_norm = nn.utils.get_total_norm(grads)
                stats = torch.stack([loss.detach().float(), grad_norm.float().to(loss.device)])
                if info.enabled:  # the mean loss over all processes (gradients already agree)
                    dist.all_reduce(stats[:1])
                    stats[0] /= info.world_size
                loss_value, norm_value = stats.tolist()
                self.check_finite(loss_value, norm_value, iteration)
                self.optimizer.step()
                if self.ema is not None:
                    self.ema.update(self.model, step=iteration)
                iteration += 1
                window["loss"] += loss_value
                window["data_wait"] += data_wait
                window["step_time"] += time.perf_counter() - t0
                window["n"] += 1
                totals[0] += data_wait
                totals[1] += time.perf_counter() - t0
                bar.set_postfix(loss=f"{loss_value:.4g}", lr=f"{lr_now:.3g}", refresh=False)
                bar.update(1)
                entry: dict[str, Any] = {}
                if iteration % cfg.log_every == 0 or iteration == cfg.iterations:
                    n = window.pop("n")
                    entry = {"iteration": iteration, "loss": window.pop("loss") / n, "lr": lr_now,
                             "grad_norm": norm_value, "data_wait": window.pop("data_wait") / n,
                             "step_time": window.pop("step_time") / n,
                             "elapsed": round(self.elapsed(), 3)}  # fmt: skip
                    window = {"loss": 0.0, "data_wait": 0.0, "step_time": 0.0, "n": 0}
                if info.main:
                    self.after_step(iteration, entry)
        finally:
            bar.close()
            del batches
            if self.tb is not None:
                self.tb.close()
        info.barrier()
        best = self.progress.best_psnr
        summary = f"done: {iteration} iterations in {self.elapsed():.0f} s; "
        if totals[1] > 0:
            summary += f"waited for data {100 * totals[0] / totals[1]:.1f}% of the time; "
        if best is not None:
            summary += f"best {best:.3f} dB at iteration {self.progress.best_iteration}; "
        self.say(
            summary + f"weights in {self.run_dir / (LAST_FILE if best is None else BEST_FILE)}"
        )
        return self.run_dir


def train(config: TrainConfig, resume: bool = False, *, progress: bool = True) -> Path:
    """Train a model as ``config`` says; returns the run folder.

    Run under ``torchrun`` this is one process of a distributed run (see the module docs).

    Args:
        config: The validated config (see :func:`superres.training.config.load_config`).
        resume: Continue from ``output/state.safetensors`` when it exists (else start).
        progress: Show the progress bar and messages (process 0 only).

    Raises:
        ConfigError: invalid setup (missing folders, an existing run without ``resume``, a
            config that differs from the one being resumed...).
        TrainingError: the loss or the gradients became non-finite.
    """
    import torch
    import torch.distributed as dist

    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    info, device = _setup_distributed(config)
    try:
        return _Trainer(config, info, device, progress).run(resume)
    finally:
        if info.enabled and dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``superres train`` options to ``parser``."""
    parser.add_argument("--config", "-c", required=True, metavar="FILE.yaml",
                        help="training config (see configs/example_espcn_x2.yaml)")  # fmt: skip
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optim.lr=5e-4 "
                             "--set model.hparams.n1=32 (repeatable; values are YAML)")  # fmt: skip
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the output folder (starts it if it has no "
                             "training state yet)")  # fmt: skip
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config and exit")  # fmt: skip
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``superres train``; returns the exit status (0 done, 1 training failed, 2 usage)."""

    def error(message: str) -> None:
        if os.environ.get("RANK", "0") == "0":
            print(f"superres: error: {message}", file=sys.stderr)

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as exc:
        error(str(exc))
        return 2
    if args.print_config:
        print(dump_config(config), end="")
        return 0
    try:
        train(config, resume=args.resume, progress=not args.quiet)
    except ConfigError as exc:
        error(str(exc))
        return 2
    except TrainingError as exc:
        error(str(exc))
        return 1
    return 0
