"""The README's region and attention pictures, and what the region maps cost.

    python benchmarks/region_pictures.py [--data ../shared/data] [--out docs/regions]
    python benchmarks/region_pictures.py --timing      # cost against the quality tier
    python benchmarks/region_pictures.py --reference   # core.regions.REFERENCE_QUANTILES

Pictures: each is made by the command the README shows, run in-process
(``superres regions kodim23.png -o ... --mask auto`` on Kodak24 ``kodim23``, ``superres
explain butterfly.png -o ...`` on Set5 ``butterfly``) into a temporary folder; the copy in
``--out`` is reduced to ``--width`` pixels and stored as a 256-colour PNG so that the
README's pictures stay small. Prints what it wrote.

``--timing``: on Kodak24 ``kodim23`` (768x512, the input of issue 14's measurements) the
median of 7 runs of difficulty, saliency, auto_mask and a whole RegionMap, against the
median of 3 runs of the quality tier at x4 on the same input (``superres.upscale``, the
engine as ``superres upscale`` runs it), in one process.

``--reference``: the 0, 5, ..., 100 % quantiles of the difficulty of 32x32 tiles of BSD200
(training images), which :func:`superres.core.regions.default_thresholds` cuts into classes.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

#: (output name, the CLI arguments after the input, dataset, file): the README's commands.
PICTURES = (
    ("regions_kodim23.png", ["regions", "--mask", "auto"], "Kodak24", "kodim23.png"),
    ("explain_butterfly.png", ["explain", "--model", "quality", "--panel", "170"], "Set5",
     "butterfly.png"),
)  # fmt: skip


def _small_png(path: Path, width: int) -> bytes:
    """``path`` reduced to ``width`` pixels (Lanczos) as a 256-colour PNG."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)
        pal = im.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        buf = io.BytesIO()
        pal.save(buf, "PNG", optimize=True)
        return buf.getvalue()


def pictures(data: Path, out: Path, width: int) -> list[Path]:
    """Run each README command and store the reduced copy in ``out``."""
    from superres.apps.cli.main import main
    from superres.core.io import atomic_write_bytes

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, args, dataset, file in PICTURES:
            source = data / dataset / file
            target = Path(tmp) / name
            argv = [args[0], str(source), "-o", str(target), *args[1:]]
            print("superres " + " ".join(argv))
            code = main(argv)
            if code != 0:
                raise SystemExit(f"superres {args[0]} failed with status {code}")
            path = atomic_write_bytes(out / name, _small_png(target, width))
            with Image.open(path) as im:
                print(f"{path}: {im.width}x{im.height}, {path.stat().st_size / 1024:.0f} KiB")
            written.append(path)
    return written


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timing(data: Path, threads: int) -> None:
    """Print the cost of the region maps against the quality tier's x4 time."""
    import torch

    import superres
    from superres.core import regions
    from superres.core.io import read_image

    torch.set_num_threads(threads)
    pixels = read_image(data / "Kodak24" / "kodim23.png").pixels
    h, w = pixels.shape[:2]
    model = superres.load_model("quality", 4, device="cpu")
    quality = _median_time(lambda: superres.upscale(pixels, model), 3)
    rows = [
        ("difficulty (tile 32)", lambda: regions.difficulty(pixels, 32)),
        ("saliency", lambda: regions.saliency(pixels)),
        ("auto_mask", lambda: regions.auto_mask(pixels)),
        ("RegionMap + auto_mask", lambda: regions.RegionMap.from_image(
            pixels, 32, mask=regions.auto_mask(pixels))),
    ]  # fmt: skip
    print(f"kodim23 {w}x{h}, {threads} threads; quality x4: {quality:.3f} s (median of 3)")
    print("| step | ms | of quality x4 |")
    print("|---|---|---|")
    for name, fn in rows:
        seconds = _median_time(fn, 7)
        print(f"| {name} | {seconds * 1000:.1f} | {100 * seconds / quality:.2f} % |")


def reference(data: Path) -> None:
    """Print the difficulty quantiles of 32x32 tiles of BSD200."""
    from superres.core import regions
    from superres.core.io import read_image

    scores = [
        regions.difficulty(read_image(path).pixels, 32).ravel()
        for path in sorted((data / "BSD200").glob("*.png"))
    ]
    values = np.concatenate(scores)
    q = np.quantile(values, np.linspace(0, 1, 21))
    print(f"{len(scores)} images, {values.size} tiles")
    print(", ".join(f"{v:.3g}" for v in q))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("SUPERRES_DATA") or REPO.parent / "shared" / "data"
    parser.add_argument("--data", type=Path, default=Path(default),
                        help="folder holding Kodak24, Set5, BSD200 (default: $SUPERRES_DATA "
                             "or ../shared/data)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "regions")
    parser.add_argument("--width", type=int, default=720, help="largest width of the stored copies")
    parser.add_argument("--timing", action="store_true", help="measure instead")
    parser.add_argument("--threads", type=int, default=2, help="threads for --timing")
    parser.add_argument("--reference", action="store_true", help="BSD200 quantiles instead")
    args = parser.parse_args(argv)
    if args.timing:
        timing(args.data, args.threads)
    elif args.reference:
        reference(args.data)
    else:
        pictures(args.data, args.out, args.width)


if __name__ == "__main__":
    main()
