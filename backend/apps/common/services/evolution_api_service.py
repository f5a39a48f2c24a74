"""EvolutionAPIService: the one place that talks to a WhatsApp provider (Evolution API v2/v1).

Billing (and later campaigns and chat) call `send()` / `send_text_message()`,
`check_health()` and `find_messages()`; nothing else in the project builds provider URLs or
reads provider bodies. Every call has a total deadline (apps/common/http_client.py).

    service = EvolutionAPIService(instance)
    result = service.send("+55 11 99876-5432", "Sua fatura vence amanhã.")   # SendResult
    result.provider_message_id                                                 # key.id
    service.find_messages("+55 11 99876-5432", sent_after=..., sent_before=...)  # reconciliation

Failures are the typed errors of `evolution_errors` (re-exported here). The contract this
client follows is /work/shared/evolution-api-contract.md; docs/evolution.md explains retries,
the circuit breaker and what a caller does with each error.
"""
from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from django.conf import settings

from apps.common.http_client import HTTPCallError, HTTPStatusError
from apps.common.metrics import EVOLUTION_REQUEST_DURATION, EVOLUTION_REQUESTS
from apps.contacts.utils import PhoneNumberError, e164_digits, mask_phone, normalize_phone

from .circuit_breaker import CircuitBreaker
from .evolution_errors import (
    AmbiguousSendError,
    CircuitOpenError,
    EvolutionAPIError,
    InstanceUnavailableError,
    InvalidNumberError,
    ProviderAuthError,
    ProviderRateLimitedError,
    ProviderLookupError,
    TransientProviderError,
    UnsafeProviderAddressError,
)
from .evolution_http import HEALTH, LOOKUP, SEND, connect_timeout, deadline, default_headers, json_headers, provider_client
from .evolution_lookup import MessageLookup, ProviderMessage, find_messages_body, jid_candidates, parse_find_messages
from .evolution_responses import (
    error_for_lookup_response,
    error_for_lookup_transport,
    error_for_send_response,
    error_for_transport,
)

if TYPE_CHECKING:
    from apps.connections.models import WhatsAppInstance

logger = logging.getLogger(__name__)

OPERATION_SEND = "send_text"
OPERATION_HEALTH = "connection_state"
OPERATION_LOOKUP = "find_messages"

# WhatsAppInstance.HealthState values (strings, so importing this module needs no app registry).
HEALTH_OPEN = "open"
HEALTH_CONNECTING = "connecting"
HEALTH_CLOSE = "close"
HEALTH_UNKNOWN = "unknown"
HEALTH_ERROR = "error"
_PROVIDER_STATE_TO_HEALTH = {"open": HEALTH_OPEN, "connecting": HEALTH_CONNECTING, "close": HEALTH_CLOSE, "refused": HEALTH_CLOSE}


@dataclass(frozen=True)
class SendResult:
    """A message the provider accepted (HTTP 201, `status: PENDING`)."""

    provider_message_id: str  # `key.id`: the `keyId` later seen in `messages.update` webhooks
    status: str
    remote_jid: str
    attempts: int
    response: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class HealthResult:
    """The outcome of `GET /instance/connectionState/{instance}`. `state` uses the values of
    `WhatsAppInstance.HealthState`; `provider_state` is the provider's raw word, if any."""

    healthy: bool
    state: str
    reason: str
    checked_at: datetime
    provider_state: str | None = None
    http_status: int | None = None

    def as_model_fields(self) -> dict[str, Any]:
        """Fields to store on WhatsAppInstance (the caller saves; this service writes no rows)."""
        return {"health_state": self.state, "health_reason": self.reason[:300], "health_checked_at": self.checked_at}


