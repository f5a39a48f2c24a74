"""The per-instance circuit breaker: opens after N consecutive availability failures, fails
fast without touching the provider, lets one probe through after the cool-down (success
closes, failure re-opens), and is shared by every process through Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from prometheus_client import REGISTRY

from apps.common.services.circuit_breaker import CircuitBreaker
from apps.common.services.evolution_api_service import (
    AmbiguousSendError,
    CircuitOpenError,
    EvolutionAPIService,
    InstanceUnavailableError,
    InvalidNumberError,
)

pytestmark = pytest.mark.django_db

PHONE = "+5511998765432"
TEXT = "Olá"
WORKER = Path(__file__).with_name("breaker_worker.py")
# The cool-down runs on Redis' clock (`TIME`), which a test cannot move: it is long enough never
# to end inside a test by itself, and `cool_down_over` moves its end to now instead of sleeping.
# One test lets a short one end in real time.
COOLDOWN = 60.0


@pytest.fixture
def breaker_settings(settings):
    settings.EVOLUTION_BREAKER_THRESHOLD = 3
    settings.EVOLUTION_BREAKER_COOLDOWN = COOLDOWN
    return settings


def fail(service, error=InstanceUnavailableError):
    with pytest.raises(error):
        service.send(PHONE, TEXT, max_retries=0)


def cool_down_over(breaker: CircuitBreaker) -> None:
    """What the cool-down's end leaves in Redis: the open breaker's `until` is now (Redis' clock)."""
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    seconds, micros = client.time()
    client.hset(breaker.key, "until", seconds * 1000 + micros // 1000)
    client.close()


def send_count(sandbox, instance) -> int:
    return len(sandbox.send_requests(instance.instance_name))


def test_it_opens_after_the_threshold_and_then_fails_fast(
    evolution_sandbox, sandbox_whatsapp_instance, breaker_settings
):
    evolution_sandbox.set_state(sandbox_whatsapp_instance.instance_name, "close")
    service = EvolutionAPIService(sandbox_whatsapp_instance)
    for _ in range(3):
        fail(service)
    assert service.breaker.state() == "open"

    with pytest.raises(CircuitOpenError) as caught:
        service.send(PHONE, TEXT)

    assert isinstance(caught.value, InstanceUnavailableError)  # callers handling "down" need nothing new
    assert 0 < caught.value.retry_after <= COOLDOWN
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 3  # the 4th never reached it


def test_transient_failures_count_and_retries_stop_when_it_opens(
    evolution_sandbox, sandbox_whatsapp_instance, breaker_settings
):
    evolution_sandbox.configure(sandbox_whatsapp_instance.instance_name, fail_next=10, failure_status=503)

    with pytest.raises(CircuitOpenError) as caught:
        EvolutionAPIService(sandbox_whatsapp_instance).send(PHONE, TEXT, max_retries=5)

    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 3
    assert caught.value.__cause__.http_status == 503  # the failure that opened it


def test_a_success_resets_the_consecutive_count(evolution_sandbox, sandbox_whatsapp_instance, breaker_settings):
    name = sandbox_whatsapp_instance.instance_name
    service = EvolutionAPIService(sandbox_whatsapp_instance)
    evolution_sandbox.set_state(name, "close")
    fail(service)
    fail(service)
    evolution_sandbox.set_state(name, "open")
    service.send(PHONE, TEXT)
    evolution_sandbox.set_state(name, "close")
    fail(service)
    fail(service)

    assert service.breaker.state() == "closed"


def test_permanent_and_ambiguous_errors_do_not_open_it(evolution_sandbox, sandbox_whatsapp_instance, breaker_settings):
    name = sandbox_whatsapp_instance.instance_name
    service = EvolutionAPIService(sandbox_whatsapp_instance)
    evolution_sandbox.set_not_on_whatsapp(PHONE)
    for _ in range(4):
        fail(service, InvalidNumberError)
    evolution_sandbox.configure(name, ambiguous_next=4)
    for _ in range(4):
        with pytest.raises(AmbiguousSendError):
            EvolutionAPIService(sandbox_whatsapp_instance).send("+5511987654321", TEXT)

    assert service.breaker.state() == "closed"


def test_half_open_probe_success_closes_it(evolution_sandbox, sandbox_whatsapp_instance, breaker_settings):
    name = sandbox_whatsapp_instance.instance_name
    service = EvolutionAPIService(sandbox_whatsapp_instance)
    evolution_sandbox.set_state(name, "close")
    for _ in range(3):
        fail(service)
    evolution_sandbox.set_state(name, "open")
    cool_down_over(service.breaker)

    result = service.send(PHONE, TEXT)

    assert result.provider_message_id
    assert service.breaker.state() == "closed"
    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 4


def test_half_open_probe_failure_reopens_it(evolution_sandbox, sandbox_whatsapp_instance, breaker_settings):
    service = EvolutionAPIService(sandbox_whatsapp_instance)
    evolution_sandbox.set_state(sandbox_whatsapp_instance.instance_name, "close")
    for _ in range(3):
        fail(service)
    cool_down_over(service.breaker)

    fail(service)  # the probe reaches the still-dead instance
    assert service.breaker.state() == "open"
    with pytest.raises(CircuitOpenError):
        service.send(PHONE, TEXT)  # a fresh cool-down: no second request

    assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 4


def test_a_healthy_check_ends_the_cool_down_and_the_next_send_probes(
    evolution_sandbox, sandbox_whatsapp_instance, breaker_settings
):
    breaker_settings.EVOLUTION_BREAKER_COOLDOWN = 30.0
    name = sandbox_whatsapp_instance.instance_name
    service = EvolutionAPIService(sandbox_whatsapp_instance)
    evolution_sandbox.set_state(name, "close")
    for _ in range(3):
        fail(service)
    assert service.check_health().healthy is False
    with pytest.raises(CircuitOpenError):
        service.send(PHONE, TEXT)  # an unhealthy check changes nothing

    evolution_sandbox.set_state(name, "open")
    assert service.check_health().healthy is True
    assert service.breaker.state() == "open"  # "open" is no proof sends work: not closed yet

    assert service.send(PHONE, TEXT).provider_message_id  # the probe, long before 30 s
    assert service.breaker.state() == "closed"


def test_the_cool_down_ends_in_real_time_and_only_one_probe_is_let_through(breaker_settings):
    breaker_settings.EVOLUTION_BREAKER_COOLDOWN = 0.3
    breaker = CircuitBreaker("probe-test")
    for _ in range(3):
        breaker.record_failure()
    time.sleep(0.35)  # past the cool-down whatever the load: a later wake-up only ends it further back

    first, second = breaker.acquire(), breaker.acquire()

    assert (first.allowed, first.probe) == (True, True)
    assert (second.allowed, second.probe) == (False, False)
    breaker.release()  # the probe proved nothing: the next caller probes
    assert breaker.acquire().probe is True


def test_the_state_gauge_follows_the_breaker(breaker_settings):
    breaker = CircuitBreaker("gauge-test")

    def gauge():
        return REGISTRY.get_sample_value("evolution_circuit_breaker_state", {"instance_id": "gauge-test"})

    for _ in range(3):
        breaker.record_failure()
    assert gauge() == 2
    cool_down_over(breaker)
    breaker.acquire()
    assert gauge() == 1
    breaker.record_success()
    assert gauge() == 0


def _open_elsewhere(breaker: CircuitBreaker, settings) -> None:
    """What another process's failures leave in Redis: the breaker open for a minute."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    seconds, micros = client.time()
    client.hset(
        breaker.key, mapping={"state": "open", "failures": 3, "until": seconds * 1000 + micros // 1000 + 60_000}
    )
    client.close()


def test_a_closed_answer_is_reused_within_the_cache_window_and_a_failure_forgets_it(breaker_settings):
    breaker_settings.EVOLUTION_BREAKER_CACHE_SECONDS = 60.0
    breaker = CircuitBreaker("cache-test")
    assert breaker.acquire().allowed
    _open_elsewhere(breaker, breaker_settings)

    assert breaker.acquire().allowed, "inside the window the cached closed answer stands (no Redis call)"
    breaker.record_failure()  # this process sees a failure: it asks Redis again at once
    decision = breaker.acquire()
    assert (decision.allowed, decision.state) == (False, "open")


def test_the_cache_window_ends_and_zero_disables_it(breaker_settings):
    breaker_settings.EVOLUTION_BREAKER_CACHE_SECONDS = 0.2
    breaker = CircuitBreaker("cache-window-test")
    assert breaker.acquire().allowed
    _open_elsewhere(breaker, breaker_settings)
    time.sleep(0.25)
    assert breaker.acquire().allowed is False

    breaker_settings.EVOLUTION_BREAKER_CACHE_SECONDS = 0
    other = CircuitBreaker("cache-off-test")
    assert other.acquire().allowed
    _open_elsewhere(other, breaker_settings)
    assert other.acquire().allowed is False


def test_a_success_writes_to_redis_only_when_there_is_something_to_reset(
    evolution_sandbox, sandbox_whatsapp_instance, breaker_settings, monkeypatch
):
    breaker_settings.EVOLUTION_BREAKER_CACHE_SECONDS = 0  # every call asks, so every success is judged
    ops: list[str] = []
    real_run = CircuitBreaker._run

    def counting_run(self, op):
        ops.append(op)
        return real_run(self, op)

    monkeypatch.setattr(CircuitBreaker, "_run", counting_run)
    client = redis.Redis.from_url(breaker_settings.REDIS_URL)
    service = EvolutionAPIService(sandbox_whatsapp_instance)
    name = sandbox_whatsapp_instance.instance_name
    try:
        service.send(PHONE, TEXT)
        assert ops == ["acquire"], "nothing was counted: the success is not written"
        evolution_sandbox.set_state(name, "close")
        fail(service)
        assert client.hget(service.breaker.key, "failures") == b"1"
        evolution_sandbox.set_state(name, "open")
        ops.clear()
        service.send(PHONE, TEXT)
        assert ops == ["acquire", "success"]
        assert not client.exists(service.breaker.key), "the success after a failure reset the count"
    finally:
        client.close()


def test_it_fails_open_when_redis_is_unreachable(
    evolution_sandbox, sandbox_whatsapp_instance, breaker_settings, closed_port
):
    breaker_settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    evolution_sandbox.set_state(sandbox_whatsapp_instance.instance_name, "close")
    service = EvolutionAPIService(sandbox_whatsapp_instance)
    for _ in range(4):
        fail(service)  # never CircuitOpenError: without Redis every call is allowed

    evolution_sandbox.set_state(sandbox_whatsapp_instance.instance_name, "open")
    assert service.send(PHONE, TEXT).provider_message_id


# ----------------------------------------------------------------------------- two processes
class Worker:
    """The breaker_worker.py process: one JSON command in, one JSON answer out."""

    def __init__(self, instance, settings) -> None:
        env = {
            **os.environ,
            "REDIS_URL": settings.REDIS_URL,
            "EVOLUTION_BREAKER_KEY_PREFIX": settings.EVOLUTION_BREAKER_KEY_PREFIX,
            "EVOLUTION_BREAKER_THRESHOLD": str(settings.EVOLUTION_BREAKER_THRESHOLD),
            "EVOLUTION_BREAKER_COOLDOWN": str(settings.EVOLUTION_BREAKER_COOLDOWN),
            "EVOLUTION_RETRY_BACKOFF": "0",
            "EVOLUTION_SEND_DEADLINE": "2",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
        }
        spec = {
            "id": instance.pk,
            "base_url": instance.base_url,
            "api_key": instance.api_key,
            "instance_name": instance.instance_name,
            "api_version": instance.api_version,
        }
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        assert self._read() == {"ready": True}

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        assert line, "breaker worker exited"
        return json.loads(line)

    def ask(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._read()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=10)


@pytest.mark.slow
def test_another_process_sees_the_breaker_open_and_recovers_it(evolution_sandbox, sandbox_whatsapp_instance, settings):
    settings.EVOLUTION_BREAKER_THRESHOLD = 2
    settings.EVOLUTION_BREAKER_COOLDOWN = COOLDOWN
    name = sandbox_whatsapp_instance.instance_name
    worker = Worker(sandbox_whatsapp_instance, settings)  # started (and Django set up) before the clock matters
    try:
        service = EvolutionAPIService(sandbox_whatsapp_instance)
        assert worker.ask(op="state") == {"state": "closed"}
        evolution_sandbox.set_state(name, "close")
        fail(service)
        fail(service)

        # the other process fails fast, without a request to the provider
        assert worker.ask(op="send", phone=PHONE, text=TEXT) == {
            "ok": False,
            "error": "CircuitOpenError",
            "code": "circuit_open",
        }
        assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 2

        # after the cool-down, the other process's probe succeeds and closes it for everyone
        evolution_sandbox.set_state(name, "open")
        cool_down_over(service.breaker)
        answer = worker.ask(op="send", phone=PHONE, text=TEXT)
        assert answer["ok"] is True
        assert service.breaker.state() == "closed"
        assert service.send(PHONE, TEXT).provider_message_id
        assert send_count(evolution_sandbox, sandbox_whatsapp_instance) == 4
    finally:
        worker.stop()
