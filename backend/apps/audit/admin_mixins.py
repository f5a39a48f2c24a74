"""Admin pieces for the audit trail: a ModelAdmin whose deletions are recorded."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from .services import audit_change


class AuditedDeletesMixin(admin.ModelAdmin[Any]):
    """Records `audit_deleted_action` for each object deleted from the admin (one or a
    selection), in the deletion's transaction, before the row is gone."""

    audit_deleted_action: str

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        audit_change(request, tenant=obj.tenant_id, action=self.audit_deleted_action, obj=obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            audit_change(request, tenant=obj.tenant_id, action=self.audit_deleted_action, obj=obj)
        super().delete_queryset(request, queryset)
