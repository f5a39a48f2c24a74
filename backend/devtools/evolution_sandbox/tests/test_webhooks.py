"""Webhooks as the real server sends them (contract §4): envelope, events and their order,
filters, byEvents paths, custom headers, `jwt_key` → Bearer HS256 JWT, retries."""

from __future__ import annotations

import time

import jwt
import pytest
import requests

from devtools.sandbox_process import WebhookReceiver

NUMBER = "5511998765432"
ENVELOPE_KEYS = {"event", "instance", "data", "destination", "date_time", "sender", "server_url", "apikey"}
FAST_ACKS = {"SERVER_ACK": 0.05, "DELIVERY_ACK": 0.1, "READ": 0.15}


def set_webhook(sandbox, instance, **webhook):
    response = requests.post(
        f"{sandbox.base_url}/webhook/set/{instance.name}",
        json={"webhook": {"enabled": True, **webhook}},
        headers={"apikey": instance.token},
        timeout=5,
    )
    assert response.status_code == 201, response.text
    return response.json()


def send(sandbox, instance, text="Sua fatura vence amanhã."):
    response = requests.post(
        f"{sandbox.base_url}/message/sendText/{instance.name}",
        json={"number": NUMBER, "text": text, "linkPreview": False},
        headers={"apikey": instance.token},
        timeout=5,
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_a_send_emits_send_message_then_the_three_receipts_in_order(evolution_sandbox, webhook_receiver):
    inst = evolution_sandbox.create_instance(ack_delays=FAST_ACKS)
    set_webhook(evolution_sandbox, inst, url=webhook_receiver.url + "/wa/hook/secret")

    sent = send(evolution_sandbox, inst)
    received = webhook_receiver.wait_for(4)

    assert [envelope["event"] for envelope in received] == [
        "send.message",
        "messages.update",
        "messages.update",
        "messages.update",
    ]
    assert [envelope["data"]["status"] for envelope in received[1:]] == ["SERVER_ACK", "DELIVERY_ACK", "READ"]
    assert received[0]["data"] == sent
    for envelope in received:
        assert set(envelope) == ENVELOPE_KEYS
        assert envelope["instance"] == inst.name
        assert envelope["destination"] == webhook_receiver.url + "/wa/hook/secret"
        assert envelope["sender"] == "5511900000000@s.whatsapp.net"
        assert envelope["server_url"] == evolution_sandbox.base_url
        assert envelope["apikey"] is None  # exposure off, as by default on the real server
        assert envelope["date_time"].endswith("Z")
    update = received[1]["data"]
    assert set(update) == {"keyId", "remoteJid", "fromMe", "participant", "status", "instanceId", "messageId"}
    assert update["keyId"] == sent["key"]["id"]
    assert {item["path"] for item in webhook_receiver.received} == {"/wa/hook/secret"}
    assert evolution_sandbox.messages()[0]["status"] == "READ"


def test_a_receipt_set_to_null_is_never_sent(evolution_sandbox, webhook_receiver):
    inst = evolution_sandbox.create_instance(ack_delays={"SERVER_ACK": 0.01, "DELIVERY_ACK": 0.02, "READ": None})
    set_webhook(evolution_sandbox, inst, url=webhook_receiver.url, events=["MESSAGES_UPDATE"])

    send(evolution_sandbox, inst)
    webhook_receiver.wait_for(2)
    evolution_sandbox.wait_idle()

    assert [envelope["data"]["status"] for envelope in webhook_receiver.events()] == ["SERVER_ACK", "DELIVERY_ACK"]


def test_only_subscribed_events_are_sent(evolution_sandbox, webhook_receiver):
    inst = evolution_sandbox.create_instance(ack_delays=FAST_ACKS)
    set_webhook(evolution_sandbox, inst, url=webhook_receiver.url, events=["CONNECTION_UPDATE"])

    send(evolution_sandbox, inst)
    evolution_sandbox.set_state(inst.name, "close")
    webhook_receiver.wait_for(1)
    evolution_sandbox.wait_idle()

    assert [envelope["event"] for envelope in webhook_receiver.events()] == ["connection.update"]


def test_a_disabled_webhook_sends_nothing(evolution_sandbox, webhook_receiver):
    inst = evolution_sandbox.create_instance(ack_delays=FAST_ACKS)
    set_webhook(evolution_sandbox, inst, url=webhook_receiver.url, enabled=False)

    send(evolution_sandbox, inst)
    evolution_sandbox.wait_idle()

    assert webhook_receiver.events() == []


def test_state_changes_emit_connection_update(evolution_sandbox, webhook_receiver):
    inst = evolution_sandbox.create_instance()
    set_webhook(evolution_sandbox, inst, url=webhook_receiver.url, events=["CONNECTION_UPDATE"])

    evolution_sandbox.set_state(inst.name, "close")
    evolution_sandbox.set_state(inst.name, "close")  # no change, no event
    evolution_sandbox.set_state(inst.name, "open")
    closed, opened = webhook_receiver.wait_for(2)

    assert closed["data"] == {"instance": inst.name, "state": "close", "statusReason": 428}
    assert opened["data"]["state"] == "open"
    assert opened["data"]["statusReason"] == 200
    assert opened["data"]["wuid"] == "5511900000000@s.whatsapp.net"


def test_an_inbound_reply_is_a_messages_upsert(evolution_sandbox, webhook_receiver):
    inst = evolution_sandbox.create_instance()
    set_webhook(evolution_sandbox, inst, url=webhook_receiver.url, events=["MESSAGES_UPSERT"])

    data = evolution_sandbox.inbound(inst.name, "+55 11 99876-5432", "Já paguei", reply_to="3EB0ABC", push_name="Maria")
    [envelope] = webhook_receiver.wait_for(1)

    assert envelope["event"] == "messages.upsert"
    assert envelope["data"] == data
    assert data["key"]["fromMe"] is False
    assert data["key"]["remoteJid"] == f"{NUMBER}@s.whatsapp.net"
    assert data["message"] == {"conversation": "Já paguei"}
    assert data["contextInfo"]["stanzaId"] == "3EB0ABC"
    assert data["pushName"] == "Maria"


def test_by_events_appends_the_event_to_the_url(evolution_sandbox, webhook_receiver):
    inst = evolution_sandbox.create_instance(ack_delays={"SERVER_ACK": 0.01, "DELIVERY_ACK": None, "READ": None})
    set_webhook(evolution_sandbox, inst, url=webhook_receiver.url + "/hook", byEvents=True)

    send(evolution_sandbox, inst)
    webhook_receiver.wait_for(2)

    assert [item["path"] for item in webhook_receiver.received] == ["/hook/send-message", "/hook/messages-update"]


def test_custom_headers_are_sent_and_jwt_key_becomes_a_bearer_token(evolution_sandbox, webhook_receiver):
    inst = evolution_sandbox.create_instance()
    set_webhook(
        evolution_sandbox,
        inst,
        url=webhook_receiver.url,
        events=["CONNECTION_UPDATE"],
        headers={"X-Hook-Token": "s3cret", "jwt_key": "signing-key-of-32-bytes-or-more!!"},
    )

    before = int(time.time())
    evolution_sandbox.set_state(inst.name, "close")
    webhook_receiver.wait_for(1)
    headers = {name.lower(): value for name, value in webhook_receiver.received[0]["headers"].items()}

    assert headers["x-hook-token"] == "s3cret"
    assert "jwt_key" not in headers
    scheme, token = headers["authorization"].split(" ", 1)
    assert scheme == "Bearer"
    payload = jwt.decode(token, "signing-key-of-32-bytes-or-more!!", algorithms=["HS256"])
    assert payload["app"] == "evolution" and payload["action"] == "webhook"
    assert payload["exp"] == payload["iat"] + 600
    assert before <= payload["iat"] <= time.time()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "another-key-of-32-bytes-or-more!!", algorithms=["HS256"])


