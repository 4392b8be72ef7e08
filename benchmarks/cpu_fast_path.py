"""Ablation of the CPU fast path: what each optimisation of the engine buys.

    python benchmarks/cpu_fast_path.py [--models fast:4,quality:4] [--size 640x480]
        [--threads 2] [--repeats 7]

For each model, in one child process per allocator setting (the malloc tuning is
process-wide and permanent, so it cannot be undone inside one process), the median latency
of: the bare module in NCHW; the bare module in channels-last; PlainSR's other tails where
they apply (its first one, ``repeat_interleave`` + ``PixelShuffle`` in NCHW; ATen's
``pixel_shuffle`` after the broadcast add in channels-last, which writes NCHW and was slower
than the module's permuted copy); and the whole engine path
(``engine.upscale_array``: uint8 in, uint8 out), which is what ``superres upscale`` and
``superres bench`` run. Prints a table of milliseconds and the speed-up of each row over
the first one (bare NCHW module, allocator untouched).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys


def _child(models: list[tuple[str, int]], size: tuple[int, int], threads: int, repeats: int):
    import numpy as np
    import torch
    from torch import nn

    from superres import load_model
    from superres.evaluation.bench import _time
    from superres.inference import engine

    torch.set_num_threads(threads)
    tuned = engine.tune_cpu_allocator()
    w, h = size
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float().div(255)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    results = []

    def median(fn) -> float:  # ms, after one warm-up run, timed as `superres bench` does
        return statistics.median(_time(fn, repeats, warmup=1)) * 1000

    for name, scale in models:
        row = {"model": f"{name} x{scale}", "tuned_malloc": tuned}
        model = load_model(name, scale=scale)
        module = model.module.eval()
        with torch.inference_mode():
            row["module_nchw"] = median(lambda m=module: m(x))
            if hasattr(module, "body") and type(module).__name__ == "PlainSR":

                def old_tail(inp, m=module, s=scale):
                    residual = torch.repeat_interleave(inp, s * s, dim=1)
                    return nn.functional.pixel_shuffle(m.body(inp) + residual, s)

                row["module_nchw_old_tail"] = median(lambda: old_tail(x))
            module.to(memory_format=torch.channels_last)
            row["module_channels_last"] = median(lambda m=module: m(x_cl))
            if "module_nchw_old_tail" in row:

                def shuffle_tail(inp, m=module, s=scale):  # broadcast add, ATen's pixel_shuffle
                    f = m.body(inp).unflatten(1, (3, s, s)).add_(inp[:, :, None, None])
                    return nn.functional.pixel_shuffle(f.flatten(1, 3), s)

                row["module_cl_pixel_shuffle_tail"] = median(lambda: shuffle_tail(x_cl))
        row["engine"] = median(lambda m=model: engine.upscale_array(pixels, m))
        results.append(row)
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="fast:4,quality:4")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = [(m.split(":")[0], int(m.split(":")[1])) for m in args.models.split(",")]
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if args.child:
        _child(models, size, args.threads, args.repeats)
        return
    rows: dict[str, dict[bool, dict]] = {}
    for flag in ("0", "1"):
        env = {**os.environ, "SUPERRES_TUNE_MALLOC": flag}
        cmd = [sys.executable, __file__, "--child", *sys.argv[1:]]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        for row in json.loads(out.strip().splitlines()[-1]):
            rows.setdefault(row["model"], {})[flag == "1"] = row
    print(f"{args.size}, {args.threads} threads, median of {args.repeats} runs (ms)")
    print(f"{'model':12s} {'path':26s} {'malloc as is':>13s} {'tuned malloc':>13s}")
    for model, by_flag in rows.items():
        base = by_flag[False]["module_nchw"]
        keys = ("module_nchw", "module_nchw_old_tail", "module_cl_pixel_shuffle_tail")
        for key in (*keys, "module_channels_last", "engine"):
            if key not in by_flag[False]:
                continue
            cells = []
            for flag in (False, True):
                ms = by_flag[flag][key]
                cells.append(f"{ms:7.1f} ({base / ms:.2f}x)")
            print(f"{model:12s} {key:26s} {cells[0]:>13s} {cells[1]:>13s}")
    if not all(r[True]["tuned_malloc"] for r in rows.values()):
        print("note: malloc tuning did not apply here (not glibc?)")


if __name__ == "__main__":
    main()
