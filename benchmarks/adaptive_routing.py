"""README's routing table for the region-adaptive model: how much of an image the quality
tier must still run on when LR tiles are routed between the fast and quality tiers at x4.

    python benchmarks/adaptive_routing.py [--data ../shared/data] [--tile 16] [--budget 0.04]
        [--epochs 40] [--images 0]

Every image of the training folders (T91, BSD200, BSD200test), BSD100 and Kodak24 is
modcropped, MATLAB-bicubic downscaled x4 and upscaled by the shipped fast and quality
tiers; per 16-pixel LR tile the script records each tier's squared error on the Y channel.
A router sends a tile to the quality tier when its score exceeds a threshold chosen once on
the training images (the highest whose mean PSNR loss against the quality tier is within
``--budget`` dB) and applied unchanged to BSD100 and Kodak24. Routers:

- ``oracle``: the true (fast - quality) error of the tile over the image's quality MSE;
- ``energy``: the energy of (fast - bicubic) on the tile over the image's mean of it
  (training-free, the best such score found);
- ``classifier``: three stride-2 convolutions on the fast output (pixel-unshuffled Y, its
  local high-pass and log energy) with image-wide pooled context, trained on the training
  images with a budget-weighted binary cross-entropy for the oracle's decision.

Columns: loss (mean PSNR-Y loss in dB; tile seams not blended, so a little optimistic),
the share of tiles routed to quality and the area the quality tier then runs on: each row
run of quality tiles plus 4 LR pixels of context on every side, over the image area.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import superres
from superres.core.degrade import list_images, load_hr, make_lr_array, modcrop
from superres.core.metrics import rgb_to_y, to_tensor

REPO = Path(__file__).resolve().parents[1]
SETS = {"train": ("T91", "BSD200", "BSD200test"), "BSD100": ("BSD100",), "Kodak24": ("Kodak24",)}
SCALE, CONTEXT = 4, 4


def y_plane(image: np.ndarray) -> np.ndarray:
    return rgb_to_y(to_tensor(image))[0, 0].numpy().astype(np.float32)


def measure(files: list[Path], models: dict, tile: int) -> list[dict]:
    """Per image: the fast/bicubic Y outputs cut to whole tiles and the per-tile errors."""
    out = []
    for path in files:
        hr = modcrop(load_hr(path), SCALE)
        lr = make_lr_array(hr, SCALE)
        rows, cols = lr.shape[0] // tile, lr.shape[1] // tile
        if rows < 1 or cols < 1:
            continue
        hr_y = y_plane(hr)
        sr = {n: y_plane(superres.upscale(lr, m, scale=SCALE)) for n, m in models.items()}
        side = tile * SCALE
        h, w = rows * side, cols * side

        def per_tile(a: np.ndarray, rows=rows, cols=cols, side=side) -> np.ndarray:
            return a[: rows * side, : cols * side].reshape(rows, side, cols, side).mean((1, 3))

        se_q = (sr["quality"] - hr_y) ** 2
        se_f = (sr["fast"] - hr_y) ** 2
        out.append({
            "fast": np.ascontiguousarray(sr["fast"][:h, :w]),
            "ef": per_tile(se_f), "eq": per_tile(se_q),
            "energy": per_tile((sr["fast"] - sr["bicubic"]) ** 2),
            "mse_q": float(se_q.mean()), "sse_q": float(se_q.sum()),
            "rest_q": float(se_q.sum() - se_q[:h, :w].sum()),
        })  # fmt: skip
    return out


def loss_and_share(records: list[dict], scores: list[np.ndarray], threshold: float):
    """Mean PSNR loss (dB), share of tiles to quality and quality area (with context)."""
    losses, shares, areas = [], [], []
    for r, s in zip(records, scores, strict=True):
        hard = s > threshold
        side = r["fast"].shape[0] // hard.shape[0]  # HR pixels of a tile's side
        sse = np.where(hard, r["eq"], r["ef"]).sum() * side * side + r["rest_q"]
        losses.append(10 * np.log10(sse / r["sse_q"]))
        shares.append(hard.mean())
        t = side // SCALE
        covered = 0
        for row in hard:
            padded = np.concatenate([[False], row, [False]]).astype(np.int8)
            starts, ends = (
                np.flatnonzero(np.diff(padded) == 1),
                np.flatnonzero(np.diff(padded) == -1),
            )
            covered += sum(
                (t * (e - b) + 2 * CONTEXT) * (t + 2 * CONTEXT)
                for b, e in zip(starts, ends, strict=True)
            )
        areas.append(covered / (hard.size * t * t))
    return float(np.mean(losses)), float(np.mean(shares)), float(np.mean(areas))


def choose(records: list[dict], scores: list[np.ndarray], budget: float) -> float:
    """The highest threshold (fewest quality tiles) within ``budget`` on ``records``."""
    values = np.concatenate([s.ravel() for s in scores])
    for threshold in np.quantile(values, np.linspace(0.995, 0.02, 300)):
        if loss_and_share(records, scores, threshold)[0] <= budget:
            return float(threshold)
    return float(values.min()) - 1.0


class Router(nn.Module):
    """The classifier: fast output (Y, pixel-unshuffled) -> one logit per tile."""

    def __init__(self, tile: int, width: int = 32) -> None:
        super().__init__()
        self.pool = tile // 4
        self.a = nn.Conv2d(SCALE * SCALE + 1, width, 3, 2, 1)
        self.b = nn.Conv2d(width, width, 3, 2, 1)
        self.c = nn.Conv2d(width, width, 3, 1, 1)
        self.g = nn.Conv2d(2 * width, width, 1)
        self.o = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        high = x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
        energy = torch.log((high**2).mean(1, keepdim=True) + 1e-6) / 10
        x = torch.cat([high * 10, energy], 1)
        x = F.relu(self.c(F.relu(self.b(F.relu(self.a(x))))))
        x = F.avg_pool2d(x, self.pool)
        x = F.relu(self.g(torch.cat([x, x.mean((2, 3), keepdim=True).expand_as(x)], 1)))
        return self.o(x)[:, 0]


def router_input(record: dict) -> torch.Tensor:
    return F.pixel_unshuffle(torch.from_numpy(record["fast"] / 255.0)[None, None], SCALE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("SUPERRES_DATA", REPO.parent / "shared" / "data")
    parser.add_argument("--data", type=Path, default=Path(default))
    parser.add_argument("--tile", type=int, default=16)
    parser.add_argument("--budget", type=float, default=0.04)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--images", type=int, default=0, help="per set, 0 = all")
    args = parser.parse_args()
    torch.manual_seed(0)
    start = time.perf_counter()
    models = {n: superres.load_model(n, scale=SCALE) for n in ("bicubic", "fast", "quality")}
    data = {}
    for name, folders in SETS.items():
        files = [f for folder in folders for f in list_images(args.data / folder)]
        data[name] = measure(files[: args.images or None], models, args.tile)
    print(f"# measured in {time.perf_counter() - start:.0f} s", flush=True)

    def oracle(r: dict) -> np.ndarray:
        return (r["ef"] - r["eq"]) / r["mse_q"]

    scores = {"oracle": {k: [oracle(r) for r in v] for k, v in data.items()},
              "energy": {k: [r["energy"] / r["energy"].mean() for r in v]
                         for k, v in data.items()}}  # fmt: skip
    train = data["train"]
    tau = choose(train, scores["oracle"]["train"], args.budget)
    net = Router(args.tile)
    inputs = [router_input(r) for r in train]
    labels = [torch.from_numpy((oracle(r) > tau).astype(np.float32))[None] for r in train]
    weights = [torch.from_numpy(np.clip(np.abs(oracle(r) - tau) / tau, 0.05, 20)
                                .astype(np.float32))[None] for r in train]  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    steps = max(1, args.epochs * len(train))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    rng = np.random.default_rng(0)
    for _ in range(args.epochs):
        for i in rng.permutation(len(train)):
            x, y, w = inputs[i], labels[i], weights[i]
            if rng.random() < 0.5:
                x, y, w = x.flip(-1), y.flip(-1), w.flip(-1)
            loss = (F.binary_cross_entropy_with_logits(net(x), y, reduction="none") * w).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        scores["classifier"] = {k: [net(router_input(r))[0].numpy() for r in v]
                                for k, v in data.items()}  # fmt: skip
    print(f"# done in {time.perf_counter() - start:.0f} s; tile {args.tile}, budget "
          f"{args.budget} dB on the training images\n")  # fmt: skip
    print("| router | set | loss (dB) | tiles to quality | area run by quality |")
    print("|---|---|---:|---:|---:|")
    for router, by_set in scores.items():
        threshold = choose(train, by_set["train"], args.budget)
        for name, records in data.items():
            loss, share, area = loss_and_share(records, by_set[name], threshold)
            print(f"| {router} | {name} | {loss:.3f} | {share:.0%} | {area:.2f} |")


if __name__ == "__main__":
    main()
