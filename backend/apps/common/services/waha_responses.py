"""Turns what WAHA answered into our vocabulary (contract §6): pure functions, no I/O.

A WAHA send is two calls: `GET /api/contacts/check-exists` (is the number on WhatsApp, and under
which chat id — a Brazilian mobile may be registered without its ninth digit), then
`POST /api/sendText`. Whatever goes wrong with the check, the message was not handed over:

- the check's answers count as attempts (`nothing_sent = False`, like any answer) but can never
  mean "maybe sent": 422 (session not WORKING) → `InstanceUnavailableError`, 5xx → transient;
- a check that ran out of time after its request was written is transient, not ambiguous.

The send itself: 201/200 with an id → accepted; 422 → the session is not WORKING, nothing was
relayed (`InstanceUnavailableError`); 401/403/404 → misconfigured (`ProviderAuthError`); 429 →
rate limited; 500 → the engine failed while sending, so it may have gone out
(`AmbiguousSendError`, reconciled); 400 → refused by WAHA's validation, counted as ambiguous too,
the conservative side; other 5xx (a proxy) → transient.
"""

from __future__ import annotations

from typing import Any

from apps.common.http_client import HTTPCallError, HTTPResponse

from .provider_errors import (
    AmbiguousSendError,
    InstanceUnavailableError,
    ProviderError,
    TransientProviderError,
)
from .provider_responses import error_for_read_answer, error_for_refusal, error_for_transport

_MAX_DETAIL_CHARS = 200


def waha_message(body: Any, response: HTTPResponse) -> str:
    """The human part of a WAHA error body (`message` or `error`), cut short."""
    if isinstance(body, dict):
        for name in ("message", "error"):
            if body.get(name):
                return str(body[name])[:_MAX_DETAIL_CHARS]
    return response.text[:_MAX_DETAIL_CHARS]


def _common(response: HTTPResponse, details: dict[str, Any]) -> ProviderError | None:
    if response.status == 422:
        return InstanceUnavailableError(
            "The WAHA session is not WORKING.", code="session_not_working", http_status=422, details=details
        )
    return error_for_refusal(response, details=details)


def error_for_check_response(response: HTTPResponse) -> ProviderError:
    """A non-success answer to `check-exists`: nothing was sent, whatever it says."""
    details = {"provider_message": waha_message(response.json(), response), "step": "check_exists"}
    known = _common(response, details)
    if known is not None:
        return known
    return TransientProviderError(
        f"The provider answered {response.status} to the number check.",
        code="check_failed",
        http_status=response.status,
        details=details,
    )


def error_for_check_transport(exc: HTTPCallError) -> ProviderError:
    """A number check without an answer: the message was not sent either way."""
    error = error_for_transport(exc)
    if isinstance(error, AmbiguousSendError):
        return TransientProviderError(
            "The number check got no answer in time; nothing was sent.", code=f"check_{error.code}"
        )
    return error


def error_for_send_response(response: HTTPResponse) -> ProviderError:
    """A non-success answer to `POST /api/sendText` (an answer: `nothing_sent = False`)."""
    status = response.status
    details = {"provider_message": waha_message(response.json(), response)}
    known = _common(response, details)
    if known is not None:
        return known
    if status in (400, 500):
        return AmbiguousSendError(
            f"The provider answered {status} to the send; the message may have been sent.",
            http_status=status,
            details=details,
        )
    if 500 <= status <= 599:
        return TransientProviderError(f"The provider answered {status}.", http_status=status, details=details)
    return AmbiguousSendError(
        f"Unexpected answer {status} from the provider; the message may have been sent.",
        http_status=status,
        details=details,
    )


def error_for_read_response(response: HTTPResponse) -> ProviderError:
    """A non-success answer to a read or control call (chat history, sessions, QR)."""
    details = {"provider_message": waha_message(response.json(), response)}
    return _common(response, details) or error_for_read_answer(response, details=details)
