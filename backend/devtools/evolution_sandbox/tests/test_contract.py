"""Pins the sandbox's answers to the examples of the provider contract
(docs/evolution-api-contract.md; section numbers below). If the real server is found
to behave differently, fix the contract document first, then this test, then the sandbox."""

from __future__ import annotations

import time

import pytest
import requests

NUMBER = "5511998765432"
TEXT = "Sua fatura vence amanhã."

# §1.4: the keys of the 201 body, and of its `key`
SEND_RESPONSE_KEYS = {
    "key",
    "pushName",
    "status",
    "message",
    "contextInfo",
    "messageType",
    "messageTimestamp",
    "instanceId",
    "source",
}
KEY_KEYS = {"remoteJid", "fromMe", "id"}
# §3: the Prisma Instance row of fetchInstances (v2)
INSTANCE_ROW_KEYS = {
    "id",
    "name",
    "connectionStatus",
    "ownerJid",
    "profileName",
    "profilePicUrl",
    "integration",
    "number",
    "businessId",
    "token",
    "clientName",
    "disconnectionReasonCode",
    "disconnectionObject",
    "disconnectionAt",
    "createdAt",
    "updatedAt",
    "Chatwoot",
    "Proxy",
    "Rabbitmq",
    "Nats",
    "Sqs",
    "Websocket",
    "Setting",
    "_count",
}


@pytest.fixture
def inst(evolution_sandbox):
    return evolution_sandbox.create_instance("billing-bot", token="INSTANCE-TOKEN")


def post(sandbox, path, body=None, key=None, **kwargs):
    headers = {"apikey": key} if key is not None else {}
    return requests.post(f"{sandbox.base_url}{path}", json=body, headers=headers, timeout=5, **kwargs)


def get(sandbox, path, key=None, **kwargs):
    headers = {"apikey": key} if key is not None else {}
    return requests.get(f"{sandbox.base_url}{path}", headers=headers, timeout=5, **kwargs)


def send(sandbox, body=None, key="INSTANCE-TOKEN", instance="billing-bot"):
    return post(
        sandbox,
        f"/message/sendText/{instance}",
        body if body is not None else {"number": NUMBER, "text": TEXT, "linkPreview": False},
        key,
    )


# ----------------------------------------------------------------------------- §1.1 auth
def test_an_unknown_instance_is_404_before_the_key_is_checked(evolution_sandbox):
    response = send(evolution_sandbox, key=None, instance="x")

    assert response.status_code == 404
    assert response.json() == {
        "status": 404,
        "error": "Not Found",
        "response": {"message": ['The "x" instance does not exist']},
    }


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_a_missing_or_wrong_key_is_401(evolution_sandbox, inst, key):
    response = send(evolution_sandbox, key=key)

    assert response.status_code == 401
    assert response.json() == {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}


def test_the_global_key_and_the_instance_token_are_accepted(evolution_sandbox, inst):
    assert send(evolution_sandbox, key="INSTANCE-TOKEN").status_code == 201
    assert send(evolution_sandbox, key=evolution_sandbox.api_key).status_code == 201


def test_an_instance_token_only_works_for_its_own_instance(evolution_sandbox, inst):
    other = evolution_sandbox.create_instance("other-bot", token="OTHER-TOKEN")

    assert send(evolution_sandbox, key=other.token).status_code == 401


# ----------------------------------------------------------------------------- §1.2-1.4 send
def test_send_text_answers_201_with_the_message_raw(evolution_sandbox, inst):
    response = send(evolution_sandbox)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == SEND_RESPONSE_KEYS
    assert set(body["key"]) == KEY_KEYS
    assert body["key"]["remoteJid"] == f"{NUMBER}@s.whatsapp.net"
    assert body["key"]["fromMe"] is True
    assert body["status"] == "PENDING"
    assert body["pushName"] == "Você"
    assert body["message"] == {"conversation": TEXT}
    assert body["messageType"] == "conversation"
    assert isinstance(body["messageTimestamp"], int)
    assert body["instanceId"] == inst.data["id"]


def test_every_message_gets_a_unique_key_id(evolution_sandbox, inst):
    ids = {send(evolution_sandbox).json()["key"]["id"] for _ in range(20)}

    assert len(ids) == 20


