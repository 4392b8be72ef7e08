"""Training curves from a run's ``log.jsonl``: read the entries, plot validation PSNR.

:func:`read_log` parses one log (lines cut short by a kill are skipped, as ``--resume``
does); :func:`plot_training` draws the validation PSNR of one or more runs over the
iterations, the learning rate beneath it, and horizontal reference lines (a published
figure, a floor), into a PNG/SVG/PDF written atomically (needs matplotlib:
``superres[plot]``). ``python tools/plot_training.py`` is its command line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from superres.core.io import atomic_write
from superres.errors import ConfigError

__all__ = ["RunLog", "plot_training", "read_log"]

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


@dataclass
class RunLog:
    """The logged entries of one run: training steps and validation points, by iteration."""

    name: str
    steps: list[dict] = field(default_factory=list)
    vals: list[dict] = field(default_factory=list)

    def val_series(self, dataset: str, metric: str = "psnr") -> tuple[list[int], list[float]]:
        """Iterations and scores of ``dataset``'s validation ``metric``."""
        its, values = [], []
        for entry in self.vals:
            score = entry["val"].get(dataset, {}).get(metric)
            if score is not None:
                its.append(entry["iteration"])
                values.append(float(score))
        return its, values

    def datasets(self) -> list[str]:
        names: list[str] = []
        for entry in self.vals:
            names += [n for n in entry["val"] if n not in names]
        return names


def read_log(path: str | Path, name: str | None = None, offset: int = 0) -> RunLog:
    """The entries of ``path`` (a ``log.jsonl`` or a run folder holding one).

    ``offset`` is added to every iteration (a later stage plotted after the one it
    continues). Lines that are not JSON objects with an integer ``iteration`` (a line cut
    short by a kill) are skipped.

    Raises:
        ConfigError: the file is missing or holds no entries.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "log.jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such training log") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the training log ({exc})") from None
    log = RunLog(name or path.parent.name)
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("iteration"), int):
            continue
        entry = {**entry, "iteration": entry["iteration"] + offset}
        if isinstance(entry.get("val"), dict):
            log.vals.append(entry)
        if "loss" in entry or "lr" in entry:  # a validation line is a step's line too
            log.steps.append(entry)
    if not log.steps and not log.vals:
        raise ConfigError(f"{path}: no log entries")
    return log


def plot_training(
    runs: Sequence[RunLog],
    path: str | Path,
    *,
    dataset: str | None = None,
    refs: Sequence[tuple[str, float]] = (),
    title: str = "",
    iterations: int | None = None,
) -> Path:
    """Plot validation PSNR of ``runs`` on ``dataset`` (default: the first validated one)
    over the iterations, with the learning rate in a lower panel and ``refs`` as labelled
    horizontal lines; write it atomically to ``path`` (.png/.svg/.pdf). ``iterations``
    extends the axis to a run's planned length.

    Raises:
        ConfigError: a bad suffix, or no run has a validation point on ``dataset``.
        ImportError: matplotlib is not installed.
    """
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(f"{path}: the plot must be .png, .svg or .pdf")
    if dataset is None:
        names = [n for run in runs for n in run.datasets()]
        if not names:
            raise ConfigError("no validation points in the logs")
        dataset = names[0]
    series = [(run, *run.val_series(dataset)) for run in runs]
    if not any(its for _, its, _ in series):
        raise ConfigError(f"no validation points on {dataset} in the logs")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'superres[plot]'") from None

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(7, 5.5), dpi=120, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    shown: list[float] = []
    for run, its, values in series:
        if its:
            top.plot(its, values, marker=".", label=f"{run.name} (EMA)")
            shown += values
        lr = [(e["iteration"], e["lr"]) for e in run.steps if isinstance(e.get("lr"), float)]
        if lr:
            bottom.plot(*zip(*lr, strict=True), label=run.name)
    for label, value in refs:
        top.axhline(value, linestyle="--", linewidth=1, color="0.4")
        top.annotate(
            f"{label} {value:.2f}",
            (0, value),
            xycoords=("axes fraction", "data"),
            xytext=(4, 2),
            textcoords="offset points",
            fontsize=8,
            color="0.3",
        )
        shown.append(value)
    low, high = min(shown), max(shown)
    pad = max(0.05, 0.08 * (high - low))
    top.set_ylim(math.floor((low - pad) * 20) / 20, math.ceil((high + pad) * 20) / 20)
    top.set_ylabel(f"{dataset} PSNR-Y (dB)")
    top.grid(alpha=0.3)
    top.legend(loc="lower right", fontsize=8)
    if title:
        top.set_title(title)
    bottom.set_ylabel("learning rate")
    bottom.set_xlabel("iteration")
    if iterations:
        bottom.set_xlim(0, iterations)
    bottom.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    bottom.grid(alpha=0.3)
    fig.tight_layout()

    def write(file) -> None:
        fig.savefig(file, format=path.suffix.lstrip(".").lower())

    try:
        atomic_write(path, write, overwrite=True)
    finally:
        plt.close(fig)
    return path
