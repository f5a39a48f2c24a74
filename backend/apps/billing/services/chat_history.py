"""Chat history for billing: every message sent or received lands in a Conversation.

An outbound message's history has one writer, `outbound_chat_ctes`: the worker runs it inside
its outcome statement (`OutboundChat`, through `queue_lease.record_sent`), and the other senders
run it alone through `record_outbound_message` / `record_outbound_text` (reconciliation through
`store_outbound_message`, in its own transaction); the provider webhooks call
`record_inbound_message`; the periodic task calls `close_idle_billing_conversations`.

Conversation life (one per tenant + instance + phone):

* A billing message is history, not a ticket: a new conversation starts *closed* with
  `closed_by="billing"`, and a closed one stays closed (now closed by billing). An *open*
  conversation is left open: somebody may be talking to that customer, and an automated
  message must not close their conversation.
* A customer's reply reopens it (status open, closed_by cleared), so the tenant's staff see it.
* If nobody from the tenant answers, the periodic task closes it again (closed_by "system")
  once it has been idle for BILLING_CONVERSATION_IDLE_HOURS. "Answered" means an outbound
  message that is not automated (source other than billing / opt_out) after the customer's
  last inbound message; conversations without any billing message are never touched.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from apps.billing.models import BillingContact
from apps.chat.models import Conversation, Message

if TYPE_CHECKING:
    from apps.connections.models import WhatsAppInstance

SOURCE_BILLING = "billing"
SOURCE_OPT_OUT = "opt_out"
SOURCE_WHATSAPP = "whatsapp"
#: Messages we send by ourselves: they never count as the tenant answering a customer.
AUTOMATED_SOURCES = (SOURCE_BILLING, SOURCE_OPT_OUT)
CLOSED_BY_BILLING = "billing"
CLOSED_BY_SYSTEM = "system"


# "Get or create, then touch", as one INSERT … ON CONFLICT: a new conversation starts closed by
# billing; a closed one stays closed (now by billing); an open one stays open (someone may be
# talking). Every outbound message is written by `outbound_chat_ctes`, the worker's outcome
# statement and `store_outbound_message` alike.
_TABLE = Conversation._meta.db_table
_TOUCH_ON_CONFLICT = f"""ON CONFLICT (tenant_id, instance_id, contact_phone) DO UPDATE SET
    last_message_at = EXCLUDED.last_message_at,
    updated_at = EXCLUDED.updated_at,
    closed_by = CASE WHEN {_TABLE}.status = 'closed' THEN EXCLUDED.closed_by ELSE {_TABLE}.closed_by END,
    closed_at = CASE WHEN {_TABLE}.status = 'closed' THEN EXCLUDED.closed_at ELSE {_TABLE}.closed_at END
RETURNING id"""


def record_outbound_message(
    *, contact: BillingContact, instance: WhatsAppInstance, text: str, provider_message_id: str
) -> Message:
    """Store a sent billing message for a contact that is already `sent` (its own transaction).
    The worker instead writes the history in its outcome statement (`OutboundChat`), so the
    message, the contact's link to it and the counters commit together."""
    from apps.billing.services.delivery_status import apply_early_receipt

    with transaction.atomic():
        message = store_outbound_message(
            tenant_id=contact.tenant_id,
            instance=instance,
            phone=contact.phone,
            contact_name=contact.name,
            text=text,
            provider_message_id=provider_message_id,
        )
        BillingContact.objects.filter(pk=contact.pk).update(message=message)
        contact.message = message
    apply_early_receipt(tenant_id=contact.tenant_id, provider_message_id=provider_message_id)
    return message


def store_outbound_message(
    *,
    tenant_id: Any,
    instance: WhatsAppInstance | None,
    phone: str,
    contact_name: str,
    text: str,
    provider_message_id: str,
    source: str = SOURCE_BILLING,
) -> Message:
    """The conversation upsert and the message insert, in the caller's transaction: the
    worker's own SQL (`outbound_chat_ctes`) run for one row, so the history has one writer.
    Call `delivery_status.apply_early_receipt` after the commit."""
    chat = OutboundChat(
        tenant_id=tenant_id, instance_id=instance.pk if instance else None, phone=phone, contact_name=contact_name
    )
    with connection.cursor() as cursor:
        cursor.execute(
            _store_one_statement(), chat.params(text=text, provider_message_id=provider_message_id, source=source)
        )
        message_id = cursor.fetchone()[0]
    return Message.objects.get(pk=message_id)


@functools.cache
def _store_one_statement() -> str:
    chat = outbound_chat_ctes(rows="one_row", message_id="message_id")
    return f"WITH one_row AS (SELECT 1), message_id AS (SELECT {next_message_id_sql()} AS id),{chat}\nSELECT id FROM message_id"


@dataclass(frozen=True)
class OutboundChat:
    """Whose chat history a sent billing message joins. The worker hands it to
    `queue_lease.record_sent`, which writes the conversation upsert and the message insert in
    the same statement as the outcome (`outbound_chat_ctes`), so they commit together."""

    tenant_id: Any
    instance_id: int | None
    phone: str
    contact_name: str

    def params(self, *, text: str, provider_message_id: str, source: str = SOURCE_BILLING) -> dict[str, Any]:
        return {
            "chat_tenant": self.tenant_id,
            "chat_instance": self.instance_id,
            "chat_phone": self.phone,
            "chat_name": self.contact_name[:200],
            "chat_closed_by": CLOSED_BY_BILLING,
            "chat_text": text,
            "chat_pmid": provider_message_id[:128],
            "chat_source": source,
            # The application's clock, not the transaction's: a conversation's order is the
            # order its messages happened in, whatever transaction wrote them.
            "chat_now": timezone.now(),
        }


