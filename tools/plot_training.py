"""Plot the validation PSNR of training runs from their ``log.jsonl`` (needs matplotlib).

    python tools/plot_training.py runs/quality_x4_long -o curve.png \
        --ref "IMDN x4 (published)=32.21" --ref "issue 13 floor=31.85"

Each RUN is a run folder or a ``log.jsonl``; ``RUN@N`` shifts its iterations by N (a later
stage drawn after the one it continues). The learning rate is drawn beneath. README's
training curve of the quality tier is made with::

    python tools/plot_training.py checkpoints/quality_x4_long \
        checkpoints/quality_x4_rescale@40000 -o docs/training/quality_x4_long.png \
        --title "quality x4 on 491 images, then with scale augmentation (2 CPU cores)" \
        --ref "shipped quality x4 before issue 13=31.46" --ref "issue 13 floor=31.85" \
        --ref "IMDN x4 (published, DIV2K, GPU)=32.21" --iterations 80000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from superres.errors import ConfigError
from superres.training.curves import plot_training, read_log


def parse_ref(text: str) -> tuple[str, float]:
    label, sep, value = text.rpartition("=")
    try:
        if not sep or not label:
            raise ValueError
        return label, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ref {text!r}: expected LABEL=DB") from None


def parse_run(text: str) -> tuple[str, int]:
    path, sep, offset = text.rpartition("@")
    if sep and offset.isdigit():
        return path, int(offset)
    return text, 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="RUN", help="run folder or log.jsonl [@OFFSET]")
    ap.add_argument("-o", "--output", type=Path, required=True, help=".png, .svg or .pdf")
    ap.add_argument("--dataset", default=None, help="validation set (default: the first logged)")
    ap.add_argument("--ref", type=parse_ref, action="append", default=[], metavar="LABEL=DB")
    ap.add_argument("--title", default="")
    ap.add_argument("--iterations", type=int, default=None, help="x axis to this iteration")
    args = ap.parse_args(argv)
    try:
        logs = [read_log(path, offset=offset) for path, offset in map(parse_run, args.runs)]
        plot_training(
            logs,
            args.output,
            dataset=args.dataset,
            refs=args.ref,
            title=args.title,
            iterations=args.iterations,
        )
    except (ConfigError, ImportError) as exc:
        print(f"plot_training: {exc}", file=sys.stderr)
        return 2
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
