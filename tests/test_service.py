"""The web service in process (FastAPI's test client): every status, bad inputs, limits,
the queue, cancellation, shutdown, the OpenAPI contract and no temp files left behind."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import os
import struct
import tempfile
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (FastAPI) is not installed")
if not any(importlib.util.find_spec(name) for name in ("python_multipart", "multipart")):
    pytest.skip("the serve extra (python-multipart) is not installed", allow_module_level=True)
pytest.importorskip("httpx", reason="httpx (FastAPI's test client) is not installed")

with warnings.catch_warnings():  # newer Starlette prefers httpx2; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from superres.apps.cli import main  # noqa: E402
from superres.apps.service import Settings, create_app  # noqa: E402
from superres.apps.service.limits import RequestLimits  # noqa: E402
from superres.errors import ConfigError  # noqa: E402
from tests.test_cli import PATTERN  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FAST = {"models": ("fast", "bicubic", "quality"), "default_model": "fast"}


def png(width: int = 24, height: int = 16, seed: int = 0, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, mode).save(out, "PNG")
    return out.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` and that holds no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")


def png_bomb(side: int) -> bytes:
    """A real, valid ``side x side`` grey PNG of zeros: a few hundred KB that would decode to
    ``side**2`` bytes (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte + pixels
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
    )


@contextmanager
def service(**overrides: object) -> Iterator[TestClient]:
    settings = Settings(**{**FAST, **overrides})
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:  # the default model warms up
            assert time.monotonic() < deadline, "the service never became ready"
            time.sleep(0.05)
        yield client


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with service() as c:
        yield c


def upload(client: TestClient, data: bytes, path: str = "/v1/upscale", field: str = "image",
           **form: str):  # fmt: skip
    return client.post(path, files={field: ("in.png", data, "image/png")}, data=form)


def error_of(response) -> str:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and body["error"] and "\n" not in body["error"]
    return body["error"]


def hold_worker(pool) -> threading.Event:
    """Occupy one worker with a job that waits for the returned event."""
    release = threading.Event()
    pool.submit(lambda context: release.wait(30))
    return release


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# --------------------------------------------------------------------------- success


def test_upscale_returns_the_image_with_model_time_and_size(client) -> None:
    response = upload(client, png(24, 16), model="fast", scale="2")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-superres-model"] == "fast x2"
    assert int(response.headers["x-superres-time-ms"]) >= 0
    assert response.headers["x-superres-size"] == "48x32"
    assert Image.open(io.BytesIO(response.content)).size == (48, 32)


def test_upscale_outscale_format_and_the_default_model(client) -> None:
    response = upload(client, png(20, 10), outscale="1.5", format="webp")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["x-superres-model"] == "fast x2"  # smallest scale >= 1.5
    assert Image.open(io.BytesIO(response.content)).size == (30, 15)


def test_progress_of_a_finished_job(client) -> None:
    assert upload(client, png(), scale="2", progress_id="job-0001").status_code == 200
    progress = client.get("/v1/progress/job-0001").json()
    assert progress["state"] == "done" and progress["done"] == progress["total"] >= 1
    assert client.get("/v1/progress/never-seen").status_code == 404
    bad = upload(client, png(), progress_id="../x")
    assert bad.status_code == 400 and "progress_id" in error_of(bad)


def test_compress_reports_psnr_and_decompress_restores(client) -> None:
    image = png(48, 32, seed=3)
    response = upload(client, image, "/v1/compress", codec="webp", scale="2", target_bpp="2",
                      psnr="true")  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-superres-srz"
    assert response.content.startswith(b"SRZ")
    assert response.headers["x-superres-scale"] == "2"
    assert float(response.headers["x-superres-bpp"]) <= 2
    assert 5 < float(response.headers["x-superres-psnr"]) < 60
    restored = upload(client, response.content, "/v1/decompress", field="file")
    assert restored.status_code == 200
    assert restored.headers["x-superres-size"] == "48x32"
    assert Image.open(io.BytesIO(restored.content)).size == (48, 32)
    # adaptive downscaling: the same kind of file, restored closer to the image
    with Image.open(PATTERN) as chart:
        buffer = io.BytesIO()
        chart.convert("RGB").crop((0, 0, 64, 48)).save(buffer, "PNG")
    image = buffer.getvalue()
    adapted = upload(client, image, "/v1/compress", codec="webp", scale="2", quality="90",
                     psnr="true", adapt="5")  # fmt: skip
    plain = upload(client, image, "/v1/compress", codec="webp", scale="2", quality="90",
                   psnr="true")  # fmt: skip
    assert adapted.status_code == plain.status_code == 200, adapted.text
    assert float(adapted.headers["x-superres-psnr"]) > float(plain.headers["x-superres-psnr"])
    assert adapted.headers["x-superres-adapt"] == "5" and "x-superres-adapt" not in plain.headers


