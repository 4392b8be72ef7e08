"""Speed and memory of the models on this machine, next to the upscalers people already use.

For every model and scale, on one synthetic ``W x H`` uint8 RGB image::

    warm-up runs -> `repeats` timed runs of engine.upscale_array (uint8 in, uint8 out, tiled
    as `superres upscale` tiles, no file I/O) -> median latency, output megapixels/s,
    achieved GFLOP/s (FLOPs per output pixel x output pixels / median), peak resident memory

and in the same run the same figures for Pillow's bicubic and Lanczos resize of the same
image, for OpenCV's ``dnn_superres`` ESPCN and FSRCNN when ``cv2`` has it and a folder of
their model files is given, and the FLOP rate of a float32 ``torch.mm`` on the same threads:
the hardware reference that each model's GFLOP/s is given as a fraction of.

FLOPs count multiply-adds twice and only convolutions and linear layers
(:func:`superres.models.count_flops`); the engine's tile overlap and the uint8 conversions
are not counted, so the achieved rate is what a user gets, not a kernel's peak. Peak memory
is the process's resident high-water mark during the measurement (reset before it where
Linux allows, ``/proc/self/clear_refs``; elsewhere the process peak since start).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "BenchReport",
    "MatmulReference",
    "Measurement",
    "PeakMemory",
    "matmul_gflops",
    "parse_scales",
    "parse_size",
    "positive_int",
    "run_bench",
    "write_json",
]

BACKENDS = ("torch", "onnx")
SCALES = (2, 3, 4)
#: OpenCV dnn_superres models compared: (algorithm name for setModel, file prefix).
OPENCV_PEERS = (("espcn", "ESPCN"), ("fsrcnn", "FSRCNN"))
MAX_SIDE = 16384


# --------------------------------------------------------------------------- arguments


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)`` (width, height).

    Raises:
        ValueError: not ``WxH`` with both sides in 1..16384.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not match:
        raise ValueError(f"size must be WIDTHxHEIGHT, e.g. 640x480, got '{text}'")
    width, height = int(match[1]), int(match[2])
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ValueError(f"size sides must be 1..{MAX_SIDE} pixels, got '{text}'")
    return width, height


def parse_scales(text: str) -> list[int]:
    """``"2,3,4"`` -> ``[2, 3, 4]`` (sorted, without repeats).

    Raises:
        ValueError: empty, or a value other than 2, 3 or 4.
    """
    values = [v.strip() for v in str(text).split(",") if v.strip()]
    if not values or any(v not in ("2", "3", "4") for v in values):
        raise ValueError(f"scales must be a comma-separated subset of 2,3,4, got '{text}'")
    return sorted({int(v) for v in values})


def positive_int(value: Any, what: str) -> int:
    """``int(value)`` when it is a positive integer.

    Raises:
        ValueError: naming ``what``.
    """
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"{what} must be a positive integer, got '{value}'") from None
    if number < 1:
        raise ValueError(f"{what} must be a positive integer, got '{value}'")
    return number


# --------------------------------------------------------------------------- measuring


class PeakMemory:
    """Resident-memory high-water mark of this process during a ``with`` block.

    On Linux the kernel's mark (``VmHWM``) is reset on entry, so ``peak_mb`` is the peak
    inside the block; elsewhere it is the process's peak since it started
    (``getrusage``), and ``method`` says so. The reset also lowers what ``getrusage``
    reports for this process afterwards (it reads the same mark).
    """

    def __init__(self) -> None:
        self.before_mb: float | None = None
        self.peak_mb: float | None = None
        self.method = "process-peak"

    def __enter__(self) -> PeakMemory:
        before = _status_mb("VmRSS")
        self.before_mb = None if before is None else round(before, 1)
        try:
            with open("/proc/self/clear_refs", "w") as file:
                file.write("5")  # reset the peak resident set size to the current one
            self.method = "vmhwm-reset"
        except OSError:
            self.method = "process-peak"
        return self

    def __exit__(self, *exc: object) -> None:
        peak = _status_mb("VmHWM") if self.method == "vmhwm-reset" else None
        if peak is None:
            self.method = "process-peak"
            try:
                import resource  # Unix only
            except ImportError:  # pragma: no cover - Windows
                return
            usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = usage / (1 << 20) if sys.platform == "darwin" else usage / 1024  # B / KiB
        self.peak_mb = round(peak, 1)


def _status_mb(key: str) -> float | None:
    """A ``/proc/self/status`` memory figure in MiB (None where there is no /proc)."""
    try:
        with open("/proc/self/status") as file:
            for line in file:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _time(run: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run()
    latencies = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        latencies.append(time.perf_counter() - start)
    return latencies


@dataclass(frozen=True)
class MatmulReference:
    """The machine's float32 matrix-product rate: the hardware reference of a run."""

    size: int
    threads: int
    latencies_s: list[float]
    median_s: float
    gflops: float


