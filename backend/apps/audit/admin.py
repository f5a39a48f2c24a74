"""The audit trail in the admin: read-only for everyone, each tenant's staff see their own."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.common.admin import TenantScopedAdmin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(TenantScopedAdmin):
    list_display = ["occurred_at", "action", "actor_kind", "actor_label", "ip", "object_type", "object_id", "tenant"]
    list_filter = ["action", "actor_kind", "tenant"]
    search_fields = ["=object_id", "=actor_label"]
    date_hierarchy = "occurred_at"
    readonly_fields = [
        "occurred_at",
        "tenant",
        "action",
        "actor_kind",
        "actor_id",
        "actor_label",
        "ip",
        "object_type",
        "object_id",
        "details",
    ]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
