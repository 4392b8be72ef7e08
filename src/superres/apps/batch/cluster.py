"""Ray itself: the optional import, a session that starts or joins a cluster, the worker
layout checked against the cluster's CPUs, and the Ray Data settings every batch uses.

The deadlock this guards against (Ray issue #44687): Ray Data starts the actors of a
``map_batches`` before any other task, so actors that hold every CPU leave none for read
tasks and the dataset waits forever. Batches here are built with ``ray.data.from_items``
(job descriptors put in the object store by the driver: the plan has no read or other task
stage, only the actor pool), so the actors may take every CPU; and a layout that asks for
more CPUs than the cluster has is refused before anything starts, instead of waiting for
actors that can never be placed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType

from superres.errors import ConfigError, SuperresError, one_line

__all__ = [
    "INSTALL_HINT",
    "Cluster",
    "RayMissingError",
    "import_ray",
    "ray_installed",
    "rows",
    "session",
    "worker_count",
    "worker_env",
]

#: What to do when Ray is not installed.
INSTALL_HINT = "pip install 'superres[ray]'"


class RayMissingError(ConfigError):
    """The Ray engine was asked for and Ray (the ``ray`` extra) is not installed."""


@dataclass(frozen=True)
class Cluster:
    """Where a batch runs and how wide.

    Attributes:
        address: None: a private Ray instance on this machine, started for the batch and
            stopped after it (a Ray already initialised in this process is used as it is).
            ``"auto"``: the cluster that ``ray start`` started on this machine or that
            ``RAY_ADDRESS`` names. ``"host:port"`` (or ``"ray://host:port"``): that cluster.
        workers: Actors, each holding one copy of the model (None: as many as the cluster's
            CPUs allow at ``threads_per_worker`` each).
        threads_per_worker: CPUs reserved by, and torch threads of, each actor.
        gpus_per_worker: GPUs reserved by each actor (0 on CPU; 1 to run on ``cuda``).
    """

    address: str | None = None
    workers: int | None = None
    threads_per_worker: int = 1
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        for name in ("workers", "threads_per_worker"):
            value = getattr(self, name)
            if value is None and name == "workers":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive integer, "
                                  f"got {value!r}")  # fmt: skip
        if self.gpus_per_worker < 0:
            raise ConfigError(f"gpus per worker must be >= 0, got {self.gpus_per_worker!r}")


def ray_installed() -> bool:
    """Whether Ray can be imported (without importing it: that takes about a second)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def import_ray() -> ModuleType:
    """``import ray`` (and ``ray.data``) with usage statistics off unless the environment
    says otherwise (``RAY_USAGE_STATS_ENABLED``).

    Raises:
        RayMissingError: Ray is not installed (one line saying how to install it).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data  # noqa: F401  (the Data API every batch uses)
    except ImportError:
        raise RayMissingError(
            f"the Ray engine needs the optional 'ray' extra ({INSTALL_HINT})"
        ) from None
    return ray


def _configure_data(ray: ModuleType) -> None:
    """Ray Data settings of the driver: no Ray progress bars or execution banners (the
    caller reports per file), results in completion order."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = False
    ctx.execution_options.verbose_progress = False
    for name in ("print_on_execution_start", "enable_auto_log_stats"):
        if hasattr(ctx, name):
            setattr(ctx, name, False)
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when nothing listens at a ``host:port`` (or ``ray://host:port``)
    address: Ray itself would keep retrying for minutes. ``auto`` and ``local`` are Ray's."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r}: expected auto or HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"no Ray cluster answers at {address} ({reason})") from None


def _process_state() -> Callable[[], None]:
    """A function that puts back what ``ray.init`` changes in the calling process and
    ``ray.shutdown`` leaves changed: the environment variables it adds
    (``PYTHONBREAKPOINT``, ``RAY_AUTH_MODE``, ...) and its SIGTERM handler."""
    environ = dict(os.environ)
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None

    def restore() -> None:
        for key in set(os.environ) - set(environ):
            del os.environ[key]
        if main and sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)

    return restore


def worker_env() -> dict:
    """The runtime environment of the batch's Ray job: ``MALLOC_ARENA_MAX=1`` in every
    worker (unless the driver's environment sets it).

    Ray Data calls a ``map_batches`` class on a thread of the actor, not its main thread,
    and glibc gives such a thread its own malloc arena, which handed the quality tier's
    large feature maps out as fresh pages for the kernel to zero. Measured on 2 cores (24
    crops of 480x321, quality x2, two 1-thread workers): 2.4-3.5 s of system time per
    worker without it, 0.7-0.9 s with it, and the run 25.7 -> 23.6 s; on a plain thread,
    the same 4 images took 187,838 page faults against 21,407 with one arena (18,698 on
    the main thread). A Ray that the caller initialised keeps its own runtime environment.
    """
    value = os.environ.get("MALLOC_ARENA_MAX", "1")
    return {"env_vars": {"MALLOC_ARENA_MAX": value}}


