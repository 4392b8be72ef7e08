"""Peak memory and time of upscaling a large synthetic image and writing it to disk.

    python benchmarks/memory_upscale.py --width 4000 --height 3000 --scale 4 --model espcn \\
        --out /tmp/big.png

The model gets random weights (seed 0): memory and speed do not depend on the weights. The
last line of stdout is a JSON report (``peak_rss_bytes`` is this process's maximum resident
set size, from ``getrusage``); run it under ``/usr/bin/time -v`` for an outside view.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from superres.core import io
from superres.inference import engine
from superres.models import SRModel, create_model


def synthesise(height: int, width: int, bits: int = 8) -> np.ndarray:
    """A deterministic RGB test image: two ramps and an XOR texture, no float temporaries."""
    dtype = np.uint8 if bits == 8 else np.uint16
    peak = np.iinfo(dtype).max
    pixels = np.empty((height, width, 3), dtype)
    x = np.arange(width, dtype=np.int64)
    y = np.arange(height, dtype=np.int64)
    pixels[:, :, 0] = (x * peak // max(width - 1, 1)).astype(dtype)[None, :]
    pixels[:, :, 1] = (y * peak // max(height - 1, 1)).astype(dtype)[:, None]
    for row in range(0, height, 256):  # bounded temporaries
        yy = y[row : row + 256, None]
        pixels[row : row + 256, :, 2] = (((x[None, :] ^ yy) & 255) * (peak // 255)).astype(dtype)
    return pixels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--model", default="espcn", help="registered architecture (random weights)")
    parser.add_argument("--out", type=Path, required=True, help="output image (.png, .tif...)")
    parser.add_argument("--bits", type=int, choices=(8, 16), default=8)
    parser.add_argument("--tile", type=int, default=None, help="default: automatic")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    engine.set_threads(args.threads)
    torch.manual_seed(0)
    model = SRModel.from_module(create_model(args.model, scale=args.scale)).eval()
    model.to(engine.select_device(args.device))
    image = io.Image(pixels=synthesise(args.height, args.width, args.bits))

    start = time.perf_counter()
    result = engine.upscale_image(image, model, tile=args.tile)
    upscaled = time.perf_counter()
    io.write_image(args.out, result, overwrite=True)
    written = time.perf_counter()

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    report = {
        "model": args.model,
        "scale": args.scale,
        "input": list(image.pixels.shape),
        "output": list(result.pixels.shape),
        "dtype": str(result.pixels.dtype),
        "tile": args.tile,
        "threads": torch.get_num_threads(),
        "upscale_s": round(upscaled - start, 2),
        "write_s": round(written - upscaled, 2),
        "total_s": round(written - start, 2),
        "out_bytes": args.out.stat().st_size,
        "peak_rss_bytes": peak,
        "peak_rss_mib": round(peak / 2**20, 1),
    }
    print(
        f"{args.model} x{args.scale}: {args.width}x{args.height} -> "
        f"{result.pixels.shape[1]}x{result.pixels.shape[0]} in {report['total_s']} s "
        f"(upscale {report['upscale_s']} s, write {report['write_s']} s), "
        f"peak RSS {report['peak_rss_mib']} MiB",
        file=sys.stderr,
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
