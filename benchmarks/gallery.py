"""The README gallery: crops of bicubic, fast, quality and ground truth on benchmark images, x4.

    python benchmarks/gallery.py [--data ../shared/data] [--out docs/gallery] [--only NAME]

Regenerate when the shipped weights change. For each image below the HR image is read and
modcropped (:func:`superres.core.degrade.load_hr`, :func:`modcrop`), its LR is made by the
project's protocol (MATLAB bicubic 1/4, 8-bit: :func:`make_lr_array`), and the *whole* LR is
upscaled by each method (so the crop sees no border effects). One PNG per image is written
(atomically) with four panels, bicubic | fast | quality | ground truth: the same fixed crop
of each, enlarged with nearest-neighbour so that pixels stay visible, labelled with the
method and its Y-channel PSNR on the whole image (4 border pixels cropped, as in the
README's results table). Prints what it wrote and the PSNRs.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import superres
from superres.core.degrade import load_hr, make_lr_array, modcrop
from superres.core.io import atomic_write_bytes
from superres.core.metrics import psnr

REPO = Path(__file__).resolve().parents[1]
SCALE = 4
METHODS = ("bicubic", "fast", "quality")
CROP = 96  # crop side in HR pixels
ZOOM = 3  # nearest-neighbour enlargement of each crop
GAP = 8  # between panels and around the figure
TITLE_H = 24  # title strip above the panels
LABEL_H = 26  # label strip below each panel
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One gallery image: a benchmark file and the top-left corner of its crop (HR pixels)."""

    name: str
    dataset: str
    file: str
    left: int
    top: int


GALLERY = (
    Entry("butterfly", "Set5", "butterfly.png", left=128, top=40),
    Entry("zebra", "Set14", "zebra.png", left=380, top=84),
    Entry("bsd100_86000", "BSD100", "86000.png", left=96, top=176),
)


@dataclasses.dataclass(frozen=True)
class Result:
    """What :func:`render` made for one entry: the PNG path, its size and the PSNRs (dB)."""

    entry: Entry
    path: Path
    size: tuple[int, int]
    psnr: dict[str, float]


def figure_size() -> tuple[int, int]:
    """Width and height of every gallery PNG (four panels in a row, labels beneath)."""
    panel = CROP * ZOOM
    panels = len(METHODS) + 1
    return panels * panel + (panels + 1) * GAP, TITLE_H + panel + LABEL_H + GAP


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _crop(image: np.ndarray, entry: Entry) -> Image.Image:
    h, w = image.shape[:2]
    if entry.left + CROP > w or entry.top + CROP > h:
        raise ValueError(f"{entry.name}: crop {CROP} at ({entry.left}, {entry.top}) is outside "
                         f"the {w}x{h} image")  # fmt: skip
    box = image[entry.top : entry.top + CROP, entry.left : entry.left + CROP]
    panel = Image.fromarray(np.ascontiguousarray(box))
    return panel.resize((CROP * ZOOM, CROP * ZOOM), Image.Resampling.NEAREST)


def compose(entry: Entry, crops: dict[str, Image.Image], scores: dict[str, float]) -> Image.Image:
    """Lay out the panels (``crops`` keyed by method and ``"ground truth"``) with labels."""
    width, height = figure_size()
    figure = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(figure)
    title = (f"{entry.dataset}/{entry.file}, x{SCALE}: {CROP}x{CROP} crop at "
             f"({entry.left}, {entry.top}) shown {ZOOM}x (nearest); PSNR: Y channel, "
             f"whole image")  # fmt: skip
    draw.text((GAP, 4), title, fill=INK, font=_font(14))
    label_font = _font(16)
    panel = CROP * ZOOM
    for i, (name, image) in enumerate(crops.items()):
        x = GAP + i * (panel + GAP)
        figure.paste(image, (x, TITLE_H))
        label = f"{name}  {scores[name]:.2f} dB" if name in scores else name
        draw.text((x, TITLE_H + panel + 4), label, fill=INK, font=label_font)
    return figure


def render(entry: Entry, data_root: Path, out: Path, models: dict) -> Result:
    """Upscale one entry's LR with every method, compose its PNG into ``out``, return it."""
    hr = modcrop(load_hr(data_root / entry.dataset / entry.file), SCALE)
    lr = make_lr_array(hr, SCALE)
    crops: dict[str, Image.Image] = {}
    scores: dict[str, float] = {}
    for name, model in models.items():
        sr = superres.upscale(lr, model)
        scores[name] = psnr(sr, hr, crop=SCALE)
        crops[name] = _crop(sr, entry)
    crops["ground truth"] = _crop(hr, entry)
    figure = compose(entry, crops, scores)
    buffer = io.BytesIO()
    figure.save(buffer, format="PNG", optimize=True)
    path = atomic_write_bytes(out / f"{entry.name}_x{SCALE}.png", buffer.getvalue())
    return Result(entry, path, figure.size, scores)


def main(argv: Sequence[str] | None = None) -> list[Result]:
    """Write the gallery PNGs and print one line per image; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("SUPERRES_DATA") or REPO.parent / "shared" / "data"
    parser.add_argument("--data", type=Path, default=Path(default),
                        help="folder holding Set5, Set14, BSD100 (default: $SUPERRES_DATA "
                        "or ../shared/data)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "gallery")
    parser.add_argument("--only", action="append", choices=[e.name for e in GALLERY],
                        help="render only this image (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    entries = [e for e in GALLERY if not args.only or e.name in args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    models = {name: superres.load_model(name, scale=SCALE) for name in METHODS}
    results = []
    for entry in entries:
        result = render(entry, args.data, args.out, models)
        figures = ", ".join(f"{name} {value:.2f}" for name, value in result.psnr.items())
        kib = result.path.stat().st_size / 1024
        print(f"{result.path} ({result.size[0]}x{result.size[1]}, {kib:.0f} KiB): "
              f"PSNR {figures} dB", flush=True)  # fmt: skip
        results.append(result)
    return results


if __name__ == "__main__":
    main()
