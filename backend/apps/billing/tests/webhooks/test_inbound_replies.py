"""Customer replies: stored, conversation reopened, contact credited once, opt-out handled."""

from __future__ import annotations

import copy

import pytest

from apps.billing.constants import ContactStatus
from apps.billing.models import BillingQueue, BillingTemplateVariation, SuppressedPhone
from apps.billing.services.chat_history import record_outbound_message
from apps.billing.tests.support.webhooks import MESSAGES_UPSERT_V2, PHONE, envelope
from apps.chat.models import Conversation, Message


def upsert(
    hook, *, text: str, message_id: str, quoted: str | None = None, jid: str = "5511998765432@s.whatsapp.net", **key
):
    body = envelope(MESSAGES_UPSERT_V2, hook.instance)
    body["data"]["key"] = {"remoteJid": jid, "fromMe": False, "id": message_id, **key}
    body["data"]["message"] = {"conversation": text}
    body["data"]["contextInfo"] = {"stanzaId": quoted, "quotedMessage": {"conversation": ""}} if quoted else None
    return hook.post(body)


def sent_with_history(hook, **kwargs):
    contact = hook.sent_contact(**kwargs)
    record_outbound_message(
        contact=contact,
        instance=hook.instance,
        text="Sua fatura venceu.",
        provider_message_id=contact.provider_message_id,
    )
    return contact


def test_the_contract_reply_reopens_the_conversation_and_marks_the_contact_replied(hook):
    contact = sent_with_history(hook, provider_message_id="3EB0A1B2C3D4E5F6", status=ContactStatus.DELIVERED)
    conversation = Conversation.objects.get(tenant=hook.tenant, contact_phone=PHONE)
    assert (conversation.status, conversation.closed_by) == ("closed", "billing")

    response = hook.post(envelope(MESSAGES_UPSERT_V2, hook.instance))  # the body printed in the contract
    assert response.status_code == 200
    assert response.json()["outcome"] == "reply"

    conversation.refresh_from_db()
    assert (conversation.status, conversation.closed_by, conversation.closed_at) == ("open", "", None)
    inbound = Message.objects.get(conversation=conversation, direction="inbound")
    assert (inbound.content, inbound.status, inbound.provider_message_id) == (
        "Já paguei",
        "received",
        "3A5F00000000000A",
    )
    contact.refresh_from_db()
    assert contact.replied_at is not None
    assert contact.status == ContactStatus.DELIVERED  # the delivery chain is untouched
    assert BillingQueue.objects.get(pk=contact.queue_id).replied_count == 1
    assert BillingTemplateVariation.objects.get(pk=contact.variation_id).replied_count == 1


def test_retried_and_repeated_replies_count_once(hook):
    contact = sent_with_history(hook)
    for _ in range(3):  # the provider retries the same webhook
        upsert(hook, text="Já paguei", message_id="3A5F0000000000B1", quoted=contact.provider_message_id)
    upsert(hook, text="Segue o comprovante", message_id="3A5F0000000000B2")  # a second, different reply
    assert Message.objects.filter(direction="inbound", conversation__contact_phone=PHONE).count() == 2
    assert BillingQueue.objects.get(pk=contact.queue_id).replied_count == 1
    assert BillingTemplateVariation.objects.get(pk=contact.variation_id).replied_count == 1


def test_a_reply_without_a_quote_goes_to_the_last_message_sent_to_that_phone(hook):
    older = sent_with_history(hook)
    newer = sent_with_history(hook)
    upsert(hook, text="Ok, obrigado", message_id="3A5F0000000000C1")
    older.refresh_from_db()
    newer.refresh_from_db()
    assert newer.replied_at is not None and older.replied_at is None


def test_the_quoted_message_wins_over_the_latest(hook):
    older = sent_with_history(hook)
    sent_with_history(hook)
    upsert(hook, text="Sobre esta", message_id="3A5F0000000000C2", quoted=older.provider_message_id)
    older.refresh_from_db()
    assert older.replied_at is not None


def test_a_stranger_writing_creates_an_open_conversation_and_credits_nobody(hook):
    response = upsert(hook, text="Oi, quem é?", message_id="3A5F0000000000D1", jid="5521987654321@s.whatsapp.net")
    assert response.json()["outcome"] == "inbound"
    conversation = Conversation.objects.get(contact_phone="+5521987654321")
    assert conversation.status == "open"


@pytest.mark.parametrize(
    "key,jid",
    [
        ({"fromMe": True}, "5511998765432@s.whatsapp.net"),  # our own message echoed
        ({}, "120363025246125486@g.us"),  # a group
        ({}, "status@broadcast"),
        ({}, "123456789012345@lid"),  # a LID without remoteJidAlt
    ],
)
def test_messages_that_are_not_a_customer_reply_are_ignored(hook, key, jid):
    before = Message.objects.count()
    response = upsert(hook, text="SAIR", message_id="3A5F0000000000E1", jid=jid, **key)
    assert response.status_code == 200
    assert response.json()["outcome"].startswith("ignored")
    assert Message.objects.count() == before
    assert not SuppressedPhone.objects.exists()


