"""Suppression list (opt-out) and the callback delivery log.

* Suppressed phones: added by customers' replies or by staff; deleting a row lifts the
  suppression (the only way: a new request from the CRM never does). Lists show masked phones.
* Callback deliveries: read-only log (status, attempts, last answer); "send again" makes the
  selected deliveries due now with a fresh 24 h retry window and the same `webhook-id`. The
  periodic task sends them: the admin request itself never calls a client's URL.
"""

from __future__ import annotations

import logging

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.billing.admin.base import BillingTenantAdmin, ViewOnlyMixin
from apps.billing.models import CallbackDelivery, SuppressedPhone
from apps.billing.services.callbacks import send_again
from apps.contacts.utils import PhoneNumberError, mask_phone, normalize_phone

logger = logging.getLogger(__name__)


class SuppressedPhoneForm(forms.ModelForm):
    class Meta:
        model = SuppressedPhone
        fields = ["tenant", "phone", "reason"]

    def clean_phone(self) -> str:
        try:
            return normalize_phone(self.cleaned_data["phone"])
        except PhoneNumberError as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from exc


@admin.register(SuppressedPhone)
class SuppressedPhoneAdmin(BillingTenantAdmin):
    form = SuppressedPhoneForm
    list_display = ["masked_phone", "tenant", "source", "reason", "created_at"]
    list_filter = ["source", "tenant"]
    search_fields = ["=phone"]  # exact E.164 only: no browsing by partial numbers
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"
    readonly_fields = ["source", "created_at"]

    @admin.display(description="phone")
    def masked_phone(self, obj: SuppressedPhone) -> str:
        return obj.masked_phone

    def has_change_permission(self, request: HttpRequest, obj: SuppressedPhone | None = None) -> bool:
        return False  # add or delete (lift); a suppression is never edited into another phone

    def save_model(self, request: HttpRequest, obj: SuppressedPhone, form, change: bool) -> None:
        obj.source = SuppressedPhone.Source.ADMIN
        super().save_model(request, obj, form, change)

    def delete_model(self, request: HttpRequest, obj: SuppressedPhone) -> None:
        self._log_lift([obj], request)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[SuppressedPhone]) -> None:
        self._log_lift(list(queryset), request)
        super().delete_queryset(request, queryset)

    @staticmethod
    def _log_lift(rows: list[SuppressedPhone], request: HttpRequest) -> None:
        for row in rows:
            logger.info(
                "opt-out lifted by admin",
                extra={"tenant_id": str(row.tenant_id), "phone": mask_phone(row.phone), "user_id": request.user.pk},
            )


@admin.register(CallbackDelivery)
class CallbackDeliveryAdmin(ViewOnlyMixin, BillingTenantAdmin):
    list_display = [
        "webhook_id",
        "event",
        "tenant",
        "status",
        "attempts",
        "item_count",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "event", "tenant"]
    search_fields = ["webhook_id", "queue__id"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"
    actions = ["send_again"]

    def has_send_again_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.change_callbackdelivery")

    @admin.action(description="Send again", permissions=["send_again"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[CallbackDelivery]) -> None:
        count = send_again(queryset)
        self.message_user(
            request, f"{count} callback(s) will be sent again shortly (same webhook-id).", messages.SUCCESS
        )
