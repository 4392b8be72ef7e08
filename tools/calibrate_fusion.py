"""Choose classical burst fusion's ``sigma`` and deconvolution strength on training bursts.

    python tools/calibrate_fusion.py [--scales 2,4] [--frames 1,2,4,8,16] [--images 24]

For a fixed random sample of training images (T91, BSD200, BSD200test: never a benchmark),
each cropped to its central 240 x 240 pixels, a synthetic burst is made by the protocol of
:mod:`superres.core.burst` (``area`` and ``bicubic`` downscalers, seed = image index), the
frames are registered (:func:`superres.core.registration.register`, as ``upscale_burst``
does) and fused by :func:`superres.core.fusion.fuse_classical` at every ``(sigma, strength)``
of a grid. The best pair by mean PSNR-Y (16-pixel border) per degradation, scale and N is
printed as the ``FUSION_PARAMS`` table of :mod:`superres.core.fusion`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

import numpy as np
import torch

from superres.core.burst import make_burst, score_burst
from superres.core.degrade import list_images, load_hr
from superres.core.fusion import fuse_classical
from superres.core.registration import register

REPO = Path(__file__).resolve().parents[1]
TRAINING = ("T91", "BSD200", "BSD200test")
SIGMAS = (0.3, 0.4, 0.55, 0.75, 1.0, 1.4, 2.0, 2.8)
STRENGTHS = (0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16)


def central_crop(hr: torch.Tensor, side: int) -> torch.Tensor:
    h, w = hr.shape[-2:]
    y, x = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return hr[:, y : y + side, x : x + side]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = Path(os.environ.get("SUPERRES_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=data)
    parser.add_argument("--scales", default="2,4")
    parser.add_argument("--frames", default="1,2,4,8,16")
    parser.add_argument("--degradations", default="area,bicubic")
    parser.add_argument("--images", type=int, default=24)
    args = parser.parse_args(argv)
    files = [f for folder in TRAINING for f in list_images(args.data / folder)]
    rng = np.random.default_rng(0)
    files = [files[i] for i in sorted(rng.choice(len(files), args.images, replace=False))]
    hrs = []
    for path in files:
        hr = torch.from_numpy(load_hr(path).transpose(2, 0, 1).copy()).float() / 255
        if min(hr.shape[-2:]) >= 96:
            hrs.append(central_crop(hr, 240))
    table: dict[tuple[str, int], dict[int, tuple[float, float, float]]] = {}
    for degradation in args.degradations.split(","):
        for scale in (int(s) for s in args.scales.split(",")):
            for n in (int(f) for f in args.frames.split(",")):
                start = time.perf_counter()
                bursts = [
                    make_burst(hr, scale, n, downscaler=degradation, seed=i)
                    for i, hr in enumerate(hrs)
                ]
                shifts = [register(b.frames) for b in bursts]
                best = None
                for sigma, strength in itertools.product(SIGMAS, STRENGTHS):
                    scores = [
                        score_burst(
                            fuse_classical(b.frames, r, scale, degradation=degradation,
                                           sigma=sigma, strength=strength).clamp(0, 1),
                            b.reference_hr,
                        )
                        for b, r in zip(bursts, shifts, strict=True)
                    ]  # fmt: skip
                    value = float(np.mean(scores))
                    if best is None or value > best[2]:
                        best = (sigma, strength, value)
                table.setdefault((degradation, scale), {})[n] = best
                print(f"{degradation} x{scale} N={n}: sigma {best[0]} strength {best[1]} "
                      f"-> {best[2]:.3f} dB ({len(hrs)} crops, "
                      f"{time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    print("\nFUSION_PARAMS = {")
    for key, rows in table.items():
        cells = ", ".join(f"{n}: ({v[0]}, {v[1]})" for n, v in rows.items())
        print(f"    {key!r}: {{{cells}}},")
    print("}")


if __name__ == "__main__":
    main()
