"""One cycle of the charges job (`manage.py run_charges_periodic`): per tenant with cadences,
escalate old charges, then materialise today's due steps. Every part is idempotent and finds
its work in the database; one tenant's failure is logged and the others still run."""

from __future__ import annotations

import logging
from datetime import datetime

from django.utils import timezone

from apps.charges.models import Cadence
from apps.charges.services.escalation import escalate_old_charges
from apps.charges.services.materialisation import materialise_due_steps
from apps.tenancy.models import Tenant

logger = logging.getLogger(__name__)


def run_cycle(*, now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    totals = {"tenants": 0, "escalated": 0, "queued": 0, "skipped": 0, "busy": 0, "failed": 0}
    tenant_ids = Cadence.objects.values_list("tenant_id", flat=True).distinct()
    for tenant in Tenant.objects.filter(pk__in=tenant_ids, is_active=True).order_by("pk"):
        totals["tenants"] += 1
        try:
            totals["escalated"] += escalate_old_charges(tenant=tenant, now=now)
            result = materialise_due_steps(tenant=tenant, now=now)
        except Exception:
            logger.exception("charges cycle failed for a tenant", extra={"tenant_id": str(tenant.pk)})
            totals["failed"] += 1
            continue
        totals["busy"] += result.locked_out  # another process was materialising this tenant
        totals["queued"] += result.queued
        totals["skipped"] += sum(result.skipped.values())
    return totals
