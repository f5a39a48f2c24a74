"""Stop or postpone the collection messages of one debtor, from a reply (services/reply_actions.py).

* `hold_debtor` — "já paguei": the debtor's unsent messages wait until `until`. A `pending`
  contact becomes `pending_retry` at `until` (the transition table's `pending → pending_retry`);
  one already `pending_retry` is pushed to `until` if it was due sooner. The worker claims only
  due contacts, and `start_sending` refuses one postponed after its claim, so a hold takes
  effect mid-queue, before the next message. A queue left with only held contacts goes back to
  `pending` until the earliest one is due (the worker's "waiting for retries").
* `stop_debtor` — "número errado": the debtor's unsent messages end `skipped/opted_out`, counted
  in each queue's `skipped_count`, so the API shows it at once. The phone is suppressed in the
  same transaction, and a contact a running worker has already claimed is left to it: its
  `start_sending` refuses a suppressed phone and the worker records the skip (and counts it)
  itself — skipping it here too would count it twice.

`held_phones` answers the same question for messages not queued yet (the charges' cadence
steps): a debtor whose confident "já paguei" is younger than the hold gets no new step either.

A contact already `sending` is in the provider's hands and is left alone. Lock order, as
everywhere (queue_lease.py): the queue rows first, in id order, then the contacts.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Coalesce, Greatest, Now

from apps.billing.constants import UNSENT_CONTACT_STATUSES, ContactErrorCode, ContactStatus
from apps.billing.models import BillingContact, BillingQueue, ReplySettings
from apps.billing.models.status_machine import transition_rows
from apps.billing.progress import publish_queue_progress
from apps.billing.services.debtor_data import pending_collection
from apps.chat.models import Message
from apps.chat.services.reply_intents.rules import CLAIMS_PAID
from apps.contacts.utils import mask_phone
from apps.tenancy.models import Tenant

logger = logging.getLogger(__name__)


def _lock_queues(contacts: QuerySet[BillingContact], also: Iterable[Any] = ()) -> list[Any]:
    queue_ids = sorted(set(contacts.values_list("queue_id", flat=True)) | set(also))
    if queue_ids:
        list(
            BillingQueue.objects.select_for_update(no_key=True)
            .filter(pk__in=queue_ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    return queue_ids


def lock_debtor_queues(*, tenant: Tenant, phone: str, also: Iterable[Any] = ()) -> None:
    """Lock, in id order, the queues of the debtor's pending collection and `also`: for a
    transaction that touches several queues — a reply credited in one queue (which locks it)
    that holds or stops the debtor in others. Taken in one ordered step, two debtors answering at
    once, each credited where the other is held, cannot deadlock."""
    _lock_queues(pending_collection(tenant=tenant, phone=phone), also)


def hold_debtor(*, tenant: Tenant, phone: str, until: datetime, reason: str) -> int:
    """Postpone the debtor's unsent collection messages to `until`; how many were held."""
    # Unsent contacts only (a `sending` one is in the provider's hands); one already waiting
    # for a retry waits longer.
    holdable = sorted(UNSENT_CONTACT_STATUSES)
    with transaction.atomic():
        contacts = pending_collection(tenant=tenant, phone=phone).filter(status__in=holdable)
        if not _lock_queues(contacts):
            return 0
        held = transition_rows(
            contacts,
            ContactStatus.PENDING_RETRY,
            from_statuses=holdable,
            next_attempt_at=Greatest(Coalesce("next_attempt_at", Value(until)), Value(until)),
            claim_token=None,
            claimed_at=None,
            last_error=reason[:500],
        )
    logger.info(
        "billing debtor held",
        extra={"tenant_id": str(tenant.pk), "phone": mask_phone(phone), "contacts": held, "until": until.isoformat()},
    )
    return held


def held_phones(*, tenant: Tenant, phones: Iterable[str], now: datetime) -> set[str]:
    """Which of `phones` are within a hold: they said, sure enough to act on, that they paid less
    than `hold_days_on_claims_paid` days ago (the rule `reply_actions` holds queued messages by).
    One query on the messages' (tenant, created_at) index."""
    wanted = set(phones)
    settings = ReplySettings.for_tenant(tenant)
    if not wanted or not settings.hold_days_on_claims_paid:
        return set()
    return set(
        Message.objects.filter(
            tenant=tenant,
            created_at__gte=now - timedelta(days=settings.hold_days_on_claims_paid),
            direction=Message.Direction.INBOUND,
            intent=CLAIMS_PAID,
            intent_confidence__gte=settings.min_confidence,
            conversation__contact_phone__in=wanted,
        ).values_list("conversation__contact_phone", flat=True)
    )


def stop_debtor(*, tenant: Tenant, phone: str, reason: str) -> int:
    """End the debtor's unsent collection messages as skipped; how many were stopped."""
    stoppable = sorted(ContactStatus.sources_for(ContactStatus.SKIPPED))
    stopped = 0
    with transaction.atomic():
        contacts = pending_collection(tenant=tenant, phone=phone).filter(status__in=stoppable, claim_token__isnull=True)
        for queue_id in _lock_queues(contacts):
            # Counted from the UPDATE itself: a contact a worker claimed meanwhile is not skipped.
            skipped = transition_rows(
                contacts.filter(queue_id=queue_id),
                ContactStatus.SKIPPED,
                error_code=ContactErrorCode.OPTED_OUT,
                last_error=reason[:500],
                claim_token=None,
                claimed_at=None,
            )
            if skipped:
                BillingQueue.objects.filter(pk=queue_id).update(
                    skipped_count=F("skipped_count") + skipped, updated_at=Now()
                )
                transaction.on_commit(functools.partial(publish_queue_progress, queue_id))
                stopped += skipped
    logger.info(
        "billing debtor stopped", extra={"tenant_id": str(tenant.pk), "phone": mask_phone(phone), "contacts": stopped}
    )
    return stopped
