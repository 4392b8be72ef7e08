"""Upscaling a planned batch on Ray: the driver plans and reports, actors do the work.

Driver: the jobs of :func:`superres.api.plan_jobs` (paths, not pixels), minus those whose
output exists, become a Ray Dataset (``from_items``: no read tasks, see
:mod:`.cluster`) that streams through ``map_batches`` on a pool of :class:`UpscaleWorker`
actors; each finished file comes back as one small row (status, error, model). Worker: loads
the model once, then for each job calls the local engine's own file API
(:func:`superres.api.run_jobs`), which reads the bytes, decodes, upscales and writes the
output atomically: the same code path as ``superres upscale`` without Ray, so the files are
byte-identical and ICC profiles, EXIF, alpha and 16-bit depth survive. A run that was
killed leaves no partial outputs (only hidden ``.part`` temporary files, which a rerun
removes before it writes that output); a rerun skips every complete output.
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from superres import api
from superres.apps.batch.cluster import Cluster, rows, session, worker_count
from superres.errors import ImageError, SuperresError, one_line
from superres.models import SRModel

__all__ = ["ModelLoader", "UpscaleWorker", "block_size", "remove_stale_parts", "upscale_jobs"]

#: A picklable zero-argument callable that returns the model to run, called once in each
#: worker (for models that cannot travel by name, such as an onnxruntime session).
ModelLoader = Callable[[], Any]

#: Jobs per Ray block at most: a block is the unit a worker takes and reports back, so small
#: blocks keep the progress bar and the load balance fine-grained.
MAX_BLOCK = 16


def block_size(jobs: int, workers: int) -> int:
    """Jobs per block: 1 for small batches, growing to :data:`MAX_BLOCK` once every worker
    has at least a few blocks of that size queued (fewer objects for the driver to track)."""
    return max(1, min(MAX_BLOCK, jobs // max(1, workers * 8)))


def remove_stale_parts(target: Path) -> int:
    """Remove the temporary files that a killed atomic write of ``target`` left beside it
    (``.<name>.<random>.part``); returns how many. Call it only while no other process
    writes ``target``."""
    removed = 0
    pattern = os.path.join(glob.escape(str(target.parent)), f".{glob.escape(target.name)}.*.part")
    for stale in glob.glob(pattern):
        try:
            os.unlink(stale)
            removed += 1
        except OSError:
            pass
    return removed


class UpscaleWorker:
    """A Ray actor (a callable class for ``map_batches``): the model, loaded once, and the
    file API run on each job of a batch.

    Args:
        model: A shipped name, ``bicubic``, a checkpoint path, None (the tier is chosen per
            input, as the local engine does) or a :data:`ModelLoader`.
        options: Keyword arguments of :func:`superres.api.run_jobs` (scale, outscale,
            overwrite, tile, overlap, device, quality, ensemble).
        threads: Torch threads of this worker.
        cwd: The driver's working folder, which relative paths are relative to (used when
            it exists on this node).
    """

    def __init__(
        self, model: str | ModelLoader | None, options: dict, threads: int, cwd: str
    ) -> None:
        from superres.inference import engine

        if os.path.isdir(cwd):
            os.chdir(cwd)
        engine.set_threads(threads)
        self.options = dict(options)
        if callable(model):
            self.model: SRModel | str | None = model()
        else:
            self.model = model
            if model is not None:  # load now (startup), not on the first image
                api.resolve_model(model, options.get("scale"), options.get("outscale"),
                                  device=options.get("device"))  # fmt: skip

    def run(self, source: str, target: str) -> dict[str, Any]:
        """One job: a row ``{status, error, model, lossy}`` (``error`` empty unless failed)."""
        job = api.Job(Path(source), Path(target))
        try:
            remove_stale_parts(job.target)
            result = next(iter(api.run_jobs([job], self.model, **self.options)))
        except SuperresError as err:
            result = api.JobResult(job, "failed", err)
        except Exception as err:  # noqa: BLE001 - one file's failure must not end the batch
            result = api.JobResult(job, "failed", SuperresError(
                f"{source}: {type(err).__name__}: {one_line(err)}"))  # fmt: skip
        error = "" if result.status != "failed" or result.error is None else str(result.error)
        return {"status": result.status, "error": error, "model": result.model,
                "lossy": bool(result.lossy)}  # fmt: skip

    def __call__(self, batch: dict) -> dict[str, list]:
        rows = [self.run(str(s), str(t)) for s, t in zip(batch["source"], batch["target"],
                                                             strict=True)]  # fmt: skip
        out: dict[str, list] = {"index": [int(i) for i in batch["index"]]}
        for key in ("status", "error", "model", "lossy"):
            out[key] = [row[key] for row in rows]
        return out


def upscale_jobs(
    jobs: Sequence[api.Job],
    model: str | os.PathLike[str] | ModelLoader | None = None,
    *,
    scale: int | None = None,
    outscale: float | None = None,
    overwrite: bool = False,
    tile: int | None = None,
    overlap: int | None = None,
    device: str | None = None,
    quality: int | None = None,
    ensemble: bool = False,
    cluster: Cluster | None = None,
    on_start: Callable[[int], None] | None = None,
) -> Iterator[api.JobResult]:
    """:func:`superres.api.run_jobs` on Ray: the same results (and the same files), computed
    by a pool of actors, yielded as they finish (not in job order).

    Jobs whose output exists are skipped on the driver (unless ``overwrite``) and yielded
    first; when nothing is left to do, Ray is not started at all.

    Args:
        jobs: From :func:`superres.api.plan_jobs`. Paths must be readable and writable from
            every worker (on a cluster: storage every node mounts at the same path; relative
            paths are taken from the driver's working folder).
        model: A shipped name, ``bicubic``, a checkpoint path, None (each input gets the
            tier that suits it), or a :data:`ModelLoader` called once per worker. A loaded
            model object is not accepted: workers load their own.
        scale, outscale, overwrite, tile, overlap, device, quality, ensemble: As for
            :func:`superres.api.run_jobs`.
        cluster: Where and how wide (default: a private local Ray, one single-threaded
            worker per CPU).
        on_start: Called with the number of workers once the Dataset is built (before any
            worker has started).

    Raises:
        RayMissingError: Ray is not installed.
        ConfigError: a cluster that cannot be joined or cannot hold the workers.
    """
    if isinstance(model, SRModel):
        raise TypeError("upscale_jobs needs a model name, path or loader, not a loaded model")
    cluster = cluster or Cluster()
    jobs = list(jobs)
    pending: list[int] = []
    for index, job in enumerate(jobs):
        if job.target.exists() and not overwrite:
            yield api.JobResult(job, "skipped", ImageError(job.target, "output exists"))
        else:
            pending.append(index)
    if not pending:
        return
    spec = model if model is None or callable(model) else os.fspath(model)
    options = dict(scale=scale, outscale=outscale, overwrite=overwrite, tile=tile,
                   overlap=overlap, device=device, quality=quality, ensemble=ensemble)  # fmt: skip
    with session(cluster.address) as ray:
        workers = worker_count(ray, cluster, len(pending))
        size = block_size(len(pending), workers)
        items = [{"index": i, "source": str(jobs[i].source), "target": str(jobs[i].target)}
                 for i in pending]  # fmt: skip
        dataset = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / size))
        dataset = dataset.map_batches(
            UpscaleWorker,
            fn_constructor_args=(spec, options, cluster.threads_per_worker, os.getcwd()),
            batch_size=size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cluster.threads_per_worker, num_gpus=cluster.gpus_per_worker or None,
        )  # fmt: skip
        if on_start is not None:
            on_start(workers)
        for row in rows(dataset.iter_rows()):
            job = jobs[int(row["index"])]
            status = str(row["status"])
            error = SuperresError(str(row["error"])) if status == "failed" else None
            if status == "skipped":  # appeared after planning (another writer)
                error = ImageError(job.target, "output exists")
            yield api.JobResult(job, status, error, model=str(row["model"]),  # type: ignore[arg-type]
                                lossy=bool(row["lossy"]))  # fmt: skip
