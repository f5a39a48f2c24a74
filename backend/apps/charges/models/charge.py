"""A debt (or one installment of it) a tenant wants collected.

`external_id` (the client's invoice or installment id) is unique per tenant: upserts match on
it. `debtor_key` groups a debtor's charges for the per-debtor daily cap: the client's
`debtor_external_id` when given, else the phone. `last_event_at` is the instant of the
newest fact applied (an API action, or a provider event's own timestamp), so a provider event
older than it can never undo it (out-of-order delivery).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q

from apps.billing.models.status_machine import StatusMachineMixin
from apps.charges.constants import CHARGE_KIND, ChangeSource, ChargeStatus
from apps.contacts.utils import mask_phone


def debtor_key_for(*, debtor_external_id: str, phone: str) -> str:
    return f"id:{debtor_external_id}" if debtor_external_id else f"phone:{phone}"


class Charge(StatusMachineMixin):
    status_kind = CHARGE_KIND

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="charges", db_index=False)
    external_id = models.CharField(max_length=200, help_text="The client's invoice or installment id.")

    # The debtor.
    phone = models.CharField(max_length=20, help_text="E.164")
    name = models.CharField(max_length=200)
    document = models.CharField(max_length=14, blank=True, help_text="CPF or CNPJ, digits only.")
    debtor_external_id = models.CharField(max_length=200, blank=True, help_text="Groups a debtor's charges.")
    debtor_key = models.CharField(max_length=210, help_text="debtor_external_id, else the phone (daily cap).")

    # The debt and how to pay it (template variables).
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    due_date = models.DateField()
    description = models.CharField(max_length=500, blank=True)
    payment_link = models.CharField(max_length=500, blank=True)
    pix_code = models.CharField(max_length=1000, blank=True, help_text="PIX copy-and-paste code.")
    boleto_line = models.CharField(max_length=100, blank=True, help_text="Boleto digitable line.")
    variables = models.JSONField(default=dict, blank=True)
    cadence = models.ForeignKey(
        "charges.Cadence",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="charges",
        help_text="Empty: the tenant's default cadence.",
    )
    asaas_payment_id = models.CharField(max_length=100, blank=True)

    status = models.CharField(max_length=20, choices=ChargeStatus.choices, default=ChargeStatus.OPEN)
    last_event_at = models.DateTimeField(null=True, blank=True, help_text="Newest status/payment fact applied.")
    paid_at = models.DateTimeField(null=True, blank=True)
    paid_amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    payment_source = models.CharField(max_length=10, choices=ChangeSource.choices, blank=True)
    payment_reference = models.CharField(max_length=200, blank=True, help_text="Provider payment id or a note.")
    escalated_at = models.DateTimeField(null=True, blank=True, help_text="Its cadence stopped (too old).")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["due_date", "id"]
        indexes = [
            # Materialisation: open charges of a tenant due on given dates; lists by status/due range.
            models.Index(fields=["tenant", "status", "due_date"], name="charge_tenant_status_due"),
            models.Index(fields=["tenant", "debtor_key"], name="charge_tenant_debtor"),
            models.Index(fields=["tenant", "phone"], name="charge_tenant_phone"),
            models.Index(
                fields=["tenant", "asaas_payment_id"], name="charge_tenant_asaas", condition=~Q(asaas_payment_id="")
            ),
            models.Index(fields=["tenant", "paid_at"], name="charge_tenant_paid", condition=Q(paid_at__isnull=False)),
        ]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "external_id"], name="charge_unique_external_id"),
            models.CheckConstraint(condition=~Q(external_id=""), name="charge_external_id_not_blank"),
            models.CheckConstraint(condition=Q(status__in=ChargeStatus.values), name="charge_status_valid"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="charge_amount_non_negative"),
        ]

    #: The cadence's steps and what happened, set by the detail view for its serializer
    #: (services.timeline); not columns.
    plan: list[dict[str, Any]]
    timeline: list[dict[str, Any]]

    def __str__(self) -> str:
        return f"{self.external_id} ({self.status})"

    def __repr__(self) -> str:  # no raw phone in debug output
        return f"<Charge {self.pk} {self.external_id} {mask_phone(self.phone)} {self.status}>"

    @property
    def masked_phone(self) -> str:
        return mask_phone(self.phone)

    def transition_side_effects(self, new_status: str, now: datetime) -> dict[str, Any]:
        if new_status == ChargeStatus.OPEN:
            # Open again: the payment no longer counts (the timeline keeps it).
            return {"paid_at": None, "paid_amount": None, "payment_source": "", "payment_reference": ""}
        return {}
