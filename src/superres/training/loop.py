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

import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superres.errors import SuperresError, TrainingError
from superres.training.config import ConfigError, TrainConfig, config_to_dict
from superres.training.distributed import Dist, hardware, setup_distributed
from superres.training.ema import EMA
from superres.training.losses import make_loss
from superres.training.run_folder import BEST_FILE, LAST_FILE, RunFolder
from superres.training.schedule import learning_rate
from superres.training.state import (
    STATE_FILE,
    init_from_checkpoint,
    load_training_state,
    read_state_metadata,
    save_training_state,
)

if TYPE_CHECKING:  # pragma: no cover - torch is imported lazily: `superres --help` stays fast
    import torch
    from torch import Tensor, nn

__all__ = ["train"]


@dataclass
class _Progress:
    """Counters kept in the training state."""

    best_psnr: float | None = None
    best_iteration: int | None = None
    elapsed: float = 0.0
    val: dict[str, Any] = field(default_factory=dict)


class _Trainer:
    def __init__(
        self, config: TrainConfig, info: Dist, device: torch.device, progress: bool,
        stop_at: int | None = None,
    ) -> None:  # fmt: skip
        self.cfg, self.dist, self.device, self.show_progress = config, info, device, progress
        self.end = config.iterations if stop_at is None else min(stop_at, config.iterations)
        self.folder = RunFolder(config)
        self.run_dir = self.folder.path
        self.state_path = self.run_dir / STATE_FILE
        self.progress = _Progress()

    # ---- messages (process 0)

    def say(self, message: str) -> None:
        if self.dist.main and self.show_progress:
            from tqdm import tqdm

            tqdm.write(f"superres train: {message}", file=sys.stderr)

    def load_data(self):
        from superres.training import data

        d, scale = self.cfg.data, self.cfg.model.scale

        def load():
            try:
                return data.load_pairs(
                    d.train, scale, d.patch, cache_dir=d.cache_dir, rescale=d.rescale
                )
            except (FileNotFoundError, ValueError, SuperresError) as exc:
                raise ConfigError(f"data.train: {str(exc).splitlines()[0]}") from None

        if d.cache_dir is not None and self.dist.enabled:  # process 0 fills the cache first
            if self.dist.main:
                pairs, skipped = load()
            self.dist.barrier()
            if not self.dist.main:
                pairs, skipped = load()
        else:
            pairs, skipped = load()
        self.say(
            f"{len(pairs)} training images from {', '.join(d.train)}"
            + (f"; skipped {len(skipped)} smaller than the patch: {', '.join(skipped[:5])}"
               + (" ..." if len(skipped) > 5 else "") if skipped else "")
        )  # fmt: skip
        self.num_images = len(pairs)
        if d.burst.frames:
            from superres.training.bursts import BurstDataset

            b = d.burst
            try:
                dataset = BurstDataset(
                    pairs, scale, d.patch, d.batch, self.cfg.seed, frames=b.frames,
                    downscalers=b.downscalers, motion=b.motion, subpixel=b.subpixel,
                    jitter=b.jitter, noise=b.noise, augment=d.augment,
                )  # fmt: skip
            except ValueError as exc:
                raise ConfigError(f"data.burst: {exc}") from None
            if dataset.skipped:
                self.say(f"bursts: skipped {len(dataset.skipped)} images smaller than "
                         f"{dataset.region}x{dataset.region} HR")  # fmt: skip
            self.num_images = len(dataset.pairs)
            return dataset
        return data.PatchDataset(pairs, scale, d.patch, d.batch, self.cfg.seed, d.augment,
                                 degradation=d.degrade.degradation())  # fmt: skip

    @staticmethod
    def check_val_folder(folder: str) -> None:
        """Read every validation image now, so that a missing, empty or unreadable folder
        fails before the first step rather than ``val_every`` iterations in."""
        from superres.core.degrade import list_images, load_hr

        try:
            for path in list_images(folder):
                load_hr(path, channels="keep")
        except SuperresError as exc:
            raise ConfigError(f"data.val: {exc}") from None

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
            "hardware": hardware(self.device, self.dist.world_size),
            "weights": "ema" if self.ema is not None else "raw",
            "init_from": self.init_report,
        }

    def inference_module(self) -> nn.Module:
        """What is validated and exported: the EMA (or raw) weights, in their deployed form
        when the architecture trains with extra branches (``deploy()``, e.g. plainsr_rep)."""
        module = self.export_module
        deploy = getattr(module, "deploy", None)
        return deploy() if callable(deploy) else module

    def export(self, iteration: int, best: bool) -> None:
        from superres.weights.checkpoint import save_checkpoint

        module = self.inference_module()
        kwargs = {"provenance": self.provenance(iteration), "metrics": self.progress.val}
        save_checkpoint(self.run_dir / LAST_FILE, module, **kwargs)
        if best:
            save_checkpoint(self.run_dir / BEST_FILE, module, **kwargs)

    # ---- the training state

    def save_state(self, iteration: int) -> None:
        progress = {
            "best_psnr": self.progress.best_psnr,
            "best_iteration": self.progress.best_iteration,
            "elapsed": self.elapsed(),
            "val": self.progress.val,
        }
        save_training_state(
            self.state_path, iteration=iteration, config=self.cfg, model=self.model,
            ema=self.ema, optimizer=self.optimizer, device=self.device, progress=progress,
            world_size=self.dist.world_size,
        )  # fmt: skip

    def load_state(self, meta: dict[str, Any]) -> int:
        iteration, p = load_training_state(
            self.state_path, meta, model=self.model, ema=self.ema, optimizer=self.optimizer,
            device=self.device,
        )  # fmt: skip
        self.progress = _Progress(p["best_psnr"], p["best_iteration"], p["elapsed"], p["val"])
        return iteration

    # ---- validation

    def validate(self) -> dict[str, dict[str, float]]:
        from superres.evaluation import evaluate_folder
        from superres.models import SRModel

        module = self.inference_module()
        was_training = module.training
        module.eval()
        try:
            if self.cfg.data.burst.frames:
                return self.validate_bursts(module)
            result = evaluate_folder(SRModel.from_module(module), self.cfg.data.val)
        finally:
            module.train(was_training)
        return {Path(self.cfg.data.val).name: {"psnr": result.psnr, "ssim": result.ssim}}

    def validate_bursts(self, module: nn.Module) -> dict[str, dict[str, float]]:
        """The burst protocol on ``data.val`` (:mod:`superres.core.burst`): image ``i``'s burst
        of ``val_frames`` frames made with seed ``i`` for each downscaler, fused with the
        true shifts; mean PSNR-Y (16-pixel border) and SSIM-Y per downscaler."""
        import torch

        from superres.core.burst import burst_psnr_border, make_burst
        from superres.core.degrade import list_images, load_hr
        from superres.core.metrics import psnr, ssim

        b, scale = self.cfg.data.burst, self.cfg.model.scale
        name = Path(self.cfg.data.val).name
        out = {}
        images = [load_hr(path) for path in list_images(self.cfg.data.val)]
        for downscaler in b.downscalers:
            psnrs, ssims = [], []
            for i, array in enumerate(images):
                hr = torch.from_numpy(array.transpose(2, 0, 1).copy()).float() / 255
                burst = make_burst(hr, scale, b.val_frames, downscaler=downscaler, seed=i)
                with torch.no_grad():
                    sr = module(burst.frames[None].to(self.device),
                                burst.shifts[None].float().to(self.device),
                                degradation=downscaler)[0].float().cpu().clamp(0, 1)  # fmt: skip
                sr = torch.round(sr * 255) / 255  # what a saved image holds
                psnrs.append(psnr(sr, burst.reference_hr, crop=burst_psnr_border))
                ssims.append(ssim(sr, burst.reference_hr, crop=burst_psnr_border))
            key = f"{name} ({b.val_frames} frames, {downscaler})"
            out[key] = {"psnr": sum(psnrs) / len(psnrs), "ssim": sum(ssims) / len(ssims)}
        return out

    def elapsed(self) -> float:
        return self.progress.elapsed + time.perf_counter() - self.start_time

    # ---- main

    def setup(self, resume: bool) -> int:
        """Run folder, data, model, EMA, optimiser (and the resumed state); the first iteration."""
        cfg, info = self.cfg, self.dist
        self.start_time = time.perf_counter()
        meta = None
        try:  # everything a run needs is checked before the run folder is written
            if info.main:
                meta = self.folder.check(resume)
                if cfg.data.val is not None:
                    self.check_val_folder(cfg.data.val)
        finally:
            info.barrier()
        if not info.main and self.state_path.is_file() and resume:
            meta = read_state_metadata(self.state_path)
        self.dataset = self.load_data()
        try:
            if info.main:
                self.folder.prepare(meta)
        finally:
            info.barrier()
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
            self.folder.open_tensorboard(start)
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
        last_step = iteration in (cfg.iterations, self.end)  # the schedule's end, or --stop-at
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
            self.folder.write_log(entry)
        if checkpoint:
            self.save_state(iteration)

    def make_loader(self, start: int):
        """The DataLoader of this process's share of iterations ``start ..``."""
        from superres.training import data

        cfg, info = self.cfg, self.dist
        sampler = data.IterationBatchSampler(
            cfg.data.batch, start, cfg.iterations, info.rank, info.world_size
        )
        return data.make_loader(
            self.dataset, sampler, workers=cfg.data.workers, prefetch=cfg.data.prefetch,
            pin_memory=self.device.type == "cuda",
        )  # fmt: skip

    def step(self, net: nn.Module, batch: Sequence[Tensor], iteration: int):
        """One optimiser step on a batch ``(lr uint8, *extra inputs, hr uint8)``; returns
        ``(loss, gradient norm, lr)``. Bursts are ``(frames, shifts, psf code, hr)``: the
        extra inputs go to the network as they are.

        Raises TrainingError (before the step) on a non-finite loss or gradient.
        """
        import torch
        import torch.distributed as dist
        from torch import nn

        cfg, device = self.cfg, self.device
        lr_u8, *extra, hr_u8 = batch
        lr = lr_u8.to(device, non_blocking=True).float().div_(255)
        hr = hr_u8.to(device, non_blocking=True).float().div_(255)
        extra = [x.to(device, non_blocking=True) for x in extra]
        if cfg.channels_last and lr.ndim == 4:
            lr = lr.contiguous(memory_format=torch.channels_last)
            hr = hr.contiguous(memory_format=torch.channels_last)
        lr_now = learning_rate(cfg, iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_now
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            sr = net(lr, *extra)
        loss = self.loss_fn(sr.float(), hr)
        if cfg.debug_nan_at is not None and iteration == cfg.debug_nan_at:
            loss = loss * float("nan")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip is not None:
            grad_norm = nn.utils.clip_grad_norm_(self.params, cfg.optim.grad_clip)
        else:
            grad_norm = nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        stats = torch.stack([loss.detach().float(), grad_norm.float().to(loss.device)])
        if self.dist.enabled:  # the mean loss over all processes (gradients already agree)
            dist.all_reduce(stats[:1])
            stats[0] /= self.dist.world_size
        loss_value, norm_value = stats.tolist()
        self.check_finite(loss_value, norm_value, iteration)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model, step=iteration)
        return loss_value, norm_value, lr_now

    def run(self, resume: bool) -> Path:
        from torch import nn
        from tqdm import tqdm

        cfg, info, device = self.cfg, self.dist, self.device
        start = self.setup(resume)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.loss_fn = make_loss(cfg.loss)
        net: nn.Module = self.model
        if info.enabled:
            device_ids = [device.index] if device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        bar = tqdm(
            total=cfg.iterations, initial=start, unit="it", dynamic_ncols=True, desc="train",
            disable=not (info.main and self.show_progress and _on_terminal()),
        )  # fmt: skip
        window = _Window()
        iteration = start
        totals = [0.0, 0.0]  # seconds waiting for data, seconds in iterations
        batches = iter(self.make_loader(start))
        try:
            while iteration < self.end:
                t0 = time.perf_counter()
                batch = next(batches)
                data_wait = time.perf_counter() - t0
                loss_value, norm_value, lr_now = self.step(net, batch, iteration)
                iteration += 1
                step_time = time.perf_counter() - t0
                window.add(loss_value, data_wait, step_time)
                totals[0] += data_wait
                totals[1] += step_time
                bar.set_postfix(loss=f"{loss_value:.4g}", lr=f"{lr_now:.3g}", refresh=False)
                bar.update(1)
                entry: dict[str, Any] = {}
                if iteration % cfg.log_every == 0 or iteration == self.end:
                    entry = {"iteration": iteration, **window.take(), "lr": lr_now,
                             "grad_norm": norm_value,
                             "elapsed": round(self.elapsed(), 3)}  # fmt: skip
                if info.main:
                    self.after_step(iteration, entry)
        finally:
            bar.close()
            del batches
            self.folder.close()
        info.barrier()
        self.say(self.summary(iteration, totals))
        return self.run_dir

    def summary(self, iteration: int, totals: list[float]) -> str:
        best = self.progress.best_psnr
        if iteration < self.cfg.iterations:
            text = (
                f"stopped at iteration {iteration} of {self.cfg.iterations} "
                f"(--resume goes on) after {self.elapsed():.0f} s; "
            )
        else:
            text = f"done: {iteration} iterations in {self.elapsed():.0f} s; "
        if totals[1] > 0:
            text += f"waited for data {100 * totals[0] / totals[1]:.1f}% of the time; "
        if best is not None:
            text += f"best {best:.3f} dB at iteration {self.progress.best_iteration}; "
        return text + f"weights in {self.run_dir / (LAST_FILE if best is None else BEST_FILE)}"


