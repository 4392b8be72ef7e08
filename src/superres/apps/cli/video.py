"""``superres video``: upscale a video, each frame fused with its neighbours as a burst."""

from __future__ import annotations

import argparse

from superres.apps.cli.common import (
    EXIT_OK,
    add_quiet,
    add_threads,
    positive_int,
    progress_enabled,
)

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  superres video clip.mp4 -o clip_x2.mp4 --scale 2
  superres video in.mkv -o out.mkv --scale 4 --window 7 --psf bicubic
  superres video in.mp4 -o out.mp4 --scale 4 --method learned --model quality

Frame t is fused with its neighbours (--window frames centred on t, fewer at the ends)
as in 'superres burst' with frame t as the reference, so every output frame keeps its
own frame's grid; --window 1 upscales each frame on its own. The output is H.264 (yuv420p)
with the input's frame rate and timestamps; the audio is copied unchanged (re-encoded to
AAC where the output container cannot hold it). The container follows the extension:
.mp4, .m4v, .mov, .mkv or .avi. Needs PyAV: pip install 'superres[video]'.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    vp = subparsers.add_parser(
        "video", help="upscale a video (neighbouring frames fused as a burst)",
        description="Video super-resolution: each frame fused with its neighbours "
                    "(registered, robustly weighted) onto its own grid at --scale.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    vp.add_argument("input", metavar="IN", help="input video")
    vp.add_argument("-o", "--output", required=True, metavar="OUT",
                    help="output video (.mp4, .m4v, .mov, .mkv, .avi)")  # fmt: skip
    vp.add_argument("--scale", "-s", type=positive_int, default=4,
                    help="upscaling factor (default 4)")  # fmt: skip
    vp.add_argument("--window", "-k", type=positive_int, default=5, metavar="K",
                    help="frames per burst, centred on each frame (default 5; 1: each frame "
                         "alone)")  # fmt: skip
    vp.add_argument("--method", choices=("classical", "learned"), default="classical",
                    help="classical: shift-and-add + Wiener deconvolution (default); "
                         "learned: a network trained on bursts fuses each window "
                         "(--model)")  # fmt: skip
    vp.add_argument("--model", "-m", default=None, metavar="MODEL",
                    help="network of --method learned: a burst network, or a single-image "
                         "one run once per frame (default: burst where shipped, else "
                         "quality)")  # fmt: skip
    vp.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (learned)")
    vp.add_argument("--tile", type=int, default=None, metavar="T",
                    help="tile size in input pixels for the network (learned)")  # fmt: skip
    vp.add_argument("--psf", choices=("area", "bicubic"), default="area",
                    help="blur to undo: area (each pixel integrates its footprint, a sensor; "
                         "default) or bicubic (MATLAB's antialiased downscaling)")  # fmt: skip
    vp.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_threads(vp)
    add_quiet(vp, "no progress bar or summary (the bar is drawn only when stderr is a terminal)")
    vp.set_defaults(func=run)
    return vp


def run(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from superres import api
    from superres.core.io import video as video_io
    from superres.inference import engine

    engine.set_threads(args.threads)
    start = time.perf_counter()
    info = video_io.probe(args.input)
    bar = tqdm(total=info.frames, unit="frame", desc="video", leave=False,
               disable=not progress_enabled(args.quiet))  # fmt: skip

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        path = api.upscale_video(
            args.input, args.output, args.scale, window=args.window, method=args.method,
            model=args.model, degradation=args.psf, tile=args.tile, device=args.device,
            overwrite=args.overwrite, progress=progress,
        )  # fmt: skip
    finally:
        bar.close()
    if not args.quiet:
        seconds = time.perf_counter() - start
        out = video_io.probe(path)
        audio = "yes" if out.has_audio else "no" if info.has_audio else "no (the input has none)"
        print(f"{path}: {out.frames} frames at {float(out.fps):.3g} fps, {out.width}x{out.height} "
              f"(x{args.scale}, window {args.window}, {args.method}), audio kept: {audio}, "
              f"{seconds:.2f} s")  # fmt: skip
    return EXIT_OK
