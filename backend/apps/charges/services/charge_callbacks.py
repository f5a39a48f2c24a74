"""The charge events a tenant's system receives (signed, through billing's callback outbox):
`charge.paid`, `charge.reopened`, `charge.escalated`, `cadence.step_skipped`. Payloads carry
ids, amounts and dates, never a phone or a message text."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from apps.billing.models import BillingConfig, CallbackEvent
from apps.billing.services.callbacks import enqueue_event
from apps.charges.models import Charge
from apps.tenancy.models import Tenant

#: Charges listed in one `cadence.step_skipped` delivery.
SKIPPED_PER_EVENT = 1000


def charge_data(charge: Charge, **extra: Any) -> dict[str, Any]:
    return {
        "charge_id": charge.pk,
        "external_id": charge.external_id,
        "status": charge.status,
        "amount": charge.amount,
        "due_date": charge.due_date,
        "paid_at": charge.paid_at,
        "paid_amount": charge.paid_amount,
        "payment_source": charge.payment_source,
        "payment_reference": charge.payment_reference,
        "debtor_external_id": charge.debtor_external_id,
        "escalated_at": charge.escalated_at,
        **extra,
    }


def on_charge_event(charge: Charge, event: str, *, config: BillingConfig | None = None, **extra: Any) -> None:
    """Record `charge.paid` / `charge.reopened` / `charge.escalated` in the caller's transaction."""
    enqueue_event(tenant=charge.tenant, queue=None, event=event, data=charge_data(charge, **extra), config=config)


def on_steps_skipped(
    *,
    tenant: Tenant,
    cadence: str,
    offset_days: int,
    day: date,
    reason: str,
    external_ids: Sequence[str],
    config: BillingConfig | None = None,
) -> None:
    """One `cadence.step_skipped` per step, day and reason, listing the charges (in chunks)."""
    config = config or BillingConfig.for_tenant(tenant)
    for start in range(0, len(external_ids), SKIPPED_PER_EVENT):
        chunk = list(external_ids[start : start + SKIPPED_PER_EVENT])
        enqueue_event(
            tenant=tenant,
            queue=None,
            event=CallbackEvent.CADENCE_STEP_SKIPPED,
            config=config,
            data={"cadence": cadence, "offset_days": offset_days, "date": day, "reason": reason, "charges": chunk},
        )
