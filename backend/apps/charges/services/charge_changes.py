"""A charge's amount or due date changed (an upsert, an Asaas PAYMENT_UPDATED): its timeline
says so, and its messages queued but not sent yet are skipped (`charge_changed`) — they carry
the old amount or date. Future steps follow the new values: the cadence job reads the charge
when it queues them, and a new due date re-plans every step."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.utils import timezone

from apps.billing.constants import ContactErrorCode
from apps.charges.constants import ChargeEventKind
from apps.charges.models import Charge, ChargeEvent
from apps.charges.services.silence import silence_charges
from apps.tenancy.models import Tenant


@dataclass(frozen=True)
class AmountOrDueChange:
    charge_id: int
    old_amount: Decimal
    new_amount: Decimal
    old_due_date: date
    new_due_date: date

    def as_data(self) -> dict[str, list[str]]:
        data = {}
        if self.old_amount != self.new_amount:
            data["amount"] = [str(self.old_amount), str(self.new_amount)]
        if self.old_due_date != self.new_due_date:
            data["due_date"] = [self.old_due_date.isoformat(), self.new_due_date.isoformat()]
        return data


def record_changes(*, tenant: Tenant, changes: list[AmountOrDueChange], source: str, occurred_at: datetime) -> int:
    """Timeline events and skipped unsent messages for charges already written with new values."""
    if not changes:
        return 0
    ChargeEvent.objects.bulk_create(
        [
            ChargeEvent(
                tenant=tenant,
                charge_id=change.charge_id,
                kind=ChargeEventKind.UPDATED,
                source=source,
                occurred_at=occurred_at,
                data=change.as_data(),
            )
            for change in changes
        ],
        batch_size=2000,
    )
    return silence_charges(
        tenant=tenant,
        charge_ids=[change.charge_id for change in changes],
        code=ContactErrorCode.CHARGE_CHANGED,
        reason="amount or due date changed",
    )


def record_amount_or_due_change(
    *,
    charge: Charge,
    amount: Decimal | None,
    due_date: date | None,
    source: str,
    occurred_at: datetime,
    **fields: object,
) -> bool:
    """Write a provider's new amount/due date on a locked charge (with `fields` in the same
    UPDATE); False when nothing changed."""
    change = AmountOrDueChange(
        charge.pk,
        charge.amount,
        amount if amount is not None else charge.amount,
        charge.due_date,
        due_date or charge.due_date,
    )
    if not change.as_data():
        Charge.objects.filter(pk=charge.pk).update(last_event_at=occurred_at, **fields)
        return False
    Charge.objects.filter(pk=charge.pk).update(
        amount=change.new_amount,
        due_date=change.new_due_date,
        last_event_at=occurred_at,
        updated_at=timezone.now(),
        **fields,
    )
    record_changes(tenant=charge.tenant, changes=[change], source=source, occurred_at=occurred_at)
    return True
