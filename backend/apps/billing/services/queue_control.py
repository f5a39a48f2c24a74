"""Pause, resume and cancel a queue on a client's request.

Each action is one short transaction holding the queue row lock, so it cannot interleave with
another action; the worker re-reads the status before every send, so a pause or cancel takes
effect before the next message. Cancel marks every unsent contact cancelled in the same
transaction (contacts already handed to the provider keep their outcome).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import F

from apps.audit.models import AuditAction
from apps.audit.services import Actor, record_event
from apps.billing.broker.publisher import publish_queue_on_commit
from apps.billing.constants import (
    UNSENT_CONTACT_STATUSES,
    ContactErrorCode,
    ContactStatus,
    QueueStatus,
)
from apps.billing.models import BillingContact, BillingQueue
from apps.billing.models.status_machine import transition_rows
from apps.billing.services import callbacks
from apps.common.exceptions import ApplicationError

logger = logging.getLogger(__name__)

ACTION_TARGET = {"pause": QueueStatus.PAUSED, "resume": QueueStatus.PENDING, "cancel": QueueStatus.CANCELLED}
# Resume only undoes a manual pause: business-hours and instance-down pauses end by themselves.
RESUMABLE = {QueueStatus.PAUSED}
AUDIT_ACTION = {
    "pause": AuditAction.QUEUE_PAUSED,
    "resume": AuditAction.QUEUE_RESUMED,
    "cancel": AuditAction.QUEUE_CANCELLED,
}


def queue_control(*, queue: BillingQueue, action: str, actor: Actor) -> BillingQueue:
    """`actor` (who asked, from where) is written to the audit trail with the change."""
    target = ACTION_TARGET[action]
    with transaction.atomic():
        locked = BillingQueue.objects.select_for_update().get(pk=queue.pk, tenant=queue.tenant)
        allowed = QueueStatus.can_transition(locked.status, target) and (
            action != "resume" or locked.status in RESUMABLE
        )
        if not allowed:
            raise ApplicationError(
                "invalid_transition",
                f"Cannot {action} a queue that is {locked.status}.",
                status=409,
                details={"current_status": locked.status, "action": action},
            )
        if action == "pause":
            locked.transition_to(QueueStatus.PAUSED, pause_reason="manual")
            callbacks.on_queue_paused(locked, "manual")
        elif action == "resume":
            locked.transition_to(QueueStatus.PENDING)
            publish_queue_on_commit(locked)
            callbacks.on_queue_resumed(locked)
        else:
            # Only what was never handed to the provider: an `unconfirmed` contact may have gone
            # out, and reconciliation settles it (as cancelled if the provider never got it).
            cancelled = transition_rows(
                BillingContact.objects.filter(queue=locked),
                ContactStatus.CANCELLED,
                from_statuses=UNSENT_CONTACT_STATUSES,
                error_code=ContactErrorCode.CANCELLED,
                claim_token=None,
                claimed_at=None,
            )
            locked.transition_to(QueueStatus.CANCELLED)
            BillingQueue.objects.filter(pk=locked.pk).update(cancelled_count=F("cancelled_count") + cancelled)
            locked.refresh_from_db()
            callbacks.on_queue_cancelled(locked)
        record_event(
            actor=actor,
            tenant_id=locked.tenant_id,
            action=AUDIT_ACTION[action],
            obj=locked,
            details={"status": locked.status},
        )
    logger.info(
        "billing queue %s",
        action,
        extra={"queue_id": str(locked.pk), "tenant_id": str(locked.tenant_id), "status": locked.status},
    )
    return locked
