"""Config (editable) and the rows the system writes: campaigns, queues, contacts (read-only:
the worker's invariants depend on them; queues are controlled through the API)."""

from __future__ import annotations

from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from apps.audit.models import AuditAction
from apps.audit.services import audit_change
from apps.billing.admin.base import BillingTenantAdmin, ViewOnlyMixin
from apps.billing.models import BillingCampaign, BillingConfig, BillingContact, BillingQueue
from apps.common.encrypted_fields import mask_secret


@admin.register(BillingConfig)
class BillingConfigAdmin(BillingTenantAdmin):
    list_display = [
        "tenant",
        "messages_per_minute",
        "batch_size",
        "max_attempts",
        "business_hours_overdue",
        "business_hours_upcoming",
        "business_hours_notification",
        "default_instance",
        "updated_at",
    ]
    list_filter = ["tenant"]
    list_select_related = ["tenant", "default_instance"]
    readonly_fields = ["callback_secret_hint", "created_at", "updated_at"]
    actions = ["regenerate_callback_secret"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (None, {"fields": ["tenant", "default_instance"]}),
        ("Pace", {"fields": ["messages_per_minute", "jitter_seconds", "batch_size"]}),
        (
            "Retries and limits",
            {
                "fields": [
                    "max_attempts",
                    "retry_backoff_seconds",
                    "max_contacts_per_request",
                    "api_rate_limit_per_minute",
                ]
            },
        ),
        (
            "Business hours",
            {"fields": ["business_hours_overdue", "business_hours_upcoming", "business_hours_notification"]},
        ),
        ("Callbacks", {"fields": ["callback_url", "callback_secret_hint", "callback_contact_events"]}),
        ("Opt-out (LGPD)", {"fields": ["opt_out_confirmation"]}),
        ("Worker", {"fields": ["stale_threshold_seconds", "health_cache_seconds", "created_at", "updated_at"]}),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: BillingConfig | None = None):
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        return [(title, {**opts, "fields": [f for f in opts["fields"] if f != "tenant"]}) for title, opts in fieldsets]

    @admin.display(description="callback secret")
    def callback_secret_hint(self, obj: BillingConfig) -> str:
        """Stored encrypted and never shown back in full: regenerate it to see a new one once."""
        return mask_secret(obj.callback_secret)

    @admin.action(description="Regenerate callback secret", permissions=["change"])
    def regenerate_callback_secret(self, request: HttpRequest, queryset: QuerySet[BillingConfig]) -> TemplateResponse:
        """The new secrets are shown once, on the page that answers the action (not in messages,
        which may live in a cookie)."""
        configs = list(queryset.select_related("tenant"))
        for config in configs:
            config.regenerate_callback_secret()
            audit_change(request, tenant=config.tenant, action=AuditAction.CALLBACK_SECRET_REGENERATED, obj=config)
        context = {
            **self.admin_site.each_context(request),
            "title": "New callback secrets",
            "opts": self.opts,
            "configs": configs,
        }
        response = TemplateResponse(request, "admin/billing/billingconfig/secrets_issued.html", context)
        response["Cache-Control"] = "no-store"
        return response


@admin.register(BillingCampaign)
class BillingCampaignAdmin(ViewOnlyMixin, BillingTenantAdmin):
    list_display = [
        "external_id",
        "tenant",
        "template_type",
        "template",
        "queue_status",
        "created_by_key",
        "instance",
        "created_at",
    ]
    list_filter = ["tenant", "template_type"]
    search_fields = ["external_id"]
    list_select_related = ["tenant", "template", "queue", "created_by_key", "instance"]
    date_hierarchy = "created_at"

    @admin.display(description="queue status")
    def queue_status(self, obj: BillingCampaign) -> str:
        queue = getattr(obj, "queue", None)
        return queue.get_status_display() if queue is not None else "—"


@admin.register(BillingQueue)
class BillingQueueAdmin(ViewOnlyMixin, BillingTenantAdmin):
    list_display = [
        "short_id",
        "tenant",
        "template_type",
        "status",
        "progress",
        "pending",
        "priority",
        "pause_reason",
        "next_resume_at",
        "scheduled_for",
        "processing_by",
        "last_heartbeat",
        "created_at",
    ]
    list_filter = ["status", "template_type", "tenant"]
    search_fields = ["billing_campaign__external_id", "processing_by"]
    list_select_related = ["tenant", "billing_campaign"]
    date_hierarchy = "created_at"
    readonly_fields = ["progress", "pending"]

    @admin.display(description="id")
    def short_id(self, obj: BillingQueue) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="progress")
    def progress(self, obj: BillingQueue) -> str:
        return f"{obj.processed_count}/{obj.total_contacts} ({obj.progress_percent:.1f}%)"

    @admin.display(description="pending")
    def pending(self, obj: BillingQueue) -> int:
        return obj.pending_count


@admin.register(BillingContact)
class BillingContactAdmin(ViewOnlyMixin, BillingTenantAdmin):
    """Lists show the masked phone only; the raw number appears on a contact's own page."""

    list_display = [
        "id",
        "masked_phone",
        "name",
        "status",
        "error_code",
        "attempts",
        "variation",
        "campaign_external_id",
        "sent_at",
        "created_at",
    ]
    list_filter = ["status", "error_code", "billing_campaign__template_type", "tenant"]
    search_fields = ["external_id", "name", "billing_campaign__external_id", "provider_message_id"]
    list_select_related = ["tenant", "variation", "billing_campaign"]
    date_hierarchy = "created_at"
    readonly_fields = ["masked_phone"]

    @admin.display(description="phone")
    def masked_phone(self, obj: BillingContact) -> str:
        return obj.masked_phone

    @admin.display(description="campaign", ordering="billing_campaign__external_id")
    def campaign_external_id(self, obj: BillingContact) -> str:
        return obj.billing_campaign.external_id
