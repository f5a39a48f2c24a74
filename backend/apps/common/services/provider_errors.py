"""The one error vocabulary for talking to a WhatsApp provider, whichever it is.

Every failure of a provider client (`EvolutionAPIService`, `WAHAAPIService`) is a
`ProviderError` subclass, so callers decide what to do from the class (or `code` /
`permanent` / `retryable` / `nothing_sent`) and never from HTTP details or from which provider
answered. The original cause (an `HTTPCallError`, or an `HTTPStatusError` carrying the answer)
is always chained with `raise ... from`. See docs/providers.md for what a caller should do with
each one, and for the full `nothing_sent` table.
"""

from __future__ import annotations

from typing import Any


class ProviderError(Exception):
    """Base class. `permanent` means retrying the same message can never succeed;
    `retryable` means the service itself may retry it (with backoff) inside one call.

    `nothing_sent` is True only when provably no byte of the request left our process (the
    circuit was open, DNS failed, the connection was refused or timed out before the request,
    the address guard refused the peer, the phone could not be normalised): the one case where
    the worker may give the attempt back. Any HTTP answer, a deadline after the request was
    written, or a connection dropped after it is `nothing_sent = False`."""

    code: str = "provider_error"
    outcome: str = "error"  # the metrics label for this failure
    permanent: bool = False
    retryable: bool = False
    nothing_sent: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        details: dict[str, Any] | None = None,
        nothing_sent: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if nothing_sent is not None:
            self.nothing_sent = nothing_sent
        self.http_status = http_status
        self.details = details or {}

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form (what `send_text_message` returns on failure)."""
        return {
            "error": self.code,
            "error_class": type(self).__name__,
            "message": self.message,
            "permanent": self.permanent,
            "nothing_sent": self.nothing_sent,
            "http_status": self.http_status,
            "details": self.details,
        }


class InvalidNumberError(ProviderError):
    """The number is not on WhatsApp (400 `exists: false`) or cannot be normalised.
    Permanent: mark the contact failed, never retry."""

    code = "invalid_number"
    outcome = "invalid_number"
    permanent = True


class InstanceUnavailableError(ProviderError):
    """The instance cannot send right now: a 500 (a broken build, "Connection Closed" in the
    number lookup, before the send), DNS failure, connection refused, TLS failure. Not retried
    inside the call. `nothing_sent` tells an answer (counts as an attempt) from a connection
    that never carried the request (does not)."""

    code = "instance_unavailable"
    outcome = "unavailable"


class CircuitOpenError(InstanceUnavailableError):
    """The per-instance circuit breaker is open: no request was made. `retry_after` is the
    time (seconds) until the breaker lets a probe through."""

    code = "circuit_open"
    outcome = "circuit_open"
    nothing_sent = True

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.details.setdefault("retry_after", retry_after)


class ProviderRateLimitedError(ProviderError):
    """429. `retry_after` (seconds) comes from the Retry-After header. Short waits are taken
    inside the call; a longer one is raised so the caller can reschedule."""

    code = "rate_limited"
    outcome = "rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.details.setdefault("retry_after", retry_after)


class ProviderAuthError(ProviderError):
    """401 (wrong API key) or 404 (unknown instance or wrong base URL): misconfiguration.
    Permanent for the instance until someone fixes its settings."""

    code = "provider_auth"
    outcome = "auth"
    permanent = True


class UnsafeProviderAddressError(ProviderAuthError):
    """The instance's base URL resolved to an address the provider policy refuses (loopback,
    private, metadata... outside EVOLUTION_ALLOWED_NETWORKS): no socket was opened."""

    code = "unsafe_provider_address"
    nothing_sent = True


class AmbiguousSendError(ProviderError):
    """The message may or may not have gone out: the deadline ran out after the request was
    written, the connection dropped after it, a "Connection Closed" raised inside the send
    (400/500 `["Error: Connection Closed"]`), or a 400 that is not `exists: false` (upstream
    issue #1247: delivered, then a 400). Never retried blindly: reconcile (the `send.message`
    webhook, `find_messages`) before sending again."""

    code = "ambiguous_send"
    outcome = "ambiguous"


class TransientProviderError(ProviderError):
    """A passing failure: 5xx other than 500 (an answer: `nothing_sent = False`), a connect
    timeout (`nothing_sent = True`). Retried with backoff inside the call, a bounded number
    of times."""

    code = "transient"
    outcome = "transient"
    retryable = True


class ProviderLookupError(ProviderError):
    """A read (`find_messages`) got no usable answer: the deadline, a dropped connection, an
    unexpected status or shape. Proves nothing about any message: ask again later."""

    code = "lookup_failed"
    outcome = "lookup_failed"


__all__ = [
    "AmbiguousSendError",
    "CircuitOpenError",
    "ProviderError",
    "InstanceUnavailableError",
    "InvalidNumberError",
    "ProviderAuthError",
    "ProviderLookupError",
    "ProviderRateLimitedError",
    "TransientProviderError",
    "UnsafeProviderAddressError",
]
