"""Turns what the provider did (an HTTP answer or a failed call) into our vocabulary.

Pure functions, no I/O: the whole mapping table of docs/evolution.md lives here, so it is read
and tested in one place. The rules follow /work/shared/evolution-api-contract.md §1.5 and §7.

"Connection Closed" has two meanings (§1.5). Raised in the number lookup, *before* the send,
it is a 500 whose message is the bare string `"Connection Closed"`: the instance is unusable,
nothing was relayed, and the answer counts as an attempt. Raised *inside* the send's try
block, the catch wraps `Error.toString()`: `["Error: Connection Closed"]` (400, or 500 in
2.3.0, #1772), and by then the message may already be on its way (#1247): outcome unknown.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from apps.common import http_client
from apps.common.http_client import HTTPCallError, HTTPResponse

from .evolution_errors import (
    AmbiguousSendError,
    EvolutionAPIError,
    InstanceUnavailableError,
    InvalidNumberError,
    ProviderAuthError,
    ProviderLookupError,
    ProviderRateLimitedError,
    TransientProviderError,
    UnsafeProviderAddressError,
)

CONNECTION_CLOSED = "connection closed"
CLOSED_DURING_SEND = "error: connection closed"  # `Error.toString()`, wrapped by the send's catch
DEFAULT_RETRY_AFTER = 1.0  # seconds, when a 429 carries no usable Retry-After
_MAX_DETAIL_CHARS = 200


def provider_message(body: Any) -> Any:
    """`response.message` of the error envelope `{status, error, response: {message}}`."""
    if isinstance(body, dict):
        inner = body.get("response")
        if isinstance(inner, dict):
            return inner.get("message")
    return None


def _message_text(body: Any, response: HTTPResponse) -> str:
    message = provider_message(body)
    text = str(message) if message is not None else response.text
    return text[:_MAX_DETAIL_CHARS]


def _is_not_on_whatsapp(body: Any) -> bool:
    message = provider_message(body)
    items = message if isinstance(message, list) else [message]
    return any(isinstance(item, dict) and item.get("exists") is False for item in items)


def _closed_during_send(body: Any) -> bool:
    message = provider_message(body)
    items = message if isinstance(message, list) else [message]
    return any(isinstance(item, str) and item.strip().lower().startswith(CLOSED_DURING_SEND) for item in items)


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


def error_for_send_response(response: HTTPResponse) -> EvolutionAPIError:
    """Classify a non-success answer to `POST /message/sendText/{instance}`. Every answer is
    `nothing_sent = False`: the request reached the provider."""
    status = response.status
    body = response.json()
    text = _message_text(body, response)
    details = {"provider_message": text}
    if status == 400 and _is_not_on_whatsapp(body):
        # the body echoes the number: keep it out of details (they end up in logs)
        return InvalidNumberError("The number is not on WhatsApp.", http_status=status)
    if _closed_during_send(body):
        return AmbiguousSendError(
            "The provider's WhatsApp connection closed during the send; the message may have been sent.",
            code="connection_closed_during_send", http_status=status, details=details,
        )
    if status == 400:
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
        retry_after = parse_retry_after(response.header("Retry-After"))
        return ProviderRateLimitedError("The provider is rate limiting this instance.", retry_after=retry_after, http_status=status, details=details)
    if status == 500 or CONNECTION_CLOSED in text.lower():
        return InstanceUnavailableError("The instance cannot send right now.", http_status=status, details=details)
    if 500 <= status <= 599:
        return TransientProviderError(f"The provider answered {status}.", http_status=status, details=details)
    return AmbiguousSendError(f"Unexpected answer {status} from the provider; the message may have been sent.", http_status=status, details=details)


def error_for_transport(exc: HTTPCallError) -> EvolutionAPIError:
    """Classify a call that produced no answer. `nothing_sent` comes from the HTTP client,
    which knows whether the request was written (apps/common/http_client.py)."""
    kind = exc.kind
    if kind == http_client.REFUSED_ADDRESS:
        return UnsafeProviderAddressError(
            f"The provider URL resolved to a {exc.refused_because}, which EVOLUTION_ALLOWED_NETWORKS does not allow.",
        )
    if kind == http_client.BAD_URL:
        return ProviderAuthError("The provider URL cannot be used (not http or https).", code="provider_url_invalid",
                                 nothing_sent=True)
    if kind == http_client.CONNECT_TIMEOUT:
        return TransientProviderError("Timed out connecting to the provider.", code="connect_timeout", nothing_sent=True)
    if kind == http_client.DNS:
        return InstanceUnavailableError("The provider's host name does not resolve.", code="dns_failure", nothing_sent=True)
    if kind == http_client.TLS:
        return InstanceUnavailableError("The TLS handshake with the provider failed.", code="tls_error", nothing_sent=True)
    if kind == http_client.CONNECT:
        return InstanceUnavailableError("Could not connect to the provider (connection refused or unreachable).",
                                        code="connection_refused", nothing_sent=True)
    if kind == http_client.DEADLINE:
        return AmbiguousSendError("The provider did not answer within the deadline; the message may have been sent.",
                                  code="deadline_exceeded")
    if kind == http_client.TOO_LARGE:
        return AmbiguousSendError("The provider's answer was too large to read; the message may have been sent.",
                                  code="response_too_large")
    return AmbiguousSendError("The connection dropped after the request was sent; the message may have been sent.",
                              code="connection_dropped")


def error_for_lookup_response(response: HTTPResponse) -> EvolutionAPIError:
    """Classify a non-success answer to a read (`POST /chat/findMessages/{instance}`)."""
    status = response.status
    details = {"provider_message": _message_text(response.json(), response)}
    if status in (401, 403):
        return ProviderAuthError("The provider rejected the API key.", code="provider_unauthorized", http_status=status, details=details)
    if status == 404:
        return ProviderAuthError("The provider does not know this instance or route (404).",
                                 code="provider_instance_not_found", http_status=status, details=details)
    if status == 429:
        return ProviderRateLimitedError("The provider is rate limiting this instance.",
                                        retry_after=parse_retry_after(response.header("Retry-After")), http_status=status, details=details)
    return ProviderLookupError(f"The provider answered {status} to a lookup.", http_status=status, details=details)


def error_for_lookup_transport(exc: HTTPCallError) -> EvolutionAPIError:
    """A read that got no answer: a configuration problem stays one; anything else is a failed lookup."""
    if exc.kind in (http_client.REFUSED_ADDRESS, http_client.BAD_URL):
        return error_for_transport(exc)
    return ProviderLookupError(f"The lookup got no answer ({exc.kind}).", code=f"lookup_{exc.kind}",
                               nothing_sent=exc.nothing_sent)
