"""What `run_billing_periodic_tasks` does each cycle (it replaces Celery Beat).

The periodic process only looks: cheap queries, never an HTTP call. For each thing to act on
it publishes one control message (dispatch/control.py) that any consumer acts on exactly
once, or a send wake-up for a queue the broker may never have got. So a slow provider or a
slow client endpoint can never stall the schedule of resumes, recoveries and releases for
everyone (callback delivery runs in its own process). Every step is idempotent and finds its
work in the database: a lost message, a crashed consumer or a second replica changes nothing
but timing. Each step returns how much it published or did.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from apps.billing.broker.messages import BillingMessage
from apps.billing.broker.publisher import publish_control, publish_queue
from apps.billing.broker.topology import CHECK_RECOVERY_QUEUE, CHECK_STALE_QUEUE, RESUME_QUEUE
from apps.billing.constants import QueueStatus
from apps.billing.dispatch import consumer_registry
from apps.billing.models import BillingQueue
from apps.billing.services import reconciliation
from apps.billing.services.chat_history import close_idle_billing_conversations

logger = logging.getLogger(__name__)


class _RecentlyPublished:
    """Control messages published in the last BILLING_CONTROL_REPUBLISH_SECONDS, per object:
    a consumer that has not acted yet is not sent the same check every cycle."""

    def __init__(self) -> None:
        self._at: dict[Hashable, float] = {}

    def due(self, key: Hashable) -> bool:
        now = time.monotonic()
        window = float(settings.BILLING_CONTROL_REPUBLISH_SECONDS)
        if len(self._at) > 10_000:
            self._at = {k: t for k, t in self._at.items() if now - t < window}
        return now - self._at.get(key, float("-inf")) >= window

    def mark(self, key: Hashable) -> None:
        self._at[key] = time.monotonic()

    def clear(self) -> None:
        self._at.clear()


recently_published = _RecentlyPublished()


def _publish_control(key: Hashable, message: BillingMessage, routing_key: str) -> int:
    if not recently_published.due(key):
        return 0
    if publish_control(message, routing_key):
        recently_published.mark(key)
        return 1
    return 0


def publish_due_resumes() -> int:
    """paused_business_hours queues whose next opening has come: one billing.resume each."""
    now = timezone.now()
    due = BillingQueue.objects.filter(status=QueueStatus.PAUSED_BUSINESS_HOURS, next_resume_at__lte=now).values_list(
        "pk", "tenant_id"
    )[:1000]
    return sum(
        _publish_control(
            ("resume", pk), BillingMessage(type="resume", queue_id=str(pk), tenant_id=str(tenant)), RESUME_QUEUE
        )
        for pk, tenant in due
    )


def publish_recovery_checks() -> int:
    """Active instances with instance_down queues: one billing.check_recovery each."""
    instances = (
        BillingQueue.objects.filter(
            status=QueueStatus.INSTANCE_DOWN, instance__is_active=True, instance__tenant__is_active=True
        )
        .values_list("instance_id", "tenant_id")
        .distinct()
    )
    return sum(
        _publish_control(
            ("recovery", instance_id),
            BillingMessage(type="check_recovery", instance_id=instance_id, tenant_id=str(tenant)),
            CHECK_RECOVERY_QUEUE,
        )
        for instance_id, tenant in instances
    )


def publish_stale_checks() -> int:
    """Running queues whose consumer process is dead (silent past the bound: seconds, see
    dispatch/consumer_registry.py), and running queues a live holder stopped tending (their
    heartbeat older than the tenant's stale threshold): one billing.check_stale each."""
    published = 0
    for queue_id, holder in consumer_registry.orphaned_queues():
        published += _publish_control(
            ("stale", queue_id), BillingMessage(type="check_stale", queue_id=queue_id, holder=holder), CHECK_STALE_QUEUE
        )
    now = timezone.now()
    running = BillingQueue.objects.filter(status=QueueStatus.RUNNING).values_list(
        "pk", "last_heartbeat", "tenant__billing_config__stale_threshold_seconds"
    )
    for pk, beat, threshold in running:
        if beat is None or now - beat >= timedelta(seconds=float(threshold or 600)):
            published += _publish_control(
                ("stale", str(pk)), BillingMessage(type="check_stale", queue_id=str(pk)), CHECK_STALE_QUEUE
            )
    return published


def sweep_stranded_sends() -> int:
    """`sending` contacts whose call nobody will finish → `unconfirmed` (services/reconciliation.py)."""
    return reconciliation.sweep_stranded()


def publish_reconcile_checks() -> int:
    """Queues no runner holds with `unconfirmed` contacts due: one billing.check_stale each."""
    return sum(
        _publish_control(("stale", queue_id), BillingMessage(type="check_stale", queue_id=queue_id), CHECK_STALE_QUEUE)
        for queue_id in reconciliation.queues_to_reconcile()
    )


def forget_dead_consumers() -> int:
    return consumer_registry.forget_dead_consumers()


def publish_waiting_queues() -> int:
    """pending queues that are due and that the broker may never have got: never published,
    or published longer ago than BILLING_REPUBLISH_AFTER_SECONDS (a duplicate wake-up is
    harmless: the claim decides). Covers scheduled queues whose time came and due retries."""
    now = timezone.now()
    republish_before = now - timedelta(seconds=float(settings.BILLING_REPUBLISH_AFTER_SECONDS))
    due = BillingQueue.objects.filter(
        Q(scheduled_for__isnull=True) | Q(scheduled_for__lte=now),
        Q(next_resume_at__isnull=True) | Q(next_resume_at__lte=now),
        Q(last_published_at__isnull=True)
        | Q(last_published_at__lt=republish_before)
        # a retry wait or a schedule that ended after the last publish needs a new wake-up
        | Q(next_resume_at__gt=F("last_published_at"))
        | Q(scheduled_for__gt=F("last_published_at")),
        status=QueueStatus.PENDING,
    ).order_by("-priority", "created_at")[:1000]
    published = 0
    for queue in due:
        if publish_queue(queue):
            published += 1
    return published


STEPS = (
    ("publish_due_resumes", publish_due_resumes),
    ("publish_recovery_checks", publish_recovery_checks),
    ("publish_stale_checks", publish_stale_checks),
    ("sweep_stranded_sends", sweep_stranded_sends),
    ("publish_reconcile_checks", publish_reconcile_checks),
    ("publish_waiting_queues", publish_waiting_queues),
    ("forget_dead_consumers", forget_dead_consumers),
    ("close_idle_conversations", close_idle_billing_conversations),
)


def run_cycle() -> dict[str, int]:
    """One cycle; a failing step is logged and the others still run."""
    results: dict[str, int] = {}
    for name, step in STEPS:
        try:
            results[name] = step()
        except Exception:
            logger.exception("billing periodic step failed", extra={"step": name})
            results[name] = -1
    return results
