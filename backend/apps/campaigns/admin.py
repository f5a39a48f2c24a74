from django.contrib import admin

from apps.common.admin import TenantScopedAdmin
from apps.contacts.utils import mask_phone

from .models import Campaign, CampaignContact


@admin.register(Campaign)
class CampaignAdmin(TenantScopedAdmin):
    list_display = ["name", "tenant", "source", "total_contacts", "created_at"]
    list_filter = ["tenant", "source"]
    search_fields = ["name"]
    readonly_fields = ["id", "created_at", "total_contacts"]


@admin.register(CampaignContact)
class CampaignContactAdmin(TenantScopedAdmin):
    list_display = ["id", "masked_phone", "name", "campaign", "created_at"]
    list_filter = ["tenant"]
    search_fields = ["name"]
    readonly_fields = ["created_at"]
    raw_id_fields = ["campaign"]

    @admin.display(description="phone")
    def masked_phone(self, obj: CampaignContact) -> str:
        return mask_phone(obj.phone)