def _stop_monitor(ray: ModuleType) -> None:
    """Kill the autoscaler monitor of a private instance before ``ray.shutdown``: it does not
    exit on SIGTERM, so the shutdown would wait the full second it allows it (Ray 2.60) before
    killing it anyway. Best effort: Ray's process table is not a public API."""
    try:
        node = ray._private.worker._global_node
        for info in node.all_processes.get("monitor", []):
            if info.process.poll() is None:
                info.process.kill()
                info.process.wait(timeout=1)
    except Exception:  # noqa: BLE001, S110 - another Ray version: the shutdown still works
        pass


@contextlib.contextmanager
def session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[ModuleType]:
    """Ray, connected: joins ``address`` (see :class:`Cluster`) or starts a private local
    instance (no dashboard, worker logs kept out of the driver's terminal, the job's workers
    with :func:`worker_env`); what this call
    started it stops on exit, and puts back the environment variables and SIGTERM handler
    that ``ray.init`` changed. A Ray already initialised in this process is used as it is
    and left running.

    Args:
        address: See :class:`Cluster`.
        num_cpus: CPUs of a private local instance (None: all of this machine's).

    Raises:
        RayMissingError: Ray is not installed.
        ConfigError: no cluster at ``address``.
    """
    ray = import_ray()
    started = False
    restore = _process_state()
    if not ray.is_initialized():
        options = dict(include_dashboard=False, log_to_driver=False,
                       logging_level=logging.ERROR, runtime_env=worker_env())  # fmt: skip
        if address is not None:
            _check_reachable(address)
        try:
            if address is None:
                ray.init(address="local", num_cpus=num_cpus, **options)
            else:
                ray.init(address=address, **options)
        except (ConnectionError, ValueError, RuntimeError) as err:
            where = "a local Ray instance" if address is None else f"Ray at {address}"
            raise ConfigError(f"cannot start or join {where}: {err}") from None
        started = True
    try:
        _configure_data(ray)
        yield ray
    finally:
        if started:
            if address is None:
                _stop_monitor(ray)
            ray.shutdown()
            restore()


def worker_count(ray: ModuleType, cluster: Cluster, jobs: int) -> int:
    """How many actors to start for ``jobs`` items: ``cluster.workers`` (or as many as the
    cluster's CPUs hold at ``threads_per_worker`` each), at most one per item.

    Raises:
        ConfigError: the cluster cannot hold one worker, or holds fewer than asked for (the
            actors that do not fit would never start).
    """
    resources = ray.cluster_resources()
    cpus = float(resources.get("CPU", 0))
    fit = int(cpus // cluster.threads_per_worker)
    if cluster.gpus_per_worker:
        fit = min(fit, int(float(resources.get("GPU", 0)) // cluster.gpus_per_worker))
    need = f"{cluster.threads_per_worker} CPU" + ("s" if cluster.threads_per_worker > 1 else "")
    if cluster.gpus_per_worker:
        need += f" and {cluster.gpus_per_worker:g} GPU"
    if fit < 1:
        raise ConfigError(
            f"the Ray cluster has {cpus:g} CPUs and {resources.get('GPU', 0):g} GPUs: not "
            f"enough for one worker of {need}"
        )
    if cluster.workers is not None and cluster.workers > fit:
        raise ConfigError(
            f"{cluster.workers} workers of {need} each do not fit in the Ray cluster "
            f"({cpus:g} CPUs, {resources.get('GPU', 0):g} GPUs: at most {fit})"
        )
    return max(1, min(cluster.workers or fit, jobs))


def rows(dataset: Iterable[dict]) -> Iterator[dict]:
    """The rows of a Ray Dataset as they finish; a failure of Ray itself (a worker that
    could not start, a node that was lost for good) becomes one :class:`SuperresError`
    line with the underlying error's last line, instead of Ray's multi-line report."""
    iterator = iter(dataset)
    while True:
        try:
            row = next(iterator)
        except StopIteration:
            return
        except Exception as err:  # noqa: BLE001 - Ray's exception classes vary by version
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            last = lines[-1] if lines else type(err).__name__
            raise SuperresError(f"the Ray workers failed ({type(err).__name__}): "
                                f"{one_line(last)}") from None  # fmt: skip
        yield row
