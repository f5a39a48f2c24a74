"""EvolutionAPIService.send over real HTTP against the sandbox: payloads, every error class,
retry counts (the sandbox counts the requests it received) and backoff."""

from __future__ import annotations

import logging
import time

import pytest
from prometheus_client import REGISTRY

from apps.common.http_client import HTTPCallError, HTTPStatusError
from apps.common.logging import JsonFormatter
from apps.common.services.evolution_api_service import (
    AmbiguousSendError,
    EvolutionAPIService,
    InstanceUnavailableError,
    InvalidNumberError,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitedError,
    SendResult,
    TransientProviderError,
    UnsafeProviderAddressError,
    backoff_delay,
)

pytestmark = pytest.mark.django_db

PHONE = "+55 (11) 99876-5432"
DIGITS = "5511998765432"
TEXT = "Sua fatura vence amanhã."


def send_count(sandbox, instance) -> int:
    return len(sandbox.send_requests(instance.instance_name))


# ----------------------------------------------------------------------------- success
def test_it_sends_the_v2_body_with_the_instance_key_and_returns_key_id(
    evolution_sandbox, sandbox_whatsapp_instance, settings
):
    result = EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT)

    assert isinstance(result, SendResult)
    [message] = evolution_sandbox.messages(instance=sandbox_whatsapp_instance.instance_name)
    assert result.provider_message_id == message["id"]
    assert (result.status, result.attempts, result.remote_jid) == ("PENDING", 1, f"{DIGITS}@s.whatsapp.net")
    assert (message["number"], message["text"]) == (DIGITS, TEXT)
    [request] = evolution_sandbox.send_requests(sandbox_whatsapp_instance.instance_name)
    assert request["body"] == {"number": DIGITS, "text": TEXT, "linkPreview": False}
    assert request["auth"] == "instance"
    assert request["user_agent"] == settings.EVOLUTION_USER_AGENT


def test_it_normalises_the_phone_through_contacts_utils(evolution_sandbox, sandbox_whatsapp_instance):
    # an old 8-digit Brazilian mobile: contacts.utils puts the ninth digit back
    EvolutionAPIService(sandbox_whatsapp_instance).send("(11) 8765-4321", TEXT)

    [request] = evolution_sandbox.send_requests(sandbox_whatsapp_instance.instance_name)
    assert request["body"]["number"] == "5511987654321"


def test_v1_instance_sends_the_v1_body_and_reads_key_id(evolution_sandbox, make_sandbox_whatsapp_instance):
    instance = make_sandbox_whatsapp_instance(api_version="v1")

    result = EvolutionAPIService(instance).send(PHONE, TEXT)

    [request] = evolution_sandbox.send_requests(instance.instance_name)
    assert request["body"] == {"number": DIGITS, "textMessage": {"text": TEXT}, "options": {"linkPreview": False}}
    [message] = evolution_sandbox.messages(instance=instance.instance_name)
    assert result.provider_message_id == message["id"]
    assert result.provider_message_id.startswith("BAE5")


def test_send_text_message_keeps_the_seed_interface(evolution_sandbox, sandbox_whatsapp_instance):
    service = EvolutionAPIService(sandbox_whatsapp_instance)

    success, response = service.send_text_message(phone=PHONE, message=TEXT, retry=True, max_retries=3)
    assert success is True
    assert response["key"]["id"] == evolution_sandbox.messages()[0]["id"]

    evolution_sandbox.set_not_on_whatsapp(DIGITS)
    success, info = service.send_text_message(phone=PHONE, message=TEXT)
    assert success is False
    assert info["error"] == "invalid_number"
    assert info["error_class"] == "InvalidNumberError"
    assert info["permanent"] is True
    assert info["http_status"] == 400


def test_an_empty_message_is_a_programming_error(sandbox_whatsapp_instance, evolution_sandbox):
    with pytest.raises(ValueError):
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, "   ")
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 0


