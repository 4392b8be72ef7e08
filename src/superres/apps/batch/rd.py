"""Rate-distortion curves on Ray: one item per (curve, image), measured by actors that keep
their restorers loaded.

Each item is one image of the folder at one (scale, restorer, adaptive-downscaling steps)
configuration; a worker reads the image itself, runs :func:`superres.codec.rd.measure_image`
(refine the LR image if asked, encode at every quality, decode, restore, score) and returns
the rows, and the driver averages them per curve with
:func:`superres.codec.rd.curve_from_rows`, in image order. So bits per pixel are exactly
those of ``superres rd`` without Ray, and PSNR and MS-SSIM agree to float rounding (about
1e-15 relative: torch's reductions run on the workers' thread count); the encoding and
decoding seconds are measured on the workers (one thread each, by default). Adaptive
downscaling, the encoder's costly step (seconds an image), spreads over the workers like the
rest; its refined LR pixels depend on float rounding, so they match the local command's where
the thread counts match (a pixel a level apart here and there otherwise). Everything the
local command refuses (an unknown codec, model or quality, an image too small for MS-SSIM,
a bad mask) is refused on the driver before Ray starts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from superres.apps.batch.cluster import Cluster, rows, session, worker_count
from superres.errors import SuperresError, one_line

__all__ = ["RDWorker", "rd_curves"]


class RDWorker:
    """A Ray actor measuring (configuration, image) items; restorers are loaded once each.

    Args:
        codec: Codec name.
        qualities: Codec qualities of every curve.
        roi: The region of interest (a mask file path or ``"auto"``) or None.
        threads: Torch threads of this worker.
        cwd: The driver's working folder (relative paths are relative to it).
    """

    def __init__(
        self, codec: str, qualities: Sequence[int], roi: str | None, threads: int, cwd: str
    ) -> None:
        from superres.codec.base import get_codec
        from superres.inference import engine

        if os.path.isdir(cwd):
            os.chdir(cwd)
        engine.set_threads(threads)
        self.codec = get_codec(codec)
        self.qualities = tuple(int(q) for q in qualities)
        self.roi = roi
        self.restorers: dict[tuple[int, str | None], Any] = {}

    def measure(self, path: str, scale: int, model: str | None, adapt: int = 0) -> np.ndarray:
        from superres.codec import pipeline, rd
        from superres.core import regions
        from superres.core.degrade import load_hr

        key = (scale, model)
        if key not in self.restorers:
            self.restorers[key] = pipeline.choose_restorer(model, scale)
        pixels = load_hr(path)
        mask = None if self.roi is None else regions.region_of_interest(self.roi, pixels)
        return rd.measure_image(pixels, self.codec, scale, self.qualities, self.restorers[key],
                                mask, adapt_steps=adapt)  # fmt: skip

    def __call__(self, batch: dict) -> dict[str, list]:
        found, errors = [], []
        for path, scale, model, adapt in zip(batch["path"], batch["scale"], batch["model"],
                                             batch["adapt"], strict=True):  # fmt: skip
            try:
                table = self.measure(str(path), int(scale), str(model) or None, int(adapt))
                found.append(json.dumps(table.tolist()))
                errors.append("")
            except Exception as err:  # noqa: BLE001 - reported on the driver, in one line
                found.append("")
                errors.append(f"{Path(str(path)).name}: {one_line(err)}")
        return {"index": [int(i) for i in batch["index"]], "rows": found, "error": errors}


def rd_curves(
    folder: str | os.PathLike[str],
    codec: str,
    configurations: Sequence[tuple[int, str | None] | tuple[int, str | None, int]],
    qualities: Sequence[int] | None = None,
    *,
    images: Sequence[tuple[str, np.ndarray]] | None = None,
    roi: str | None = None,
    cluster: Cluster | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list:
    """:func:`superres.codec.rd.rd_curve` for each ``(scale, model)`` of ``configurations``
    over the images of ``folder``, measured on Ray; the curves in the order given.

    Args:
        folder: Folder of images (as ``superres rd --data``).
        codec, qualities: As for :func:`~superres.codec.rd.rd_curve`.
        images: The folder's images if the caller has read them already
            (:func:`~superres.codec.rd.load_images`): they are checked on the driver, and
            read here when not given.
        configurations: ``(scale, restorer name or None)`` per curve (the model is ignored
            at scale 1, as locally), or ``(scale, restorer, steps)`` for a curve with
            adaptive downscaling (``rd_curve(adapt_steps=steps)``; a network at scale > 1).
        roi: A mask file path or ``"auto"``: the points also get PSNR inside and outside it.
        cluster: Where and how wide (default: a private local Ray).
        progress: Optional ``callback(done_items, total_items)``.

    Raises:
        RayMissingError: Ray is not installed.
        ConfigError, ImageError, FolderError: what the local measurement refuses, before Ray
            starts.
        SuperresError: an image that failed on a worker (one line naming it).
    """
    from superres.codec import pipeline, rd
    from superres.core.degrade import list_images

    chosen, qualities = rd.curve_settings(codec, qualities)
    paths = list(list_images(folder))
    if images is None:  # read on the driver too: a bad or small image fails before Ray
        images = rd.load_images(folder)
    rd.check_images(images, None if roi is None else rd.roi_masks(images, roi))
    configs = [(int(s), None if s == 1 else m, int(rest[0]) if rest else 0)
               for s, m, *rest in configurations]  # fmt: skip
    names = []
    for s, m, steps in configs:  # unknown models and adaptive steps without a network: now
        restorer = pipeline.choose_restorer(m, s)
        rd.check_adapt(restorer, s, steps)
        names.append(restorer.name)
    items = [{"index": c * len(paths) + k, "path": str(p), "scale": s, "model": m or "",
              "adapt": steps}
             for c, (s, m, steps) in enumerate(configs) for k, p in enumerate(paths)]  # fmt: skip
    tables: dict[int, np.ndarray] = {}
    cluster = cluster or Cluster()
    with session(cluster.address) as ray:
        workers = worker_count(ray, cluster, len(items))
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        dataset = dataset.map_batches(
            RDWorker,
            fn_constructor_args=(chosen.name, qualities, roi, cluster.threads_per_worker,
                                 os.getcwd()),
            batch_size=1, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cluster.threads_per_worker,
        )  # fmt: skip
        for done, row in enumerate(rows(dataset.iter_rows()), 1):
            if row["error"]:
                raise SuperresError(str(row["error"]))
            tables[int(row["index"])] = np.asarray(json.loads(str(row["rows"])))
            if progress is not None:
                progress(done, len(items))
    curves = []
    for c, ((s, _, steps), name) in enumerate(zip(configs, names, strict=True)):
        total = np.zeros((len(qualities), rd.ROW_FIELDS))
        for k in range(len(paths)):  # in image order, as rd_curve sums them
            total += tables[c * len(paths) + k]
        curves.append(rd.curve_from_rows(chosen.name, s, name, qualities, total / len(paths),
                                         roi is not None, steps))  # fmt: skip
    return curves
