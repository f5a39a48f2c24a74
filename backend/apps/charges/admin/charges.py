"""Charges in the admin: read-only rows (they are written by the API, the import and the
provider webhooks, through services), pay/cancel actions through the same service as the API,
the timeline, a CSV/XLSX import (upload → column mapping → preview with errors by row →
import) and the recovery report."""

from __future__ import annotations

import secrets
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html_join

from apps.billing.admin.base import BillingTenantAdmin, ViewOnlyMixin
from apps.billing.services.contact_validation import parse_due_date
from apps.charges.constants import ChangeSource, ChargeStatus
from apps.charges.models import Charge, ChargeSettings
from apps.charges.services.charge_import import (
    IMPORT_FIELDS,
    REQUIRED_FIELDS,
    ImportFileError,
    Table,
    charges_from_table,
    guess_mapping,
    read_table,
)
from apps.charges.services.charge_status import change_charge_status
from apps.charges.services.charge_upsert import upsert_charges, validate_charges
from apps.charges.services.recovery_report import Period, recovery_report
from apps.charges.services.timeline import charge_timeline
from apps.common.admin import tenant_of
from apps.common.exceptions import ApplicationError
from apps.tenancy.models import Tenant

IMPORT_CACHE_SECONDS = 1800
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
PREVIEW_ROWS = 20


class UploadForm(forms.Form):
    file = forms.FileField(help_text="CSV (; or ,) or XLSX, a header row, at most 10,000 charges.")
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.filter(is_active=True), required=False)


class ReportForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.filter(is_active=True), required=False)
    date_from = forms.CharField(label="from (dd/mm/aaaa)")
    date_to = forms.CharField(label="to (dd/mm/aaaa)")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        start, end = parse_due_date(data.get("date_from", "")), parse_due_date(data.get("date_to", ""))
        if start is None or end is None or end < start:
            raise forms.ValidationError("Give two dates, the second on or after the first.")
        data["period"] = Period(start, end)
        return data