def test_models_lists_names_scales_codecs_and_limits(client) -> None:
    body = client.get("/v1/models").json()
    names = {m["name"]: m for m in body["models"]}
    assert set(names) == {"fast", "bicubic", "quality"}
    assert names["fast"]["default"] and names["fast"]["scales"] == [2, 3, 4]
    assert "webp" in body["codecs"] and "png" in body["formats"]
    assert body["limits"]["max_pixels"] == Settings().max_pixels


def test_health_and_readiness(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


# --------------------------------------------------------------------------- 400 / 415


@pytest.mark.parametrize(
    ("field", "data", "form", "status", "phrase"),
    [
        ("image", png()[:60], {}, 400, "image: "),  # truncated: the header parses, pixels fail
        ("image", b"", {}, 400, "empty"),
        ("image", b"GIF89a? definitely not", {}, 415, "not an image"),
        ("image", b"just some text", {}, 415, "not an image"),
        ("file", png(), {}, 400, "image: field required"),  # wrong field name
        ("image", png(), {"model": "../../etc/passwd"}, 400, "not offered"),
        ("image", png(), {"model": "wiener"}, 400, "not offered"),
        ("image", png(), {"scale": "abc"}, 400, "scale"),
        ("image", png(), {"model": "fast", "scale": "7"}, 400, "no x7"),
        ("image", png(), {"outscale": "9"}, 400, "outscale"),
        ("image", png(), {"format": "bmp"}, 400, "format"),
        ("image", png(), {"quality": "0"}, 400, "quality"),
    ],
)
def test_bad_upscale_inputs(client, field, data, form, status, phrase) -> None:
    response = upload(client, data, field=field, **form)
    assert response.status_code == status, response.text
    assert phrase in error_of(response)


def test_a_request_that_is_not_multipart_is_415(client) -> None:
    response = client.post("/v1/upscale", json={"image": "x"})
    assert response.status_code == 415
    assert "multipart/form-data" in error_of(response)
    assert client.post("/v1/upscale", content=b"raw").status_code == 415


def test_bad_compress_and_decompress_inputs(client) -> None:
    assert upload(client, png(), "/v1/compress", codec="bmp").status_code == 400
    assert upload(client, png(), "/v1/compress", scale="5").status_code == 400
    both = upload(client, png(), "/v1/compress", quality="50", target_bpp="1")
    assert both.status_code == 400 and "not both" in error_of(both)
    for form, phrase in [({"adapt": "201", "scale": "2"}, "adapt must be 0 to 200 steps"),
                         ({"adapt": "-1", "scale": "2"}, "adapt must be 0 to 200 steps"),
                         ({"adapt": "3"}, "adapt needs scale 2, 3, 4 or auto"),
                         ({"adapt": "3", "scale": "2", "model": "lanczos"},
                          "adaptive downscaling needs a network restorer")]:  # fmt: skip
        bad = upload(client, png(), "/v1/compress", **form)
        assert bad.status_code == 400 and phrase in error_of(bad), (form, bad.text)
    alpha = upload(client, png(mode="RGBA"), "/v1/compress")
    assert alpha.status_code == 400 and "transparency" in error_of(alpha)
    srz = upload(client, png(32, 32), "/v1/compress", scale="2").content
    damaged = srz[:-8] + bytes(8)
    bad = upload(client, damaged, "/v1/decompress", field="file")
    assert bad.status_code == 400 and error_of(bad).startswith("file: ")
    not_srz = upload(client, png(), "/v1/decompress", field="file")
    assert not_srz.status_code == 415 and "not an .srz" in error_of(not_srz)


def test_unknown_paths_and_methods_are_json(client) -> None:
    assert client.get("/v2/nothing").status_code == 404
    assert error_of(client.get("/v2/nothing")) == "Not Found"
    assert client.get("/v1/upscale").status_code == 405


def test_static_files_do_not_leave_their_folder(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<title>superres</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py",
                 "/static/%2e%2e/%2e%2e/settings.py"):  # fmt: skip
        assert client.get(path).status_code == 404, path


def test_the_page_loads_nothing_from_elsewhere(client) -> None:
    for path in ("/", "/static/app.js", "/static/app.css"):
        text = client.get(path).text
        assert "http://" not in text and "https://" not in text, path


# --------------------------------------------------------------------------- 413


def test_declared_body_over_the_limit_is_413_unread() -> None:
    """The middleware answers from Content-Length without calling receive."""
    calls = {"app": 0, "receive": 0}
    sent: list[dict] = []

    async def app(scope, receive, send):  # pragma: no cover - must not run
        calls["app"] += 1

    async def receive():
        calls["receive"] += 1
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    limits = RequestLimits(app, max_bytes=1000, max_pending=4)
    scope = {"type": "http", "method": "POST", "path": "/v1/upscale",
             "headers": [(b"content-length", b"3000000"),
                         (b"content-type", b"multipart/form-data; boundary=x")]}  # fmt: skip
    asyncio.run(limits(scope, receive, send))
    assert calls == {"app": 0, "receive": 0}
    assert sent[0]["status"] == 413
    assert b"over the limit" in sent[1]["body"]


def test_upload_over_the_limit_is_413() -> None:
    with service(max_upload_mb=0.05) as c:
        response = upload(c, os.urandom(80_000))
        assert response.status_code == 413
        assert "over the limit of 0.05 MiB" in error_of(response)
        assert upload(c, png()).status_code == 200  # under the limit still works


def test_streamed_upload_is_counted_and_413() -> None:
    """Without Content-Length (chunked), the body is counted as it arrives and reading
    stops at the limit, whatever the app does with the aborted body."""
    chunks = {"given": 0}
    sent: list[dict] = []

    async def receive():
        chunks["given"] += 1
        return {"type": "http.request", "body": bytes(10_000), "more_body": chunks["given"] < 100}

    async def app(scope, receive, send):  # reads everything, like a form parser
        try:
            while (await receive()).get("more_body"):
                pass
        except Exception:  # noqa: BLE001 - an app may turn the abort into its own answer
            await send({"type": "http.response.start", "status": 400, "headers": []})
            await send({"type": "http.response.body", "body": b"parse error"})

    async def send(message):
        sent.append(message)

    limits = RequestLimits(app, max_bytes=50_000, max_pending=4)
    scope = {"type": "http", "method": "POST", "path": "/v1/upscale",
             "headers": [(b"content-type", b"multipart/form-data; boundary=x"),
                         (b"transfer-encoding", b"chunked")]}  # fmt: skip
    asyncio.run(limits(scope, receive, send))
    assert chunks["given"] == 6  # 60,000 bytes: one chunk past the limit, then no more
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [413]
    assert b"over the limit" in sent[-1]["body"]
    assert limits.pending == 0


def test_streamed_upload_through_the_app_is_413() -> None:
    boundary = "superres-test"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n").encode()  # fmt: skip

    def body():
        yield head
        for _ in range(10):
            yield bytes(10_000)
        yield f"\r\n--{boundary}--\r\n".encode()

    with service(max_upload_mb=0.05) as c:
        response = c.post(
            "/v1/upscale",
            content=body(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert "content-length" not in {k.lower() for k in response.request.headers}
        assert response.status_code == 413, response.text
        assert "over the limit" in error_of(response)


@pytest.mark.parametrize(
    "make", [lambda: png_bomb(6000), lambda: png_header_only(100_000, 100_000)]
)
def test_decompression_bomb_and_huge_dimensions_are_413_undecoded(client, make) -> None:
    data = make()
    assert len(data) < 1_000_000
    start = time.monotonic()
    response = upload(client, data)
    assert response.status_code == 413
    assert "over the limit of" in error_of(response)
    assert time.monotonic() - start < 5  # 36 MP or 10 GP were never decoded
    assert upload(client, data, "/v1/compress").status_code == 413


def test_srz_over_the_pixel_limit_is_413() -> None:
    with service() as c:
        srz = upload(c, png(64, 64), "/v1/compress", scale="2").content
    with service(max_pixels=1000) as c:
        response = upload(c, srz, "/v1/decompress", field="file")
        assert response.status_code == 413 and "64x64" in error_of(response)


# --------------------------------------------------------------------------- 429 / 503 / 504


def test_full_queue_is_429_with_retry_after() -> None:
    with service(workers=1, max_queue=1) as c:
        pool = c.app.state.pool
        release = hold_worker(pool)
        wait_for(lambda: pool.stats().busy == 1)
        release_queued = hold_worker(pool)  # waits in the queue
        try:
            assert pool.stats().queued == 1
            response = upload(c, png())
            assert response.status_code == 429
            assert int(response.headers["retry-after"]) >= 1
            assert "queue is full" in error_of(response)
            start = time.monotonic()
            assert c.get("/healthz").status_code == 200  # never queued behind work
            assert time.monotonic() - start < 0.1
        finally:
            release.set()
            release_queued.set()
        wait_for(lambda: pool.stats().busy == 0 and pool.stats().queued == 0)
        assert upload(c, png()).status_code == 200


def test_too_many_pending_uploads_are_429_before_reading() -> None:
    limits = RequestLimits(None, max_bytes=10**6, max_pending=1, retry_after=lambda: 7)  # type: ignore[arg-type]
    limits.pending = 1
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/upscale",
             "headers": [(b"content-type", b"multipart/form-data; boundary=x")]}  # fmt: skip
    asyncio.run(limits(scope, None, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 429
    assert (b"retry-after", b"7") in sent[0]["headers"]


def test_shutdown_refuses_queued_and_new_jobs_with_503() -> None:
    with service(workers=1, max_queue=2) as c:
        pool = c.app.state.pool
        release = hold_worker(pool)
        wait_for(lambda: pool.stats().busy == 1)
        answers: list = []
        waiting = threading.Thread(target=lambda: answers.append(upload(c, png())))
        waiting.start()
        try:
            wait_for(lambda: pool.stats().queued == 1)
            assert pool.begin_shutdown() == 1
            waiting.join(10)
            assert answers and answers[0].status_code == 503
            assert "shutting down" in error_of(answers[0])
            assert upload(c, png()).status_code == 503
            assert c.get("/readyz").status_code == 503
            assert c.get("/healthz").status_code == 200
        finally:
            release.set()


def test_timeout_is_504_and_the_job_is_cancelled_between_tiles() -> None:
    with service(timeout=1.0, tile=8, workers=1) as c:
        pool = c.app.state.pool
        start = time.monotonic()
        response = upload(c, png(160, 160), model="quality", scale="4", progress_id="slow-job-1")
        assert response.status_code == 504, response.text
        assert "cancelled" in error_of(response)
        assert time.monotonic() - start < 5
        wait_for(lambda: pool.stats().busy == 0, timeout=5)  # the worker freed up
        progress = c.get("/v1/progress/slow-job-1").json()
        assert progress["state"] == "cancelled"
        assert progress["total"] > 0 and progress["done"] < progress["total"]
        assert pool.stats().cancelled == 1


def test_a_decompression_over_the_timeout_is_504_and_cancelled_between_tiles() -> None:
    """The codec's restoration reports its tiles too, so a decompression past the deadline
    stops there instead of finishing (the worker frees up at once)."""
    from superres import codec

    rng = np.random.default_rng(9)
    pixels = rng.integers(0, 256, (640, 640, 3), dtype=np.uint8)
    srz = codec.compress(pixels, codec="jpeg", quality=60, scale=4, model="quality")
    with service(timeout=1.0, tile=8, workers=1) as c:
        pool = c.app.state.pool
        start = time.monotonic()
        response = upload(c, srz, "/v1/decompress", field="file")
        assert response.status_code == 504, response.text
        assert "cancelled" in error_of(response)
        wait_for(lambda: pool.stats().busy == 0, timeout=3)
        assert time.monotonic() - start < 5
        assert pool.stats().cancelled == 1


def test_health_answers_fast_while_every_worker_is_busy() -> None:
    with service(workers=2, max_queue=2) as c:
        pool = c.app.state.pool
        releases = [hold_worker(pool), hold_worker(pool)]
        try:
            wait_for(lambda: pool.stats().busy == 2)
            for _ in range(5):
                start = time.monotonic()
                assert c.get("/healthz").status_code == 200
                assert time.monotonic() - start < 0.1
        finally:
            for release in releases:
                release.set()


def test_each_worker_runs_with_its_share_of_threads() -> None:
    import torch

    before = torch.get_num_threads()
    with service(workers=2, threads=1) as c:
        pool = c.app.state.pool
        jobs = [pool.submit(lambda context: torch.get_num_threads()) for _ in range(2)]
        assert [job.future.result(10) for job in jobs] == [1, 1]
    assert torch.get_num_threads() == before  # the process's setting is given back
    assert Settings(workers=2, threads=3).threads_per_worker == 3
    assert Settings(workers=64).threads_per_worker == 1


# --------------------------------------------------------------------------- temp files


def test_no_temp_files_or_descriptors_are_left_behind(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    big = png(700, 700, seed=1)  # > 1 MiB: Starlette spools it to a temporary file
    assert len(big) > 1024 * 1024
    with service(max_pixels=2_000_000, max_upload_mb=4) as c:
        fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
        assert upload(c, big, model="bicubic", scale="2").status_code == 200
        assert upload(c, big[: len(big) // 2]).status_code == 400  # truncated: fails late
        assert upload(c, big, "/v1/compress", codec="jpeg").status_code == 200
        assert upload(c, os.urandom(1_500_000)).status_code == 415
        if fds is not None:
            assert len(os.listdir("/proc/self/fd")) <= fds
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- contract


def test_openapi_schema_documents_the_api(client) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/v1/upscale", "/v1/compress", "/v1/decompress"):
        post = paths[path]["post"]
        for status in ("400", "413", "415", "429", "503", "504"):
            ref = post["responses"][status]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorBody")
        body = post["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
        form = schema["components"]["schemas"][body.rsplit("/", 1)[1]]
        field = "file" if path == "/v1/decompress" else "image"
        assert field in form["required"]
    upscale_form = paths["/v1/upscale"]["post"]["requestBody"]["content"]["multipart/form-data"]
    form = schema["components"]["schemas"][upscale_form["schema"]["$ref"].rsplit("/", 1)[1]]
    assert {"image", "model", "scale", "outscale", "format"} <= set(form["properties"])
    assert "image/png" in paths["/v1/upscale"]["post"]["responses"]["200"]["content"]
    compress_form = paths["/v1/compress"]["post"]["requestBody"]["content"]["multipart/form-data"]
    form = schema["components"]["schemas"][compress_form["schema"]["$ref"].rsplit("/", 1)[1]]
    assert {"codec", "target_bpp", "quality", "scale"} <= set(form["properties"])
    for path in ("/v1/models", "/healthz", "/readyz"):
        assert "get" in paths[path]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    if "/docs-assets/" in docs.text:  # fastapi-offline installed: no CDN
        assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
        assert "cdn." not in docs.text


# --------------------------------------------------------------------------- settings, CLI


def test_settings_are_checked() -> None:
    bad_settings = (
        {"workers": 0}, {"max_queue": 0}, {"timeout": -1}, {"max_upload_mb": 0},
        {"max_pixels": 1.5}, {"models": ("fast",), "default_model": "quality"},
    )  # fmt: skip
    for bad in bad_settings:
        with pytest.raises(ConfigError):
            Settings(**bad)
    assert Settings().host == "127.0.0.1"


def test_cli_serve_refuses_bad_settings(capsys) -> None:
    assert main(["serve", "--max-queue", "0"]) == 2
    assert "--max-queue" in capsys.readouterr().err
    assert main(["serve", "--models", "fast", "--default-model", "quality"]) == 2
    assert "--default-model" in capsys.readouterr().err
    assert main(["serve", "--models", "nope"]) == 1
    assert "nope" in capsys.readouterr().err
