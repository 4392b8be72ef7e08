"""Benchmark a model on folders of HR images, the way the SR literature does.

For every HR image: crop to a multiple of the scale (modcrop), make the LR input with
MATLAB-compatible bicubic downscaling, quantised to 8 bits; upscale it with the model
(quantised to 8 bits); score PSNR/SSIM on the BT.601 Y channel (grey level for
one-channel images) with ``scale`` pixels cropped from every border.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from superres.core import metrics
from superres.core.degrade import list_images, load_hr, make_lr, modcrop
from superres.core.resize import quantize
from superres.errors import ConfigError
from superres.inference import engine
from superres.models import SRModel

__all__ = [
    "DatasetResult",
    "EvalResult",
    "evaluate",
    "evaluate_folder",
    "super_resolve",
]


@dataclass
class DatasetResult:
    """Mean scores of one folder."""

    images: int
    psnr: float
    ssim: float
    seconds: float
    model_seconds: float = 0.0
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class EvalResult:
    """Scores of one model at one scale on several folders (what ``superres eval`` prints)."""

    model: str
    scale: int
    datasets: dict[str, DatasetResult]

    def to_dict(self, per_image: bool = False) -> dict:
        """JSON-able dict ``{"model", "scale", "datasets": {name: {images, psnr, ...}}}``."""
        out = {"model": self.model, "scale": self.scale, "datasets": {}}
        for name, result in self.datasets.items():
            entry = asdict(result)
            if not per_image:
                entry.pop("per_image")
            out["datasets"][name] = entry
        return out

    def to_json(self, per_image: bool = False) -> str:
        return json.dumps(self.to_dict(per_image=per_image), indent=2)

    def table(self) -> str:
        """A plain-text table: dataset, images, PSNR, SSIM, seconds."""
        rows = [f"{'dataset':<12} {'images':>6} {'PSNR':>8} {'SSIM':>7} {'seconds':>8}"]
        for name, r in self.datasets.items():
            rows.append(
                f"{name:<12} {r.images:>6d} {r.psnr:>8.3f} {r.ssim:>7.4f} {r.seconds:>8.1f}"
            )
        return "\n".join(rows)


def super_resolve(
    lr: torch.Tensor,
    model: SRModel,
    *,
    tile: int | None = None,
    device: torch.device | None = None,
    ensemble: bool = False,
) -> torch.Tensor:
    """Upscale a float ``(C, h, w)`` LR image (C = 1 or 3) and return it as float.

    One-channel images are replicated to RGB for the model and averaged back; ``ensemble``
    averages over the 8 flips and rotations.
    """
    channels = lr.shape[0]
    x = lr[None]
    if channels == 1:
        x = x.expand(1, 3, *lr.shape[1:])
    if device is not None:
        x = x.to(device)
    sr = engine.upscale_tensor(x, model, tile=tile, ensemble=ensemble).to("cpu", torch.float32)[0]
    if channels == 1:
        sr = sr.mean(dim=0, keepdim=True)
    return sr


def _hr_tensor(path: Path) -> torch.Tensor:
    pixels = load_hr(path, channels="keep")  # grey stays grey: it is scored on its grey level
    return torch.from_numpy(np.array(pixels.transpose(2, 0, 1))).float() / 255


def evaluate_folder(
    model: SRModel,
    folder: str | Path,
    scale: int | None = None,
    *,
    tile: int | None = None,
    device: torch.device | str | None = None,
    progress: Callable[[int, int], None] | None = None,
    ensemble: bool = False,
) -> DatasetResult:
    """Score ``model`` on every image of one folder (``ensemble``: the self-ensemble)."""
    scale = scale or model.scale
    if scale != model.scale:
        raise ConfigError(f"model {model.arch} is x{model.scale}, asked to evaluate x{scale}")
    files = list_images(folder)
    start = time.perf_counter()
    model_seconds = 0.0
    per_image: dict[str, dict[str, float]] = {}
    dev = engine.select_device(device) if device is not None else None
    for i, path in enumerate(files):
        hr = modcrop(_hr_tensor(path), scale)
        lr = make_lr(hr, scale)
        t0 = time.perf_counter()
        sr = super_resolve(lr, model, tile=tile, device=dev, ensemble=ensemble)
        model_seconds += time.perf_counter() - t0
        sr = quantize(sr)
        per_image[path.name] = {
            "psnr": metrics.psnr(sr, hr, crop=scale),
            "ssim": metrics.ssim(sr, hr, crop=scale),
        }
        if progress is not None:
            progress(i + 1, len(files))
    return DatasetResult(
        images=len(files),
        psnr=float(np.mean([v["psnr"] for v in per_image.values()])),
        ssim=float(np.mean([v["ssim"] for v in per_image.values()])),
        seconds=time.perf_counter() - start,
        model_seconds=model_seconds,
        per_image=per_image,
    )


def dataset_labels(folders: Sequence[Path]) -> list[str]:
    """A distinct name per folder: its name, or as many trailing path parts as it takes to
    tell it from the others (``a/Set5``, ``b/Set5``); the same folder given twice gets
    ``Set5 (2)``."""
    parts = [f.resolve().parts for f in folders]
    labels = []
    for i, p in enumerate(parts):
        n = 1
        while n < len(p) and any(
            q[-n:] == p[-n:] for j, q in enumerate(parts) if j != i and q != p
        ):
            n += 1
        labels.append("/".join(p[-n:]))
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def evaluate(
    model: SRModel,
    folders: str | Path | Sequence[str | Path] | Iterable[str | Path],
    scale: int | None = None,
    *,
    tile: int | None = None,
    device: torch.device | str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    name: str | None = None,
    ensemble: bool = False,
) -> EvalResult:
    """Score ``model`` on one or more folders; datasets are named by folder name (two folders
    of the same name by their paths' last distinct parts, see :func:`dataset_labels`).

    Args:
        model: A loaded model (see :func:`superres.load_model`).
        folders: HR image folder(s).
        scale: Must equal ``model.scale`` if given.
        tile: Tile size for the engine (None: automatic).
        device: Torch device for inference.
        progress: Optional ``callback(dataset, done, total)``.
        name: Model name to report (default: the model's name or architecture).
        ensemble: Score the geometric self-ensemble (8 flips and rotations averaged).
    """
    if isinstance(folders, (str, Path)):
        folders = [folders]
    scale = scale or model.scale
    folders = [Path(f) for f in folders]
    results: dict[str, DatasetResult] = {}
    for folder, label in zip(folders, dataset_labels(folders), strict=True):
        callback = None
        if progress is not None:

            def callback(done: int, total: int, _label: str = label) -> None:
                progress(_label, done, total)

        results[label] = evaluate_folder(
            model, folder, scale, tile=tile, device=device, progress=callback, ensemble=ensemble
        )
    label = name or model.metadata.get("name") or model.arch
    return EvalResult(model=str(label), scale=scale, datasets=results)
