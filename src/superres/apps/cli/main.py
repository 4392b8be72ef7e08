"""Command-line interface: ``superres <command> ...``.

Every subcommand is a thin ``main``-style function over the Python API, callable
in-process with an argv list (``main(["upscale", "in.png", "-o", "out.png"])``) so tests
exercise exactly what users run. Exit codes: 0 success, 1 some input failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from superres import __version__

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command-line usage: printed as one line, exit status 2."""


def _error(message: str) -> None:
    print(f"superres: error: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- upscale


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


def _output_suffix(source: Path, ext: str) -> str:
    from superres.core.io import SUPPORTED_OUTPUT_EXTENSIONS

    if ext != "auto":
        return ext if ext.startswith(".") else f".{ext}"
    suffix = source.suffix.lower()
    return suffix if suffix in SUPPORTED_OUTPUT_EXTENSIONS else ".png"


def _plan_jobs(inputs: Sequence[str], output: str, recursive: bool, ext: str) -> list[Job]:
    """Map inputs to output paths; folders are mirrored under the output folder."""
    from superres.core.degrade import IMAGE_EXTENSIONS
    from superres.core.io import SUPPORTED_OUTPUT_EXTENSIONS

    out = Path(output)
    sources = [Path(p) for p in inputs]
    single_file = (
        len(sources) == 1
        and not sources[0].is_dir()
        and out.suffix.lower() in SUPPORTED_OUTPUT_EXTENSIONS
        and not out.is_dir()
    )
    if single_file:
        return [Job(sources[0], out)]
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: output must be a folder when upscaling several inputs")
    jobs: list[Job] = []
    for source in sources:
        if source.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(
                p
                for p in source.glob(pattern)
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            for file in files:
                rel = file.relative_to(source)
                target = out / source.name / rel if len(sources) > 1 else out / rel
                jobs.append(Job(file, target.with_suffix(_output_suffix(file, ext))))
        else:  # a file, or a missing path reported when processed
            jobs.append(Job(source, (out / source.name).with_suffix(_output_suffix(source, ext))))
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.target in seen:
            raise UsageError(
                f"{job.source} and {seen[job.target]} would both be written to {job.target}"
            )
        seen[job.target] = job.source
    return jobs


def _upscale_model(args: argparse.Namespace, backend: str, requested: float | None):
    """The model ``upscale`` runs and the resize after it, on ``backend``.

    ``onnx`` exports a named model or checkpoint in memory and runs it with onnxruntime
    through the same tiling engine; an ``.onnx`` file (from ``superres export``) implies it.
    """
    from superres import api
    from superres.inference import engine

    onnx_file = str(args.model or "").lower().endswith(".onnx")
    if backend == "torch":
        if onnx_file:
            raise UsageError(f"{args.model}: an ONNX model runs with --backend onnx")
        model, resize = api.model_for_scale(args.model, requested)
        return model.to(engine.select_device(args.device)), resize
    from superres.inference.onnx_backend import OnnxModel, onnx_providers

    providers = onnx_providers(args.device)
    if onnx_file:
        model = OnnxModel.load(args.model, threads=args.threads, providers=providers)
        return api.model_for_scale(model, requested)
    model, resize = api.model_for_scale(args.model, requested)
    return OnnxModel.from_model(model, threads=args.threads, providers=providers), resize


def cmd_upscale(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from superres.core import io
    from superres.inference import engine

    if args.scale is not None and args.outscale is not None:
        raise UsageError("give --scale or --outscale, not both")
    engine.set_threads(args.threads)
    jobs = _plan_jobs(args.inputs, args.output, args.recursive, args.ext)
    if not jobs:
        raise UsageError("no input images found")
    requested = args.outscale or args.scale  # None: x4 for a name, a checkpoint's own scale
    onnx_file = str(args.model or "").lower().endswith(".onnx")
    backend = args.backend or ("onnx" if onnx_file else "torch")
    if backend not in ("torch", "onnx"):
        raise UsageError(f"--backend must be torch or onnx, got '{backend}'")
    try:
        wanted = None if requested is None else float(requested)
        model, resize = _upscale_model(args, backend, wanted)
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as err:
        raise UsageError(str(err).splitlines()[0]) from None
    failed = skipped = done = 0
    bar = tqdm(jobs, unit="img", disable=args.quiet or len(jobs) == 1, dynamic_ncols=True)
    for job in bar:
        bar.set_postfix_str(job.source.name, refresh=False)
        if job.target.exists() and not args.overwrite:
            skipped += 1
            tqdm.write(f"skipped {job.target}: exists (use --overwrite)", file=sys.stderr)
            continue
        tiles: list = []  # the tile bar, created when the first tile reports its total

        def on_tile(n_done: int, n_total: int, tiles: list = tiles) -> None:
            if not tiles:
                tiles.append(tqdm(total=n_total, unit="tile", leave=False, dynamic_ncols=True,
                                  disable=args.quiet or len(jobs) > 1 or n_total < 2))  # fmt: skip
            tiles[0].n = n_done
            tiles[0].refresh()

        try:
            image = io.read_image(job.source)
            result = engine.upscale_image(
                image, model, tile=args.tile, overlap=args.overlap, outscale=resize,
                progress=on_tile,
            )  # fmt: skip
            job.target.parent.mkdir(parents=True, exist_ok=True)
            io.write_image(job.target, result, overwrite=args.overwrite, quality=args.quality)
            done += 1
        except io.ImageError as err:
            failed += 1
            tqdm.write(f"superres: error: {err}", file=sys.stderr)
        except MemoryError:
            failed += 1
            tqdm.write(f"superres: error: {job.source}: out of memory", file=sys.stderr)
        finally:
            for bar_ in tiles:
                bar_.close()
    bar.close()
    if not args.quiet:
        print(
            f"{done} upscaled, {skipped} skipped, {failed} failed "
            f"(model {model.metadata.get('name', model.arch)} x{model.scale}"
            f"{', onnxruntime' if backend == 'onnx' else ''}"
            f"{f', resized to x{resize:g}' if resize else ''})",
            file=sys.stderr,
        )
    return EXIT_FAILED if failed else EXIT_OK


# --------------------------------------------------------------------------- eval


def cmd_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from superres.core.io import atomic_write_bytes
    from superres.evaluation import evaluate
    from superres.inference import engine
    from superres.weights import zoo

    engine.set_threads(args.threads)
    for folder in args.data:
        if not Path(folder).is_dir():
            raise UsageError(f"{folder}: not a folder")
    try:
        model = zoo.resolve(args.model, args.scale).to(engine.select_device(args.device))
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err).splitlines()[0]) from None
    name = args.model or zoo.default_model_name()
    bars: dict[str, tqdm] = {}

    def progress(dataset: str, done: int, total: int) -> None:
        if args.quiet:
            return
        bar = bars.get(dataset)
        if bar is None:
            bar = bars[dataset] = tqdm(total=total, desc=dataset, unit="img", leave=False)
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    try:
        result = evaluate(
            model, args.data, model.scale, tile=args.tile, progress=progress, name=str(name)
        )
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(str(err).splitlines()[0]) from None
    print(f"model {result.model}  x{result.scale}")
    print(result.table())
    if args.json:
        payload = result.to_json(per_image=args.per_image).encode() + b"\n"
        atomic_write_bytes(args.json, payload, overwrite=True)
    return EXIT_OK


# --------------------------------------------------------------------------- compress


def _scale_arg(text: str) -> int | str:
    if text == "auto":
        return text
    if text not in ("1", "2", "3", "4"):
        raise argparse.ArgumentTypeError(f"expected 1, 2, 3, 4 or auto, got {text}")
    return int(text)


def cmd_compress(args: argparse.Namespace) -> int:
    import warnings

    from superres import codec
    from superres.core import io
    from superres.inference import engine

    engine.set_threads(args.threads)
    if (args.quality is None) == (args.target_bpp is None):
        raise UsageError("give exactly one of --quality Q or --target-bpp B")
    if args.scale == "auto" and args.target_bpp is None:
        raise UsageError("--scale auto needs --target-bpp")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", codec.TargetBitrateWarning)
        try:
            result = codec.compress_file(
                args.input, args.output, codec=args.codec, quality=args.quality,
                target_bpp=args.target_bpp, scale=args.scale, model=args.model,
                subsampling=args.subsampling, overwrite=args.overwrite,
            )  # fmt: skip
        except io.ImageError as err:
            _error(str(err))
            return EXIT_FAILED
        except ValueError as err:  # bad settings for this image (alpha, model, ...)
            _error(f"{args.input}: {' '.join(str(err).split())}")
            return EXIT_FAILED
    for warning in caught:
        if issubclass(warning.category, codec.TargetBitrateWarning):
            print(f"superres: warning: {warning.message}", file=sys.stderr)
    if not args.quiet:
        model = f", restored by {result.model}" if result.scale > 1 else ""
        print(
            f"{args.output}: {len(result.data):,} bytes, {result.bpp:.4f} bpp "
            f"({result.codec} quality {result.quality}, x{result.scale}{model})"
        )
    return EXIT_OK


def cmd_decompress(args: argparse.Namespace) -> int:
    from superres import codec
    from superres.core import io
    from superres.inference import engine

    engine.set_threads(args.threads)
    try:
        image = codec.decompress_file(
            args.input, args.output, overwrite=args.overwrite, device=args.device
        )
    except (io.ImageError, codec.ContainerError) as err:
        _error(str(err))
        return EXIT_FAILED
    if not args.quiet:
        h, w = image.pixels.shape[:2]
        print(f"{args.output}: {w}x{h}")
    return EXIT_OK


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text}") from None


