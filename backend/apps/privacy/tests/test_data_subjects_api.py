"""Data-subject requests through the HTTP API: phone writings, tenant isolation, bad input,
a message in flight, callbacks that carried the phone, and the record of each request."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditAction, AuditEvent
from apps.billing.constants import ContactStatus
from apps.billing.models import (
    BillingConfig,
    BillingContact,
    CallbackDelivery,
    CallbackEvent,
    SuppressedPhone,
)
from apps.billing.services.callbacks import enqueue_event
from apps.billing.services.opt_out import suppress

from .conftest import erase, export

PHONE = "+5511987654321"


def requests_recorded():
    return AuditEvent.objects.filter(action__startswith="data_subject.")


def send(api, phone: str = "11 98765-4321", name: str = "Rita Apagada", external_id: str = "r1"):
    response = api.send(
        "notification",
        {
            "external_id": external_id,
            "contacts": [
                {"phone": phone, "name": name, "external_id": "c1", "variables": {"message": "Texto privado"}}
            ],
        },
    )
    assert response.status_code == 202, response.content[:300]
    return response.json()


@pytest.mark.parametrize("writing", ["+5511987654321", "(11) 98765-4321", "011 98765 4321", "11 8765-4321"])
def test_any_common_writing_of_the_phone_finds_the_person(api, writing):
    send(api)
    document = export(api, writing).json()
    assert document["phone"] == PHONE
    assert [row["name"] for row in document["billing_contacts"]] == ["Rita Apagada"]
    assert document["billing_contacts"][0]["variables"] == {"message": "Texto privado"}


def test_another_tenant_sees_and_erases_nothing_of_this_one(api, other_api):
    send(api)
    document = export(other_api, PHONE).json()
    assert all(
        document[name] == []
        for name in ("billing_contacts", "campaign_contacts", "conversations", "charges", "callbacks", "opt_out")
    )
    assert erase(other_api, PHONE).status_code == 200
    assert BillingContact.objects.get(tenant=api.tenant).phone == PHONE
    assert not SuppressedPhone.objects.filter(tenant=api.tenant).exists()


def test_a_phone_that_cannot_be_read_is_a_400_and_records_nothing(api):
    for method in (export, erase):
        response = method(api, "12345")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_phone"
    assert not requests_recorded() and not SuppressedPhone.objects.exists()


def test_no_key_no_answer(api):
    response = api.client.get("/api/v1/billing/data-subjects/%2B5511987654321")
    assert response.status_code == 401 and response.json()["error"]["code"] == "missing_api_key"


def test_a_message_in_flight_refuses_the_erasure_and_changes_nothing(api):
    send(api)
    BillingContact.objects.update(status=ContactStatus.SENDING)  # handed to the provider right now
    response = erase(api, PHONE)
    assert response.status_code == 409
    assert response["Retry-After"] == "60"
    assert response.json()["error"]["code"] == "data_subject_in_flight"
    contact = BillingContact.objects.get()
    assert (contact.phone, contact.name) == (PHONE, "Rita Apagada")
    assert not SuppressedPhone.objects.exists() and not requests_recorded()


def test_unsent_messages_are_skipped_and_an_existing_opt_out_keeps_only_its_hash(api):
    body = send(api)
    suppress(tenant=api.tenant, phone=PHONE, reason="asked")
    counts = erase(api, PHONE).json()["erased"]
    assert counts["contacts_skipped"] == 1 and counts["opt_out_hashed"] == 1
    contact = BillingContact.objects.get(queue_id=body["queue_id"])
    assert (contact.status, contact.error_code, contact.phone) == ("skipped", "opted_out", "")
    row = SuppressedPhone.objects.get()
    assert row.phone is None and row.reason == "asked" and row.masked_phone == "(erased)"
    assert erase(api, PHONE).status_code == 200  # asking again is harmless
    assert SuppressedPhone.objects.count() == 1


def test_callbacks_that_carried_the_phone_keep_no_phone_or_reply_text(api):
    BillingConfig.objects.filter(tenant=api.tenant).update(callback_url="https://crm.example/hook")
    body = send(api)
    queue = BillingContact.objects.get().queue
    enqueue_event(
        tenant=api.tenant,
        queue=queue,
        event=CallbackEvent.REPLY_RECEIVED,
        data={"phone": PHONE, "text": "não devo nada", "intent": "other", "queue_id": body["queue_id"]},
    )
    assert export(api, PHONE).json()["callbacks"][0]["payload"]["data"]["text"] == "não devo nada"
    assert erase(api, PHONE).json()["erased"]["callbacks"] == 1
    payload = CallbackDelivery.objects.get(event=CallbackEvent.REPLY_RECEIVED).payload
    assert payload["data"]["phone"] == "" and "text" not in payload["data"]
    assert payload["data"]["intent"] == "other"


def test_each_request_is_recorded_with_the_key_and_counts_but_not_the_phone(api):
    send(api)
    export(api, PHONE)
    erase(api, PHONE)
    events = list(requests_recorded().order_by("id"))
    assert [e.action for e in events] == [AuditAction.DATA_SUBJECT_EXPORTED, AuditAction.DATA_SUBJECT_ERASED]
    assert {e.actor_id for e in events} == {str(api.key.pk)}
    assert events[0].details["billing_contacts"] == 1
    for event in events:
        assert PHONE not in str(event.details) and PHONE[1:] not in event.object_id
