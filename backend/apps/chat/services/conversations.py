"""Conversations: tenant-scoped reads, and the state a customer's reply or a person changes.

Every read takes `tenant=` (another tenant's conversation is "not found"); every write names
what changes and why:

* `record_reply_intent` — the classifier's answer on an inbound message, the conversation's
  `last_intent`, and `needs_attention` when a person should answer. Called by billing's inbound
  hook in the webhook's transaction, after the conversation row is locked by the store.
* `resolve` — a person is done: the flag goes, the conversation closes (`closed_by="agent"`).
  A later reply reopens it, as any reply does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Case, F, QuerySet, Value, When
from django.utils import timezone

from apps.chat.models import Conversation, Message
from apps.tenancy.models import Tenant

CLOSED_BY_AGENT = "agent"


class ConversationNotFound(Exception):
    pass


@dataclass(frozen=True)
class ConversationFilters:
    phone: str | None = None  # E.164
    status: str | None = None
    needs_attention: bool | None = None
    intent: str | None = None  # the latest inbound message's
    date_from: date | None = None  # last message on or after, tenant's calendar
    date_to: date | None = None  # last message on or before


def conversation_list(*, tenant: Tenant, filters: ConversationFilters = ConversationFilters()) -> QuerySet:
    """The tenant's conversations, the latest activity first."""
    rows = Conversation.objects.filter(tenant=tenant).select_related("instance")
    if filters.phone:
        rows = rows.filter(contact_phone=filters.phone)
    if filters.status:
        rows = rows.filter(status=filters.status)
    if filters.needs_attention is not None:
        rows = rows.filter(needs_attention=filters.needs_attention)
    if filters.intent:
        rows = rows.filter(last_intent=filters.intent)
    if filters.date_from:
        rows = rows.filter(last_message_at__gte=_local_midnight(tenant, filters.date_from))
    if filters.date_to:
        rows = rows.filter(last_message_at__lt=_local_midnight(tenant, filters.date_to + timedelta(days=1)))
    return rows.order_by("-last_message_at", "-id")


def attention_list(*, tenant: Tenant) -> QuerySet:
    """The staff inbox: conversations waiting for a person, the latest customer message first."""
    return (
        Conversation.objects.filter(tenant=tenant, needs_attention=True)
        .select_related("instance")
        .order_by("-last_inbound_at", "-id")
    )


def conversation_get(*, tenant: Tenant, conversation_id: object) -> Conversation:
    try:
        pk = int(str(conversation_id))
    except ValueError:
        raise ConversationNotFound() from None
    conversation = Conversation.objects.select_related("instance").filter(tenant=tenant, pk=pk).first()
    if conversation is None:
        raise ConversationNotFound()
    return conversation


def latest_messages(*, conversation: Conversation, limit: int) -> list[Message]:
    """The last `limit` messages, oldest first (the order a thread reads)."""
    newest = Message.objects.filter(conversation=conversation, tenant_id=conversation.tenant_id).order_by("-id")
    return list(reversed(newest[:limit]))


def _local_midnight(tenant: Tenant, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tenant.tzinfo)


# ----------------------------------------------------------------------------- writes
def record_reply_intent(*, message: Message, intent: str, confidence: float, attention_reason: str = "") -> bool:
    """Store the classifier's answer and, with `attention_reason`, ask for a person. A flag
    already raised stays (with its first reason) until someone resolves the conversation.
    Returns whether the conversation now waits for a person."""
    now = timezone.now()
    Message.objects.filter(pk=message.pk).update(intent=intent, intent_confidence=confidence)
    changes: dict = {"last_intent": intent, "last_inbound_at": now, "updated_at": now}
    if attention_reason:
        changes["needs_attention"] = True
        changes["attention_reason"] = Case(
            When(needs_attention=True, then=F("attention_reason")), default=Value(attention_reason[:20])
        )
    Conversation.objects.filter(pk=message.conversation_id).update(**changes)
    return (
        bool(attention_reason) or Conversation.objects.filter(pk=message.conversation_id, needs_attention=True).exists()
    )


def resolve(*, conversation: Conversation) -> Conversation:
    """A person is done with it: no flag, closed by an agent."""
    now = timezone.now()
    Conversation.objects.filter(pk=conversation.pk, tenant_id=conversation.tenant_id).update(
        needs_attention=False,
        attention_reason="",
        status=Conversation.Status.CLOSED,
        closed_by=CLOSED_BY_AGENT,
        closed_at=now,
        updated_at=now,
    )
    conversation.refresh_from_db()
    return conversation
