"""Run the app under uvicorn with a graceful shutdown.

On SIGINT/SIGTERM the pool first stops taking work and refuses its queued jobs (each of
their requests is answered 503), then uvicorn stops listening and waits up to
``Settings.grace`` seconds for the running jobs' answers, so no accepted connection is
dropped without a status.
"""

from __future__ import annotations

import socket

import uvicorn

from superres.apps.service.app import create_app
from superres.apps.service.settings import Settings

__all__ = ["GracefulServer", "serve"]


class GracefulServer(uvicorn.Server):
    """uvicorn's server, refusing queued jobs before it waits for connections to finish."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        pool = getattr(getattr(self.config.app, "state", None), "pool", None)
        if pool is not None:
            pool.begin_shutdown()
        await super().shutdown(sockets)


def config(settings: Settings, log_level: str = "info") -> uvicorn.Config:
    """The uvicorn configuration for ``settings`` (one process; the pool holds the
    workers)."""
    return uvicorn.Config(
        create_app(settings), host=settings.host, port=settings.port, log_level=log_level,
        timeout_graceful_shutdown=max(1, round(settings.grace)), access_log=False,
        server_header=False,
    )  # fmt: skip


def serve(settings: Settings, log_level: str = "info") -> None:
    """Serve until interrupted."""
    GracefulServer(config(settings, log_level)).run()
