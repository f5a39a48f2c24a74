"""Admin building blocks shared by every app.

`TenantScopedAdmin` is the one place that limits a tenant's staff to that tenant's rows:
superusers see everything; a staff user attached to a tenant (tenancy.Membership) sees and
edits only rows whose `tenant` is theirs, and new rows are stamped with it. It is also the one
admin path that writes tenant configuration (keys, config, templates and their variations,
instances, business hours), so it bumps the tenant's configuration version after each change:
the API's process-local caches rebuild on their next request (apps/common/config_version.py).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.db.models.fields.related import ForeignKey
from django.forms import ModelChoiceField
from django.http import HttpRequest

from apps.tenancy.models import Tenant

from .config_version import bump_config_version


def tenant_of(request: HttpRequest) -> Tenant | None:
    """The tenant a non-superuser staff member belongs to, or None."""
    membership = getattr(request.user, "tenant_membership", None)
    return membership.tenant if membership is not None else None


class TenantScopedAdmin(admin.ModelAdmin[Any]):
    #: path from the model to its tenant, e.g. "tenant" or "billing_campaign__tenant"
    tenant_field = "tenant"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        tenant = tenant_of(request)
        if tenant is None:
            return qs.none()
        return qs.filter(**{self.tenant_field: tenant})

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        filters = list(super().get_list_filter(request))
        if not request.user.is_superuser and "tenant" in filters:
            filters.remove("tenant")
        return filters

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> list[str]:
        exclude = list(super().get_exclude(request, obj) or [])
        if not request.user.is_superuser and self.tenant_field == "tenant":
            exclude.append("tenant")
        return exclude

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not request.user.is_superuser and self.tenant_field == "tenant":
            obj.tenant = tenant_of(request)
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Runs after save_model on every admin save (inlines too: a template's variations)."""
        super().save_related(request, form, formsets, change)
        self._bump(form.instance)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        self._bump(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        tenant_ids = set(queryset.values_list("tenant_id", flat=True)) if self.tenant_field == "tenant" else set()
        super().delete_queryset(request, queryset)
        for tenant_id in tenant_ids:
            bump_config_version(tenant_id)

    @staticmethod
    def _bump(obj: Any) -> None:
        tenant_id = getattr(obj, "tenant_id", None)
        if tenant_id is not None:
            bump_config_version(tenant_id)

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Model] | None:
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
