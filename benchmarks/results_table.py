"""The README results table: bicubic and every shipped model on Set5/Set14/BSD100, x2/x3/x4.

    python benchmarks/results_table.py [--data ../shared/data] [--json results.json]

Every number comes from :func:`superres.evaluate` (the evaluator of ``superres eval``):
MATLAB-bicubic LR, Y-channel PSNR/SSIM with ``scale`` border pixels cropped. Prints a
Markdown table (one row per model and scale).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import superres
from superres.weights import zoo

BENCHMARKS = ("Set5", "Set14", "BSD100")
REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("SUPERRES_DATA", REPO.parent / "shared" / "data")
    parser.add_argument("--data", type=Path, default=Path(default))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--scales", default="2,3,4")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    folders = [args.data / b for b in BENCHMARKS]
    tiers = ("fast", "quality", "codec")  # README order; any other shipped name after them
    shipped = {w.name for w in zoo.shipped_weights()}
    names = [
        *zoo.PARAMETER_FREE,
        *(t for t in tiers if t in shipped),
        *sorted(shipped - set(tiers)),
    ]
    rows, records = [], []
    for name in names:
        for scale in scales:
            try:
                model = superres.load_model(name, scale=scale)
            except ValueError:
                continue
            result = superres.evaluate(model, folders, scale=scale)
            cells = [f"{r.psnr:.2f} / {r.ssim:.4f}" for r in result.datasets.values()]
            rows.append(f"| {name} | x{scale} | {model.num_params:,} | " + " | ".join(cells) + " |")
            records.append({"model": name, "params": model.num_params, **result.to_dict()})
            print(rows[-1], flush=True)
    print()
    print("| model | scale | params | " + " | ".join(f"{b} PSNR / SSIM" for b in BENCHMARKS) + " |")
    print("|---|---|---|" + "---|" * len(BENCHMARKS))
    print("\n".join(rows))
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
