"""A charge's story, read when asked: its status changes (ChargeEvent), each cadence step
(queued or skipped, and why) and each message's life from billing's contact (sent, delivered,
read, replied, failed, skipped), in time order. Nothing here is stored twice."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apps.billing.constants import ContactStatus
from apps.charges.constants import StepRunStatus
from apps.charges.models import Charge, ChargeEvent, ChargeSettings, ChargeStepRun
from apps.charges.services.cadence_calendar import TenantCalendar

_CONTACT_MOMENTS = (
    ("sent_at", "message_sent"),
    ("delivered_at", "message_delivered"),
    ("read_at", "message_read"),
    ("replied_at", "message_replied"),
)
_CONTACT_ENDINGS: dict[str, str] = {
    ContactStatus.FAILED: "message_failed",
    ContactStatus.SKIPPED: "message_skipped",
    ContactStatus.CANCELLED: "message_cancelled",
}


def charge_timeline(charge: Charge) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = [{"at": charge.created_at, "type": "created"}]
    for event in ChargeEvent.objects.filter(charge=charge).order_by("occurred_at", "id"):
        entries.append({"at": event.occurred_at, "type": event.kind, "source": event.source, **event.data})
    runs = ChargeStepRun.objects.filter(charge=charge).select_related("billing_contact__variation").order_by("id")
    for run in runs:
        step = {"offset_days": run.offset_days, "scheduled_date": run.scheduled_date}
        if run.status == StepRunStatus.SKIPPED:
            entries.append({"at": run.created_at, "type": "step_skipped", **step, "reason": run.skip_reason})
            continue
        contact = run.billing_contact
        entries.append(
            {
                "at": run.created_at,
                "type": "step_queued",
                **step,
                "queue_id": str(contact.queue_id) if contact else None,
            }
        )
        if contact is None:
            continue
        message = {**step, "variation": contact.variation.name if contact.variation else None}
        for field, kind in _CONTACT_MOMENTS:
            moment: datetime | None = getattr(contact, field)
            if moment is not None:
                entries.append({"at": moment, "type": kind, **message})
        if contact.status in _CONTACT_ENDINGS:
            entries.append(
                {
                    "at": contact.updated_at,
                    "type": _CONTACT_ENDINGS[contact.status],
                    **message,
                    "error_code": contact.error_code,
                }
            )
    return sorted(entries, key=lambda entry: entry["at"])


def charge_plan(charge: Charge, *, now: datetime) -> list[dict[str, Any]]:
    """The charge's cadence steps for its current due date: when each goes out and what became of it."""
    cadence = charge.cadence or ChargeSettings.for_tenant(charge.tenant).default_cadence
    if cadence is None:
        return []
    calendar = TenantCalendar(tenant=charge.tenant, now=now)
    runs = {
        (run.offset_days): run
        for run in ChargeStepRun.objects.filter(charge=charge, cadence=cadence, due_date=charge.due_date)
    }
    plan = []
    for step in calendar.step_dates(due_date=charge.due_date, offsets=[s.offset_days for s in cadence.steps.all()]):
        run = runs.get(step.offset_days)
        if run is not None:
            state = run.status if run.status == StepRunStatus.QUEUED else f"skipped:{run.skip_reason}"
        elif step.effective is None or step.effective < calendar.today:
            state = "missed"
        else:
            state = "planned"
        plan.append(
            {
                "cadence": cadence.name,
                "offset_days": step.offset_days,
                "template_type": step.template_type,
                "nominal_date": step.nominal,
                "send_date": step.effective,
                "state": state,
            }
        )
    return plan
