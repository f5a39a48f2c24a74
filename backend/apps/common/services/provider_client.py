"""What every WhatsApp provider client shares: one interface, one send loop, one set of results.

`EvolutionAPIService` and `WAHAAPIService` subclass `ProviderClient`; callers get the right
one from `provider.client_for(instance)` and never ask which provider answered. The parts that
must behave the same for every provider live here, once:

- `send()`: the circuit breaker before every attempt, retries only for retryable errors with
  backoff and jitter, the breaker fed by availability failures only;
- one log line and one metric sample per attempt (never the text or a key);
- `HealthResult`, `SendResult`, `PairingState`: what a caller reads back.

A subclass implements the provider's HTTP: `_send_once`, `check_health`, `find_messages`,
`configure_webhook`, `create_remote`, `pairing_state`, `restart`, `logout`. Errors are always
the `provider_errors` vocabulary, with the same `nothing_sent` rules (docs/providers.md).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings

from apps.common.http_client import HTTPCallError, HTTPResponse, HTTPStatusError
from apps.common.metrics import EVOLUTION_REQUEST_DURATION, EVOLUTION_REQUESTS
from apps.contacts.utils import PhoneNumberError, e164_digits, mask_phone, normalize_phone

from .circuit_breaker import CircuitBreaker
from .evolution_lookup import MessageLookup
from .provider_errors import (
    AmbiguousSendError,
    CircuitOpenError,
    InstanceUnavailableError,
    InvalidNumberError,
    ProviderError,
    ProviderLookupError,
    ProviderRateLimitedError,
    TransientProviderError,
    UnsafeProviderAddressError,
)
from .provider_http import (
    HEALTH,
    LOOKUP,
    connect_timeout,
    deadline,
    default_headers,
    json_headers,
    provider_client,
)
from .provider_responses import error_for_lookup_transport, error_for_transport

if TYPE_CHECKING:
    from apps.connections.models import WhatsAppInstance

logger = logging.getLogger(__name__)
T = TypeVar("T")

OPERATION_SEND = "send_text"
OPERATION_HEALTH = "connection_state"
OPERATION_LOOKUP = "find_messages"

# WhatsAppInstance.HealthState values (strings, so importing this module needs no app registry).
HEALTH_OPEN = "open"
HEALTH_CONNECTING = "connecting"
HEALTH_PAIRING = "pairing"
HEALTH_CLOSE = "close"
HEALTH_UNKNOWN = "unknown"
HEALTH_ERROR = "error"


@dataclass(frozen=True)
class SendResult:
    """A message the provider accepted. `provider_message_id` is the id its receipts, echoes and
    quoted replies carry later (Evolution `key.id`; WAHA the short id inside `true_<chat>_<id>`)."""

    provider_message_id: str
    status: str
    remote_jid: str
    attempts: int
    response: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class HealthResult:
    """One health check. `state` uses the values of `WhatsAppInstance.HealthState`;
    `provider_state` is the provider's raw word, if any. `session_lost`: the provider says the
    WhatsApp session itself is gone (WAHA `FAILED` or `SCAN_QR_CODE`): for a number that was
    paired, that is a logout, which number protection acts on."""

    healthy: bool
    state: str
    reason: str
    checked_at: datetime
    provider_state: str | None = None
    http_status: int | None = None
    session_lost: bool = False

    def as_model_fields(self) -> dict[str, Any]:
        """Fields to store on WhatsAppInstance (the caller saves; this service writes no rows)."""
        return {"health_state": self.state, "health_reason": self.reason[:300], "health_checked_at": self.checked_at}


@dataclass(frozen=True)
class PairingState:
    """What the pairing page shows: connected, or the QR to scan (a `data:image/png;base64,…`
    URL, never logged), with the state in `WhatsAppInstance.HealthState` words."""

    state: str
    connected: bool
    reason: str = ""
    qr_data_url: str | None = field(default=None, repr=False)


class ProviderClient:
    """Client for one WhatsApp instance. Cheap to create: the HTTP client is process-wide and
    the circuit breaker lives in Redis, so create one per use (`provider.client_for`)."""

    #: Log prefix and provider name ("evolution", "waha").
    name: str = ""
    #: The header carrying the instance's key.
    auth_header: str = ""

    def __init__(self, instance: WhatsAppInstance) -> None:
        self.instance = instance
        self.base_url = instance.base_url.rstrip("/")
        self.instance_id = str(instance.pk) if instance.pk is not None else f"{instance.instance_name}@{self.base_url}"
        self.breaker = CircuitBreaker(self.instance_id)

    # ------------------------------------------------------------------ the interface
    def send(self, phone: str, message: str, *, max_retries: int = 3, normalized: bool = False) -> SendResult:
        """Send a text message; return the accepted message or raise a `ProviderError`.

        Only retryable errors (transient 5xx, connect timeout, short 429s) are retried, at most
        `max_retries` times, with exponential backoff and jitter (EVOLUTION_RETRY_BACKOFF).
        Every attempt first asks the instance's circuit breaker. `normalized=True` says `phone`
        is already what `normalize_phone` returned (billing contacts are normalised at ingest),
        so it is not parsed a second time on the send path.
        """
        if not message or not message.strip():
            raise ValueError("message is empty: render the template before sending")
        number = e164_digits(phone) if normalized and phone.startswith("+") else self._normalize(phone)
        masked = mask_phone(number)
        max_attempts = 1 + max(0, int(max_retries))
        attempt = 0
        last_error: ProviderError | None = None
        while True:
            attempt += 1
            decision = self.breaker.acquire()
            if not decision.allowed:
                error = CircuitOpenError(
                    f"Circuit open for this instance after repeated failures; next probe in {decision.retry_after:.1f}s.",
                    retry_after=decision.retry_after,
                    details={"breaker_state": decision.state},
                )
                self._record(OPERATION_SEND, error.outcome, None, masked, attempt, error=error)
                raise error from last_error  # the failure that opened it, when it opened mid-call
            try:
                result = self._send_once(number, message, masked, attempt)
            except ProviderError as error:
                self._feed_breaker(error)
                wait = self._retry_wait(error, attempt, max_attempts)
                if wait is None:
                    raise
                last_error = error
                logger.info(
                    "%s send retrying",
                    self.name,
                    extra={
                        **self._context(OPERATION_SEND),
                        "phone": masked,
                        "attempt": attempt,
                        "wait_seconds": round(wait, 3),
                        "error_code": error.code,
                    },
                )
                if wait > 0:
                    time.sleep(wait)
                continue
            if decision.success_changes_state:
                self.breaker.record_success()
            return replace(result, attempts=attempt)

    def send_text_message(
        self, phone: str, message: str, retry: bool = True, max_retries: int = 3
    ) -> tuple[bool, dict[str, Any]]:
        """The seed's interface: `(True, provider response)` or `(False, error info)`.

        Prefer `send()` in new code: it returns `SendResult` and raises typed errors. The error
        info dict is `ProviderError.as_dict()`.
        """
        try:
            result = self.send(phone, message, max_retries=max_retries if retry else 0)
        except ProviderError as error:
            return False, error.as_dict()
        return True, result.response

    def check_health(self) -> HealthResult:
        """Healthy iff the provider says the number is connected. Never raises for provider
        problems; not gated by the circuit breaker (a healthy answer ends its cool-down)."""
        raise NotImplementedError

    def find_messages(
        self,
        phone: str,
        *,
        sent_after: datetime | None = None,
        sent_before: datetime | None = None,
        from_me: bool = True,
        page_size: int = 50,
        max_pages: int = 4,
    ) -> MessageLookup:
        """Our messages the provider holds for the chat with `phone`, newest first (reconciliation)."""
        raise NotImplementedError

    def configure_webhook(self, *, url: str, signing_key: str) -> int:
        """Point the instance's webhook at `url`, signed or authenticated with `signing_key` the
        provider's way; returns the answer's HTTP status (the caller judges it)."""
        raise NotImplementedError

    def create_remote(self, *, webhook_url: str | None, signing_key: str) -> str:
        """Create the instance on the provider (with the server's key, which `self.instance`
        holds until then), its webhook set at once when `webhook_url` is given; returns the key
        to keep for this instance from now on."""
        raise NotImplementedError

    def pairing_state(self) -> PairingState:
        """Connected, or the QR code to scan now (asking the provider for a fresh one)."""
        raise NotImplementedError

    def restart(self) -> None:
        raise NotImplementedError

    def logout(self) -> None:
        raise NotImplementedError

    def _health_answer(self, url: str, started: float) -> HealthResult | HTTPResponse:
        """GET the provider's state within the health deadline. Answers a verdict already when
        there is no state to read (no answer, a refused key, an unknown instance, an error),
        else the 200 answer; never raises."""
        try:
            response = provider_client.request(
                "GET", url, headers=self._headers(), deadline=deadline(HEALTH), connect_timeout=connect_timeout()
            )
        except HTTPCallError as exc:
            return self._health_without_answer(exc, started)
        return self._health_refusal(response.status, started) or response

    def _healthy(self, started: float, status: int, provider_state: str) -> HealthResult:
        """Connected: the breaker, if open, may probe with the next send at once."""
        self.breaker.probe_now()
        return self._health(
            True, HEALTH_OPEN, "connected", started, status, provider_state=provider_state, outcome="healthy"
        )

    def _health_without_answer(self, exc: HTTPCallError, started: float) -> HealthResult:
        """A health check that got no answer is unhealthy, with the reason kept."""
        error = error_for_transport(exc)
        if isinstance(error, UnsafeProviderAddressError):
            return self._health(False, HEALTH_ERROR, error.message, started, outcome="auth")
        if exc.kind in ("deadline", "connect_timeout"):
            return self._health(
                False, HEALTH_ERROR, f"no answer within {deadline(HEALTH):g}s ({exc.kind})", started, outcome="timeout"
            )
        return self._health(False, HEALTH_ERROR, f"{error.code}: {error.message}", started, outcome="unavailable")

    def _health_refusal(self, status: int, started: float) -> HealthResult | None:
        """A health answer that is not a state: the key refused, the instance unknown, an error."""
        if status in (401, 403):
            return self._health(
                False,
                HEALTH_ERROR,
                f"unauthorized ({status}): check the instance API key",
                started,
                status,
                outcome="auth",
            )
        if status == 404:
            return self._health(
                False, HEALTH_ERROR, "instance not found on the provider (404)", started, status, outcome="auth"
            )
        if status != 200:
            return self._health(False, HEALTH_ERROR, f"unexpected HTTP {status} from the provider", started, status)
        return None

    # ------------------------------------------------------------------ one send attempt
    def _send_once(self, number: str, message: str, masked: str, attempt: int) -> SendResult:
        raise NotImplementedError

    def _post_send(
        self,
        url: str,
        payload: dict[str, Any],
        *,
        budget: float,
        started: float,
        masked: str,
        attempt: int,
        error_for_response: Callable[[HTTPResponse], ProviderError],
    ) -> tuple[HTTPResponse, Any]:
        """The send's POST on a fresh connection, never a reused one (libcurl would silently
        re-send a request whose reused connection died before answering); a failure is recorded
        and raised classified. Answers the response and its decoded body."""
        try:
            response = provider_client.request(
                "POST",
                url,
                body=json.dumps(payload).encode("utf-8"),
                headers=self._headers(body=True),
                deadline=budget,
                connect_timeout=connect_timeout(),
                reuse_connection=False,
            )
        except HTTPCallError as exc:
            raise self._send_failed(error_for_transport(exc), started, masked, attempt) from exc
        if not 200 <= response.status < 300:
            error = error_for_response(response)
            raise self._send_failed(error, started, masked, attempt) from HTTPStatusError(response)
        return response, response.json()

    def _accepted(
        self,
        response: HTTPResponse,
        body: Any,
        *,
        message_id: str,
        remote_jid: str,
        status: str,
        started: float,
        masked: str,
        attempt: int,
    ) -> SendResult:
        """The provider's success answer as a result; one without a message id may still have
        sent: ambiguous, settled later by reconciliation rather than sent twice."""
        if not message_id:
            error = AmbiguousSendError(
                "The provider accepted the request but returned no message id; the message may have been sent.",
                code="missing_message_id",
                http_status=response.status,
            )
            raise self._send_failed(error, started, masked, attempt) from HTTPStatusError(response)
        self._record(OPERATION_SEND, "ok", started, masked, attempt, http_status=response.status, message_id=message_id)
        return SendResult(
            provider_message_id=message_id, status=status, remote_jid=remote_jid, attempts=attempt, response=body
        )

    def _send_failed(self, error: ProviderError, started: float, masked: str, attempt: int) -> ProviderError:
        self._record(OPERATION_SEND, error.outcome, started, masked, attempt, error=error)
        return error

    # ------------------------------------------------------------------ HTTP helpers
    def _headers(self, *, body: bool = False, api_key: str | None = None) -> dict[str, str]:
        key = self.instance.api_key if api_key is None else api_key
        return json_headers(self.auth_header, key) if body else default_headers(self.auth_header, key)

    def _control_call(
        self,
        method: str,
        url: str,
        payload: Any = None,
        *,
        kind: str = LOOKUP,
        error_for_response: Any,
        error_for_transport: Any,
        ok: tuple[int, ...] = (200, 201),
    ) -> HTTPResponse:
        """A call that is neither a send nor a health check (pairing, webhook set-up, instance
        creation): within the lookup deadline, reusing connections; a refusal raises."""
        body = json.dumps(payload).encode("utf-8") if payload is not None else None
        try:
            response = provider_client.request(
                method,
                url,
                body=body,
                headers=self._headers(body=body is not None),
                deadline=deadline(kind),
                connect_timeout=connect_timeout(),
            )
        except HTTPCallError as exc:
            raise error_for_transport(exc) from exc
        if response.status not in ok:
            raise error_for_response(response) from HTTPStatusError(response)
        return response

    def _lookup_page(
        self,
        method: str,
        url: str,
        payload: Any,
        masked: str,
        *,
        parse: Callable[[Any], T],
        error_for_response: Callable[[HTTPResponse], ProviderError],
    ) -> T:
        """One page of a reconciliation look-up within EVOLUTION_LOOKUP_DEADLINE, recorded like
        a send attempt; an answer of an unknown shape is `lookup_bad_answer`."""
        started = time.monotonic()
        try:
            response = provider_client.request(
                method,
                url,
                body=json.dumps(payload).encode("utf-8") if payload is not None else None,
                headers=self._headers(body=payload is not None),
                deadline=deadline(LOOKUP),
                connect_timeout=connect_timeout(),
            )
        except HTTPCallError as exc:
            error = error_for_lookup_transport(exc)
            self._record(OPERATION_LOOKUP, error.outcome, started, masked, 1, error=error)
            raise error from exc
        if response.status != 200:
            error = error_for_response(response)
            self._record(OPERATION_LOOKUP, error.outcome, started, masked, 1, error=error)
            raise error from HTTPStatusError(response)
        try:
            parsed = parse(response.json())
        except ValueError as exc:
            error = ProviderLookupError(
                "The provider's look-up answer has an unknown shape.",
                code="lookup_bad_answer",
                http_status=response.status,
            )
            self._record(OPERATION_LOOKUP, error.outcome, started, masked, 1, error=error)
            raise error from exc
        self._record(OPERATION_LOOKUP, "ok", started, masked, 1, http_status=response.status)
        return parsed

    # ------------------------------------------------------------------ shared helpers
    def _normalize(self, phone: str) -> str:
        """E.164 digits without '+', through the project's one normaliser."""
        try:
            return e164_digits(normalize_phone(phone))
        except PhoneNumberError as exc:
            error = InvalidNumberError(
                f"The phone number cannot be used: {exc.message}", details={"reason": exc.code}, nothing_sent=True
            )
            self._record(OPERATION_SEND, error.outcome, None, mask_phone(str(phone or "")), 0, error=error)
            raise error from exc

    def _feed_breaker(self, error: ProviderError) -> None:
        """Only availability failures count against the instance; an answer that proves the
        instance works (a number check) closes it; anything else proves nothing either way."""
        if isinstance(error, (InstanceUnavailableError, TransientProviderError)):
            self.breaker.record_failure()
        elif isinstance(error, InvalidNumberError):
            self.breaker.record_success()
        else:
            self.breaker.release()

    def _retry_wait(self, error: ProviderError, attempt: int, max_attempts: int) -> float | None:
        """Seconds to wait before the next attempt, or None to give up and raise."""
        if not error.retryable or attempt >= max_attempts:
            return None
        wait = backoff_delay(attempt)
        if isinstance(error, ProviderRateLimitedError):
            if error.retry_after > float(settings.EVOLUTION_RETRY_AFTER_MAX):
                return None  # too long to hold a worker thread: the caller reschedules
            wait = max(wait, error.retry_after)
        return wait

    def _context(self, operation: str) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "provider": self.name,
            "provider_instance": self.instance.instance_name,
            "operation": operation,
        }

    def _record(
        self,
        operation: str,
        outcome: str,
        started: float | None,
        masked: str,
        attempt: int,
        *,
        error: ProviderError | None = None,
        http_status: int | None = None,
        message_id: str | None = None,
    ) -> None:
        """One metric sample and one structured log line per attempt. Never the text or key."""
        EVOLUTION_REQUESTS.labels(operation=operation, outcome=outcome).inc()
        extra = {**self._context(operation), "outcome": outcome, "phone": masked, "attempt": attempt}
        if started is not None:
            duration = time.monotonic() - started
            EVOLUTION_REQUEST_DURATION.labels(operation=operation).observe(duration)
            extra["duration_ms"] = round(duration * 1000, 1)
        verb = "lookup" if operation == OPERATION_LOOKUP else "send"
        if error is None:
            extra.update(http_status=http_status, provider_message_id=message_id)
            logger.info("%s %s %s", self.name, verb, "accepted" if verb == "send" else "answered", extra=extra)
            return
        extra.update(
            error_code=error.code,
            http_status=error.http_status,
            permanent=error.permanent,
            nothing_sent=error.nothing_sent,
        )
        logger.warning("%s %s failed: %s", self.name, verb, error.code, extra=extra)

    def _health(
        self,
        healthy: bool,
        state: str,
        reason: str,
        started: float,
        http_status: int | None = None,
        *,
        provider_state: str | None = None,
        outcome: str = "unhealthy",
        session_lost: bool = False,
    ) -> HealthResult:
        duration = time.monotonic() - started
        EVOLUTION_REQUESTS.labels(operation=OPERATION_HEALTH, outcome=outcome).inc()
        EVOLUTION_REQUEST_DURATION.labels(operation=OPERATION_HEALTH).observe(duration)
        logger.log(
            logging.INFO if healthy else logging.WARNING,
            "%s health check: %s",
            self.name,
            state,
            extra={
                **self._context(OPERATION_HEALTH),
                "outcome": outcome,
                "health_state": state,
                "reason": reason,
                "http_status": http_status,
                "duration_ms": round(duration * 1000, 1),
            },
        )
        return HealthResult(
            healthy=healthy,
            state=state,
            reason=reason,
            checked_at=datetime.now(UTC),
            provider_state=provider_state,
            http_status=http_status,
            session_lost=session_lost,
        )


def backoff_delay(attempt: int) -> float:
    """Wait before retry number `attempt` (1-based): EVOLUTION_RETRY_BACKOFF[attempt-1] (the last
    value repeats), spread by ± EVOLUTION_RETRY_JITTER so workers do not retry in lockstep."""
    schedule = settings.EVOLUTION_RETRY_BACKOFF
    if isinstance(schedule, str):
        schedule = [float(part) for part in schedule.split(",") if part.strip()]
    if not schedule:
        return 0.0
    base = float(schedule[min(attempt, len(schedule)) - 1])
    jitter = max(0.0, float(settings.EVOLUTION_RETRY_JITTER))
    return max(0.0, base * (1 + random.uniform(-jitter, jitter)))