def outbound_chat_ctes(*, rows: str, message_id: str, after: str | None = None) -> str:
    """SQL for two CTEs, `conversation` and `message`: the one write of an outbound message's
    history (see the upsert's rules above), run once per row of the CTE `rows` (none when it is empty); the
    message's id is the one the CTE `message_id` drew from its sequence, so the outcome's
    UPDATE can link the contact to it in the same statement. Parameters: `OutboundChat.params`.

    `after` names a data-modifying CTE (with RETURNING) that must have run before the
    conversation row is locked. PostgreSQL runs unreferenced write CTEs last, so without it a
    statement could lock the conversation before, say, the variation row, the reverse of a
    customer's reply (`inbound_messages`: variation, then conversation), and deadlock with it.
    The one-time filter reads `after` to the end before the INSERT gets its first row."""
    ordering = f"\n     WHERE (SELECT count(*) FROM {after}) >= 0" if after else ""
    return f"""
conversation AS (
    INSERT INTO {_TABLE} (tenant_id, instance_id, contact_phone, contact_name, status, closed_by, closed_at,
                          last_message_at, created_at, updated_at)
    SELECT %(chat_tenant)s, %(chat_instance)s, %(chat_phone)s, %(chat_name)s, 'closed', %(chat_closed_by)s,
           %(chat_now)s, %(chat_now)s, %(chat_now)s, %(chat_now)s
      FROM {rows}{ordering}
    {_TOUCH_ON_CONFLICT}
),
message AS (
    INSERT INTO {Message._meta.db_table}
        (id, tenant_id, conversation_id, direction, content, provider_message_id, status, source, created_at,
         sent_at)
    SELECT (SELECT id FROM {message_id}), %(chat_tenant)s, conversation.id, 'outbound', %(chat_text)s,
           %(chat_pmid)s, 'sent', %(chat_source)s, %(chat_now)s, %(chat_now)s
      FROM conversation
)"""


@functools.cache
def next_message_id_sql() -> str:
    """`nextval(...)` of chat_message's id sequence, its name looked up once per process (a
    look-up in the statement itself would cost catalog reads on every message)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [Message._meta.db_table])
        name = cursor.fetchone()[0]
    return "nextval('{}'::regclass)".format(name.replace("'", "''"))


def record_outbound_text(
    *, instance: WhatsAppInstance, phone: str, text: str, provider_message_id: str, source: str
) -> Message:
    """An automated message that belongs to no billing contact (e.g. the opt-out answer)."""
    with transaction.atomic():
        return store_outbound_message(
            tenant_id=instance.tenant_id,
            instance=instance,
            phone=phone,
            contact_name="",
            text=text,
            provider_message_id=provider_message_id,
            source=source,
        )


def record_inbound_message(
    *, instance: WhatsAppInstance, phone: str, text: str, provider_message_id: str, contact_name: str = ""
) -> Message | None:
    """Store a customer's message and reopen the conversation; None when this provider message
    was already stored (the provider retries webhooks). The conversation row lock serialises
    concurrent deliveries of the same message, so the duplicate check cannot race."""
    now = timezone.now()
    with transaction.atomic():
        conversation, _ = Conversation.objects.get_or_create(
            tenant_id=instance.tenant_id,
            instance=instance,
            contact_phone=phone,
            defaults={"contact_name": contact_name[:200], "status": Conversation.Status.OPEN, "last_message_at": now},
        )
        conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if (
            provider_message_id
            and Message.objects.filter(
                conversation=conversation, direction=Message.Direction.INBOUND, provider_message_id=provider_message_id
            ).exists()
        ):
            return None
        message = Message.objects.create(
            tenant_id=instance.tenant_id,
            conversation=conversation,
            direction=Message.Direction.INBOUND,
            content=text,
            provider_message_id=provider_message_id[:128],
            status=Message.Status.RECEIVED,
            source=SOURCE_WHATSAPP,
        )
        Conversation.objects.filter(pk=conversation.pk).update(
            status=Conversation.Status.OPEN,
            closed_by="",
            closed_at=None,
            last_message_at=now,
            updated_at=now,
            contact_name=conversation.contact_name or contact_name[:200],
        )
    return message


def close_idle_billing_conversations(now: datetime | None = None) -> int:
    """Close (closed_by "system") open conversations that billing took part in, where the
    customer wrote and nobody from the tenant answered, idle for BILLING_CONVERSATION_IDLE_HOURS.
    One UPDATE; returns how many were closed."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=float(settings.BILLING_CONVERSATION_IDLE_HOURS))
    # An inbound message with no human answer after it exists iff the latest one has none.
    answered_after = Message.objects.filter(
        conversation=OuterRef("conversation_id"),
        direction=Message.Direction.OUTBOUND,
        created_at__gt=OuterRef("created_at"),
    ).exclude(source__in=AUTOMATED_SOURCES)
    unanswered_inbound = Message.objects.filter(
        conversation=OuterRef("pk"), direction=Message.Direction.INBOUND
    ).exclude(Exists(answered_after))
    billing_message = Message.objects.filter(conversation=OuterRef("pk"), source=SOURCE_BILLING)
    return Conversation.objects.filter(
        Exists(billing_message),
        Exists(unanswered_inbound),
        status=Conversation.Status.OPEN,
        last_message_at__lt=cutoff,
    ).update(status=Conversation.Status.CLOSED, closed_by=CLOSED_BY_SYSTEM, closed_at=now, updated_at=now)
