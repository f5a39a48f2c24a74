"""find_messages(): what reconciliation asks the provider, over real HTTP against the sandbox,
and the pure parts (JID candidates, request body, answer parsing)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from apps.common.services.evolution_api_service import EvolutionAPIService, ProviderLookupError
from apps.common.services.evolution_lookup import (
    find_messages_body,
    jid_candidates,
    parse_find_messages,
)

pytestmark = pytest.mark.django_db

PHONE = "+55 (11) 99876-5432"
JID = "5511998765432@s.whatsapp.net"


def test_it_finds_the_message_a_send_left_with_the_provider(evolution_sandbox, sandbox_whatsapp_instance):
    service = EvolutionAPIService(sandbox_whatsapp_instance)
    before = datetime.now(UTC) - timedelta(seconds=2)
    sent = service.send(PHONE, "Sua fatura vence amanhã.")
    service.send("+55 21 98765-1234", "Outra conversa.")

    found = service.find_messages(PHONE, sent_after=before, sent_before=datetime.now(UTC) + timedelta(seconds=2))

    assert found.complete and found.total == 1
    [message] = found.messages
    assert (message.provider_message_id, message.remote_jid, message.from_me, message.text) == (
        sent.provider_message_id,
        JID,
        True,
        "Sua fatura vence amanhã.",
    )
    assert abs(message.timestamp - datetime.now(UTC)) < timedelta(seconds=10)
    [request] = [
        r
        for r in evolution_sandbox.requests(instance=sandbox_whatsapp_instance.instance_name)
        if "findMessages" in r["path"]
    ][:1]
    assert request["body"]["where"]["key"] == {"remoteJid": JID, "fromMe": True}


def test_nothing_found_outside_the_window_or_for_another_chat(evolution_sandbox, sandbox_whatsapp_instance):
    service = EvolutionAPIService(sandbox_whatsapp_instance)
    service.send(PHONE, "Sua fatura vence amanhã.")
    long_ago = datetime.now(UTC) - timedelta(days=2)

    assert service.find_messages(PHONE, sent_after=long_ago, sent_before=long_ago + timedelta(hours=1)).messages == []
    assert service.find_messages("+55 31 99876-0000").messages == []


def test_pages_are_followed_up_to_a_bound(evolution_sandbox, sandbox_whatsapp_instance):
    service = EvolutionAPIService(sandbox_whatsapp_instance)
    ids = {service.send(PHONE, f"Mensagem {n}").provider_message_id for n in range(5)}

    everything = service.find_messages(PHONE, page_size=2)
    assert {m.provider_message_id for m in everything.messages} == ids and everything.complete
    bounded = service.find_messages(PHONE, page_size=2, max_pages=1)
    assert (len(bounded.messages), bounded.total, bounded.complete) == (2, 5, False)


def test_a_lookup_that_drips_is_cut_at_its_deadline(evolution_sandbox, sandbox_whatsapp_instance, settings):
    settings.EVOLUTION_LOOKUP_DEADLINE = 1.0
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, drip_next=1, drip_interval=0.2)

    started = time.monotonic()
    with pytest.raises(ProviderLookupError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).find_messages(PHONE)

    assert caught.value.code == "lookup_deadline"
    assert 0.9 <= time.monotonic() - started < 10  # the answer alone: ~30 s; margin for a loaded box


def test_both_forms_of_a_brazilian_mobile_are_asked():
    assert jid_candidates("5531998765432") == ["5531998765432@s.whatsapp.net", "553198765432@s.whatsapp.net"]
    assert jid_candidates("553198765432") == ["553198765432@s.whatsapp.net", "5531998765432@s.whatsapp.net"]
    assert jid_candidates("14155550100") == ["14155550100@s.whatsapp.net"]


def test_the_request_body_is_evolutions_query_shape():
    start = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    body = find_messages_body(
        remote_jid=JID, from_me=True, sent_after=start, sent_before=start + timedelta(minutes=5), page=2, page_size=50
    )
    assert body == {
        "where": {
            "key": {"remoteJid": JID, "fromMe": True},
            "messageTimestamp": {"gte": "2026-05-01T12:00:00.000Z", "lte": "2026-05-01T12:05:00.000Z"},
        },
        "page": 2,
        "offset": 50,
    }
    assert (
        "messageTimestamp"
        not in find_messages_body(
            remote_jid=JID, from_me=False, sent_after=start, sent_before=None, page=1, page_size=50
        )["where"]
    )


def test_the_answer_is_parsed_from_v2_and_v1_shapes():
    record = {
        "id": "cuid",
        "key": {"remoteJid": JID, "fromMe": True, "id": "3EB0AA"},
        "messageTimestamp": 1717689097,
        "message": {"extendedTextMessage": {"text": "Olá"}},
        "MessageUpdate": [{"status": "SERVER_ACK"}, {"status": "READ"}],
    }
    messages, total, pages = parse_find_messages(
        {"messages": {"total": 1, "pages": 1, "currentPage": 1, "records": [record, {"key": {}}]}}
    )
    assert (total, pages) == (1, 1)
    [message] = messages
    assert (message.provider_message_id, message.text, message.status) == ("3EB0AA", "Olá", "READ")
    assert message.timestamp == datetime.fromtimestamp(1717689097, tz=UTC)
    assert parse_find_messages([record])[1:] == (1, 1)
    with pytest.raises(ValueError):
        parse_find_messages({"unexpected": True})
