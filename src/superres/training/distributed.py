"""One process or many (torchrun): the process group, this process's device, the hardware
recorded in provenance."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from superres.training.config import ConfigError, TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["Dist", "hardware", "setup_distributed"]


@dataclass
class Dist:
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


def setup_distributed(config: TrainConfig) -> tuple[Dist, torch.device]:
    """Join the process group started by torchrun (if any) and pick this process's device."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = Dist()
    if world > 1:
        info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
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
        torch.backends.cudnn.benchmark = True  # training patches have one shape: tune once
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def hardware(device: torch.device, world_size: int) -> dict[str, Any]:
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
