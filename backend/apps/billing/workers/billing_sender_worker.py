"""BillingSenderWorker: sends one queue's messages at the tenant's pace, inside its hours.

The consumer claims the queue in the database (`claim()`) and acknowledges the broker message
right after; `run()` then works from the database alone. The loop is the design's list:

    claim a batch of due contacts (SKIP LOCKED, short transaction)
    before EACH message:
        still ours and running?         (a pause or cancel from the API stops us here)
        inside business hours?          (else: paused_business_hours until the next opening)
        instance healthy?               (else: instance_down until recovery)
        shutdown asked / time slice over?  (else: release and republish)
        wait for the instance's send slot (shared Redis pace), heart-beating
    render with today's dates, send, record the outcome in its own short transaction
    no contact left → completed

Every write is fenced by the lease token (see services/queue_lease.py): a worker that lost the
queue cannot send or write for it.
"""
from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from redis.exceptions import RedisError

from apps.billing import metrics
from apps.billing.constants import ContactErrorCode, QueueStatus
from apps.billing.models import BillingConfig, BillingContact, BillingQueue, BillingTemplateVariation
from apps.billing.progress import publish_queue_progress
from apps.billing.services import callbacks
from apps.billing.services.billing_send_service import OutboundChat
from apps.billing.services.delivery_status import apply_early_receipts
from apps.billing.services.opt_out import is_suppressed
from apps.billing.services import queue_lease
from apps.billing.services.eta import seconds_per_message
from apps.billing.services.instance_checker import InstanceHealthChecker, InstanceRecoveryService
from apps.billing.services.queue_lease import Lease, LeaseLost
from apps.billing.utils.date_calculator import BillingDateCalculator, today_in
from apps.billing.utils.errors import TemplateError
from apps.billing.utils.template_engine import BillingTemplateEngine
from apps.chat.services import BusinessHoursService, WeeklySchedule
from apps.common.rate_limiting import reserve_slot
from apps.common.services.evolution_errors import (
    AmbiguousSendError,
    EvolutionAPIError,
    InstanceUnavailableError,
    InvalidNumberError,
    ProviderAuthError,
    ProviderRateLimitedError,
    TransientProviderError,
)
from apps.common.services.evolution_api_service import EvolutionAPIService
from apps.contacts.utils import mask_phone

logger = logging.getLogger(__name__)

_default_health = InstanceHealthChecker()
PROGRESS_EVERY_SECONDS = 1.0
# How long before its send slot a worker wakes for the last checks and the render. The send
# starts (contact `sending`) only at the slot itself, so a crash while waiting for it never
# reports a contact that was not handed to the provider as `interrupted`.
PREP_MARGIN = 0.25
# A message is only sent if the tenant is still open this long after its send slot.
SEND_MARGIN = 1.0
# Receipts that beat the outcome write are looked up for the messages sent in the last half
# second (or 50 messages) at once, and at every ending, not one Redis round trip per message.
EARLY_RECEIPTS_EVERY_SECONDS = 0.5
EARLY_RECEIPTS_BATCH = 50
EARLY_RECEIPTS_KEPT = 1000  # ids kept for another look-up while Redis fails


def pace_key(instance) -> str:
    """The physical WhatsApp number is (provider URL, instance name): two rows pointing at the
    same one share one pace."""
    digest = hashlib.sha256(f"{instance.base_url.rstrip('/')}/{instance.instance_name}".encode()).hexdigest()[:24]
    return f"instance:{digest}"


@dataclass
class WorkerResult:
    """How a run ended: `completed`, `paused_business_hours`, `instance_down`, `released`
    (shutdown or time slice: republish), `waiting_retry`, `stopped` (paused/cancelled/lost)."""

    outcome: str
    sent: int = 0
    failed: int = 0
    republish: bool = False
    details: dict = field(default_factory=dict)


class _Stop(Exception):
    def __init__(self, result: WorkerResult) -> None:
        self.result = result