def test_a_lid_sender_with_its_phone_jid_is_understood(hook):
    upsert(
        hook,
        text="Oi",
        message_id="3A5F0000000000E2",
        jid="123456789012345@lid",
        remoteJidAlt="5511998765432@s.whatsapp.net",
    )
    assert Conversation.objects.filter(contact_phone=PHONE).exists()


def test_v1_text_from_extended_text_message(hook):
    body = envelope(MESSAGES_UPSERT_V2, hook.instance)
    body["data"] = {
        "key": {"remoteJid": "5511998765432@s.whatsapp.net", "fromMe": False, "id": "3A5F0000000000F1"},
        "pushName": "Maria",
        "message": {"extendedTextMessage": {"text": "Já paguei ontem"}},
        "messageTimestamp": 1717689200,
        "owner": hook.instance.instance_name,
        "source": "android",
    }
    assert hook.post(body).status_code == 200
    assert Message.objects.get(provider_message_id="3A5F0000000000F1").content == "Já paguei ontem"


def test_brazilian_numbers_without_the_ninth_digit_match_the_contact(hook):
    """Evolution drops the extra 9 for DDD >= 31 (createJid); normalize_phone puts it back."""
    contact = sent_with_history(hook, phone="+5531987654321")
    upsert(hook, text="Ok", message_id="3A5F0000000000F2", jid="553187654321@s.whatsapp.net")
    contact.refresh_from_db()
    assert contact.replied_at is not None


# ----------------------------------------------------------------------------- opt-out
@pytest.fixture
def inline_confirmation(settings):
    settings.BILLING_OPT_OUT_CONFIRMATION_ASYNC = False


def test_sair_suppresses_the_phone_and_confirms_once(
    make_sandbox_whatsapp_instance, evolution_sandbox, client, inline_confirmation, django_capture_on_commit_callbacks
):
    from apps.billing.tests.support.api import make_tenant
    from apps.billing.tests.support.webhooks import Hook

    api = make_tenant("optout-sandbox")
    instance = make_sandbox_whatsapp_instance(tenant=api.tenant)
    api.instance = instance
    hook = Hook(api, client)
    contact = sent_with_history(hook)
    for message_id in ("3A5F0000000000A1", "3A5F0000000000A1", "3A5F0000000000A2"):  # a retry, then "SAIR" again
        with django_capture_on_commit_callbacks(execute=True):
            upsert(hook, text="SAIR", message_id=message_id, quoted=contact.provider_message_id)

    suppressed = SuppressedPhone.objects.get(tenant=api.tenant, phone=PHONE)
    assert suppressed.source == SuppressedPhone.Source.INBOUND_REPLY
    confirmations = evolution_sandbox.messages(instance=instance.instance_name)
    assert len(confirmations) == 1, confirmations
    assert confirmations[0]["text"] == api.config.opt_out_confirmation
    stored = Message.objects.get(source="opt_out")
    assert (stored.direction, stored.conversation.contact_phone) == ("outbound", PHONE)


def test_a_look_alike_does_not_opt_out(hook, inline_confirmation):
    sent_with_history(hook)
    response = upsert(hook, text="Quero parar de pagar juros, tem desconto?", message_id="3A5F0000000000A3")
    assert response.json()["outcome"] == "reply"
    assert not SuppressedPhone.objects.exists()


def test_a_blank_confirmation_text_sends_nothing(hook, inline_confirmation, django_capture_on_commit_callbacks):
    hook.api.config.opt_out_confirmation = ""
    hook.api.config.save()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        upsert(hook, text="Não quero mais receber", message_id="3A5F0000000000A4")
    assert SuppressedPhone.objects.filter(phone=PHONE).exists()
    assert callbacks == []


def test_a_failed_confirmation_keeps_the_suppression(hook, inline_confirmation, django_capture_on_commit_callbacks):
    """The tenant's instance points at a closed port: the answer fails, the opt-out stands."""
    with django_capture_on_commit_callbacks(execute=True):
        response = upsert(hook, text="STOP", message_id="3A5F0000000000A5")
    assert response.status_code == 200
    assert SuppressedPhone.objects.filter(phone=PHONE).exists()
    assert not Message.objects.filter(source="opt_out").exists()


def test_suppression_is_per_tenant(hook):
    from apps.billing.tests.support.api import make_tenant
    from apps.billing.tests.support.webhooks import Hook

    other = Hook(make_tenant("optout-other"), hook.client)
    upsert(hook, text="SAIR", message_id="3A5F0000000000A6")
    assert SuppressedPhone.objects.filter(tenant=hook.tenant, phone=PHONE).exists()
    assert not SuppressedPhone.objects.filter(tenant=other.tenant).exists()


def test_the_original_upsert_body_is_not_mutated_between_tests():
    assert MESSAGES_UPSERT_V2["data"]["message"] == copy.deepcopy({"conversation": "Já paguei"})
