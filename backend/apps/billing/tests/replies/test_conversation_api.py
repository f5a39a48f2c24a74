"""`/api/v1/billing/conversations`: list with filters, a thread, a person's reply through the
pipeline, resolve — tenant-scoped, strict about input, in the API's error shape."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.billing.models import BillingAPIKey, BillingContact, ConversationReply, SuppressedPhone
from apps.billing.tests.support.replies import PIX, post_reply, sent_collection
from apps.billing.tests.support.webhooks import PHONE
from apps.chat.models import Conversation

API = "/api/v1/billing/conversations"


@pytest.fixture
def talk(hook) -> Conversation:
    """A conversation with a collection message, a customer's "quero parcelar" and its flag."""
    sent = sent_collection(hook)
    post_reply(hook, "quero parcelar", quoted=sent.provider_message_id)
    return Conversation.objects.get(tenant=hook.tenant, contact_phone=PHONE)


def error_code(response) -> str:
    return response.json()["error"]["code"]


# ----------------------------------------------------------------------------- list
def test_the_list_filters_by_phone_status_attention_intent_and_date(hook, talk):
    quiet = sent_collection(hook, phone="+5511998760001")
    page = hook.api.get(API).json()
    quiet_id = Conversation.objects.get(contact_phone=quiet.phone).pk
    assert [row["id"] for row in page["results"]] == [quiet_id, talk.pk]  # the latest activity first
    row = page["results"][1]
    assert (row["phone"], row["needs_attention"], row["attention_reason"], row["last_intent"]) == (
        PHONE,
        True,
        "negotiate",
        "negotiate",
    )

    def ids(**params) -> list[int]:
        response = hook.api.get(API, **params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids(phone="(11) 99876-5432") == [talk.pk]
    assert ids(needs_attention="true") == [talk.pk]
    assert talk.pk not in ids(needs_attention="false")
    assert ids(intent="negotiate") == [talk.pk]
    assert ids(status="open") == [talk.pk]
    today = timezone.localdate(timezone=hook.tenant.tzinfo).isoformat()
    assert talk.pk in ids(date_from=today, date_to=today)
    assert ids(date_to=(timezone.localdate() - timedelta(days=2)).isoformat()) == []


@pytest.mark.parametrize(
    "params,code",
    [
        ({"phone": "12"}, "invalid_phone"),
        ({"intent": "angry"}, "validation_error"),
        ({"status": "lost"}, "validation_error"),
        ({"date_from": "2026-13-01"}, "validation_error"),
        ({"date_from": "2026-12-02", "date_to": "2026-12-01"}, "validation_error"),
        ({"colour": "x"}, "unknown_field"),
        ({"tenant": "x"}, "forbidden_field"),
    ],
)
def test_bad_filters_are_a_400_with_a_code(hook, params, code):
    response = hook.api.get(API, **params)
    assert response.status_code == 400 and error_code(response) == code


# ----------------------------------------------------------------------------- detail
def test_the_thread_shows_who_wrote_each_message(hook, talk):
    thread = hook.api.get(f"{API}/{talk.pk}").json()
    assert thread["conversation"]["id"] == talk.pk and thread["has_more_messages"] is False
    [collection, customer] = thread["messages"]
    assert (collection["direction"], collection["author"], collection["text"]) == (
        "outbound",
        "collection",
        "Sua fatura venceu.",
    )
    assert (customer["author"], customer["text"], customer["intent"]) == ("customer", "quero parcelar", "negotiate")
    assert customer["intent_confidence"] >= 0.8


def test_another_tenants_conversation_is_not_found(hook, other_hook, talk):
    for response in (
        other_hook.api.get(f"{API}/{talk.pk}"),
        other_hook.api.post(f"{API}/{talk.pk}/messages", {"text": "oi"}),
        other_hook.api.post(f"{API}/{talk.pk}/resolve", {}),
        hook.api.get(f"{API}/999999"),
        hook.api.get(f"{API}/not-a-number"),
    ):
        assert response.status_code == 404 and error_code(response) == "not_found"
    assert other_hook.api.get(API).json()["results"] == []
    assert Conversation.objects.get(pk=talk.pk).needs_attention  # untouched


def test_without_a_key_nothing_is_readable(client, talk):
    response = client.get(API)
    assert response.status_code == 401 and response.json()["error"]["code"] == "missing_api_key"


# ----------------------------------------------------------------------------- reply
def test_a_persons_reply_is_queued_through_the_send_pipeline(hook, talk):
    text = "Olá! Podemos parcelar em 3x."
    response = hook.api.post(f"{API}/{talk.pk}/messages", {"text": text, "external_id": "r1"})
    assert response.status_code == 202, response.content
    body = response.json()
    reply = ConversationReply.objects.get(pk=body["reply_id"])
    assert (reply.kind, reply.author_api_key, reply.conversation_id) == ("staff", hook.api.key, talk.pk)
    assert reply.contact.variables == {"message": text}
    assert str(reply.contact.queue_id) == body["queue_id"]
    assert hook.api.get(body["status_url"]).json()["status"] == "pending"  # the queue's usual tracking

    queued = hook.api.get(f"{API}/{talk.pk}").json()["queued_replies"]
    assert [(item["reply_id"], item["kind"], item["status"]) for item in queued] == [(reply.pk, "staff", "pending")]

    again = hook.api.post(f"{API}/{talk.pk}/messages", {"text": text, "external_id": "r1"})
    assert again.status_code == 200 and again.json()["reply_id"] == reply.pk  # a retry is not sent twice
    changed = hook.api.post(f"{API}/{talk.pk}/messages", {"text": "Outro texto", "external_id": "r1"})
    assert changed.status_code == 409 and error_code(changed) == "idempotency_conflict"


def test_a_reply_to_an_opted_out_phone_is_refused(hook, talk):
    SuppressedPhone.objects.create(tenant=hook.tenant, phone=PHONE, source="admin")
    response = hook.api.post(f"{API}/{talk.pk}/messages", {"text": "Olá"})
    assert response.status_code == 422 and error_code(response) == "opted_out"
    assert not ConversationReply.objects.exists()


@pytest.mark.parametrize(
    "body,status,code",
    [
        ({"text": ""}, 400, "validation_error"),
        ({"text": "<b></b>"}, 400, "empty_text"),
        ({"text": "x" * 1001}, 400, "text_too_long"),
        ({"text": "oi\u0000"}, 400, "invalid_characters"),
        ({"text": "oi", "to": "+5511999999999"}, 400, "unknown_field"),
        ({"message": "oi"}, 400, "unknown_field"),
        ({}, 400, "validation_error"),
    ],
)
def test_bad_replies_are_refused_and_write_nothing(hook, talk, body, status, code):
    before = BillingContact.objects.count()
    response = hook.api.post(f"{API}/{talk.pk}/messages", body)
    assert response.status_code == status and error_code(response) == code
    assert BillingContact.objects.count() == before


def test_a_key_that_may_not_send_notifications_may_not_reply(hook, talk):
    _, raw = BillingAPIKey.issue(tenant=hook.tenant, name="overdue only", allowed_template_types=["overdue"])
    response = hook.api.client.post(
        f"{API}/{talk.pk}/messages", data={"text": "oi"}, content_type="application/json", HTTP_X_BILLING_API_KEY=raw
    )
    assert response.status_code == 403 and error_code(response) == "template_type_not_allowed"


# ----------------------------------------------------------------------------- resolve
def test_resolve_takes_the_conversation_out_of_the_queue_for_people(hook, talk):
    response = hook.api.post(f"{API}/{talk.pk}/resolve", {})
    assert response.status_code == 200
    assert (response.json()["needs_attention"], response.json()["status"], response.json()["closed_by"]) == (
        False,
        "closed",
        "agent",
    )
    assert hook.api.get(API, needs_attention="true").json()["results"] == []
    assert hook.api.post(f"{API}/{talk.pk}/resolve", {"force": True}).status_code == 400


def test_a_new_reply_after_resolve_reopens_and_can_flag_again(hook, talk):
    hook.api.post(f"{API}/{talk.pk}/resolve", {})
    sent = BillingContact.objects.filter(tenant=hook.tenant, phone=PHONE).first()
    post_reply(hook, "quero falar com alguém", quoted=sent.provider_message_id)
    talk.refresh_from_db()
    assert (talk.status, talk.needs_attention, talk.attention_reason) == ("open", True, "talk_to_human")


def test_the_automatic_answer_appears_in_the_thread_as_automatic(hook):
    sent = sent_collection(hook, pix_code=PIX)
    post_reply(hook, "me manda o pix", quoted=sent.provider_message_id)
    conversation = Conversation.objects.get(tenant=hook.tenant, contact_phone=PHONE)
    [queued] = hook.api.get(f"{API}/{conversation.pk}").json()["queued_replies"]
    assert (queued["kind"], queued["author_label"]) == ("automatic", "automática")
