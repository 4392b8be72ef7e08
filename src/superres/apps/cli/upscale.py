"""``superres upscale``: image files and folders through a model, written atomically.

The work is the library's (:func:`superres.api.plan_jobs`, :func:`superres.api.run_jobs`):
this module parses the options, checks what is cheap to check before a model is loaded,
draws progress bars on a terminal and prints one line per problem and a summary.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import TYPE_CHECKING, Any

from superres.apps.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_model_options,
    cli_message,
    non_negative_int,
    one_line,
    positive_float,
    progress_enabled,
    scale_choice,
)
from superres.apps.cli.engines import add_engine_options, ray_cluster

if TYPE_CHECKING:
    from superres.api import ScaleError
    from superres.models import SRModel

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  superres upscale photo.jpg -o photo_x4.png
  superres upscale scans/ -o scans_x2/ --scale 2 --recursive
  superres upscale photo.jpg -o photo_x3.5.png --outscale 3.5
  superres upscale big.tif -o big_x4.tif --tile 256 --device cpu --threads 2
  superres upscale archive/ -o archive_x2/ -s 2 -r --engine ray --workers 2
  superres upscale archive/ -o archive_x2/ -s 2 -r --engine ray --address auto

--scale is the model's scale: it picks a shipped name's weights, and a checkpoint (or an
.onnx file) of another scale is refused. --outscale is any output factor: the next larger
model scale runs and its output is resized (MATLAB bicubic, antialiased); a checkpoint runs
at its own scale and is resized to it.
"""

OUTPUT_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "avif", "tif", "tiff")


def _quality(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to 100, got '{text}'")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    up = subparsers.add_parser(
        "upscale", help="upscale images or folders of images",
        description="Upscale image files, or folders of them (the tree is mirrored). "
                    "Existing outputs are skipped unless --overwrite; an input that fails is "
                    "reported in one line and the others go on (exit status 1).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    up.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    up.add_argument("-o", "--output", required=True,
                    help="output file (one input; its extension is the format) or folder "
                         "(mirrors input folders; end a new folder's name with '/' if it "
                         "has a dot)")  # fmt: skip
    up.add_argument("--scale", "-s", type=scale_choice, default=None,
                    help="model scale 2, 3 or 4 (default: 4 for a shipped name, a "
                         "checkpoint's own scale); see below")  # fmt: skip
    up.add_argument(
        "--outscale",
        type=positive_float,
        default=None,
        metavar="F",
        help="any output factor: runs the next larger model scale, then resizes",
    )
    up.add_argument("--overlap", type=non_negative_int, default=None, metavar="P",
                    help="tile overlap in input pixels, at most half the tile "
                         "(default: from the model)")  # fmt: skip
    up.add_argument("--recursive", "-r", action="store_true", help="descend into subfolders")
    up.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    up.add_argument(
        "--ext",
        default="auto",
        choices=("auto", *OUTPUT_EXTENSIONS),
        help="output format for folder outputs (auto: as input, else png)",
    )
    up.add_argument("--quality", type=_quality, default=None, metavar="Q",
                    help="JPEG/WebP/AVIF quality 1-100 (default 95, AVIF 90)")  # fmt: skip
    up.add_argument("--backend", default=None, metavar="torch|onnx",
                    help="torch (default) or onnx: onnxruntime through the same tiling "
                         "(the default for an .onnx --model)")  # fmt: skip
    up.add_argument("--ensemble", action="store_true",
                    help="geometric self-ensemble: average over the 8 flips and rotations "
                         "(about 8x slower, a little sharper; README gives the gain)")  # fmt: skip
    add_model_options(up)
    add_engine_options(up)
    up.set_defaults(func=run)
    return up


def _check_options(args: argparse.Namespace) -> str:
    """Option combinations, before anything is read or loaded; returns the backend."""
    if args.scale is not None and args.outscale is not None:
        raise UsageError("give --scale or --outscale, not both")
    if args.overlap is not None and args.tile and args.overlap > args.tile // 2:
        raise UsageError(
            f"--overlap {args.overlap} is more than half of --tile {args.tile} "
            f"(at most {args.tile // 2})"
        )
    onnx_file = str(args.model or "").lower().endswith(".onnx")
    backend = args.backend or ("onnx" if onnx_file else "torch")
    if backend not in ("torch", "onnx"):
        raise UsageError(f"--backend must be torch or onnx, got '{backend}'")
    if backend == "torch" and onnx_file:
        raise UsageError(f"{args.model}: an ONNX model runs with --backend onnx")
    return backend


def _scale_refused(err: ScaleError) -> UsageError:
    return UsageError(
        f"{err.name}: the model is x{err.have}, so --scale {err.wanted} is refused (leave out "
        f"--scale to run it at x{err.have}, or use --outscale {err.wanted} to run it at "
        f"x{err.have} and resize the output)"
    )


