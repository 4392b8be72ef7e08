"""README's burst table: PSNR-Y against the number of frames N for classical fusion, the
burst network, the quality tier run per frame and fused, and the single-image quality tier,
by the protocol of :mod:`superres.core.burst`.

    python benchmarks/burst_table.py [--data ../shared/data] [--scales 2,4]
        [--datasets Set5,Set14,BSD100] [--frames 1,2,4,8,16] [--downscalers area,bicubic]
        [--methods classical,burst,perframe] [--threads 1] [--json burst.json]

For every HR image (index ``i`` in its folder) a burst of ``max(frames)`` frames is made with
``make_burst(hr, s, N, downscaler, seed=i)`` for both downscalers (``area`` and ``bicubic``,
no noise); the first N of its frames are the burst of N frames (the shifts are drawn in
order, so they are the frames ``make_burst`` gives for N). Each is fused by
``superres.upscale_burst`` (what ``superres burst`` runs: registration included) with
``degradation`` equal to the protocol's downscaler: ``classical``; ``burst``, the learned
method with the shipped burst network (at the scales it is shipped for); ``perframe``, the
learned method with the single-image quality tier on every frame (its per-frame SR outputs
are computed once per image and reused for every N: the same numbers as separate runs, less
time). Scores are on frame 0's HR grid (PSNR-Y, 16-pixel border). ``quality`` is the
single-image quality tier on frame 0.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

import superres
from superres.api import burst_model
from superres.core.burst import make_burst, score_burst
from superres.core.degrade import list_images, load_hr
from superres.inference.burst import fuse_burst

REPO = Path(__file__).resolve().parents[1]

#: Methods of the table and their row labels.
LABELS = {
    "classical": "classical",
    "burst": "burst network",
    "perframe": "quality per frame + fusion",
}


def to_uint8(frame: torch.Tensor) -> np.ndarray:
    return (frame.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def from_uint8(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("SUPERRES_DATA", REPO.parent / "shared" / "data")
    parser.add_argument("--data", type=Path, default=Path(default))
    parser.add_argument("--scales", default="2,4")
    parser.add_argument("--datasets", default="Set5,Set14,BSD100")
    parser.add_argument("--frames", default="1,2,4,8,16")
    parser.add_argument("--downscalers", default="area,bicubic")
    parser.add_argument("--methods", default=",".join(LABELS),
                        help="classical, burst (the shipped burst network, where shipped), "
                             "perframe (quality tier on every frame + fusion)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None)
    # One thread: the small per-frame operations run fastest single-threaded (run one
    # process per downscaler to use more cores).
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    counts = [int(n) for n in args.frames.split(",")]
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(LABELS))
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)} (use {', '.join(LABELS)})")
    records = []
    for downscaler in args.downscalers.split(","):
        for scale in (int(s) for s in args.scales.split(",")):
            quality = superres.load_model("quality", scale=scale)
            network = burst_model(scale)
            for name in args.datasets.split(","):
                start = time.perf_counter()
                scores: dict[str, list[float]] = {"quality": []}
                for i, path in enumerate(list_images(args.data / name)):
                    hr = torch.from_numpy(load_hr(path).transpose(2, 0, 1).copy()).float() / 255
                    burst = make_burst(hr, scale, max(counts), downscaler=downscaler, seed=i)
                    frames = [to_uint8(f) for f in burst.frames]
                    truth = burst.reference_hr
                    some = len(frames) if "perframe" in methods else 1
                    sr = [from_uint8(superres.upscale(f, quality)) for f in frames[:some]]
                    scores["quality"].append(score_burst(sr[0], truth))
                    for n in counts:
                        if "classical" in methods:
                            classical = superres.upscale_burst(frames[:n], scale,
                                                               degradation=downscaler)  # fmt: skip
                            scores.setdefault(f"classical/{n}", []).append(
                                score_burst(from_uint8(classical), truth)
                            )
                        if "burst" in methods and network is not None:
                            fused = superres.upscale_burst(frames[:n], scale, method="learned",
                                                           model=network,
                                                           degradation=downscaler)  # fmt: skip
                            scores.setdefault(f"burst/{n}", []).append(
                                score_burst(from_uint8(fused), truth)
                            )
                        if "perframe" in methods:
                            lr = torch.stack([from_uint8(f) for f in frames[:n]])
                            learned = fuse_burst(lr, scale, method="learned",
                                                 degradation=downscaler,
                                                 upscaled=torch.stack(sr[:n])).image  # fmt: skip
                            scores.setdefault(f"perframe/{n}", []).append(
                                score_burst(learned.clamp(0, 1), truth)
                            )
                means = {k: float(np.mean(v)) for k, v in scores.items()}
                record = {"downscaler": downscaler, "scale": scale, "dataset": name,
                          "images": len(scores["quality"]), "psnr": means,
                          "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
                records.append(record)
                print(json.dumps(record), flush=True)
    header = "| protocol | scale | dataset | method | " + " | ".join(f"N={n}" for n in counts)
    print("\n" + header + " |")
    print("|---|---|---|---|" + "---|" * len(counts))
    for r in records:
        for method, label in LABELS.items():
            if f"{method}/{counts[0]}" not in r["psnr"]:
                continue
            cells = " | ".join(f"{r['psnr'][f'{method}/{n}']:.2f}" for n in counts)
            print(f"| {r['downscaler']} | x{r['scale']} | {r['dataset']} | {label} | {cells} |")
        q = f"{r['psnr']['quality']:.2f}"
        print(f"| {r['downscaler']} | x{r['scale']} | {r['dataset']} | quality (frame 0) | {q} |"
              + " |" * (len(counts) - 1))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
