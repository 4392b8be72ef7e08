"""``superres serve``: the HTTP service and its page (needs the ``serve`` extra: FastAPI,
uvicorn, python-multipart).

Modules: :mod:`~superres.apps.service.settings` (the typed settings),
:mod:`~superres.apps.service.pool` (worker threads behind a bounded queue),
:mod:`~superres.apps.service.limits` (body size, content type and pending-request limits as
ASGI middleware), :mod:`~superres.apps.service.jobs` (header checks and the work over the
library's API), :mod:`~superres.apps.service.schemas` (the JSON bodies),
:mod:`~superres.apps.service.app` (:func:`create_app`), :mod:`~superres.apps.service.server`
(uvicorn with a graceful shutdown) and ``static/`` (the page: HTML, CSS, JS; no build step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from superres.apps.service.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

__all__ = ["Settings", "create_app", "serve"]


def create_app(settings: Settings | None = None) -> FastAPI:
    """:func:`superres.apps.service.app.create_app` (imported on first use: FastAPI is an
    optional dependency)."""
    from superres.apps.service.app import create_app as build

    return build(settings)


def serve(settings: Settings, log_level: str = "info") -> None:
    """:func:`superres.apps.service.server.serve` (imported on first use)."""
    from superres.apps.service.server import serve as run

    run(settings, log_level=log_level)
