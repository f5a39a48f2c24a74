"""The `/_sandbox/` control endpoints: instances and their fault switches, records, reset."""

from __future__ import annotations

import time

import pytest
import requests

from devtools.sandbox_process import SandboxError

NUMBER = "5511998765432"


def send(sandbox, inst, number=NUMBER, timeout=5):
    return requests.post(
        f"{sandbox.base_url}/message/sendText/{inst.name}",
        json={"number": number, "text": "oi", "linkPreview": False},
        headers={"apikey": inst.token},
        timeout=timeout,
    )


def test_instances_can_be_created_read_configured_listed_and_deleted(evolution_sandbox):
    created = evolution_sandbox.create_instance("demo", token="TOKEN", state="connecting")

    assert (created.name, created.token, created.data["state"]) == ("demo", "TOKEN", "connecting")
    assert evolution_sandbox.instance("demo")["state"] == "connecting"
    assert evolution_sandbox.configure("demo", latency_ms=5)["latency_ms"] == 5
    assert [item["name"] for item in evolution_sandbox.control("GET", "/instances")] == ["demo"]
    evolution_sandbox.control("DELETE", "/instances/demo")
    with pytest.raises(SandboxError, match="404"):
        evolution_sandbox.instance("demo")


def test_a_token_is_generated_when_none_is_given(evolution_sandbox):
    data = evolution_sandbox.control("POST", "/instances", {"name": "auto"})

    assert len(data["token"]) == 36 and data["token"] == data["token"].upper()


@pytest.mark.parametrize("options", [{"colour": "red"}, {"state": "sleepy"}, {"fail_next": -1}, {"failure_rate": 2}])
def test_unknown_options_and_bad_values_are_400(evolution_sandbox, options):
    evolution_sandbox.create_instance("demo")

    response = requests.patch(f"{evolution_sandbox.base_url}/_sandbox/instances/demo", json=options, timeout=5)

    assert response.status_code == 400
    assert "error" in response.json()


def test_messages_are_recorded_and_filtered_by_instance_and_number(evolution_sandbox):
    first, second = evolution_sandbox.create_instance(), evolution_sandbox.create_instance()
    send(evolution_sandbox, first)
    send(evolution_sandbox, second, number="+55 21 98765-4321")

    [message] = evolution_sandbox.messages(instance=first.name)
    assert (message["instance"], message["number"], message["text"], message["status"]) == (
        first.name,
        NUMBER,
        "oi",
        "PENDING",
    )
    assert message["id"] and message["timestamp"] and message["created_at"]
    assert [m["instance"] for m in evolution_sandbox.messages(number="5521987654321")] == [second.name]
    assert len(evolution_sandbox.messages()) == 2


def test_clear_forgets_records_but_keeps_instances(evolution_sandbox):
    inst = evolution_sandbox.create_instance()
    send(evolution_sandbox, inst)

    evolution_sandbox.clear()

    assert evolution_sandbox.messages() == [] and evolution_sandbox.requests() == []
    assert send(evolution_sandbox, inst).status_code == 201


def test_delete_messages_clears_one_instance_only(evolution_sandbox):
    first, second = evolution_sandbox.create_instance(), evolution_sandbox.create_instance()
    send(evolution_sandbox, first)
    send(evolution_sandbox, second)

    evolution_sandbox.control("DELETE", "/messages", params={"instance": first.name})

    assert [m["instance"] for m in evolution_sandbox.messages()] == [second.name]


def test_reset_removes_instances_and_switches(evolution_sandbox):
    inst = evolution_sandbox.create_instance()
    evolution_sandbox.set_not_on_whatsapp(NUMBER)

    evolution_sandbox.reset()

    assert evolution_sandbox.control("GET", "/instances") == []
    assert evolution_sandbox.control("GET", "/config")["not_on_whatsapp"] == []
    assert send(evolution_sandbox, inst).status_code == 404


def test_every_provider_request_is_recorded_even_the_rejected_ones(evolution_sandbox):
    inst = evolution_sandbox.create_instance()
    send(evolution_sandbox, inst)
    requests.post(f"{evolution_sandbox.base_url}/message/sendText/{inst.name}", json={}, timeout=5)  # no key

    recorded = evolution_sandbox.send_requests(inst.name)

    assert [(r["status"], r["auth"]) for r in recorded] == [(201, "instance"), (401, "missing")]
    assert recorded[0]["body"] == {"number": NUMBER, "text": "oi", "linkPreview": False}


def test_fail_next_fails_exactly_n_sends_with_the_chosen_status(evolution_sandbox):
    inst = evolution_sandbox.create_instance(fail_next=2, failure_status=503)

    statuses = [send(evolution_sandbox, inst).status_code for _ in range(3)]

    assert statuses == [503, 503, 201]


def test_a_seeded_failure_rate_is_deterministic(evolution_sandbox):
    def run():
        inst = evolution_sandbox.create_instance("rate", failure_rate=0.5, seed=42)
        return [send(evolution_sandbox, inst).status_code for _ in range(20)]

    first, second = run(), run()

    assert first == second
    assert {500, 201} == set(first)


def test_latency_delays_the_answer(evolution_sandbox):
    inst = evolution_sandbox.create_instance(latency_ms=200)

    started = time.monotonic()
    assert send(evolution_sandbox, inst).status_code == 201
    assert time.monotonic() - started >= 0.2


def test_a_hang_outlasts_the_client_read_timeout(evolution_sandbox):
    inst = evolution_sandbox.create_instance(hang_next=1, hang_seconds=2)

    with pytest.raises(requests.ReadTimeout):
        send(evolution_sandbox, inst, timeout=(1, 0.3))
    assert send(evolution_sandbox, inst).status_code == 201  # one-shot


def test_rate_limited_stays_on_until_switched_off(evolution_sandbox):
    inst = evolution_sandbox.create_instance(rate_limited=True, retry_after=3)

    assert [send(evolution_sandbox, inst).status_code for _ in range(2)] == [429, 429]
    evolution_sandbox.configure(inst.name, rate_limited=False)
    assert send(evolution_sandbox, inst).status_code == 201


def test_ambiguous_next_sends_the_message_but_answers_400(evolution_sandbox):
    inst = evolution_sandbox.create_instance(ambiguous_next=1)

    response = send(evolution_sandbox, inst)

    assert response.status_code == 400
    assert "exists" not in str(response.json())
    assert len(evolution_sandbox.messages(instance=inst.name)) == 1


def test_unknown_control_paths_and_methods_are_errors(evolution_sandbox):
    assert requests.get(f"{evolution_sandbox.base_url}/_sandbox/nothing", timeout=5).status_code == 404
    assert requests.put(f"{evolution_sandbox.base_url}/_sandbox/messages", timeout=5).status_code == 405
    assert requests.post(f"{evolution_sandbox.base_url}/_sandbox/instances", data="{", timeout=5).status_code == 400


def test_the_global_api_key_is_never_echoed_by_the_control_api(evolution_sandbox):
    assert (
        evolution_sandbox.api_key not in requests.get(f"{evolution_sandbox.base_url}/_sandbox/config", timeout=5).text
    )
