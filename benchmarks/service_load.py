"""Load test of ``superres serve``: N concurrent clients against a real uvicorn on loopback.

Starts ``python -m superres serve`` as a subprocess (or uses ``--url``), lets ``--clients``
threads each send ``--requests`` uploads of a ``--size`` PNG, and reports, per status, the
count, the latency percentiles of the 200s, the throughput (200s per second of wall time),
the slowest ``/healthz`` seen while the load ran and the server's peak resident memory::

    python benchmarks/service_load.py --clients 12 --requests 4 --workers 1 --max-queue 2 \\
        --size 64 --model fast --scale 4

Every request must end in 200, 429 or 503 (the script exits 1 otherwise). ``--json`` writes
the report. tests/test_service_load.py uses :class:`Server` and :func:`run_load`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on loopback now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_png(size: int, seed: int = 0) -> bytes:
    """A ``size x size`` RGB PNG of smooth noise (compresses like a photo, not a flat image)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, size // 4), max(1, size // 4), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


class Server:
    """``superres serve`` in a subprocess on a free loopback port (a context manager).

    Args:
        args: Extra ``superres serve`` arguments (``--workers 1`` ...).
        ready_timeout: Seconds to wait for ``/readyz``.
    """

    def __init__(self, args: Sequence[str] = (), ready_timeout: float = 120.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "superres", "serve", "--port", str(self.port),
                   "--log-level", "warning", *args]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )
        self._log: list[str] = []
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        self._wait_ready(ready_timeout)

    def _read_log(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._log.append(line.decode(errors="replace"))

    @property
    def log(self) -> str:
        """What the server printed so far."""
        return "".join(self._log)

    def _wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}):\n{self.log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server was not ready within {timeout:g} s:\n{self.log}")

    def rss(self) -> int:
        """The server's resident memory in bytes (0 where psutil is missing)."""
        try:
            import psutil

            return psutil.Process(self.process.pid).memory_info().rss
        except Exception:  # noqa: BLE001 - psutil absent or the process gone
            return 0

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (a graceful shutdown), then SIGKILL after ``timeout``; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        return self.process.returncode

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclasses.dataclass
class Report:
    """What a load run measured."""

    clients: int
    requests: int
    statuses: dict[str, int]
    errors: list[str]
    wall_s: float
    p50_ms: float | None
    p99_ms: float | None
    throughput_rps: float
    health_max_ms: float
    peak_rss_mb: float
    base_rss_mb: float

    def row(self) -> str:
        """A README table row."""
        ok = self.statuses.get("200", 0)
        refused = self.requests - ok
        p50 = "-" if self.p50_ms is None else f"{self.p50_ms:.0f}"
        p99 = "-" if self.p99_ms is None else f"{self.p99_ms:.0f}"
        return (
            f"| {self.clients} | {self.requests} | {ok} | {refused} | {p50} | {p99} | "
            f"{self.throughput_rps:.2f} | {self.health_max_ms:.0f} | {self.peak_rss_mb:.0f} |"
        )


def run_load(
    server: Server | None,
    url: str,
    image: bytes,
    *,
    clients: int,
    requests: int,
    form: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> Report:
    """``clients`` threads each send ``requests`` uploads of ``image`` to ``/v1/upscale``
    (one connection each); meanwhile ``/healthz`` is polled and the server's memory sampled.

    A request that ends without a status (connection error, client timeout) is recorded in
    ``errors``; a 429 is not retried (it counts as refused).
    """
    import httpx

    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    done = threading.Event()
    health = [0.0]
    base_rss = server.rss() if server else 0
    peak = [base_rss]

    def client(index: int) -> None:
        with httpx.Client(timeout=timeout) as session:
            for _ in range(requests):
                start = time.perf_counter()
                try:
                    response = session.post(
                        f"{url}/v1/upscale",
                        files={"image": (f"c{index}.png", image, "image/png")},
                        data=form or {},
                    )
                except httpx.HTTPError as err:
                    with lock:
                        errors.append(f"{type(err).__name__}: {err}")
                    continue
                seconds = time.perf_counter() - start
                with lock:
                    statuses[str(response.status_code)] += 1
                    if response.status_code == 200:
                        latencies.append(seconds)

    def watch() -> None:
        with httpx.Client(timeout=30) as session:
            while not done.is_set():
                start = time.perf_counter()
                with contextlib.suppress(httpx.HTTPError):
                    session.get(f"{url}/healthz")
                health[0] = max(health[0], time.perf_counter() - start)
                if server:
                    peak[0] = max(peak[0], server.rss())
                done.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    done.set()
    watcher.join(30)
    ordered = sorted(latencies)

    def pick(q: float) -> float | None:
        if not ordered:
            return None
        return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return Report(
        clients=clients, requests=clients * requests, statuses=dict(statuses), errors=errors,
        wall_s=wall, p50_ms=pick(0.5), p99_ms=pick(0.99),
        throughput_rps=len(ordered) / wall if wall > 0 else 0.0,
        health_max_ms=1000 * health[0], peak_rss_mb=peak[0] / 2**20, base_rss_mb=base_rss / 2**20,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="an already running server (else started)")
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--size", type=int, default=64, help="side of the square test PNG")
    parser.add_argument("--model", default="fast")
    parser.add_argument("--scale", default="4")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-queue", type=int, default=2)
    parser.add_argument("--max-upload-mb", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    parser.add_argument("--json", default=None, help="write the report here")
    args = parser.parse_args(argv)
    image = test_png(args.size)
    form = {"model": args.model, "scale": args.scale}
    serve_args = ["--workers", str(args.workers), "--max-queue", str(args.max_queue),
                  "--max-upload-mb", str(args.max_upload_mb), "--models", args.model]  # fmt: skip
    if args.threads:
        serve_args += ["--threads", str(args.threads)]
    server = None if args.url else Server(serve_args)
    url = args.url or server.url
    try:
        report = run_load(server, url, image, clients=args.clients, requests=args.requests,
                          form=form)  # fmt: skip
    finally:
        if server:
            server.stop()
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"statuses: {report.statuses}, errors: {len(report.errors)}, wall {report.wall_s:.1f} s")
    print("| clients | requests | 200 | 429/503 | p50 ms | p99 ms | 200/s | max /healthz ms | "
          "peak RSS MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    print(report.row())
    if args.json:
        Path(args.json).write_text(json.dumps(dataclasses.asdict(report), indent=2))
    unexpected = set(report.statuses) - {"200", "429", "503"}
    return 1 if report.errors or unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
