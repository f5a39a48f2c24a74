"""What a control message does — exactly once, whichever consumer process receives it.

The periodic process only looks (cheap queries, no HTTP) and publishes one control message per
thing to act on; the consumers act. So a provider that hangs on a health check, or a slow
database step, delays that one check and never the periodic schedule of everything else, and
the work spreads over every consumer process. Each action is a compare-and-swap on the row's
status, so a duplicate message (a republish, a redelivery) changes nothing:

    billing.resume          {queue_id}               paused_business_hours & due → pending, published
    billing.check_recovery  {instance_id}            one health check; open → its instance_down queues
                                                     → pending, published
    billing.check_stale     {queue_id, holder?}      the holder is dead (holder given) or stopped tending
                                                     the queue (its heartbeat is older than the tenant's
                                                     stale threshold) → released, published; a queue no
                                                     runner holds → its due `unconfirmed` contacts
                                                     reconciled (services/reconciliation.py)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from apps.billing.broker.messages import BillingMessage
from apps.billing.broker.publisher import publish_queue
from apps.billing.broker.topology import CHECK_RECOVERY_QUEUE, CHECK_STALE_QUEUE, RESUME_QUEUE
from apps.billing.constants import QueueStatus
from apps.billing.models import BillingConfig, BillingQueue
from apps.billing.services import callbacks, reconciliation
from apps.billing.services.instance_checker import InstanceRecoveryService
from apps.billing.services.queue_lease import release_stale, return_to_pending
from apps.connections.models import WhatsAppInstance

logger = logging.getLogger(__name__)


def resume(message: BillingMessage) -> int:
    """A queue whose business hours opened goes back to pending and to the broker."""
    if message.queue_id is None:  # nothing named: nothing to do
        return 0
    now = timezone.now()
    with transaction.atomic():
        moved = return_to_pending(
            BillingQueue.objects.filter(pk=message.queue_id, next_resume_at__lte=now),
            from_statuses=[QueueStatus.PAUSED_BUSINESS_HOURS],
        )
        queue = BillingQueue.objects.select_related("tenant").filter(pk=message.queue_id).first() if moved else None
        if queue is not None:
            callbacks.on_queue_resumed(queue)
    if queue is None:
        return 0
    publish_queue(queue)
    return 1


def check_recovery(message: BillingMessage) -> int:
    """One health check of the instance; if it answers `open`, its queues resume."""
    if message.instance_id is None:
        return 0
    instance = WhatsAppInstance.objects.select_related("tenant").filter(pk=message.instance_id).first()
    if instance is None:
        return 0
    resumed = InstanceRecoveryService.recover(instance)
    for queue in resumed:
        publish_queue(queue)
    return len(resumed)


def check_stale(message: BillingMessage) -> int:
    """Release a queue its holder no longer tends: fenced (a frozen holder that wakes writes
    nothing), `sending` contacts become `unconfirmed` until reconciliation says what happened.
    A queue nobody runs (paused, cancelled, waiting) gets its due `unconfirmed` contacts settled
    here; one whose contacts go back to sending is published."""
    if message.queue_id is None:
        return 0
    queue = BillingQueue.objects.select_related("tenant").filter(pk=message.queue_id).first()
    if queue is None:
        return 0
    if queue.status == QueueStatus.RUNNING:
        if message.holder:
            released = release_stale(queue.pk, timezone.now(), holder=message.holder)
        else:
            config = BillingConfig.for_tenant(queue.tenant)
            released = release_stale(
                queue.pk, timezone.now() - timedelta(seconds=float(config.stale_threshold_seconds))
            )
        if released:
            publish_queue(queue)
        return int(released)
    summary = reconciliation.reconcile_due(queue_id=queue.pk)
    if summary.retried and queue.status == QueueStatus.PENDING:
        publish_queue(queue)
    return summary.settled


HANDLERS: dict[str, Callable[[BillingMessage], int]] = {
    RESUME_QUEUE: resume,
    CHECK_RECOVERY_QUEUE: check_recovery,
    CHECK_STALE_QUEUE: check_stale,
}
