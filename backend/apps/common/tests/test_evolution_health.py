"""check_health() over real HTTP: healthy iff the provider says `state == "open"`; every other
answer (or no answer) is unhealthy with the reason kept, and never raises."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from apps.common.services.evolution_api_service import EvolutionAPIService, HealthResult

pytestmark = pytest.mark.django_db


def test_an_open_instance_is_healthy(evolution_sandbox, sandbox_whatsapp_instance):
    result = EvolutionAPIService(sandbox_whatsapp_instance).check_health()

    assert isinstance(result, HealthResult)
    assert (result.healthy, result.state, result.provider_state, result.http_status) == (True, "open", "open", 200)
    [request] = evolution_sandbox.requests(instance=sandbox_whatsapp_instance.instance_name)
    assert (request["method"], request["path"]) == (
        "GET",
        f"/instance/connectionState/{sandbox_whatsapp_instance.instance_name}",
    )


@pytest.mark.parametrize(
    ("provider_state", "state"), [("close", "close"), ("connecting", "connecting"), ("refused", "close")]
)
def test_a_non_open_state_is_unhealthy(evolution_sandbox, sandbox_whatsapp_instance, provider_state, state):
    evolution_sandbox.set_state(sandbox_whatsapp_instance.instance_name, provider_state)

    result = EvolutionAPIService(sandbox_whatsapp_instance).check_health()

    assert (result.healthy, result.state, result.provider_state) == (False, state, provider_state)
    assert provider_state in result.reason


def test_a_missing_state_is_unhealthy(evolution_sandbox, sandbox_whatsapp_instance):
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, loaded=False)

    result = EvolutionAPIService(sandbox_whatsapp_instance).check_health()

    assert (result.healthy, result.state, result.provider_state) == (False, "unknown", None)
    assert "no state" in result.reason


def test_an_unknown_instance_is_unhealthy_with_the_404_kept(evolution_sandbox, sandbox_whatsapp_instance):
    sandbox_whatsapp_instance.instance_name = "no-such-instance"

    result = EvolutionAPIService(sandbox_whatsapp_instance).check_health()

    assert (result.healthy, result.state, result.http_status) == (False, "error", 404)
    assert "not found" in result.reason


def test_a_wrong_key_is_unhealthy_with_the_401_kept(evolution_sandbox, sandbox_whatsapp_instance):
    sandbox_whatsapp_instance.api_key = "wrong"

    result = EvolutionAPIService(sandbox_whatsapp_instance).check_health()

    assert (result.healthy, result.state, result.http_status) == (False, "error", 401)
    assert "unauthorized" in result.reason


def test_the_global_key_works_for_health_too(evolution_sandbox, sandbox_whatsapp_instance):
    sandbox_whatsapp_instance.api_key = evolution_sandbox.api_key

    assert EvolutionAPIService(sandbox_whatsapp_instance).check_health().healthy is True


def test_a_timeout_is_unhealthy(evolution_sandbox, sandbox_whatsapp_instance, settings):
    settings.EVOLUTION_HEALTH_DEADLINE = 0.3
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, hang_next=1, hang_seconds=3)

    result = EvolutionAPIService(sandbox_whatsapp_instance).check_health()

    assert (result.healthy, result.state, result.http_status) == (False, "error", None)
    assert result.reason.startswith("no answer within 0.3s")


def test_a_dripping_answer_is_cut_at_the_health_deadline(evolution_sandbox, sandbox_whatsapp_instance, settings):
    """One byte every 0.2 s keeps every read busy: only a total deadline ends the call."""
    settings.EVOLUTION_HEALTH_DEADLINE = 1.0
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, drip_next=1, drip_interval=0.2)

    started = time.monotonic()
    result = EvolutionAPIService(sandbox_whatsapp_instance).check_health()
    elapsed = time.monotonic() - started

    assert (result.healthy, result.state) == (False, "error")
    assert "deadline" in result.reason
    assert 0.9 <= elapsed < 10  # the answer alone would take ~30 s at that pace; margin for a loaded box


def test_health_checks_reuse_one_connection(evolution_sandbox, sandbox_whatsapp_instance):
    service = EvolutionAPIService(sandbox_whatsapp_instance)
    assert service.check_health().healthy and service.check_health().healthy

    peers = {
        request["peer"] for request in evolution_sandbox.requests(instance=sandbox_whatsapp_instance.instance_name)
    }
    assert len(peers) == 1  # a read may ride a kept-alive connection


def test_an_address_outside_the_allow_list_is_unhealthy_without_a_request(
    evolution_sandbox, sandbox_whatsapp_instance, settings
):
    settings.EVOLUTION_ALLOWED_NETWORKS = []

    result = EvolutionAPIService(sandbox_whatsapp_instance).check_health()

    assert (result.healthy, result.state) == (False, "error")
    assert "loopback address" in result.reason
    assert evolution_sandbox.requests(instance=sandbox_whatsapp_instance.instance_name) == []


def test_a_refused_connection_is_unhealthy(sandbox_whatsapp_instance, closed_port):
    sandbox_whatsapp_instance.base_url = f"http://127.0.0.1:{closed_port}"

    result = EvolutionAPIService(sandbox_whatsapp_instance).check_health()

    assert (result.healthy, result.state) == (False, "error")
    assert "connection refused" in result.reason


def test_the_result_maps_onto_the_instance_health_fields(evolution_sandbox, sandbox_whatsapp_instance):
    evolution_sandbox.set_state(sandbox_whatsapp_instance.instance_name, "close")
    result = EvolutionAPIService(sandbox_whatsapp_instance).check_health()

    for field, value in result.as_model_fields().items():
        setattr(sandbox_whatsapp_instance, field, value)
    sandbox_whatsapp_instance.save()
    sandbox_whatsapp_instance.refresh_from_db()

    assert sandbox_whatsapp_instance.health_state == "close"
    assert sandbox_whatsapp_instance.health_reason == result.reason
    assert sandbox_whatsapp_instance.health_checked_at == result.checked_at


def test_health_checks_are_counted(evolution_sandbox, sandbox_whatsapp_instance):
    def sample(outcome):
        return (
            REGISTRY.get_sample_value("evolution_requests_total", {"operation": "connection_state", "outcome": outcome})
            or 0.0
        )

    healthy, unhealthy = sample("healthy"), sample("unhealthy")
    service = EvolutionAPIService(sandbox_whatsapp_instance)
    service.check_health()
    evolution_sandbox.set_state(sandbox_whatsapp_instance.instance_name, "close")
    service.check_health()

    assert (sample("healthy") - healthy, sample("unhealthy") - unhealthy) == (1, 1)
