from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.audit.models import AuditAction
from apps.audit.admin_mixins import AuditedDeletesMixin
from apps.audit.services import audit_change
from apps.common.admin import TenantScopedAdmin
from apps.common.encrypted_fields import mask_secret

from .models import WhatsAppInstance
from .services import clear_attention, open_queue_count


class WhatsAppInstanceForm(forms.ModelForm):
    """The provider key is write-only: never rendered back; left blank on edit keeps the old one.
    `base_url` passes the provider address guard (WhatsAppInstance.clean)."""

    api_key = forms.CharField(
        widget=forms.PasswordInput(render_value=False), required=False,
        help_text="Write-only. Leave blank to keep the current key.",
    )

    class Meta:
        model = WhatsAppInstance
        exclude = ["webhook_secret"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.api_key:
            self.fields["api_key"].help_text = (
                f"Write-only (stored encrypted). Current: {mask_secret(self.instance.api_key)}. "
                "Leave blank to keep it.")

    def clean_api_key(self) -> str:
        value = self.cleaned_data.get("api_key", "")
        if value:
            return value
        if self.instance.pk:
            return self.instance.api_key
        raise forms.ValidationError("The provider API key is required.")


@admin.register(WhatsAppInstance)
class WhatsAppInstanceAdmin(AuditedDeletesMixin, TenantScopedAdmin):
    """Tenant staff see and edit their instances, but the provider URL (where our servers
    connect) is the operator's: only superusers set it, so only they add instances. An instance
    that open queues still send through cannot be deleted."""
    audit_deleted_action = AuditAction.INSTANCE_DELETED

    form = WhatsAppInstanceForm
    exclude = ["webhook_secret"]
    list_display = ["name", "tenant", "instance_name", "provider", "api_version", "is_active", "health_state",
                    "health_checked_at", "attention_since"]
    list_filter = ["tenant", "provider", "is_active", "health_state"]
    search_fields = ["name", "instance_name"]
    readonly_fields = ["health_state", "health_reason", "health_checked_at", "attention_reason", "attention_since",
                       "created_at", "updated_at"]
    actions = ["clear_attention_flag"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else [*fields, "base_url"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return request.user.is_superuser and super().has_add_permission(request, *args)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, Any, Any, list[str]]:
        """Shown and refused like a PROTECT relation: the queues still sending through it."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        for instance in objs:
            count = open_queue_count(instance=instance)
            if count:
                protected = [*protected, f"{instance}: {count} billing queue(s) not finished yet "
                                         "(finish or cancel them first)"]
        return deleted, counts, perms_needed, protected

    def save_model(self, request: HttpRequest, obj: WhatsAppInstance, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        # Field names only, never values; "api_key" means a new key was typed (blank keeps the old one).
        fields = sorted({*(name for name in form.changed_data if name != "api_key"),
                         *(["api_key"] if form.data.get("api_key") else [])})
        audit_change(request, tenant=obj.tenant_id, action=AuditAction.INSTANCE_SAVED, obj=obj,
                     details={"created": not change, "fields": fields})

    @admin.action(description="Clear the attention flag (a person has looked)")
    def clear_attention_flag(self, request: HttpRequest, queryset: QuerySet) -> None:
        for instance in queryset.filter(attention_since__isnull=False):
            audit_change(request, tenant=instance.tenant_id, action=AuditAction.INSTANCE_ATTENTION_CLEARED,
                         obj=instance)
        cleared = clear_attention(instances=queryset)
        self.message_user(request, f"Attention flag cleared on {cleared} instance(s).", messages.SUCCESS)