class EvolutionAPIService:
    """Client for one WhatsApp instance. Cheap to create: the HTTP session is process-wide and
    the circuit breaker lives in Redis, so create one per use."""

    def __init__(self, instance: WhatsAppInstance) -> None:
        self.instance = instance
        self.base_url = instance.base_url.rstrip("/")
        self.instance_id = str(instance.pk) if instance.pk is not None else f"{instance.instance_name}@{self.base_url}"
        self.breaker = CircuitBreaker(self.instance_id)

    # ------------------------------------------------------------------ public API
    def send(self, phone: str, message: str, *, max_retries: int = 3, normalized: bool = False) -> SendResult:
        """Send a text message; return the accepted message or raise an `EvolutionAPIError`.

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
        payload = self._send_payload(number, message)
        url = self._url("message/sendText")
        max_attempts = 1 + max(0, int(max_retries))
        attempt = 0
        last_error: EvolutionAPIError | None = None
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
                result = self._send_once(url, payload, masked, attempt)
            except EvolutionAPIError as error:
                self._feed_breaker(error)
                wait = self._retry_wait(error, attempt, max_attempts)
                if wait is None:
                    raise
                last_error = error
                logger.info(
                    "evolution send retrying",
                    extra={**self._context(OPERATION_SEND), "phone": masked, "attempt": attempt, "wait_seconds": round(wait, 3), "error_code": error.code},
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
        info dict is `EvolutionAPIError.as_dict()` (`error`, `error_class`, `message`,
        `permanent`, `http_status`, `details`).
        """
        try:
            result = self.send(phone, message, max_retries=max_retries if retry else 0)
        except EvolutionAPIError as error:
            return False, error.as_dict()
        return True, result.response

    def check_health(self) -> HealthResult:
        """`GET /instance/connectionState/{instance}`: healthy iff `state == "open"`.

        Never raises for provider problems: a missing state, 404, 401, a timeout or a refused
        connection is an unhealthy result with the reason kept. Not gated by the circuit
        breaker: health checks are how recovery is noticed, so a healthy answer ends an open
        breaker's cool-down (the next send is its single probe).
        """
        url = self._url("instance/connectionState")
        started = time.monotonic()
        try:
            response = provider_client.request(
                "GET", url, headers=default_headers(self.instance.api_key),
                deadline=deadline(HEALTH), connect_timeout=connect_timeout(),
            )
        except HTTPCallError as exc:
            error = error_for_transport(exc)
            if isinstance(error, UnsafeProviderAddressError):
                return self._health(False, HEALTH_ERROR, error.message, started, outcome="auth")
            if exc.kind in ("deadline", "connect_timeout"):
                return self._health(False, HEALTH_ERROR, f"no answer within {deadline(HEALTH):g}s ({exc.kind})",
                                    started, outcome="timeout")
            return self._health(False, HEALTH_ERROR, f"{error.code}: {error.message}", started, outcome="unavailable")

        status = response.status
        if status in (401, 403):
            return self._health(False, HEALTH_ERROR, f"unauthorized ({status}): check the instance API key", started, status, outcome="auth")
        if status == 404:
            return self._health(False, HEALTH_ERROR, "instance not found on the provider (404)", started, status, outcome="auth")
        if status != 200:
            return self._health(False, HEALTH_ERROR, f"unexpected HTTP {status} from the provider", started, status)
        body = response.json()
        inner = body.get("instance") if isinstance(body, dict) else None
        provider_state = inner.get("state") if isinstance(inner, dict) else None
        if provider_state == "open":
            self.breaker.probe_now()
            return self._health(True, HEALTH_OPEN, "connected", started, status, provider_state=provider_state, outcome="healthy")
        if not provider_state:
            return self._health(False, HEALTH_UNKNOWN, "the provider reported no state (instance not loaded)", started, status)
        health = _PROVIDER_STATE_TO_HEALTH.get(str(provider_state), HEALTH_ERROR)
        return self._health(False, health, f"provider state is {provider_state!r}", started, status, provider_state=str(provider_state))

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
        """The messages the provider holds for the chat with `phone` (ours only, by default),
        newest first, optionally within [sent_after, sent_before]: what reconciliation asks
        before deciding an `interrupted` or `outcome_unknown` contact. Each page is one call
        within EVOLUTION_LOOKUP_DEADLINE; both JID forms of a Brazilian mobile are asked.

        Raises `ProviderAuthError` (including `UnsafeProviderAddressError`),
        `ProviderRateLimitedError` or `ProviderLookupError`; never retries, never touches the
        circuit breaker (a read says nothing about sending)."""
        digits = self._normalize(phone)
        masked = mask_phone(digits)
        url = self._url("chat/findMessages")
        found: dict[str, ProviderMessage] = {}
        total, complete = 0, True
        for remote_jid in jid_candidates(digits):
            page, pages = 1, 1
            while page <= pages:
                if page > max_pages:
                    complete = False
                    break
                body = find_messages_body(remote_jid=remote_jid, from_me=from_me, sent_after=sent_after,
                                          sent_before=sent_before, page=page, page_size=page_size)
                messages, page_total, pages = self._lookup_page(url, body, masked)
                if page == 1:
                    total += page_total
                for message in messages:
                    found.setdefault(message.provider_message_id, message)
                page += 1
        ordered = sorted(found.values(), key=lambda m: m.timestamp or datetime.min.replace(tzinfo=timezone.utc),
                         reverse=True)
        return MessageLookup(messages=ordered, total=total, complete=complete)

    def _lookup_page(self, url: str, body: dict[str, Any], masked: str) -> tuple[list[ProviderMessage], int, int]:
        started = time.monotonic()
        try:
            response = provider_client.request(
                "POST", url, body=json.dumps(body).encode("utf-8"), headers=json_headers(self.instance.api_key),
                deadline=deadline(LOOKUP), connect_timeout=connect_timeout(),
            )
        except HTTPCallError as exc:
            error = error_for_lookup_transport(exc)
            self._record(OPERATION_LOOKUP, error.outcome, started, masked, 1, error=error)
            raise error from exc
        if response.status != 200:
            error = error_for_lookup_response(response)
            self._record(OPERATION_LOOKUP, error.outcome, started, masked, 1, error=error)
            raise error from HTTPStatusError(response)
        try:
            parsed = parse_find_messages(response.json())
        except ValueError as exc:
            error = ProviderLookupError("The provider's findMessages answer has an unknown shape.",
                                        code="lookup_bad_answer", http_status=response.status)
            self._record(OPERATION_LOOKUP, error.outcome, started, masked, 1, error=error)
            raise error from exc
        self._record(OPERATION_LOOKUP, "ok", started, masked, 1, http_status=response.status)
        return parsed

    def set_webhook(self, config: dict[str, Any]) -> int:
        """`POST /webhook/set/{instance}` with `config` (contract §4); returns the answer's
        status (the caller judges it). Raises the lookup errors when no answer came."""
        try:
            response = provider_client.request(
                "POST", self._url("webhook/set"), body=json.dumps(config).encode("utf-8"),
                headers=json_headers(self.instance.api_key), deadline=deadline(LOOKUP), connect_timeout=connect_timeout(),
            )
        except HTTPCallError as exc:
            raise error_for_lookup_transport(exc) from exc
        return response.status

    # ------------------------------------------------------------------ one send attempt
    def _send_once(self, url: str, payload: dict[str, Any], masked: str, attempt: int) -> SendResult:
        """One POST on a fresh connection (never a reused one: libcurl would silently re-send a
        request whose reused connection died before answering), within EVOLUTION_SEND_DEADLINE."""
        started = time.monotonic()
        try:
            response = provider_client.request(
                "POST", url, body=json.dumps(payload).encode("utf-8"), headers=json_headers(self.instance.api_key),
                deadline=deadline(SEND), connect_timeout=connect_timeout(), reuse_connection=False,
            )
        except HTTPCallError as exc:
            error = error_for_transport(exc)
            self._record(OPERATION_SEND, error.outcome, started, masked, attempt, error=error)
            raise error from exc

        if not 200 <= response.status < 300:
            error = error_for_send_response(response)
            self._record(OPERATION_SEND, error.outcome, started, masked, attempt, error=error)
            raise error from HTTPStatusError(response)

        body = response.json()
        key = body.get("key") if isinstance(body, dict) else None
        message_id = key.get("id") if isinstance(key, dict) else None
        if not message_id:
            error = AmbiguousSendError(
                "The provider accepted the request but returned no key.id; the message may have been sent.",
                code="missing_message_id",
                http_status=response.status,
            )
            self._record(OPERATION_SEND, error.outcome, started, masked, attempt, error=error)
            raise error from HTTPStatusError(response)
        result = SendResult(
            provider_message_id=str(message_id),
            status=str(body.get("status") or "PENDING"),
            remote_jid=str(key.get("remoteJid") or ""),
            attempts=attempt,
            response=body,
        )
        self._record(OPERATION_SEND, "ok", started, masked, attempt, http_status=response.status, message_id=result.provider_message_id)
        return result

    # ------------------------------------------------------------------ helpers
    def _url(self, route: str) -> str:
        return f"{self.base_url}/{route}/{quote(self.instance.instance_name, safe='')}"

    def _normalize(self, phone: str) -> str:
        """E.164 digits without '+', through the project's one normaliser."""
        try:
            return e164_digits(normalize_phone(phone))
        except PhoneNumberError as exc:
            error = InvalidNumberError(f"The phone number cannot be used: {exc.message}", details={"reason": exc.code},
                                       nothing_sent=True)
            self._record(OPERATION_SEND, error.outcome, None, mask_phone(str(phone or "")), 0, error=error)
            raise error from exc

    def _send_payload(self, number: str, message: str) -> dict[str, Any]:
        if getattr(self.instance, "api_version", "v2") == "v1":
            return {"number": number, "textMessage": {"text": message}, "options": {"linkPreview": False}}
        return {"number": number, "text": message, "linkPreview": False}

    def _feed_breaker(self, error: EvolutionAPIError) -> None:
        """Only availability failures count against the instance; an answer that proves the
        instance works (a number check) closes it; anything else proves nothing either way."""
        if isinstance(error, (InstanceUnavailableError, TransientProviderError)):
            self.breaker.record_failure()
        elif isinstance(error, InvalidNumberError):
            self.breaker.record_success()
        else:
            self.breaker.release()

    def _retry_wait(self, error: EvolutionAPIError, attempt: int, max_attempts: int) -> float | None:
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
        return {"instance_id": self.instance_id, "provider_instance": self.instance.instance_name, "operation": operation}

    def _record(
        self,
        operation: str,
        outcome: str,
        started: float | None,
        masked: str,
        attempt: int,
        *,
        error: EvolutionAPIError | None = None,
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
            logger.info("evolution %s %s", verb, "accepted" if verb == "send" else "answered", extra=extra)
            return
        extra.update(error_code=error.code, http_status=error.http_status, permanent=error.permanent,
                     nothing_sent=error.nothing_sent)
        logger.warning("evolution %s failed: %s", verb, error.code, extra=extra)

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
    ) -> HealthResult:
        duration = time.monotonic() - started
        EVOLUTION_REQUESTS.labels(operation=OPERATION_HEALTH, outcome=outcome).inc()
        EVOLUTION_REQUEST_DURATION.labels(operation=OPERATION_HEALTH).observe(duration)
        logger.log(
            logging.INFO if healthy else logging.WARNING,
            "evolution health check: %s",
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
            checked_at=datetime.now(timezone.utc),
            provider_state=provider_state,
            http_status=http_status,
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


__all__ = [
    "AmbiguousSendError",
    "CircuitOpenError",
    "EvolutionAPIError",
    "EvolutionAPIService",
    "HealthResult",
    "InstanceUnavailableError",
    "InvalidNumberError",
    "MessageLookup",
    "ProviderAuthError",
    "ProviderLookupError",
    "ProviderMessage",
    "ProviderRateLimitedError",
    "SendResult",
    "TransientProviderError",
    "UnsafeProviderAddressError",
    "backoff_delay",
]
