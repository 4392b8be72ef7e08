"""``superres bench``: latency, throughput, GFLOP/s and memory against Pillow and OpenCV."""

from __future__ import annotations

import argparse
import sys

from superres.apps.cli.common import (
    EXIT_OK,
    UsageError,
    add_quiet,
    check_output_file,
    non_negative_int,
    one_line,
    positive_int,
)

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  superres bench --models fast,quality --scales 4 --size 640x480
  superres bench --backend onnx --threads 4 --json bench.json
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    be = subparsers.add_parser(
        "bench", help="latency, throughput, GFLOP/s and memory vs Pillow/OpenCV",
        description="Time models on a synthetic image and compare them with Pillow's and "
                    "OpenCV's resizers and an fp32 matmul reference.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    be.add_argument("--models", default=None, metavar="A,B",
                    help="comma-separated shipped names or checkpoints (default: every "
                         "shipped name at the scales it has)")  # fmt: skip
    be.add_argument("--scales", default="2,3,4", metavar="2,3,4", help="default 2,3,4")
    be.add_argument("--size", default="640x480", metavar="WxH",
                    help="input size (default 640x480)")  # fmt: skip
    be.add_argument("--threads", type=positive_int, default=None, metavar="N",
                    help="threads for torch, onnxruntime, OpenCV and the matmul reference "
                         "(default: torch's)")  # fmt: skip
    be.add_argument("--repeats", type=positive_int, default=5, metavar="R",
                    help="timed runs, median (default 5)")  # fmt: skip
    be.add_argument("--warmup", type=non_negative_int, default=1, metavar="W",
                    help="untimed runs first (default 1)")  # fmt: skip
    be.add_argument("--backend", default="torch", metavar="torch|onnx",
                    help="runtime of the models (default torch)")  # fmt: skip
    be.add_argument("--tile", type=non_negative_int, default=None, metavar="T",
                    help="engine tile size (default: automatic, 0: no tiling)")  # fmt: skip
    be.add_argument("--peers", default=None, metavar="DIR",
                    help="folder of OpenCV dnn_superres .pb files (ESPCN_x4.pb, ...) to compare "
                         "(needs opencv-contrib-python)")  # fmt: skip
    be.add_argument("--matmul-size", type=positive_int, default=2048, metavar="N",
                    help="side of the fp32 matmul reference (default 2048)")  # fmt: skip
    be.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")
    add_quiet(be, "no per-measurement lines")
    be.set_defaults(func=run)
    return be


def run(args: argparse.Namespace) -> int:
    check_output_file(args.json, "--json")
    from superres.evaluation import bench

    models = None
    if args.models is not None:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        if not models:
            raise UsageError(f"--models needs at least one name, got '{args.models}'")
    try:
        scales = bench.parse_scales(args.scales)
    except ValueError as err:
        raise UsageError(f"--scales: {one_line(err)}") from None
    try:
        size = bench.parse_size(args.size)
    except ValueError as err:
        raise UsageError(f"--size: {one_line(err)}") from None
    try:
        report = bench.run_bench(
            models, scales, size, threads=args.threads, repeats=args.repeats,
            warmup=args.warmup, backend=args.backend, peers=args.peers, tile=args.tile,
            matmul_size=args.matmul_size,
            progress=None if args.quiet else lambda line: print(line, file=sys.stderr),
        )  # fmt: skip
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as err:
        raise UsageError(one_line(err)) from None
    print(report.table())
    if args.json:
        bench.write_json(report, args.json)
    return EXIT_OK
