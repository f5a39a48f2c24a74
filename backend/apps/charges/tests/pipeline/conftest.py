"""End-to-end helpers to drive charges through the real API, with the root conftest's pipeline
fixtures (the real consumer as an OS process, the broker, the sandbox, transactional tests)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apps.billing.tests.support.processes import PipelineTenant
from apps.chat.models import BusinessHours


def api_post(tenant: PipelineTenant, path: str, body: dict[str, Any]):
    return tenant.client.post(
        f"/api/v1/billing/{path}",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_X_BILLING_API_KEY=tenant.raw_key,
    )


def api_get(tenant: PipelineTenant, path: str, **params: Any):
    return tenant.client.get(f"/api/v1/billing/{path}", params, HTTP_X_BILLING_API_KEY=tenant.raw_key)


def open_around_now(tenant: PipelineTenant) -> tuple[ZoneInfo, datetime, datetime]:
    """Put the tenant in a fixed-offset zone where it is mid-day now, open every day from two
    hours before now to two hours after: the consumer (real time) and a job run on another
    day at the same clock time (time-machine) both see the tenant open. Returns the zone and
    today's opening bounds."""
    now = datetime.now(UTC)
    for hours in range(-12, 13):
        if 5 <= (now + timedelta(hours=hours)).hour <= 18:
            zone = ZoneInfo("Etc/GMT" + (f"-{hours}" if hours > 0 else f"+{-hours}" if hours < 0 else ""))
            break
    local = now.astimezone(zone).replace(second=0, microsecond=0)
    opens, closes = local - timedelta(hours=2), local + timedelta(hours=2)
    tenant.tenant.timezone = zone.key
    tenant.tenant.save(update_fields=["timezone"])
    BusinessHours.objects.filter(tenant=tenant.tenant).delete()
    BusinessHours.objects.bulk_create(
        [
            BusinessHours(tenant=tenant.tenant, weekday=day, opens_at=opens.time(), closes_at=closes.time())
            for day in range(7)
        ]
    )
    return zone, opens, closes
