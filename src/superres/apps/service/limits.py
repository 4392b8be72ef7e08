"""Request limits as a pure ASGI middleware, so they hold before any body is parsed.

For the upload routes (``POST`` under ``/v1/``):

- a body whose ``Content-Length`` is over the limit is answered 413 at once, unread;
- a body without one (chunked) is counted while it streams in, and the request is answered
  413 as soon as the count passes the limit (nothing further is read);
- anything but ``multipart/form-data`` is answered 415;
- more than ``max_pending`` such requests at once are answered 429 (with ``Retry-After``)
  before their bodies are read, which bounds the memory request bodies can take.

Every answer is JSON ``{"error": "..."}``. (Recent Starlette has a body-limit middleware of
its own; this one also works with the older versions the ``serve`` extra allows, and adds the
content-type and pending-request checks.)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["RequestLimits", "json_error"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _BodyTooLarge(Exception):
    """Raised from ``receive`` when a streamed body passes the limit."""


def json_error(message: str) -> bytes:
    """The body of every error answer."""
    return json.dumps({"error": message}).encode()


async def _answer(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    body = json_error(message)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    raw.append((b"connection", b"close"))  # the rest of the body is not read
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestLimits:
    """The middleware; see the module docstring.

    Args:
        app: The wrapped ASGI app.
        max_bytes: Largest request body of an upload route.
        max_pending: Upload requests held at once.
        retry_after: Called for the ``Retry-After`` seconds of a 429.
        prefix: Path prefix of the upload routes.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        max_pending: int,
        retry_after: Callable[[], int] = lambda: 1,
        prefix: str = "/v1/",
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_pending = max_pending
        self.retry_after = retry_after
        self.prefix = prefix
        self.pending = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or not scope.get("path", "").startswith(self.prefix)
        ):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limit_mb = self.max_bytes / (1024 * 1024)
        too_large = f"the upload is over the limit of {limit_mb:.3g} MiB"
        length = headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _answer(send, 400, f"bad Content-Length {length!r}")
                return
            if declared > self.max_bytes:
                await _answer(send, 413, f"{too_large} ({declared} bytes)")
                return
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "multipart/form-data":
            shown = kind or "no content type"
            await _answer(send, 415, f"expected multipart/form-data, got {shown}")
            return
        if self.pending >= self.max_pending:
            retry = self.retry_after()
            await _answer(send, 429, f"too many requests in progress; retry in about {retry} s",
                          {"Retry-After": str(retry)})  # fmt: skip
            return
        self.pending += 1
        received = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:  # whatever the app made of the aborted body, the answer is 413
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except _BodyTooLarge:
            pass
        except Exception:
            if not exceeded:
                raise
        finally:
            self.pending -= 1
        if exceeded and not started:
            await _answer(send, 413, too_large)
