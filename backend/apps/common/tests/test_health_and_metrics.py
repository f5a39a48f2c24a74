"""/readyz reports each dependency and each background process; /metrics (web and the side
exporter of the non-web processes) answers only with the token or from an allowed address."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import pytest
import redis as redis_lib

from apps.common import health
from apps.common.metrics_exporter import metrics_access_allowed, start_metrics_server


@pytest.fixture
def heartbeat_key(settings):
    """A private heartbeat key: other test sessions share this Redis."""
    key = f"test:heartbeats:{uuid.uuid4().hex}"
    settings.BILLING_HEARTBEAT_KEY = key
    yield key
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    client.delete(key)
    client.close()


class TestReadiness:
    def test_it_answers_200_with_every_component_when_all_are_up(self, client, db, heartbeat_key):
        health.record_process_heartbeat("consumer", "host-a:1")
        health.record_process_heartbeat("periodic", "host-b:2")
        response = client.get("/readyz")
        body = response.json()
        assert response.status_code == 200, body
        assert body["status"] == "ok"
        for component in ("database", "redis", "rabbitmq"):
            assert body[component]["status"] == "ok" and body[component]["latency_ms"] >= 0
        assert body["processes"]["status"] == "ok"
        assert [p["process_id"] for p in body["processes"]["consumer"]] == ["host-a:1"]
        assert body["processes"]["periodic"][0]["stale"] is False

    def test_it_answers_503_naming_the_broker_when_rabbitmq_is_down(
        self, client, db, heartbeat_key, settings, closed_port
    ):
        settings.RABBITMQ_URL = f"amqp://guest:guest@127.0.0.1:{closed_port}/"
        started = time.monotonic()
        response = client.get("/readyz")
        body = response.json()
        assert response.status_code == 503
        assert body["status"] == "unavailable"
        assert body["rabbitmq"]["status"] == "down" and body["rabbitmq"]["error"]
        assert body["database"]["status"] == "ok" and body["redis"]["status"] == "ok"
        assert "guest" not in response.content.decode()  # no URL, no credentials in the answer
        assert time.monotonic() - started < 10

    def test_it_answers_503_when_redis_is_down_and_cannot_read_heartbeats(self, client, db, settings, closed_port):
        from apps.common import redis_client

        settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
        redis_client._client.cache_clear()
        try:
            body = client.get("/readyz").json()
        finally:
            redis_client._client.cache_clear()
        assert body["redis"]["status"] == "down" and body["processes"]["status"] == "unknown"
        assert body["status"] == "unavailable"

    def test_stale_or_missing_processes_degrade_but_do_not_fail_readiness(self, client, db, heartbeat_key, settings):
        settings.BILLING_PROCESS_STALE_SECONDS = 30
        r = redis_lib.Redis.from_url(settings.REDIS_URL)
        r.zadd(heartbeat_key, {"consumer|old-host:9": time.time() - 120})
        r.close()
        response = client.get("/readyz")
        body = response.json()
        assert response.status_code == 200
        assert body["status"] == "degraded"
        processes = body["processes"]
        assert processes["status"] == "stale" and set(processes["without_live_process"]) == {"consumer", "periodic"}
        assert processes["consumer"][0]["stale"] is True and processes["consumer"][0]["age_seconds"] >= 119
        assert processes["periodic"] == []

    def test_a_heartbeat_never_raises_when_redis_is_down(self, settings, closed_port):
        from apps.common import redis_client

        settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
        redis_client._client.cache_clear()
        try:
            assert health.record_process_heartbeat("consumer", "x:1") is False
        finally:
            redis_client._client.cache_clear()

    def test_the_async_heartbeat_loop_beats_until_stopped(self, heartbeat_key, settings):
        import asyncio

        client = redis_lib.Redis.from_url(settings.REDIS_URL)

        async def beats(count: int) -> None:
            """Until the heartbeat was written `count` times (each beat stamps a new time)."""
            stamps = set()
            while len(stamps) < count:
                if stamp := client.zscore(heartbeat_key, "consumer|loop:1"):
                    stamps.add(stamp)
                await asyncio.sleep(0.01)  # the loop under test runs meanwhile

        async def run() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(health.heartbeat_forever("consumer", "loop:1", interval=0.05, stop=stop))
            await asyncio.wait_for(beats(2), 10)  # the loop went round, however slowly this box runs it
            stop.set()
            await asyncio.wait_for(task, 2)

        asyncio.run(run())
        client.close()
        assert health.read_process_heartbeats()["consumer"][0]["process_id"] == "loop:1"

    def test_healthz_stays_a_pure_liveness_check(self, client, settings, closed_port):
        settings.RABBITMQ_URL = f"amqp://guest:guest@127.0.0.1:{closed_port}/"
        assert client.get("/healthz").json() == {"status": "ok"}


class TestMetricsAccess:
    def test_loopback_is_allowed_by_default(self, settings):
        settings.METRICS_TOKEN = ""
        assert metrics_access_allowed("127.0.0.1", None)
        assert metrics_access_allowed("::1", None)
        assert not metrics_access_allowed("10.1.2.3", None)

    def test_the_bearer_token_opens_it_from_anywhere(self, settings):
        settings.METRICS_TOKEN = "s3cret-token"
        settings.METRICS_ALLOWED_IPS = []
        assert metrics_access_allowed("10.1.2.3", "Bearer s3cret-token")
        assert not metrics_access_allowed("10.1.2.3", "Bearer wrong")
        assert not metrics_access_allowed("10.1.2.3", "s3cret-token")
        assert not metrics_access_allowed("127.0.0.1", None)

    def test_cidrs_are_honoured(self, settings):
        settings.METRICS_TOKEN = ""
        settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "fd00::/8", "not-an-ip"]
        assert metrics_access_allowed("10.20.30.40", None)
        assert metrics_access_allowed("fd12::1", None)
        assert not metrics_access_allowed("192.168.1.1", None)

    def test_the_web_endpoint_refuses_strangers_and_serves_the_token_holder(self, client, db, settings):
        settings.METRICS_TOKEN = "tok"
        settings.METRICS_ALLOWED_IPS = []
        assert client.get("/metrics").status_code == 403
        response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer tok")
        assert response.status_code == 200
        text = response.content.decode()
        assert "billing_api_requests_total" in text and "evolution_requests_total" in text
        assert "billing_messages_sent_total" in text

    def test_api_requests_are_counted_by_route_name_not_path(self, client, db, settings):
        settings.METRICS_TOKEN = "tok"
        queue_id = uuid.uuid4()
        client.get(f"/api/v1/billing/queue/{queue_id}/status")
        client.get("/api/v1/billing/nowhere")
        text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer tok").content.decode()
        assert 'billing_api_requests_total{endpoint="billing:queue-status",method="GET",status="401"}' in text
        assert 'endpoint="unmatched"' in text
        assert str(queue_id) not in text


class TestSideExporter:
    def test_it_serves_metrics_with_the_token_and_its_own_liveness(self, settings, heartbeat_key):
        settings.METRICS_TOKEN = "side-token"
        settings.METRICS_ALLOWED_IPS = []
        server = start_metrics_server("consumer", port=0, addr="127.0.0.1")
        assert server is not None
        base = f"http://127.0.0.1:{server.port}"
        try:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{base}/metrics", timeout=5)
            assert refused.value.code == 403
            request = urllib.request.Request(f"{base}/metrics", headers={"Authorization": "Bearer side-token"})
            body = urllib.request.urlopen(request, timeout=5).read().decode()
            assert "billing_consumer_deliveries_total" in body
            health.record_process_heartbeat("consumer", "me:1")
            liveness = json.loads(urllib.request.urlopen(f"{base}/healthz", timeout=5).read())
            assert liveness["status"] == "ok" and liveness["kind"] == "consumer"
        finally:
            server.close()

    def test_it_is_off_without_a_port(self, settings):
        settings.METRICS_PORT = 0
        assert start_metrics_server("periodic") is None

    def test_a_taken_port_is_logged_not_fatal(self, settings):
        first = start_metrics_server("periodic", port=0, addr="127.0.0.1")
        try:
            assert start_metrics_server("periodic", port=first.port, addr="127.0.0.1") is None
        finally:
            first.close()


def test_multiprocess_mode_merges_the_samples_of_every_worker(tmp_path):
    """What gunicorn's workers do: each process writes its samples to PROMETHEUS_MULTIPROC_DIR;
    the web's /metrics (any worker) reads them all."""
    import os
    import subprocess
    import sys

    from django.conf import settings as django_settings

    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "PYTHONPATH": str(django_settings.BASE_DIR),
    }
    record = (
        "import django; django.setup(); from apps.billing.metrics import observe_ingest; observe_ingest(7, 'overdue')"
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", record], env=env, check=True, timeout=60)
    read = (
        "import django; django.setup(); from apps.common.metrics_exporter import render_metrics; "
        "print(render_metrics(None)[0].decode())"
    )
    output = subprocess.run(
        [sys.executable, "-c", read], env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    assert 'billing_ingest_contacts_count{template_type="overdue"} 2.0' in output
    assert 'billing_ingest_contacts_sum{template_type="overdue"} 14.0' in output
