"""Data-subject requests are audit events (apps/audit): this proxy gives them their own admin
page, where staff answer a person's request for their data or its erasure."""
from __future__ import annotations

from apps.audit.models import AuditAction, AuditEvent

REQUEST_ACTIONS = (AuditAction.DATA_SUBJECT_EXPORTED, AuditAction.DATA_SUBJECT_ERASED)


class DataSubjectRequest(AuditEvent):
    class Meta:
        proxy = True
        verbose_name = "data-subject request"
