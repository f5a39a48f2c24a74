"""Escalate charges still open past the tenant's escalation age (default D+90): their cadence
stops, their unsent messages are skipped, and `charge.escalated` tells the tenant's CRM (the
clinic system's collection case). Idempotent: an escalated charge is never escalated again."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction

from apps.billing.templating.date_calculator import today_in
from apps.charges.constants import ChargeStatus
from apps.charges.models import Charge, ChargeSettings
from apps.charges.services.charge_status import escalate_charge
from apps.tenancy.models import Tenant

logger = logging.getLogger(__name__)
BATCH = 500


def escalate_old_charges(*, tenant: Tenant, now: datetime) -> int:
    """Escalate every open charge of `tenant` due `escalation_age_days` or more ago."""
    settings = ChargeSettings.for_tenant(tenant)
    today = today_in(tenant.timezone, now)
    limit = today - timedelta(days=settings.escalation_age_days)
    escalated = 0
    while True:
        with transaction.atomic():
            batch = list(
                Charge.objects.select_for_update(skip_locked=True)
                .select_related("tenant")
                .filter(tenant=tenant, status=ChargeStatus.OPEN, escalated_at__isnull=True, due_date__lte=limit)
                .order_by("due_date", "id")[:BATCH]
            )
            for charge in batch:
                escalated += escalate_charge(charge=charge, now=now, today=today)
        if len(batch) < BATCH:
            break
    if escalated:
        logger.info("charges escalated", extra={"tenant_id": str(tenant.pk), "escalated": escalated})
    return escalated
