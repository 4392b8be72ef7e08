"""``superres burst``: fuse several frames of one scene into one larger image."""

from __future__ import annotations

import argparse

from superres.apps.cli.common import EXIT_OK, add_quiet, add_threads, positive_int

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  superres burst f0.png f1.png f2.png f3.png -o fused_x4.png --scale 4
  superres burst burst/*.png -o out.png --scale 2 --reference 3 --psf bicubic
  superres burst f*.png -o fused.png --scale 4 --method learned --model quality

The frames are registered against the reference frame by phase correlation (sub-pixel
translations); samples that disagree with it after registration (moving objects) get
low weight. classical accumulates the samples onto the reference's grid at the output
resolution and deconvolves; learned runs the burst network (the shipped "burst" model,
where it exists for --scale) on all frames at once; with a single-image --model (the
default at other scales: quality) it runs every frame through it and averages the
outputs registered onto the reference's grid. With one frame both are single-image
upscaling. The output keeps the reference frame's grid, ICC profile and EXIF. README's
burst table gives the gain per number of frames.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    bp = subparsers.add_parser(
        "burst", help="fuse frames of one scene (a burst) into one upscaled image",
        description="Multi-image super-resolution: register the frames, fuse them onto the "
                    "reference frame's grid at --scale, deconvolve.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    bp.add_argument("frames", nargs="+", metavar="FRAME", help="frames, all of one size")
    bp.add_argument("-o", "--output", required=True, help="output image (.png, .tif, ...)")
    bp.add_argument("--scale", "-s", type=positive_int, default=4,
                    help="upscaling factor (default 4)")  # fmt: skip
    bp.add_argument("--method", choices=("classical", "learned"), default="classical",
                    help="classical: shift-and-add + Wiener deconvolution (default); "
                         "learned: a network trained on bursts fuses them (--model)")  # fmt: skip
    bp.add_argument("--model", "-m", default=None, metavar="MODEL",
                    help="network of --method learned: a burst network, or a single-image one run "
                         "on every frame (default: burst where shipped, else quality)")  # fmt: skip
    bp.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (learned)")
    bp.add_argument("--tile", type=int, default=None, metavar="T",
                    help="tile size in input pixels for the network (learned)")  # fmt: skip
    bp.add_argument("--reference", type=int, default=0, metavar="K",
                    help="index of the frame whose grid the output keeps (default 0)")  # fmt: skip
    bp.add_argument("--psf", choices=("area", "bicubic"), default="area",
                    help="blur to undo: area (each pixel integrates its footprint, a sensor; "
                         "default) or bicubic (MATLAB's antialiased downscaling)")  # fmt: skip
    bp.add_argument("--no-robust", action="store_true",
                    help="plain shift-and-add: do not down-weight moving content")  # fmt: skip
    bp.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_threads(bp)
    add_quiet(bp, "print nothing on success")
    bp.set_defaults(func=run)
    return bp


def run(args: argparse.Namespace) -> int:
    import time

    from superres import api
    from superres.inference import engine

    engine.set_threads(args.threads)
    start = time.perf_counter()
    path = api.upscale_burst_file(
        args.frames, args.output, args.scale, method=args.method, reference=args.reference,
        degradation=args.psf, robust=not args.no_robust, model=args.model, tile=args.tile,
        device=args.device, overwrite=args.overwrite,
    )  # fmt: skip
    if not args.quiet:
        seconds = time.perf_counter() - start
        print(f"{path}: {len(args.frames)} frames fused x{args.scale} ({args.method}, "
              f"{seconds:.2f} s)")  # fmt: skip
    return EXIT_OK