def _window(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in bpp, got {text}") from None
    if not 0 <= low < high:
        raise argparse.ArgumentTypeError(f"expected 0 <= LOW < HIGH, got {text}")
    return low, high


def cmd_rd(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from superres.codec import rd
    from superres.core.io import atomic_write_bytes
    from superres.inference import engine

    engine.set_threads(args.threads)
    if not Path(args.data).is_dir():
        raise UsageError(f"{args.data}: not a folder")
    if any(s not in (1, 2, 3, 4) for s in args.scales) or not args.scales:
        raise UsageError(f"--scales must be a subset of 1,2,3,4, got {args.scales}")
    if 1 not in args.scales:
        args.scales = [1, *args.scales]  # the reference of every BD-rate
    if args.plot and args.plot.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise UsageError(f"{args.plot}: the plot must be .png, .svg or .pdf")
    images = rd.load_images(args.data)
    if not images:
        raise UsageError(f"{args.data}: no images")
    model_names = args.models.split(",") if args.models else [None]
    curves = []
    for scale in sorted(set(args.scales)):
        for model in model_names if scale > 1 else [None]:
            label = f"{args.codec} x{scale}" + (f" + {model}" if model and scale > 1 else "")
            bar = tqdm(desc=label, unit="enc", leave=False, disable=args.quiet)

            def progress(done: int, total: int, bar: tqdm = bar) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                curves.append(rd.rd_curve(images, args.codec, scale, args.qualities,
                                          model=model, progress=progress))  # fmt: skip
            except ValueError as err:
                raise UsageError(" ".join(str(err).split())) from None
            finally:
                bar.close()
    reference = curves[0]
    primary = next((c.model for c in curves if c.scale > 1), None)  # the first restorer
    front = rd.pareto_front([c for c in curves if c.scale == 1 or c.model == primary])
    low, high = args.bpp_window
    print(f"{args.data}: {len(images)} images, codec {args.codec}")
    bd: dict[str, float | None] = {}
    for curve in [*curves, front]:
        print(f"\n{curve.name}")
        print(
            f"  {'quality':>7} {'bpp':>7} {'PSNR-RGB':>9} {'MS-SSIM':>8} {'enc s':>6} {'dec s':>6}"
        )
        for p in curve.points:
            print(f"  {p.quality:>7} {p.bpp:>7.4f} {p.psnr:>9.3f} {p.ms_ssim:>8.4f} "
                  f"{p.encoding_time:>6.3f} {p.decoding_time:>6.3f}")  # fmt: skip
        if curve is reference:
            continue
        try:
            value, (p_low, p_high) = rd.bd_rate(
                [(p.bpp, p.psnr) for p in reference.points],
                [(p.bpp, p.psnr) for p in curve.points],
                args.bpp_window,
            )
            bd[curve.name] = value
            print(f"  BD-rate vs {reference.name}, {low:g}-{high:g} bpp "
                  f"({p_low:.2f}-{p_high:.2f} dB): {value:+.1f} %")  # fmt: skip
        except ValueError as err:
            bd[curve.name] = None
            print(f"  BD-rate vs {reference.name}: not measurable ({err})")
    if args.json:
        description = (
            f"superres rd on {args.data} ({len(images)} images), codec {args.codec}; the "
            f"best operating point per bitrate among scales {', '.join(map(str, args.scales))}"
        )
        payload = rd.to_compressai(front, description)
        payload["curves"] = [rd.to_compressai(c) for c in curves]
        payload["bd_rate"] = {"reference": reference.name, "bpp_window": [low, high],
                              "percent": bd}  # fmt: skip
        atomic_write_bytes(args.json, (json.dumps(payload, indent=2) + "\n").encode())
    if args.plot:
        try:
            rd.plot([*curves, front], args.plot, title=f"{Path(args.data).name}, {args.codec}",
                    window=(low, high), max_bpp=max(1.0, 2 * high))  # fmt: skip
        except ImportError as err:
            raise UsageError(str(err)) from None
    return EXIT_OK


# --------------------------------------------------------------------------- export


def _int_option(text: str | None, option: str) -> int | None:
    """Parse an integer option in the command, so a bad value is a one-line error."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{option} must be an integer, got '{text}'") from None


def cmd_export(args: argparse.Namespace) -> int:
    from superres.inference.onnx_backend import export_onnx
    from superres.weights import zoo

    if args.format != "onnx":
        raise UsageError(f"--format must be onnx (the one export format), got '{args.format}'")
    opset = _int_option(args.opset, "--opset")
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        _error(f"{output}: output exists (use --overwrite to replace it)")
        return EXIT_FAILED
    try:
        model = zoo.resolve(args.model, args.scale)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err).splitlines()[0]) from None
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, output, opset, overwrite=args.overwrite)
    except (ValueError, ImportError) as err:  # bicubic, opset range, onnx not installed
        raise UsageError(" ".join(str(err).split())) from None
    except (FileExistsError, RuntimeError, OSError) as err:
        _error(" ".join(str(err).split()))
        return EXIT_FAILED
    if not args.quiet:
        name = model.metadata.get("name", model.arch)
        print(
            f"{output}: {name} ({model.arch}) x{model.scale}, ONNX opset {opset}, "
            f"{output.stat().st_size:,} bytes"
        )
    return EXIT_OK


# --------------------------------------------------------------------------- bench


def cmd_bench(args: argparse.Namespace) -> int:
    from superres.evaluation import bench

    try:
        models = None
        if args.models is not None:
            models = [m.strip() for m in args.models.split(",") if m.strip()]
        if models == []:
            raise ValueError(f"--models needs at least one name, got '{args.models}'")
        report = bench.run_bench(
            models, bench.parse_scales(args.scales), bench.parse_size(args.size),
            threads=None if args.threads is None else bench.positive_int(args.threads, "--threads"),
            repeats=bench.positive_int(args.repeats, "--repeats"),
            warmup=_int_option(args.warmup, "--warmup"), backend=args.backend, peers=args.peers,
            tile=_int_option(args.tile, "--tile"),
            matmul_size=bench.positive_int(args.matmul_size, "--matmul-size"),
            progress=None if args.quiet else lambda line: print(line, file=sys.stderr),
        )  # fmt: skip
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as err:
        raise UsageError(" ".join(str(err).split())) from None
    print(report.table())
    if args.json:
        bench.write_json(report, args.json)
    return EXIT_OK


# --------------------------------------------------------------------------- models


def cmd_models(args: argparse.Namespace) -> int:
    from superres.models import create_model, get_model_spec, list_models
    from superres.weights import zoo

    rows = []
    for name in list_models():
        spec = get_model_spec(name)
        scales = list(spec.scales or (2, 3, 4))
        scale = 4 if 4 in scales else scales[-1]
        params = sum(p.numel() for p in create_model(name, scale=scale).parameters())
        shown = ",".join(f"x{s}" for s in scales) if spec.scales else "any"
        rows.append((name, shown, params, spec.tiling,
                     spec.description))  # fmt: skip
    shipped = []
    for weights in zoo.shipped_weights():
        meta = weights.metadata()
        metrics = meta.get("metrics", {})
        shipped.append(
            {"name": weights.name, "scale": weights.scale, "arch": meta.get("arch"),
             "params": meta.get("num_params"), "metrics": metrics}
        )  # fmt: skip
    if args.json:
        print(json.dumps({
            "architectures": [dict(zip(("name", "scales", "params_x4", "tiling", "description"),
                                       r, strict=True)) for r in rows],
            "shipped": shipped, "default": zoo.default_model_name(),
        }, indent=2))  # fmt: skip
        return EXIT_OK
    print("Architectures (create_model / superres train):")
    print(f"  {'name':<16} {'scales':<10} {'params':>10}  {'tiling':<11} description")
    for name, scales, params, tiling, description in rows:
        print(f"  {name:<16} {scales:<10} {params:>10,}  {tiling:<11} {description}")
    print("\nShipped weights (--model NAME):")
    if not shipped:
        print("  (none yet)")
    for item in shipped:
        set5 = item["metrics"].get("Set5", {})
        score = f"Set5 {set5['psnr']:.2f} dB" if "psnr" in set5 else ""
        print(f"  {item['name']:<10} x{item['scale']}  {item['arch']:<16} {score}")
    print("  bicubic    x2,x3,x4 (parameter-free baseline)")
    print(f"\nDefault model: {zoo.default_model_name()}")
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="superres", description="Image super-resolution: upscale, evaluate, train."
    )
    parser.add_argument("--version", action="version", version=f"superres {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", "-m", default=None,
                       help="shipped model name, 'bicubic' or a .safetensors checkpoint "
                            "(default: the quality tier; bicubic until it ships)")  # fmt: skip
        p.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
        p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads")
        p.add_argument(
            "--tile",
            type=_positive_int,
            default=None,
            help="tile size in input pixels (default: automatic, 0: no tiling)",
        )
        p.add_argument("--quiet", "-q", action="store_true", help="no progress output")

    up = sub.add_parser("upscale", help="upscale images or folders of images")
    up.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    up.add_argument(
        "-o",
        "--output",
        required=True,
        help="output file (one input) or folder (mirrors input folders)",
    )
    up.add_argument(
        "--scale",
        "-s",
        type=int,
        choices=(2, 3, 4),
        default=None,
        help="upscaling factor (default 4)",
    )
    up.add_argument(
        "--outscale",
        type=_positive_float,
        default=None,
        help="any output factor: runs the next larger model scale, then resizes",
    )
    up.add_argument(
        "--overlap",
        type=_positive_int,
        default=None,
        help="tile overlap in input pixels (default: from the model)",
    )
    up.add_argument("--recursive", "-r", action="store_true", help="descend into subfolders")
    up.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    up.add_argument(
        "--ext",
        default="auto",
        choices=("auto", "png", "jpg", "jpeg", "webp", "avif", "tif", "tiff"),
        help="output format for folder outputs (auto: as input, else png)",
    )
    up.add_argument("--quality", type=int, default=None, help="JPEG/WebP/AVIF quality")
    up.add_argument("--backend", default=None, metavar="torch|onnx",
                    help="torch (default) or onnx: onnxruntime through the same tiling "
                         "(the default for an .onnx --model)")  # fmt: skip
    common(up)
    up.set_defaults(func=cmd_upscale)

    ev = sub.add_parser("eval", help="benchmark a model on HR image folders")
    ev.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="DIR",
        help="folder of HR images (repeatable)",
    )
    ev.add_argument("--scale", "-s", type=int, choices=(2, 3, 4), default=4)
    ev.add_argument("--json", default=None, metavar="FILE", help="write results as JSON")
    ev.add_argument("--per-image", action="store_true", help="include per-image scores in JSON")
    common(ev)
    ev.set_defaults(func=cmd_eval)

    co = sub.add_parser("compress", help="compress an image to .srz (codec + super-resolution)")
    co.add_argument("input", metavar="INPUT", help="image file")
    co.add_argument("-o", "--output", required=True, help="output .srz file")
    co.add_argument("--codec", "-c", default="jpeg", choices=("jpeg", "webp", "avif"))
    co.add_argument("--quality", "-q", type=int, default=None, help="codec quality")
    co.add_argument("--target-bpp", type=_positive_float, default=None, metavar="B",
                    help="highest quality whose whole file fits B bits per pixel")  # fmt: skip
    co.add_argument("--scale", "-s", type=_scale_arg, default=1,
                    help="1 (plain codec), 2, 3, 4 or auto (best PSNR at the target)")  # fmt: skip
    co.add_argument("--model", "-m", default=None,
                    help="restoration model: lanczos, bicubic, fast, quality, codec "
                         "(default: the best shipped for the scale)")  # fmt: skip
    co.add_argument("--subsampling", choices=("4:2:0", "4:4:4"), default=None,
                    help="chroma subsampling for jpeg/avif (default 4:2:0)")  # fmt: skip
    co.add_argument("--overwrite", action="store_true", help="replace an existing output")
    co.add_argument("--threads", type=_positive_int, default=None, help="CPU threads")
    co.add_argument("--quiet", action="store_true", help="print nothing on success")
    co.set_defaults(func=cmd_compress)

    de = sub.add_parser("decompress", help="restore an image from an .srz file")
    de.add_argument("input", metavar="INPUT", help=".srz file")
    de.add_argument("-o", "--output", required=True, help="output image (format from extension)")
    de.add_argument("--overwrite", action="store_true", help="replace an existing output")
    de.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    de.add_argument("--threads", type=_positive_int, default=None, help="CPU threads")
    de.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    de.set_defaults(func=cmd_decompress)

    rdp = sub.add_parser("rd", help="rate-distortion curves and BD-rate of .srz on a folder")
    rdp.add_argument("--data", required=True, metavar="DIR", help="folder of images (Kodak24)")
    rdp.add_argument("--codec", "-c", default="jpeg", choices=("jpeg", "webp", "avif"))
    rdp.add_argument("--scales", type=_int_list, default=[1, 2, 4],
                     help="comma-separated scales; 1 (full size) is the reference")  # fmt: skip
    rdp.add_argument("--models", default=None,
                     help="comma-separated restorers for scales > 1 (default: the best shipped; "
                          "add lanczos to compare)")  # fmt: skip
    rdp.add_argument("--qualities", type=_int_list, default=None,
                     help="codec qualities (default: a dense set per codec)")  # fmt: skip
    rdp.add_argument("--bpp-window", type=_window, default=(0.1, 0.4), metavar="LOW,HIGH",
                     help="bpp range of the BD-rate (default 0.1,0.4)")  # fmt: skip
    rdp.add_argument("--json", type=Path, default=None, metavar="FILE",
                     help="write CompressAI-style JSON")  # fmt: skip
    rdp.add_argument("--plot", type=Path, default=None, metavar="FILE",
                     help="write a PSNR-bpp plot (.png/.svg/.pdf; needs matplotlib)")  # fmt: skip
    rdp.add_argument("--threads", type=_positive_int, default=None, help="CPU threads")
    rdp.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    rdp.set_defaults(func=cmd_rd)

    ex = sub.add_parser("export", help="export a model to ONNX (dynamic batch and size)")
    ex.add_argument("model", metavar="MODEL",
                    help="shipped name (fast, quality) or a .safetensors checkpoint")  # fmt: skip
    ex.add_argument("--scale", "-s", type=int, choices=(2, 3, 4), default=None,
                    help="scale of a shipped name (default 4)")  # fmt: skip
    ex.add_argument("--format", "-f", default="onnx", help="output format: onnx (default)")
    ex.add_argument("-o", "--output", required=True, metavar="FILE", help="output .onnx file")
    ex.add_argument("--opset", default="17", metavar="N", help="ONNX opset, 17 to 20 (default 17)")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing output")
    ex.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    ex.set_defaults(func=cmd_export)

    be = sub.add_parser("bench", help="latency, throughput, GFLOP/s and memory vs Pillow/OpenCV")
    be.add_argument("--models", default=None, metavar="A,B",
                    help="comma-separated shipped names or checkpoints (default: every "
                         "shipped name at the scales it has)")  # fmt: skip
    be.add_argument("--scales", default="2,3,4", metavar="2,3,4", help="default 2,3,4")
    be.add_argument("--size", default="640x480", metavar="WxH",
                    help="input size (default 640x480)")  # fmt: skip
    be.add_argument("--threads", default=None, metavar="N",
                    help="threads for torch, onnxruntime, OpenCV and the matmul reference "
                         "(default: torch's)")  # fmt: skip
    be.add_argument("--repeats", default="5", metavar="R", help="timed runs, median (default 5)")
    be.add_argument("--warmup", default="1", metavar="W", help="untimed runs first (default 1)")
    be.add_argument("--backend", default="torch", metavar="torch|onnx",
                    help="runtime of the models (default torch)")  # fmt: skip
    be.add_argument("--tile", default=None, metavar="T",
                    help="engine tile size (default: automatic, 0: no tiling)")  # fmt: skip
    be.add_argument("--peers", default=None, metavar="DIR",
                    help="folder of OpenCV dnn_superres .pb files (ESPCN_x4.pb, ...) to compare "
                         "(needs opencv-contrib-python)")  # fmt: skip
    be.add_argument("--matmul-size", default="2048", metavar="N",
                    help="side of the fp32 matmul reference (default 2048)")  # fmt: skip
    be.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")
    be.add_argument("--quiet", "-q", action="store_true", help="no per-measurement lines")
    be.set_defaults(func=cmd_bench)

    mo = sub.add_parser("models", help="list architectures and shipped weights")
    mo.add_argument("--json", action="store_true", help="print JSON")
    mo.set_defaults(func=cmd_models)

    from superres.training import loop as train

    tr = sub.add_parser("train", help="train a model from a YAML config (torchrun for DDP)")
    train.add_arguments(tr)
    tr.set_defaults(func=train.run_cli)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as err:
        _error(str(err))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
