"""Delivering client callbacks, apart from everything else (`manage.py run_billing_callbacks`).

A client endpoint is somebody else's server: it may be slow, drip one byte every few seconds,
or hang. So delivery runs in its own process, never in the periodic loop nor an API request,
and no endpoint can hold more than its share:

- a bounded pool of BILLING_CALLBACK_WORKERS threads, and at most BILLING_CALLBACK_PER_TENANT
  attempts of one tenant in flight: a slow endpoint delays its own tenant's callbacks only;
- each attempt within BILLING_CALLBACK_DEADLINE seconds in all (DNS, connect, request,
  status line and headers; the answer's body is never read), apps/common/http_client.py;
- a circuit per tenant and endpoint (scheme, host, port) in Redis: after repeated failures the
  endpoint's deliveries wait out the cool-down without costing an attempt or a thread;
- nothing lost: deliveries are rows (the outbox written with the change they report,
  services/callbacks.py), claimed with SKIP LOCKED and hidden for a lease while in flight; a
  process that dies leaves them to reappear when the lease ends.

The URL may carry secrets (userinfo, a query string, a path token): it is never logged; log
lines carry the host only, and `last_error` a short code.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.billing.models import BillingConfig, CallbackDelivery
from apps.billing.services.callbacks import retry_delay, signature_headers
from apps.common.http_client import DeadlineHTTPClient, HTTPCallError
from apps.common.services.circuit_breaker import BreakerPolicy, CircuitBreaker
from apps.common.url_safety import UnsafeURL, callback_policy, validate_callback_url

logger = logging.getLogger(__name__)

callback_client = DeadlineHTTPClient(
    policy=callback_policy,
    user_agent=lambda: settings.BILLING_CALLBACK_USER_AGENT,
    max_response_bytes=0,  # the answer's body is never read (read_body=False)
)

DELIVERED, RETRY, FAILED, DEFERRED = "delivered", "retry", "failed", "deferred"

# Up to `per_tenant` due rows of each tenant, the oldest first, locked without waiting.
_CLAIM_SQL = """
SELECT id, tenant_id FROM billing_callbackdelivery
WHERE id IN (
    SELECT id FROM (
        SELECT id, row_number() OVER (PARTITION BY tenant_id ORDER BY next_attempt_at, id) AS turn
        FROM billing_callbackdelivery WHERE status = 'pending' AND next_attempt_at <= %s
    ) ranked WHERE turn <= %s
)
ORDER BY next_attempt_at, id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""


def claim_lease() -> timedelta:
    """How long a claimed delivery stays hidden: its attempt can take one deadline."""
    return timedelta(seconds=2 * float(settings.BILLING_CALLBACK_DEADLINE) + 30)


def breaker_policy() -> BreakerPolicy:
    return BreakerPolicy(
        key_prefix=settings.BILLING_CALLBACK_BREAKER_KEY_PREFIX,
        threshold=int(settings.BILLING_CALLBACK_BREAKER_THRESHOLD),
        cooldown=float(settings.BILLING_CALLBACK_BREAKER_COOLDOWN),
        probe_lease=float(settings.BILLING_CALLBACK_DEADLINE) + 1.0,
    )


def endpoint_breaker(delivery: CallbackDelivery) -> CircuitBreaker:
    """One circuit per tenant and origin: another tenant's endpoint on the same host has its own."""
    parts = urlsplit(delivery.url)
    origin = (
        f"{parts.scheme}://{(parts.hostname or '').lower()}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    )
    return CircuitBreaker(f"{delivery.tenant_id}:{origin}", breaker_policy())


def claim_due(
    *, now: datetime, slots: int, busy: Mapping[Any, int] | None = None, per_tenant: int | None = None
) -> list[CallbackDelivery]:
    """Claim at most `slots` due deliveries, no tenant beyond `per_tenant` in flight (counting
    `busy`, what this process already runs). Each claim counts an attempt and hides the row
    for `claim_lease()`."""
    busy = Counter(busy or {})
    per_tenant = int(per_tenant or settings.BILLING_CALLBACK_PER_TENANT)
    if slots <= 0:
        return []
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM_SQL, [now, per_tenant, slots + sum(busy.values())])
            rows = cursor.fetchall()
        ids: list[int] = []
        for pk, tenant_id in rows:
            if len(ids) < slots and busy[tenant_id] < per_tenant:
                busy[tenant_id] += 1
                ids.append(pk)
        if ids:
            CallbackDelivery.objects.filter(pk__in=ids).update(
                attempts=F("attempts") + 1, next_attempt_at=now + claim_lease(), updated_at=timezone.now()
            )
    if not ids:
        return []
    return list(CallbackDelivery.objects.select_related("tenant").filter(pk__in=ids).order_by("next_attempt_at", "id"))


