"""Reply helpers: sent collection messages (the webhook helpers' builders), replies posted to the
real webhook URL, and readers of what they did."""

from __future__ import annotations

import itertools
from typing import Any

from django.utils import timezone

from apps.billing.constants import ContactStatus, QueueStatus
from apps.billing.models import BillingContact, BillingQueue, CallbackDelivery
from apps.billing.services.chat_history import record_outbound_message

from .builders import build_contact, build_queue
from .webhooks import MESSAGES_UPSERT_V2, PHONE, Hook, envelope

_ids = itertools.count(1)
PIX = "00020126580014br.gov.bcb.pix0136a629532e-7693-4846-852d-1bbff817b5a8520400005303986540510.005802BR"


def post_reply(
    hook: Hook,
    text: str = "",
    *,
    phone_jid: str = "5511998765432@s.whatsapp.net",
    quoted: str | None = None,
    message: dict[str, Any] | None = None,
    message_id: str | None = None,
):
    """A customer's `messages.upsert`, as Evolution sends it."""
    body = envelope(MESSAGES_UPSERT_V2, hook.instance)
    body["data"]["key"] = {"remoteJid": phone_jid, "fromMe": False, "id": message_id or f"3A5F{next(_ids):012X}"}
    body["data"]["message"] = message if message is not None else {"conversation": text}
    body["data"]["contextInfo"] = {"stanzaId": quoted, "quotedMessage": {"conversation": ""}} if quoted else None
    response = hook.post(body)
    assert response.status_code == 200, response.content
    return response


def sent_collection(hook: Hook, *, phone: str = PHONE, **variables: Any) -> BillingContact:
    """A collection message the worker sent to `phone`, with its chat history."""
    contact = hook.sent_contact(phone=phone)
    if variables:
        BillingContact.objects.filter(pk=contact.pk).update(variables=variables)
        contact.refresh_from_db()
    record_outbound_message(
        contact=contact,
        instance=hook.instance,
        text="Sua fatura venceu.",
        provider_message_id=contact.provider_message_id,
    )
    return contact


def pending_collection(
    hook: Hook,
    *,
    phone: str = PHONE,
    status: str = ContactStatus.PENDING,
    queue_status: str = QueueStatus.PENDING,
    **fields: Any,
) -> BillingContact:
    """A collection message to `phone` not sent yet, in a queue of its own."""
    queue = build_queue(hook.tenant, template=hook.template(), total=1, instance=hook.instance, status=queue_status)
    return build_contact(queue, phone=phone, status=status, variation=hook.template().variations.first(), **fields)


def status_of(contact: BillingContact) -> str:
    return BillingContact.objects.values_list("status", flat=True).get(pk=contact.pk)


def reply_callbacks(tenant) -> list[dict[str, Any]]:
    return [
        d.payload["data"] for d in CallbackDelivery.objects.filter(tenant=tenant, event="reply.received").order_by("id")
    ]


def with_callback_url(hook: Hook) -> None:
    from apps.billing.models import BillingConfig

    BillingConfig.objects.filter(tenant=hook.tenant).update(callback_url="https://crm.example.com/hooks/billing")


def queue_of(contact: BillingContact) -> BillingQueue:
    return BillingQueue.objects.get(pk=contact.queue_id)


def soon(**delta: float):
    return timezone.now() + timezone.timedelta(**delta)
