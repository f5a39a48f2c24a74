"""Tenant-scoped reads. Every lookup takes `tenant=`: a row of another tenant is "not found".

Each read costs the same whatever the queue's size: a queue's progress is its row's counters,
and its contacts are read a page at a time by id (keyset), never counted."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import F, QuerySet
from django.utils import timezone

from apps.common.exceptions import ApplicationError
from apps.tenancy.models import Tenant

from .models import BillingContact, BillingQueue
from .services.eta import DailyCapPlan, estimate_completion
from .tenant_context import TenantContext


def _not_found() -> ApplicationError:
    return ApplicationError("not_found", "Queue not found.", status=404)


def queue_get(*, tenant: Tenant, queue_id: str) -> BillingQueue:
    try:
        pk = uuid.UUID(str(queue_id))
    except ValueError:
        raise _not_found() from None
    queue = BillingQueue.objects.select_related("billing_campaign").filter(tenant=tenant, pk=pk).first()
    if queue is None:
        raise _not_found()
    return queue


def queue_eta(queue: BillingQueue, *, context: TenantContext) -> datetime | None:
    """Remaining time at the tenant's pace, inside business hours where they apply, within the
    number's warm-up caps (the tenant's config, hours and numbers come from its context: no
    query; today's sends of a number in warm-up, one Redis read)."""
    if queue.is_final:
        return None
    config = context.config
    now = timezone.now()
    start = max(t for t in (now, queue.scheduled_for, queue.next_resume_at) if t is not None)
    schedule = context.schedule if config.respects_business_hours(queue.template_type) else None
    quota = context.number_quotas.get(queue.instance_id) if queue.instance_id is not None else None
    daily_cap = DailyCapPlan.for_number(quota, start=start, now=now)
    return estimate_completion(
        start=start,
        messages=queue.pending_count,
        messages_per_minute=config.messages_per_minute,
        jitter_seconds=float(config.jitter_seconds),
        schedule=schedule,
        daily_cap=daily_cap,
    )


# What the contact list shows: read as plain rows (no model instances) for a page of up to 1,000.
CONTACT_LIST_FIELDS = (
    "id",
    "external_id",
    "phone",
    "status",
    "attempts",
    "error_code",
    "provider_message_id",
    "sent_at",
    "delivered_at",
    "read_at",
    "replied_at",
)


def queue_contacts(*, queue: BillingQueue, status: str | None = None, external_id: str | None = None) -> QuerySet:
    """The queue's contacts as dicts (CONTACT_LIST_FIELDS + `variation_name`), in id order: the
    caller pages them by id (keyset), which the (queue, id) and (queue, status, id) indexes
    serve whatever the queue's size."""
    contacts = BillingContact.objects.filter(queue_id=queue.pk, tenant_id=queue.tenant_id)
    if status:
        contacts = contacts.filter(status=status)
    if external_id:
        contacts = contacts.filter(external_id=external_id)
    return contacts.values(*CONTACT_LIST_FIELDS, variation_name=F("variation__name")).order_by("id")
