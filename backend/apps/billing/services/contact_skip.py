"""Skip chosen contacts that have not been handed to the provider yet — wherever their queue is.

Apps above billing use it when a message must not go out any more (a debt was paid or
cancelled: "paid means silent"). It reaches contacts a running worker already claimed: the
worker's `start_sending` moves a contact to `sending` only from pending/pending_retry, in one
fenced UPDATE, so a contact skipped here is never sent; a contact already `sending` is in
flight and keeps its real outcome. A queue whose every remaining contact was skipped still
ends `completed`: its worker (now, or when the queue next runs) finds nothing left to claim.

Lock order is the worker's (queue rows first, then contacts), so this cannot deadlock with a
claim or an outcome write.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Iterable

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Now

from apps.billing.constants import ContactStatus
from apps.billing.models import BillingContact, BillingQueue
from apps.billing.models.status_machine import transition_rows
from apps.billing.progress import publish_queue_progress
from apps.tenancy.models import Tenant

logger = logging.getLogger(__name__)

_SKIPPABLE = ContactStatus.sources_for(ContactStatus.SKIPPED)


def skip_unsent_contacts(*, tenant: Tenant, contact_ids: Iterable[int], code: str, reason: str) -> int:
    """Mark every contact of `contact_ids` (of `tenant`) that is still unsent as `skipped` with
    `code` and `reason`; return how many were skipped. Contacts already sent, failed or in
    flight are left alone. Runs in the caller's transaction when there is one."""
    ids = sorted(set(contact_ids))
    if not ids:
        return 0
    with transaction.atomic():
        queue_ids = sorted(
            set(
                BillingContact.objects.filter(tenant=tenant, pk__in=ids, status__in=_SKIPPABLE).values_list(
                    "queue_id", flat=True
                )
            )
        )
        if not queue_ids:
            return 0
        # Queue rows first (the worker's order), in a fixed order between concurrent callers.
        list(
            BillingQueue.objects.select_for_update(no_key=True)
            .filter(pk__in=queue_ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        skipped = list(
            BillingContact.objects.select_for_update()
            .filter(tenant=tenant, pk__in=ids, status__in=_SKIPPABLE)
            .order_by("pk")
            .values_list("pk", "queue_id")
        )
        if not skipped:
            return 0
        transition_rows(
            BillingContact.objects.filter(pk__in=[pk for pk, _ in skipped]),
            ContactStatus.SKIPPED,
            error_code=code,
            last_error=reason[:500],
            claim_token=None,
            claimed_at=None,
        )
        per_queue = Counter(queue_id for _, queue_id in skipped)
        for queue_id, count in per_queue.items():
            BillingQueue.objects.filter(pk=queue_id).update(skipped_count=F("skipped_count") + count, updated_at=Now())
        for queue_id in per_queue:
            transaction.on_commit(functools.partial(publish_queue_progress, queue_id, force=True))
    logger.info(
        "billing contacts skipped",
        extra={"tenant_id": str(tenant.pk), "skipped": len(skipped), "queues": len(per_queue), "error_code": code},
    )
    return len(skipped)
