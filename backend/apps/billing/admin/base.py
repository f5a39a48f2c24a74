"""Shared pieces of the billing admin.

`TenantScopedAdmin` hides the `tenant` field from a tenant's staff and stamps it on save. That
is too late for validation: Django then skips every constraint that mentions `tenant`
(unique name per tenant, one default per type, one config per tenant) and a duplicate turns
into a 500 at INSERT. `BillingTenantAdmin` stamps the tenant when the form is built and keeps
those constraints in the form's validation, so they show as form errors.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import HttpRequest

from apps.common.admin import TenantScopedAdmin, tenant_of


def tenant_validating_form(form_class: type[forms.ModelForm], tenant: Any | None) -> type[forms.ModelForm]:
    """`form_class`, but with the instance's tenant set (if `tenant` is given and it has none)
    and with tenant-bound constraints validated even when `tenant` is not a form field."""

    class TenantValidatingForm(form_class):  # type: ignore[valid-type, misc]  # a base known at run time only
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if tenant is not None and getattr(self.instance, "tenant_id", None) is None:
                self.instance.tenant = tenant

        def _get_validation_exclusions(self) -> set[str]:
            exclude = super()._get_validation_exclusions()
            if getattr(self.instance, "tenant_id", None) is not None:
                exclude.discard("tenant")
            return exclude

        def _update_errors(self, errors: ValidationError) -> None:
            # An error on a field the form does not show (e.g. "a config for this tenant
            # already exists") is reported for the whole form instead of crashing it.
            if hasattr(errors, "error_dict"):
                regrouped: dict[str, list] = {}
                for name, field_errors in errors.error_dict.items():
                    key = name if name == NON_FIELD_ERRORS or name in self.fields else NON_FIELD_ERRORS
                    regrouped.setdefault(key, []).extend(field_errors)
                errors = ValidationError(regrouped)
            super()._update_errors(errors)

    TenantValidatingForm.__name__ = form_class.__name__
    return TenantValidatingForm


class BillingTenantAdmin(TenantScopedAdmin):
    """TenantScopedAdmin whose forms validate tenant-bound constraints (see module docstring)."""

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form_class = super().get_form(request, obj, change, **kwargs)
        if self.tenant_field != "tenant":
            return form_class
        tenant = None if request.user.is_superuser else tenant_of(request)
        return tenant_validating_form(form_class, tenant)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        """A row never moves to another tenant (its related rows would not follow)."""
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and request.user.is_superuser and self.tenant_field == "tenant" and "tenant" not in readonly:
            readonly.append("tenant")
        return readonly


class ViewOnlyMixin:
    """Rows written only by the system (API ingest, worker): editing them in the admin would
    break the invariants the worker relies on, so the admin shows them read-only."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"
