"""WAHA webhooks (contract §6) through the real URL: the HMAC, then each event mapped onto the same
services as Evolution's — receipts, replies, echoes, health, number protection."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.billing.constants import ContactStatus, QueueStatus
from apps.billing.models import BillingContact, BillingQueue, CallbackDelivery
from apps.billing.services import queue_lease
from apps.billing.services.webhook_auth import waha_hmac_key
from apps.billing.tests.support.api import make_tenant
from apps.billing.tests.support.builders import build_contact, build_queue
from apps.billing.tests.support.webhooks import PHONE, Hook
from apps.chat.models import Message
from apps.connections.models import WhatsAppInstance

CHAT = "5511998765432@c.us"
# Payloads as contract §6 and WAHA's docs print them (ids and the session filled in per test).
MESSAGE = {
    "id": "false_5511998765432@c.us_3A5F00000000000A",
    "timestamp": 1717689200,
    "from": CHAT,
    "fromMe": False,
    "source": "app",
    "to": "5511900000000@c.us",
    "body": "Já paguei",
    "hasMedia": False,
    "ack": 2,
    "ackName": "DEVICE",
    "replyTo": None,
    "_data": {"notifyName": "Maria"},
}
ACK = {
    "id": "true_5511998765432@c.us_3EB0A1B2C3D4E5F6",
    "from": CHAT,
    "participant": None,
    "fromMe": True,
    "ack": 2,
    "ackName": "DEVICE",
}


class WahaHook(Hook):
    def envelope(self, event: str, payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return {
            "id": "evt_01",
            "timestamp": 1717689200000,
            "event": event,
            "session": self.instance.instance_name,
            "metadata": {},
            "me": {"id": "5511900000000@c.us", "pushName": "Loja"},
            "payload": payload,
            "engine": "NOWEB",
            "environment": {"version": "2025.9.1", "engine": "NOWEB", "tier": "CORE"},
            **fields,
        }

    def post_event(
        self,
        event: str,
        payload: dict[str, Any],
        *,
        key: str | None = None,
        signed: bool = True,
        raw: bytes | None = None,
        token: str | None = None,
        **fields: Any,
    ):
        body = raw if raw is not None else json.dumps(self.envelope(event, payload, **fields)).encode()
        headers = {}
        if signed:
            headers["HTTP_X_WEBHOOK_HMAC"] = hmac.new(
                (key or waha_hmac_key(self.instance)).encode(), body, hashlib.sha512
            ).hexdigest()
        path = reverse("billing:waha-webhook", kwargs={"token": token or self.instance.webhook_secret})
        return self.client.post(path, data=body, content_type="application/json", **headers)


@pytest.fixture
def waha_hook(db) -> WahaHook:
    api = make_tenant("wahahook")
    WhatsAppInstance.objects.filter(pk=api.instance.pk).update(provider="waha")
    api.instance.provider = "waha"
    return WahaHook(api, Client())


def status_of(contact: BillingContact) -> str:
    return BillingContact.objects.values_list("status", flat=True).get(pk=contact.pk)


# ----------------------------------------------------------------------------- authentication
def test_a_signed_ack_moves_the_contact(waha_hook):
    contact = waha_hook.sent_contact(provider_message_id="3EB0A1B2C3D4E5F6")

    response = waha_hook.post_event("message.ack", ACK)

    assert response.status_code == 200 and response.json()["outcome"] == "moved"
    assert status_of(contact) == ContactStatus.DELIVERED


@pytest.mark.parametrize("how", ["missing", "wrong_key", "tampered", "evolution_route"])
def test_a_bad_or_missing_hmac_is_401_and_changes_nothing(waha_hook, how, caplog):
    contact = waha_hook.sent_contact(provider_message_id="3EB0A1B2C3D4E5F6")
    body = json.dumps(waha_hook.envelope("message.ack", ACK)).encode()
    if how == "missing":
        response = waha_hook.post_event("message.ack", ACK, signed=False)
    elif how == "wrong_key":
        response = waha_hook.post_event("message.ack", ACK, key="not-our-key")
    elif how == "evolution_route":  # a WAHA instance's secret is not an Evolution URL
        response = waha_hook.client.post(
            f"/api/v1/billing/webhooks/evolution/{waha_hook.instance.webhook_secret}/",
            data=body,
            content_type="application/json",
        )
    else:
        signature = hmac.new(waha_hmac_key(waha_hook.instance).encode(), body, hashlib.sha512).hexdigest()
        response = waha_hook.client.post(
            reverse("billing:waha-webhook", kwargs={"token": waha_hook.instance.webhook_secret}),
            data=body.replace(b"DEVICE", b"READ\x20\x20"),
            content_type="application/json",
            HTTP_X_WEBHOOK_HMAC=signature,
        )

    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    assert status_of(contact) == ContactStatus.SENT
    assert waha_hook.instance.webhook_secret not in caplog.text


def test_an_unknown_secret_is_401(waha_hook):
    assert waha_hook.post_event("message.ack", ACK, token="x" * 43).status_code == 401


def test_without_the_hmac_requirement_an_unsigned_body_passes_but_a_bad_signature_never(waha_hook, settings):
    settings.BILLING_WAHA_WEBHOOK_REQUIRE_HMAC = False
    contact = waha_hook.sent_contact(provider_message_id="3EB0A1B2C3D4E5F6")

    assert waha_hook.post_event("message.ack", ACK, key="wrong").status_code == 401
    assert waha_hook.post_event("message.ack", ACK, signed=False).status_code == 200
    assert status_of(contact) == ContactStatus.DELIVERED


def test_malformed_json_is_400_after_the_signature(waha_hook):
    response = waha_hook.post_event("message.ack", ACK, raw=b"{not json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_json"


def test_another_session_is_ignored_like_an_unknown_instance(waha_hook):
    contact = waha_hook.sent_contact(provider_message_id="3EB0A1B2C3D4E5F6")

    response = waha_hook.post_event("message.ack", ACK, session="someone-else")

    assert response.status_code == 200 and response.json()["outcome"] == "ignored_unknown_session"
    assert status_of(contact) == ContactStatus.SENT


# ----------------------------------------------------------------------------- receipts
@pytest.mark.parametrize("ack,expected", [(1, "sent"), (2, "delivered"), (3, "read"), (4, "read"), (0, "sent")])
def test_acks_map_onto_the_receipt_statuses(waha_hook, ack, expected):
    contact = waha_hook.sent_contact(provider_message_id="3EB0A1B2C3D4E5F6")

    waha_hook.post_event("message.ack", {**ACK, "ack": ack})

    assert status_of(contact) == expected


def test_a_late_device_ack_after_read_changes_nothing(waha_hook):
    contact = waha_hook.sent_contact(provider_message_id="3EB0A1B2C3D4E5F6")
    waha_hook.post_event("message.ack", {**ACK, "ack": 3})
    waha_hook.post_event("message.ack", {**ACK, "ack": 2})
    queue = BillingQueue.objects.get(pk=contact.queue_id)
    assert status_of(contact) == "read" and (queue.delivered_count, queue.read_count) == (1, 1)


def test_a_burst_of_error_acks_protects_the_number(waha_hook):
    from apps.connections.models import NumberHealthSettings

    NumberHealthSettings.objects.create(tenant=waha_hook.tenant, block_burst_limit=3, block_window_minutes=10)
    contacts = [waha_hook.sent_contact(phone=f"+55119876500{i:02d}") for i in range(3)]
    for contact in contacts[:2]:
        waha_hook.post_event("message.ack", {**ACK, "id": f"true_{CHAT}_{contact.provider_message_id}", "ack": -1})
        waha_hook.post_event("message.ack", {**ACK, "id": f"true_{CHAT}_{contact.provider_message_id}", "ack": -1})
    assert not WhatsAppInstance.objects.get(pk=waha_hook.instance.pk).is_protected  # a repeat counts once

    waha_hook.post_event("message.ack", {**ACK, "id": f"true_{CHAT}_{contacts[2].provider_message_id}", "ack": -1})

    instance = WhatsAppInstance.objects.get(pk=waha_hook.instance.pk)
    assert instance.is_protected and "refused by WhatsApp" in instance.protected_reason
    assert instance.attention_since is not None


# ----------------------------------------------------------------------------- messages
def test_a_customer_reply_is_stored_and_credited_by_its_quote(waha_hook):
    contact = waha_hook.sent_contact(provider_message_id="3EB0A1B2C3D4E5F6")
    reply = {**MESSAGE, "replyTo": {"id": "3EB0A1B2C3D4E5F6", "participant": None, "body": None}}

    response = waha_hook.post_event("message.any", reply)
    again = waha_hook.post_event("message", reply)  # the same message under the other event

    assert response.json()["outcome"] == "reply" and again.json()["outcome"] == "duplicate"
    stored = Message.objects.get(provider_message_id="3A5F00000000000A")
    assert (stored.direction, stored.content, stored.status) == ("inbound", "Já paguei", "received")
    assert BillingContact.objects.get(pk=contact.pk).replied_at is not None


def test_an_image_with_a_caption_is_stored_as_media(waha_hook):
    waha_hook.post_event(
        "message",
        {**MESSAGE, "hasMedia": True, "body": "comprovante", "media": {"mimetype": "image/jpeg", "url": None}},
    )

    assert Message.objects.get(provider_message_id="3A5F00000000000A").content == "[imagem] comprovante"


def test_our_own_message_settles_an_unconfirmed_contact(waha_hook):
    queue = build_queue(
        waha_hook.tenant,
        template=waha_hook.template(),
        total=1,
        instance=waha_hook.instance,
        status=QueueStatus.RUNNING,
    )
    contact = build_contact(
        queue,
        phone=PHONE,
        status=ContactStatus.UNCONFIRMED,
        attempts=1,
        variation=waha_hook.template().variations.first(),
        rendered_message="Sua fatura venceu.",
        send_started_at=timezone.now(),
        next_attempt_at=timezone.now(),
    )
    echo = {
        **MESSAGE,
        "id": f"true_{CHAT}_3EB0ECHO00000001",
        "fromMe": True,
        "source": "api",
        "to": CHAT,
        "from": "5511900000000@c.us",
        "body": "Sua fatura venceu.",
        "timestamp": int(timezone.now().timestamp()),
    }

    response = waha_hook.post_event("message.any", echo)

    assert response.json()["outcome"] == "reconciled"
    contact.refresh_from_db()
    assert (contact.status, contact.provider_message_id) == ("sent", "3EB0ECHO00000001")


# ----------------------------------------------------------------------------- session status
def running_queue(hook: Hook) -> BillingQueue:
    queue = build_queue(hook.tenant, template=hook.template(), total=2, instance=hook.instance)
    build_contact(queue)
    build_contact(queue)
    assert queue_lease.claim_queue(queue.pk, "worker-test:1") is not None
    return queue


def test_working_records_the_number_healthy_and_paired(waha_hook):
    response = waha_hook.post_event("session.status", {"name": waha_hook.instance.instance_name, "status": "WORKING"})

    instance = WhatsAppInstance.objects.get(pk=waha_hook.instance.pk)
    assert response.json()["outcome"] == "health_recorded"
    assert instance.health_state == "open" and instance.paired_at is not None


def test_stopped_pauses_running_queues_for_recovery(waha_hook):
    queue = running_queue(waha_hook)

    response = waha_hook.post_event("session.status", {"name": waha_hook.instance.instance_name, "status": "STOPPED"})

    queue.refresh_from_db()
    assert response.json()["outcome"] == "paused_1_queues"
    assert queue.status == "instance_down" and not WhatsAppInstance.objects.get(pk=waha_hook.instance.pk).is_protected


@pytest.mark.parametrize("status", ["SCAN_QR_CODE", "FAILED"])
def test_a_paired_number_losing_its_session_is_protected_and_its_queues_paused(waha_hook, status):
    waha_hook.api.config.callback_url = "https://erp.example.com/hooks"
    waha_hook.api.config.save()
    WhatsAppInstance.objects.filter(pk=waha_hook.instance.pk).update(paired_at=timezone.now(), health_state="open")
    queue = running_queue(waha_hook)

    response = waha_hook.post_event("session.status", {"name": waha_hook.instance.instance_name, "status": status})

    assert response.json()["outcome"] == "protected"
    queue.refresh_from_db()
    assert queue.status == "instance_down" and queue.pause_reason == f"number_protected: WhatsApp session {status}"
    instance = WhatsAppInstance.objects.get(pk=waha_hook.instance.pk)
    assert instance.is_protected and instance.last_disconnect_at is not None
    [event] = CallbackDelivery.objects.filter(event="number.protected")
    assert event.payload["data"]["kind"] == "session_lost" and event.payload["data"]["paused_queues"] == 1


def test_scan_qr_code_while_pairing_is_not_a_logout(waha_hook):
    response = waha_hook.post_event(
        "session.status", {"name": waha_hook.instance.instance_name, "status": "SCAN_QR_CODE"}
    )

    instance = WhatsAppInstance.objects.get(pk=waha_hook.instance.pk)
    assert response.json()["outcome"] == "health_recorded"
    assert instance.health_state == "pairing" and not instance.is_protected


def test_the_hmac_is_over_the_raw_bytes_as_sent(waha_hook, caplog):
    """A body re-serialised differently (spacing) must not verify: the signature is the bytes'."""
    caplog.set_level(logging.INFO)
    contact = waha_hook.sent_contact(provider_message_id="3EB0A1B2C3D4E5F6")
    envelope = waha_hook.envelope("message.ack", copy.deepcopy(ACK))
    signed = json.dumps(envelope, separators=(",", ":")).encode()
    signature = hmac.new(waha_hmac_key(waha_hook.instance).encode(), signed, hashlib.sha512).hexdigest()

    response = waha_hook.client.post(
        reverse("billing:waha-webhook", kwargs={"token": waha_hook.instance.webhook_secret}),
        data=json.dumps(envelope).encode(),
        content_type="application/json",
        HTTP_X_WEBHOOK_HMAC=signature,
    )

    assert response.status_code == 401 and status_of(contact) == ContactStatus.SENT