def matmul_gflops(
    size: int = 2048, *, repeats: int = 3, warmup: int = 1, threads: int | None = None
) -> MatmulReference:
    """Time ``torch.mm`` of two ``size x size`` float32 matrices (``2 size^3`` FLOPs).

    Args:
        size: Matrix side.
        repeats: Timed products (the median is used).
        warmup: Untimed products first.
        threads: torch threads (None: the current setting), restored afterwards.
    """
    size = positive_int(size, "matmul size")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(positive_int(threads, "threads"))
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.rand(size, size, generator=generator)
        b = torch.rand(size, size, generator=generator)
        out = torch.empty(size, size)
        used = torch.get_num_threads()
        latencies = _time(lambda: torch.mm(a, b, out=out), repeats, warmup)
    finally:
        torch.set_num_threads(previous)
    median = statistics.median(latencies)
    return MatmulReference(size, used, latencies, median, 2 * size**3 / median / 1e9)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Measurement:
    """One upscaler at one scale.

    Attributes:
        method: ``fast``, ``quality``, a checkpoint's stem, ``pillow-bicubic``,
            ``pillow-lanczos``, ``opencv-espcn`` or ``opencv-fsrcnn``.
        kind: ``model`` (this project's), ``pillow`` or ``opencv``.
        backend: ``torch``, ``onnx``, ``pillow`` or ``opencv``.
        input_size, output_size: ``(width, height)``.
        median_s: Median of ``latencies_s`` (the timed runs after warm-up).
        output_mpix_per_s: Output megapixels per second at the median.
        flops_per_output_pixel: Model FLOPs per output pixel (None: not counted).
        gflops: Achieved GFLOP/s at the median (None without FLOPs).
        matmul_fraction: ``gflops`` / the run's matmul GFLOP/s.
        peak_rss_mb: Resident high-water mark during warm-up and timed runs (MiB).
        rss_before_mb: Resident memory before them (MiB).
        memory_method: ``vmhwm-reset`` (peak inside the measurement) or ``process-peak``
            (the process's peak since it started), see :class:`PeakMemory`.
    """

    method: str
    kind: str
    backend: str
    scale: int
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    latencies_s: list[float]
    median_s: float
    output_mpix_per_s: float
    flops_per_output_pixel: float | None
    gflops: float | None
    matmul_fraction: float | None
    peak_rss_mb: float | None
    rss_before_mb: float | None
    memory_method: str = "process-peak"


