"""The README compression figures: `superres rd` on Kodak24 for JPEG, WebP and AVIF.

    python benchmarks/rd_kodak.py [--data DIR] [--out docs/rd] [--codecs jpeg,webp,avif]
                                  [--adapt STEPS]

(``--codecs`` defaults to every registered codec, :func:`superres.codec.list_codecs`.)

For each codec runs (in this process, exactly as the shell command would)::

    superres rd --data DATA --codec C --scales 1,2,3,4 --models codec,lanczos \\
        --bpp-window W --json OUT/rd_C.json --plot OUT/rd_C.png

(plus ``--adapt STEPS`` when given: adaptive-downscaling curves of the codec tier at every
scale > 1 and their best-of curve) with the bpp windows of the compression issue (JPEG
0.1-0.4, WebP and AVIF 0.1-0.3; any other codec 0.1-0.3), then
prints one Markdown table of the BD-rates against the codec at full resolution. 24 images x
13-14 qualities x 7 curves per codec: measured 709 s for JPEG on 2 CPU cores of an AMD EPYC
(with scales 1, 2 and 4, 5 curves, on a faster 2-core machine: 371, 374 and 427 s for JPEG,
WebP and AVIF).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from superres.apps import cli
from superres.codec import list_codecs
from superres.weights import zoo

REPO = Path(__file__).resolve().parents[1]
WINDOWS = {"jpeg": "0.1,0.4", "webp": "0.1,0.3", "avif": "0.1,0.3"}
DEFAULT_WINDOW = "0.1,0.3"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(os.environ.get("SUPERRES_DATA", REPO.parent / "shared" / "data")) / "Kodak24"
    parser.add_argument("--data", type=Path, default=default)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "rd")
    parser.add_argument("--codecs", default=",".join(list_codecs()))
    parser.add_argument("--scales", default="1,2,3,4")
    parser.add_argument("--models", default=None, help="default: codec,lanczos (if shipped)")
    parser.add_argument("--threads", default=None)
    parser.add_argument(
        "--adapt",
        default=None,
        metavar="STEPS",
        help="also the adaptive-downscaling curves (superres rd --adapt)",
    )
    args = parser.parse_args()
    shipped = {w.name for w in zoo.shipped_weights()}
    models = args.models or ("codec,lanczos" if "codec" in shipped else "quality,lanczos")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for codec in args.codecs.split(","):
        window = WINDOWS.get(codec, DEFAULT_WINDOW)
        json_path, plot_path = args.out / f"rd_{codec}.json", args.out / f"rd_{codec}.png"
        argv = ["rd", "--data", str(args.data), "--codec", codec, "--scales", args.scales,
                "--models", models, "--bpp-window", window, "--json", str(json_path),
                "--plot", str(plot_path), "-q"]  # fmt: skip
        if args.threads:
            argv += ["--threads", args.threads]
        if args.adapt:
            argv += ["--adapt", args.adapt]
        print("+ superres " + " ".join(argv), flush=True)
        start = time.perf_counter()
        if cli.main(argv) != 0:
            raise SystemExit(f"superres rd failed for {codec}")
        print(f"({time.perf_counter() - start:.0f} s)", flush=True)
        result = json.loads(json_path.read_text())
        for name, value in result["bd_rate"]["percent"].items():
            shown = "n/a" if value is None else f"{value:+.1f} %"
            rows.append(f"| {codec} | {window.replace(',', '-')} | {name} | {shown} |")
    print("\n| codec | bpp window | method | BD-rate vs the codec at full resolution |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
