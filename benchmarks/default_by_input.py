"""README's "right network for the input" table: the default model on clean and JPEG inputs.

    python benchmarks/default_by_input.py [--data DIR/Kodak24] [--scales 2,4] [--json OUT]

For every Kodak24 image and scale: the HR image is cropped to a multiple of the scale and
downscaled with MATLAB bicubic (the project's LR synthesis); the LR is given to the upscaler
as a lossless PNG ("clean") and as JPEG at quality 50, 75 and 90 (Pillow, 4:2:0), the way a
user's downscaled photo arrives. Each input is upscaled through the file API exactly as
``superres upscale IN -o OUT`` does with no ``--model`` (the tier chosen by the input), and
with the quality tier and bicubic forced, and scored against the HR image with ``scale``
border pixels cropped: Y-channel PSNR (the SR protocol) and RGB PSNR, averaged over the
images. Prints one Markdown table, the model the default chose for each input, and the wall
time.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import superres
from superres import api
from superres.core.degrade import list_images, load_hr, make_lr_array, modcrop
from superres.core.metrics import psnr, psnr_rgb

REPO = Path(__file__).resolve().parents[1]
INPUTS = (("clean", None), ("JPEG q90", 90), ("JPEG q75", 75), ("JPEG q50", 50))
METHODS = ("default", "quality", "bicubic")


def score(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float]:
    """``(Y-PSNR, RGB PSNR)`` with ``scale`` border pixels cropped."""
    c = scale
    return psnr(sr, hr, crop=c), psnr_rgb(sr[c:-c, c:-c], hr[c:-c, c:-c])


def encode(lr: np.ndarray, quality: int | None) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    if quality is None:
        Image.fromarray(lr).save(buffer, "PNG")
        return buffer.getvalue(), ".png"
    Image.fromarray(lr).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue(), ".jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = Path(os.environ.get("SUPERRES_DATA", REPO.parent / "shared" / "data")) / "Kodak24"
    parser.add_argument("--data", type=Path, default=data)
    parser.add_argument("--scales", default="2,4")
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    files = list_images(args.data)[: args.limit]
    scales = [int(s) for s in args.scales.split(",")]
    start = time.perf_counter()
    scores: dict[tuple[int, str, str], list[float]] = {}
    chosen: dict[tuple[int, str], set[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scale in scales:
            forced = {m: superres.load_model(m, scale=scale) for m in ("quality", "bicubic")}
            for path in files:
                hr = modcrop(load_hr(path), scale)
                lr = make_lr_array(hr, scale)
                for label, quality in INPUTS:
                    data_bytes, ext = encode(lr, quality)
                    src = Path(tmp) / f"in{ext}"
                    src.write_bytes(data_bytes)
                    jobs = api.plan_jobs([src], Path(tmp) / "out.png")
                    (result,) = list(api.run_jobs(jobs, scale=scale, overwrite=True))
                    if result.status != "done":
                        raise SystemExit(f"{path.name}: {result.error}")
                    chosen.setdefault((scale, label), set()).add(result.model)
                    sr = np.asarray(Image.open(jobs[0].target).convert("RGB"))
                    scores.setdefault((scale, label, "default"), []).append(score(sr, hr, scale))
                    pixels = np.asarray(Image.open(src).convert("RGB"))
                    for name, model in forced.items():
                        sr = superres.upscale(pixels, model)
                        scores.setdefault((scale, label, name), []).append(score(sr, hr, scale))
            print(f"x{scale} done ({time.perf_counter() - start:.0f} s)", flush=True)
    print()
    print("| scale | input | default runs | default | quality tier | bicubic | default - quality |")
    print("|---|---|---|---|---|---|---|")
    records = []
    for scale in scales:
        for label, _ in INPUTS:
            mean = {m: np.mean(scores[(scale, label, m)], axis=0) for m in METHODS}
            runs = ", ".join(sorted(chosen[(scale, label)]))
            cells = " | ".join(f"{mean[m][0]:.2f} / {mean[m][1]:.2f}" for m in METHODS)
            gain = mean["default"] - mean["quality"]
            print(f"| x{scale} | {label} | {runs} | {cells} | {gain[0]:+.2f} / {gain[1]:+.2f} |")
            records.append({"scale": scale, "input": label, "default_model": runs,
                            **{f"{m}_psnr_y": float(mean[m][0]) for m in METHODS},
                            **{f"{m}_psnr_rgb": float(mean[m][1]) for m in METHODS}})  # fmt: skip
    print("(cells: Y-PSNR / RGB PSNR in dB, scale border pixels cropped)")
    print(f"\n{len(files)} images, {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
