"""README's self-ensemble table: the gain and the cost of ``--ensemble`` per tier.

    python benchmarks/ensemble.py [--data ../shared/data] [--models fast,quality] [--scales 4]

For each shipped tier and scale, scores the model on Set5, Set14 and BSD100 with the
project's evaluator (MATLAB-bicubic LR, Y-channel PSNR, ``scale`` border pixels cropped)
once as it is and once with the geometric self-ensemble (the mean over the 8 flips and
rotations), in the same process, and prints the PSNR gain per benchmark and the ratio of the
model time (``model_seconds``, the time inside the engine) with and without the ensemble.
That ratio includes a first run at every new image shape (the ensemble meets 2 shapes per
image, transposed and not); the steady-state cost on one ``--size`` image (median of
``--repeats`` runs after a warm-up, uint8 in and out through the engine) is printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

import superres
from superres.inference import engine

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = ("Set5", "Set14", "BSD100")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("SUPERRES_DATA", REPO.parent / "shared" / "data")
    parser.add_argument("--data", type=Path, default=Path(default))
    parser.add_argument("--models", default="fast,quality")
    parser.add_argument("--scales", default="4")
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS))
    parser.add_argument("--size", default="640x480", help="steady-state timing input (WxH)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    steady = []
    folders = [args.data / b for b in args.benchmarks.split(",")]
    print("| model | scale | " + " | ".join(f"{f.name} plain → ensemble" for f in folders)
          + " | time ratio |")  # fmt: skip
    print("|---|---|" + "---|" * len(folders) + "---|")
    for name in args.models.split(","):
        for scale in (int(s) for s in args.scales.split(",")):
            model = superres.load_model(name, scale=scale)
            plain = superres.evaluate(model, folders)
            ensemble = superres.evaluate(model, folders, ensemble=True)
            cells = []
            for f in folders:
                a, b = plain.datasets[f.name], ensemble.datasets[f.name]
                cells.append(f"{a.psnr:.2f} → {b.psnr:.2f} ({b.psnr - a.psnr:+.2f})")
            t_plain = sum(r.model_seconds for r in plain.datasets.values())
            t_ens = sum(r.model_seconds for r in ensemble.datasets.values())
            print(f"| {name} | x{scale} | " + " | ".join(cells) + f" | {t_ens / t_plain:.1f}x |",
                  flush=True)  # fmt: skip
            times = {}
            for ensemble_on in (False, True):
                engine.upscale_array(image, model, ensemble=ensemble_on)  # warm-up
                runs = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    engine.upscale_array(image, model, ensemble=ensemble_on)
                    runs.append(time.perf_counter() - start)
                times[ensemble_on] = statistics.median(runs)
            steady.append((name, scale, times[False], times[True]))
    print(f"\nsteady state, one {args.size} input (median of {args.repeats} after a warm-up):")
    for name, scale, plain_s, ens_s in steady:
        print(f"  {name} x{scale}: {plain_s:.3f} s -> {ens_s:.3f} s ({ens_s / plain_s:.1f}x)")


if __name__ == "__main__":
    main()
