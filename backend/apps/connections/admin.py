from django import forms
from django.contrib import admin

from apps.common.admin import TenantScopedAdmin

from .models import WhatsAppInstance


class WhatsAppInstanceForm(forms.ModelForm):
    """The provider key is write-only: never rendered back; left blank on edit keeps the old one."""

    api_key = forms.CharField(
        widget=forms.PasswordInput(render_value=False), required=False,
        help_text="Write-only. Leave blank to keep the current key.",
    )

    class Meta:
        model = WhatsAppInstance
        exclude = ["webhook_secret"]

    def clean_api_key(self) -> str:
        value = self.cleaned_data.get("api_key", "")
        if value:
            return value
        if self.instance.pk:
            return self.instance.api_key
        raise forms.ValidationError("The provider API key is required.")


@admin.register(WhatsAppInstance)
class WhatsAppInstanceAdmin(TenantScopedAdmin):
    form = WhatsAppInstanceForm
    exclude = ["webhook_secret"]
    list_display = ["name", "tenant", "instance_name", "provider", "api_version", "is_active", "health_state", "health_checked_at"]
    list_filter = ["tenant", "provider", "is_active", "health_state"]
    search_fields = ["name", "instance_name"]
    readonly_fields = ["health_state", "health_reason", "health_checked_at", "created_at", "updated_at"]
