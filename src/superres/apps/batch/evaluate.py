"""Evaluating folders on Ray: one item per HR folder, scored by actors that hold the model.

Each worker loads the model once and runs the local evaluation of a folder
(:func:`superres.evaluation.evaluate_folder`: modcrop, MATLAB-bicubic LR, Y-channel
PSNR/SSIM), so the scores are those of ``superres eval`` without Ray; folders are scored in
parallel (one folder is one item: many small folders spread well, one large one does not).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from superres import api
from superres.apps.batch.cluster import Cluster, rows, session, worker_count
from superres.errors import ConfigError, SuperresError, one_line
from superres.evaluation import DatasetResult, EvalResult, evaluate_folder
from superres.evaluation.folders import dataset_labels

__all__ = ["EvalWorker", "evaluate_folders"]


class EvalWorker:
    """A Ray actor scoring whole folders with one model loaded once.

    Args:
        model: Shipped name, ``bicubic`` or checkpoint path (None: the default model).
        scale: As for :func:`superres.api.load_model`.
        device, tile, ensemble: As for :func:`superres.evaluation.evaluate_folder`.
        threads: Torch threads of this worker.
        cwd: The driver's working folder (relative folder paths are relative to it).
    """

    def __init__(
        self,
        model: str | None,
        scale: int | None,
        device: str | None,
        tile: int | None,
        ensemble: bool,
        threads: int,
        cwd: str,
    ) -> None:
        from superres.inference import engine

        if os.path.isdir(cwd):
            os.chdir(cwd)
        engine.set_threads(threads)
        self.device = engine.select_device(device)
        self.model = api.load_model(model, scale=scale, device=str(self.device))
        self.tile, self.ensemble = tile, ensemble

    def __call__(self, batch: dict) -> dict[str, list]:
        results, errors, kinds = [], [], []
        for folder in batch["folder"]:
            try:
                result = evaluate_folder(self.model, str(folder), self.model.scale,
                                         tile=self.tile, device=self.device,
                                         ensemble=self.ensemble)  # fmt: skip
                results.append(json.dumps(asdict(result)))
                errors.append("")
                kinds.append("")
            except (SuperresError, FileNotFoundError, ValueError) as err:
                results.append("")
                errors.append(one_line(err))
                kinds.append("setting" if isinstance(err, (FileNotFoundError, ValueError))
                             else "error")  # fmt: skip
        return {"index": [int(i) for i in batch["index"]], "result": results, "error": errors,
                "kind": kinds}  # fmt: skip


def evaluate_folders(
    model: str | os.PathLike[str] | None,
    folders: Sequence[str | os.PathLike[str]],
    scale: int | None = None,
    *,
    tile: int | None = None,
    device: str | None = None,
    ensemble: bool = False,
    name: str | None = None,
    cluster: Cluster | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> EvalResult:
    """:func:`superres.api.evaluate` with the folders scored in parallel on Ray.

    Args:
        model: Shipped name, ``bicubic``, checkpoint path or None (the default model).
        folders: HR image folders; datasets are labelled as the local evaluation labels them.
        scale, tile, device, ensemble: As for :func:`superres.api.evaluate`.
        name: The model name to report (default: the model's own).
        cluster: Where and how wide (default: a private local Ray).
        progress: Optional ``callback(dataset, done_folders, total_folders)`` per folder.

    Raises:
        RayMissingError: Ray is not installed.
        ConfigError: a folder the evaluation cannot use (missing, no images), a model or
            scale setting, or a cluster that cannot be joined or hold the workers.
        SuperresError: any other failure of a folder (one line naming it).
    """
    paths = [Path(f) for f in folders]
    if not paths:
        raise ConfigError("no folders given")
    labels = dataset_labels(paths)
    cluster = cluster or Cluster()
    spec = None if model is None else os.fspath(model)
    local = api.load_model(spec, scale=scale, device="cpu")  # settings errors before Ray
    found: dict[int, DatasetResult] = {}
    with session(cluster.address) as ray:
        workers = worker_count(ray, cluster, len(paths))
        items = [{"index": i, "folder": str(p)} for i, p in enumerate(paths)]
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        dataset = dataset.map_batches(
            EvalWorker,
            fn_constructor_args=(spec, scale, device, tile, ensemble,
                                 cluster.threads_per_worker, os.getcwd()),
            batch_size=1, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cluster.threads_per_worker, num_gpus=cluster.gpus_per_worker or None,
        )  # fmt: skip
        for row in rows(dataset.iter_rows()):
            index = int(row["index"])
            if row["error"]:
                kind = ConfigError if row["kind"] == "setting" else SuperresError
                raise kind(str(row["error"]))
            data: dict[str, Any] = json.loads(str(row["result"]))
            found[index] = DatasetResult(**data)
            if progress is not None:
                progress(labels[index], len(found), len(paths))
    label = name or local.metadata.get("name") or local.arch
    results = {labels[i]: found[i] for i in range(len(paths))}
    return EvalResult(model=str(label), scale=local.scale, datasets=results)
