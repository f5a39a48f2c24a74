"""A customer writes back (`messages.upsert` with `fromMe: false`).

The reply is stored in the chat history (reopening the conversation), credited to the billing
contact it answers, classified (`apps.chat.services.reply_intents`) and acted on
(`reply_actions`: hold, suppress, answer, flag for a person, tell the CRM):

* Which contact: the message the customer quoted (`contextInfo.stanzaId` = our provider id),
  else the most recent contact sent to that phone through this instance within
  BILLING_REPLY_WINDOW_DAYS. The contact gets `replied_at` (its status stays in the delivery
  chain) and the queue and variation `replied_count` go up — once per contact, whatever the
  number of replies (compare-and-swap on `replied_at IS NULL`). No contact (a number we never
  wrote to): the message is stored and nothing else happens, but for an opt-out.
* Text: the message's text, or an image's or document's caption (an image or a document is a
  likely payment receipt for the classifier); media is stored as `[imagem] caption`.
* Opt-out: the phone goes on the tenant's suppression list; the first time only, the
  confirmation is scheduled and a `contact.opted_out` callback recorded.

Everything but the confirmation happens in one transaction; a retried webhook finds the message
already stored and rolls back, so it changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.billing.constants import SENT_CONTACT_STATUSES
from apps.billing.models import (
    BillingContact,
    BillingQueue,
    BillingTemplateVariation,
    CallbackEvent,
    SuppressedPhone,
)
from apps.billing.services import opt_out, reply_actions
from apps.billing.services.callbacks import enqueue_event, on_contact_outcome
from apps.billing.services.chat_history import record_inbound_message
from apps.chat.services.reply_intents import OPT_OUT, classify
from apps.common.services.evolution_lookup import message_text
from apps.connections.models import WhatsAppInstance
from apps.contacts.utils import PhoneNumberError, mask_phone, normalize_phone

logger = logging.getLogger(__name__)

_PERSON_SUFFIXES = ("@s.whatsapp.net", "@c.us")


class _AlreadyReplied(Exception):
    pass


class _Duplicate(Exception):
    pass


# Evolution's media message keys → the label stored in the chat history; receipts are likely
# in the first two. `documentWithCaptionMessage` wraps a documentMessage (WhatsApp's newer shape).
_MEDIA = {
    "imageMessage": "imagem",
    "documentMessage": "documento",
    "audioMessage": "áudio",
    "videoMessage": "vídeo",
    "stickerMessage": "figurinha",
}
_RECEIPT_MEDIA = frozenset({"imageMessage", "documentMessage"})


@dataclass(frozen=True)
class InboundContent:
    text: str  # what the customer wrote (a caption for media)
    media: str = ""  # the Evolution key of the media, if any

    @property
    def maybe_receipt(self) -> bool:
        return self.media in _RECEIPT_MEDIA

    @property
    def stored_text(self) -> str:
        if not self.media:
            return self.text
        return f"[{_MEDIA[self.media]}] {self.text}".strip()


def inbound_content(message: Any) -> InboundContent:
    """The text of a message, or the caption and kind of its media."""
    text = message_text(message)
    if text or not isinstance(message, dict):
        return InboundContent(text)
    wrapped = message.get("documentWithCaptionMessage")
    if isinstance(wrapped, dict) and isinstance(wrapped.get("message"), dict):
        message = wrapped["message"]
    for key in _MEDIA:
        media = message.get(key)
        if isinstance(media, dict):
            return InboundContent(str(media.get("caption") or "")[:4096], key)
    return InboundContent("")


def quoted_message_id(data: dict[str, Any]) -> str:
    for context in (
        data.get("contextInfo"),
        ((data.get("message") or {}).get("extendedTextMessage") or {}).get("contextInfo"),
    ):
        if isinstance(context, dict) and context.get("stanzaId"):
            return str(context["stanzaId"])[:128]
    return ""


def sender_phone(key: dict[str, Any]) -> str | None:
    """E.164 of a person's JID; None for groups, broadcasts and unresolved LIDs."""
    jid = str(key.get("remoteJid") or "")
    if jid.endswith("@lid"):  # 2.3.6 does not swap in the phone JID itself (contract §4)
        jid = str(key.get("remoteJidAlt") or "")
    if not jid.endswith(_PERSON_SUFFIXES):
        return None
    try:
        return normalize_phone(jid.split("@", 1)[0].split(":", 1)[0])
    except PhoneNumberError:
        return None


