"""The request id: one value that ties every log line of one piece of work together.

The web takes the caller's `X-Request-ID` (or makes one), answers with it, and keeps it in a
context variable that the JSON formatter adds to every log line. The ingest puts it in the
broker message (`BillingMessage.request_id`), and the worker binds it again with
`bind_request_id()`, so a client's request can be followed from the API into the worker.

A context variable (not a thread-local) because the ASGI server runs async code on one thread
and asgiref copies context into the threads that run sync views; each request sees its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import uuid
from collections.abc import Iterator

HEADER = "X-Request-ID"
META_KEY = "HTTP_X_REQUEST_ID"
MAX_LENGTH = 64
# A caller's id is kept only if it is short and plain: it is written into every log line, so
# anything that could forge a log field or carry data (newlines, quotes, PII) is replaced.
_VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(raw: object) -> str | None:
    """The caller's id if it is acceptable, else None (the caller then makes a new one)."""
    if not isinstance(raw, str):
        return None
    value = raw.strip()
    return value if _VALID.match(value) else None


def get_request_id() -> str | None:
    return _request_id.get()


@contextlib.contextmanager
def bind_request_id(value: str | None) -> Iterator[str | None]:
    """Make `value` the current request id inside the block (log lines carry it), and put the
    previous one back afterwards. `None` or an unacceptable value binds "no id" (never a stale
    one from earlier work), so the worker can pass `message.request_id` as it comes."""
    cleaned = clean_request_id(value) if value is not None else None
    token = _request_id.set(cleaned)
    try:
        yield cleaned
    finally:
        _request_id.reset(token)