def _on_terminal() -> bool:
    """Whether stderr is a terminal (the progress bar is drawn only there)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _Window:
    """Means of the per-iteration figures since the last log entry."""

    def __init__(self) -> None:
        self.loss = self.data_wait = self.step_time = 0.0
        self.n = 0

    def add(self, loss: float, data_wait: float, step_time: float) -> None:
        self.loss += loss
        self.data_wait += data_wait
        self.step_time += step_time
        self.n += 1

    def take(self) -> dict[str, float]:
        n = self.n
        out = {
            "loss": self.loss / n,
            "data_wait": self.data_wait / n,
            "step_time": self.step_time / n,
        }
        self.__init__()
        return out


def train(
    config: TrainConfig, resume: bool = False, *, progress: bool = True,
    stop_at: int | None = None,
) -> Path:  # fmt: skip
    """Train a model as ``config`` says; returns the run folder.

    Run under ``torchrun`` this is one process of a distributed run (see the module docs).

    Args:
        config: The validated config (see :func:`superres.training.config.load_config`).
        resume: Continue from ``output/state.safetensors`` when it exists (else start).
        progress: Show the progress bar and messages (process 0 only).
        stop_at: Stop after this iteration (of the schedule's ``config.iterations``, which
            stays as it is), with the state and the weights saved there, as at the end;
            ``resume`` goes on from it. A run already there or beyond does nothing.

    Raises:
        ConfigError: invalid setup (missing folders, an existing run without ``resume``, a
            config that differs from the one being resumed...).
        TrainingError: the loss or the gradients became non-finite.
    """
    import torch
    import torch.distributed as dist

    if stop_at is not None and stop_at < 1:
        raise ConfigError(f"stop_at: must be at least 1, got {stop_at}")
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    info, device = setup_distributed(config)
    try:
        return _Trainer(config, info, device, progress, stop_at).run(resume)
    finally:
        if info.enabled and dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(threads)