class BillingSenderWorker:
    def __init__(
        self, queue_id: str, *, worker_id: str, stop_event: threading.Event | None = None,
        health: InstanceHealthChecker | None = None, time_slice: float | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.queue_id = queue_id
        self.worker_id = worker_id
        self.stop_event = stop_event or threading.Event()
        self.health = health or _default_health
        self._time_slice_override = time_slice
        self.lease: Lease | None = None
        self.sent = 0
        self.failed = 0
        self._last_progress = 0.0
        self.slot_at = 0.0
        self._sent_ids: list[str] = []  # provider ids whose early receipts are not looked up yet
        self._receipts_checked = time.monotonic()

    # ------------------------------------------------------------------ entry points
    def claim(self) -> bool:
        """pending → running for us. False: someone holds it, it is not due, or it is finished."""
        self.lease = queue_lease.claim_queue(self.queue_id, self.worker_id)
        return self.lease is not None

    def run(self) -> WorkerResult:
        if self.lease is None and not self.claim():
            return WorkerResult("not_claimed")
        try:
            self._load()
            self._on_started()
            while True:
                batch = queue_lease.claim_contacts(self.lease, self.config.batch_size)
                if not batch:
                    return self._finish_or_wait()
                for index, contact in enumerate(batch):
                    try:
                        self._before_each_message()
                        self._send_one(contact)
                    except _Stop:
                        self._release_unstarted(batch[index:])
                        raise
        except _Stop as stop:
            return self._with_counts(stop.result)
        except LeaseLost:
            logger.warning("billing worker lost its lease; stopping without writing",
                           extra=self._log_context())
            return self._with_counts(WorkerResult("stopped", details={"reason": "lease_lost"}))
        finally:
            if self._sent_ids:  # an unexpected error: still apply what the receipts said
                self._apply_early_receipts(now=True, quietly=True)
            close_old_connections()

    # ------------------------------------------------------------------ set-up (once per run)
    def _load(self) -> None:
        self.queue = BillingQueue.objects.select_related("tenant", "instance", "billing_campaign").get(pk=self.queue_id)
        self.tenant = self.queue.tenant
        self.config = BillingConfig.for_tenant(self.tenant)
        self.instance = self.queue.instance
        self.template_type = self.queue.template_type
        self.schedule: WeeklySchedule | None = (
            BusinessHoursService.schedule_for(self.tenant)
            if self.config.respects_business_hours(self.template_type) else None
        )
        self.variations = {
            v.pk: v for v in BillingTemplateVariation.objects.filter(template_id=self.queue.billing_campaign.template_id)
        }
        self.client = EvolutionAPIService(self.instance)
        self.pace_key = pace_key(self.instance)
        self.interval = seconds_per_message(self.config.messages_per_minute)
        self.started = time.monotonic()
        self.time_slice = self._time_slice_override or float(self.config.time_slice_seconds)
        self.last_heartbeat = time.monotonic()

    def _on_started(self) -> None:
        logger.info("billing worker started queue", extra=self._log_context())
        if self.lease.first_start:
            callbacks.on_queue_started(self.queue, config=self.config)

    # ------------------------------------------------------------------ the per-message checks
    def _before_each_message(self) -> None:
        now = timezone.now()
        self._check_business_hours(now)
        self._check_instance()
        self._check_shutdown_and_slice()
        self._wait_for_send_slot()
        # The hours get the last word in `_send_one`, at the instant the send starts; the
        # queue's status is checked by start_sending itself, in the statement that starts it.

    def _check_still_ours(self) -> None:
        status = queue_lease.current_status(self.lease)
        if status != QueueStatus.RUNNING:
            raise _Stop(WorkerResult("stopped", details={"reason": status or "lease_lost"}))

    def _check_business_hours(self, now: datetime) -> None:
        if self.schedule is None or self.schedule.is_open(now):
            return
        resume_at = self.schedule.next_open_after(now)
        if queue_lease.release(self.lease, QueueStatus.PAUSED_BUSINESS_HOURS,
                               pause_reason="outside business hours", next_resume_at=resume_at):
            callbacks.on_queue_paused(self.queue, "business_hours")
        logger.info("billing queue paused outside business hours",
                    extra={**self._log_context(), "next_resume_at": resume_at.isoformat() if resume_at else None})
        raise _Stop(WorkerResult(QueueStatus.PAUSED_BUSINESS_HOURS, details={"next_resume_at": resume_at}))

    def _check_instance(self) -> None:
        health = self.health.check(self.instance, max_age=float(self.config.health_cache_seconds),
                                   client=self.client)
        if not health.healthy:
            self._instance_down(health.reason)

    def _instance_down(self, reason: str) -> None:
        if InstanceRecoveryService.handle_instance_down(self.lease, reason):
            callbacks.on_queue_paused(self.queue, "instance_down")
        logger.warning("billing queue paused: instance down", extra={**self._log_context(), "reason": reason[:200]})
        raise _Stop(WorkerResult(QueueStatus.INSTANCE_DOWN, details={"reason": reason}))

    def _check_shutdown_and_slice(self) -> None:
        if self.stop_event.is_set():
            self._release_to_pending("shutdown")
        if time.monotonic() - self.started >= self.time_slice:
            self._release_to_pending("time_slice")

    def _release_to_pending(self, reason: str) -> None:
        queue_lease.release(self.lease, QueueStatus.PENDING, last_published_at=None)
        logger.info("billing queue released", extra={**self._log_context(), "reason": reason})
        raise _Stop(WorkerResult("released", republish=True, details={"reason": reason}))

    def _wait_for_send_slot(self) -> None:
        """Reserve this instance's next send slot and wait until just before it. The last
        PREP_MARGIN is spent on the final checks and the render; `_send_one` then starts the
        send at the slot and posts right away, so database latency barely blurs the pace."""
        interval = self.interval + (random.uniform(0, float(self.config.jitter_seconds))
                                    if self.config.jitter_seconds else 0.0)
        wait = reserve_slot(self.pace_key, interval)
        metrics.observe_throttle_wait(wait, self.template_type)
        self.slot_at = time.monotonic() + wait
        wake_at = self.slot_at - PREP_MARGIN
        while True:
            remaining = wake_at - time.monotonic()
            if remaining <= 0:
                break
            if self.stop_event.wait(min(remaining, 1.0)):
                self._release_to_pending("shutdown")
            self._maybe_heartbeat()
        self._maybe_heartbeat()

    def _wait_until_slot(self) -> None:
        """The rest of PREP_MARGIN, before the send starts: a shutdown now hands the contact
        back unsent instead of sending it."""
        remaining = self.slot_at - time.monotonic()
        if remaining > 0 and self.stop_event.wait(remaining):
            self._release_to_pending("shutdown")

    def _maybe_heartbeat(self) -> None:
        if time.monotonic() - self.last_heartbeat >= float(settings.BILLING_HEARTBEAT_SECONDS):
            queue_lease.heartbeat(self.lease)
            self.last_heartbeat = time.monotonic()

    # ------------------------------------------------------------------ one message
    def _send_one(self, contact: BillingContact) -> None:
        context = {**self._log_context(), "contact_id": contact.pk, "phone": mask_phone(contact.phone)}
        try:
            text = self._render(contact)
        except (TemplateError, ValueError) as exc:
            if queue_lease.record_failed(self.lease, contact, code=ContactErrorCode.RENDER_ERROR,
                                         error=f"render: {getattr(exc, 'code', type(exc).__name__)}"):
                self.failed += 1
                callbacks.on_contact_outcome(contact, "contact.failed", config=self.config)
            metrics.observe_send(self.tenant.pk, self.template_type, "failed")
            logger.warning("billing contact not rendered", extra={**context, "error": getattr(exc, "code", "")})
            return
        self._wait_until_slot()
        # The waits (for the slot; in the consumer, for a database permit) may have crossed the
        # closing time: the hours are judged at the instant the send starts, plus a margin for
        # the HTTP call.
        self._check_business_hours(timezone.now() + timedelta(seconds=SEND_MARGIN))
        if not queue_lease.start_sending(self.lease, contact):
            self._why_not_sending(contact, context)
            return
        started = time.monotonic()
        try:
            result = self.client.send(contact.phone, text, max_retries=0, normalized=True)
        except EvolutionAPIError as error:
            self._record_error(contact, error, text, context, seconds=time.monotonic() - started)
        else:
            seconds = time.monotonic() - started
            if queue_lease.record_sent(
                self.lease, contact, provider_message_id=result.provider_message_id, rendered=text,
                chat=OutboundChat(tenant_id=self.tenant.pk, instance_id=self.instance.pk, phone=contact.phone,
                                  contact_name=contact.name),
            ):
                self.sent += 1
                self._sent_ids.append(result.provider_message_id)
                self._apply_early_receipts()
                callbacks.on_contact_outcome(contact, "contact.sent", config=self.config)
            metrics.observe_send(self.tenant.pk, self.template_type, "sent", seconds, instance_id=self.instance.pk)
            logger.info("billing message sent", extra={**context, "duration_ms": round(1000 * seconds)})
        self.last_heartbeat = time.monotonic()  # the outcome write carries a heartbeat
        self._progress()

    def _why_not_sending(self, contact: BillingContact, context: dict) -> None:
        """start_sending refused: the queue is no longer ours and running (a pause or cancel
        from the API, a lost lease) → stop; or the phone opted out → skip; or the contact
        changed under us → leave it."""
        self._check_still_ours()
        if is_suppressed(tenant=self.tenant, phone=contact.phone):
            # The customer asked to stop while the queue ran (LGPD): never send.
            if queue_lease.record_skipped(self.lease, contact, code=ContactErrorCode.OPTED_OUT, reason="opted out"):
                metrics.observe_send(self.tenant.pk, self.template_type, "skipped")
            return
        logger.info("billing contact no longer ours; not sent", extra=context)

    def _render(self, contact: BillingContact) -> str:
        variation = self.variations.get(contact.variation_id)
        if variation is None:
            raise ValueError("contact has no variation")
        today = today_in(self.tenant.timezone)
        variables = BillingDateCalculator(today).enrich(
            contact.variables, name=contact.name or None, due_date=contact.due_date, amount=contact.amount
        )
        variables.setdefault("company_name", self.tenant.name)
        return BillingTemplateEngine.compile(variation.content).render(variables)

    def _record_error(self, contact: BillingContact, error: EvolutionAPIError, text: str, context: dict,
                      *, seconds: float) -> None:
        now = timezone.now()
        failed = isinstance(error, (InvalidNumberError, AmbiguousSendError)) or (
            isinstance(error, TransientProviderError) and contact.attempts >= self.config.max_attempts)
        metrics.observe_send(self.tenant.pk, self.template_type, "failed" if failed else "retry", seconds,
                             instance_id=self.instance.pk)
        reason = f"{error.code}: {str(error)[:200]}"
        if isinstance(error, InvalidNumberError):
            self._fail(contact, ContactErrorCode.INVALID_NUMBER, reason, text)
        elif isinstance(error, AmbiguousSendError):
            # It may have gone out (upstream #1247): never re-send blindly.
            self._fail(contact, ContactErrorCode.OUTCOME_UNKNOWN, reason, text)
        elif isinstance(error, ProviderRateLimitedError):
            retry_after = float(error.retry_after or 30)
            queue_lease.record_retry(self.lease, contact, at=now + timedelta(seconds=retry_after),
                                     code=ContactErrorCode.RATE_LIMITED, error=reason, refund_attempt=True)
            # Everyone sending through this instance waits too: push the shared pace forward.
            reserve_slot(self.pace_key, retry_after)
        elif isinstance(error, (InstanceUnavailableError, ProviderAuthError)):
            queue_lease.record_retry(self.lease, contact, at=now, code=ContactErrorCode.PROVIDER_AUTH
                                     if isinstance(error, ProviderAuthError) else "", error=reason,
                                     refund_attempt=True)
            self.health.mark_unhealthy(self.instance, reason)
            self._instance_down(reason)
        elif contact.attempts >= self.config.max_attempts:
            self._fail(contact, ContactErrorCode.MAX_ATTEMPTS, reason, text)
        else:  # TransientProviderError and anything unforeseen from the provider
            backoff = float(self.config.retry_backoff_seconds) * (2 ** max(contact.attempts - 1, 0))
            queue_lease.record_retry(self.lease, contact, at=now + timedelta(seconds=backoff), code="",
                                     error=reason)
        logger.info("billing send failed", extra={**context, "error_code": error.code,
                                                  "transient": isinstance(error, TransientProviderError)})

    def _fail(self, contact: BillingContact, code: str, reason: str, text: str) -> None:
        if queue_lease.record_failed(self.lease, contact, code=code, error=reason, rendered=text):
            self.failed += 1
            callbacks.on_contact_outcome(contact, "contact.failed", config=self.config)

    def _release_unstarted(self, contacts: list[BillingContact]) -> None:
        """Contacts claimed in this batch but not attempted go back to the pool (best effort:
        `release()` already did it when the queue changed status through us)."""
        ids = [c.pk for c in contacts]
        BillingContact.objects.filter(pk__in=ids, claim_token=self.lease.token,
                                      status__in=["pending", "pending_retry"]).update(claim_token=None, claimed_at=None)

    # ------------------------------------------------------------------ end of the queue
    def _finish_or_wait(self) -> WorkerResult:
        remaining, earliest_retry = queue_lease.unsent_summary(self.lease.queue_id)
        if remaining == 0:
            if queue_lease.release(self.lease, QueueStatus.COMPLETED):
                logger.info("billing queue completed", extra={**self._log_context(), "sent": self.sent})
                callbacks.on_queue_completed(self.queue, config=self.config)
                return self._with_counts(WorkerResult(QueueStatus.COMPLETED))
            return self._with_counts(WorkerResult("stopped", details={"reason": "lease_lost"}))
        # Only retries that are not due yet are left: hand the queue back until the earliest one.
        queue_lease.release(self.lease, QueueStatus.PENDING, next_resume_at=earliest_retry, last_published_at=None)
        return self._with_counts(WorkerResult("waiting_retry", details={"next_resume_at": earliest_retry}))

    def _apply_early_receipts(self, *, now: bool = False, quietly: bool = False) -> None:
        """`quietly`: on the way out after an unexpected error, where a second error must not
        replace the first."""
        if not self._sent_ids:
            return
        due = (now or len(self._sent_ids) >= EARLY_RECEIPTS_BATCH
               or time.monotonic() - self._receipts_checked >= EARLY_RECEIPTS_EVERY_SECONDS)
        if not due:
            return
        ids, self._sent_ids = self._sent_ids, []
        self._receipts_checked = time.monotonic()
        try:
            apply_early_receipts(tenant_id=self.tenant.pk, provider_message_ids=ids)
        except Exception as exc:
            if not (quietly or isinstance(exc, RedisError)):
                raise
            # The receipts not applied are back in Redis (apply_early_receipts); look them up
            # again at the next check. The sending must not stop for them.
            self._sent_ids = (ids + self._sent_ids)[-EARLY_RECEIPTS_KEPT:]
            logger.warning("billing early receipts not looked up",
                           extra={**self._log_context(), "messages": len(ids), "error": type(exc).__name__})

    def _with_counts(self, result: WorkerResult) -> WorkerResult:
        self._apply_early_receipts(now=True)
        result.sent, result.failed = self.sent, self.failed
        self._progress(force=True)  # every ending is a status change watchers want at once
        return result

    def _progress(self, *, force: bool = False) -> None:
        """Push counters to WebSocket watchers: on status changes, else at most once a second
        (so the per-message path does not pay a query for every message)."""
        now = time.monotonic()
        if force or now - self._last_progress >= PROGRESS_EVERY_SECONDS:
            self._last_progress = now
            publish_queue_progress(self.queue_id, force=True)

    def _log_context(self) -> dict:
        return {"queue_id": str(self.queue_id), "worker_id": self.worker_id,
                "tenant_id": str(getattr(getattr(self, "tenant", None), "pk", "")) or None}