# ----------------------------------------------------------------------------- the error vocabulary
def test_not_on_whatsapp_is_a_permanent_invalid_number_never_retried(evolution_sandbox, sandbox_whatsapp_instance):
    evolution_sandbox.set_not_on_whatsapp(DIGITS)

    with pytest.raises(InvalidNumberError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT, max_retries=3)

    assert caught.value.permanent is True
    assert caught.value.http_status == 400
    assert caught.value.nothing_sent is False
    assert isinstance(caught.value.__cause__, HTTPStatusError)
    assert caught.value.__cause__.response.json()["response"]["message"][0]["exists"] is False
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 1


def test_an_unparseable_phone_is_invalid_number_without_a_request(evolution_sandbox, sandbox_whatsapp_instance):
    with pytest.raises(InvalidNumberError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send("12345", TEXT)

    assert caught.value.details == {"reason": "invalid_phone"}
    assert caught.value.nothing_sent is True
    assert type(caught.value.__cause__).__name__ == "PhoneNumberError"
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 0


def test_a_closed_instance_is_unavailable_not_retried_and_counts_as_an_attempt(
    evolution_sandbox, sandbox_whatsapp_instance
):
    """500 "Connection Closed" (the number lookup, before the send): an answer, so it counts."""
    evolution_sandbox.set_state(sandbox_whatsapp_instance.instance_name, "close")

    with pytest.raises(InstanceUnavailableError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT, max_retries=3)

    assert caught.value.http_status == 500
    assert (caught.value.permanent, caught.value.nothing_sent) == (False, False)
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 1


@pytest.mark.parametrize("status", [400, 500])
def test_a_connection_closed_inside_the_send_is_ambiguous(evolution_sandbox, sandbox_whatsapp_instance, status):
    """`["Error: Connection Closed"]` is the send's own catch: the message may be out (#1247)."""
    evolution_sandbox.configure(
        sandbox_whatsapp_instance.instance_name,
        fail_next=1,
        failure_status=status,
        failure_message=["Error: Connection Closed"],
    )

    with pytest.raises(AmbiguousSendError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT, max_retries=3)

    assert (caught.value.code, caught.value.http_status, caught.value.nothing_sent) == (
        "connection_closed_during_send",
        status,
        False,
    )
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 1


def test_connection_refused_is_unavailable(sandbox_whatsapp_instance, closed_port):
    sandbox_whatsapp_instance.base_url = f"http://127.0.0.1:{closed_port}"

    with pytest.raises(InstanceUnavailableError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT, max_retries=3)

    assert caught.value.code == "connection_refused"
    assert caught.value.nothing_sent is True
    assert isinstance(caught.value.__cause__, HTTPCallError)


def test_a_wrong_api_key_is_a_permanent_auth_error(evolution_sandbox, sandbox_whatsapp_instance):
    sandbox_whatsapp_instance.api_key = "not-the-token"

    with pytest.raises(ProviderAuthError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT, max_retries=3)

    assert (caught.value.http_status, caught.value.permanent) == (401, True)
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 1


def test_an_unknown_instance_is_an_auth_error(evolution_sandbox, sandbox_whatsapp_instance):
    evolution_sandbox.control("DELETE", f"/instances/{sandbox_whatsapp_instance.instance_name}")

    with pytest.raises(ProviderAuthError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT)

    assert caught.value.http_status == 404
    assert caught.value.code == "provider_instance_not_found"


def test_a_429_with_a_long_retry_after_goes_to_the_caller(evolution_sandbox, sandbox_whatsapp_instance):
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, rate_limit_next=1, retry_after=120)

    with pytest.raises(ProviderRateLimitedError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT, max_retries=3)

    assert caught.value.retry_after == 120.0
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 1


def test_a_429_with_a_short_retry_after_is_waited_out_and_retried(
    evolution_sandbox, sandbox_whatsapp_instance, settings
):
    settings.EVOLUTION_RETRY_AFTER_MAX = 1.0
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, rate_limit_next=1, retry_after=0)

    result = EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT)

    assert result.attempts == 2
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 2


def test_a_provider_that_hangs_is_ambiguous_at_the_deadline_and_never_retried(
    evolution_sandbox, sandbox_whatsapp_instance, settings
):
    settings.EVOLUTION_SEND_DEADLINE = 0.5
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, hang_next=1, hang_seconds=3)

    with pytest.raises(AmbiguousSendError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT, max_retries=3)

    assert (caught.value.code, caught.value.nothing_sent) == ("deadline_exceeded", False)
    assert isinstance(caught.value.__cause__, HTTPCallError)
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 1
    # ...and indeed the message went out: this is why it must not be resent blindly
    assert len(evolution_sandbox.messages(instance=sandbox_whatsapp_instance.instance_name)) == 1


