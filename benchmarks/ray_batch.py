"""README's Ray table: ``superres upscale`` on the local engine (torch's default threads, and
one thread) against ``--engine ray`` with 1 and 2 single-threaded workers, as a user runs it
(a fresh process per run, start-up included).

    python benchmarks/ray_batch.py [--data ../shared/data] [--source BSD200] [--images 24]
        [--small 6] [--crop 480] [--model quality] [--scale 2] [--repeats 3] [--json FILE]

The inputs are centre crops of at most ``--crop`` x ``--crop`` pixels of the first
``--images`` images of ``--source`` (a training folder; BSD200's 481x321 images give 480x321
and 321x480 crops), written as PNG into a nested tree (three folder levels)
in a temporary folder that is removed afterwards. Every configuration upscales the whole
tree (``-r``) and, to separate start-up from throughput, a tree of the first ``--small`` of
them; the runs are interleaved (each configuration in turn, then again) so that a load that
varies over time hits each configuration alike. From the medians: seconds per image =
``(T_images - T_small) / (images - small)``, start-up = ``T_images - images * per_image``
(process start, imports, model load, and for Ray ``ray.init`` and the actors' start).

Checks: the 2-worker Ray output is byte-identical to the local output, and a rerun of it
skips all the images (exit 0, one ``skipped`` line per image). The issue's floor: the Ray
run with 2 workers takes at most 1.5x the local run's time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FLOOR = 1.5


def make_tree(source: Path, root: Path, count: int, crop: int) -> None:
    """Centre crops (at most ``crop`` on each side) of the first ``count`` images of
    ``source`` in a three-level tree."""
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".png", ".jpg", ".bmp"))
    if len(files) < count:
        raise SystemExit(f"{source}: {len(files)} images, {count} needed")
    for i, path in enumerate(files[:count]):
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        w, h = rgb.size
        cw, ch = min(crop, w), min(crop, h)
        left, top = (w - cw) // 2, (h - ch) // 2
        folder = root / ["", "a", "a/b"][i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        rgb.crop((left, top, left + cw, top + ch)).save(folder / f"{path.stem}.png")


def run(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    return time.perf_counter() - start, done


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("SUPERRES_DATA", REPO.parent / "shared" / "data")
    parser.add_argument("--data", type=Path, default=Path(default))
    parser.add_argument("--source", default="BSD200")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--small", type=int, default=6)
    parser.add_argument("--crop", type=int, default=480)
    parser.add_argument("--model", default="quality")
    parser.add_argument("--scale", default="2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    configs = {
        "local": [],  # torch's default threads (one per core): what users get
        "local, 1 thread": ["--threads", "1"],
        "ray, 1 worker": ["--engine", "ray", "--workers", "1", "--threads-per-worker", "1"],
        "ray, 2 workers": ["--engine", "ray", "--workers", "2", "--threads-per-worker", "1"],
    }
    times: dict[str, dict[int, list[float]]] = {k: {args.images: [], args.small: []}
                                                for k in configs}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ray_batch_") as tmp:
        tmp_path = Path(tmp)
        trees = {n: tmp_path / f"in{n}" for n in (args.images, args.small)}
        for n, root in trees.items():
            make_tree(args.data / args.source, root, n, args.crop)
        base = [sys.executable, "-m", "superres", "upscale"]
        model = ["-r", "-m", args.model, "-s", args.scale, "-q"]
        keep: dict[str, Path] = {}
        for repeat in range(args.repeats):
            for n in (args.images, args.small):
                for name, extra in configs.items():
                    out = tmp_path / f"out_{len(keep)}"
                    seconds, done = run([*base, str(trees[n]), "-o", str(out), *model, *extra])
                    if done.returncode != 0:
                        print(done.stderr, file=sys.stderr)
                        raise SystemExit(f"{name}: exit status {done.returncode}")
                    times[name][n].append(seconds)
                    keep[f"{name}/{n}/{repeat}"] = out
                    print(f"# {name:15s} {n:3d} images  {seconds:6.2f} s", file=sys.stderr)
        local_out = keep[f"local/{args.images}/0"]
        ray_out = keep[f"ray, 2 workers/{args.images}/0"]
        identical = tree_bytes(local_out) == tree_bytes(ray_out)
        rerun_s, rerun = run([*base, str(trees[args.images]), "-o", str(ray_out), *model,
                              *configs["ray, 2 workers"]])  # fmt: skip
        skipped = rerun.stderr.count("skipped")
    n, s = args.images, args.small
    med = {k: {m: statistics.median(v) for m, v in t.items()} for k, t in times.items()}
    rows = []
    for name in configs:
        per_image = (med[name][n] - med[name][s]) / (n - s)
        startup = med[name][n] - n * per_image
        ratio = med[name][n] / med["local"][n]
        rows.append((name, per_image, startup, ratio))
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    import ray
    import torch

    print(f"\n{n} crops of at most {args.crop}x{args.crop} from {args.source}, {args.model} "
          f"x{args.scale}, median of {args.repeats} runs; {machine}; torch "
          f"{torch.__version__}, ray {ray.__version__}\n")  # fmt: skip
    print(f"| engine | {n} images (s) | {s} images (s) | start-up (s) | per image (s) "
          "| images/s | vs local |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, per_image, startup, ratio in rows:
        spread = f"{min(times[name][n]):.1f}-{max(times[name][n]):.1f}"
        print(f"| {name} | {med[name][n]:.1f} ({spread}) | {med[name][s]:.1f} | {startup:.1f} "
              f"| {per_image:.2f} | {1 / per_image:.2f} | {ratio:.2f}x |")  # fmt: skip
    ratio2 = rows[-1][3]
    verdict = "meets" if ratio2 <= FLOOR else "misses"
    print(
        f"\nbyte-identical (ray 2 workers vs local): {identical}; rerun: exit "
        f"{rerun.returncode}, {skipped} of {n} skipped in {rerun_s:.1f} s; "
        f"ray 2 workers / local = {ratio2:.2f}x ({verdict} the {FLOOR}x floor)"
    )
    if args.json:
        payload = {"times": {k: {str(m): v for m, v in t.items()} for k, t in times.items()},
                   "identical": identical, "rerun_skipped": skipped, "ratio": ratio2,
                   "rows": [dict(zip(("engine", "per_image", "startup", "ratio"), r,
                                     strict=True)) for r in rows]}  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    ok = identical and rerun.returncode == 0 and skipped == n and ratio2 <= FLOOR
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
