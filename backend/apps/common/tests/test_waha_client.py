"""WAHAAPIService over real HTTP against the sandbox in WAHA mode: the two calls of a send, every
error class with its `nothing_sent`, health, the chat history reconciliation reads, pairing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.common.http_client import HTTPStatusError
from apps.common.services.provider import client_for
from apps.common.services.provider_errors import (
    AmbiguousSendError,
    InstanceUnavailableError,
    InvalidNumberError,
    ProviderAuthError,
    ProviderRateLimitedError,
    TransientProviderError,
)
from apps.common.services.waha_api_service import WAHAAPIService
from apps.common.services.waha_lookup import (
    ack_status,
    message_key,
    parse_chat_messages,
    sent_message_id,
)
from apps.connections.models import WhatsAppInstance

pytestmark = pytest.mark.django_db

PHONE = "+55 (11) 99876-5432"
DIGITS = "5511998765432"
TEXT = "Sua fatura vence amanhã."


@pytest.fixture
def waha(make_sandbox_whatsapp_instance) -> WhatsAppInstance:
    return make_sandbox_whatsapp_instance(provider="waha")


def sends(sandbox, instance) -> list[dict]:
    return sandbox.requests(instance=instance.instance_name, path="/api/sendText")


def checks(sandbox, instance) -> list[dict]:
    return sandbox.requests(instance=instance.instance_name, path="/api/contacts/check-exists")


# ----------------------------------------------------------------------------- sending
def test_client_for_picks_the_waha_client(waha):
    assert isinstance(client_for(waha), WAHAAPIService)


def test_it_checks_the_number_then_sends_to_the_chat_id_with_the_x_api_key(evolution_sandbox, waha, settings):
    result = client_for(waha).send(PHONE, TEXT)

    [message] = evolution_sandbox.messages(instance=waha.instance_name)
    assert (result.provider_message_id, result.remote_jid, result.attempts) == (message["id"], f"{DIGITS}@c.us", 1)
    [check] = checks(evolution_sandbox, waha)
    assert check["method"] == "GET" and check["auth"] == "instance"
    [request] = sends(evolution_sandbox, waha)
    assert request["body"] == {
        "session": waha.instance_name,
        "chatId": f"{DIGITS}@c.us",
        "text": TEXT,
        "linkPreview": False,
    }
    assert request["auth"] == "instance" and request["user_agent"] == settings.EVOLUTION_USER_AGENT


def test_a_number_not_on_whatsapp_is_invalid_and_nothing_is_posted(evolution_sandbox, waha):
    evolution_sandbox.set_not_on_whatsapp(DIGITS)

    with pytest.raises(InvalidNumberError) as caught:
        client_for(waha).send(PHONE, TEXT, max_retries=3)

    assert caught.value.permanent is True and caught.value.nothing_sent is False
    assert len(checks(evolution_sandbox, waha)) == 1 and sends(evolution_sandbox, waha) == []


@pytest.mark.parametrize("state", ["close", "qr", "refused", "connecting"])
def test_a_session_that_is_not_working_is_unavailable_and_sent_nothing(evolution_sandbox, waha, state):
    evolution_sandbox.set_state(waha.instance_name, state)

    with pytest.raises(InstanceUnavailableError) as caught:
        client_for(waha).send(PHONE, TEXT, max_retries=3)

    assert (caught.value.code, caught.value.http_status, caught.value.nothing_sent) == (
        "session_not_working",
        422,
        False,
    )
    assert sends(evolution_sandbox, waha) == [] and evolution_sandbox.messages(instance=waha.instance_name) == []


def test_a_wrong_key_and_an_unknown_session_are_misconfigurations(evolution_sandbox, waha):
    WhatsAppInstance.objects.filter(pk=waha.pk).update(api_key="wrong")
    waha.refresh_from_db()
    with pytest.raises(ProviderAuthError) as caught:
        client_for(waha).send(PHONE, TEXT)
    assert caught.value.code == "provider_unauthorized"

    waha.api_key, waha.instance_name = evolution_sandbox.api_key, "no-such-session"
    with pytest.raises(ProviderAuthError) as caught:
        client_for(waha).send(PHONE, TEXT)
    assert caught.value.code == "provider_instance_not_found"


def test_a_429_is_waited_out_when_short_and_retried(evolution_sandbox, waha):
    evolution_sandbox.configure(waha.instance_name, rate_limit_next=1, retry_after=0)

    result = client_for(waha).send(PHONE, TEXT, max_retries=2)

    assert result.attempts == 2 and len(sends(evolution_sandbox, waha)) == 2


def test_a_long_429_goes_back_to_the_caller(evolution_sandbox, waha):
    evolution_sandbox.configure(waha.instance_name, rate_limit_next=1, retry_after=120)

    with pytest.raises(ProviderRateLimitedError) as caught:
        client_for(waha).send(PHONE, TEXT, max_retries=2)
    assert caught.value.retry_after == 120


def test_a_503_is_transient_and_retried(evolution_sandbox, waha):
    evolution_sandbox.configure(waha.instance_name, fail_next=2, failure_status=503)

    result = client_for(waha).send(PHONE, TEXT, max_retries=3)

    assert result.attempts == 3 and len(evolution_sandbox.messages(instance=waha.instance_name)) == 1


def test_a_500_from_the_engine_may_have_sent_it_and_is_never_retried(evolution_sandbox, waha):
    evolution_sandbox.configure(waha.instance_name, ambiguous_next=1)

    with pytest.raises(AmbiguousSendError) as caught:
        client_for(waha).send(PHONE, TEXT, max_retries=3)

    assert caught.value.http_status == 500 and isinstance(caught.value.__cause__, HTTPStatusError)
    assert (
        len(sends(evolution_sandbox, waha)) == 1 and len(evolution_sandbox.messages(instance=waha.instance_name)) == 1
    )


def test_a_hung_send_ends_at_the_send_deadline_and_is_ambiguous(evolution_sandbox, waha, settings):
    settings.EVOLUTION_SEND_DEADLINE = 1.5
    evolution_sandbox.configure(waha.instance_name, hang_next=1, hang_seconds=10)
    started = datetime.now(UTC)

    with pytest.raises(AmbiguousSendError) as caught:
        client_for(waha).send(PHONE, TEXT)

    assert caught.value.code == "deadline_exceeded"
    # the check and the POST share the one deadline
    assert (datetime.now(UTC) - started).total_seconds() < 6  # the hang lasts 10 s; margin for a loaded box


def test_a_check_that_gets_no_answer_in_time_sent_nothing(evolution_sandbox, waha, unaccepting_port):
    waha.base_url = f"http://127.0.0.1:{unaccepting_port}"

    with pytest.raises(TransientProviderError) as caught:
        client_for(waha).send(PHONE, TEXT, max_retries=0)

    assert caught.value.nothing_sent is True


# ----------------------------------------------------------------------------- health
@pytest.mark.parametrize(
    "state,health,lost",
    [
        ("close", "close", False),
        ("connecting", "connecting", False),
        ("qr", "pairing", True),
        ("refused", "error", True),
    ],
)
def test_a_session_not_working_is_unhealthy_in_our_words(evolution_sandbox, waha, state, health, lost):
    evolution_sandbox.set_state(waha.instance_name, state)

    result = client_for(waha).check_health()

    assert (result.healthy, result.state, result.session_lost) == (False, health, lost)


def test_a_working_session_is_healthy(evolution_sandbox, waha):
    result = client_for(waha).check_health()

    assert (result.healthy, result.state, result.provider_state) == (True, "open", "WORKING")


def test_an_unknown_session_is_unhealthy_with_the_404_kept(evolution_sandbox, waha):
    waha.instance_name, waha.api_key = "gone", evolution_sandbox.api_key  # WAHA checks the key first

    result = client_for(waha).check_health()

    assert (result.healthy, result.http_status) == (False, 404)


# ----------------------------------------------------------------------------- reconciliation
def test_the_chat_history_finds_our_message_within_the_window(evolution_sandbox, waha):
    sent = client_for(waha).send(PHONE, TEXT)
    now = datetime.now(UTC)

    lookup = client_for(waha).find_messages(
        PHONE, sent_after=now - timedelta(minutes=1), sent_before=now + timedelta(minutes=1)
    )

    assert [m.provider_message_id for m in lookup.messages] == [sent.provider_message_id]
    assert lookup.messages[0].text == TEXT and lookup.messages[0].from_me and lookup.complete
    later = client_for(waha).find_messages(
        PHONE, sent_after=now + timedelta(hours=1), sent_before=now + timedelta(hours=2)
    )
    assert later.messages == [] and later.complete


def test_the_history_is_read_page_by_page_up_to_a_bound(evolution_sandbox, waha):
    for _ in range(5):
        client_for(waha).send(PHONE, TEXT)

    lookup = client_for(waha).find_messages(PHONE, page_size=2, max_pages=2)

    assert len(lookup.messages) == 4 and lookup.complete is False


def test_message_ids_and_receipts_of_every_shape_are_understood():
    assert message_key("true_5511998765432@c.us_3EB0ABC") == "3EB0ABC"
    assert message_key({"_serialized": "false_5511@c.us_AAA", "id": "AAA"}) == "AAA"
    assert sent_message_id({"key": {"id": "3EB0X"}}) == "3EB0X"
    assert sent_message_id({"id": {"_serialized": "true_x@c.us_3EB0Y"}}) == "3EB0Y"
    assert [ack_status(v) for v in (-1, 0, 1, 2, 3, 4, "DEVICE", 9)] == [
        "ERROR",
        "PENDING",
        "SERVER_ACK",
        "DELIVERY_ACK",
        "READ",
        "PLAYED",
        "DELIVERY_ACK",
        "",
    ]
    [parsed] = parse_chat_messages(
        [
            {"id": "true_1@c.us_Z", "fromMe": True, "to": "1@c.us", "body": "x", "timestamp": 1_700_000_000, "ack": 3},
            {"no": "id"},
        ]
    )
    assert (parsed.provider_message_id, parsed.remote_jid, parsed.status) == ("Z", "1@c.us", "READ")
    with pytest.raises(ValueError):
        parse_chat_messages({"messages": []})


# ----------------------------------------------------------------------------- pairing and set-up
def test_create_remote_makes_a_session_with_its_signed_webhook_and_keeps_the_server_key(evolution_sandbox, db):
    instance = WhatsAppInstance(
        tenant_id=None,
        name="new",
        provider="waha",
        base_url=evolution_sandbox.base_url,
        api_key=evolution_sandbox.api_key,
        instance_name="fresh-session",
    )

    key = client_for(instance).create_remote(webhook_url="https://billing.example.com/hook/x/", signing_key="k" * 64)

    session = evolution_sandbox.instance("fresh-session")
    assert key == evolution_sandbox.api_key and session["provider"] == "waha" and session["state"] == "qr"
    [hook] = session["session_config"]["webhooks"]
    assert hook["url"] == "https://billing.example.com/hook/x/" and hook["hmac"] == {"key": "k" * 64}
    assert hook["events"] == ["message.any", "message.ack", "session.status"]


def test_pairing_shows_a_qr_until_the_scan_then_connected(evolution_sandbox, waha):
    evolution_sandbox.set_state(waha.instance_name, "qr")

    pairing = client_for(waha).pairing_state()
    assert (pairing.state, pairing.connected) == ("pairing", False)
    assert pairing.qr_data_url.startswith("data:image/png;base64,iVBOR")
    assert "qr_data_url" not in repr(pairing)

    evolution_sandbox.scan(waha.instance_name)
    assert client_for(waha).pairing_state().connected is True


def test_a_stopped_session_is_started_to_get_a_qr(evolution_sandbox, make_sandbox_whatsapp_instance):
    instance = make_sandbox_whatsapp_instance(provider="waha", state="close")

    assert client_for(instance).pairing_state().state == "connecting"
    assert evolution_sandbox.instance(instance.instance_name)["state"] == "qr"


def test_logout_and_restart_reach_the_session(evolution_sandbox, waha):
    client_for(waha).logout()
    assert evolution_sandbox.instance(waha.instance_name)["state"] == "qr"

    client_for(waha).restart()
    assert evolution_sandbox.requests(instance=waha.instance_name, path="/restart")[-1]["status"] == 201


def test_configure_webhook_puts_the_session_config(evolution_sandbox, waha):
    status = client_for(waha).configure_webhook(url="https://billing.example.com/w/", signing_key="s" * 64)

    assert status == 200
    [hook] = evolution_sandbox.instance(waha.instance_name)["session_config"]["webhooks"]
    assert hook["hmac"] == {"key": "s" * 64} and hook["retries"]["policy"] == "exponential"