def deliver_due(*, now: datetime | None = None, limit: int = 100) -> int:
    """One synchronous round: claim up to `limit` due deliveries and attempt them one by one
    (`run_billing_callbacks --once`, tests). Returns how many were attempted."""
    now = now or timezone.now()
    claimed = claim_due(now=now, slots=limit, per_tenant=limit)
    for delivery in claimed:
        attempt(delivery, now=now)
    return len(claimed)


def attempt(delivery: CallbackDelivery, *, now: datetime | None = None) -> str:
    """POST one claimed delivery; record the outcome. Returns DELIVERED, RETRY, FAILED or
    DEFERRED (the endpoint's circuit is open: not attempted, the attempt given back)."""
    now = now or timezone.now()
    context = {
        "callback_id": delivery.pk,
        "webhook_id": delivery.webhook_id,
        "event": delivery.event,
        "tenant_id": str(delivery.tenant_id),
        "host": urlsplit(delivery.url).hostname or "",
        "attempt": delivery.attempts,
    }
    try:
        validate_callback_url(delivery.url)
    except UnsafeURL as exc:
        if exc.code == "unresolvable_callback_url":  # DNS trouble may pass: retry
            return _retry_or_fail(delivery, now, status_code=None, error=exc.code, context=context)
        _record(delivery, status=CallbackDelivery.Status.FAILED, status_code=None, error=exc.code)
        logger.warning("billing callback refused: unsafe URL", extra=context)
        return FAILED
    breaker = endpoint_breaker(delivery)
    decision = breaker.acquire()
    if not decision.allowed:
        return _defer(delivery, now + timedelta(seconds=max(decision.retry_after, 1.0)), context)
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    secret = BillingConfig.for_tenant(delivery.tenant).callback_secret  # read now: a rotated secret signs retries too
    headers = {
        **signature_headers(secret=secret, msg_id=delivery.webhook_id, timestamp=int(time.time()), body=body),
        "Content-Type": "application/json",
    }
    try:
        response = callback_client.request(
            "POST",
            delivery.url,
            body=body,
            headers=headers,
            read_body=False,
            deadline=float(settings.BILLING_CALLBACK_DEADLINE),
            connect_timeout=float(settings.BILLING_CALLBACK_CONNECT_TIMEOUT),
        )
    except HTTPCallError as exc:
        if exc.kind == "refused_address":  # the name re-resolved to a refused address (DNS rebinding)
            breaker.release()
            _record(delivery, status=CallbackDelivery.Status.FAILED, status_code=None, error="unsafe_callback_url")
            logger.warning("billing callback refused at connect: unsafe address", extra=context)
            return FAILED
        breaker.record_failure()
        return _retry_or_fail(
            delivery,
            now,
            status_code=None,
            error=f"transport: {exc.kind}",
            context={**context, "duration_ms": round(exc.elapsed * 1000)},
        )
    status = response.status
    context["duration_ms"] = round(response.elapsed * 1000)
    if status >= 500:
        breaker.record_failure()
    elif decision.success_changes_state:
        breaker.record_success()  # any answer below 500 proves the endpoint is up
    if 200 <= status < 300:
        _record(
            delivery,
            status=CallbackDelivery.Status.DELIVERED,
            status_code=status,
            error="",
            delivered_at=timezone.now(),
        )
        logger.info("billing callback delivered", extra={**context, "http_status": status})
        return DELIVERED
    error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    return _retry_or_fail(delivery, now, status_code=status, error=error, context=context)


def _defer(delivery: CallbackDelivery, at: datetime, context: dict[str, Any]) -> str:
    """The circuit is open: give the attempt back and wait for the cool-down (or give up)."""
    if at > delivery.give_up_at:
        _record(delivery, status=CallbackDelivery.Status.FAILED, status_code=None, error="circuit_open")
        logger.warning("billing callback failed: gave up (circuit open)", extra=context)
        return FAILED
    CallbackDelivery.objects.filter(pk=delivery.pk, attempts=delivery.attempts).update(
        attempts=F("attempts") - 1, next_attempt_at=at, last_error="circuit_open", updated_at=timezone.now()
    )
    logger.info(
        "billing callback deferred: endpoint circuit open", extra={**context, "next_attempt_at": at.isoformat()}
    )
    return DEFERRED


