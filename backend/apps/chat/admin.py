from django.contrib import admin

from apps.common.admin import TenantScopedAdmin
from apps.contacts.utils import mask_phone

from .models import BusinessHours, ClosedDate, Conversation, Message


@admin.register(BusinessHours)
class BusinessHoursAdmin(TenantScopedAdmin):
    list_display = ["tenant", "weekday", "opens_at", "closes_at"]
    list_filter = ["tenant", "weekday"]


@admin.register(ClosedDate)
class ClosedDateAdmin(TenantScopedAdmin):
    list_display = ["tenant", "date", "reason"]
    list_filter = ["tenant"]
    search_fields = ["reason"]
    date_hierarchy = "date"


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = (
        "direction",
        "status",
        "intent",
        "content",
        "provider_message_id",
        "created_at",
        "sent_at",
        "delivered_at",
        "read_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Conversation)
class ConversationAdmin(TenantScopedAdmin):
    list_display = [
        "masked_phone",
        "contact_name",
        "tenant",
        "instance",
        "status",
        "needs_attention",
        "last_intent",
        "closed_by",
        "last_message_at",
    ]
    list_filter = ["tenant", "status", "needs_attention", "last_intent", "closed_by"]
    search_fields = ["contact_name", "contact_phone"]
    readonly_fields = ["created_at", "updated_at", "closed_at", "last_message_at", "last_inbound_at", "last_intent"]
    inlines = [MessageInline]

    @admin.display(description="phone")
    def masked_phone(self, obj: Conversation) -> str:
        return mask_phone(obj.contact_phone)


@admin.register(Message)
class MessageAdmin(TenantScopedAdmin):
    list_display = ["id", "tenant", "direction", "status", "source", "intent", "provider_message_id", "created_at"]
    list_filter = ["tenant", "direction", "status", "source", "intent"]
    search_fields = ["provider_message_id"]
    readonly_fields = ["created_at", "sent_at", "delivered_at", "read_at", "intent", "intent_confidence"]
    raw_id_fields = ["conversation"]
