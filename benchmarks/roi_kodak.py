"""Region-of-interest compression on Kodak24: PSNR inside and outside a centred mask with and
without ``roi=``, at the same target bpp (issue 14's floor: +1.0 dB inside, every file
within the target).

For each codec and image, ``compress(image, codec=C, target_bpp=T, scale=S)`` is run once
without and once with ``roi=`` the centred rectangle of half the width and half the height
(a quarter of the image), as ``superres compress IN -o OUT.srz --codec C --target-bpp T
--scale S [--roi MASK.png]`` runs it; both files are decoded by ``decompress`` and scored
(PSNR-RGB on the 8-bit output inside the mask, outside it and over the whole image; bpp
counts every byte of the file). Prints a Markdown table (means over the images, the
smallest per-image gain inside, the largest bpp) and, with ``--json``, the per-image figures.

    python benchmarks/roi_kodak.py                      # all 24 images, jpeg and webp
    python benchmarks/roi_kodak.py --images 2 --codecs jpeg
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from superres.codec import ROI_WEIGHT, compress_detailed, decompress
from superres.codec.rd import load_images, psnr_regions
from superres.core.metrics import psnr_rgb
from superres.inference import engine

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "Kodak24"


def centred_mask(h: int, w: int) -> np.ndarray:
    """The centred rectangle of half the width and half the height."""
    mask = np.zeros((h, w), bool)
    mask[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = True
    return mask


def measure(
    pixels: np.ndarray, codec: str, target: float, scale: int, roi: np.ndarray | None,
    weight: float,
) -> dict:  # fmt: skip
    """One file: its bpp, quality, PSNR inside/outside ``mask`` and whole, and times."""
    h, w = pixels.shape[:2]
    mask = centred_mask(h, w)
    start = time.perf_counter()
    result = compress_detailed(
        pixels, codec=codec, target_bpp=target, scale=scale, roi=roi, roi_weight=weight
    )
    encoded = time.perf_counter()
    decoded = decompress(result.data).pixels
    finished = time.perf_counter()
    inside, outside = psnr_regions(decoded, pixels, mask)
    return {
        "bpp": result.bpp, "quality": result.quality, "roi_quality": result.roi_quality,
        "roi_bytes": result.roi_bytes, "psnr_in": inside, "psnr_out": outside,
        "psnr": psnr_rgb(decoded, pixels), "within": result.bpp <= target,
        "encode_s": encoded - start, "decode_s": finished - encoded,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=None, help="only the first N images")
    parser.add_argument("--codecs", default="jpeg,webp")
    parser.add_argument("--target-bpp", type=float, default=0.25)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--roi-weight", type=float, default=ROI_WEIGHT)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write per-image figures")
    args = parser.parse_args(argv)
    engine.set_threads(args.threads)
    images = load_images(args.data)[: args.images]
    began = time.perf_counter()
    report: dict[str, dict] = {}
    rows = []
    for codec in args.codecs.split(","):
        per_image = []
        for name, pixels in images:
            plain = measure(pixels, codec, args.target_bpp, args.scale, None, args.roi_weight)
            mask = centred_mask(*pixels.shape[:2])
            roi = measure(pixels, codec, args.target_bpp, args.scale, mask, args.roi_weight)
            per_image.append({"image": name, "plain": plain, "roi": roi})
            print(
                f"{codec} {name}: inside {plain['psnr_in']:.2f} -> {roi['psnr_in']:.2f} dB, "
                f"outside {plain['psnr_out']:.2f} -> {roi['psnr_out']:.2f} dB, bpp "
                f"{plain['bpp']:.4f} / {roi['bpp']:.4f}",
                flush=True,
            )
        report[codec] = {"images": per_image}
        for kind in ("plain", "roi"):
            runs = [p[kind] for p in per_image]
            mean = {k: float(np.mean([r[k] for r in runs])) for k in
                    ("psnr_in", "psnr_out", "psnr", "bpp", "encode_s", "decode_s")}  # fmt: skip
            gains = [p["roi"]["psnr_in"] - p["plain"]["psnr_in"] for p in per_image]
            rows.append((codec, kind, mean, max(r["bpp"] for r in runs),
                         sum(r["within"] for r in runs), len(runs), min(gains)))  # fmt: skip
            report[codec][kind] = mean
    elapsed = time.perf_counter() - began
    print(
        f"\n{args.data.name}, {len(images)} images, --target-bpp {args.target_bpp} --scale "
        f"{args.scale} (default model), mask: the centred half-width x half-height rectangle, "
        f"--roi-weight {args.roi_weight:g}; {platform.machine()}, {os.cpu_count()} cores, "
        f"{elapsed / 60:.1f} min\n"
    )
    print("| codec | call | PSNR inside (dB) | PSNR outside (dB) | PSNR whole (dB) | mean bpp "
          "| max bpp | files within target | encode s | decode s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for codec, kind, mean, top, within, count, _ in rows:
        call = "with `--roi`" if kind == "roi" else "without `--roi`"
        print(
            f"| {codec} | {call} | {mean['psnr_in']:.2f} | {mean['psnr_out']:.2f} | "
            f"{mean['psnr']:.2f} | {mean['bpp']:.4f} | {top:.4f} | {within}/{count} | "
            f"{mean['encode_s']:.1f} | {mean['decode_s']:.1f} |"
        )
    print()
    for codec in report:
        plain, roi = report[codec]["plain"], report[codec]["roi"]
        smallest = min(r[6] for r in rows if r[0] == codec)
        print(
            f"* {codec}: inside {roi['psnr_in'] - plain['psnr_in']:+.2f} dB (smallest per-image "
            f"gain {smallest:+.2f} dB), outside {roi['psnr_out'] - plain['psnr_out']:+.2f} dB, "
            f"whole image {roi['psnr'] - plain['psnr']:+.2f} dB"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
