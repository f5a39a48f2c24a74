"""Request bodies over the limit are refused with 413 before they are read, on every route.

Under ASGI, Django reads the whole body (into memory, then a temporary file) before any
middleware runs, so a Django middleware can only look at a body that is already in. This
wrapper sits between the server and Django: a declared `Content-Length` over the limit is
refused without reading a byte, and a body without one (chunked) is counted as the server hands
it over (`receive()`); the moment the count passes the limit, Django's read is abandoned and
the 413 goes out. At most the limit (plus the server's own small buffer) is ever read.

The limit is API_MAX_BODY_BYTES, the largest body any route accepts; routes keep their own
tighter limits (the provider webhook's BILLING_WEBHOOK_MAX_BODY_BYTES, the admin's
DATA_UPLOAD_MAX_MEMORY_SIZE).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.conf import settings

from apps.common.exceptions import error_body
from apps.common.request_id import new_request_id

Scope = dict[str, Any]  # the ASGI types Django's handler declares
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(Exception):
    """Raised inside the wrapped app's `receive()` once the body passes the limit."""


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        error_body("payload_too_large", f"The request body is larger than {limit} bytes.", {"max_bytes": limit})
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                (b"x-request-id", new_request_id().encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestBodyLimit:
    """ASGI wrapper: `RequestBodyLimit(django_asgi_app)`; WebSocket and lifespan pass through."""

    def __init__(self, app: ASGIApp, *, limit: Callable[[], int] | None = None) -> None:
        self.app = app
        self.limit = limit or (lambda: int(settings.API_MAX_BODY_BYTES))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await _refuse(send, limit)