@pytest.mark.parametrize("number", ["+55 (11) 99876-5432", "5511998765432@s.whatsapp.net"])
def test_the_number_formats_of_the_contract_are_accepted(evolution_sandbox, inst, number):
    response = send(evolution_sandbox, {"number": number, "text": TEXT})

    assert response.status_code == 201
    assert response.json()["key"]["remoteJid"] == f"{NUMBER}@s.whatsapp.net"


def test_a_number_not_on_whatsapp_is_400_exists_false(evolution_sandbox, inst):
    evolution_sandbox.set_not_on_whatsapp(NUMBER)

    response = send(evolution_sandbox)

    assert response.status_code == 400
    assert response.json() == {
        "status": 400,
        "error": "Bad Request",
        "response": {"message": [{"jid": f"{NUMBER}@s.whatsapp.net", "exists": False, "number": NUMBER}]},
    }
    assert evolution_sandbox.messages() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"number": NUMBER}, [['instance requires property "text"']]),
        (
            {"number": NUMBER, "textMessage": {"text": TEXT}},
            [['instance requires property "text"']],
        ),  # a v1 body (#2570)
        ({"number": 5511998765432, "text": TEXT}, [["Invalid format"]]),
        ({"number": NUMBER, "text": "   "}, ["Text is required"]),
    ],
)
def test_invalid_bodies_are_400_with_the_validation_message(evolution_sandbox, inst, body, message):
    response = send(evolution_sandbox, body)

    assert response.status_code == 400
    assert response.json() == {"status": 400, "error": "Bad Request", "response": {"message": message}}


def test_a_closed_instance_answers_500_connection_closed(evolution_sandbox, inst):
    evolution_sandbox.set_state("billing-bot", "close")

    response = send(evolution_sandbox)

    assert response.status_code == 500
    assert response.json() == {
        "status": 500,
        "error": "Internal Server Error",
        "response": {"message": "Connection Closed"},
    }


def test_a_rate_limited_instance_answers_429_with_retry_after(evolution_sandbox, inst):
    evolution_sandbox.configure("billing-bot", rate_limit_next=1, retry_after=7)

    response = send(evolution_sandbox)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["status"] == 429
    assert send(evolution_sandbox).status_code == 201


def test_an_unknown_route_is_404_cannot_method_path(evolution_sandbox):
    response = post(evolution_sandbox, "/x", {})

    assert response.status_code == 404
    assert response.json() == {"status": 404, "error": "Not Found", "response": {"message": ["Cannot POST /x"]}}


# ----------------------------------------------------------------------------- §2 v1
def test_a_v1_instance_expects_the_v1_body(evolution_sandbox, inst):
    evolution_sandbox.configure("billing-bot", api_version="v1")

    flat = send(evolution_sandbox)
    assert flat.status_code == 400
    assert flat.json()["response"]["message"] == [['instance requires property "textMessage"']]

    response = send(
        evolution_sandbox,
        {"number": NUMBER, "options": {"delay": 0, "linkPreview": False}, "textMessage": {"text": TEXT}},
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"key", "message", "messageTimestamp", "status"}
    assert body["message"] == {"extendedTextMessage": {"text": TEXT}}
    assert body["status"] == "PENDING"
    assert isinstance(body["messageTimestamp"], str)
    assert body["key"]["id"]


# ----------------------------------------------------------------------------- §3 health
@pytest.mark.parametrize("state", ["open", "close", "connecting"])
def test_connection_state_reports_the_state(evolution_sandbox, inst, state):
    evolution_sandbox.set_state("billing-bot", state)

    response = get(evolution_sandbox, "/instance/connectionState/billing-bot", "INSTANCE-TOKEN")

    assert response.status_code == 200
    assert response.json() == {"instance": {"instanceName": "billing-bot", "state": state}}


def test_connection_state_omits_the_state_of_an_instance_not_loaded(evolution_sandbox, inst):
    evolution_sandbox.configure("billing-bot", loaded=False)

    response = get(evolution_sandbox, "/instance/connectionState/billing-bot", evolution_sandbox.api_key)

    assert response.json() == {"instance": {"instanceName": "billing-bot"}}


def test_connection_state_has_the_same_guards(evolution_sandbox, inst):
    assert get(evolution_sandbox, "/instance/connectionState/nope").status_code == 404
    assert get(evolution_sandbox, "/instance/connectionState/billing-bot", "bad").status_code == 401


