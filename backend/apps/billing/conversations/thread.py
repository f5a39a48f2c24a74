"""One conversation as people read it: its messages with who wrote each, and answers still queued.

Outbound messages are told apart by their `ConversationReply` (an automatic answer, a person's
reply) or, without one, by their source (a collection message, the opt-out confirmation).
"""

from __future__ import annotations

from dataclasses import dataclass

from apps.billing.constants import ContactStatus
from apps.billing.models import ConversationReply
from apps.chat.models import Conversation, Message
from apps.chat.services.conversations import latest_messages

THREAD_LIMIT = 200
_SOURCE_AUTHORS = {"billing": "collection", "opt_out": "opt_out"}
_IN_FLIGHT = sorted({ContactStatus.PENDING, ContactStatus.PENDING_RETRY, ContactStatus.SENDING})


@dataclass(frozen=True)
class ThreadMessage:
    message: Message
    author: str  # customer, collection, automatic, staff, opt_out
    author_label: str  # who, for people: "automática", a staff member's name, "API (CRM)"


@dataclass(frozen=True)
class Thread:
    conversation: Conversation
    messages: list[ThreadMessage]
    queued: list[ConversationReply]  # answers not handed to the provider yet
    has_more: bool  # older messages than THREAD_LIMIT exist


def build_thread(*, conversation: Conversation, limit: int = THREAD_LIMIT) -> Thread:
    messages = latest_messages(conversation=conversation, limit=limit + 1)
    has_more = len(messages) > limit
    messages = messages[-limit:]
    outbound = [m.pk for m in messages if m.direction == Message.Direction.OUTBOUND]
    replies = {
        reply.contact.message_id: reply
        for reply in ConversationReply.objects.filter(
            conversation=conversation, contact__message_id__in=outbound
        ).select_related("contact", "author_user", "author_api_key")
    }
    queued = list(
        ConversationReply.objects.filter(conversation=conversation, contact__status__in=_IN_FLIGHT)
        .select_related("contact", "author_user", "author_api_key")
        .order_by("id")
    )
    return Thread(conversation, [_author(message, replies.get(message.pk)) for message in messages], queued, has_more)


def _author(message: Message, reply: ConversationReply | None) -> ThreadMessage:
    if message.direction == Message.Direction.INBOUND:
        return ThreadMessage(message, "customer", "cliente")
    if reply is not None:
        return ThreadMessage(message, reply.kind, reply.author_label)
    author = _SOURCE_AUTHORS.get(message.source, message.source or "collection")
    return ThreadMessage(message, author, {"collection": "cobrança", "opt_out": "descadastro"}.get(author, author))
