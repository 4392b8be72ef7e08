"""Devices, threads and the CPU allocator: the machine-facing part of inference.

* :func:`select_device` resolves ``"auto"``/``"cpu"``/``"cuda[:N]"``/``"mps"`` and says in one
  line why a device cannot be used (:class:`~superres.errors.DeviceError`).
* :func:`set_threads` sets torch's CPU thread count.
* :func:`tune_cpu_allocator` / :func:`release_cpu_memory`: the CPU fast path's malloc tuning
  (README "Speed and deployment").
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading

import torch

from superres.errors import ConfigError, DeviceError

__all__ = [
    "available_memory",
    "mps_available",
    "release_cpu_memory",
    "select_device",
    "set_threads",
    "tune_cpu_allocator",
]

#: glibc ``mallopt`` parameters and the values :func:`tune_cpu_allocator` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = 2 << 30
_allocator_state: list[bool | None] = [None]  # None: not tried yet; then whether it applied
_allocator_lock = threading.Lock()
_libc: list[ctypes.CDLL] = []  # glibc, once tune_cpu_allocator applied


def select_device(device: str | torch.device | None = None) -> torch.device:
    """Resolve a device name, checking that it is usable.

    Args:
        device: ``None`` or ``"auto"`` (CUDA if available, else MPS, else CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``, ``"mps"``, or a :class:`torch.device`.

    Raises:
        DeviceError: not a device name this package supports, or a device that exists in
            torch but is not available on this machine (one line saying why and what to use
            instead).
    """
    if device is None or (isinstance(device, str) and device.strip().lower() in ("", "auto")):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(device.strip().lower())
    except (RuntimeError, ValueError, TypeError):
        raise DeviceError(
            f"unknown device {device!r} (expected auto, cpu, cuda, cuda:N or mps)"
        ) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no GPU found"
            raise DeviceError(
                f"device '{device}' requested but CUDA is not available ({why}); "
                "use 'cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(
                f"device '{device}' requested but only {count} CUDA device(s) exist "
                f"(cuda:0..cuda:{count - 1})"
            )
        return dev
    if dev.type == "mps":
        if not mps_available():
            raise DeviceError(
                f"device '{device}' requested but MPS (Apple GPU) is not available; "
                "use 'cpu' or 'auto'"
            )
        return dev
    raise DeviceError(f"unsupported device {device!r} (expected auto, cpu, cuda, cuda:N or mps)")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def set_threads(n: int | None) -> None:
    """Set the number of CPU threads torch uses for inference (None: leave torch's default).

    Raises:
        ConfigError: ``n`` is not a positive integer (a ``ValueError``).
    """
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"threads must be a positive integer, got {n!r}")
    torch.set_num_threads(int(n))


def tune_cpu_allocator() -> bool:
    """Let large CPU tensors reuse freed memory instead of fresh pages (glibc only; once).

    glibc serves allocations above a dynamic threshold (at most 32 MiB) with ``mmap`` and
    returns them to the system on ``free``, so every layer of a large tile writes into fresh
    pages that the kernel must fault in and zero: on this project's reference machine that
    doubled the time of the fast x4 model at 640x480. This raises the mmap threshold to
    1 GiB and the trim threshold to 2 GiB (``mallopt``), so freed activations stay in the
    heap and are reused by the next layer and the next tile, as PyTorch's CUDA caching
    allocator does on a GPU. The cost: memory freed by the process stays mapped to it (up to
    about the largest tile's activations) until :func:`release_cpu_memory` or exit.

    Called by the tile loop the first time it runs on the CPU. Set the environment variable
    ``SUPERRES_TUNE_MALLOC=0`` to leave the allocator alone. Process-wide and permanent.

    Returns:
        Whether the allocator is tuned (False on other C libraries and when disabled).
    """
    with _allocator_lock:
        return _tune_cpu_allocator()


def _tune_cpu_allocator() -> bool:
    if _allocator_state[0] is not None:
        return bool(_allocator_state[0])
    applied = False
    if os.environ.get("SUPERRES_TUNE_MALLOC", "1") != "0" and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL("libc.so.6")
            applied = bool(
                libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
            )
            if applied:
                _libc.append(libc)
        except (OSError, AttributeError):
            applied = False
    _allocator_state[0] = applied
    return applied


def release_cpu_memory() -> None:
    """Give memory that the process freed back to the system (glibc ``malloc_trim``).

    With :func:`tune_cpu_allocator` in effect, memory freed after an upscale stays with the
    process for the next one (trimming after every call would make the fast x4 model at
    640x480 about 30 % slower: 0.155 -> 0.20 s). Call this in a long-lived process that
    wants it back, e.g. after a batch of images. No-op when the allocator is not tuned.
    """
    if _libc:
        _libc[0].malloc_trim(0)


def available_memory() -> int | None:
    """Bytes of RAM the system can still give this process (Linux ``MemAvailable``, or
    psutil when installed); None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)
