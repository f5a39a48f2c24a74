"""Right of access (LGPD art. 18, II): everything a tenant holds about one phone number, as
one JSON document — billing contacts, campaign contacts, conversations with their messages and
reply records, the suppression entry, callbacks that carried the phone, charges with their
timelines.

Selectors only: nothing is written here (the request itself is recorded in the audit trail by
the caller). Each table is read by the phone (indexed where the table is large).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from apps.billing.models import BillingContact, CallbackDelivery, ConversationReply, SuppressedPhone
from apps.campaigns.models import CampaignContact
from apps.charges.models import Charge, ChargeEvent
from apps.chat.models import Conversation, Message
from apps.common.keyed_hash import phone_hash
from apps.tenancy.models import Tenant

BILLING_CONTACT_FIELDS = (
    "id",
    "queue_id",
    "billing_campaign_id",
    "phone",
    "name",
    "external_id",
    "due_date",
    "amount",
    "variables",
    "rendered_message",
    "status",
    "attempts",
    "error_code",
    "last_error",
    "provider_message_id",
    "sent_at",
    "delivered_at",
    "read_at",
    "replied_at",
    "created_at",
)
CHARGE_FIELDS = (
    "id",
    "external_id",
    "phone",
    "name",
    "document",
    "debtor_external_id",
    "amount",
    "due_date",
    "description",
    "payment_link",
    "pix_code",
    "boleto_line",
    "variables",
    "status",
    "paid_at",
    "paid_amount",
    "created_at",
)


def billing_contacts(*, tenant: Tenant, phone: str) -> QuerySet[BillingContact]:
    return BillingContact.objects.filter(tenant=tenant, phone=phone)


def campaign_contacts(*, tenant: Tenant, phone: str) -> QuerySet[CampaignContact]:
    return CampaignContact.objects.filter(tenant=tenant, phone=phone)


def conversations(*, tenant: Tenant, phone: str) -> QuerySet[Conversation]:
    return Conversation.objects.filter(tenant=tenant, contact_phone=phone)


def charges(*, tenant: Tenant, phone: str) -> QuerySet[Charge]:
    return Charge.objects.filter(tenant=tenant, phone=phone)


def suppressions(*, tenant: Tenant, phone: str) -> QuerySet[SuppressedPhone]:
    return SuppressedPhone.objects.filter(Q(phone=phone) | Q(phone_hash=phone_hash(phone)), tenant=tenant)


def callback_deliveries(*, tenant: Tenant, phone: str) -> QuerySet[CallbackDelivery]:
    """Deliveries whose payload names the phone (reply events carry it): a scan of the tenant's
    deliveries, acceptable for a request a person makes now and then."""
    return (
        CallbackDelivery.objects.filter(tenant=tenant)
        .annotate(payload_text=Cast("payload", TextField()))
        .filter(payload_text__contains=f'"{phone}"')
    )


def export_data_subject(*, tenant: Tenant, phone: str) -> dict[str, Any]:
    """The document (JSON-ready: dates ISO 8601, amounts as strings). `phone` is E.164."""
    conversation_rows = list(
        conversations(tenant=tenant, phone=phone).values(
            "id",
            "instance_id",
            "contact_phone",
            "contact_name",
            "status",
            "last_intent",
            "created_at",
            "last_message_at",
        )
    )
    conversation_ids = [row["id"] for row in conversation_rows]
    messages = (
        Message.objects.filter(conversation_id__in=conversation_ids)
        .order_by("created_at", "id")
        .values(
            "id",
            "conversation_id",
            "direction",
            "content",
            "status",
            "source",
            "intent",
            "created_at",
            "sent_at",
            "delivered_at",
            "read_at",
        )
    )
    conversations_with_messages = [
        {**row, "messages": [message for message in messages if message["conversation_id"] == row["id"]]}
        for row in conversation_rows
    ]
    charge_rows = list(charges(tenant=tenant, phone=phone).values(*CHARGE_FIELDS))
    events = (
        ChargeEvent.objects.filter(charge_id__in=[row["id"] for row in charge_rows])
        .order_by("occurred_at")
        .values("charge_id", "kind", "source", "occurred_at", "data")
    )
    for row in charge_rows:
        row["events"] = [event for event in events if event["charge_id"] == row["id"]]
    document = {
        "phone": phone,
        "tenant": {
            "name": tenant.name,
            "creditor_legal_name": tenant.creditor_legal_name,
            "privacy_contact": tenant.privacy_contact,
            "legal_basis": tenant.legal_basis,
            "retention_days": tenant.retention_days,
        },
        "generated_at": timezone.now(),
        "billing_contacts": list(
            billing_contacts(tenant=tenant, phone=phone).order_by("id").values(*BILLING_CONTACT_FIELDS)
        ),
        "campaign_contacts": list(
            campaign_contacts(tenant=tenant, phone=phone)
            .order_by("id")
            .values("id", "campaign_id", "phone", "name", "created_at")
        ),
        "conversations": conversations_with_messages,
        "conversation_replies": list(
            ConversationReply.objects.filter(conversation_id__in=conversation_ids).values(
                "id", "conversation_id", "kind", "intent", "local_date", "created_at"
            )
        ),
        "opt_out": [
            {
                "source": row.source,
                "reason": row.reason,
                "created_at": row.created_at,
                "phone_erased": row.phone is None,
            }
            for row in suppressions(tenant=tenant, phone=phone)
        ],
        "callbacks": list(
            callback_deliveries(tenant=tenant, phone=phone)
            .order_by("id")
            .values("id", "event", "status", "payload", "created_at", "delivered_at")
        ),  # not the URL: it may hold a secret
        "charges": charge_rows,
    }
    return _plain(document)


def _plain(value: Any) -> Any:
    """JSON types only, so every renderer writes the same document."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    return value