def test_fetch_instances_with_the_global_key_lists_all(evolution_sandbox, inst):
    evolution_sandbox.create_instance("other-bot", token="OTHER-TOKEN")

    rows = get(evolution_sandbox, "/instance/fetchInstances", evolution_sandbox.api_key).json()

    assert {row["name"] for row in rows} == {"billing-bot", "other-bot"}
    assert all(set(row) == INSTANCE_ROW_KEYS for row in rows)
    assert {row["connectionStatus"] for row in rows} == {"open"}


def test_fetch_instances_with_a_token_lists_only_its_instance(evolution_sandbox, inst):
    evolution_sandbox.create_instance("other-bot", token="OTHER-TOKEN")

    rows = get(evolution_sandbox, "/instance/fetchInstances", "INSTANCE-TOKEN").json()
    assert [row["name"] for row in rows] == ["billing-bot"]
    assert (
        get(evolution_sandbox, "/instance/fetchInstances?instanceName=other-bot", "INSTANCE-TOKEN").status_code == 401
    )
    assert get(evolution_sandbox, "/instance/fetchInstances", "nobody").status_code == 401


def test_fetch_instances_by_an_unknown_name_is_404(evolution_sandbox, inst):
    response = get(evolution_sandbox, "/instance/fetchInstances?instanceName=x", evolution_sandbox.api_key)

    assert response.status_code == 404
    assert response.json()["response"]["message"] == ['Instance "x" not found']


def test_the_root_answers_without_auth(evolution_sandbox):
    body = get(evolution_sandbox, "/").json()

    assert body["status"] == 200
    assert body["message"] == "Welcome to the Evolution API, it is working!"
    assert body["version"]


# ----------------------------------------------------------------------------- §4 webhook config
def test_webhook_set_answers_201_with_the_stored_row_and_find_returns_it(evolution_sandbox, inst):
    webhook = {
        "enabled": True,
        "url": "https://billing.example.com/wa/hook/s3cret",
        "headers": {"X-Hook-Token": "s3cret"},
        "byEvents": False,
        "base64": False,
        "events": ["MESSAGES_UPSERT", "MESSAGES_UPDATE"],
    }

    response = post(evolution_sandbox, "/webhook/set/billing-bot", {"webhook": webhook}, "INSTANCE-TOKEN")

    assert response.status_code == 201
    row = response.json()
    assert set(row) == {
        "id",
        "url",
        "headers",
        "enabled",
        "events",
        "webhookByEvents",
        "webhookBase64",
        "createdAt",
        "updatedAt",
        "instanceId",
    }
    assert (row["url"], row["enabled"], row["events"], row["headers"]) == (
        webhook["url"],
        True,
        ["MESSAGES_UPSERT", "MESSAGES_UPDATE"],
        {"X-Hook-Token": "s3cret"},
    )
    assert get(evolution_sandbox, "/webhook/find/billing-bot", "INSTANCE-TOKEN").json() == row


def test_webhook_find_is_null_before_any_set(evolution_sandbox, inst):
    response = get(evolution_sandbox, "/webhook/find/billing-bot", "INSTANCE-TOKEN")

    assert (response.status_code, response.json()) == (200, None)


def test_enabled_with_no_events_subscribes_to_all(evolution_sandbox, inst):
    row = post(
        evolution_sandbox,
        "/webhook/set/billing-bot",
        {"webhook": {"enabled": True, "url": "http://127.0.0.1:9/h", "events": []}},
        "INSTANCE-TOKEN",
    ).json()

    assert {"MESSAGES_UPSERT", "MESSAGES_UPDATE", "SEND_MESSAGE", "CONNECTION_UPDATE"} <= set(row["events"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"webhook": {"enabled": True}}, [['webhook requires property "url"']]),
        ({"url": "http://x"}, [['instance requires property "webhook"']]),
        ({"webhook": {"enabled": True, "url": "not a url"}}, ['Invalid "url" property']),
    ],
)
def test_webhook_set_validates_like_the_real_server(evolution_sandbox, inst, body, message):
    response = post(evolution_sandbox, "/webhook/set/billing-bot", body, "INSTANCE-TOKEN")

    assert response.status_code == 400
    assert response.json()["response"]["message"] == message


