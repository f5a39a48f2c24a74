"""Tenant-scoped reads. Every lookup takes `tenant=`: a row of another tenant is "not found"."""
from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.utils import timezone

from apps.chat.services import BusinessHoursService
from apps.common.exceptions import ApplicationError
from apps.tenancy.models import Tenant

from .models import BillingConfig, BillingContact, BillingQueue
from .services.eta import estimate_completion


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


def queue_eta(queue: BillingQueue) -> object:
    """Remaining time at the tenant's pace, inside business hours where they apply."""
    if queue.is_final:
        return None
    config = BillingConfig.for_tenant(queue.tenant)
    now = timezone.now()
    start = max(t for t in (now, queue.scheduled_for, queue.next_resume_at) if t is not None)
    schedule = (
        BusinessHoursService.schedule_for(queue.tenant) if config.respects_business_hours(queue.template_type) else None
    )
    return estimate_completion(
        start=start, messages=queue.pending_count, messages_per_minute=config.messages_per_minute,
        jitter_seconds=float(config.jitter_seconds), schedule=schedule,
    )


def queue_contacts(*, queue: BillingQueue, status: str | None = None, external_id: str | None = None) -> QuerySet:
    contacts = BillingContact.objects.filter(queue=queue, tenant=queue.tenant).select_related("variation")
    if status:
        contacts = contacts.filter(status=status)
    if external_id:
        contacts = contacts.filter(external_id=external_id)
    return contacts.order_by("id")
