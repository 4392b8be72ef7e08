"""The worker pool: inference threads behind a bounded queue, outside the event loop.

Data flow::

    request --submit (429 when the queue is full, 503 when shutting down)--> queue
          --worker thread: job.fn(context)--> concurrent future --await, with a deadline--> response

Threads over the thread-safe API (one model cache, shared weights) rather than processes:
torch releases the GIL while it computes, so the event loop stays responsive. Each worker
sets torch's CPU thread count to its share of the cores (:attr:`Settings.threads_per_worker`):
with OpenMP every calling thread gets its own team of that many threads, so ``workers``
busy workers use about the machine's cores, never ``workers`` times them.

A job past its deadline is cancelled: its :meth:`JobContext.check` (called by the upscale's
progress callback between tiles) raises :class:`JobCancelled`, and a job still waiting in
the queue is dropped when a worker takes it, so the worker frees up instead of finishing
work nobody waits for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = [
    "JobCancelled",
    "JobContext",
    "JobTimeout",
    "PoolStats",
    "QueueFull",
    "ShuttingDown",
    "WorkerPool",
]

T = TypeVar("T")
log = logging.getLogger("superres.service")


class QueueFull(Exception):
    """Every worker is busy and the queue is full; ``retry_after`` is a guess in seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"the queue is full; retry in about {retry_after} s")


class ShuttingDown(Exception):
    """The pool is shutting down and takes no more work (queued jobs are refused too)."""

    def __init__(self) -> None:
        super().__init__("the service is shutting down")


class JobTimeout(Exception):
    """A job did not finish within its deadline; it has been cancelled."""


class JobCancelled(Exception):  # not a SuperresError/ValueError: no library code catches it
    """Raised inside a job by :meth:`JobContext.check` once the job is cancelled."""


@dataclass
class JobContext:
    """What a running job sees: its cancellation flag and its progress."""

    cancelled: threading.Event = field(default_factory=threading.Event)
    done: int = 0
    total: int = 0
    state: str = "queued"  # queued, running, done, failed, cancelled

    def check(self) -> None:
        """Raise :class:`JobCancelled` if the job was cancelled (a timeout, a shutdown)."""
        if self.cancelled.is_set():
            raise JobCancelled("cancelled")

    def progress(self, done: int, total: int) -> None:
        """A ``callback(done_tiles, total_tiles)`` for the library: records the progress,
        then stops the job if it was cancelled (so between tiles)."""
        self.done, self.total = int(done), int(total)
        self.check()


