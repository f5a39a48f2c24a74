"""Chat history of billing messages and the periodic closing of idle conversations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.billing.models import BillingContact
from apps.billing.services.chat_history import (
    close_idle_billing_conversations,
    record_inbound_message,
    record_outbound_message,
)
from apps.billing.tests.support.webhooks import PHONE
from apps.chat.models import Conversation, Message


def test_a_billing_message_is_stored_linked_and_closes_a_new_conversation(hook):
    contact = hook.sent_contact()
    message = record_outbound_message(
        contact=contact,
        instance=hook.instance,
        text="Sua fatura venceu.",
        provider_message_id=contact.provider_message_id,
    )
    assert (message.direction, message.status, message.source, message.content) == (
        "outbound",
        "sent",
        "billing",
        "Sua fatura venceu.",
    )
    assert message.provider_message_id == contact.provider_message_id and message.sent_at
    assert BillingContact.objects.get(pk=contact.pk).message_id == message.pk
    assert message.billing_contact.pk == contact.pk  # a Message knows its billing contact
    conversation = message.conversation
    assert (conversation.tenant_id, conversation.instance_id, conversation.contact_phone) == (
        hook.tenant.pk,
        hook.instance.pk,
        PHONE,
    )
    assert (conversation.status, conversation.closed_by) == ("closed", "billing") and conversation.closed_at


def test_one_conversation_per_phone_and_instance(hook):
    first, second = hook.sent_contact(), hook.sent_contact()
    for contact in (first, second):
        record_outbound_message(
            contact=contact, instance=hook.instance, text="x", provider_message_id=contact.provider_message_id
        )
    assert Conversation.objects.filter(contact_phone=PHONE).count() == 1
    assert Message.objects.filter(conversation__contact_phone=PHONE).count() == 2


def test_an_open_conversation_is_not_closed_by_a_billing_message(hook):
    """Someone may be talking to that customer: an automated message does not end it."""
    record_inbound_message(instance=hook.instance, phone=PHONE, text="Oi", provider_message_id="3A5F01")
    contact = hook.sent_contact()
    record_outbound_message(
        contact=contact, instance=hook.instance, text="x", provider_message_id=contact.provider_message_id
    )
    assert Conversation.objects.get(contact_phone=PHONE).status == "open"


def test_record_outbound_message_works_inside_the_callers_transaction(hook, django_assert_max_num_queries):
    contact = hook.sent_contact()
    with django_assert_max_num_queries(8):
        record_outbound_message(
            contact=contact, instance=hook.instance, text="x", provider_message_id=contact.provider_message_id
        )


# ----------------------------------------------------------------------------- idle closing
def conversation_with(hook, *, phone: str, messages: list[tuple[str, str, int]], idle_hours: float) -> Conversation:
    """`messages`: (direction, source, hours ago)."""
    now = timezone.now()
    conversation = Conversation.objects.create(
        tenant=hook.tenant,
        instance=hook.instance,
        contact_phone=phone,
        status="open",
        last_message_at=now - timedelta(hours=idle_hours),
    )
    for direction, source, hours_ago in messages:
        message = Message.objects.create(
            tenant=hook.tenant,
            conversation=conversation,
            direction=direction,
            content="x",
            source=source,
            status="received" if direction == "inbound" else "sent",
        )
        Message.objects.filter(pk=message.pk).update(created_at=now - timedelta(hours=hours_ago))
    return conversation


@pytest.mark.parametrize(
    "messages,idle_hours,closes",
    [
        # billing sent, the customer answered, nobody from the tenant did: closed
        ([("outbound", "billing", 30), ("inbound", "whatsapp", 26)], 26, True),
        # the opt-out confirmation is automated too: still unanswered
        ([("outbound", "billing", 30), ("inbound", "whatsapp", 26), ("outbound", "opt_out", 26)], 26, True),
        # an agent answered after the reply: the tenant's conversation, left alone
        ([("outbound", "billing", 30), ("inbound", "whatsapp", 28), ("outbound", "agent", 26)], 26, False),
        # an agent answered an earlier reply, the customer wrote again, no answer: closed
        (
            [
                ("outbound", "billing", 40),
                ("inbound", "whatsapp", 39),
                ("outbound", "agent", 38),
                ("inbound", "whatsapp", 30),
            ],
            30,
            True,
        ),
        # not idle long enough
        ([("outbound", "billing", 5), ("inbound", "whatsapp", 2)], 2, False),
        # no billing message: not ours to close
        ([("inbound", "whatsapp", 30)], 30, False),
        # billing only, no reply (an open conversation billing did not open): left alone
        ([("outbound", "billing", 30)], 30, False),
    ],
)
def test_idle_unanswered_billing_conversations_are_closed_by_the_system(hook, messages, idle_hours, closes):
    conversation = conversation_with(hook, phone=PHONE, messages=messages, idle_hours=idle_hours)
    assert close_idle_billing_conversations() == (1 if closes else 0)
    conversation.refresh_from_db()
    assert conversation.status == ("closed" if closes else "open")
    if closes:
        assert conversation.closed_by == "system" and conversation.closed_at


def test_the_idle_time_is_a_setting(hook, settings):
    settings.BILLING_CONVERSATION_IDLE_HOURS = 48
    conversation_with(
        hook, phone=PHONE, messages=[("outbound", "billing", 30), ("inbound", "whatsapp", 26)], idle_hours=26
    )
    assert close_idle_billing_conversations() == 0
    assert close_idle_billing_conversations(now=timezone.now() + timedelta(hours=23)) == 1


def test_a_reply_after_the_system_closed_it_reopens_it(hook):
    conversation = conversation_with(
        hook, phone=PHONE, messages=[("outbound", "billing", 30), ("inbound", "whatsapp", 26)], idle_hours=26
    )
    close_idle_billing_conversations()
    record_inbound_message(instance=hook.instance, phone=PHONE, text="Oi de novo", provider_message_id="3A5F02")
    conversation.refresh_from_db()
    assert (conversation.status, conversation.closed_by) == ("open", "")
