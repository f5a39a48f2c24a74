"""Turns what Evolution answered into our vocabulary (a call with no answer: provider_responses).

Pure functions, no I/O: Evolution's rows of the mapping table of docs/providers.md live here,
so they are read and tested in one place. The rules follow docs/evolution-api-contract.md §1.5 and §7.

"Connection Closed" has two meanings (§1.5). Raised in the number lookup, *before* the send,
it is a 500 whose message is the bare string `"Connection Closed"`: the instance is unusable,
nothing was relayed, and the answer counts as an attempt. Raised *inside* the send's try
block, the catch wraps `Error.toString()`: `["Error: Connection Closed"]` (400, or 500 in
2.3.0, #1772), and by then the message may already be on its way (#1247): outcome unknown.
"""

from __future__ import annotations

from typing import Any

from apps.common.http_client import HTTPResponse

from .provider_errors import (
    AmbiguousSendError,
    InstanceUnavailableError,
    InvalidNumberError,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitedError,
    TransientProviderError,
)
from .provider_responses import error_for_read_answer, parse_retry_after

CONNECTION_CLOSED = "connection closed"
CLOSED_DURING_SEND = "error: connection closed"  # `Error.toString()`, wrapped by the send's catch
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


def error_for_send_response(response: HTTPResponse) -> ProviderError:
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
            code="connection_closed_during_send",
            http_status=status,
            details=details,
        )
    if status == 400:
        return AmbiguousSendError(
            "The provider answered 400 after accepting the request; the message may have been sent.",
            http_status=status,
            details=details,
        )
    if status in (401, 403):
        return ProviderAuthError(
            "The provider rejected the API key.", code="provider_unauthorized", http_status=status, details=details
        )
    if status == 404:
        return ProviderAuthError(
            "The provider does not know this instance (or the base URL is wrong).",
            code="provider_instance_not_found",
            http_status=status,
            details=details,
        )
    if status == 429:
        retry_after = parse_retry_after(response.header("Retry-After"))
        return ProviderRateLimitedError(
            "The provider is rate limiting this instance.", retry_after=retry_after, http_status=status, details=details
        )
    if status == 500 or CONNECTION_CLOSED in text.lower():
        return InstanceUnavailableError("The instance cannot send right now.", http_status=status, details=details)
    if 500 <= status <= 599:
        return TransientProviderError(f"The provider answered {status}.", http_status=status, details=details)
    return AmbiguousSendError(
        f"Unexpected answer {status} from the provider; the message may have been sent.",
        http_status=status,
        details=details,
    )


def error_for_lookup_response(response: HTTPResponse) -> ProviderError:
    """Classify a non-success answer to a read or control call (findMessages, webhook set-up,
    pairing)."""
    return error_for_read_answer(response, details={"provider_message": _message_text(response.json(), response)})