def test_a_400_that_is_not_exists_false_is_ambiguous_and_never_retried(evolution_sandbox, sandbox_whatsapp_instance):
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, ambiguous_next=1)

    with pytest.raises(AmbiguousSendError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT, max_retries=3)

    assert caught.value.http_status == 400
    assert "Prisma" in caught.value.details["provider_message"]
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 1
    assert len(evolution_sandbox.messages(instance=sandbox_whatsapp_instance.instance_name)) == 1


def test_a_v2_body_sent_to_a_v1_server_is_an_ambiguous_400(evolution_sandbox, sandbox_whatsapp_instance):
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, api_version="v1")  # ours still says v2

    with pytest.raises(AmbiguousSendError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT)

    assert caught.value.http_status == 400
    assert 'instance requires property "textMessage"' in caught.value.details["provider_message"]


def test_a_503_is_transient_and_retried_until_it_succeeds(evolution_sandbox, sandbox_whatsapp_instance):
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, fail_next=2, failure_status=503)

    result = EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT, max_retries=3)

    assert result.attempts == 3
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 3
    assert len(evolution_sandbox.messages()) == 1


def test_transient_retries_are_bounded_by_max_retries(evolution_sandbox, sandbox_whatsapp_instance):
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, fail_next=10, failure_status=503)

    with pytest.raises(TransientProviderError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT, max_retries=2)

    assert caught.value.http_status == 503
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 3


def test_retry_false_sends_exactly_once(evolution_sandbox, sandbox_whatsapp_instance):
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, fail_next=10, failure_status=502)

    success, info = EvolutionAPIService(sandbox_whatsapp_instance).send_text_message(PHONE, TEXT, retry=False)

    assert (success, info["error"]) == (False, "transient")
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 1


def test_a_connect_timeout_is_transient_and_retried(sandbox_whatsapp_instance, unaccepting_port, settings):
    settings.EVOLUTION_CONNECT_TIMEOUT = 0.2
    sandbox_whatsapp_instance.base_url = f"http://127.0.0.1:{unaccepting_port}"

    started = time.monotonic()
    with pytest.raises(TransientProviderError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT, max_retries=1)

    assert (caught.value.code, caught.value.nothing_sent) == ("connect_timeout", True)
    assert isinstance(caught.value.__cause__, HTTPCallError)
    assert time.monotonic() - started >= 0.4  # two attempts, each waiting the connect timeout


def test_every_error_shares_one_base_with_code_and_permanent_flag():
    classes = [
        InvalidNumberError,
        InstanceUnavailableError,
        ProviderRateLimitedError,
        ProviderAuthError,
        AmbiguousSendError,
        TransientProviderError,
    ]
    assert all(issubclass(cls, ProviderError) for cls in classes)
    assert {cls.__name__: (cls.permanent, cls.retryable) for cls in classes} == {
        "InvalidNumberError": (True, False),
        "InstanceUnavailableError": (False, False),
        "ProviderRateLimitedError": (False, True),
        "ProviderAuthError": (True, False),
        "AmbiguousSendError": (False, False),
        "TransientProviderError": (False, True),
    }
    assert len({cls.code for cls in classes}) == len(classes)


# ----------------------------------------------------------------------------- backoff
def test_backoff_waits_follow_the_configured_schedule(evolution_sandbox, sandbox_whatsapp_instance, settings):
    settings.EVOLUTION_RETRY_BACKOFF = [0.1, 0.2]
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, fail_next=3, failure_status=503)

    started = time.monotonic()
    EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT, max_retries=3)

    assert time.monotonic() - started >= 0.1 + 0.2 + 0.2  # the last value repeats
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 4


