"""API keys in the admin: issue (the raw key is shown once, on the page that answers the
add form, and is stored nowhere: not in messages, the session or the admin log), revoke with
one click, list by public prefix. The hash is never displayed."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST

from apps.audit.models import AuditAction
from apps.audit.services import audit_change
from apps.billing.admin.base import BillingTenantAdmin
from apps.billing.constants import TemplateType
from apps.billing.models import BillingAPIKey
from apps.billing.models.billing_api_key import validate_ip_list

_ISSUED_KEY_ATTR = "_billing_issued_raw_key"


class IPListField(forms.Field):
    """IPs/CIDRs typed one per line (commas and spaces also separate) → list of strings."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 40})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list):
            return value
        text = "" if value in self.empty_values else str(value)
        return [item for item in re.split(r"[\s,;]+", text) if item]

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        validate_ip_list(value)


class BillingAPIKeyForm(forms.ModelForm):
    allowed_ips = IPListField(
        required=False, help_text="One IP address or CIDR range per line (e.g. 203.0.113.7, 10.0.0.0/8). Empty: any."
    )
    allowed_template_types = forms.TypedMultipleChoiceField(
        choices=TemplateType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Types this key may send. None ticked: all types.",
    )

    class Meta:
        model = BillingAPIKey
        fields = [
            "tenant",
            "name",
            "is_active",
            "expires_at",
            "allowed_ips",
            "allowed_template_types",
            "rate_limit_per_minute",
        ]


@admin.register(BillingAPIKey)
class BillingAPIKeyAdmin(BillingTenantAdmin):
    form = BillingAPIKeyForm
    list_display = ["name", "tenant", "display_prefix", "state", "expires_at", "last_used_at", "created_at"]
    list_filter = ["tenant", "is_active"]
    search_fields = ["name", "prefix"]
    list_select_related = ["tenant"]
    actions = ["revoke_selected"]
    add_fields = ["tenant", "name", "expires_at", "allowed_ips", "allowed_template_types", "rate_limit_per_minute"]
    change_fields = [
        "tenant",
        "name",
        "display_prefix",
        "state",
        "is_active",
        "expires_at",
        "allowed_ips",
        "allowed_template_types",
        "rate_limit_per_minute",
        "last_used_at",
        "created_at",
        "revoked_at",
    ]
    change_readonly_fields = ["tenant", "display_prefix", "state", "last_used_at", "created_at", "revoked_at"]

    # ------------------------------------------------------------------ forms
    def get_fields(self, request: HttpRequest, obj: BillingAPIKey | None = None) -> tuple[str, ...]:
        fields = list(self.add_fields if obj is None else self.change_fields)
        if not request.user.is_superuser:
            fields.remove("tenant")
        return tuple(fields)

    def get_readonly_fields(self, request: HttpRequest, obj: BillingAPIKey | None = None) -> list[str]:
        if obj is None:
            return []
        readonly = list(self.change_readonly_fields)
        if obj.revoked_at is not None:
            readonly.append("is_active")
        return readonly

    @admin.display(description="prefix")
    def display_prefix(self, obj: BillingAPIKey) -> str:
        return obj.display_prefix

    @admin.display(description="state")
    def state(self, obj: BillingAPIKey) -> str:
        if obj.revoked_at is not None:
            return "revoked"
        if not obj.is_active:
            return "inactive"
        if obj.is_expired():
            return "expired"
        return "active"

    # ------------------------------------------------------------------ issuing (shown once)
    def save_model(self, request: HttpRequest, obj: BillingAPIKey, form: forms.ModelForm, change: bool) -> None:
        if not change:
            setattr(request, _ISSUED_KEY_ATTR, obj.assign_new_secret())
        super().save_model(request, obj, form, change)
        audit_change(
            request,
            tenant=obj.tenant_id,
            obj=obj,
            action=AuditAction.API_KEY_CHANGED if change else AuditAction.API_KEY_ISSUED,
            details={"fields": sorted(form.changed_data)} if change else None,
        )

    def response_add(self, request: HttpRequest, obj: BillingAPIKey, post_url_continue: str | None = None):
        raw_key = getattr(request, _ISSUED_KEY_ATTR, None)
        if raw_key is None:  # pragma: no cover - save_model always sets it on add
            return super().response_add(request, obj, post_url_continue)
        delattr(request, _ISSUED_KEY_ATTR)
        context = {
            **self.admin_site.each_context(request),
            "title": "API key created",
            "opts": self.opts,
            "key": obj,
            "raw_key": raw_key,
            "change_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk]),
            "changelist_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"),
        }
        response = TemplateResponse(request, "admin/billing/billingapikey/key_issued.html", context)
        response["Cache-Control"] = "no-store"
        return response

    # ------------------------------------------------------------------ revoking
    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[BillingAPIKey]) -> None:
        now = timezone.now()
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            key.revoke(now)
            audit_change(request, tenant=key.tenant_id, action=AuditAction.API_KEY_REVOKED, obj=key)
            count += 1
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/revoke/",
                self.admin_site.admin_view(self.revoke_view),
                name="{}_{}_revoke".format(*info),
            ),
            *super().get_urls(),
        ]

    @method_decorator(require_POST)
    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        try:
            key = get_object_or_404(self.get_queryset(request), pk=object_id)
        except ValidationError:  # not a UUID
            raise Http404 from None
        if not self.has_change_permission(request, key):
            raise PermissionDenied
        if key.revoked_at is None:
            key.revoke()
            audit_change(request, tenant=key.tenant_id, action=AuditAction.API_KEY_REVOKED, obj=key)
            self.log_change(request, key, [{"changed": {"fields": ["revoked_at", "is_active"]}}])
            self.message_user(request, f"Key {key.display_prefix} revoked.", messages.SUCCESS)
        return HttpResponseRedirect(
            reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[key.pk])
        )
