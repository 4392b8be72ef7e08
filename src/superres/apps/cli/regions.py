"""``superres regions``: draw an image's region map (difficulty classes, region of interest)."""

from __future__ import annotations

import argparse

from superres.apps.cli.common import EXIT_OK, UsageError, add_quiet, positive_float, positive_int

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  superres regions photo.png -o photo_regions.png
  superres regions photo.png -o map.png --tile 16 --classes 4 --mask auto
  superres regions scan.png -o map.png --mask lesion_mask.png --overwrite

Each tile is tinted by its difficulty class (d, the mean absolute Laplacian of the
luma; blue = flat ... red = hardest; a strip under the picture names them). The classes
cut the difficulty of natural training images into equal shares, so they mean the same
on every image. --mask draws the region of interest as an outline: a greyscale or 1-bit
image of any size (white = interest), or 'auto' for spectral-residual saliency.
"""


def _fraction(text: str) -> float:
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got '{text}'")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    rg = subparsers.add_parser(
        "regions", help="draw an image's difficulty classes and region of interest",
        description="Score each tile of an image by how hard it is to restore, and draw "
                    "the classes (and a region-of-interest mask) over the image.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    rg.add_argument("input", metavar="INPUT", help="image file")
    rg.add_argument("-o", "--output", required=True, metavar="MAP",
                    help="picture to write (.png, .jpg, .webp, ...)")  # fmt: skip
    rg.add_argument("--tile", type=positive_int, default=32, metavar="T",
                    help="tile side in pixels (default 32)")  # fmt: skip
    rg.add_argument("--classes", type=positive_int, default=3, metavar="N",
                    help="difficulty classes, 1-6 (default 3)")  # fmt: skip
    rg.add_argument(
        "--mask",
        default=None,
        metavar="MASK|auto",
        help="region of interest: a mask image (white = interest) or 'auto'",
    )
    rg.add_argument(
        "--fraction",
        type=_fraction,
        default=0.25,
        metavar="F",
        help="share of the image --mask auto selects (default 0.25)",
    )
    rg.add_argument(
        "--no-legend",
        action="store_true",
        help="leave out the strip under the picture that names the classes",
    )
    rg.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_quiet(rg, "print nothing on success")
    rg.set_defaults(func=run)
    return rg


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from superres.core import regions
    from superres.core.io import Image, output_format, read_image, write_image
    from superres.errors import ImageError

    if not 1 <= args.classes <= 6:
        raise UsageError(f"--classes must be 1 to 6, got {args.classes}")
    output = Path(args.output)
    output_format(output)  # ImageError for an unknown extension, before any work
    if output.exists() and not args.overwrite:
        raise ImageError(output, "output exists")
    if not output.parent.is_dir():
        raise ImageError(output, f"folder {output.parent} does not exist")

    image = read_image(args.input)
    pixels = image.pixels
    mask = None
    if args.mask is not None:
        mask = regions.region_of_interest(args.mask, pixels, fraction=args.fraction)
    thresholds = regions.default_thresholds(args.classes)
    region_map = regions.RegionMap.from_image(pixels, args.tile, thresholds, mask)
    picture = regions.draw(pixels, region_map)
    if not args.no_legend:
        label = None
        if mask is not None:
            label = "region of interest (saliency)" if args.mask == "auto" else "region of interest"
        strip = regions.legend(region_map, picture.shape[1], mask_label=label)
        picture = np.concatenate([picture, strip], axis=0)
    write_image(output, Image(picture), overwrite=args.overwrite)
    if not args.quiet:
        gh, gw = region_map.grid_shape
        print(f"{output}: {image.width}x{image.height}, {gw}x{gh} tiles of {args.tile} px")
        histogram = region_map.histogram()
        total = int(histogram.sum())
        names = regions.palette(args.classes)
        bounds = (0.0, *thresholds, None)
        for k, count in enumerate(histogram.tolist()):
            hi = bounds[k + 1]
            rule = f"{bounds[k]:.3g} <= d" + (f" < {hi:.3g}" if hi is not None else "")
            print(f"  class {k} ({names[k]}, {rule}): {count} tiles, {100 * count / total:.1f} %")
        if mask is not None:
            source = "auto (saliency)" if args.mask == "auto" else args.mask
            print(f"  mask {source}: {100 * mask.mean():.1f} % of the image")
    return EXIT_OK
