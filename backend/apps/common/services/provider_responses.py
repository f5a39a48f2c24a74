"""How a provider call that failed, or answered "slow down", maps onto the error vocabulary,
whichever provider it was: pure functions, no I/O.

A call that produced no answer is judged by the HTTP client, which knows whether the request was
written (apps/common/http_client.py): that decides `nothing_sent`. The answers themselves are
each provider's own (`evolution_responses`, `waha_responses`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from apps.common import http_client
from apps.common.http_client import HTTPCallError, HTTPResponse

from .provider_errors import (
    AmbiguousSendError,
    InstanceUnavailableError,
    ProviderAuthError,
    ProviderError,
    ProviderLookupError,
    ProviderRateLimitedError,
    TransientProviderError,
    UnsafeProviderAddressError,
)

DEFAULT_RETRY_AFTER = 1.0  # seconds, when a 429 carries no usable Retry-After


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
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return DEFAULT_RETRY_AFTER
    return max(0.0, seconds)


def error_for_transport(exc: HTTPCallError) -> ProviderError:
    """Classify a call that produced no answer. `nothing_sent` comes from the HTTP client,
    which knows whether the request was written (apps/common/http_client.py)."""
    kind = exc.kind
    if kind == http_client.REFUSED_ADDRESS:
        return UnsafeProviderAddressError(
            f"The provider URL resolved to a {exc.refused_because}, which EVOLUTION_ALLOWED_NETWORKS does not allow.",
        )
    if kind == http_client.BAD_URL:
        return ProviderAuthError(
            "The provider URL cannot be used (not http or https).", code="provider_url_invalid", nothing_sent=True
        )
    if kind == http_client.CONNECT_TIMEOUT:
        return TransientProviderError(
            "Timed out connecting to the provider.", code="connect_timeout", nothing_sent=True
        )
    if kind == http_client.DNS:
        return InstanceUnavailableError(
            "The provider's host name does not resolve.", code="dns_failure", nothing_sent=True
        )
    if kind == http_client.TLS:
        return InstanceUnavailableError(
            "The TLS handshake with the provider failed.", code="tls_error", nothing_sent=True
        )
    if kind == http_client.CONNECT:
        return InstanceUnavailableError(
            "Could not connect to the provider (connection refused or unreachable).",
            code="connection_refused",
            nothing_sent=True,
        )
    if kind == http_client.DEADLINE:
        return AmbiguousSendError(
            "The provider did not answer within the deadline; the message may have been sent.", code="deadline_exceeded"
        )
    if kind == http_client.TOO_LARGE:
        return AmbiguousSendError(
            "The provider's answer was too large to read; the message may have been sent.", code="response_too_large"
        )
    return AmbiguousSendError(
        "The connection dropped after the request was sent; the message may have been sent.", code="connection_dropped"
    )


def error_for_lookup_transport(exc: HTTPCallError) -> ProviderError:
    """A read that got no answer: a configuration problem stays one; anything else is a failed lookup."""
    if exc.kind in (http_client.REFUSED_ADDRESS, http_client.BAD_URL):
        return error_for_transport(exc)
    return ProviderLookupError(
        f"The lookup got no answer ({exc.kind}).", code=f"lookup_{exc.kind}", nothing_sent=exc.nothing_sent
    )


def error_for_read_answer(response: HTTPResponse, *, details: dict[str, Any]) -> ProviderError:
    """A read or control call answered something else than success: a configuration problem
    stays one, a 429 is a rate limit, anything else proves nothing (`ProviderLookupError`)."""
    return error_for_refusal(response, details=details) or ProviderLookupError(
        f"The provider answered {response.status} to a lookup.", http_status=response.status, details=details
    )


def error_for_refusal(response: HTTPResponse, *, details: dict[str, Any]) -> ProviderError | None:
    """What any provider means by 401/403 (the key), 404 (the instance, or a wrong base URL) and
    429 (slow down); None for another status."""
    status = response.status
    if status in (401, 403):
        return ProviderAuthError(
            "The provider rejected the API key.", code="provider_unauthorized", http_status=status, details=details
        )
    if status == 404:
        return ProviderAuthError(
            "The provider does not know this instance or route (404).",
            code="provider_instance_not_found",
            http_status=status,
            details=details,
        )
    if status == 429:
        return ProviderRateLimitedError(
            "The provider is rate limiting this instance.",
            retry_after=parse_retry_after(response.header("Retry-After")),
            http_status=status,
            details=details,
        )
    return None
