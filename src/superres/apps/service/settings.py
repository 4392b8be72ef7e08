"""The service's settings: one frozen dataclass, checked once, passed to :func:`create_app`."""

from __future__ import annotations

import dataclasses
import math
import os

from superres.errors import ConfigError

__all__ = ["Settings", "available_cores"]


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How ``superres serve`` runs. The defaults are safe for a laptop: loopback only, one
    worker, a short queue and small uploads.

    Attributes:
        host: Interface to listen on (``127.0.0.1``: this machine only).
        port: TCP port.
        workers: Inference threads; each runs one job at a time.
        max_queue: Jobs that may wait for a worker; one more is answered 429.
        max_upload_mb: Largest request body in MiB (413 beyond it, before it is read in full).
        max_pixels: Largest input width x height (413 beyond it, from the file's header).
        timeout: Seconds a job may take from its arrival, queueing included (504 beyond it;
            the job is cancelled between the tiles of its network runs: an upscale, or the
            restorations of a compression or decompression).
        models: The model names offered (empty: every shipped tier and the parameter-free
            baselines). Only names: the service never opens a path a client sends.
        default_model: The model an upscale without ``model`` runs (None: the library's
            default if offered, else the first of ``models``).
        max_outscale: Largest ``outscale`` accepted.
        threads: Torch CPU threads per worker (None: the cores divided among the workers, so
            that busy workers do not oversubscribe them).
        device: Torch device for inference (None: automatic).
        tile: Tile size in input pixels (None: automatic) of upscales and of the codec's
            restorations. Smaller tiles let a job over the timeout stop sooner.
        max_pending: Upload requests held at once (reading, queued or running); beyond it a
            request is answered 429 before its body is read. None: twice ``workers +
            max_queue``. Bounds the memory held by request bodies.
        shutdown_grace: Seconds a graceful shutdown waits for running jobs (None: ``timeout``
            plus 5).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_queue: int = 4
    max_upload_mb: float = 8.0
    max_pixels: int = 1_048_576
    timeout: float = 120.0
    models: tuple[str, ...] = ()
    default_model: str | None = None
    max_outscale: float = 4.0
    threads: int | None = None
    device: str | None = None
    tile: int | None = None
    max_pending: int | None = None
    shutdown_grace: float | None = None

    def __post_init__(self) -> None:
        _positive_int("workers", self.workers)
        _positive_int("max_queue", self.max_queue)
        _positive_int("max_pixels", self.max_pixels)
        _positive_int("port", self.port, low=0)
        _positive_number("max_upload_mb", self.max_upload_mb)
        _positive_number("timeout", self.timeout)
        _positive_number("max_outscale", self.max_outscale)
        if self.threads is not None:
            _positive_int("threads", self.threads)
        if self.tile is not None:
            _positive_int("tile", self.tile, low=0)
        if self.max_pending is not None:
            _positive_int("max_pending", self.max_pending)
        if self.shutdown_grace is not None:
            _positive_number("shutdown_grace", self.shutdown_grace)
        object.__setattr__(self, "models", tuple(self.models))
        if self.default_model is not None and self.models and self.default_model not in self.models:
            raise ConfigError(
                f"default model {self.default_model!r} is not among the models offered "
                f"({', '.join(self.models)})"
            )

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def pending_limit(self) -> int:
        """:attr:`max_pending`, or its default."""
        return self.max_pending or 2 * (self.workers + self.max_queue)

    @property
    def threads_per_worker(self) -> int:
        """Torch threads each worker uses: :attr:`threads`, or the cores shared out."""
        return self.threads or max(1, available_cores() // self.workers)

    @property
    def grace(self) -> float:
        """Seconds a graceful shutdown waits for running jobs."""
        return self.timeout + 5.0 if self.shutdown_grace is None else self.shutdown_grace


def _positive_int(name: str, value: object, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ConfigError(f"{name} must be {what}, got {value!r}")


def _positive_number(name: str, value: object) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
