from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.html import format_html

from apps.audit.admin_mixins import AuditedDeletesMixin
from apps.audit.models import AuditAction
from apps.audit.services import audit_change
from apps.common.admin import TenantScopedAdmin, tenant_of
from apps.common.encrypted_fields import mask_secret

from .admin_pages import NumberPagesMixin
from .models import NumberHealthSettings, WhatsAppInstance
from .provider_servers import provider_servers
from .services import clear_attention, open_queue_count
from .warmup import WarmUpSchedule


class WhatsAppInstanceForm(forms.ModelForm):
    """The provider key is write-only: never rendered back; left blank on edit keeps the old one.
    `base_url` passes the provider address guard (WhatsAppInstance.clean)."""

    api_key = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="Write-only. Leave blank to keep the current key.",
    )

    class Meta:
        model = WhatsAppInstance
        exclude = ["webhook_secret"]  # noqa: DJ006 - the secret is generated, never typed; every other field is editable

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.api_key:
            self.fields[
                "api_key"
            ].help_text = (
                f"Write-only (stored encrypted). Current: {mask_secret(self.instance.api_key)}. Leave blank to keep it."
            )

    def clean_api_key(self) -> str:
        value = self.cleaned_data.get("api_key", "")
        if value:
            return value
        if self.instance.pk:
            return self.instance.api_key
        raise forms.ValidationError("The provider API key is required.")


@admin.register(WhatsAppInstance)
class WhatsAppInstanceAdmin(AuditedDeletesMixin, NumberPagesMixin, TenantScopedAdmin):
    """Tenant staff see their numbers, create new ones on the operator's provider servers
    (admin_pages.py: a provider URL is where our servers connect, so only superusers type one),
    pair them, and read their health. An instance that open queues still send through cannot be
    deleted; deletions are audited."""

    audit_deleted_action = AuditAction.INSTANCE_DELETED

    form = WhatsAppInstanceForm
    exclude = ["webhook_secret"]
    list_display = [
        "name",
        "tenant",
        "instance_name",
        "provider",
        "is_active",
        "health_state",
        "health_checked_at",
        "protected_since",
        "attention_since",
        "pages",
    ]
    list_filter = ["tenant", "provider", "is_active", "health_state"]
    search_fields = ["name", "instance_name"]
    readonly_fields = [
        "health_state",
        "health_reason",
        "health_checked_at",
        "attention_reason",
        "attention_since",
        "paired_at",
        "last_disconnect_at",
        "last_disconnect_reason",
        "warmup_started_at",
        "warmup_skipped_at",
        "warmup_skipped_by",
        "warmup_skip_reason",
        "protected_reason",
        "protected_since",
        "created_at",
        "updated_at",
    ]
    actions = ["clear_attention_flag"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else [*fields, "base_url", "provider", "instance_name"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        """Superusers add any instance; tenant staff create numbers on the operator's servers."""
        if not super().has_add_permission(request, *args):
            return False
        return request.user.is_superuser or (tenant_of(request) is not None and bool(provider_servers()))

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        if not request.user.is_superuser:
            if not self.has_add_permission(request):
                raise PermissionDenied
            return HttpResponseRedirect(self._url("new_number"))
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: WhatsAppInstance, form: Any, change: bool) -> None:
        """Audited (field names, never values); a superuser's new instance gets its provider webhook
        at once, like a created one."""
        super().save_model(request, obj, form, change)
        # Field names only, never values; "api_key" means a new key was typed (blank keeps the old one).
        fields = sorted(
            {
                *(name for name in form.changed_data if name != "api_key"),
                *(["api_key"] if form.data.get("api_key") else []),
            }
        )
        audit_change(
            request,
            tenant=obj.tenant_id,
            action=AuditAction.INSTANCE_SAVED,
            obj=obj,
            details={"created": not change, "fields": fields},
        )
        if change:
            return
        from apps.billing.services.webhook_setup import (
            WebhookSetupError,
            configure_instance_webhook,
        )

        try:
            result = configure_instance_webhook(
                instance=obj, public_base_url=settings.BILLING_PUBLIC_BASE_URL or request.build_absolute_uri("/")
            )
        except WebhookSetupError as exc:
            self.message_user(
                request,
                f"The provider webhook could not be set: {exc} Run "
                "`manage.py configure_evolution_webhook` once it is reachable.",
                messages.WARNING,
            )
        else:
            self.message_user(request, f"Provider webhook set to {result.masked_url}.", messages.INFO)

    @admin.display(description="pages")
    def pages(self, obj: WhatsAppInstance) -> str:
        return format_html(
            '<a href="{}">pairing</a> · <a href="{}">health</a>',
            self._url("pairing", obj.pk),
            self._url("health", obj.pk),
        )

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, Any, Any, list[str]]:
        """Shown and refused like a PROTECT relation: the queues still sending through it."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        for instance in objs:
            count = open_queue_count(instance=instance)
            if count:
                protected = [
                    *protected,
                    f"{instance}: {count} billing queue(s) not finished yet (finish or cancel them first)",
                ]
        return deleted, counts, perms_needed, protected

    @admin.action(description="Clear the attention flag (a person has looked)")
    def clear_attention_flag(self, request: HttpRequest, queryset: QuerySet) -> None:
        for instance in queryset.filter(attention_since__isnull=False):
            audit_change(
                request, tenant=instance.tenant_id, action=AuditAction.INSTANCE_ATTENTION_CLEARED, obj=instance
            )
        cleared = clear_attention(instances=queryset)
        self.message_user(request, f"Attention flag cleared on {cleared} instance(s).", messages.SUCCESS)


class NumberHealthSettingsForm(forms.ModelForm):
    """The warm-up schedule as the admin writes it: `day:cap, day:cap…`."""

    schedule = forms.CharField(
        label="Warm-up schedule",
        help_text="day:cap pairs from the number's first day here, e.g. 0:20, 4:50, 8:100, "
        "15:200 — at most cap messages a day from that day on.",
    )

    class Meta:
        model = NumberHealthSettings
        exclude = ["warmup_schedule"]  # noqa: DJ006 - the schedule is edited as text by its own form field

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["schedule"].initial = WarmUpSchedule.from_steps(
            self.instance.warmup_schedule, uncapped_from_day=self.instance.warmup_uncapped_from_day
        ).as_text()

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        try:
            schedule = WarmUpSchedule.parse(
                cleaned.get("schedule", ""), uncapped_from_day=cleaned.get("warmup_uncapped_from_day") or 0
            )
        except ValueError as exc:
            self.add_error("schedule", str(exc))
        else:
            self.instance.warmup_schedule = [list(step) for step in schedule.steps]
        return cleaned


@admin.register(NumberHealthSettings)
class NumberHealthSettingsAdmin(TenantScopedAdmin):
    """A tenant's warm-up schedule and protection thresholds (one row a tenant)."""

    form = NumberHealthSettingsForm
    exclude = ["warmup_schedule"]  # edited as text (the form's `schedule`)
    list_display = [
        "tenant",
        "schedule_text",
        "warmup_uncapped_from_day",
        "invalid_share_limit",
        "invalid_window",
        "block_burst_limit",
        "block_window_minutes",
    ]

    @admin.display(description="warm-up schedule")
    def schedule_text(self, obj: NumberHealthSettings) -> str:
        return obj.schedule.as_text()

    def has_add_permission(self, request: HttpRequest) -> bool:
        tenant = tenant_of(request)
        if tenant is not None and NumberHealthSettings.objects.filter(tenant=tenant).exists():
            return False  # one row a tenant: edit it
        return super().has_add_permission(request)
