"""What replies do (ReplySettings, one per tenant) and the answers sent in conversations.

The settings' template choices are limited to the tenant's notification templates (the only
type a reply is sent as); the answers' log is read-only (they are written by the reply path).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.billing.admin.base import BillingTenantAdmin, ViewOnlyMixin
from apps.billing.constants import TemplateType
from apps.billing.models import ConversationReply, ReplySettings


@admin.register(ReplySettings)
class ReplySettingsAdmin(BillingTenantAdmin):
    list_display = [
        "tenant",
        "min_confidence",
        "hold_days_on_claims_paid",
        "suppress_wrong_person",
        "answer_payment_info",
        "flag_negotiate",
        "flag_talk_to_human",
        "callback_include_text",
    ]
    list_filter = ["tenant"]

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs: Any):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if (
            field is not None
            and field.queryset is not None
            and db_field.name in ("payment_info_template", "staff_reply_template")
        ):
            field.queryset = field.queryset.filter(template_type=TemplateType.NOTIFICATION, is_active=True)
        return field


@admin.register(ConversationReply)
class ConversationReplyAdmin(ViewOnlyMixin, BillingTenantAdmin):
    list_display = ["id", "tenant", "conversation", "kind", "intent", "author_label", "local_date", "created_at"]
    list_filter = ["tenant", "kind", "intent"]
    raw_id_fields = ["conversation", "contact"]
    date_hierarchy = "created_at"
