"""The sandbox in WAHA mode (contract §6), over real HTTP: the key first, sessions, sendText and
its faults, webhooks signed with HMAC-SHA512 over the exact bytes, pairing by QR and the
phone's logout; and Evolution's pairing routes and logout events."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
import requests

NUMBER = "5511998765432"
CHAT = f"{NUMBER}@c.us"
FAST_ACKS = {"SERVER_ACK": 0.05, "DELIVERY_ACK": 0.1, "READ": 0.15}
HMAC_KEY = "k" * 64


def api(sandbox, method: str, path: str, key: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{sandbox.base_url}{path}", headers={"X-Api-Key": key}, timeout=5, **kwargs)


def hook(sandbox, session, url: str, events: list[str]) -> None:
    response = api(
        sandbox,
        "PUT",
        f"/api/sessions/{session.name}",
        session.token,
        json={"config": {"webhooks": [{"url": url, "events": events, "hmac": {"key": HMAC_KEY}}]}},
    )
    assert response.status_code == 200, response.text


def test_the_key_comes_first_then_the_session(evolution_sandbox):
    session = evolution_sandbox.create_instance(provider="waha")

    assert api(evolution_sandbox, "GET", f"/api/sessions/{session.name}", "wrong").status_code == 401
    assert api(evolution_sandbox, "GET", "/api/sessions/nobody", "wrong").status_code == 401
    missing = api(evolution_sandbox, "GET", "/api/sessions/nobody", evolution_sandbox.api_key)
    assert missing.status_code == 404 and missing.json()["message"] == "Session not found"
    info = api(evolution_sandbox, "GET", f"/api/sessions/{session.name}", session.token).json()
    assert (info["name"], info["status"], info["me"]["id"]) == (session.name, "WORKING", "5511900000000@c.us")


def test_an_evolution_instance_is_not_a_waha_session_and_the_reverse(evolution_sandbox):
    evolution = evolution_sandbox.create_instance()
    waha = evolution_sandbox.create_instance(provider="waha")

    assert (
        api(evolution_sandbox, "GET", f"/api/sessions/{evolution.name}", evolution_sandbox.api_key).status_code == 404
    )
    assert (
        requests.get(
            f"{evolution_sandbox.base_url}/instance/connectionState/{waha.name}",
            headers={"apikey": evolution_sandbox.api_key},
            timeout=5,
        ).status_code
        == 404
    )


def test_send_text_answers_nowebs_message_and_a_stopped_session_is_422(evolution_sandbox):
    session = evolution_sandbox.create_instance(provider="waha")
    body = {"session": session.name, "chatId": CHAT, "text": "Sua fatura vence amanhã."}

    sent = api(evolution_sandbox, "POST", "/api/sendText", session.token, json=body)
    assert sent.status_code == 201 and sent.json()["key"]["fromMe"] is True
    [message] = evolution_sandbox.messages(instance=session.name)
    assert (message["id"], message["remote_jid"], message["provider"]) == (sent.json()["key"]["id"], CHAT, "waha")

    evolution_sandbox.set_state(session.name, "close")
    stopped = api(evolution_sandbox, "POST", "/api/sendText", session.token, json=body)
    assert stopped.status_code == 422 and stopped.json()["status"] == "STOPPED"
    assert stopped.json()["expected"] == ["WORKING"]
    bad = api(evolution_sandbox, "POST", "/api/sendText", session.token, json={"session": session.name})
    assert bad.status_code == 400


def test_check_exists_knows_the_numbers_not_on_whatsapp(evolution_sandbox):
    session = evolution_sandbox.create_instance(provider="waha")
    evolution_sandbox.set_not_on_whatsapp(NUMBER)

    answer = api(
        evolution_sandbox, "GET", f"/api/contacts/check-exists?phone={NUMBER}&session={session.name}", session.token
    ).json()
    other = api(
        evolution_sandbox,
        "GET",
        f"/api/contacts/check-exists?phone=5511911112222&session={session.name}",
        session.token,
    ).json()

    assert answer == {"numberExists": False, "chatId": None}
    assert other == {"numberExists": True, "chatId": "5511911112222@c.us"}


def test_webhooks_are_hmac_signed_over_the_bytes_sent_and_in_order(evolution_sandbox, webhook_receiver):
    session = evolution_sandbox.create_instance(provider="waha", ack_delays=FAST_ACKS)
    hook(evolution_sandbox, session, webhook_receiver.url + "/hook", ["message.any", "message.ack"])

    sent = api(
        evolution_sandbox,
        "POST",
        "/api/sendText",
        session.token,
        json={"session": session.name, "chatId": CHAT, "text": "Olá"},
    ).json()
    received = webhook_receiver.wait_for(4)

    assert [e["event"] for e in received] == ["message.any", "message.ack", "message.ack", "message.ack"]
    assert [e["payload"]["ack"] for e in received[1:]] == [1, 2, 3]
    assert received[0]["payload"]["id"] == f"true_{CHAT}_{sent['key']['id']}" and received[0]["payload"]["fromMe"]
    for delivery in evolution_sandbox.webhooks(instance=session.name):
        signature = hmac.new(HMAC_KEY.encode(), delivery["body"].encode(), hashlib.sha512).hexdigest()
        assert delivery["headers"]["X-Webhook-Hmac"] == signature
        assert delivery["headers"]["X-Webhook-Hmac-Algorithm"] == "sha512"
        assert delivery["payload"]["session"] == session.name and delivery["payload"]["engine"] == "NOWEB"


def test_error_acks_on_request_and_for_numbers_not_on_whatsapp(evolution_sandbox, webhook_receiver):
    session = evolution_sandbox.create_instance(provider="waha", ack_delays=FAST_ACKS, ack_error_next=1)
    hook(evolution_sandbox, session, webhook_receiver.url, ["message.ack"])
    evolution_sandbox.set_not_on_whatsapp("5511911112222")
    for chat in (CHAT, "5511911112222@c.us", "5511933334444@c.us"):
        api(
            evolution_sandbox,
            "POST",
            "/api/sendText",
            session.token,
            json={"session": session.name, "chatId": chat, "text": "Olá"},
        )

    received = webhook_receiver.wait_for(5)

    acks = {(e["payload"]["from"], e["payload"]["ack"]) for e in received}
    assert (CHAT, -1) in acks and ("5511911112222@c.us", -1) in acks and ("5511933334444@c.us", 3) in acks


def test_pairing_a_session_qr_then_scan_then_working(evolution_sandbox, webhook_receiver):
    created = api(
        evolution_sandbox,
        "POST",
        "/api/sessions",
        evolution_sandbox.api_key,
        json={
            "name": "fresh",
            "start": True,
            "config": {"webhooks": [{"url": webhook_receiver.url, "events": ["session.status"]}]},
        },
    )
    assert created.status_code == 201 and created.json()["status"] == "SCAN_QR_CODE"
    assert (
        api(evolution_sandbox, "POST", "/api/sessions", evolution_sandbox.api_key, json={"name": "fresh"}).status_code
        == 422
    )

    qr = api(evolution_sandbox, "GET", "/api/fresh/auth/qr", evolution_sandbox.api_key).json()
    assert qr["mimetype"] == "image/png" and qr["data"].startswith("iVBOR")
    evolution_sandbox.scan("fresh")

    assert api(evolution_sandbox, "GET", "/api/sessions/fresh", evolution_sandbox.api_key).json()["status"] == "WORKING"
    assert api(evolution_sandbox, "GET", "/api/fresh/auth/qr", evolution_sandbox.api_key).status_code == 422
    statuses = [e["payload"]["status"] for e in webhook_receiver.wait_for(1)]
    assert statuses[-1] == "WORKING"


def test_the_phones_logout_sends_a_waha_session_back_to_scan(evolution_sandbox, webhook_receiver):
    session = evolution_sandbox.create_instance(provider="waha")
    hook(evolution_sandbox, session, webhook_receiver.url, ["session.status"])

    evolution_sandbox.phone_logout(session.name)

    [event] = webhook_receiver.wait_for(1)
    assert event["payload"] == {"name": session.name, "status": "SCAN_QR_CODE"}
    with pytest.raises(Exception):  # noqa: B017 - the test client raises whatever the 409 maps to
        evolution_sandbox.scan(evolution_sandbox.create_instance().name)  # open: nothing to scan (409)


def test_evolution_pairing_and_logout_events(evolution_sandbox, webhook_receiver):
    instance = evolution_sandbox.create_instance(state="close")
    requests.post(
        f"{evolution_sandbox.base_url}/webhook/set/{instance.name}",
        headers={"apikey": instance.token},
        json={"webhook": {"enabled": True, "url": webhook_receiver.url}},
        timeout=5,
    )

    connect = requests.get(
        f"{evolution_sandbox.base_url}/instance/connect/{instance.name}", headers={"apikey": instance.token}, timeout=5
    ).json()
    assert connect["base64"].startswith("data:image/png;base64,") and connect["count"] == 1
    evolution_sandbox.scan(instance.name)
    logout = requests.delete(
        f"{evolution_sandbox.base_url}/instance/logout/{instance.name}", headers={"apikey": instance.token}, timeout=5
    )

    assert logout.json()["status"] == "SUCCESS"
    events = [(e["event"], e["data"].get("state"), e["data"].get("statusReason")) for e in webhook_receiver.wait_for(4)]
    assert events == [
        ("connection.update", "connecting", 428),
        ("connection.update", "open", 200),
        ("logout.instance", None, None),
        ("connection.update", "close", 401),
    ]
    assert json.loads(json.dumps(evolution_sandbox.instance(instance.name)))["paired"] is False