def test_exposed_apikey_is_the_instance_token(evolution_sandbox, webhook_receiver):
    evolution_sandbox.configure_server(expose_apikey=True)
    inst = evolution_sandbox.create_instance()
    set_webhook(evolution_sandbox, inst, url=webhook_receiver.url, events=["CONNECTION_UPDATE"])

    evolution_sandbox.set_state(inst.name, "close")

    assert webhook_receiver.wait_for(1)[0]["apikey"] == inst.token


def test_failed_deliveries_are_retried_but_not_after_a_4xx_that_stops_them(evolution_sandbox):
    evolution_sandbox.configure_server(webhook_retry_base=0.01, webhook_retry_max=0.05)
    inst = evolution_sandbox.create_instance()
    with WebhookReceiver(statuses=[500, 503, 200]) as flaky, WebhookReceiver(statuses=[404]) as gone:
        set_webhook(evolution_sandbox, inst, url=flaky.url, events=["CONNECTION_UPDATE"])
        evolution_sandbox.set_state(inst.name, "close")
        wait = flaky.wait_for(3)
        assert len(wait) == 3
        set_webhook(evolution_sandbox, inst, url=gone.url, events=["CONNECTION_UPDATE"])
        evolution_sandbox.set_state(inst.name, "open")
        gone.wait_for(1)
        evolution_sandbox.wait_idle()
        assert len(gone.received) == 1

    first, second = evolution_sandbox.webhooks(instance=inst.name, event="connection.update")
    assert (first["attempts"], first["delivered"], first["status"]) == (3, True, 200)
    assert (second["attempts"], second["delivered"], second["gave_up"], second["status"]) == (1, False, True, 404)


def test_v1_instances_send_v1_payloads_without_custom_headers_or_retries(evolution_sandbox):
    evolution_sandbox.configure_server(webhook_retry_base=0.01)
    inst = evolution_sandbox.create_instance(
        api_version="v1", ack_delays={"SERVER_ACK": 0.01, "DELIVERY_ACK": None, "READ": None}
    )
    with WebhookReceiver(statuses=[500]) as receiver:
        response = requests.post(
            f"{evolution_sandbox.base_url}/webhook/set/{inst.name}",
            json={"url": receiver.url, "enabled": True, "events": ["MESSAGES_UPDATE"], "webhook_by_events": False},
            headers={"apikey": inst.token},
            timeout=5,
        )
        assert response.status_code == 201
        requests.post(
            f"{evolution_sandbox.base_url}/message/sendText/{inst.name}",
            json={"number": NUMBER, "textMessage": {"text": "oi"}},
            headers={"apikey": inst.token},
            timeout=5,
        ).raise_for_status()
        [envelope] = receiver.wait_for(1)
        evolution_sandbox.wait_idle()
        assert len(receiver.received) == 1  # no retry

    assert "apikey" not in envelope
    assert set(envelope["data"]) == {"remoteJid", "fromMe", "id", "status", "datetime", "owner", "pollUpdates"}
    assert envelope["data"]["status"] == "SERVER_ACK"
