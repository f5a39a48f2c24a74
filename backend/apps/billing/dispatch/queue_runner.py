"""One leased queue, one step at a time: the design's list of checks before every message.

A consumer's sender thread calls `step()` when the scheduler says the queue's instant has come;
the step does what can be done now and answers when the queue may act again. A step never
waits: a pace slot not yet come, a provider's `Retry-After`, a retry's backoff are instants
returned to the scheduler, during which the queue holds no thread and no connection.

    step():
        stopping?                           → hand the queue back (pending), republished
        inside business hours?              → else paused_business_hours until the next opening
        instance and tenant usable?         → else instance_down / paused, with the reason (a
                                              protected number is instance_down until a person)
        instance healthy?                   → else instance_down until recovery
        next contact (claim a batch when the last one is used up)
                                            → none: completed, or wait for the earliest retry
        the number's send slot (Redis)      → not yet: wait for it (a provider hold is shown)
        the number's daily warm-up quota    → reached: paused until the next day (tenant's zone)
        render, start the send (fenced), post, record the outcome with its callbacks
                                            → next instant: the number's next slot

Every write is fenced by the lease token (services/queue_lease.py): a runner that lost its
queue — released as stale, paused or cancelled from the API — cannot start a send or write an
outcome for it. A contact is `sending` only from the instant its HTTP call starts, so a crash
leaves `interrupted` only what may really have been handed to the provider.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from redis.exceptions import RedisError

from apps.billing import metrics
from apps.billing.constants import ContactErrorCode, QueueStatus
from apps.billing.models import (
    BillingConfig,
    BillingContact,
    BillingQueue,
    BillingTemplateVariation,
)
from apps.billing.progress import publish_queue_progress
from apps.billing.services import callbacks, number_protection, queue_lease, reconciliation
from apps.billing.services.chat_history import OutboundChat
from apps.billing.services.daily_cap import NumberQuota, QuotaAnswer, number_key
from apps.billing.services.delivery_status import apply_early_receipts
from apps.billing.services.eta import seconds_per_message
from apps.billing.services.instance_checker import InstanceHealthChecker, InstanceRecoveryService
from apps.billing.services.opt_out import is_suppressed
from apps.billing.services.queue_lease import Lease, LeaseLost
from apps.billing.templating.date_calculator import BillingDateCalculator, today_in
from apps.billing.templating.engine import BillingTemplateEngine
from apps.billing.templating.errors import TemplateError
from apps.chat.services import BusinessHoursService, WeeklySchedule
from apps.common.db_connections import release_connection
from apps.common.rate_limiting import SlotAnswer, acquire_send_slot, hold_back
from apps.common.services.provider import client_for
from apps.common.services.provider_errors import (
    AmbiguousSendError,
    InstanceUnavailableError,
    InvalidNumberError,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitedError,
)
from apps.connections.models import NumberHealthSettings, WhatsAppInstance
from apps.connections.services import flag_for_attention
from apps.contacts.utils import mask_phone
from apps.tenancy.creditor import creditor_variables

logger = logging.getLogger(__name__)

# The slot is granted up to this early, and the runner asks for it a quarter of this early (the
# scheduler may start it a few milliseconds sooner still: scheduler.gather): a wake-up a little
# late or early then costs nothing, and the average pace stays exact.
PACE_TOLERANCE = 0.010
ASK_EARLY = PACE_TOLERANCE / 4
# A message is only started if the tenant is still open this long after the start.
SEND_MARGIN = 1.0
# Redis or PostgreSQL unreachable: look again this soon (the queue keeps its lease meanwhile).
DEPENDENCY_RETRY_SECONDS = 2.0
# A running queue waiting this long or more for its number says so in its row (pause_reason).
SHOW_HOLD_AFTER = 5.0
PROGRESS_EVERY_SECONDS = 1.0
# Receipts that beat the outcome write are looked up for the messages sent in the last half
# second (or 50 messages) at once, and at every ending, not one Redis round trip per message.
EARLY_RECEIPTS_EVERY_SECONDS = 0.5
EARLY_RECEIPTS_BATCH = 50
EARLY_RECEIPTS_KEPT = 1000  # ids kept for another look-up while Redis fails
HOLD_REASON = "provider_rate_limited"
SENT = "sent"  # the step outcome of a send: it used its number's pace slot
# An answer that may mean "sent" is reconciled this long after it: the provider's echo usually
# arrives first and settles it without asking.
ECHO_GRACE_SECONDS = 5.0
RECONCILE_PER_STEP = 5  # provider look-ups one step may make
# A call is started only this soon after its contact became `sending`: a process frozen in
# between (SIGSTOP, a long GC pause, a VM migration) must not send after reconciliation may have
# concluded "never received" (services/reconciliation.py, settled_after).
START_BOUND = 2.0


@dataclass
class DispatchContext:
    """What every runner of one consumer process shares."""

    holder: str  # the consumer process id (ConsumerProcess), written as processing_by
    stop_event: threading.Event = field(default_factory=threading.Event)
    health: InstanceHealthChecker = field(default_factory=InstanceHealthChecker)
    monotonic: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = timezone.now
    republish: Callable[[BillingQueue], object] | None = None  # hands a released queue back to the broker


@dataclass(frozen=True)
class Step:
    """What a step decided: act again at `at` (monotonic seconds), or the queue left this
    process (`at` None) because it `ended` as completed, paused, released, lost..."""

    at: float | None
    outcome: str

    @property
    def left(self) -> bool:
        return self.at is None

    @property
    def sent(self) -> bool:
        """It sent a message: it used its number's pace slot (the scheduler's rule 3)."""
        return self.outcome == SENT


class QueueRunner:
    def __init__(self, lease: Lease, *, context: DispatchContext) -> None:
        self.lease = lease
        self.ctx = context
        self.queue_id = lease.queue_id
        self.loaded = False
        self.batch: deque[BillingContact] = deque()
        self.sent = 0
        self.failed = 0
        self._hold_shown_until: datetime | None = None
        self._switches: tuple[bool, bool, str] = (True, True, "")  # (instance active, tenant active, protected)
        self._switches_read_at = float("-inf")
        self._lane_ids: tuple[int, ...] | None = None
        self._reconcile_at = float("inf")  # monotonic instant the next unconfirmed contact is due
        self._last_progress = 0.0
        self._sent_ids: list[str] = []  # provider ids whose early receipts are not looked up yet
        self._receipts_checked = 0.0

    # ------------------------------------------------------------------ set-up (once per lease)
    def load(self) -> None:
        """Everything a step reads, read once: the queue, the tenant's config, hours, instance,
        variations. Also tells the lane (`pace_key`) the scheduler serialises the queue on."""
        self.queue = BillingQueue.objects.select_related("tenant", "instance", "billing_campaign").get(pk=self.queue_id)
        self.tenant = self.queue.tenant
        self.config = BillingConfig.for_tenant(self.tenant)
        self.instance: WhatsAppInstance | None = self.queue.instance
        self.template_type = self.queue.template_type
        self.priority = int(self.queue.priority)
        self.schedule: WeeklySchedule | None = (
            BusinessHoursService.schedule_for(self.tenant)
            if self.config.respects_business_hours(self.template_type)
            else None
        )
        self.variations = {
            v.pk: v
            for v in BillingTemplateVariation.objects.filter(template_id=self.queue.billing_campaign.template_id)
        }
        self.interval = seconds_per_message(self.config.messages_per_minute)
        if self.instance is not None:
            self.client = client_for(self.instance)
            self.pace_key = number_key(self.instance.base_url, self.instance.instance_name)
            self._switches = (
                self.instance.is_active,
                self.tenant.is_active,  # just read: fresh
                self.instance.protected_reason,
            )
            self._switches_read_at = self.ctx.monotonic()
            self.number_health = NumberHealthSettings.for_tenant(self.tenant.pk)
            self.quota = self._number_quota()
        else:
            self.pace_key = f"queue:{self.queue_id}"  # a lane of its own; the first step stops it
        self.loaded = True
        # A queue's first run has no unconfirmed contact; a later lease may inherit some (an
        # interrupted send, an answer that may mean "sent"): settle them first.
        if not self.lease.first_start and queue_lease.unsent_summary(self.queue_id)[1]:
            self._reconcile_at = self.ctx.monotonic()
        logger.info("billing queue taken", extra=self._log_context())
        if self.lease.first_start:
            callbacks.on_queue_started(self.queue, config=self.config)

    # ------------------------------------------------------------------ one step
    def step(self) -> Step:
        try:
            if not self.loaded:
                self.load()
            return self._step()
        except LeaseLost:
            logger.warning("billing queue lost its lease; letting go without writing", extra=self._log_context())
            return self._let_go("lease_lost")
        except RedisError as exc:
            # The pace cannot be proved without Redis: send nothing, keep the lease, look again soon.
            logger.warning("billing queue waits for Redis", extra={**self._log_context(), "error": type(exc).__name__})
            metrics.observe_dispatch_wait("redis_unavailable")
            return Step(self.ctx.monotonic() + DEPENDENCY_RETRY_SECONDS, "redis_unavailable")
        except DatabaseError as exc:
            logger.warning(
                "billing queue waits for the database", extra={**self._log_context(), "error": type(exc).__name__}
            )
            metrics.observe_dispatch_wait("database_unavailable")
            return Step(self.ctx.monotonic() + DEPENDENCY_RETRY_SECONDS, "database_unavailable")

    def _step(self) -> Step:
        now = self.ctx.now()
        if self.ctx.stop_event.is_set():
            return self._hand_back("shutdown")
        leaves_at = now + timedelta(seconds=SEND_MARGIN)  # the hours are judged for when the message leaves
        if self.schedule is not None and not self.schedule.is_open(leaves_at):
            return self._pause_for_hours(self.schedule, leaves_at)
        unusable = self._unusable_reason()
        if unusable is not None:
            return unusable
        health = self.ctx.health.check(self.number, max_age=float(self.config.health_cache_seconds), client=self.client)
        if not health.healthy:
            return self._instance_down(health.reason)
        if self.ctx.monotonic() >= self._reconcile_at:
            return self._reconcile()
        contact = self._next_contact()
        if contact is None:
            return self._finish_or_wait()
        slot = self._acquire_slot()
        slot_read_at = self.ctx.monotonic()  # the next slot is counted from here, not from after the send
        if not slot.granted:
            return self._wait_for_slot(slot, slot_read_at)
        quota = self.quota.take(self.ctx.now())
        if not quota.granted:
            return self._pause_for_daily_cap(quota)
        self.batch.popleft()
        ended = self._send(contact, quota)
        if ended is not None:
            return ended
        # From when the slot was read: a queue that waited for the same number wakes at the same
        # instant as this one, and priority, not the length of this send, decides who goes next.
        return Step(slot_read_at + max(slot.seconds - ASK_EARLY, 0.0), SENT)

    @property
    def number(self) -> WhatsAppInstance:
        """The queue's WhatsApp number. A queue without one stops at its first step
        (`_unusable_reason`), before anything that sends or checks health asks for it."""
        if self.instance is None:
            raise RuntimeError(f"queue {self.queue_id} has no WhatsApp instance")
        return self.instance

    # ------------------------------------------------------------------ the checks
    def _pause_for_hours(self, schedule: WeeklySchedule, closed_at: datetime) -> Step:
        resume_at = schedule.next_open_after(closed_at)
        queue_lease.release(
            self.lease,
            QueueStatus.PAUSED_BUSINESS_HOURS,
            pause_reason="outside business hours",
            next_resume_at=resume_at,
            then=lambda: callbacks.on_queue_paused(self.queue, "business_hours"),
        )
        logger.info(
            "billing queue paused outside business hours",
            extra={**self._log_context(), "next_resume_at": resume_at.isoformat() if resume_at else None},
        )
        return self._ended(QueueStatus.PAUSED_BUSINESS_HOURS)

    def _unusable_reason(self) -> Step | None:
        """An instance removed or switched off, or a tenant switched off, stops the queue with
        a reason a person can read and act on (a reactivated instance is resumed by recovery; a
        reactivated tenant's queues by a resume from the API). Re-read with the health, every
        health_cache_seconds, not before every message."""
        if self.instance is None:
            return self._stop_paused("no WhatsApp instance: assign one and resume")
        if self.ctx.monotonic() - self._switches_read_at >= float(self.config.health_cache_seconds):
            row = (
                WhatsAppInstance.objects.filter(pk=self.instance.pk)
                .values_list("is_active", "tenant__is_active", "protected_reason", "warmup_skipped_at")
                .first()
            )
            if row is not None and (row[3] is not None) != self.quota.warm_up.skipped:
                self.instance.warmup_skipped_at = row[3]  # a person skipped the warm-up meanwhile
                self.quota = self._number_quota()
            self._switches = row[:3] if row else (False, self.tenant.is_active, "")
            self._switches_read_at = self.ctx.monotonic()
        instance_active, tenant_active, protected = self._switches
        if not tenant_active:
            return self._stop_paused("tenant_inactive")
        if not instance_active:
            return self._instance_down("instance_inactive")
        if protected:
            return self._instance_down(f"number_protected: {protected}")
        return None

    def _stop_paused(self, reason: str) -> Step:
        queue_lease.release(
            self.lease,
            QueueStatus.PAUSED,
            pause_reason=reason,
            then=lambda: callbacks.on_queue_paused(self.queue, "unusable"),
        )
        logger.warning("billing queue paused: cannot send", extra={**self._log_context(), "reason": reason})
        return self._ended(QueueStatus.PAUSED)

    def _instance_down(self, reason: str) -> Step:
        InstanceRecoveryService.handle_instance_down(
            self.lease, reason, then=lambda: callbacks.on_queue_paused(self.queue, "instance_down")
        )
        logger.warning("billing queue paused: instance down", extra={**self._log_context(), "reason": reason[:200]})
        return self._ended(QueueStatus.INSTANCE_DOWN)

    def _hand_back(self, reason: str) -> Step:
        """Back to pending and to the broker: another consumer (or this one, later) takes it."""
        if queue_lease.hand_back(self.lease) and self.ctx.republish:
            self.ctx.republish(self.queue)
        logger.info("billing queue released", extra={**self._log_context(), "reason": reason})
        return self._ended("released", reason=reason)

    # ------------------------------------------------------------------ contacts
    def _next_contact(self) -> BillingContact | None:
        if not self.batch:
            self.batch.extend(queue_lease.claim_contacts(self.lease, self.config.batch_size))
        return self.batch[0] if self.batch else None

    def _reconcile(self) -> Step:
        """Settle this queue's `unconfirmed` contacts that are due (services/reconciliation.py),
        in the queue's own lane: a provider look-up is a provider call like a send."""
        summary = reconciliation.reconcile_due(queue_id=self.queue_id, client=self.client, limit=RECONCILE_PER_STEP)
        _, unconfirmed, earliest = queue_lease.unsent_summary(self.queue_id)
        self._reconcile_at = float("inf")
        if unconfirmed and earliest is not None:
            self._reconcile_at = self.ctx.monotonic() + max((earliest - self.ctx.now()).total_seconds(), 0.0)
        if summary.settled:
            self.sent += summary.sent
            self._progress(force=True)
        return Step(self.ctx.monotonic(), "reconciled")

    def _finish_or_wait(self) -> Step:
        remaining, unconfirmed, earliest_retry = queue_lease.unsent_summary(self.lease.queue_id)
        if remaining == 0:
            if not queue_lease.release(
                self.lease,
                QueueStatus.COMPLETED,
                then=lambda: callbacks.on_queue_completed(self.queue, config=self.config),
            ):
                return self._let_go("lease_lost")
            logger.info("billing queue completed", extra={**self._log_context(), "sent": self.sent})
            return self._ended(QueueStatus.COMPLETED)
        now = self.ctx.now()
        wait = (
            (earliest_retry - now).total_seconds()
            if earliest_retry is not None
            else float(settings.BILLING_CONSUMER_HEARTBEAT_SECONDS)
        )  # a message in flight elsewhere: look again soon
        if unconfirmed:
            self._reconcile_at = self.ctx.monotonic() + max(wait, 0.0)
        if wait <= float(settings.BILLING_KEEP_WAITING_SECONDS):
            return Step(self.ctx.monotonic() + max(wait, 0.0), "waiting_retry")
        # A retry far away: hand the queue back until then (the periodic task republishes it).
        queue_lease.hand_back(self.lease, due_at=earliest_retry)
        return self._ended("waiting_retry")

    # ------------------------------------------------------------------ pace
    def _acquire_slot(self) -> SlotAnswer:
        jitter = float(self.config.jitter_seconds)
        interval = self.interval + (random.uniform(0, jitter) if jitter else 0.0)
        answer = acquire_send_slot(self.pace_key, interval, tolerance_seconds=PACE_TOLERANCE)
        if answer.unknown:
            # Redis lost this number's pace (restart, flush) or never had it: PostgreSQL says
            # when it last sent (through any instance row pointing at the same number), so the
            # first send now cannot come too soon after it.
            last = queue_lease.last_sent_at(list(self._lane()))
            seed = (last.timestamp() + interval) if last is not None else 0.0
            answer = acquire_send_slot(
                self.pace_key, interval, tolerance_seconds=PACE_TOLERANCE, seed_epoch_seconds=seed
            )
        if answer.granted and self._hold_shown_until is not None:
            queue_lease.show_hold(self.lease, reason="", until=None)
            self._hold_shown_until = None
        return answer

    def _wait_for_slot(self, slot: SlotAnswer, read_at: float) -> Step:
        """Counted from when the slot was read, as a send's next instant is: a queue refused and
        the queue that took the slot wake for the next one at the same instant."""
        if slot.held and slot.seconds >= SHOW_HOLD_AFTER:
            until = self.ctx.now() + timedelta(seconds=slot.seconds)
            if self._hold_shown_until is None or abs((until - self._hold_shown_until).total_seconds()) > 1:
                queue_lease.show_hold(self.lease, reason=HOLD_REASON, until=until)
                self._hold_shown_until = until
        metrics.observe_throttle_wait(slot.seconds, self.template_type)
        wake = slot.seconds if slot.held else max(slot.seconds - ASK_EARLY, 0.0)
        return Step(read_at + wake, "provider_hold" if slot.held else "pace")

    # ------------------------------------------------------------------ the number's daily quota
    def _lane(self) -> tuple[int, ...]:
        """Every instance row pointing at this queue's number (its pace and cap are shared);
        read when first needed: only the seeding of a pace or a cap Redis lost asks."""
        if self._lane_ids is None:
            self._lane_ids = tuple(
                WhatsAppInstance.objects.filter(
                    base_url=self.number.base_url, instance_name=self.number.instance_name
                ).values_list("pk", flat=True)
            )
        return self._lane_ids

    def _number_quota(self) -> NumberQuota:
        return NumberQuota(
            number_key=self.pace_key,
            tz=self.tenant.tzinfo,
            instance_ids=self._lane(),
            warm_up=self.number.warm_up(self.number_health.schedule, self.tenant.tzinfo),
        )

    def _pause_for_daily_cap(self, quota: QuotaAnswer) -> Step:
        """The number sent its warm-up cap today: paused until the next day starts in the tenant's
        zone (or its first opening after that), resumed by the periodic task like a closing."""
        resume_at = quota.day.ends_at
        if self.schedule is not None:
            resume_at = self.schedule.next_open_after(resume_at) or resume_at
        age = self.quota.warm_up.age_on(quota.day.local_date)
        reason = (
            f"daily_cap: {quota.count}/{quota.cap} messages sent today through this number (warm-up day "
            f"{age}); resumes {resume_at.astimezone(self.tenant.tzinfo):%d/%m/%Y %H:%M}"
        )
        queue_lease.release(
            self.lease,
            QueueStatus.PAUSED_BUSINESS_HOURS,
            pause_reason=reason,
            next_resume_at=resume_at,
            then=lambda: callbacks.on_queue_paused(self.queue, "daily_cap"),
        )
        logger.info(
            "billing queue paused: the number's daily cap",
            extra={
                **self._log_context(),
                "cap": quota.cap,
                "sent_today": quota.count,
                "next_resume_at": resume_at.isoformat(),
            },
        )
        return self._ended(QueueStatus.PAUSED_BUSINESS_HOURS)

    # ------------------------------------------------------------------ one message
    def _send(self, contact: BillingContact, quota: QuotaAnswer) -> Step | None:
        context = {**self._log_context(), "contact_id": contact.pk, "phone": mask_phone(contact.phone)}
        try:
            text = self._render(contact)
        except (TemplateError, ValueError) as exc:
            code = getattr(exc, "code", type(exc).__name__)
            self._fail(contact, ContactErrorCode.RENDER_ERROR, f"render: {code}")
            self.quota.give_back(quota)
            metrics.observe_send(self.tenant.pk, self.template_type, "failed")
            logger.warning("billing contact not rendered", extra={**context, "error": code})
            return None
        sending_at = self.ctx.monotonic()
        if not queue_lease.start_sending(self.lease, contact, text=text):
            self.quota.give_back(quota)
            return self._not_started(contact, context)
        started = self.ctx.monotonic()
        if started - sending_at > START_BOUND:
            # Frozen between the two: the queue may be someone else's by now. Not sent; if the
            # lease still holds, the contact is simply tried again.
            queue_lease.record_retry(
                self.lease, contact, at=self.ctx.now(), code="", error="start delayed", refund_attempt=True
            )
            self.quota.give_back(quota)
            logger.warning("billing send not started: delayed past its bound", extra=context)
            return None
        release_connection()  # a provider that hangs holds this thread, never a connection
        try:
            result = self.client.send(contact.phone, text, max_retries=0, normalized=True)
        except ProviderError as error:
            if error.nothing_sent:
                self.quota.give_back(quota)
            return self._record_error(contact, error, text, context, seconds=self.ctx.monotonic() - started)
        seconds = self.ctx.monotonic() - started
        self.ctx.health.send_accepted(self.number.pk)
        recorded = queue_lease.record_sent(
            self.lease,
            contact,
            provider_message_id=result.provider_message_id,
            rendered=text,
            chat=OutboundChat(
                tenant_id=self.tenant.pk, instance_id=self.number.pk, phone=contact.phone, contact_name=contact.name
            ),
            then=self._contact_callback(contact, "contact.sent"),
        )
        if recorded:
            self.sent += 1
            self._sent_ids.append(result.provider_message_id)
            self._apply_early_receipts()
        number_protection.record_send_outcome(instance=self.number, not_on_whatsapp=False, settings=self.number_health)
        metrics.observe_send(self.tenant.pk, self.template_type, "sent", seconds, instance_id=self.number.pk)
        logger.info("billing message sent", extra={**context, "duration_ms": round(1000 * seconds)})
        self._progress()
        return None

    def _not_started(self, contact: BillingContact, context: dict[str, Any]) -> Step | None:
        """start_sending refused: the queue is no longer ours and running (a pause or cancel
        from the API, a lost lease) → let go; the phone opted out → skip; the contact was
        postponed or closed under us (a hold, a paid charge) → leave it to whoever changed it."""
        status = queue_lease.current_status(self.lease)
        if status != QueueStatus.RUNNING:
            return self._let_go(status or "lease_lost", forget=[contact.pk])
        if is_suppressed(tenant=self.tenant, phone=contact.phone):
            # The customer asked to stop while the queue ran (LGPD): never send.
            if queue_lease.record_skipped(self.lease, contact, code=ContactErrorCode.OPTED_OUT, reason="opted out"):
                metrics.observe_send(self.tenant.pk, self.template_type, "skipped")
            return None
        queue_lease.forget_claims(self.lease, [contact.pk])
        logger.info("billing contact changed under us; not sent", extra=context)
        return None

    def _render(self, contact: BillingContact) -> str:
        variation = self.variations.get(contact.variation_id) if contact.variation_id is not None else None
        if variation is None:
            raise ValueError("contact has no variation")
        today = today_in(self.tenant.timezone)
        variables = BillingDateCalculator(today).enrich(
            contact.variables, name=contact.name or None, due_date=contact.due_date, amount=contact.amount
        )
        variables.setdefault("company_name", self.tenant.name)
        variables.update(creditor_variables(self.tenant))  # who is collecting (CDC art. 42-A): the tenant's, always
        return BillingTemplateEngine.compile(variation.content).render(variables)

    # ------------------------------------------------------------------ what the provider said
    def _record_error(
        self, contact: BillingContact, error: ProviderError, text: str, context: dict[str, Any], *, seconds: float
    ) -> Step | None:
        """One row per answer; every answer from the provider counts toward max_attempts, so a
        contact ends within max_attempts whatever the provider does. Only a call that provably
        sent nothing (circuit open, connection refused) is refunded."""
        now = self.ctx.now()
        refund = error.nothing_sent
        attempts_used = contact.attempts - (1 if refund else 0)
        exhausted = attempts_used >= self.config.max_attempts
        reason = f"{error.code}: {str(error)[:200]}"
        logger.info("billing send failed", extra={**context, "error_code": error.code, "refunded": refund})
        if isinstance(error, InvalidNumberError):
            self._fail(contact, ContactErrorCode.INVALID_NUMBER, reason, text)
            outcome = "failed"
        elif isinstance(error, AmbiguousSendError):
            # It may have gone out (upstream #1247): never re-send blindly; reconciliation decides.
            reconcile_at = now + timedelta(seconds=ECHO_GRACE_SECONDS)
            queue_lease.record_unconfirmed(
                self.lease, contact, code=ContactErrorCode.OUTCOME_UNKNOWN, error=reason, reconcile_at=reconcile_at
            )
            self._reconcile_at = min(self._reconcile_at, self.ctx.monotonic() + ECHO_GRACE_SECONDS)
            outcome = "unconfirmed"
        elif exhausted:
            code = (
                ContactErrorCode.PROVIDER_AUTH
                if isinstance(error, ProviderAuthError)
                else ContactErrorCode.PROVIDER_ERROR
                if isinstance(error, InstanceUnavailableError)
                else ContactErrorCode.MAX_ATTEMPTS
            )
            self._fail(contact, code, reason, text)
            if code == ContactErrorCode.PROVIDER_ERROR:
                # The provider kept failing while it said the number was connected: a person
                # has to look (a broken build, a misrouted proxy); the admin shows the flag.
                flag_for_attention(
                    instance_id=self.number.pk,
                    reason=f"sends fail ({error.code}) while the provider reports the number connected",
                )
            outcome = "failed"
        else:
            outcome = "retry"
        metrics.observe_send(self.tenant.pk, self.template_type, outcome, seconds, instance_id=self.number.pk)
        if isinstance(error, InvalidNumberError):
            protected = number_protection.record_send_outcome(
                instance=self.number, not_on_whatsapp=True, settings=self.number_health
            )
            return self._instance_down(f"number_protected: {self.number.protected_reason}") if protected else None
        if isinstance(error, ProviderRateLimitedError):
            hold = min(float(error.retry_after or 30), float(settings.BILLING_RETRY_AFTER_CAP_SECONDS))
            # This number only: every queue sending through it waits, no other number does.
            hold_back(self.pace_key, hold)
            if outcome == "retry":
                queue_lease.record_retry(
                    self.lease,
                    contact,
                    at=now + timedelta(seconds=hold),
                    code=ContactErrorCode.RATE_LIMITED,
                    error=reason,
                    refund_attempt=refund,
                )
            return None
        if isinstance(error, (InstanceUnavailableError, ProviderAuthError)):
            if outcome == "retry":
                queue_lease.record_retry(
                    self.lease,
                    contact,
                    at=now + self._backoff(contact),
                    error=reason,
                    code=ContactErrorCode.PROVIDER_AUTH if isinstance(error, ProviderAuthError) else "",
                    refund_attempt=refund,
                )
            # Is the number really down, or does it fail while the provider says it is open?
            self.ctx.health.forget(self.number.pk)
            health = self.ctx.health.check(self.number, max_age=0.0, client=self.client)
            if not health.healthy or isinstance(error, ProviderAuthError):
                return self._instance_down(health.reason if not health.healthy else reason)
            metrics.observe_failing_while_open(self.number.pk)
            return None
        if outcome == "retry":  # a transient failure: back off, counted
            queue_lease.record_retry(
                self.lease, contact, at=now + self._backoff(contact), code="", error=reason, refund_attempt=refund
            )
        return None

    def _backoff(self, contact: BillingContact) -> timedelta:
        return timedelta(seconds=float(self.config.retry_backoff_seconds) * (2 ** max(contact.attempts - 1, 0)))

    def _fail(self, contact: BillingContact, code: str, reason: str, text: str = "") -> None:
        if queue_lease.record_failed(
            self.lease,
            contact,
            code=code,
            error=reason,
            rendered=text,
            then=self._contact_callback(contact, "contact.failed"),
        ):
            self.failed += 1

    def _contact_callback(self, contact: BillingContact, event: str) -> Callable[[], object] | None:
        """The callback reporting an outcome, written in the outcome's own transaction (the
        database is the outbox: a crash can lose neither without the other)."""
        if not self.config.callback_contact_events:
            return None
        return lambda: callbacks.on_contact_outcome(contact, event, config=self.config)

    # ------------------------------------------------------------------ endings
    def _ended(self, outcome: str, *, reason: str = "") -> Step:
        self._apply_early_receipts(now=True, quietly=True)
        self._progress(force=True)  # every ending is a status change watchers want at once
        metrics.observe_worker_run(outcome)
        logger.info(
            "billing queue left the consumer",
            extra={
                **self._log_context(),
                "outcome": outcome,
                "reason": reason,
                "sent": self.sent,
                "failed": self.failed,
            },
        )
        return Step(None, outcome)

    def _let_go(self, reason: str, *, forget: list[int] | None = None) -> Step:
        """The queue is no longer ours to run (paused, cancelled, released elsewhere): give back
        the contacts we claimed, unsent, and leave."""
        queue_lease.forget_claims(self.lease, [*(forget or []), *(c.pk for c in self.batch)])
        self.batch.clear()
        return self._ended("stopped", reason=reason)

    def _apply_early_receipts(self, *, now: bool = False, quietly: bool = False) -> None:
        """`quietly`: on the way out, where an error must not replace the ending."""
        if not self._sent_ids:
            return
        due = (
            now
            or len(self._sent_ids) >= EARLY_RECEIPTS_BATCH
            or self.ctx.monotonic() - self._receipts_checked >= EARLY_RECEIPTS_EVERY_SECONDS
        )
        if not due:
            return
        ids, self._sent_ids = self._sent_ids, []
        self._receipts_checked = self.ctx.monotonic()
        try:
            apply_early_receipts(tenant_id=self.tenant.pk, provider_message_ids=ids)
        except Exception as exc:
            if not (quietly or isinstance(exc, RedisError)):
                raise
            # The receipts not applied are back in Redis (apply_early_receipts); look them up
            # again at the next check. The sending must not stop for them.
            self._sent_ids = (ids + self._sent_ids)[-EARLY_RECEIPTS_KEPT:]
            logger.warning(
                "billing early receipts not looked up",
                extra={**self._log_context(), "messages": len(ids), "error": type(exc).__name__},
            )

    def _progress(self, *, force: bool = False) -> None:
        """Push counters to WebSocket watchers: on status changes, else at most once a second."""
        now = self.ctx.monotonic()
        if force or now - self._last_progress >= PROGRESS_EVERY_SECONDS:
            self._last_progress = now
            publish_queue_progress(self.queue_id, force=True)

    def _log_context(self) -> dict[str, Any]:
        tenant = getattr(self, "tenant", None)
        return {
            "queue_id": str(self.queue_id),
            "holder": self.lease.worker_id,
            "tenant_id": str(tenant.pk) if tenant is not None else None,
        }
