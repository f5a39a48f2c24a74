"""Turns what the provider did (an HTTP response or a transport exception) into our vocabulary.

Pure functions, no I/O: the whole mapping table of docs/evolution.md lives here, so it is read
and tested in one place. The rules follow /work/shared/evolution-api-contract.md §1.5 and §7.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from urllib3.exceptions import MaxRetryError

from .evolution_errors import (
    AmbiguousSendError,
    EvolutionAPIError,
    InstanceUnavailableError,
    InvalidNumberError,
    ProviderAuthError,
    ProviderRateLimitedError,
    TransientProviderError,
)

CONNECTION_CLOSED = "connection closed"
DEFAULT_RETRY_AFTER = 1.0  # seconds, when a 429 carries no usable Retry-After
_MAX_DETAIL_CHARS = 200


def response_json(response: requests.Response) -> Any:
    """The decoded body, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def provider_message(body: Any) -> Any:
    """`response.message` of the error envelope `{status, error, response: {message}}`."""
    if isinstance(body, dict):
        inner = body.get("response")
        if isinstance(inner, dict):
            return inner.get("message")
    return None


def _message_text(body: Any, response: requests.Response) -> str:
    message = provider_message(body)
    text = str(message) if message is not None else (response.text or "")
    return text[:_MAX_DETAIL_CHARS]


def _is_not_on_whatsapp(body: Any) -> bool:
    message = provider_message(body)
    items = message if isinstance(message, list) else [message]
    return any(isinstance(item, dict) and item.get("exists") is False for item in items)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float:
    """Retry-After in seconds: delta-seconds or an HTTP date; a default when absent or bad."""
    if not value:
        return DEFAULT_RETRY_AFTER
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return DEFAULT_RETRY_AFTER
    return max(0.0, seconds)


def error_for_send_response(response: requests.Response) -> EvolutionAPIError:
    """Classify a non-success answer to `POST /message/sendText/{instance}`."""
    status = response.status_code
    body = response_json(response)
    text = _message_text(body, response)
    details = {"provider_message": text}
    if status == 400:
        if _is_not_on_whatsapp(body):
            # the body echoes the number: keep it out of details (they end up in logs)
            return InvalidNumberError("The number is not on WhatsApp.", http_status=status)
        if CONNECTION_CLOSED in text.lower():
            return InstanceUnavailableError("The instance's WhatsApp connection is closed.", http_status=status, details=details)
        return AmbiguousSendError(
            "The provider answered 400 after accepting the request; the message may have been sent.",
            http_status=status,
            details=details,
        )
    if status in (401, 403):
        return ProviderAuthError("The provider rejected the API key.", code="provider_unauthorized", http_status=status, details=details)
    if status == 404:
        return ProviderAuthError(
            "The provider does not know this instance (or the base URL is wrong).",
            code="provider_instance_not_found",
            http_status=status,
            details=details,
        )
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return ProviderRateLimitedError("The provider is rate limiting this instance.", retry_after=retry_after, http_status=status, details=details)
    if status == 500 or CONNECTION_CLOSED in text.lower():
        return InstanceUnavailableError("The instance cannot send right now.", http_status=status, details=details)
    if 500 <= status <= 599:
        return TransientProviderError(f"The provider answered {status}.", http_status=status, details=details)
    return AmbiguousSendError(f"Unexpected answer {status} from the provider; the message may have been sent.", http_status=status, details=details)


def _never_reached_server(exc: requests.ConnectionError) -> bool:
    """True when the request provably never left: the TCP/TLS connection was not established.

    With urllib3 retries off, connect-phase failures arrive wrapped in `MaxRetryError`; a
    connection dropped after the request was written arrives as a bare `ProtocolError`.
    """
    if isinstance(exc, (requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return True
    return bool(exc.args) and isinstance(exc.args[0], MaxRetryError)


def error_for_transport(exc: requests.RequestException) -> EvolutionAPIError:
    """Classify a `requests` exception raised while sending a message."""
    if isinstance(exc, requests.ConnectTimeout):
        return TransientProviderError("Timed out connecting to the provider.", code="connect_timeout")
    if isinstance(exc, requests.ReadTimeout):
        return AmbiguousSendError(
            "Timed out waiting for the provider's answer; the message may have been sent.", code="read_timeout"
        )
    if isinstance(exc, requests.ConnectionError):
        if _never_reached_server(exc):
            return InstanceUnavailableError("Could not connect to the provider (connection refused or unreachable).", code="connection_refused")
        return AmbiguousSendError("The connection dropped after the request was sent; the message may have been sent.", code="connection_dropped")
    return AmbiguousSendError(f"Unexpected transport error ({type(exc).__name__}); the message may have been sent.", code="transport_error")
