"""What a customer's reply makes the service do, decided by its intent and the tenant's
`ReplySettings` (safe defaults):

    claims_paid    hold the debtor's pending collection messages N days (debtor_holds.hold_debtor)
    wrong_person   suppress the phone, stop its pending messages (opt_out.suppress, debtor_holds.stop_debtor)
    payment_info   answer once a day with the debt's payment data (reply_sending.answer_automatically)
    negotiate      flag the conversation for a person
    talk_to_human  flag the conversation for a person
    opt_out        as before: suppress and confirm (inbound_messages)

Holding, suppressing and answering are acted on only at `min_confidence` or above; below it,
when the tenant turned that action off, or when there is nothing to act with (no payment data,
no conversation yet), the conversation is flagged for a person instead. Only replies to our messages act: a number we never wrote to (or
not within BILLING_REPLY_WINDOW_DAYS) is stored and changes nothing else.

Three steps, because of the lock order (queue rows in id order, contacts, variation, then the
conversation — the worker's): `lock_before_credit` takes the queue locks a hold or a stop needs
before the reply is credited; `act_before_store` runs before the inbound message is stored (it
locks contact rows, and an automatic answer's ingest the template variation); `record_after_store`
runs after, with the conversation row locked: the intent and the flag on the conversation, and
the `reply.received` callback. Both run in the webhook's transaction: a retried webhook rolls
all of it back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.billing.conversations.live import publish_conversation_update
from apps.billing.models import (
    BillingContact,
    BillingQueue,
    CallbackEvent,
    ReplySettings,
    SuppressedPhone,
)
from apps.billing.services import opt_out
from apps.billing.services.callbacks import enqueue_event
from apps.billing.services.debtor_holds import hold_debtor, lock_debtor_queues, stop_debtor
from apps.billing.services.reply_sending import answer_automatically
from apps.chat.models import Conversation, Message
from apps.chat.services import conversations
from apps.chat.services.reply_intents import (
    CLAIMS_PAID,
    NEGOTIATE,
    PAYMENT_INFO,
    TALK_TO_HUMAN,
    WRONG_PERSON,
    IntentResult,
)
from apps.common.exceptions import ApplicationError
from apps.connections.models import WhatsAppInstance

logger = logging.getLogger(__name__)

WRONG_PERSON_REASON = "wrong person (reply)"
HOLD_REASON = "held: the debtor says it is paid (reply)"


@dataclass
class ReplyPlan:
    """What one reply did; `actions` goes to the CRM in `reply.received` (ids and counts only)."""

    instance: WhatsAppInstance
    phone: str
    contact: dict[str, Any] | None  # the billing contact the reply answers; None: we never wrote to them
    result: IntentResult
    attention_reason: str = ""
    actions: dict[str, Any] = field(default_factory=dict)
    settings: ReplySettings | None = None  # read once, for a reply to one of our messages

    def flag(self) -> None:
        self.attention_reason = self.result.intent
        self.actions["needs_attention"] = True


def lock_before_credit(
    *, instance: WhatsAppInstance, phone: str, contact: dict[str, Any] | None, result: IntentResult
) -> None:
    """Before crediting the reply (which locks the queue of the contact it answers), take every
    queue lock a hold or a stop may need, in id order (debtor_holds.lock_debtor_queues)."""
    if contact is not None and result.intent in (CLAIMS_PAID, WRONG_PERSON):
        lock_debtor_queues(tenant=instance.tenant, phone=phone, also=[contact["queue_id"]])


def act_before_store(
    *, instance: WhatsAppInstance, phone: str, contact: dict[str, Any] | None, result: IntentResult
) -> ReplyPlan:
    plan = ReplyPlan(instance, phone, contact, result)
    if contact is None:
        return plan
    settings = plan.settings = ReplySettings.for_tenant(instance.tenant)
    sure = result.confidence >= settings.min_confidence
    intent = result.intent
    if intent == CLAIMS_PAID:
        if sure and settings.hold_days_on_claims_paid:
            _hold(plan, settings)
        else:
            plan.flag()
    elif intent == WRONG_PERSON:
        if sure and settings.suppress_wrong_person:
            _suppress(plan)
        else:
            plan.flag()
    elif intent == PAYMENT_INFO:
        if not (sure and settings.answer_payment_info and _answer(plan, settings, contact_id=contact["pk"])):
            plan.flag()
    elif (intent == NEGOTIATE and settings.flag_negotiate) or (intent == TALK_TO_HUMAN and settings.flag_talk_to_human):
        plan.flag()
    return plan


def _hold(plan: ReplyPlan, settings: ReplySettings) -> None:
    until = timezone.now() + timedelta(days=settings.hold_days_on_claims_paid)
    held = hold_debtor(tenant=plan.instance.tenant, phone=plan.phone, until=until, reason=HOLD_REASON)
    plan.actions.update(held_contacts=held, held_until=until.isoformat())


def _suppress(plan: ReplyPlan) -> None:
    tenant = plan.instance.tenant
    opt_out.suppress(
        tenant=tenant, phone=plan.phone, reason=WRONG_PERSON_REASON, source=SuppressedPhone.Source.INBOUND_REPLY
    )
    plan.actions.update(
        suppressed=True, stopped_contacts=stop_debtor(tenant=tenant, phone=plan.phone, reason=WRONG_PERSON_REASON)
    )


def _answer(plan: ReplyPlan, settings: ReplySettings, *, contact_id: int) -> bool:
    """Queue the automatic answer; False when a person has to answer instead."""
    if opt_out.is_suppressed(tenant=plan.instance.tenant, phone=plan.phone):
        return True  # nobody may write to this phone: nothing to send, no one to ask
    conversation = (
        Conversation.objects.select_related("tenant", "instance")
        .filter(tenant_id=plan.instance.tenant_id, instance=plan.instance, contact_phone=plan.phone)
        .first()
    )
    if conversation is None:
        return False
    try:
        queued = answer_automatically(
            conversation=conversation, intent=plan.result.intent, contact_id=contact_id, settings=settings
        )
    except ApplicationError as refused:  # e.g. the instance was deactivated: a person answers
        logger.warning(
            "billing automatic answer refused",
            extra={
                "tenant_id": str(plan.instance.tenant_id),
                "conversation_id": conversation.pk,
                "error_code": refused.code,
            },
        )
        return False
    if queued is None:
        return False
    plan.actions["answer"] = {"reply_id": queued.reply.pk, "queue_id": queued.queue_id, "new": queued.created}
    return True


def record_after_store(*, plan: ReplyPlan, message: Message) -> None:
    waiting = conversations.record_reply_intent(
        message=message,
        intent=plan.result.intent,
        confidence=plan.result.confidence,
        attention_reason=plan.attention_reason,
    )
    if plan.contact is not None and plan.settings is not None:  # the settings are read for every contact
        _tell_the_crm(plan, message, contact_id=plan.contact["pk"], settings=plan.settings)
    if waiting:  # the staff inbox shows conversations waiting for a person: tell its open pages
        tenant_id, conversation_id = plan.instance.tenant_id, message.conversation_id
        transaction.on_commit(lambda: publish_conversation_update(tenant_id=tenant_id, conversation_id=conversation_id))


def _tell_the_crm(plan: ReplyPlan, message: Message, *, contact_id: int, settings: ReplySettings) -> None:
    contact = (
        BillingContact.objects.filter(pk=contact_id)
        .values(
            "external_id",
            "queue_id",
            "billing_campaign_id",
            "billing_campaign__external_id",
            "billing_campaign__metadata",
        )
        .first()
    )
    if contact is None:  # erased since the reply was matched to it: nothing left to tell
        return
    queue = BillingQueue.objects.filter(pk=contact["queue_id"]).only("pk", "tenant").first()
    data = {
        "conversation_id": message.conversation_id,
        "message_id": message.pk,
        "phone": plan.phone,
        "contact_id": contact_id,
        "contact_external_id": contact["external_id"],
        "queue_id": str(contact["queue_id"]),
        "billing_campaign_id": str(contact["billing_campaign_id"]),
        "external_id": contact["billing_campaign__external_id"],
        "metadata": contact["billing_campaign__metadata"],
        "intent": plan.result.intent,
        "confidence": plan.result.confidence,
        "actions": plan.actions,
        "received_at": message.created_at,
    }
    if settings.callback_include_text:
        data["text"] = message.content
    enqueue_event(tenant=plan.instance.tenant, queue=queue, event=CallbackEvent.REPLY_RECEIVED, data=data)