@admin.register(Charge)
class ChargeAdmin(ViewOnlyMixin, BillingTenantAdmin):
    list_display = [
        "external_id",
        "tenant",
        "name",
        "masked_phone",
        "amount",
        "due_date",
        "status",
        "paid_at",
        "escalated_at",
        "cadence",
    ]
    list_filter = ["status", "tenant"]
    search_fields = ["external_id", "debtor_external_id", "name"]
    list_select_related = ["tenant", "cadence"]
    date_hierarchy = "due_date"
    exclude = ["phone", "variables"]
    readonly_fields = ["timeline"]
    actions = ["mark_paid", "mark_cancelled"]
    change_list_template = "admin/charges/charge/change_list.html"

    @admin.display(description="timeline")
    def timeline(self, obj: Charge) -> str:
        entries = [
            (
                entry["at"].strftime("%d/%m/%Y %H:%M"),
                entry["type"],
                ", ".join(f"{k}={v}" for k, v in entry.items() if k not in ("at", "type")),
            )
            for entry in charge_timeline(obj)
        ]
        return format_html_join("", "<div>{} <strong>{}</strong> {}</div>", entries)

    # ------------------------------------------------------------------ actions
    def _change(self, request: HttpRequest, queryset: QuerySet[Charge], target: str) -> None:
        done = refused = 0
        for charge in queryset:
            try:
                done += change_charge_status(charge=charge, target=target, source=ChangeSource.ADMIN).changed
            except ApplicationError:
                refused += 1
        self.message_user(
            request,
            f"{done} charge(s) changed; {refused} not allowed from their status.",
            messages.SUCCESS if not refused else messages.WARNING,
        )

    @admin.action(description="Mark paid (skips their unsent messages)", permissions=["view"])
    def mark_paid(self, request: HttpRequest, queryset: QuerySet[Charge]) -> None:
        self._change(request, queryset, ChargeStatus.PAID)

    @admin.action(description="Cancel (skips their unsent messages)", permissions=["view"])
    def mark_cancelled(self, request: HttpRequest, queryset: QuerySet[Charge]) -> None:
        self._change(request, queryset, ChargeStatus.CANCELLED)

    # ------------------------------------------------------------------ extra pages
    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="{}_{}_import".format(*info)),
            path(
                "import/<str:token>/",
                self.admin_site.admin_view(self.import_map_view),
                name="{}_{}_import_map".format(*info),
            ),
            path("recovery/", self.admin_site.admin_view(self.recovery_view), name="{}_{}_recovery".format(*info)),
            *super().get_urls(),
        ]

    def _tenant(self, request: HttpRequest, chosen: Tenant | None) -> Tenant:
        """Staff act for their own tenant; a superuser chooses one."""
        tenant = chosen if request.user.is_superuser else tenant_of(request)
        if tenant is None:
            raise PermissionDenied
        return tenant

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            if not request.user.is_superuser or form.cleaned_data["tenant"]:
                try:
                    if upload.size > MAX_UPLOAD_BYTES:
                        raise ImportFileError(f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
                    table = read_table(file_name=upload.name, content=upload.read())
                except ImportFileError as exc:
                    form.add_error("file", str(exc))
                else:
                    tenant = self._tenant(request, form.cleaned_data["tenant"])
                    token = secrets.token_urlsafe(16)
                    cache.set(
                        f"charges-import:{token}",
                        {
                            "tenant_id": tenant.pk,
                            "user_id": request.user.pk,
                            "headers": table.headers,
                            "rows": table.rows,
                        },
                        IMPORT_CACHE_SECONDS,
                    )
                    return HttpResponseRedirect(reverse("admin:charges_charge_import_map", args=[token]))
            else:
                form.add_error("tenant", "Choose the tenant the charges belong to.")
        return render(
            request,
            "admin/charges/charge/import.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "form": form,
                "title": "Import charges (CSV or XLSX)",
            },
        )

    def import_map_view(self, request: HttpRequest, token: str) -> HttpResponse:
        stored = cache.get(f"charges-import:{token}")
        if stored is None or stored["user_id"] != request.user.pk:
            self.message_user(request, "This import expired; upload the file again.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:charges_charge_import"))
        tenant = Tenant.objects.get(pk=stored["tenant_id"])
        table = Table(stored["headers"], stored["rows"])
        mapping = guess_mapping(table.headers)
        if request.method == "POST":
            mapping = {
                field: int(request.POST[field])
                for field in IMPORT_FIELDS
                if request.POST.get(field, "").isdigit() and int(request.POST[field]) < len(table.headers)
            }
        missing = [field for field in REQUIRED_FIELDS if field not in mapping]
        charges = charges_from_table(table, mapping)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Import charges for {tenant}",
            "headers": list(enumerate(table.headers)),
            "fields": list(IMPORT_FIELDS),
            "mapping": mapping,
            "missing": missing,
            "rows": len(charges),
            "sample": charges[:PREVIEW_ROWS],
        }
        if not missing:
            accepted, rejected, _ = validate_charges(tenant=tenant, charges=charges)
            context.update(
                valid=len(accepted), errors=[(r.index + 2, r.external_id, r.code, r.message) for r in rejected]
            )
            if request.POST.get("action") == "import":
                try:
                    result = upsert_charges(tenant=tenant, charges=charges, source=ChangeSource.IMPORT)
                except ApplicationError as exc:
                    self.message_user(request, exc.message, messages.ERROR)
                else:
                    cache.delete(f"charges-import:{token}")
                    self.message_user(
                        request,
                        f"Imported: {result.created} created, {result.updated} updated, "
                        f"{result.unchanged} unchanged, {len(result.rejected)} rejected.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(reverse("admin:charges_charge_changelist"))
        return render(request, "admin/charges/charge/import_map.html", context)

    def recovery_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = ReportForm(request.GET or None)
        report = None
        if request.GET and form.is_valid():
            if request.user.is_superuser and form.cleaned_data["tenant"] is None:
                form.add_error("tenant", "Choose a tenant.")
            else:
                tenant = self._tenant(request, form.cleaned_data["tenant"])
                window = ChargeSettings.for_tenant(tenant).conversion_window_days
                report = recovery_report(tenant=tenant, period=form.cleaned_data["period"], window_days=window)
        return render(
            request,
            "admin/charges/charge/recovery.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "form": form,
                "report": report,
                "title": "Recovery report",
                "now": timezone.now(),
            },
        )
