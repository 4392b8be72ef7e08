"""The ``--engine`` options that ``upscale``, ``eval`` and ``rd`` share: ``local`` (this
process, the default) or ``ray`` (a pool of Ray actors, :mod:`superres.apps.batch`), with
``--address``, ``--workers`` and ``--threads-per-worker`` for Ray."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from superres.apps.cli.common import UsageError, positive_int

if TYPE_CHECKING:
    from superres.apps.batch import Cluster

__all__ = ["RAY_OPTIONS", "add_engine_options", "ray_cluster"]

#: The options that only mean something with ``--engine ray`` (flag, attribute).
RAY_OPTIONS = (
    ("--address", "address"),
    ("--workers", "workers"),
    ("--threads-per-worker", "threads_per_worker"),
)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """``--engine``, ``--address``, ``--workers`` and ``--threads-per-worker``."""
    group = parser.add_argument_group(
        "engine", "where the work runs; 'ray' needs the ray extra (pip install 'superres[ray]')"
    )
    group.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: this process (default); ray: Ray actors, each holding "
                            "the model once, on this machine or a cluster")  # fmt: skip
    group.add_argument("--address", default=None, metavar="ADDR|auto",
                       help="Ray cluster to join: auto (the one 'ray start' started here, or "
                            "RAY_ADDRESS) or HOST:PORT (default: a private Ray on this "
                            "machine, stopped afterwards)")  # fmt: skip
    group.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="Ray workers (default: as many as the cluster's CPUs hold)",
    )
    group.add_argument("--threads-per-worker", type=positive_int, default=None, metavar="T",
                       help="CPUs and torch threads of each Ray worker (default: --threads, "
                            "else 1)")  # fmt: skip


def ray_cluster(args: argparse.Namespace) -> Cluster | None:
    """The :class:`~superres.apps.batch.Cluster` of ``--engine ray`` (None for local).

    Raises:
        UsageError: a Ray option without ``--engine ray``, or ``--engine ray`` without Ray
            installed (checked without importing it).
    """
    if args.engine != "ray":
        for flag, name in RAY_OPTIONS:
            if getattr(args, name, None) is not None:
                raise UsageError(f"{flag} needs --engine ray")
        return None
    from superres.apps.batch import INSTALL_HINT, Cluster, ray_installed

    if not ray_installed():
        raise UsageError(f"--engine ray needs the optional 'ray' extra ({INSTALL_HINT})")
    threads = args.threads_per_worker or args.threads or 1
    gpus = 1.0 if str(getattr(args, "device", None) or "").startswith("cuda") else 0.0
    return Cluster(address=args.address, workers=args.workers, threads_per_worker=threads,
                   gpus_per_worker=gpus)  # fmt: skip