def test_backoff_is_exponential_with_bounded_jitter(settings):
    settings.EVOLUTION_RETRY_BACKOFF = [1.0, 2.0, 4.0]
    settings.EVOLUTION_RETRY_JITTER = 0.0
    assert [backoff_delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 4.0]

    settings.EVOLUTION_RETRY_JITTER = 0.2
    samples = [backoff_delay(2) for _ in range(200)]
    assert all(1.6 <= sample <= 2.4 for sample in samples)
    assert len(set(samples)) > 1


# ----------------------------------------------------------------------------- observability
def test_logs_are_structured_mask_the_phone_and_never_hold_the_text_or_key(
    evolution_sandbox, sandbox_whatsapp_instance, caplog
):
    caplog.set_level(logging.INFO, logger="apps.common.services")
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, fail_next=1, failure_status=503)

    EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT)

    records = [record for record in caplog.records if record.name.startswith("apps.common.services")]
    formatted = "\n".join(JsonFormatter().format(record) for record in records)
    assert TEXT not in formatted
    assert sandbox_whatsapp_instance.api_key not in formatted
    assert DIGITS not in formatted
    accepted = [record for record in records if record.getMessage() == "evolution send accepted"]
    assert len(accepted) == 1
    assert accepted[0].phone == "+55 11 9****-5432"
    assert accepted[0].outcome == "ok"
    assert accepted[0].instance_id == str(sandbox_whatsapp_instance.pk)
    assert accepted[0].duration_ms >= 0
    failed = [record for record in records if record.getMessage().startswith("evolution send failed")]
    assert [record.outcome for record in failed] == ["transient"]


def test_metrics_count_each_attempt_by_outcome(evolution_sandbox, sandbox_whatsapp_instance):
    def sample(outcome):
        return (
            REGISTRY.get_sample_value("evolution_requests_total", {"operation": "send_text", "outcome": outcome}) or 0.0
        )

    def observations():
        return REGISTRY.get_sample_value("evolution_request_duration_seconds_count", {"operation": "send_text"}) or 0.0

    ok, transient, timed = sample("ok"), sample("transient"), observations()
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, fail_next=1, failure_status=503)

    EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT)

    assert (sample("ok") - ok, sample("transient") - transient, observations() - timed) == (1, 1, 2)


def test_every_send_has_its_own_connection(evolution_sandbox, sandbox_whatsapp_instance):
    """libcurl re-sends a request whose reused connection died before answering: a send never
    rides a reused connection, so it can never be sent twice behind our back."""
    service = EvolutionAPIService(sandbox_whatsapp_instance)
    service.send(PHONE, TEXT)
    service.send(PHONE, TEXT)
    EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT)

    peers = {request["peer"] for request in evolution_sandbox.send_requests(sandbox_whatsapp_instance.instance_name)}
    assert len(peers) == 3


# ----------------------------------------------------------------------------- total deadline, address guard
def test_a_dripping_answer_is_cut_at_the_send_deadline(evolution_sandbox, sandbox_whatsapp_instance, settings):
    """The provider accepts the message, then answers one byte every 0.2 s: every read gets a
    byte, so only a total deadline ends the call; the outcome is unknown (it went out)."""
    settings.EVOLUTION_SEND_DEADLINE = 1.5
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, drip_next=1, drip_interval=0.2)

    started = time.monotonic()
    with pytest.raises(AmbiguousSendError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT, max_retries=3)
    elapsed = time.monotonic() - started

    assert (caught.value.code, caught.value.nothing_sent) == ("deadline_exceeded", False)
    assert 1.4 <= elapsed < 15  # the whole answer would take ~100 s at that pace; margin for a loaded box
    assert len(evolution_sandbox.messages(instance=sandbox_whatsapp_instance.instance_name)) == 1
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 1


def test_a_base_url_outside_the_allow_list_is_refused_before_any_packet(
    evolution_sandbox, sandbox_whatsapp_instance, settings
):
    settings.EVOLUTION_ALLOWED_NETWORKS = ["10.0.0.0/8"]

    with pytest.raises(UnsafeProviderAddressError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT, max_retries=3)

    assert (caught.value.code, caught.value.permanent, caught.value.nothing_sent) == (
        "unsafe_provider_address",
        True,
        True,
    )
    assert "loopback address" in caught.value.message
    assert evolution_sandbox.requests(instance=sandbox_whatsapp_instance.instance_name) == []
