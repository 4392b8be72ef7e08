"""Choose the ``wiener`` pseudo-model's strength per scale on training images.

    python tools/calibrate_wiener.py [--scales 2,3,4] [--images 60]

For a fixed random sample of training images (T91, BSD200, BSD200test: never a benchmark),
each HR image is modcropped and downscaled (MATLAB bicubic, 8-bit), upscaled by the
``wiener`` model at every strength of a log grid, and scored by PSNR-Y (``scale`` pixels
cropped). The strength with the best mean PSNR is printed per scale, with the bicubic
figure of the same images, in the form ``superres.models.wiener.STRENGTH`` takes.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from superres.core.degrade import list_images, load_hr, make_lr, modcrop
from superres.core.metrics import psnr
from superres.core.resize import imresize, quantize
from superres.models import create_model

REPO = Path(__file__).resolve().parents[1]
TRAINING = ("T91", "BSD200", "BSD200test")
GRID = (0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.07, 0.085, 0.1, 0.14, 0.2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = Path(os.environ.get("SUPERRES_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=data)
    parser.add_argument("--scales", default="2,3,4")
    parser.add_argument("--images", type=int, default=60)
    args = parser.parse_args(argv)
    files = [f for folder in TRAINING for f in list_images(args.data / folder)]
    rng = np.random.default_rng(0)
    files = [files[i] for i in sorted(rng.choice(len(files), args.images, replace=False))]
    for scale in (int(s) for s in args.scales.split(",")):
        pairs = []
        for path in files:
            hr = torch.from_numpy(modcrop(load_hr(path), scale).transpose(2, 0, 1).copy())
            hr = hr.float() / 255
            pairs.append((hr, make_lr(hr, scale)))

        def score(upscale, pairs=pairs, scale=scale) -> float:  # noqa: ANN001
            with torch.no_grad():
                values = [
                    psnr(quantize(upscale(lr[None]).clamp(0, 1)), hr[None], crop=scale)
                    for hr, lr in pairs
                ]
            return float(np.mean(values))

        bicubic = score(lambda x, scale=scale: imresize(x, scale))
        results = {g: score(create_model("wiener", scale=scale, strength=g)) for g in GRID}
        best = max(results, key=results.get)
        table = "  ".join(f"{g:g}: {v:.3f}" for g, v in results.items())
        print(f"x{scale}: bicubic {bicubic:.3f} dB | {table}")
        gain = results[best] - bicubic
        print(f"x{scale}: best strength {best:g} ({results[best]:.3f} dB, "
              f"+{gain:.3f} over bicubic, {len(pairs)} images)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
