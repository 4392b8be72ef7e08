"""``superres eval``: PSNR/SSIM of a model on folders of HR images (the literature's protocol)."""

from __future__ import annotations

import argparse
from pathlib import Path

from superres.apps.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_model_options,
    check_output_file,
    error,
    one_line,
    progress_enabled,
    scale_choice,
)
from superres.apps.cli.engines import add_engine_options, ray_cluster

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  superres eval --data Set5 --data Set14 --model quality --scale 4
  superres eval --data Set5 -m runs/espcn_x2/best.safetensors --json espcn_x2.json
  superres eval --data Set5 --data Set14 --data BSD100 --engine ray   (one Ray task per folder)
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    ev = subparsers.add_parser(
        "eval", help="benchmark a model on HR image folders",
        description="Score a model on folders of HR images: modcrop, MATLAB-bicubic LR, "
                    "Y-channel PSNR and SSIM with the scale cropped from the borders.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    ev.add_argument("--data", action="append", required=True, metavar="DIR",
                    help="folder of HR images (repeatable)")  # fmt: skip
    ev.add_argument("--scale", "-s", type=scale_choice, default=None,
                    help="scale to evaluate, 2, 3 or 4 (default: a checkpoint's own scale, "
                         "x4 for a shipped name); a checkpoint of another scale is "
                         "refused")  # fmt: skip
    ev.add_argument("--json", default=None, metavar="FILE", help="write results as JSON")
    ev.add_argument("--per-image", action="store_true", help="include per-image scores in JSON")
    ev.add_argument("--ensemble", action="store_true",
                    help="geometric self-ensemble: average over the 8 flips and rotations "
                         "(about 8x slower, a little sharper; README gives the gain)")  # fmt: skip
    add_model_options(ev)
    add_engine_options(ev)
    ev.set_defaults(func=run)
    return ev


def run(args: argparse.Namespace) -> int:
    for folder in args.data:
        if not Path(folder).is_dir():
            raise UsageError(f"{folder}: not a folder")
    check_output_file(args.json, "--json")
    cluster = ray_cluster(args)

    from tqdm import tqdm

    from superres import api
    from superres.core.io import atomic_write_bytes
    from superres.evaluation import evaluate
    from superres.inference import engine
    from superres.weights import zoo

    if cluster is None:
        engine.set_threads(args.threads)
    device = engine.select_device(args.device)  # DeviceError: one line, exit 1
    try:
        model = api.load_model(args.model, scale=args.scale, device=str(device))
    except api.ScaleError as err:
        raise UsageError(
            f"{err.name}: the model is x{err.have}, so --scale {err.wanted} is refused (leave "
            f"out --scale to evaluate it at x{err.have})"
        ) from None
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(one_line(err)) from None
    name = args.model or zoo.default_model_name()
    bars: dict[str, tqdm] = {}
    show = progress_enabled(args.quiet)

    def progress(dataset: str, done: int, total: int) -> None:
        if not show:
            return
        bar = bars.get(dataset)
        if bar is None:
            bar = bars[dataset] = tqdm(total=total, desc=dataset, unit="img", leave=False)
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    try:
        if cluster is None:
            result = evaluate(
                model, args.data, model.scale, tile=args.tile, device=device,
                progress=progress, name=str(name), ensemble=args.ensemble,
            )  # fmt: skip
        else:
            from superres.apps.batch import evaluate_folders

            folders = tqdm(total=len(args.data), unit="folder", disable=not show, leave=False)

            def finished(dataset: str, done: int, total: int) -> None:
                folders.set_postfix_str(dataset, refresh=False)
                folders.update(done - folders.n)

            try:
                result = evaluate_folders(
                    args.model, args.data, args.scale, tile=args.tile, device=args.device,
                    ensemble=args.ensemble, name=str(name), cluster=cluster, progress=finished,
                )  # fmt: skip
            finally:
                folders.close()
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(one_line(err)) from None
    print(f"model {result.model}  x{result.scale}" + ("  (self-ensemble)" if args.ensemble else ""))
    print(result.table())
    if args.json:
        payload = result.to_json(per_image=args.per_image).encode() + b"\n"
        try:
            atomic_write_bytes(args.json, payload, overwrite=True)
        except OSError as err:
            error(f"{args.json}: cannot write ({err.strerror or err})")
            return EXIT_FAILED
    return EXIT_OK
