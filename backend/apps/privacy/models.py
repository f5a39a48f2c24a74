"""Data-subject requests are audit events (apps/audit): this proxy gives them their own admin
page, where staff answer a person's request for their data or its erasure."""

from __future__ import annotations

from django.db import models

from apps.audit.models import AuditAction, AuditEvent

REQUEST_ACTIONS = (AuditAction.DATA_SUBJECT_EXPORTED, AuditAction.DATA_SUBJECT_ERASED)


class DataSubjectRequest(AuditEvent):
    class Meta:
        proxy = True
        verbose_name = "data-subject request"


class RetentionProgress(models.Model):
    """How far the retention job got, per tenant and table: every row before `position` (the
    row's time, then its id) has had its texts removed, so each run starts where the last one
    stopped instead of reading the old rows again."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")
    target = models.CharField(max_length=40)
    position = models.JSONField(default=list, help_text="[time (ISO 8601), id] of the last row done.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "target"], name="retention_progress_unique")]

    def __str__(self) -> str:
        return f"{self.target} (tenant {self.tenant_id})"
