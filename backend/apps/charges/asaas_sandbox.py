"""Real-shaped Asaas payment events, for the local demo (`manage.py asaas_sandbox_event`) and
the tests: both post them to the real webhook URL, so they take the production path.

The shape follows Asaas' v3 webhook body: `{"id", "event", "dateCreated", "payment": {…}}` with
the payment's full object (https://docs.asaas.com/docs/payment-events); `dateCreated` is
Brasília time without an offset, as Asaas writes it.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from apps.charges.constants import ASAAS_TIMEZONE

_STATUS_AFTER = {
    "PAYMENT_RECEIVED": "RECEIVED",
    "PAYMENT_CONFIRMED": "CONFIRMED",
    "PAYMENT_RECEIVED_IN_CASH": "RECEIVED_IN_CASH",
    "PAYMENT_REFUNDED": "REFUNDED",
    "PAYMENT_DELETED": "PENDING",
    "PAYMENT_RESTORED": "PENDING",
    "PAYMENT_UPDATED": "PENDING",
    "PAYMENT_CHARGEBACK_REQUESTED": "CHARGEBACK_REQUESTED",
    "PAYMENT_RECEIVED_IN_CASH_UNDONE": "PENDING",
    "PAYMENT_OVERDUE": "OVERDUE",
}


def asaas_event(
    event: str,
    *,
    external_reference: str,
    value: Decimal | str,
    due_date: date,
    payment_id: str | None = None,
    event_id: str | None = None,
    created_at: datetime | None = None,
    billing_type: str = "PIX",
) -> dict[str, Any]:
    created_at = (created_at or datetime.now(ZoneInfo(ASAAS_TIMEZONE))).astimezone(ZoneInfo(ASAAS_TIMEZONE))
    payment_id = payment_id or f"pay_{uuid.uuid4().hex[:12]}"
    paid = _STATUS_AFTER.get(event) in ("RECEIVED", "CONFIRMED", "RECEIVED_IN_CASH")
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}&{uuid.uuid4().int % 10**9}",
        "event": event,
        "dateCreated": created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "payment": {
            "object": "payment",
            "id": payment_id,
            "dateCreated": due_date.isoformat(),
            "customer": "cus_000005219613",
            "subscription": None,
            "installment": None,
            "paymentLink": None,
            "dueDate": due_date.isoformat(),
            "originalDueDate": due_date.isoformat(),
            "value": float(value),
            "netValue": float(Decimal(str(value)) - Decimal("1.99")),
            "originalValue": None,
            "interestValue": None,
            "description": "Parcela",
            "externalReference": external_reference,
            "billingType": billing_type,
            "status": _STATUS_AFTER.get(event, "PENDING"),
            "pixTransaction": None,
            "confirmedDate": created_at.date().isoformat() if paid else None,
            "paymentDate": created_at.date().isoformat() if paid else None,
            "clientPaymentDate": created_at.date().isoformat() if paid else None,
            "installmentNumber": None,
            "invoiceUrl": f"https://sandbox.asaas.com/i/{payment_id[4:]}",
            "invoiceNumber": "00000001",
            "deleted": event == "PAYMENT_DELETED",
            "anticipated": False,
            "anticipable": False,
            "postalService": False,
            "refunds": None,
        },
    }
