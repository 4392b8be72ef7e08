"""The HTTP service: :func:`create_app` builds the FastAPI app from :class:`Settings`.

Routes (the OpenAPI schema at ``/openapi.json``, rendered at ``/docs``, is the contract)::

    POST /v1/upscale     multipart: image, model, scale, outscale, format, quality -> image
    POST /v1/compress    multipart: image, codec, quality | target_bpp, scale, model -> .srz
    POST /v1/decompress  multipart: file (.srz), format -> image
    GET  /v1/models      models and scales, codecs, formats, limits
    GET  /v1/progress/ID tiles done of a job that was given progress_id=ID
    GET  /healthz        liveness (answered by the event loop, never queued behind work)
    GET  /readyz         200 when new work is taken, 503 while starting or shutting down
    GET  /               the page (static/index.html)

Errors are JSON ``{"error": "..."}``: 400 bad input (the library's one-line message), 413
upload or pixel count over the limit, 415 not multipart / not an image, 429 queue full (with
``Retry-After``), 503 shutting down, 504 over the timeout (the job is cancelled).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from superres import __version__, api, codec
from superres.apps.service import jobs
from superres.apps.service.jobs import Rejected
from superres.apps.service.limits import RequestLimits
from superres.apps.service.pool import (
    JobCancelled,
    JobContext,
    JobTimeout,
    QueueFull,
    ShuttingDown,
    WorkerPool,
)
from superres.apps.service.schemas import (
    ErrorBody,
    Health,
    Limits,
    ModelInfo,
    ModelList,
    Progress,
    Ready,
)
from superres.apps.service.settings import Settings
from superres.errors import SuperresError, one_line

__all__ = ["STATIC_DIR", "create_app"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
_PROGRESS_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
#: How long a finished job's progress stays readable.
_PROGRESS_TTL = 120.0
_PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad input: the library's one-line message"},
    413: {"model": ErrorBody, "description": "Upload or pixel count over the limit"},
    415: {"model": ErrorBody, "description": "Not multipart/form-data, or not an image"},
    429: {"model": ErrorBody, "description": "Queue full; see the Retry-After header"},
    503: {"model": ErrorBody, "description": "Shutting down"},
    504: {"model": ErrorBody, "description": "Over the timeout; the job was cancelled"},
}


def _image_response(description: str) -> dict[int | str, dict[str, Any]]:
    types = {media: {"schema": {"type": "string", "format": "binary"}}
             for media in jobs.MEDIA_TYPES.values()}  # fmt: skip
    return {200: {"content": types, "description": description}, **_ERRORS}


class _ProgressBoard:
    """Job contexts by client-chosen id, so that the page can poll a job's tiles. Bounded:
    the oldest entries go first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[JobContext, float]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: str, context: JobContext) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (context, time.monotonic())
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def get(self, key: str) -> JobContext | None:
        with self._lock:
            now = time.monotonic()
            for old in [k for k, (_, t) in self._entries.items() if now - t > _PROGRESS_TTL]:
                del self._entries[old]
            entry = self._entries.get(key)
            return None if entry is None else entry[0]


def _validation_message(err: RequestValidationError) -> str:
    parts = []
    for item in err.errors():
        loc = [str(p) for p in item.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc) or "request"
        parts.append(f"{where}: {str(item.get('msg', 'invalid')).lower()}")
    return one_line("; ".join(parts) or "invalid request")


