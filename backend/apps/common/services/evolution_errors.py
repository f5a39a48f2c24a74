"""The one error vocabulary for talking to a WhatsApp provider.

Every failure of `EvolutionAPIService` is an `EvolutionAPIError` subclass, so callers decide
what to do from the class (or `code` / `permanent` / `retryable`) and never from HTTP details.
The original cause (an HTTP response or a `requests` exception) is always chained with
`raise ... from`. See docs/evolution.md for what a caller should do with each one.
"""
from __future__ import annotations

from typing import Any


class EvolutionAPIError(Exception):
    """Base class. `permanent` means retrying the same message can never succeed;
    `retryable` means the service itself may retry it (with backoff) inside one call."""

    code: str = "provider_error"
    outcome: str = "error"  # the metrics label for this failure
    permanent: bool = False
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.http_status = http_status
        self.details = details or {}

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form (what `send_text_message` returns on failure)."""
        return {
            "error": self.code,
            "error_class": type(self).__name__,
            "message": self.message,
            "permanent": self.permanent,
            "http_status": self.http_status,
            "details": self.details,
        }


class InvalidNumberError(EvolutionAPIError):
    """The number is not on WhatsApp (400 `exists: false`) or cannot be normalised.
    Permanent: mark the contact failed, never retry."""

    code = "invalid_number"
    outcome = "invalid_number"
    permanent = True


class InstanceUnavailableError(EvolutionAPIError):
    """The instance cannot send right now: 500, "Connection Closed", connection refused.
    Not retried inside the call; the worker pauses the queue until the instance recovers."""

    code = "instance_unavailable"
    outcome = "unavailable"


class CircuitOpenError(InstanceUnavailableError):
    """The per-instance circuit breaker is open: no request was made. `retry_after` is the
    time (seconds) until the breaker lets a probe through."""

    code = "circuit_open"
    outcome = "circuit_open"

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.details.setdefault("retry_after", retry_after)


class ProviderRateLimitedError(EvolutionAPIError):
    """429. `retry_after` (seconds) comes from the Retry-After header. Short waits are taken
    inside the call; a longer one is raised so the caller can reschedule."""

    code = "rate_limited"
    outcome = "rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.details.setdefault("retry_after", retry_after)


class ProviderAuthError(EvolutionAPIError):
    """401 (wrong API key) or 404 (unknown instance or wrong base URL): misconfiguration.
    Permanent for the instance until someone fixes its settings."""

    code = "provider_auth"
    outcome = "auth"
    permanent = True


class AmbiguousSendError(EvolutionAPIError):
    """The message may or may not have gone out: a read timeout after the request was sent,
    or a 400 that is not `exists: false` (upstream issue #1247: delivered, then a 400).
    Never retried blindly: reconcile (webhooks, manual review) before sending again."""

    code = "ambiguous_send"
    outcome = "ambiguous"


class TransientProviderError(EvolutionAPIError):
    """A passing failure that provably did not send: 5xx other than 500, connect timeout.
    Retried with backoff inside the call, a bounded number of times."""

    code = "transient"
    outcome = "transient"
    retryable = True


__all__ = [
    "AmbiguousSendError",
    "CircuitOpenError",
    "EvolutionAPIError",
    "InstanceUnavailableError",
    "InvalidNumberError",
    "ProviderAuthError",
    "ProviderRateLimitedError",
    "TransientProviderError",
]
