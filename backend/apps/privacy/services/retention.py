"""Retention: message texts, rendered messages, variables and reply texts are kept for the
tenant's `retention_days` (180 by default), then removed; counters, statuses and timestamps
stay for reports.

The job walks each table in the order of its time column, from where it stopped last time
(`RetentionProgress`), in batches of `batch_size` rows: one short transaction per batch, with
`lock_timeout` so it never queues behind a busy row (it gives up the batch and the next run
takes it again) and never makes ingest or the worker wait for more than one batch. Rows are old
by definition, so the worker's hot rows are not the ones it touches. A batch's rows that are
already blank are not written again.

What it clears, per table:
- billing contacts (finished ones: sent, failed, skipped, …): `rendered_message`, `variables`;
- chat messages (texts sent and customers' replies): `content`;
- charges that are closed (paid, cancelled, written off) and past their due date by the
  retention: `variables`, `description` (payment data is erased with the person: data_subject_erasure).
Phones and names stay until the person asks (erasure): they are what the opt-out, disputes and
the reports need.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import OperationalError, connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from apps.billing.constants import UNFINISHED_CONTACT_STATUSES
from apps.billing.models import BillingContact
from apps.charges.constants import ChargeStatus
from apps.charges.models import Charge
from apps.chat.models import Message
from apps.tenancy.models import Tenant

from ..models import RetentionProgress

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1000
LOCK_TIMEOUT = "2s"


@dataclass(frozen=True)
class RetentionTarget:
    name: str
    model: type[models.Model]
    time_field: str
    cleared: dict[str, Any]
    has_content: Q  # rows that still hold something to clear
    eligible: Q = field(default_factory=Q)
    cutoff: Callable[[dt.datetime], Any] = lambda cutoff: cutoff


TARGETS = (
    RetentionTarget(
        "billing_contacts",
        BillingContact,
        "created_at",
        {"rendered_message": "", "variables": {}},
        has_content=~Q(rendered_message="") | ~Q(variables={}),
        eligible=~Q(status__in=sorted(UNFINISHED_CONTACT_STATUSES)),
    ),
    RetentionTarget("chat_messages", Message, "created_at", {"content": ""}, has_content=~Q(content="")),
    RetentionTarget(
        "closed_charges",
        Charge,
        "due_date",
        {"variables": {}, "description": ""},
        has_content=~Q(variables={}) | ~Q(description=""),
        eligible=Q(status__in=[ChargeStatus.PAID, ChargeStatus.CANCELLED, ChargeStatus.WRITTEN_OFF]),
        cutoff=lambda cutoff: cutoff.date(),
    ),
)


def run_retention(
    *, now: dt.datetime | None = None, batch_size: int = DEFAULT_BATCH_SIZE, max_batches: int | None = None
) -> dict[str, int]:
    """One pass over every tenant and table; rows cleared per table. `max_batches` bounds the
    pass (per tenant and table) so one run never holds the process long."""
    now = now or timezone.now()
    cleared = {target.name: 0 for target in TARGETS}
    for tenant in Tenant.objects.only("pk", "retention_days").order_by("pk"):
        cutoff = now - dt.timedelta(days=tenant.retention_days)
        for target in TARGETS:
            cleared[target.name] += _clear(tenant, target, target.cutoff(cutoff), batch_size, max_batches)
    if any(cleared.values()):
        logger.info("retention pass", extra={"cleared": cleared})
    return cleared


def _clear(tenant: Tenant, target: RetentionTarget, cutoff: Any, batch_size: int, max_batches: int | None) -> int:
    progress, _ = RetentionProgress.objects.get_or_create(tenant=tenant, target=target.name)
    old = target.model._default_manager.filter(
        Q(tenant=tenant) & Q(**{f"{target.time_field}__lt": cutoff}) & target.eligible
    )
    total, batches = 0, 0
    while max_batches is None or batches < max_batches:
        rows = list(
            _after(old, target.time_field, progress.position)
            .order_by(target.time_field, "pk")
            .values_list(target.time_field, "pk")[:batch_size]
        )
        if not rows:
            break
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                ids = [pk for _, pk in rows]
                total += target.model._default_manager.filter(target.has_content, pk__in=ids).update(**target.cleared)
                last_time, last_pk = rows[-1]
                progress.position = [last_time.isoformat(), last_pk]
                progress.save(update_fields=["position", "updated_at"])
        except OperationalError:  # lock_timeout: a row is busy right now; the next run takes the batch
            logger.warning("retention batch postponed", extra={"tenant_id": str(tenant.pk), "target": target.name})
            break
        batches += 1
    return total


def _after(queryset: models.QuerySet, time_field: str, position: list) -> models.QuerySet:
    if not position:
        return queryset
    at, pk = position
    value = queryset.model._meta.get_field(time_field).to_python(at)
    # `>=` keeps the time column's index range scan; the few rows of the same instant done
    # already are filtered out.
    return queryset.filter(**{f"{time_field}__gte": value}).exclude(**{time_field: value, "pk__lte": pk})
