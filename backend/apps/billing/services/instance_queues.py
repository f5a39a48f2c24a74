"""Every running queue of one instance at once: what a closed connection or a protected number
does to them (provider_events.py, number_protection.py)."""

from __future__ import annotations

import logging

from django.db import transaction

from apps.billing.constants import QueueStatus
from apps.billing.models import BillingQueue
from apps.billing.services import callbacks, queue_lease
from apps.connections.models import WhatsAppInstance

logger = logging.getLogger(__name__)


def pause_running_queues(*, instance: WhatsAppInstance, reason: str) -> int:
    """Running queues of an instance that cannot send (a closed connection, a protected number)
    → `instance_down` with `reason`, through the lease helper so the worker's claims are released
    exactly as when the worker itself sees the instance down; the worker notices before its next
    message (it re-reads the status). Pending queues stay pending: the state machine has no
    pending → instance_down, and a worker that claims one checks the instance before its first
    send. Each with its `queue.paused` callback; returns how many."""
    paused = 0
    rows = BillingQueue.objects.filter(instance=instance, status=QueueStatus.RUNNING, lease_token__isnull=False)
    for queue in rows.only("pk", "tenant", "lease_token", "processing_by", "status"):
        if queue.lease_token is None:  # (the filter asked for one)
            continue
        lease = queue_lease.Lease(queue.pk, queue.lease_token, queue.processing_by)
        with transaction.atomic():
            if queue_lease.release(lease, QueueStatus.INSTANCE_DOWN, pause_reason=reason[:200]):
                callbacks.on_queue_paused(queue, "instance_down")
                paused += 1
    if paused:
        logger.warning(
            "billing queues paused: instance cannot send",
            extra={
                "instance_id": instance.pk,
                "tenant_id": str(instance.tenant_id),
                "queues": paused,
                "reason": reason[:200],
            },
        )
    return paused