def _mount_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the files of ``fastapi-offline`` when installed (no CDN);
    without it, FastAPI's page (which loads Swagger UI from a CDN)."""
    assets: Path | None = None
    try:
        import fastapi_offline

        folder = Path(fastapi_offline.__file__).resolve().parent / "static"
        assets = folder if (folder / "swagger-ui-bundle.js").is_file() else None
    except ImportError:
        pass
    if assets is not None:
        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        options: dict[str, Any] = {}
        if assets is not None:
            options = {"swagger_js_url": "/docs-assets/swagger-ui-bundle.js",
                       "swagger_css_url": "/docs-assets/swagger-ui.css",
                       "swagger_favicon_url": "/docs-assets/favicon.png"}  # fmt: skip
        return get_swagger_ui_html(openapi_url="/openapi.json", title="superres API", **options)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service as an ASGI app (run it with uvicorn, or ``superres serve``).

    The worker pool starts with the app's lifespan and warms the default model; at shutdown
    queued jobs are refused (503) and running ones finish within ``settings.grace``.
    ``app.state.settings`` and ``app.state.pool`` hold the settings and the pool.
    """
    settings = settings or Settings()
    offered = jobs.offered_models(settings)  # checks the names before anything starts
    unknown = [name for name, scales in offered.items() if not scales]
    if unknown:
        raise SuperresError(f"models not available: {', '.join(unknown)}")
    default = jobs.default_model(settings)
    warmed = threading.Event()

    def warm() -> None:
        try:
            api.resolve_model(default, None, None, device=settings.device)
        finally:
            warmed.set()

    pool = WorkerPool(
        settings.workers, settings.max_queue,
        threads_per_worker=settings.threads_per_worker, initializer=warm,
    )  # fmt: skip
    board = _ProgressBoard(capacity=4 * settings.pending_limit)

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        pool.start()
        try:
            yield
        finally:
            pool.close(timeout=settings.grace)

    app = FastAPI(
        title="superres",
        version=__version__,
        summary="Image super-resolution and SR-assisted compression over HTTP.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.pool = pool
    app.add_middleware(
        RequestLimits,
        max_bytes=settings.max_upload_bytes,
        max_pending=settings.pending_limit,
        retry_after=pool.retry_after,
    )

    # ------------------------------------------------------------------ errors

    @app.exception_handler(Rejected)
    async def rejected(_: Request, err: Rejected) -> JSONResponse:
        return JSONResponse({"error": err.message}, err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(err)}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": one_line(err.detail)}, err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def internal(_: Request, err: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(err).__name__})"}, 500)

    async def run(
        job: Callable[[JobContext], jobs.Output], field_name: str, progress_id: str | None
    ) -> Response:
        if progress_id is not None and not _PROGRESS_ID.match(progress_id):
            raise Rejected(400, "progress_id must be 8-64 letters, digits, '-' or '_'")
        context = JobContext()
        if progress_id is not None:
            board.add(progress_id, context)
        try:
            output = await pool.run(job, settings.timeout, context)
        except QueueFull as err:
            headers = {"Retry-After": str(err.retry_after)}
            raise Rejected(429, str(err), headers) from None
        except ShuttingDown as err:
            raise Rejected(503, str(err)) from None
        except (JobTimeout, JobCancelled):
            raise Rejected(504, f"the job took longer than {settings.timeout:g} s and was "
                                "cancelled") from None  # fmt: skip
        except SuperresError as err:
            raise Rejected(400, jobs.library_message(err, field_name)) from None
        except MemoryError:
            raise Rejected(503, "out of memory; try a smaller image") from None
        return Response(output.data, media_type=output.media_type, headers=output.headers)

    # ------------------------------------------------------------------ work

    @app.post(
        "/v1/upscale", response_class=Response, tags=["images"],
        responses=_image_response("The upscaled image; X-Superres-Model, -Time-Ms, -Size"),
    )  # fmt: skip
    async def upscale(
        image: Annotated[UploadFile, File(description="The image file")],
        model: Annotated[str | None, Form(description="Model name (GET /v1/models)")] = None,
        scale: Annotated[int | None, Form(description="Model scale (2, 3, 4)")] = None,
        outscale: Annotated[float | None, Form(description="Any output factor")] = None,
        format: Annotated[str, Form(description="png, jpeg, webp, avif or tiff")] = "png",
        quality: Annotated[int | None, Form(description="Lossy quality 1-100")] = None,
        progress_id: Annotated[str | None, Form(description="Id for /v1/progress")] = None,
    ) -> Response:
        """Super-resolve an image. The model runs at ``scale`` (default: the smallest
        shipped scale >= ``outscale``, or 4), then the output is resized to ``outscale``."""
        data = await image.read()
        jobs.probe_image(data, settings)
        job = jobs.upscale_job(data, settings, model=model, scale=scale, outscale=outscale,
                               fmt=format, quality=quality)  # fmt: skip
        return await run(job, "image", progress_id)

    @app.post(
        "/v1/compress", response_class=Response, tags=["compression"],
        responses={200: {"content": {jobs.SRZ_MEDIA_TYPE: {}},
                         "description": "The .srz file; X-Superres-Codec, -Quality, -Scale, "
                                        "-Model, -Bpp, -PSNR (with psnr=true), -Adapt "
                                        "(adaptive-downscaling steps, when used), -Time-Ms"},
                   **_ERRORS},
    )  # fmt: skip
    async def compress(
        image: Annotated[UploadFile, File(description="The image file")],
        codec_name: Annotated[str, Form(alias="codec", description="jpeg, webp, avif")] = "jpeg",
        quality: Annotated[int | None, Form(description="Codec quality")] = None,
        target_bpp: Annotated[float | None, Form(description="Bits per pixel to fit")] = None,
        scale: Annotated[str, Form(description="1, 2, 3, 4 or auto")] = "1",
        model: Annotated[str | None, Form(description="Restoration model")] = None,
        psnr: Annotated[bool, Form(description="Report the restored PSNR-RGB")] = False,
        adapt: Annotated[int, Form(description="Adaptive-downscaling steps (0: off)")] = 0,
        progress_id: Annotated[str | None, Form(description="Id for /v1/progress")] = None,
    ) -> Response:
        """Compress an image to ``.srz``: stored ``scale`` times smaller with a standard
        codec, restored by a network on decoding."""
        data = await image.read()
        jobs.probe_image(data, settings)
        job = jobs.compress_job(data, settings, codec_name=codec_name, quality=quality,
                                target_bpp=target_bpp, scale=scale, model=model,
                                psnr=psnr, adapt=adapt)  # fmt: skip
        return await run(job, "image", progress_id)

    @app.post(
        "/v1/decompress", response_class=Response, tags=["compression"],
        responses=_image_response("The restored image; X-Superres-Time-Ms, -Size"),
    )  # fmt: skip
    async def decompress(
        file: Annotated[UploadFile, File(description="An .srz file")],
        format: Annotated[str, Form(description="png, jpeg, webp, avif or tiff")] = "png",
        progress_id: Annotated[str | None, Form(description="Id for /v1/progress")] = None,
    ) -> Response:
        """Restore an image from an ``.srz`` file."""
        data = await file.read()
        jobs.probe_srz(data, settings)
        job = jobs.decompress_job(data, settings, fmt=format)
        return await run(job, "file", progress_id)

    # ------------------------------------------------------------------ information

    @app.get("/v1/models", tags=["information"])
    async def models() -> ModelList:
        """The models, codecs and output formats on offer, and the limits."""
        return ModelList(
            models=[ModelInfo(name=n, scales=list(s), default=n == default)
                    for n, s in offered.items()],
            codecs=codec.list_codecs(),
            restorers=list(codec.MODELS.values()),
            formats=[f.lower() for f in jobs.MEDIA_TYPES],
            limits=Limits(
                max_upload_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels,
                max_outscale=settings.max_outscale, timeout_s=settings.timeout,
                max_queue=settings.max_queue, workers=settings.workers,
            ),
        )  # fmt: skip

    @app.get("/v1/progress/{progress_id}", tags=["information"],
             responses={404: {"model": ErrorBody}})  # fmt: skip
    async def progress(progress_id: str) -> Progress:
        """The state of a job submitted with ``progress_id`` (kept for a while after it ends)."""
        context = board.get(progress_id)
        if context is None:
            raise Rejected(404, f"no job with progress_id {progress_id!r}")
        return Progress(state=context.state, done=context.done, total=context.total)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Health:
        """Liveness: answered by the event loop, never queued behind work."""
        return Health()

    @app.get("/readyz", tags=["health"], responses={503: {"model": Ready}})
    async def readyz() -> JSONResponse:
        """Readiness: 200 when new work is taken (the pool runs and the default model is
        loaded), 503 while starting or shutting down."""
        stats = pool.stats()
        ready = stats.accepting and warmed.is_set()
        body = Ready(ready=ready, workers=stats.workers, busy=stats.busy, queued=stats.queued,
                     max_queue=stats.max_queue)  # fmt: skip
        return JSONResponse(body.model_dump(), 200 if ready else 503)

    # ------------------------------------------------------------------ the page

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": _PAGE_POLICY,
                                     "Cache-Control": "no-cache"})  # fmt: skip

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _mount_docs(app)
    return app
