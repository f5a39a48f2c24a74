"""What a collection manager reads: per tenant and period (tenant-local dates, both included),

* charges due in the period, by their current status (and how many were escalated);
* charges paid in the period and the amount recovered (sum of `paid_amount`);
* the median number of days from a charge's first message to its payment;
* payment conversion per cadence step and per template variation: of the messages sent in the
  period, how many were followed by the charge's payment within `window_days`.

Aggregated in PostgreSQL (a handful of queries whatever the number of charges).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, F, Min, Q, Sum

from apps.charges.constants import ChargeStatus, StepRunStatus
from apps.charges.models import Charge, ChargeStepRun
from apps.tenancy.models import Tenant

MAX_PERIOD_DAYS = 366


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # included

    def bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        return (datetime.combine(self.start, time(0), tz), datetime.combine(self.end + timedelta(days=1), time(0), tz))


def recovery_report(*, tenant: Tenant, period: Period, window_days: int) -> dict[str, Any]:
    start, end = period.bounds(ZoneInfo(tenant.timezone))
    charges = Charge.objects.filter(tenant=tenant)
    due = charges.filter(due_date__gte=period.start, due_date__lte=period.end)
    by_status = {status: 0 for status in ChargeStatus.values}
    for row in due.values("status").annotate(n=Count("id")):
        by_status[row["status"]] = row["n"]
    paid = charges.filter(status=ChargeStatus.PAID, paid_at__gte=start, paid_at__lt=end)
    totals = paid.aggregate(n=Count("id"), amount=Sum("paid_amount"))
    return {
        "period": {"from": period.start, "to": period.end},
        "window_days": window_days,
        "charges_due": {
            **by_status,
            "escalated": due.filter(escalated_at__isnull=False).count(),
            "total": sum(by_status.values()),
        },
        "charges_paid": totals["n"],
        "amount_recovered": str(totals["amount"] or Decimal("0.00")),
        "median_days_to_payment": _median_days_to_payment(paid),
        "conversion_by_step": _conversion(
            tenant, start, end, window_days, ("cadence__name", "offset_days"), ("cadence", "offset_days")
        ),
        "conversion_by_variation": _conversion(
            tenant,
            start,
            end,
            window_days,
            ("billing_contact__variation__template__name", "billing_contact__variation__name"),
            ("template", "variation"),
        ),
    }


def _median_days_to_payment(paid) -> float | None:
    firsts = (
        ChargeStepRun.objects.filter(
            charge__in=paid, billing_contact__sent_at__isnull=False, billing_contact__sent_at__lte=F("charge__paid_at")
        )
        .values("charge_id")
        .annotate(first=Min("billing_contact__sent_at"))
        .values_list("first", "charge__paid_at")
    )
    days = [(paid_at - first).total_seconds() / 86400 for first, paid_at in firsts]
    return round(statistics.median(days), 2) if days else None


def _conversion(
    tenant: Tenant, start: datetime, end: datetime, window_days: int, group: tuple[str, str], names: tuple[str, str]
) -> list[dict[str, Any]]:
    sent = ChargeStepRun.objects.filter(
        tenant=tenant,
        status=StepRunStatus.QUEUED,
        billing_contact__sent_at__gte=start,
        billing_contact__sent_at__lt=end,
    )
    converted = Q(
        charge__status=ChargeStatus.PAID,
        charge__paid_at__gte=F("billing_contact__sent_at"),
        charge__paid_at__lte=F("billing_contact__sent_at") + timedelta(days=window_days),
    )
    rows = sent.values(*group).annotate(messages=Count("id"), paid=Count("id", filter=converted)).order_by(*group)
    return [
        {
            names[0]: row[group[0]],
            names[1]: row[group[1]],
            "messages": row["messages"],
            "paid": row["paid"],
            "conversion": round(row["paid"] / row["messages"], 4) if row["messages"] else None,
        }
        for row in rows
    ]
