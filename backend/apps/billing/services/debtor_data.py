"""What the service knows about a debtor, in one place: their pending collection messages and
the payment data of what they owe.

Until charges exist (apps/charges, issue 16), a debtor is a phone of a tenant: their pending
messages are that phone's unsent contacts, and the payment data is in the variables of the
contact they replied to (`pix_code`, `payment_link`, `boleto_line`) with its amount and due
date. When charges land, these functions are the ones to point at them; nothing else reads
contacts for this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet

from apps.billing.constants import SENT_CONTACT_STATUSES, UNSENT_CONTACT_STATUSES
from apps.billing.models import BillingContact
from apps.tenancy.models import Tenant

#: Contact variables that carry payment data, as the automatic answer's template names them.
PAYMENT_KEYS = ("pix_code", "payment_link", "boleto_line")


@dataclass(frozen=True)
class PaymentData:
    pix_code: str = ""
    payment_link: str = ""
    boleto_line: str = ""
    amount: Decimal | None = None
    due_date: date | None = None

    def template_variables(self) -> dict[str, Any]:
        """What the payment-info template renders; empty values are left out (its `{{#if}}`s)."""
        return {key: getattr(self, key) for key in PAYMENT_KEYS if getattr(self, key)}


@dataclass(frozen=True)
class OpenDebt:
    """One collection message the debtor has received or will receive (for the staff inbox)."""

    contact_id: int
    external_id: str
    template_type: str
    amount: Decimal | None
    due_date: date | None
    status: str


def pending_collection(*, tenant: Tenant, phone: str) -> QuerySet[BillingContact]:
    """The debtor's collection messages not sent yet. A conversation's own answers (automatic
    or a person's) are not collection: a hold never delays them."""
    return BillingContact.objects.filter(
        tenant=tenant, phone=phone, status__in=sorted(UNSENT_CONTACT_STATUSES), conversation_reply__isnull=True
    )


def payment_data(*, contact_id: int) -> PaymentData | None:
    """The payment data of the debt the debtor replied about; None when there is none to send."""
    row = BillingContact.objects.filter(pk=contact_id).values("variables", "amount", "due_date").first()
    if row is None:
        return None
    variables = row["variables"] or {}
    found = {
        key: str(variables[key]).strip()
        for key in PAYMENT_KEYS
        if isinstance(variables.get(key), (str, int)) and str(variables[key]).strip()
    }
    if not found:
        return None
    return PaymentData(**found, amount=row["amount"], due_date=row["due_date"])


def open_debts(*, tenant: Tenant, phone: str, limit: int = 20) -> list[OpenDebt]:
    """The collection messages behind a conversation, newest first: what the debtor was asked."""
    statuses = sorted(UNSENT_CONTACT_STATUSES | SENT_CONTACT_STATUSES)
    rows = (
        BillingContact.objects.filter(tenant=tenant, phone=phone, status__in=statuses, conversation_reply__isnull=True)
        .order_by("-id")
        .values("pk", "external_id", "queue__template_type", "amount", "due_date", "status")[:limit]
    )
    return [
        OpenDebt(
            row["pk"], row["external_id"], row["queue__template_type"], row["amount"], row["due_date"], row["status"]
        )
        for row in rows
    ]
