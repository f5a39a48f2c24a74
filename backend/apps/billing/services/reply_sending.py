"""Send an answer in a conversation: automatically (an intent's answer) or a person's reply.

Both go through the same path as any message: a one-contact notification queue created by
`BillingCampaignService.ingest`, published to the broker, sent by the worker at the instance's
pace through the provider client, recorded in the chat history, tracked by receipts and
reported by callbacks. A `ConversationReply` row, written in the same transaction, says which
conversation the contact answers and who wrote it.

Idempotency is ingest's: the external id is `reply:auto:<conversation>:<intent>:<day>` for an
automatic answer (a second one the same day is the same request, so it is never sent twice)
and `reply:staff:<conversation>:<key>` for a person's, with the caller's key when given (a
retried POST is answered with the first reply), else a fresh one.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from apps.billing.constants import TemplateType
from apps.billing.models import (
    BillingAPIKey,
    BillingContact,
    BillingTemplate,
    ConversationReply,
    ReplySettings,
)
from apps.billing.services.billing_campaign_service import BillingCampaignService
from apps.billing.services.debtor_data import payment_data
from apps.billing.services.opt_out import is_suppressed
from apps.billing.services.reply_templates import (
    STAFF_REPLY_VARIABLE,
    payment_info_template,
    staff_reply_template,
)
from apps.billing.templating.date_calculator import today_in
from apps.billing.templating.sanitizer import TemplateSanitizer
from apps.chat.models import Conversation
from apps.common.exceptions import ApplicationError

logger = logging.getLogger(__name__)

MAX_REPLY_LENGTH = TemplateSanitizer.MAX_VALUE_LENGTH
DEFAULT_NAME = "Cliente"


@dataclass(frozen=True)
class QueuedReply:
    reply: ConversationReply
    created: bool  # False: the same request again (the first one's reply)
    queue_id: str


def answer_automatically(
    *, conversation: Conversation, intent: str, contact_id: int, settings: ReplySettings
) -> QueuedReply | None:
    """Queue the answer to `intent` with the payment data of the debt behind `contact_id`; None
    when there is no data to send. At most one per intent, conversation and (tenant) day;
    never to a suppressed phone. Raises `ApplicationError` when ingest refuses it."""
    tenant = conversation.tenant
    data = payment_data(contact_id=contact_id)
    if data is None or is_suppressed(tenant=tenant, phone=conversation.contact_phone):
        return None
    day = today_in(tenant.timezone)
    earlier = ConversationReply.objects.filter(
        conversation=conversation, kind=ConversationReply.Kind.AUTOMATIC, intent=intent, local_date=day
    ).first()
    if earlier is not None:
        return QueuedReply(earlier, False, str(earlier.contact.queue_id))
    contact: dict[str, Any] = {"variables": data.template_variables()}
    if data.amount is not None:
        contact["amount"] = str(data.amount)
    if data.due_date is not None:
        contact["due_date"] = data.due_date.isoformat()
    return _queue(
        conversation=conversation,
        template=payment_info_template(settings=settings),
        contact=contact,
        external_id=f"reply:auto:{conversation.pk}:{intent}:{day.isoformat()}",
        kind=ConversationReply.Kind.AUTOMATIC,
        intent=intent,
    )


def send_staff_reply(
    *,
    conversation: Conversation,
    text: str,
    author_user: User | None = None,
    author_api_key: BillingAPIKey | None = None,
    idempotency_key: str = "",
) -> QueuedReply:
    """Queue a person's reply. Refused (4xx `ApplicationError`) when it is empty or too long
    once made safe for WhatsApp, or the phone opted out; ingest's own refusals pass through."""
    cleaned = TemplateSanitizer.clean_value(text or "")
    if not cleaned:
        raise ApplicationError(
            "empty_text", "The reply is empty once markup and control characters are removed.", status=400
        )
    if len(text) > MAX_REPLY_LENGTH:
        raise ApplicationError(
            "text_too_long",
            f"A reply has at most {MAX_REPLY_LENGTH} characters.",
            status=400,
            details={"max_length": MAX_REPLY_LENGTH, "length": len(text)},
        )
    if is_suppressed(tenant=conversation.tenant, phone=conversation.contact_phone):
        raise ApplicationError(
            "opted_out", "This phone asked not to receive messages; only the tenant's admin can lift it.", status=422
        )
    settings = ReplySettings.for_tenant(conversation.tenant)
    key = idempotency_key or uuid.uuid4().hex
    return _queue(
        conversation=conversation,
        template=staff_reply_template(settings=settings),
        contact={"variables": {STAFF_REPLY_VARIABLE: cleaned}},
        external_id=f"reply:staff:{conversation.pk}:{key}",
        kind=ConversationReply.Kind.STAFF,
        author_user=author_user,
        author_api_key=author_api_key,
    )


def _queue(
    *,
    conversation: Conversation,
    template: BillingTemplate,
    contact: dict[str, Any],
    external_id: str,
    kind: str,
    intent: str = "",
    author_user: User | None = None,
    author_api_key: BillingAPIKey | None = None,
) -> QueuedReply:
    if conversation.instance is None:
        raise ApplicationError("no_instance", "This conversation has no WhatsApp instance to answer from.", status=422)
    data = {
        "external_id": external_id,
        "template": str(template.pk),
        "instance": conversation.instance.name,
        "strict": True,
        "metadata": {"conversation_id": conversation.pk, "reply": kind, "intent": intent},
        "contacts": [
            {"phone": conversation.contact_phone, "name": conversation.contact_name or DEFAULT_NAME, **contact}
        ],
    }
    with transaction.atomic():  # the queue and the reply row commit together; the publish follows the commit
        result = BillingCampaignService(tenant=conversation.tenant, api_key=author_api_key).ingest(
            template_type=TemplateType.NOTIFICATION, data=data, raw_payload=data
        )
        queue_id = result.body["queue_id"]
        billing_contact = BillingContact.objects.get(queue_id=queue_id, tenant=conversation.tenant)
        reply, _ = ConversationReply.objects.get_or_create(
            contact=billing_contact,
            defaults={
                "tenant": conversation.tenant,
                "conversation": conversation,
                "kind": kind,
                "intent": intent,
                "local_date": today_in(conversation.tenant.timezone),
                "author_user": author_user,
                "author_api_key": author_api_key,
            },
        )
    logger.info(
        "billing conversation reply queued",
        extra={
            "tenant_id": str(conversation.tenant_id),
            "conversation_id": conversation.pk,
            "reply_kind": str(kind),
            "intent": intent,
            "queue_id": queue_id,
            "new_queue": result.created,
        },
    )
    return QueuedReply(reply, result.created, queue_id)
