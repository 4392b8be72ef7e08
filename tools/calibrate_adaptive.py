"""Choose the region-adaptive model's thresholds on training images and write adaptive.json.

    python tools/calibrate_adaptive.py --scale 4 [--members bicubic,fast,quality]
        [--tile 32] [--budget 0.03] [--images 80] [--out src/superres/weights/adaptive.json]

For each training image (T91, BSD200, BSD200test: never a benchmark) the HR image is
modcropped and downscaled (MATLAB bicubic), every member upscales the whole LR image, and
for every LR tile the script records its difficulty (:func:`superres.core.regions.difficulty`)
and each member's squared error on the tile's HR block (Y channel, 8-bit). A choice of
thresholds routes each tile to one member; an image's PSNR is then computed from the
routed errors. The script searches thresholds over the quantiles of the training tiles'
scores for the lowest cost (member FLOPs per output pixel, weighted by the area routed to
it; bicubic counted as 2 % of the most expensive member) whose mean PSNR loss against the
last (most expensive) member stays within ``--budget`` dB, and writes the members, the
thresholds and how they were found into the scale's entry of adaptive.json (other scales'
entries are kept).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import time
from pathlib import Path

import numpy as np

import superres
from superres.core.degrade import list_images, load_hr, make_lr_array, modcrop
from superres.core.io import atomic_write_bytes
from superres.core.metrics import rgb_to_y, to_tensor
from superres.core.regions import difficulty, tile_areas, tile_means
from superres.models import flops_per_output_pixel

REPO = Path(__file__).resolve().parents[1]
TRAINING = ("T91", "BSD200", "BSD200test")


def y_plane(image: np.ndarray) -> np.ndarray:
    return rgb_to_y(to_tensor(image))[0, 0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = Path(os.environ.get("SUPERRES_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=data)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--members", default="bicubic,fast,quality")
    parser.add_argument("--tile", type=int, default=32)
    parser.add_argument("--overlap", type=int, default=8)
    parser.add_argument("--budget", type=float, default=0.03, help="mean PSNR loss, dB")
    parser.add_argument("--images", type=int, default=80, help="training images used")
    parser.add_argument("--out", type=Path, default=REPO / "src/superres/weights/adaptive.json")
    args = parser.parse_args()
    s, tile = args.scale, args.tile
    names = args.members.split(",")
    models = [superres.load_model(n, scale=s) for n in names]
    flops = [flops_per_output_pixel(m.module) for m in models]
    top = max(flops)
    costs = [max(f / top, 0.02) for f in flops]
    files = [f for folder in TRAINING for f in list_images(args.data / folder)]
    rng = np.random.default_rng(0)
    files = [files[i] for i in sorted(rng.choice(len(files), args.images, replace=False))]
    start = time.perf_counter()
    records = []  # per image: (scores (k,), areas (k,), errors (members, k))
    for path in files:
        hr = modcrop(load_hr(path), s)
        lr = make_lr_array(hr, s)
        if min(lr.shape[:2]) < tile:
            continue
        hr_y = y_plane(hr)
        errors = []
        for model in models:
            sr = superres.upscale(lr, model)
            se = (y_plane(sr) - hr_y) ** 2  # HR pixels, 0..255 scale
            errors.append(tile_means(se, tile * s).ravel())
        scores = difficulty(lr, tile).ravel()
        areas = tile_areas(lr.shape[:2], tile).ravel().astype(np.float64)
        records.append((scores, areas, np.stack(errors)))
    print(f"{len(records)} images measured in {time.perf_counter() - start:.0f} s", flush=True)
    all_scores = np.concatenate([r[0] for r in records])
    candidates = sorted(set(np.quantile(all_scores, np.linspace(0, 0.95, 39)).tolist()))

    def evaluate(thresholds: tuple[float, ...]) -> tuple[float, float, list[float]]:
        losses, cost, shares = [], 0.0, np.zeros(len(models))
        total_area = 0.0
        for scores, areas, errors in records:
            cls = np.searchsorted(np.asarray(thresholds), scores, side="right")
            routed = errors[cls, np.arange(len(scores))]
            mse = float((routed * areas).sum() / areas.sum())
            best = float((errors[-1] * areas).sum() / areas.sum())
            losses.append(10 * math.log10(max(mse, 1e-12) / max(best, 1e-12)))
            for c in range(len(models)):
                shares[c] += areas[cls == c].sum()
            total_area += areas.sum()
        shares /= total_area
        cost = float(np.dot(shares, costs))
        return float(np.mean(losses)), cost, shares.tolist()

    best = None
    k = len(models) - 1
    for combo in itertools.combinations_with_replacement(candidates, k):
        thresholds = tuple(float(t) for t in combo)
        if any(b <= a for a, b in zip(thresholds, thresholds[1:], strict=False)):
            continue
        loss, cost, shares = evaluate(thresholds)
        if loss <= args.budget and (best is None or cost < best[1]):
            best = (thresholds, cost, loss, shares)
    if best is None:
        raise SystemExit(f"no thresholds keep the loss within {args.budget} dB")
    thresholds, cost, loss, shares = best
    entry = {
        "members": names,
        "thresholds": [float(f"{t:.6g}") for t in thresholds],
        "tile": tile,
        "overlap": args.overlap,
        "calibration": {
            "images": len(records),
            "data": "T91 + BSD200 + BSD200test (training images only)",
            "budget_db": args.budget,
            "predicted_loss_db": round(loss, 4),
            "predicted_cost": round(cost, 4),
            "area_shares": [round(x, 4) for x in shares],
            "member_costs": [round(c, 4) for c in costs],
            "command": f"python tools/calibrate_adaptive.py --scale {s} --members "
            f"{args.members} --tile {tile} --budget {args.budget} --images {args.images}",
        },
    }
    config = json.loads(args.out.read_text()) if args.out.is_file() else {}
    config[str(s)] = entry
    text = json.dumps(dict(sorted(config.items())), indent=2) + "\n"
    atomic_write_bytes(args.out, text.encode(), overwrite=True)
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