def _load_model(args: argparse.Namespace, backend: str) -> tuple[SRModel, float | None]:
    """The model ``upscale`` runs and the resize after it, on ``backend``.

    ``onnx`` exports a named model or checkpoint in memory and runs it with onnxruntime
    through the same tiling engine; an ``.onnx`` file (from ``superres export``) implies it.
    """
    from superres import api
    from superres.errors import DeviceError
    from superres.inference import engine

    try:
        if backend == "torch":
            engine.select_device(args.device)  # DeviceError: one line, exit status 1
            return api.resolve_model(args.model, args.scale, args.outscale, device=args.device)
        from superres.inference.onnx_backend import OnnxModel, onnx_providers

        providers = onnx_providers(args.device)
        if str(args.model or "").lower().endswith(".onnx"):
            model = OnnxModel.load(args.model, threads=args.threads, providers=providers)
            return api.resolve_model(model, args.scale, args.outscale)
        model, resize = api.resolve_model(args.model, args.scale, args.outscale, device="cpu")
        return OnnxModel.from_model(model, threads=args.threads, providers=providers), resize
    except DeviceError:
        raise  # not a usage error: main prints it, exit status 1
    except api.ScaleError as err:
        raise _scale_refused(err) from None
    except (ValueError, FileNotFoundError, ImportError) as err:
        raise UsageError(one_line(err)) from None


def _worker_model(args: argparse.Namespace, backend: str, threads: int) -> Any:
    """The model a Ray worker runs: what :func:`_load_model` loads here, with the worker's
    threads (a picklable loader: ``functools.partial`` of this function)."""
    return _load_model(argparse.Namespace(**{**vars(args), "threads": threads}), backend)[0]


def run(args: argparse.Namespace) -> int:
    from superres import api
    from superres.errors import ConfigError

    backend = _check_options(args)
    cluster = ray_cluster(args)
    try:
        jobs = api.plan_jobs(args.inputs, args.output, args.recursive, args.ext)
    except ConfigError as err:
        raise UsageError(str(err)) from None
    if not jobs:
        raise UsageError("no input images found")

    from tqdm import tqdm

    from superres.inference import engine

    if cluster is None:
        engine.set_threads(args.threads)
    model, resize = _load_model(args, backend)
    show = progress_enabled(args.quiet)
    bar = tqdm(total=len(jobs), unit="img", disable=not show or len(jobs) == 1,
               dynamic_ncols=True)  # fmt: skip
    tiles: dict = {}  # the tile bar of the running job, created when its first tile reports

    def on_tile(job: api.Job, done: int, total: int) -> None:
        tile_bar = tiles.get(job)
        if tile_bar is None:
            tiles.clear()
            hide = not show or len(jobs) > 1 or total < 2
            tile_bar = tqdm(total=total, unit="tile", leave=False, dynamic_ncols=True, disable=hide)
            tiles[job] = tile_bar
        tile_bar.n = done
        tile_bar.refresh()

    counts = {"done": 0, "skipped": 0, "failed": 0}
    ran: dict[str, int] = {}  # model label -> inputs it upscaled
    lossy: dict[str, int] = {}  # model label -> lossy-coded inputs among them
    try:
        auto = args.model is None and backend == "torch"  # the tier is chosen per input
        options = dict(
            scale=args.scale if auto else None, outscale=args.outscale if auto else resize,
            overwrite=args.overwrite, tile=args.tile, overlap=args.overlap,
            quality=args.quality, ensemble=args.ensemble,
        )  # fmt: skip
        if cluster is None:
            results = api.run_jobs(jobs, None if auto else model, progress=on_tile, **options)
        else:
            from superres.apps.batch import upscale_jobs

            threads = cluster.threads_per_worker
            loader = None if auto else functools.partial(_worker_model, args, backend, threads)
            results = upscale_jobs(jobs, loader, cluster=cluster, **options)
        for result in results:
            for tile_bar in tiles.values():
                tile_bar.close()
            counts[result.status] += 1
            if result.status == "done":
                ran[result.model] = ran.get(result.model, 0) + 1
                lossy[result.model] = lossy.get(result.model, 0) + result.lossy
            if result.status == "skipped":
                tqdm.write(f"skipped {result.job.target}: exists (use --overwrite)",
                           file=sys.stderr)  # fmt: skip
            elif result.status == "failed":
                tqdm.write(f"superres: error: {cli_message(result.error)}", file=sys.stderr)
            if cluster is None:
                bar.set_postfix_str(result.job.source.name, refresh=False)
            else:  # results arrive out of order, from several workers
                bar.set_postfix_str(", ".join(f"{n} {k}" for k, n in counts.items()),
                                    refresh=False)  # fmt: skip
            bar.update(1)
    except ConfigError as err:
        raise UsageError(str(err)) from None
    finally:
        for tile_bar in tiles.values():
            tile_bar.close()
        bar.close()
    if not args.quiet:
        print(
            f"{counts['done']} upscaled, {counts['skipped']} skipped, {counts['failed']} failed "
            f"({_models_used(ran, lossy, api.model_label(model), auto)}"
            f"{', onnxruntime' if backend == 'onnx' else ''}"
            f"{f', resized to x{resize:g}' if resize else ''})",
            file=sys.stderr,
        )
    return EXIT_FAILED if counts["failed"] else EXIT_OK


def _models_used(ran: dict[str, int], lossy: dict[str, int], planned: str, auto: bool) -> str:
    """``model quality x4``, or for a default run that chose by input, e.g. ``model codec x4
    (chosen for lossy-coded input)`` or ``models quality x4 for 2, codec x4 for 1 lossy``."""
    if not ran:
        return f"model {planned}"
    if len(ran) == 1:
        label = next(iter(ran))
        reason = " (chosen for lossy-coded input)" if auto and lossy.get(label) else ""
        return f"model {label}{reason}"
    parts = [f"{label} for {n}" + (" lossy" if lossy.get(label) == n else "")
             for label, n in ran.items()]  # fmt: skip
    return "models " + ", ".join(parts)
