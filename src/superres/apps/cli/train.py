"""``superres train``: train a model from a YAML config (``torchrun`` for DDP)."""

from __future__ import annotations

import argparse
import os
import sys

from superres.apps.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, cli_message

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  superres train --config configs/example_espcn_x2.yaml
  superres train --config configs/quality_x4.yaml --set optim.lr=2e-4 --resume
  superres train --config configs/quality_x4.yaml --resume --stop-at 5000   # part of it
  torchrun --standalone --nproc_per_node 4 -m superres train --config configs/x.yaml
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="train a model from a YAML config (torchrun for DDP)",
        description="Train a model as a YAML config says; the run folder (config 'output') "
                    "gets config.yaml, log.jsonl, state.safetensors and last/best weights.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--config", "-c", required=True, metavar="FILE.yaml",
                        help="training config (see configs/example_espcn_x2.yaml)")  # fmt: skip
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optim.lr=5e-4 "
                             "--set model.hparams.n1=32 (repeatable; values are YAML)")  # fmt: skip
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the output folder (starts it if it has no "
                             "training state yet)")  # fmt: skip
    parser.add_argument("--stop-at", type=int, metavar="N",
                        help="stop after iteration N of the config's schedule (which is not "
                             "changed), with the state and weights saved there; --resume "
                             "goes on from it")  # fmt: skip
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config and exit")  # fmt: skip
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    parser.set_defaults(func=run)
    return parser


def _error(message: str) -> None:
    if os.environ.get("RANK", "0") == "0":  # one line per run, not one per process
        text = cli_message(message).replace(
            "already holds a training run; resume it",
            "already holds a training run; pass --resume to continue it",
        )
        print(f"superres: error: {text}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run ``superres train``; returns the exit status (0 done, 1 training failed, 2 a bad
    config or setup)."""
    from superres.training.config import ConfigError, dump_config, load_config
    from superres.training.loop import train

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_USAGE
    if args.print_config:
        print(dump_config(config), end="")
        return EXIT_OK
    try:
        train(config, resume=args.resume, progress=not args.quiet, stop_at=args.stop_at)
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except Exception as exc:  # a SuperresError (TrainingError, ImageError...): one line
        from superres.errors import SuperresError

        if not isinstance(exc, SuperresError):
            raise
        _error(str(exc))
        return EXIT_FAILED
    return EXIT_OK
