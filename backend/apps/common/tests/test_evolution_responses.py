"""The classification table of docs/providers.md, pure: every provider answer and every failed
call mapped to its error class, code and `nothing_sent` (the worker refunds an attempt only
when no byte left our process)."""

from __future__ import annotations

import json

import pytest

from apps.common import http_client
from apps.common.http_client import HTTPCallError, HTTPResponse
from apps.common.services.evolution_responses import (
    error_for_lookup_response,
    error_for_send_response,
)
from apps.common.services.provider_errors import (
    AmbiguousSendError,
    CircuitOpenError,
    InstanceUnavailableError,
    InvalidNumberError,
    ProviderAuthError,
    ProviderLookupError,
    ProviderRateLimitedError,
    TransientProviderError,
    UnsafeProviderAddressError,
)
from apps.common.services.provider_responses import error_for_lookup_transport, error_for_transport


def answer(status: int, message, headers: dict[str, str] | None = None) -> HTTPResponse:
    body = {"status": status, "error": "x", "response": {"message": message}}
    return HTTPResponse(status=status, headers=headers or {}, body=json.dumps(body).encode(), elapsed=0.01)


def failure(kind: str, nothing_sent: bool, refused: str | None = None) -> HTTPCallError:
    return HTTPCallError("x", kind=kind, nothing_sent=nothing_sent, elapsed=0.1, refused_because=refused)


@pytest.mark.parametrize(
    ("response", "cls", "code"),
    [
        (
            answer(400, [{"jid": "x@s.whatsapp.net", "exists": False, "number": "x"}]),
            InvalidNumberError,
            "invalid_number",
        ),
        (answer(400, ["Error: Connection Closed"]), AmbiguousSendError, "connection_closed_during_send"),
        (answer(500, ["Error: Connection Closed"]), AmbiguousSendError, "connection_closed_during_send"),
        (answer(500, "Connection Closed"), InstanceUnavailableError, "instance_unavailable"),
        (
            answer(500, ["TypeError: Cannot read properties of undefined (reading 'textMessage')"]),
            InstanceUnavailableError,
            "instance_unavailable",
        ),
        (answer(400, ["PrismaClientKnownRequestError: Invalid invocation"]), AmbiguousSendError, "ambiguous_send"),
        (answer(401, "Unauthorized"), ProviderAuthError, "provider_unauthorized"),
        (answer(404, ['The "x" instance does not exist']), ProviderAuthError, "provider_instance_not_found"),
        (answer(429, ["Too Many Requests"], {"retry-after": "7"}), ProviderRateLimitedError, "rate_limited"),
        (answer(503, ["Service Unavailable"]), TransientProviderError, "transient"),
        (answer(302, None), AmbiguousSendError, "ambiguous_send"),
    ],
)
def test_every_provider_answer_counts_as_an_attempt(response, cls, code):
    error = error_for_send_response(response)

    assert (type(error), error.code, error.nothing_sent) == (cls, code, False)
    assert error.http_status == response.status


def test_a_429_carries_its_retry_after():
    assert error_for_send_response(answer(429, [], {"retry-after": "7"})).retry_after == 7.0


@pytest.mark.parametrize(
    ("call", "cls", "code", "nothing_sent"),
    [
        (
            failure(http_client.REFUSED_ADDRESS, True, "private address"),
            UnsafeProviderAddressError,
            "unsafe_provider_address",
            True,
        ),
        (failure(http_client.BAD_URL, True), ProviderAuthError, "provider_url_invalid", True),
        (failure(http_client.DNS, True), InstanceUnavailableError, "dns_failure", True),
        (failure(http_client.CONNECT, True), InstanceUnavailableError, "connection_refused", True),
        (failure(http_client.TLS, True), InstanceUnavailableError, "tls_error", True),
        (failure(http_client.CONNECT_TIMEOUT, True), TransientProviderError, "connect_timeout", True),
        (failure(http_client.DEADLINE, False), AmbiguousSendError, "deadline_exceeded", False),
        (failure(http_client.DROPPED, False), AmbiguousSendError, "connection_dropped", False),
        (failure(http_client.TOO_LARGE, False), AmbiguousSendError, "response_too_large", False),
    ],
)
def test_a_failed_call_says_whether_anything_left(call, cls, code, nothing_sent):
    error = error_for_transport(call)

    assert (type(error), error.code, error.nothing_sent) == (cls, code, nothing_sent)


def test_an_open_circuit_sent_nothing():
    assert CircuitOpenError("open", retry_after=3).nothing_sent is True


def test_a_lookup_failure_proves_nothing_but_a_configuration_problem_stays_one():
    assert isinstance(error_for_lookup_transport(failure(http_client.DEADLINE, False)), ProviderLookupError)
    assert error_for_lookup_transport(failure(http_client.DEADLINE, False)).code == "lookup_deadline"
    assert isinstance(
        error_for_lookup_transport(failure(http_client.REFUSED_ADDRESS, True, "loopback address")),
        UnsafeProviderAddressError,
    )
    assert isinstance(error_for_lookup_response(answer(404, ["Cannot POST /chat/findMessages/x"])), ProviderAuthError)
    assert isinstance(error_for_lookup_response(answer(500, ["boom"])), ProviderLookupError)
