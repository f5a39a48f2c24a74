"""What `run_billing_periodic_tasks` does each cycle (it replaces Celery Beat). Every step is
idempotent and finds its work in the database, so a lost broker message, a crashed worker or a
second replica changes nothing but timing. Each step returns how much it did."""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from apps.billing.constants import QueueStatus
from apps.billing.models import BillingQueue
from apps.billing.rabbitmq.billing_publisher import publish_queue
from apps.billing.services import callbacks
from apps.billing.services.billing_send_service import close_idle_billing_conversations
from apps.billing.services.instance_checker import InstanceRecoveryService
from apps.billing.services.queue_lease import release_stale
from apps.connections.models import WhatsAppInstance

logger = logging.getLogger(__name__)


def resume_due_queues() -> int:
    """paused_business_hours whose next opening has come → pending, published."""
    now = timezone.now()
    resumed = 0
    for queue in BillingQueue.objects.filter(status=QueueStatus.PAUSED_BUSINESS_HOURS, next_resume_at__lte=now):
        moved = BillingQueue.objects.filter(pk=queue.pk, status=QueueStatus.PAUSED_BUSINESS_HOURS).update(
            status=QueueStatus.PENDING, pause_reason="", next_resume_at=None, last_published_at=None, updated_at=now
        )
        if moved:
            resumed += 1
            callbacks.on_queue_resumed(queue)
            publish_queue(queue)
    return resumed


def recover_instances() -> int:
    """For each instance with instance_down queues: one health check; open → resume them."""
    resumed = 0
    instance_ids = BillingQueue.objects.filter(status=QueueStatus.INSTANCE_DOWN).values_list(
        "instance_id", flat=True).distinct()
    for instance in WhatsAppInstance.objects.filter(pk__in=list(instance_ids)):
        for queue in InstanceRecoveryService.recover(instance):
            callbacks.on_queue_resumed(queue)
            publish_queue(queue)
            resumed += 1
    return resumed


def release_stale_queues() -> int:
    """Running queues whose worker stopped heart-beating for longer than the tenant's
    stale threshold are handed back (see queue_lease.release_stale) and published."""
    released = 0
    candidates = BillingQueue.objects.filter(status=QueueStatus.RUNNING).select_related("tenant__billing_config")
    now = timezone.now()
    for queue in candidates.only("id", "last_heartbeat", "template_type", "tenant_id", "tenant__billing_config"):
        threshold = timedelta(seconds=_stale_threshold(queue))
        if queue.last_heartbeat is not None and now - queue.last_heartbeat < threshold:
            continue
        if release_stale(queue.pk, now - threshold):
            publish_queue(queue)
            released += 1
    return released


def _stale_threshold(queue: BillingQueue) -> float:
    config = getattr(queue.tenant, "billing_config", None)
    return float(config.stale_threshold_seconds if config else 600)


def publish_waiting_queues() -> int:
    """pending queues that are due and that the broker may never have got: never published,
    or published longer ago than BILLING_REPUBLISH_AFTER_SECONDS (a duplicate wake-up is
    harmless: the claim decides). Covers scheduled queues whose time came and due retries."""
    now = timezone.now()
    republish_before = now - timedelta(seconds=float(settings.BILLING_REPUBLISH_AFTER_SECONDS))
    due = BillingQueue.objects.filter(
        Q(scheduled_for__isnull=True) | Q(scheduled_for__lte=now),
        Q(next_resume_at__isnull=True) | Q(next_resume_at__lte=now),
        Q(last_published_at__isnull=True) | Q(last_published_at__lt=republish_before)
        # a retry wait or a schedule that ended after the last publish needs a new wake-up
        | Q(next_resume_at__gt=F("last_published_at")) | Q(scheduled_for__gt=F("last_published_at")),
        status=QueueStatus.PENDING,
    ).order_by("-priority", "created_at")[:1000]
    published = 0
    for queue in due:
        if publish_queue(queue):
            published += 1
    return published


STEPS = (
    ("resume_due_queues", resume_due_queues),
    ("recover_instances", recover_instances),
    ("release_stale_queues", release_stale_queues),
    ("publish_waiting_queues", publish_waiting_queues),
    ("close_idle_conversations", close_idle_billing_conversations),
)


def run_cycle(*, include_stale: bool = True) -> dict[str, int]:
    """One cycle; a failing step is logged and the others still run."""
    results: dict[str, int] = {}
    for name, step in STEPS:
        if name == "release_stale_queues" and not include_stale:
            continue
        try:
            results[name] = step()
        except Exception:  # noqa: BLE001 - one broken step must not stop the others
            logger.exception("billing periodic step failed", extra={"step": name})
            results[name] = -1
    return results