def test_webhook_routes_have_the_same_guards(evolution_sandbox, inst):
    assert post(evolution_sandbox, "/webhook/set/nope", {}).status_code == 404
    assert post(evolution_sandbox, "/webhook/set/billing-bot", {}, "bad").status_code == 401
    assert get(evolution_sandbox, "/webhook/find/billing-bot").status_code == 401


# ----------------------------------------------------------------------------- findMessages
def find(sandbox, body, key="INSTANCE-TOKEN", instance="billing-bot"):
    return post(sandbox, f"/chat/findMessages/{instance}", body, key)


def test_find_messages_answers_what_was_sent_in_the_paged_v2_shape(evolution_sandbox, inst):
    first = send(evolution_sandbox).json()
    second = send(evolution_sandbox).json()
    send(evolution_sandbox, {"number": "5521987651234", "text": "outro"})

    response = find(
        evolution_sandbox, {"where": {"key": {"remoteJid": f"{NUMBER}@s.whatsapp.net"}}, "page": 1, "offset": 50}
    )

    assert response.status_code == 200
    page = response.json()["messages"]
    assert (page["total"], page["pages"], page["currentPage"]) == (2, 1, 1)
    assert [record["key"]["id"] for record in page["records"]] == [second["key"]["id"], first["key"]["id"]]
    record = page["records"][0]
    assert set(record) == {
        "id",
        "key",
        "pushName",
        "messageType",
        "message",
        "messageTimestamp",
        "instanceId",
        "source",
        "contextInfo",
        "MessageUpdate",
    }
    assert record["key"] == second["key"] and record["message"] == {"conversation": TEXT}
    assert record["messageTimestamp"] == second["messageTimestamp"] and record["instanceId"] == inst.data["id"]


def test_find_messages_pages_and_filters_by_id_and_time(evolution_sandbox, inst):
    ids = [send(evolution_sandbox).json()["key"]["id"] for _ in range(3)]

    page2 = find(
        evolution_sandbox, {"where": {"key": {"remoteJid": f"{NUMBER}@s.whatsapp.net"}}, "page": 2, "offset": 2}
    ).json()["messages"]
    assert (page2["total"], page2["pages"], len(page2["records"])) == (3, 2, 1)
    by_id = find(evolution_sandbox, {"where": {"key": {"id": ids[1]}}}).json()["messages"]
    assert [record["key"]["id"] for record in by_id["records"]] == [ids[1]]
    past = find(
        evolution_sandbox,
        {"where": {"messageTimestamp": {"gte": "2020-01-01T00:00:00Z", "lte": "2020-01-02T00:00:00Z"}}},
    ).json()
    assert past["messages"]["total"] == 0


def test_find_messages_follows_the_guard_order(evolution_sandbox, inst):
    assert find(evolution_sandbox, {}, instance="nope").status_code == 404
    assert find(evolution_sandbox, {}, key="wrong").status_code == 401


def test_a_sent_message_is_still_echoed_as_send_message(evolution_sandbox, inst, webhook_receiver):
    post(
        evolution_sandbox,
        "/webhook/set/billing-bot",
        {"webhook": {"enabled": True, "url": webhook_receiver.url, "events": ["SEND_MESSAGE"]}},
        "INSTANCE-TOKEN",
    )
    sent = send(evolution_sandbox).json()

    [event] = webhook_receiver.wait_for(1, "send.message")
    assert event["data"]["key"] == sent["key"] and event["data"]["key"]["fromMe"] is True
    record = find(evolution_sandbox, {"where": {"key": {"id": sent["key"]["id"]}}}).json()["messages"]["records"][0]
    assert record["key"] == event["data"]["key"]


# ----------------------------------------------------------------------------- drip (not part of the contract)
def test_drip_writes_the_answer_one_byte_at_a_time(evolution_sandbox, inst):
    evolution_sandbox.configure("billing-bot", drip_next=1, drip_interval=0.005)

    started = time.monotonic()
    response = send(evolution_sandbox)

    assert response.status_code == 201 and response.json()["key"]["fromMe"] is True
    assert time.monotonic() - started > 0.005 * 200  # hundreds of bytes, one every 5 ms
    assert evolution_sandbox.messages(instance="billing-bot")  # it went out before the answer
