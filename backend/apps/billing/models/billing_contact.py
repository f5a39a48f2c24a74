"""One recipient of a billing campaign and everything about its message's life.

A worker claims a contact by setting `claim_token`/`claimed_at` while it stays `pending`
(claimed but not yet handed to the provider); `sending` means the provider call has started,
which is what crash recovery needs to tell "never sent" from "outcome unknown"; `unconfirmed`
means the call may have delivered it and reconciliation (services/reconciliation.py) decides.
`last_error` holds a short technical reason only: never the message text or a raw phone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q

from apps.billing.constants import (
    UNSENT_CONTACT_STATUSES,
    ContactErrorCode,
    ContactStatus,
    TransitionKind,
)
from apps.billing.models.status_machine import StatusMachineMixin
from apps.contacts.utils import mask_phone

LAST_ERROR_MAX_LENGTH = 500


class BillingContact(StatusMachineMixin):
    status_kind = TransitionKind.CONTACT

    id = models.BigAutoField(primary_key=True)
    # No single-column indexes on tenant and queue: (tenant, status), (tenant, phone, sent_at),
    # (queue, status) serve those look-ups, and every index is written again each time a
    # contact changes status (three times per message sent).
    tenant = models.ForeignKey(
        "tenancy.Tenant", on_delete=models.CASCADE, related_name="billing_contacts", db_index=False
    )
    billing_campaign = models.ForeignKey("billing.BillingCampaign", on_delete=models.CASCADE, related_name="contacts")
    # Denormalised from the campaign so the worker's claim query reads one table.
    queue = models.ForeignKey("billing.BillingQueue", on_delete=models.CASCADE, related_name="contacts", db_index=False)
    campaign_contact = models.OneToOneField(
        "campaigns.CampaignContact", on_delete=models.CASCADE, related_name="billing"
    )
    variation = models.ForeignKey(
        "billing.BillingTemplateVariation",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="contacts",
    )
    phone = models.CharField(max_length=20, help_text="E.164")
    name = models.CharField(max_length=200, blank=True)
    external_id = models.CharField(max_length=200, blank=True, help_text="The client's id for this contact.")
    due_date = models.DateField(null=True, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    variables = models.JSONField(default=dict, blank=True)
    rendered_message = models.TextField(blank=True)

    status = models.CharField(max_length=20, choices=ContactStatus.choices, default=ContactStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=LAST_ERROR_MAX_LENGTH, blank=True)
    error_code = models.CharField(max_length=32, choices=ContactErrorCode.choices, blank=True)
    # Indexed in Meta (a plain btree: `db_index` would add a LIKE twin nothing uses).
    provider_message_id = models.CharField(max_length=128, blank=True)
    # The chat history row of the message sent to this contact (chat_history). The link
    # lives here, not on chat.Message, so the host chat app does not depend on billing.
    message = models.OneToOneField(
        "chat.Message",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="billing_contact",
    )

    send_started_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the provider call started (start_sending): the window reconciliation searches.",
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "billing contact"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["tenant", "status"], name="billing_contact_tenant_status"),
            # The worker's claim query: unsent contacts of one queue, due now.
            models.Index(
                fields=["queue", "status", "next_attempt_at"],
                name="billing_contact_claimable",
                condition=Q(status__in=sorted(UNSENT_CONTACT_STATUSES)),
            ),
            # The API's contact list, a page at a time in id order (keyset), with or without a
            # status filter: the first page of a 100,000-contact queue reads 101 index entries.
            models.Index(fields=["queue", "status", "id"], name="billing_contact_queue_status"),
            models.Index(fields=["queue", "id"], name="billing_contact_queue_id"),
            models.Index(fields=["external_id"], name="billing_contact_external_id"),
            # Receipts from the provider name the message by its id.
            models.Index(fields=["provider_message_id"], name="billing_contact_provider_msg"),
            # Crediting a customer's reply to the last message sent to that phone.
            models.Index(fields=["tenant", "phone", "-sent_at"], name="billing_contact_tenant_phone"),
            models.Index(fields=["created_at"], name="billing_contact_created"),
            models.Index(
                fields=["claim_token"], name="billing_contact_claim_token", condition=Q(claim_token__isnull=False)
            ),
            # The sweep for calls stranded in flight, and reconciliation's due contacts: both tiny.
            models.Index(
                fields=["send_started_at"], name="billing_contact_in_flight", condition=Q(status=ContactStatus.SENDING)
            ),
            models.Index(
                fields=["next_attempt_at"],
                name="billing_contact_unconfirmed",
                condition=Q(status=ContactStatus.UNCONFIRMED),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=ContactStatus.values), name="billing_contact_status_valid"),
            models.CheckConstraint(condition=Q(attempts__gte=0), name="billing_contact_attempts_non_negative"),
            models.CheckConstraint(
                condition=Q(error_code="") | Q(error_code__in=ContactErrorCode.values),
                name="billing_contact_error_code_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.masked_phone} ({self.status})"

    def __repr__(self) -> str:  # no raw phone in debug output
        return f"<BillingContact {self.pk} {self.masked_phone} {self.status}>"

    @property
    def masked_phone(self) -> str:
        return mask_phone(self.phone)

    def transition_to(self, new_status: str, *, save: bool = True, **changes: Any) -> None:
        if "last_error" in changes:
            changes["last_error"] = str(changes["last_error"] or "")[:LAST_ERROR_MAX_LENGTH]
        super().transition_to(new_status, save=save, **changes)

    def transition_side_effects(self, new_status: str, now: datetime) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if new_status == ContactStatus.SENT and self.sent_at is None:
            fields["sent_at"] = now
        elif new_status == ContactStatus.DELIVERED and self.delivered_at is None:
            fields["delivered_at"] = now
        elif new_status == ContactStatus.READ:
            if self.read_at is None:
                fields["read_at"] = now
            if self.delivered_at is None:  # read implies delivered, even if that event never came
                fields["delivered_at"] = now
        if new_status in (
            ContactStatus.PENDING_RETRY,
            ContactStatus.FAILED,
            ContactStatus.CANCELLED,
            ContactStatus.SKIPPED,
            ContactStatus.SENT,
        ):
            fields.update(claim_token=None, claimed_at=None)
        return fields
