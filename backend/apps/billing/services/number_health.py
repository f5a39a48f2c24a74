"""What the health page of a number shows (the admin's `…/health/`): its state, today's sends
against its warm-up cap, its "not on WhatsApp" and failure rates, its last disconnect, and why
its queues are paused. Reads only: a few aggregate queries and one Redis read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from apps.billing.constants import (
    OPEN_QUEUE_STATUSES,
    SENT_CONTACT_STATUSES,
    ContactErrorCode,
    ContactStatus,
    QueueStatus,
)
from apps.billing.models import BillingContact, BillingQueue
from apps.billing.services.daily_cap import Day, NumberQuota, number_key, sends_started
from apps.connections.models import NumberHealthSettings, WhatsAppInstance

RATE_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class PausedQueue:
    queue_id: str
    status: str
    reason: str


@dataclass(frozen=True)
class NumberHealth:
    today: date
    warm_up_day: int
    sent_today: int
    cap_today: int | None  # None: no cap (warm-up over or skipped)
    attempts: int  # answers in the rate window
    not_on_whatsapp_rate: float | None  # None: nothing sent in the window
    failure_rate: float | None
    paused_queues: list[PausedQueue]


def number_health(*, instance: WhatsAppInstance) -> NumberHealth:
    tenant = instance.tenant
    settings = NumberHealthSettings.for_tenant(tenant.pk)
    now = timezone.now()
    quota = NumberQuota(
        number_key=number_key(instance.base_url, instance.instance_name),
        tz=tenant.tzinfo,
        instance_ids=(instance.pk,),
        warm_up=instance.warm_up(settings.schedule, tenant.tzinfo),
    )
    day = Day.of(now, tenant.tzinfo)
    sent_today = quota.sent_today(now) or sends_started(instance_ids=(instance.pk,), day=day)
    outcomes = BillingContact.objects.filter(
        queue__instance=instance, send_started_at__gte=now - RATE_WINDOW
    ).aggregate(
        attempts=Count("pk", filter=Q(status__in=[*SENT_CONTACT_STATUSES, ContactStatus.FAILED])),
        invalid=Count("pk", filter=Q(error_code=ContactErrorCode.INVALID_NUMBER)),
        failed=Count("pk", filter=Q(status=ContactStatus.FAILED)),
    )
    attempts = outcomes["attempts"]
    paused = [
        PausedQueue(str(pk), status, reason)
        for pk, status, reason in BillingQueue.objects.filter(instance=instance, status__in=OPEN_QUEUE_STATUSES)
        .exclude(status__in=[QueueStatus.PENDING, QueueStatus.RUNNING])
        .order_by("-updated_at")
        .values_list("pk", "status", "pause_reason")[:20]
    ]
    return NumberHealth(
        today=day.local_date,
        warm_up_day=quota.warm_up.age_on(day.local_date),
        sent_today=sent_today,
        cap_today=quota.warm_up.cap_on(day.local_date),
        attempts=attempts,
        not_on_whatsapp_rate=outcomes["invalid"] / attempts if attempts else None,
        failure_rate=outcomes["failed"] / attempts if attempts else None,
        paused_queues=paused,
    )