@dataclass
class _Job(Generic[T]):
    fn: Callable[[JobContext], T]
    context: JobContext
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of the pool (``/readyz`` reports it)."""

    workers: int
    busy: int
    queued: int
    max_queue: int
    accepting: bool
    completed: int
    cancelled: int
    refused: int


class WorkerPool:
    """``workers`` threads taking jobs from a queue of at most ``max_queue``.

    Args:
        workers: Number of worker threads.
        max_queue: Jobs that may wait; :meth:`submit` raises :class:`QueueFull` beyond.
        threads_per_worker: Torch CPU threads each worker sets when it starts (None: leave
            torch's setting).
        initializer: Called once in each worker thread before its first job.
    """

    def __init__(
        self,
        workers: int,
        max_queue: int,
        *,
        threads_per_worker: int | None = None,
        initializer: Callable[[], None] | None = None,
    ) -> None:
        self.workers = workers
        self.max_queue = max_queue
        self.threads_per_worker = threads_per_worker
        self._initializer = initializer
        self._queue: queue.Queue[_Job[Any] | None] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._accepting = False
        self._busy = 0
        self._completed = 0
        self._cancelled = 0
        self._refused = 0
        self._mean_seconds = 1.0  # running mean of a job's time, for Retry-After
        self._previous_threads: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the worker threads (once)."""
        with self._lock:
            if self._threads:
                return
            if self.threads_per_worker is not None:
                import torch

                # The process-wide default too, for code that runs before a worker's own
                # setting (model loading at start-up); :meth:`close` restores it.
                self._previous_threads = torch.get_num_threads()
                torch.set_num_threads(self.threads_per_worker)
            for index in range(self.workers):
                thread = threading.Thread(
                    target=self._work, name=f"superres-worker-{index}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
            self._accepting = True

    def begin_shutdown(self) -> int:
        """Take no more jobs and refuse the queued ones (their callers get
        :class:`ShuttingDown`); running jobs finish. Returns how many were refused."""
        with self._lock:
            self._accepting = False
        refused = 0
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.context.state = "cancelled"
                job.future.set_exception(ShuttingDown())
                refused += 1
        with self._lock:
            self._refused += refused
        return refused

    def close(self, timeout: float | None = None) -> None:
        """:meth:`begin_shutdown`, then wait up to ``timeout`` seconds for running jobs
        and stop the threads."""
        self.begin_shutdown()
        for _ in self._threads:
            self._queue.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
        self._threads = []
        if self._previous_threads is not None:
            import torch

            torch.set_num_threads(self._previous_threads)
            self._previous_threads = None

    # ------------------------------------------------------------------ submitting

    @property
    def accepting(self) -> bool:
        """Whether :meth:`submit` takes jobs (started and not shutting down)."""
        return self._accepting

    def retry_after(self) -> int:
        """Seconds after which a refused client might find room: the running mean job time
        times the jobs ahead of it per worker (at least 1)."""
        ahead = self._queue.qsize() + self._busy
        return max(1, math.ceil(self._mean_seconds * ahead / self.workers))

    def submit(self, fn: Callable[[JobContext], T], context: JobContext | None = None) -> _Job[T]:
        """Queue ``fn(context)``; returns the job (its ``future`` holds the result).

        Raises:
            ShuttingDown: the pool is not accepting work.
            QueueFull: ``max_queue`` jobs are already waiting.
        """
        job = _Job(fn, context or JobContext())
        with self._lock:
            if not self._accepting:
                raise ShuttingDown()
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                self._refused += 1
                raise QueueFull(self.retry_after()) from None
        return job

    async def run(
        self,
        fn: Callable[[JobContext], T],
        timeout: float,
        context: JobContext | None = None,
    ) -> T:
        """Submit ``fn`` and await its result for at most ``timeout`` seconds.

        Raises:
            ShuttingDown, QueueFull: as :meth:`submit`, or ShuttingDown for a queued job
                refused by a shutdown.
            JobTimeout: the deadline passed; the job is cancelled (between tiles when
                running, dropped when still queued).
            Exception: whatever ``fn`` raised.
        """
        job = self.submit(fn, context)
        waiter = asyncio.wrap_future(job.future)
        # A result that arrives after a timeout is nobody's: mark its exception retrieved.
        waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.TimeoutError:
            job.context.cancelled.set()
            raise JobTimeout(f"the job took longer than {timeout:g} s and was cancelled") from None
        except asyncio.CancelledError:  # the client went away: free the worker
            job.context.cancelled.set()
            raise

    def stats(self) -> PoolStats:
        """The pool's current state."""
        with self._lock:
            return PoolStats(
                workers=self.workers, busy=self._busy, queued=self._queue.qsize(),
                max_queue=self.max_queue, accepting=self._accepting,
                completed=self._completed, cancelled=self._cancelled, refused=self._refused,
            )  # fmt: skip

    # ------------------------------------------------------------------ workers

    def _work(self) -> None:
        if self.threads_per_worker is not None:
            import torch

            torch.set_num_threads(self.threads_per_worker)  # this thread's OpenMP team
        if self._initializer is not None:
            try:
                self._initializer()
            except Exception:  # a failed warm-up must not kill the worker
                log.exception("worker initializer failed")
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.context.cancelled.is_set():  # timed out while queued
                self._finish(job, None, JobCancelled("cancelled while queued"), 0.0)
                continue
            with self._lock:
                self._busy += 1
            job.context.state = "running"
            start = time.monotonic()
            try:
                result = job.fn(job.context)
            except BaseException as err:  # delivered to the caller, never kills the worker
                self._finish(job, None, err, time.monotonic() - start)
            else:
                self._finish(job, result, None, time.monotonic() - start)
            finally:
                with self._lock:
                    self._busy -= 1

    def _finish(
        self, job: _Job, result: object, error: BaseException | None, seconds: float
    ) -> None:
        with self._lock:
            if isinstance(error, JobCancelled):
                self._cancelled += 1
            else:
                self._completed += 1
                self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * max(seconds, 0.01)
        job.context.state = (
            "cancelled" if isinstance(error, JobCancelled) else "failed" if error else "done"
        )
        if job.future.done():
            return
        if error is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(error)
