"""Admin building blocks shared by every app.

`TenantScopedAdmin` is the one place that limits a tenant's staff to that tenant's rows:
superusers see everything; a staff user attached to a tenant (tenancy.Membership) sees and
edits only rows whose `tenant` is theirs, and new rows are stamped with it.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest


def tenant_of(request: HttpRequest):
    """The tenant a non-superuser staff member belongs to, or None."""
    membership = getattr(request.user, "tenant_membership", None)
    return membership.tenant if membership is not None else None


class TenantScopedAdmin(admin.ModelAdmin):
    #: path from the model to its tenant, e.g. "tenant" or "billing_campaign__tenant"
    tenant_field = "tenant"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        tenant = tenant_of(request)
        if tenant is None:
            return qs.none()
        return qs.filter(**{self.tenant_field: tenant})

    def get_list_filter(self, request: HttpRequest):
        filters = list(super().get_list_filter(request))
        if not request.user.is_superuser and "tenant" in filters:
            filters.remove("tenant")
        return filters

    def get_exclude(self, request: HttpRequest, obj: Any = None):
        exclude = list(super().get_exclude(request, obj) or [])
        if not request.user.is_superuser and self.tenant_field == "tenant":
            exclude.append("tenant")
        return exclude

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not request.user.is_superuser and self.tenant_field == "tenant":
            obj.tenant = tenant_of(request)
        super().save_model(request, obj, form, change)

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        """Offer only the staff member's tenant's rows in foreign-key choices."""
        if not request.user.is_superuser:
            related = db_field.related_model
            tenant = tenant_of(request)
            if hasattr(related, "tenant_id"):
                kwargs["queryset"] = related._default_manager.filter(tenant=tenant)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _has_tenant_access(self, request: HttpRequest) -> bool:
        return request.user.is_superuser or tenant_of(request) is not None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._has_tenant_access(request) and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._has_tenant_access(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._has_tenant_access(request) and super().has_add_permission(request, *args)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._has_tenant_access(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._has_tenant_access(request) and super().has_delete_permission(request, obj)