@dataclass
class BenchReport:
    """Everything one ``superres bench`` run measured; ``to_dict()`` is its JSON."""

    settings: dict[str, Any]
    machine: dict[str, Any]
    matmul: MatmulReference
    results: list[Measurement] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from superres import __version__

        return {
            "superres_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": self.machine,
            "settings": self.settings,
            "matmul": asdict(self.matmul),
            "results": [asdict(m) for m in self.results],
            "skipped": list(self.skipped),
        }

    def table(self) -> str:
        """A text table: one row per measurement, grouped by scale."""
        s = self.settings
        width, height = s["input_size"]
        tile = "auto" if s["tile"] is None else s["tile"]
        lines = [
            f"input {width}x{height} RGB, {s['threads']} threads, median of {s['repeats']} "
            f"runs after {s['warmup']} warm-up, tile {tile}",
            f"fp32 matmul {self.matmul.size}x{self.matmul.size}: {self.matmul.gflops:.1f} GFLOP/s "
            "(reference)",
            "",
            f"{'method':<16} {'scale':>5} {'backend':<8} {'latency ms':>11} {'out MP/s':>9} "
            f"{'GFLOP/s':>8} {'of matmul':>9} {'peak RSS MiB':>12}",
        ]
        for m in self.results:
            gflops = "-" if m.gflops is None else f"{m.gflops:.2f}"
            fraction = "-" if m.matmul_fraction is None else f"{100 * m.matmul_fraction:.1f} %"
            rss = "-" if m.peak_rss_mb is None else f"{m.peak_rss_mb:.0f}"
            lines.append(
                f"{m.method:<16} {'x' + str(m.scale):>5} {m.backend:<8} "
                f"{1000 * m.median_s:>11.2f} {m.output_mpix_per_s:>9.2f} {gflops:>8} "
                f"{fraction:>9} {rss:>12}"
            )
        for item in self.skipped:
            scale = f" x{item['scale']}" if item.get("scale") else ""
            lines.append(f"skipped {item['method']}{scale}: {item['reason']}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- the run


def _test_image(width: int, height: int) -> np.ndarray:
    """A deterministic photo-like uint8 RGB image: smooth gradients, edges and noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(x / 17.0) * np.cos(y / 23.0),
            128 + 90 * np.cos((x + y) / 31.0),
            255 * ((x // 32 + y // 32) % 2),
        ],
        axis=2,
    )
    noise = np.random.default_rng(0).normal(0, 12, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _opencv() -> tuple[Any, str | None]:
    """``(cv2, None)`` when ``cv2.dnn_superres`` is usable, else ``(None, why not)``."""
    try:
        import cv2
    except ImportError:
        return None, "cv2 is not importable (pip install opencv-contrib-python-headless)"
    if not hasattr(cv2, "dnn_superres"):
        return None, "this cv2 has no dnn_superres (it is in opencv-contrib-python)"
    return cv2, None


@dataclass
class _Entry:
    """One model at one scale, loaded before any timing."""

    method: str
    scale: int
    model: Any
    flops: float | None


def _load_models(
    names: Sequence[str] | None, scales: Sequence[int], backend: str, threads: int
) -> tuple[list[_Entry], list[dict[str, Any]]]:
    from superres.models import flops_per_output_pixel
    from superres.weights import zoo

    explicit = names is not None
    if names is None:
        shipped = list(dict.fromkeys(w.name for w in zoo.shipped_weights()))
        names = shipped or ["bicubic"]
    entries, skipped = [], []
    for name in names:
        have = {w.scale for w in zoo.shipped_weights() if w.name == name}
        for scale in scales:
            if not explicit and have and scale not in have:
                skipped.append({"method": name, "scale": scale, "reason": "no weights"})
                continue
            model = zoo.resolve(name, scale)
            flops = model.metadata.get("flops_per_output_pixel")
            if flops is None:
                flops = flops_per_output_pixel(model)
            method = str(model.metadata.get("name") or Path(name).stem)
            if backend == "onnx":
                from superres.inference.onnx_backend import OnnxModel

                model = OnnxModel.from_model(model, threads=threads)
            entries.append(_Entry(method, scale, model, float(flops) or None))
    return entries, skipped


def run_bench(
    models: Sequence[str] | None = None,
    scales: Sequence[int] = SCALES,
    size: tuple[int, int] = (640, 480),
    *,
    threads: int | None = None,
    repeats: int = 5,
    warmup: int = 1,
    backend: str = "torch",
    peers: str | Path | None = None,
    tile: int | None = None,
    matmul_size: int = 2048,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Measure models, Pillow (and OpenCV peers) and the matmul reference in one run.

    Args:
        models: Shipped names (``fast``, ``quality``), ``bicubic`` or checkpoint paths; every
            scale must exist for each. None: every shipped name at the scales it has.
        scales: Subset of 2, 3, 4.
        size: Input ``(width, height)``.
        threads: CPU threads for torch, onnxruntime and OpenCV (None: torch's current
            setting); Pillow's resize is single-threaded. torch's setting is restored after.
        repeats: Timed runs per measurement (the median is reported).
        warmup: Untimed runs before them.
        backend: ``torch`` or ``onnx`` (onnxruntime, exported in memory) for the models.
        peers: Folder with OpenCV dnn_superres model files (``ESPCN_x4.pb``...); None: no
            OpenCV measurements. Without ``cv2.dnn_superres`` they are skipped and the
            reason is recorded in ``skipped``.
        tile: Engine tile size (None: automatic, as ``superres upscale``; 0: no tiling).
        matmul_size: Side of the reference matrix product.
        progress: Called with a one-line summary after each measurement.

    Raises:
        ValueError: bad arguments, an unknown model or a missing scale of a named model.
        ImportError: ``backend="onnx"`` without onnxruntime.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be torch or onnx, got '{backend}'")
    scales = sorted(set(scales))
    if not scales or any(s not in SCALES for s in scales):
        raise ValueError(f"scales must be a subset of 2,3,4, got {list(scales)}")
    width, height = (int(v) for v in size)
    parse_size(f"{width}x{height}")  # range check
    repeats = positive_int(repeats, "repeats")
    if isinstance(warmup, bool) or int(warmup) < 0:
        raise ValueError(f"warmup must be a non-negative integer, got '{warmup}'")
    if tile is not None and (isinstance(tile, bool) or int(tile) < 0):
        raise ValueError(f"tile must be a non-negative integer, got '{tile}'")
    peer_dir = None if peers is None else Path(peers)
    if peer_dir is not None and not peer_dir.is_dir():
        raise ValueError(f"{peer_dir}: not a folder")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(positive_int(threads, "threads"))
    used_threads = torch.get_num_threads()
    try:
        entries, skipped = _load_models(models, scales, backend, used_threads)
        pixels = _test_image(width, height)
        upscalers, peer_skips = _upscalers(entries, scales, pixels, backend, tile, peer_dir)
        skipped += peer_skips
        if any(u.kind == "opencv" for u in upscalers):
            import cv2

            cv2.setNumThreads(used_threads)
        reference = matmul_gflops(matmul_size, repeats=repeats, warmup=warmup)
        report = BenchReport(
            settings={
                "input_size": [width, height], "threads": used_threads, "repeats": repeats,
                "warmup": warmup, "backend": backend, "tile": tile, "scales": scales,
                "models": list(dict.fromkeys(e.method for e in entries)),
                "peers": None if peer_dir is None else str(peer_dir),
            },
            machine=_machine(backend),
            matmul=reference,
            skipped=skipped,
        )  # fmt: skip
        for upscaler in upscalers:
            item = _measure(upscaler, (width, height), repeats, warmup, reference.gflops)
            report.results.append(item)
            if progress is not None:
                progress(
                    f"{item.method} x{item.scale} ({item.backend}): {1000 * item.median_s:.1f} ms"
                )
    finally:
        torch.set_num_threads(previous_threads)
    return report


@dataclass
class _Upscaler:
    """One thing to time: ``run()`` upscales the test image and returns the result."""

    method: str
    kind: str
    backend: str
    scale: int
    run: Callable[[], Any]
    flops: float | None = None


def _upscalers(
    entries: list[_Entry],
    scales: Sequence[int],
    pixels: np.ndarray,
    backend: str,
    tile: int | None,
    peer_dir: Path | None,
) -> tuple[list[_Upscaler], list[dict[str, Any]]]:
    """Everything to time, scale by scale: the models, Pillow, then the OpenCV peers."""
    from PIL import Image

    from superres.inference import engine

    cv2, cv2_missing = _opencv() if peer_dir is not None else (None, None)
    skipped = []
    if peer_dir is not None and cv2 is None:
        skipped.append({"method": "opencv", "scale": None, "reason": cv2_missing})
    height, width = pixels.shape[:2]
    image = Image.fromarray(pixels)
    bgr = np.ascontiguousarray(pixels[:, :, ::-1])
    upscalers = []
    for scale in scales:
        for entry in (e for e in entries if e.scale == scale):

            def upscale(model: Any = entry.model) -> np.ndarray:
                return engine.upscale_array(pixels, model, tile=tile)[0]

            upscalers.append(_Upscaler(entry.method, "model", backend, scale, upscale, entry.flops))
        size = (width * scale, height * scale)
        for label, method in (("bicubic", Image.Resampling.BICUBIC),
                              ("lanczos", Image.Resampling.LANCZOS)):  # fmt: skip

            def resize(method: int = method, size: tuple[int, int] = size) -> Image.Image:
                return image.resize(size, method)

            upscalers.append(_Upscaler(f"pillow-{label}", "pillow", "pillow", scale, resize))
        if cv2 is None:
            continue
        for algorithm, prefix in OPENCV_PEERS:
            path = peer_dir / f"{prefix}_x{scale}.pb"
            if not path.is_file():
                skipped.append({"method": f"opencv-{algorithm}", "scale": scale,
                                "reason": f"{path} not found"})  # fmt: skip
                continue
            sr = cv2.dnn_superres.DnnSuperResImpl_create()
            try:
                sr.readModel(str(path))
            except cv2.error as exc:  # e.g. an OpenCV build that cannot read TensorFlow .pb
                reason = str(exc).strip().splitlines()[-1].strip()
                skipped.append({"method": f"opencv-{algorithm}", "scale": scale,
                                "reason": f"OpenCV {cv2.__version__} cannot read {path}: "
                                          f"{reason}"})  # fmt: skip
                continue
            sr.setModel(algorithm, scale)
            upscalers.append(_Upscaler(f"opencv-{algorithm}", "opencv", "opencv", scale,
                                       lambda sr=sr: sr.upsample(bgr)))  # fmt: skip
    return upscalers, skipped


def _measure(
    upscaler: _Upscaler, size: tuple[int, int], repeats: int, warmup: int, matmul: float
) -> Measurement:
    last: list[Any] = []

    def run() -> None:
        last.clear()  # free the previous output before the next run
        last.append(upscaler.run())

    with PeakMemory() as memory:
        latencies = _time(run, repeats, warmup)
    out = last.pop()
    out_w, out_h = out.size if hasattr(out, "getbands") else out.shape[1::-1]  # PIL or array
    del out
    median = statistics.median(latencies)
    pixels = out_w * out_h
    gflops = None if upscaler.flops is None else upscaler.flops * pixels / median / 1e9
    return Measurement(
        method=upscaler.method, kind=upscaler.kind, backend=upscaler.backend,
        scale=upscaler.scale, input_size=size, output_size=(out_w, out_h),
        latencies_s=latencies, median_s=median, output_mpix_per_s=pixels / 1e6 / median,
        flops_per_output_pixel=upscaler.flops, gflops=gflops,
        matmul_fraction=None if gflops is None else gflops / matmul,
        peak_rss_mb=memory.peak_mb, rss_before_mb=memory.before_mb,
        memory_method=memory.method,
    )  # fmt: skip


def _machine(backend: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    try:
        import PIL

        info["pillow"] = PIL.__version__
    except ImportError:  # pragma: no cover - a dependency
        pass
    if backend == "onnx":
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        info["opencv"] = getattr(cv2, "__version__", "unknown")
    return info


def write_json(report: BenchReport, path: str | Path) -> Path:
    """Write ``report.to_dict()`` as JSON, atomically (replacing an existing file)."""
    from superres.core.io import atomic_write_bytes

    payload = json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"
    return atomic_write_bytes(path, payload.encode(), overwrite=True)
