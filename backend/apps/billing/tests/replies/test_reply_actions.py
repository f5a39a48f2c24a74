"""What a reply does, through the real webhook URL: hold, suppress, answer, flag, tell the CRM —
and what it must not do (numbers we never wrote to, retries, low confidence, opted-out phones)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.billing.constants import ContactStatus, QueueStatus
from apps.billing.models import (
    BillingContact,
    BillingQueue,
    CallbackDelivery,
    ConversationReply,
    ReplySettings,
    SuppressedPhone,
)
from apps.billing.tests.support.replies import (
    PIX,
    pending_collection,
    post_reply,
    reply_callbacks,
    sent_collection,
    status_of,
    with_callback_url,
)
from apps.billing.tests.support.webhooks import PHONE
from apps.chat.models import Conversation, Message


def conversation(hook) -> Conversation:
    return Conversation.objects.get(tenant=hook.tenant, contact_phone=PHONE)


def settings_of(hook) -> ReplySettings:
    return ReplySettings.for_tenant(hook.tenant)


# ----------------------------------------------------------------------------- claims_paid
def test_ja_paguei_holds_the_debtors_pending_messages_for_three_days_and_tells_the_crm(hook):
    with_callback_url(hook)
    sent = sent_collection(hook)
    pending = pending_collection(hook)
    before = timezone.now()

    response = post_reply(hook, "Já paguei, segue o comprovante", quoted=sent.provider_message_id)

    assert response.json()["outcome"] == "reply"
    pending.refresh_from_db()
    assert pending.status == ContactStatus.PENDING_RETRY
    assert before + timedelta(days=3) <= pending.next_attempt_at <= timezone.now() + timedelta(days=3)
    [event] = reply_callbacks(hook.tenant)
    assert (event["intent"], event["contact_id"], event["phone"]) == ("claims_paid", sent.pk, PHONE)
    assert event["confidence"] >= 0.9 and event["actions"]["held_contacts"] == 1
    assert "text" not in event  # LGPD: the words stay here unless the tenant opts in
    inbound = Message.objects.get(conversation=conversation(hook), direction="inbound")
    assert (inbound.intent, inbound.intent_confidence) == ("claims_paid", event["confidence"])
    assert not conversation(hook).needs_attention


def test_the_hold_lasts_the_tenants_number_of_days_and_zero_days_holds_nothing(hook):
    sent = sent_collection(hook)
    pending = pending_collection(hook)
    ReplySettings.objects.filter(pk=settings_of(hook).pk).update(hold_days_on_claims_paid=0)
    post_reply(hook, "já paguei", quoted=sent.provider_message_id)
    assert status_of(pending) == ContactStatus.PENDING
    assert conversation(hook).attention_reason == "claims_paid"  # no hold: a person checks the payment

    ReplySettings.objects.filter(tenant=hook.tenant).update(hold_days_on_claims_paid=7)
    post_reply(hook, "já paguei ontem", quoted=sent.provider_message_id)
    pending.refresh_from_db()
    assert pending.next_attempt_at > timezone.now() + timedelta(days=6, hours=23)


def test_a_receipt_image_holds_too_but_a_lower_confidence_than_the_tenant_wants_asks_a_person(hook):
    sent = sent_collection(hook)
    pending = pending_collection(hook)
    ReplySettings.objects.filter(pk=settings_of(hook).pk).update(min_confidence=0.72)

    image = {"imageMessage": {"mimetype": "image/jpeg", "caption": ""}}
    post_reply(hook, message=image, quoted=sent.provider_message_id)

    assert status_of(pending) == ContactStatus.PENDING  # 0.7 < 0.72: nobody is held on a guess
    stored = Message.objects.get(conversation=conversation(hook), direction="inbound")
    assert (stored.content, stored.intent) == ("[imagem]", "claims_paid")
    assert (conversation(hook).needs_attention, conversation(hook).attention_reason) == (True, "claims_paid")

    post_reply(
        hook,
        message={
            "documentWithCaptionMessage": {
                "message": {"documentMessage": {"fileName": "comprovante.pdf", "caption": "segue"}}
            }
        },
        quoted=sent.provider_message_id,
    )
    assert status_of(pending) == ContactStatus.PENDING_RETRY  # a caption makes it 0.75


# ----------------------------------------------------------------------------- wrong_person
def test_numero_errado_suppresses_the_phone_and_stops_its_pending_messages(hook):
    sent = sent_collection(hook)
    pending = pending_collection(hook)

    post_reply(hook, "número errado, não conheço essa pessoa", quoted=sent.provider_message_id)

    suppressed = SuppressedPhone.objects.get(tenant=hook.tenant, phone=PHONE)
    assert suppressed.reason == "wrong person (reply)"
    pending.refresh_from_db()
    assert (pending.status, pending.error_code) == (ContactStatus.SKIPPED, "opted_out")
    assert BillingQueue.objects.get(pk=pending.queue_id).skipped_count == 1
    assert not Message.objects.filter(direction="outbound", source="opt_out").exists()  # no confirmation to a stranger


def test_the_tenant_can_keep_wrong_numbers_and_have_a_person_look(hook):
    sent = sent_collection(hook)
    ReplySettings.objects.filter(pk=settings_of(hook).pk).update(suppress_wrong_person=False)
    post_reply(hook, "número errado", quoted=sent.provider_message_id)
    assert not SuppressedPhone.objects.exists()
    assert (conversation(hook).needs_attention, conversation(hook).attention_reason) == (True, "wrong_person")


# ----------------------------------------------------------------------------- payment_info
def test_me_manda_o_pix_queues_one_automatic_answer_a_day_with_the_pix_code(hook):
    sent = sent_collection(hook, pix_code=PIX, payment_link="https://pay.example.com/i/77")

    post_reply(hook, "me manda o pix", quoted=sent.provider_message_id)
    post_reply(hook, "manda o pix de novo por favor", quoted=sent.provider_message_id)

    [answer] = ConversationReply.objects.filter(conversation=conversation(hook))
    assert (answer.kind, answer.intent) == ("automatic", "payment_info")
    contact = answer.contact
    assert contact.queue.template_type == "notification" and contact.status == ContactStatus.PENDING
    assert contact.variables == {"pix_code": PIX, "payment_link": "https://pay.example.com/i/77"}
    assert contact.billing_campaign.template.name == "Resposta automática: dados de pagamento"
    assert not conversation(hook).needs_attention


def test_the_answer_renders_the_payment_data_the_debt_has(hook):
    from apps.billing.templating.engine import BillingTemplateEngine

    sent = sent_collection(hook, pix_code=PIX)
    post_reply(hook, "qual a chave pix?", quoted=sent.provider_message_id)
    contact = ConversationReply.objects.get().contact
    for variation in contact.billing_campaign.template.active_variations():
        text = BillingTemplateEngine.render(variation.content, {**contact.variables, "first_name": "Maria"})
        assert PIX in text and "boleto" not in text.lower() and "{{" not in text


def test_without_payment_data_a_person_answers(hook):
    sent = sent_collection(hook)
    post_reply(hook, "me manda o boleto", quoted=sent.provider_message_id)
    assert not ConversationReply.objects.exists()
    assert (conversation(hook).needs_attention, conversation(hook).attention_reason) == (True, "payment_info")


def test_never_an_automatic_answer_to_a_suppressed_phone(hook):
    sent = sent_collection(hook, pix_code=PIX)
    SuppressedPhone.objects.create(tenant=hook.tenant, phone=PHONE, source="admin")
    post_reply(hook, "me manda o pix", quoted=sent.provider_message_id)
    assert not ConversationReply.objects.exists()
    assert not conversation(hook).needs_attention  # nobody may write to it: no one is asked to


# ----------------------------------------------------------------------------- a person
@pytest.mark.parametrize(
    "text,reason", [("quero parcelar em 3x", "negotiate"), ("quero falar com um atendente", "talk_to_human")]
)
def test_negotiations_and_requests_for_a_person_flag_the_conversation(hook, text, reason):
    with_callback_url(hook)
    sent = sent_collection(hook)
    post_reply(hook, text, quoted=sent.provider_message_id)
    flagged = conversation(hook)
    assert (flagged.needs_attention, flagged.attention_reason, flagged.status) == (True, reason, "open")
    assert flagged.last_inbound_at is not None
    assert reply_callbacks(hook.tenant)[0]["actions"] == {"needs_attention": True}

    post_reply(hook, "ok", quoted=sent.provider_message_id)  # a later message keeps the first reason
    assert (conversation(hook).attention_reason, conversation(hook).last_intent) == (reason, "other")


def test_the_text_goes_to_the_crm_only_when_the_tenant_opts_in(hook):
    with_callback_url(hook)
    sent = sent_collection(hook)
    ReplySettings.objects.filter(pk=settings_of(hook).pk).update(callback_include_text=True)
    post_reply(hook, "quero parcelar", quoted=sent.provider_message_id)
    assert reply_callbacks(hook.tenant)[0]["text"] == "quero parcelar"


# ----------------------------------------------------------------------------- nothing changes
def test_a_number_we_never_wrote_to_is_stored_and_changes_nothing_else(hook):
    with_callback_url(hook)
    pending = pending_collection(hook, phone="+5521987654321")
    response = post_reply(hook, "já paguei", phone_jid="5521987654321@s.whatsapp.net")
    assert response.json()["outcome"] == "inbound"
    assert status_of(pending) == ContactStatus.PENDING
    stranger = Conversation.objects.get(contact_phone="+5521987654321")
    assert (stranger.last_intent, stranger.needs_attention) == ("claims_paid", False)
    assert not CallbackDelivery.objects.exists() and not SuppressedPhone.objects.exists()


def test_a_retried_webhook_changes_nothing_the_second_time(hook):
    with_callback_url(hook)
    sent = sent_collection(hook, pix_code=PIX)
    for _ in range(3):
        assert post_reply(
            hook, "me manda o pix", quoted=sent.provider_message_id, message_id="3A5F00000000BEEF"
        ).json()["outcome"] in ("reply", "duplicate")
    assert ConversationReply.objects.count() == 1
    assert len(reply_callbacks(hook.tenant)) == 1
    assert Message.objects.filter(direction="inbound").count() == 1


def test_opt_out_is_as_before_and_the_crm_also_hears_the_reply(hook, settings):
    settings.BILLING_OPT_OUT_CONFIRMATION_ASYNC = False
    with_callback_url(hook)
    sent = sent_collection(hook)
    assert post_reply(hook, "SAIR", quoted=sent.provider_message_id).json()["outcome"] == "opted_out"
    assert SuppressedPhone.objects.get(tenant=hook.tenant, phone=PHONE).reason == "customer asked to stop (reply)"
    assert reply_callbacks(hook.tenant)[0]["intent"] == "opt_out"


def test_an_audio_is_stored_and_left_to_people(hook):
    sent = sent_collection(hook)
    pending = pending_collection(hook)
    post_reply(hook, message={"audioMessage": {"seconds": 12, "ptt": True}}, quoted=sent.provider_message_id)
    stored = Message.objects.get(direction="inbound")
    assert (stored.content, stored.intent) == ("[áudio]", "other")
    assert status_of(pending) == ContactStatus.PENDING


def test_texts_of_any_size_or_script_are_stored_whole(hook):
    sent = sent_collection(hook)
    text = "<script>alert(1)</script> пожалуйста 支払い済み 🙏 " * 200
    post_reply(hook, text, quoted=sent.provider_message_id)
    assert Message.objects.get(direction="inbound").content == text


def test_a_reply_updates_queue_state_nowhere_else(hook):
    """A claims_paid hold on a running queue leaves the queue to its worker."""
    sent = sent_collection(hook)
    pending = pending_collection(hook, queue_status=QueueStatus.RUNNING)
    post_reply(hook, "já paguei", quoted=sent.provider_message_id)
    assert BillingQueue.objects.get(pk=pending.queue_id).status == QueueStatus.RUNNING
    assert BillingContact.objects.get(pk=pending.pk).status == ContactStatus.PENDING_RETRY


def test_the_inbox_is_told_only_about_conversations_waiting_for_a_person(
    hook, monkeypatch, django_capture_on_commit_callbacks
):
    from apps.billing.services import reply_actions

    pushed = []
    monkeypatch.setattr(reply_actions, "publish_conversation_update", lambda **kwargs: pushed.append(kwargs))
    sent = sent_collection(hook)
    with django_capture_on_commit_callbacks(execute=True):
        post_reply(hook, "ok, obrigado", quoted=sent.provider_message_id)
    assert pushed == []
    with django_capture_on_commit_callbacks(execute=True):
        post_reply(hook, "quero parcelar", quoted=sent.provider_message_id)
        post_reply(hook, "oi?", quoted=sent.provider_message_id)  # still waiting: the open thread refreshes
    assert pushed == [{"tenant_id": hook.tenant.pk, "conversation_id": conversation(hook).pk}] * 2