def handle_inbound(*, instance: WhatsAppInstance, data: dict[str, Any]) -> str:
    """Process one `messages.upsert` item; returns a short outcome for the log."""
    key = data.get("key")
    if not isinstance(key, dict) or key.get("fromMe") is not False:
        return "ignored_own_message"
    phone = sender_phone(key)
    message_id = str(key.get("id") or "")[:128]
    if phone is None or not message_id:
        return "ignored_not_a_person"
    content = inbound_content(data.get("message"))
    result = classify(content.text, has_media=content.maybe_receipt)
    context = {"instance_id": instance.pk, "tenant_id": str(instance.tenant_id), "phone": mask_phone(phone)}
    try:
        with transaction.atomic():
            # Lock order: queue rows (in id order, all at once when a hold or a stop will need
            # several), contact rows (crediting the reply, holding the debtor), the template
            # variation (an automatic answer), then the conversation row (storing the reply) — the
            # order a worker holds them in, so the two cannot deadlock.
            contact = _replied_contact(instance=instance, phone=phone, quoted_id=quoted_message_id(data))
            reply_actions.lock_before_credit(instance=instance, phone=phone, contact=contact, result=result)
            if contact is not None:
                _mark_replied(contact)
            plan = reply_actions.act_before_store(instance=instance, phone=phone, contact=contact, result=result)
            stored = record_inbound_message(
                instance=instance,
                phone=phone,
                text=content.stored_text,
                provider_message_id=message_id,
                contact_name=str(data.get("pushName") or ""),
            )
            if stored is None:
                raise _Duplicate()
            reply_actions.record_after_store(plan=plan, message=stored)
            opted_out = result.intent == OPT_OUT and _opt_out(instance=instance, phone=phone, contact=contact)
    except _Duplicate:
        return "duplicate"  # a provider retry: everything above was rolled back
    logger.info(
        "billing inbound reply stored",
        extra={
            **context,
            "contact_id": contact["pk"] if contact else None,
            "opted_out": opted_out,
            "intent": result.intent,
            "confidence": result.confidence,
            "needs_attention": bool(plan.attention_reason),
            "actions": sorted(plan.actions),
        },
    )
    return "opted_out" if opted_out else ("reply" if contact else "inbound")


def _replied_contact(*, instance: WhatsAppInstance, phone: str, quoted_id: str) -> dict[str, Any] | None:
    sent = BillingContact.objects.filter(tenant_id=instance.tenant_id, status__in=sorted(SENT_CONTACT_STATUSES))
    fields = ("pk", "tenant_id", "queue_id", "variation_id", "replied_at")
    if quoted_id:
        row: dict[str, Any] | None = sent.filter(provider_message_id=quoted_id).values(*fields).first()
        if row is not None:
            return row
    since = timezone.now() - timedelta(days=float(settings.BILLING_REPLY_WINDOW_DAYS))
    latest: dict[str, Any] | None = (
        sent.filter(phone=phone, queue__instance=instance, sent_at__gte=since)
        .order_by("-sent_at")
        .values(*fields)
        .first()
    )
    return latest


def _mark_replied(contact: dict[str, Any]) -> None:
    if contact["replied_at"] is not None:
        return
    try:
        with transaction.atomic():  # queue row first, then the contact (queue_lease.py lock order)
            BillingQueue.objects.filter(pk=contact["queue_id"]).update(replied_count=F("replied_count") + 1)
            if not BillingContact.objects.filter(pk=contact["pk"], replied_at__isnull=True).update(
                replied_at=timezone.now(), updated_at=timezone.now()
            ):
                raise _AlreadyReplied()
            if contact["variation_id"]:
                BillingTemplateVariation.objects.filter(pk=contact["variation_id"]).update(
                    replied_count=F("replied_count") + 1
                )
            on_contact_outcome(_stub(contact), CallbackEvent.CONTACT_REPLIED)
    except _AlreadyReplied:
        pass


def _opt_out(*, instance: WhatsAppInstance, phone: str, contact: dict[str, Any] | None) -> bool:
    """Suppress the phone; True only the first time (the confirmation goes out once)."""
    _, created = opt_out.suppress(
        tenant=instance.tenant,
        phone=phone,
        reason="customer asked to stop (reply)",
        source=SuppressedPhone.Source.INBOUND_REPLY,
    )
    if not created:
        return False
    if contact is not None:
        on_contact_outcome(_stub(contact), CallbackEvent.CONTACT_OPTED_OUT, phone=phone)
    else:
        enqueue_event(tenant=instance.tenant, queue=None, event=CallbackEvent.CONTACT_OPTED_OUT, data={"phone": phone})
    opt_out.schedule_confirmation(tenant=instance.tenant, instance_id=instance.pk, phone=phone)
    logger.info(
        "billing phone opted out",
        extra={"instance_id": instance.pk, "tenant_id": str(instance.tenant_id), "phone": mask_phone(phone)},
    )
    return True


def _stub(contact: dict[str, Any]) -> BillingContact:
    """Enough of a contact for `on_contact_outcome`, which reads the fresh row itself."""
    return BillingContact(pk=contact["pk"], tenant_id=contact["tenant_id"])
