"""Cadences in the admin: steps inline (one offset once, a template of the offset's type), and a
preview of the dates each step would go out for a charge due today, on the tenant's calendar
(closed days move a step to the next business day)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html_join

from apps.audit.admin_mixins import AuditedDeletesMixin
from apps.audit.models import AuditAction
from apps.audit.services import audit_change
from apps.billing.admin.base import BillingTenantAdmin
from apps.billing.templating.formatting import format_date
from apps.charges.models import Cadence, CadenceStep
from apps.charges.services.cadence_calendar import TenantCalendar

WEEKDAYS = ("seg", "ter", "qua", "qui", "sex", "sáb", "dom")


class CadenceStepInline(admin.TabularInline):
    model = CadenceStep
    extra = 1
    fields = ["offset_days", "template", "send_from"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "template" and not request.user.is_superuser:
            from apps.billing.models import BillingTemplate
            from apps.common.admin import tenant_of

            kwargs["queryset"] = BillingTemplate.objects.filter(tenant=tenant_of(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


def date_preview(cadence: Cadence) -> list[tuple[str, str, str]]:
    """(step, nominal date, send date) for a charge due today, dd/mm/aaaa with the weekday."""
    calendar = TenantCalendar(tenant=cadence.tenant, now=timezone.now())
    rows = []
    for step in calendar.step_dates(due_date=calendar.today, offsets=[s.offset_days for s in cadence.steps.all()]):
        send = step.effective
        rows.append(
            (
                f"D{step.offset_days:+d} ({step.template_type})",
                _day(step.nominal),
                _day(send) if send else "sem dia útil em 31 dias",
            )
        )
    return rows


def _day(day) -> str:
    return f"{format_date(day)} ({WEEKDAYS[day.weekday()]})"


@admin.register(Cadence)
class CadenceAdmin(AuditedDeletesMixin, BillingTenantAdmin):
    audit_deleted_action = AuditAction.CADENCE_DELETED
    inlines = [CadenceStepInline]
    list_display = ["name", "tenant", "steps_summary", "updated_at"]
    list_filter = ["tenant"]
    search_fields = ["name"]
    readonly_fields = ["dates_for_a_charge_due_today", "created_at", "updated_at"]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        audit_change(
            request,
            tenant=form.instance.tenant_id,
            action=AuditAction.CADENCE_SAVED,
            obj=form.instance,
            details={"created": not change, "fields": sorted(form.changed_data)},
        )

    @admin.display(description="steps")
    def steps_summary(self, obj: Cadence) -> str:
        return ", ".join(f"D{s.offset_days:+d}" for s in obj.steps.all())

    @admin.display(description="dates for a charge due today")
    def dates_for_a_charge_due_today(self, obj: Cadence) -> str:
        if obj.pk is None:
            return "Save to see the dates."
        return format_html_join("", "<div>{}: {} → <strong>{}</strong></div>", date_preview(obj)) or "—"