def _retry_or_fail(
    delivery: CallbackDelivery, now: datetime, *, status_code: int | None, error: str, context: dict[str, Any]
) -> str:
    next_at = now + timedelta(seconds=retry_delay(delivery.attempts))
    if next_at > delivery.give_up_at:
        _record(delivery, status=CallbackDelivery.Status.FAILED, status_code=status_code, error=error)
        logger.warning(
            "billing callback failed: gave up", extra={**context, "http_status": status_code, "error": error}
        )
        return FAILED
    _record(
        delivery, status=CallbackDelivery.Status.PENDING, status_code=status_code, error=error, next_attempt_at=next_at
    )
    logger.info(
        "billing callback will be retried",
        extra={**context, "http_status": status_code, "error": error, "next_attempt_at": next_at.isoformat()},
    )
    return RETRY


def _record(delivery: CallbackDelivery, *, status: str, status_code: int | None, error: str, **fields: Any) -> None:
    """Write the outcome, fenced on the attempt number we claimed (a run that overran its lease
    cannot overwrite a newer attempt's result)."""
    CallbackDelivery.objects.filter(pk=delivery.pk, attempts=delivery.attempts).update(
        status=status, last_status_code=status_code, last_error=error[:300], updated_at=timezone.now(), **fields
    )


class CallbackDispatcher:
    """The loop of `run_billing_callbacks`: claims only what can start now (free threads,
    tenants under their share) and hands each delivery to a pool thread."""

    def __init__(self, *, workers: int | None = None, per_tenant: int | None = None) -> None:
        self.workers = int(workers or settings.BILLING_CALLBACK_WORKERS)
        self.per_tenant = int(per_tenant or settings.BILLING_CALLBACK_PER_TENANT)
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="billing-callback")
        self._lock = threading.Lock()
        self._in_flight: Counter[Any] = Counter()
        self._finished = threading.Event()  # set whenever an attempt ends: a slot is free

    def dispatch(self, now: datetime | None = None) -> int:
        """Claim and start what fits; return how many attempts were started."""
        with self._lock:
            busy = Counter(self._in_flight)
        claimed = claim_due(
            now=now or timezone.now(), slots=self.workers - sum(busy.values()), busy=busy, per_tenant=self.per_tenant
        )
        for delivery in claimed:
            with self._lock:
                self._in_flight[delivery.tenant_id] += 1
            self._pool.submit(self._run, delivery).add_done_callback(self._done(delivery.tenant_id))
        return len(claimed)

    def in_flight(self) -> int:
        with self._lock:
            return sum(self._in_flight.values())

    def run(self, stop: threading.Event, *, poll_interval: float | None = None) -> None:
        """Dispatch until `stop` is set; wake up when a slot frees or every `poll_interval`."""
        poll = float(poll_interval or settings.BILLING_CALLBACK_POLL_SECONDS)
        try:
            while not stop.is_set():
                self._finished.clear()
                try:
                    started = self.dispatch()
                except Exception:
                    logger.exception("billing callback dispatch failed")
                    close_old_connections()
                    started = 0
                if not started:
                    self._finished.wait(poll)
        finally:
            connection.close()

    def shutdown(self) -> None:
        """Let the attempts in flight finish (each is bounded by its deadline)."""
        self._pool.shutdown(wait=True)

    def _run(self, delivery: CallbackDelivery) -> None:
        try:
            attempt(delivery)
        except Exception:
            logger.exception("billing callback attempt crashed", extra={"callback_id": delivery.pk})
        finally:
            # A pool thread holds no database connection between attempts (an attempt is a
            # network wait of up to a deadline; a connection per attempt is cheap beside it).
            connection.close()

    def _done(self, tenant_id: Any) -> Callable[[Future[None]], None]:
        def done(_future: Future[None]) -> None:
            with self._lock:
                self._in_flight[tenant_id] -= 1
                if self._in_flight[tenant_id] <= 0:
                    del self._in_flight[tenant_id]
            self._finished.set()

        return done
