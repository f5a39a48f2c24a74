"""Pay, cancel, write off and reopen a charge — from the API, the admin or a payment provider.

One short transaction holding the charge's row lock: the status moves through the transition
table (compare-and-swap), the timeline gets its event, a closing silences every message of the
charge not sent yet (including ones a running worker already claimed), and the tenant's system
gets `charge.paid` / `charge.reopened`. A repeat of the current status changes nothing (an
idempotent retry). `occurred_at` is when it happened; a provider event older than the newest
fact applied is refused as stale by the caller (see asaas_webhook).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.billing.constants import ContactErrorCode
from apps.billing.models import CallbackEvent
from apps.charges.constants import (
    CLOSED_STATUSES,
    EVENT_FOR_STATUS,
    ChangeSource,
    ChargeEventKind,
    ChargeStatus,
)
from apps.charges.models import Charge, ChargeEvent
from apps.charges.services.charge_callbacks import on_charge_event
from apps.charges.services.silence import silence_charges
from apps.common.exceptions import ApplicationError

logger = logging.getLogger(__name__)

ACTION_TARGET = {
    "pay": ChargeStatus.PAID,
    "cancel": ChargeStatus.CANCELLED,
    "write-off": ChargeStatus.WRITTEN_OFF,
    "reopen": ChargeStatus.OPEN,
}
_CALLBACK_FOR_STATUS: dict[str, CallbackEvent] = {
    ChargeStatus.PAID: CallbackEvent.CHARGE_PAID,
    ChargeStatus.OPEN: CallbackEvent.CHARGE_REOPENED,
}


@dataclass(frozen=True)
class StatusChange:
    charge: Charge
    changed: bool
    silenced: int = 0


def change_charge_status(
    *,
    charge: Charge,
    target: str,
    source: str,
    occurred_at: datetime | None = None,
    paid_amount: Decimal | None = None,
    reference: str = "",
    reason: str = "",
) -> StatusChange:
    """Move `charge` to `target`; a move the table refuses is a 409 ApplicationError."""
    with transaction.atomic():
        locked = (
            Charge.objects.select_for_update().select_related("tenant").get(pk=charge.pk, tenant_id=charge.tenant_id)
        )
        return change_locked_charge_status(
            locked=locked,
            target=target,
            source=source,
            occurred_at=occurred_at,
            paid_amount=paid_amount,
            reference=reference,
            reason=reason,
        )


def change_locked_charge_status(
    *,
    locked: Charge,
    target: str,
    source: str,
    occurred_at: datetime | None = None,
    paid_amount: Decimal | None = None,
    reference: str = "",
    reason: str = "",
    **fields: Any,
) -> StatusChange:
    """The same, for a caller already holding the charge's row lock in its transaction (the
    Asaas webhook); `fields` are more columns written in the same UPDATE."""
    occurred_at = occurred_at or timezone.now()
    if locked.status == target:
        return StatusChange(locked, changed=False)
    if not ChargeStatus.can_transition(locked.status, target):
        raise ApplicationError(
            "invalid_transition",
            f"A {locked.status} charge cannot become {target}.",
            status=409,
            details={"current_status": locked.status, "target_status": target},
        )
    fields["last_event_at"] = max(filter(None, [locked.last_event_at, occurred_at]))
    if target == ChargeStatus.PAID:
        fields.update(
            paid_at=occurred_at,
            paid_amount=paid_amount if paid_amount is not None else locked.amount,
            payment_source=source,
            payment_reference=reference[:200],
        )
    previous = locked.status
    locked.transition_to(target, **fields)
    ChargeEvent.objects.create(
        tenant_id=locked.tenant_id,
        charge=locked,
        kind=EVENT_FOR_STATUS[target],
        source=source,
        occurred_at=occurred_at,
        data={
            "from": previous,
            "reason": reason[:200],
            "reference": reference[:200],
            **({"paid_amount": str(fields["paid_amount"])} if target == ChargeStatus.PAID else {}),
        },
    )
    silenced = 0
    if target in CLOSED_STATUSES:
        silenced = silence_charges(
            tenant=locked.tenant, charge_ids=[locked.pk], code=ContactErrorCode.CHARGE_CLOSED, reason=str(target)
        )
    if target in _CALLBACK_FOR_STATUS:
        on_charge_event(locked, _CALLBACK_FOR_STATUS[target], source=source)
    logger.info(
        "charge status changed",
        extra={
            "tenant_id": str(locked.tenant_id),
            "charge_id": locked.pk,
            "from": previous,
            "to": target,
            "source": source,
            "silenced": silenced,
        },
    )
    return StatusChange(locked, changed=True, silenced=silenced)


def escalate_charge(*, charge: Charge, now: datetime, today: date) -> bool:
    """Stop an old open charge's cadence (its unsent messages too) and tell the tenant's system;
    False if it was no longer an open, unescalated charge. Caller holds the row lock."""
    updated = Charge.objects.filter(pk=charge.pk, status=ChargeStatus.OPEN, escalated_at__isnull=True).update(
        escalated_at=now, updated_at=now
    )
    if not updated:
        return False
    charge.escalated_at = now
    ChargeEvent.objects.create(
        tenant_id=charge.tenant_id,
        charge=charge,
        kind=ChargeEventKind.ESCALATED,
        source=ChangeSource.SYSTEM,
        occurred_at=now,
        data={"days_overdue": (today - charge.due_date).days},
    )
    silence_charges(
        tenant=charge.tenant, charge_ids=[charge.pk], code=ContactErrorCode.CHARGE_CLOSED, reason="escalated"
    )
    on_charge_event(charge, CallbackEvent.CHARGE_ESCALATED)
    return True
