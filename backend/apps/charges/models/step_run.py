"""One cadence step of one charge, materialised (or skipped) on one day: the link between the
step and the billing contact that carries its message.

Unique per (charge, cadence, offset, due date): a step runs once for a due date, whatever the
number of job runs (the job's idempotency). A new due date re-plans the charge's steps. The
message's life (sent, delivered, read, replied, skipped because the charge was paid) is read
from the billing contact, never copied here.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.charges.constants import StepRunStatus


class ChargeStepRun(models.Model):
    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False)
    charge = models.ForeignKey("charges.Charge", on_delete=models.CASCADE, related_name="step_runs")
    cadence = models.ForeignKey("charges.Cadence", on_delete=models.SET_NULL, null=True, related_name="+")
    offset_days = models.SmallIntegerField()
    due_date = models.DateField(help_text="The charge's due date this step belonged to.")
    scheduled_date = models.DateField(help_text="The tenant-local day it was materialised for.")
    status = models.CharField(max_length=10, choices=StepRunStatus.choices)
    skip_reason = models.CharField(max_length=40, blank=True)
    billing_contact = models.OneToOneField(
        "billing.BillingContact", on_delete=models.SET_NULL, null=True, blank=True, related_name="charge_step_run"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["scheduled_date", "id"]
        indexes = [
            # The per-debtor daily cap counts a tenant's queued runs of one day.
            models.Index(fields=["tenant", "scheduled_date", "status"], name="step_run_tenant_day"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["charge", "cadence", "offset_days", "due_date"], name="step_run_once"),
            models.CheckConstraint(condition=Q(status__in=StepRunStatus.values), name="step_run_status_valid"),
            models.CheckConstraint(
                condition=Q(status=StepRunStatus.SKIPPED, billing_contact__isnull=True)
                | Q(status=StepRunStatus.QUEUED),
                name="step_run_skipped_has_no_contact",
            ),
        ]

    def __str__(self) -> str:
        return f"D{self.offset_days:+d} of {self.charge_id} on {self.scheduled_date} ({self.status})"
