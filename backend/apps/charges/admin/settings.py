"""Per-tenant charge settings; the Asaas webhook token is write-only (only its hash is kept)
and the URL to paste into Asaas is shown."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from apps.billing.admin.base import BillingTenantAdmin
from apps.charges.models import Cadence, ChargeSettings
from apps.charges.services.asaas_setup import AsaasTokenError, asaas_webhook_url, check_asaas_token


class ChargeSettingsForm(forms.ModelForm):
    new_asaas_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        label="New Asaas webhook token",
        help_text="32-255 characters; Asaas sends it in the asaas-access-token header. Leave empty to keep it.",
    )

    class Meta:
        model = ChargeSettings
        fields = "__all__"  # noqa: DJ007 - every setting is editable; the token has its own write-only field

    def clean_new_asaas_token(self) -> str:
        token = self.cleaned_data.get("new_asaas_token", "")
        if token:
            try:
                check_asaas_token(token)
            except AsaasTokenError as exc:
                raise forms.ValidationError(str(exc)) from exc
        return token


@admin.register(ChargeSettings)
class ChargeSettingsAdmin(BillingTenantAdmin):
    form = ChargeSettingsForm
    list_display = ["tenant", "debtor_daily_cap", "escalation_age_days", "default_cadence", "asaas_configured"]
    list_filter = ["tenant"]
    readonly_fields = ["asaas_webhook_url_display", "created_at", "updated_at"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if (
            db_field.name == "default_cadence"
            and request.resolver_match
            and request.resolver_match.kwargs.get("object_id")
        ):
            settings = ChargeSettings.objects.filter(pk=request.resolver_match.kwargs["object_id"]).first()
            if settings is not None:
                field.queryset = Cadence.objects.filter(tenant_id=settings.tenant_id)
        return field

    @admin.display(description="Asaas webhook", boolean=True)
    def asaas_configured(self, obj: ChargeSettings) -> bool:
        return bool(obj.asaas_token_hash)

    @admin.display(description="Asaas webhook URL")
    def asaas_webhook_url_display(self, obj: ChargeSettings) -> str:
        return asaas_webhook_url(obj) if obj.pk else "—"

    def save_model(self, request, obj: ChargeSettings, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if form.cleaned_data.get("new_asaas_token"):
            obj.set_asaas_token(form.cleaned_data["new_asaas_token"])
