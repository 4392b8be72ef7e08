"""The run folder of a training run: ``config.yaml``, ``log.jsonl`` (and TensorBoard), the
exported ``last``/``best`` weights beside ``state.safetensors``.

Only process 0 of a distributed run writes here.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from superres.core.io import atomic_write_bytes
from superres.training.config import (
    ConfigError,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    dump_config,
)
from superres.training.state import (
    RESUMABLE_CHANGES,
    STATE_FILE,
    diff_keys,
    read_state_metadata,
)

__all__ = ["BEST_FILE", "CONFIG_FILE", "LAST_FILE", "LOG_FILE", "RunFolder"]

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.jsonl"
LAST_FILE = "last.safetensors"
BEST_FILE = "best.safetensors"


class RunFolder:
    """The files of one run in ``config.output``."""

    def __init__(self, config: TrainConfig) -> None:
        self.cfg = config
        self.path = Path(config.output)
        self.state = self.path / STATE_FILE
        self.tb: Any = None  # a TensorBoard SummaryWriter, when enabled and installed

    def check(self, resume: bool) -> dict[str, Any] | None:
        """The saved state's metadata when resuming from one (None: a fresh run).

        Raises:
            ConfigError: the folder holds a run and ``resume`` is off, or the config differs
                from the saved one in a key that may not change.
        """
        if not self.state.is_file():
            return None
        if not resume:
            raise ConfigError(
                f"output: {self.path} already holds a training run; resume it or choose "
                "another output folder"
            )
        meta = read_state_metadata(self.state)
        saved = config_to_dict(config_from_dict(meta["config"]))
        diff = [k for k in diff_keys(saved, config_to_dict(self.cfg)) if k not in RESUMABLE_CHANGES]
        if diff:
            raise ConfigError(
                f"cannot resume {self.path}: the config differs from the saved one in "
                f"{', '.join(diff)} (only {', '.join(sorted(RESUMABLE_CHANGES))} may change)"
            )
        return meta

    def prepare(self, meta: dict[str, Any] | None) -> None:
        """Write ``config.yaml``; start a new log, or drop entries after the resumed state."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path / CONFIG_FILE, dump_config(self.cfg).encode(), overwrite=True)
        if meta is None:
            with contextlib.suppress(FileNotFoundError):
                (self.path / LOG_FILE).unlink()
        else:
            self.truncate_log(meta["iteration"])

    def truncate_log(self, iteration: int) -> None:
        """Drop log entries of iterations after the resumed state (from a killed run)."""
        path = self.path / LOG_FILE
        if not path.is_file():
            return
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["iteration"] <= iteration:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by the kill
        data = "".join(f"{line}\n" for line in keep).encode()
        atomic_write_bytes(path, data, overwrite=True)

    def open_tensorboard(self, start: int) -> None:
        """Log to ``tensorboard/`` too, when the optional package is installed."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self.tb = SummaryWriter(str(self.path / "tensorboard"), purge_step=start)

    def write_log(self, entry: dict[str, Any]) -> None:
        """Append one entry to ``log.jsonl`` (and TensorBoard)."""
        with (self.path / LOG_FILE).open("a", encoding="utf-8") as file:
            file.write(json.dumps(entry) + "\n")
        if self.tb is not None:
            it = entry["iteration"]
            for key in ("loss", "lr", "grad_norm", "data_wait", "step_time"):
                if key in entry:
                    self.tb.add_scalar(f"train/{key}", entry[key], it)
            for name, scores in entry.get("val", {}).items():
                for key, value in scores.items():
                    self.tb.add_scalar(f"val/{name}/{key}", value, it)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
