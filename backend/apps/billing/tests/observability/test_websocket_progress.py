"""`ws/billing/queues/<id>/`: who may watch (API key header, signed token, nobody else), and that
what the worker publishes reaches the watchers — through the real ASGI app and Redis layer."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone

from apps.billing.models import BillingAPIKey, BillingQueue
from apps.billing.progress import issue_ws_token, publish_queue_progress
from apps.billing.tests.support.ws_client import WebsocketCommunicator

from .conftest import make_queue

TIMEOUT = 5


def _communicator(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
    from config.asgi import application

    return WebsocketCommunicator(application, path, headers=headers or [])


def _key_header(raw_key: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-billing-api-key", raw_key.encode())]


def _token(api, queue_id) -> str:
    response = api.post(f"/api/v1/billing/queue/{queue_id}/ws-token", {})
    assert response.status_code == 200, response.content
    return response.json()["token"]


def _connect_and_read(path: str, headers: list | None = None) -> dict[str, Any]:
    """Connect, then return the first thing the server did: a snapshot or a close code."""

    async def run() -> dict[str, Any]:
        communicator = _communicator(path, headers)
        connected, code = await communicator.connect(timeout=TIMEOUT)
        if not connected:
            return {"refused": code}
        output = await communicator.receive_output(timeout=TIMEOUT)
        await communicator.disconnect()
        if output["type"] == "websocket.close":
            return {"closed": output.get("code")}
        import json

        return {"snapshot": json.loads(output["text"])}

    return async_to_sync(run)()


class TestAuthentication:
    def test_a_server_connects_with_the_api_key_header_and_gets_a_snapshot(self, ws_tenant):
        queue = make_queue(ws_tenant, total=10, sent_count=3, failed_count=1)
        result = _connect_and_read(f"/ws/billing/queues/{queue.pk}/", _key_header(ws_tenant.raw_key))
        snapshot = result["snapshot"]
        assert snapshot["queue_id"] == str(queue.pk) and snapshot["status"] == "pending"
        assert (snapshot["total"], snapshot["sent"], snapshot["failed"], snapshot["pending"]) == (10, 3, 1, 6)
        assert snapshot["progress_percent"] == 40.0

    def test_a_browser_connects_with_a_token_from_the_api(self, ws_tenant):
        queue = make_queue(ws_tenant)
        token = _token(ws_tenant, queue.pk)
        result = _connect_and_read(f"/ws/billing/queues/{queue.pk}/?token={token}")
        assert result["snapshot"]["queue_id"] == str(queue.pk)

    @pytest.mark.parametrize("query", ["", "?token=", "?token=garbage", "?token=eyJxIjoiMSJ9:1abc:def"])
    def test_no_or_bad_credentials_close_with_4401(self, ws_tenant, query):
        queue = make_queue(ws_tenant)
        assert _connect_and_read(f"/ws/billing/queues/{queue.pk}/{query}") == {"closed": 4401}

    def test_a_wrong_api_key_closes_with_4401(self, ws_tenant):
        queue = make_queue(ws_tenant)
        assert _connect_and_read(f"/ws/billing/queues/{queue.pk}/", _key_header("bk_live_nope")) == {"closed": 4401}

    def test_a_token_for_another_queue_closes_with_4401(self, ws_tenant):
        queue, other = make_queue(ws_tenant), make_queue(ws_tenant)
        token = _token(ws_tenant, other.pk)
        assert _connect_and_read(f"/ws/billing/queues/{queue.pk}/?token={token}") == {"closed": 4401}

    def test_an_expired_token_closes_with_4401(self, ws_tenant, settings):
        queue = make_queue(ws_tenant)
        token = _token(ws_tenant, queue.pk)
        settings.BILLING_WS_TOKEN_MAX_AGE = -1
        assert _connect_and_read(f"/ws/billing/queues/{queue.pk}/?token={token}") == {"closed": 4401}

    def test_revoking_the_key_invalidates_its_tokens(self, ws_tenant):
        queue = make_queue(ws_tenant)
        token = _token(ws_tenant, queue.pk)
        BillingAPIKey.objects.filter(pk=ws_tenant.key.pk).update(is_active=False)
        assert _connect_and_read(f"/ws/billing/queues/{queue.pk}/?token={token}") == {"closed": 4401}

    def test_another_tenants_queue_closes_with_4404_like_a_missing_one(self, ws_tenant, ws_other_tenant):
        queue = make_queue(ws_tenant)
        other_key = _key_header(ws_other_tenant.raw_key)
        assert _connect_and_read(f"/ws/billing/queues/{queue.pk}/", other_key) == {"closed": 4404}
        assert _connect_and_read(f"/ws/billing/queues/{uuid.uuid4()}/", other_key) == {"closed": 4404}
        assert _connect_and_read("/ws/billing/queues/not-a-uuid/", other_key) == {"closed": 4404}

    def test_the_token_endpoint_is_tenant_scoped_too(self, ws_tenant, ws_other_tenant):
        queue = make_queue(ws_tenant)
        response = ws_other_tenant.post(f"/api/v1/billing/queue/{queue.pk}/ws-token", {})
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        assert ws_tenant.client.post(f"/api/v1/billing/queue/{queue.pk}/ws-token").status_code == 401

    def test_the_keys_ip_allow_list_applies_to_the_header(self, ws_tenant):
        queue = make_queue(ws_tenant)
        _, raw = BillingAPIKey.issue(tenant=ws_tenant.tenant, name="office only", allowed_ips=["10.9.9.0/24"])
        assert _connect_and_read(f"/ws/billing/queues/{queue.pk}/", _key_header(raw)) == {"closed": 4403}

    def test_a_foreign_browser_origin_is_refused_at_the_handshake(self, ws_tenant):
        queue = make_queue(ws_tenant)
        headers = [*_key_header(ws_tenant.raw_key), (b"origin", b"https://evil.example")]
        assert "refused" in _connect_and_read(f"/ws/billing/queues/{queue.pk}/", headers)
        same_site = [*_key_header(ws_tenant.raw_key), (b"origin", b"http://localhost:8000")]
        assert "snapshot" in _connect_and_read(f"/ws/billing/queues/{queue.pk}/", same_site)


class TestPushes:
    def test_published_progress_reaches_every_watcher_of_that_queue_only(self, ws_tenant):
        queue, unrelated = make_queue(ws_tenant, total=4), make_queue(ws_tenant, total=4)

        async def run() -> list[dict]:
            watcher = _communicator(f"/ws/billing/queues/{queue.pk}/", _key_header(ws_tenant.raw_key))
            other = _communicator(f"/ws/billing/queues/{unrelated.pk}/", _key_header(ws_tenant.raw_key))
            assert (await watcher.connect(timeout=TIMEOUT))[0] and (await other.connect(timeout=TIMEOUT))[0]
            seen = [await watcher.receive_json_from(timeout=TIMEOUT)]
            await other.receive_json_from(timeout=TIMEOUT)
            for sent in (1, 2):
                await sync_to_async(BillingQueue.objects.filter(pk=queue.pk).update)(sent_count=sent, status="running")
                assert await sync_to_async(publish_queue_progress)(queue.pk, force=True)
                seen.append(await watcher.receive_json_from(timeout=TIMEOUT))
            assert await other.receive_nothing(timeout=0.3)
            await watcher.disconnect()
            await other.disconnect()
            return seen

        seen = async_to_sync(run)()
        assert [s["sent"] for s in seen] == [0, 1, 2]
        assert [s["progress_percent"] for s in seen] == [0.0, 25.0, 50.0]
        assert seen[-1]["status"] == "running"

    def test_a_client_can_ask_for_a_fresh_snapshot(self, ws_tenant):
        queue = make_queue(ws_tenant, total=2)

        async def run() -> dict:
            watcher = _communicator(f"/ws/billing/queues/{queue.pk}/", _key_header(ws_tenant.raw_key))
            await watcher.connect(timeout=TIMEOUT)
            await watcher.receive_json_from(timeout=TIMEOUT)
            await sync_to_async(BillingQueue.objects.filter(pk=queue.pk).update)(skipped_count=2)
            await watcher.send_json_to({"type": "refresh"})
            snapshot = await watcher.receive_json_from(timeout=TIMEOUT)
            await watcher.disconnect()
            return snapshot

        assert async_to_sync(run)()["skipped"] == 2


class TestPublishThrottle:
    @pytest.fixture(autouse=True)
    def fresh_watch_list(self):
        from apps.billing import progress

        progress.watched.clear()
        yield
        progress.watched.clear()

    def test_nothing_is_read_or_pushed_while_nobody_watches(self, ws_tenant, django_assert_num_queries):
        from apps.billing.progress import mark_watched

        queue = make_queue(ws_tenant, total=3, status="running")
        with django_assert_num_queries(0):
            assert publish_queue_progress(queue.pk, force=True) is False
        mark_watched(queue.pk)
        from apps.billing import progress

        progress.watched.clear()  # this process rereads the watch list (at most once a second)
        assert publish_queue_progress(queue.pk, force=True) is True

    def test_counter_updates_are_throttled_but_status_changes_always_go_out(self, ws_tenant, settings):
        from apps.billing.progress import mark_watched

        settings.BILLING_PROGRESS_MAX_PER_SECOND = 0.01  # a 100 s window: "within it" on any box
        queue = make_queue(ws_tenant, total=3, status="running")
        mark_watched(queue.pk)
        assert publish_queue_progress(queue.pk) is True
        BillingQueue.objects.filter(pk=queue.pk).update(sent_count=1)
        assert publish_queue_progress(queue.pk) is False  # same status, within the second
        BillingQueue.objects.filter(pk=queue.pk).update(status="paused")
        assert publish_queue_progress(queue.pk) is True  # status changed
        BillingQueue.objects.filter(pk=queue.pk).update(status="cancelled", completed_at=timezone.now())
        assert publish_queue_progress(queue.pk) is True  # final

    def test_it_never_raises(self, ws_tenant, monkeypatch):
        from apps.billing import progress

        queue = make_queue(ws_tenant)

        def broken(*args, **kwargs):
            raise ConnectionError("redis gone")

        monkeypatch.setattr(progress, "_group_send", broken)
        progress.mark_watched(queue.pk)
        assert publish_queue_progress(queue.pk) is False
        assert publish_queue_progress(uuid.uuid4()) is False
        assert publish_queue_progress("junk") is False


class TestProgressPage:
    def test_a_valid_link_serves_the_page_without_caching(self, ws_tenant, client):
        queue = make_queue(ws_tenant)
        token = issue_ws_token(queue_id=queue.pk, tenant_id=queue.tenant_id, api_key_id=ws_tenant.key.pk)
        response = client.get(f"/billing/progress/{queue.pk}/", {"token": token})
        assert response.status_code == 200
        html = response.content.decode()
        assert 'id="bar"' in html and "/ws/billing/queues/" in html and token not in html
        assert response["Cache-Control"] == "no-store"

    def test_an_expired_or_foreign_link_says_so(self, ws_tenant, client, settings):
        queue, other = make_queue(ws_tenant), make_queue(ws_tenant)
        token = issue_ws_token(queue_id=other.pk, tenant_id=other.tenant_id, api_key_id=ws_tenant.key.pk)
        response = client.get(f"/billing/progress/{queue.pk}/", {"token": token})
        assert response.status_code == 403 and 'id="bar"' not in response.content.decode()

    def test_the_token_answer_names_the_page_and_the_socket(self, ws_tenant):
        queue = make_queue(ws_tenant)
        body = ws_tenant.post(f"/api/v1/billing/queue/{queue.pk}/ws-token", {}).json()
        assert body["expires_in"] == 300
        assert body["progress_url"].startswith(f"/billing/progress/{queue.pk}/?token=")
        assert body["websocket_path"] == f"/ws/billing/queues/{queue.pk}/?token={body['token']}"


def test_tokens_expire(ws_tenant, settings):
    import time_machine

    from apps.billing.progress import read_ws_token

    queue = make_queue(ws_tenant)
    token = issue_ws_token(queue_id=queue.pk, tenant_id=queue.tenant_id, api_key_id=ws_tenant.key.pk)
    assert read_ws_token(token).queue_id == str(queue.pk)
    with time_machine.travel(timezone.now() + timedelta(seconds=301)):
        assert read_ws_token(token) is None


class TestPushConnections:
    def test_pushes_reuse_one_loop_and_its_redis_connections(self, ws_tenant, settings, private_redis):
        """A push used to open new Redis connections each time (a new event loop per call).
        Counted on a Redis of the test's own: the shared one counts every session's connections."""
        import redis

        from apps.billing import progress

        layer = settings.CHANNEL_LAYERS["default"]
        hosts = [{**layer["CONFIG"]["hosts"][0], "address": private_redis.url}]
        settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {**layer["CONFIG"], "hosts": hosts}}}
        settings.BILLING_PROGRESS_MAX_PER_SECOND = 0  # no throttle: every push goes out
        queue = make_queue(ws_tenant, total=3, status="running")
        progress.mark_watched(queue.pk)  # pushes go out only for watched queues
        progress.watched.clear()  # this process rereads the watch list (at most once a second)
        assert publish_queue_progress(queue.pk, force=True)  # the loop and its connections exist now
        client = redis.Redis.from_url(settings.REDIS_URL)
        before = int(client.info("stats")["total_connections_received"])
        for _ in range(20):
            assert publish_queue_progress(queue.pk, force=True)
        opened = int(client.info("stats")["total_connections_received"]) - before
        client.close()
        assert opened <= 2, f"{opened} Redis connections opened for 20 pushes"


@pytest.mark.slow
def test_a_quiet_socket_stays_open_past_the_layers_blocking_wait(ws_tenant):
    """The consumer waits for its group with a blocking Redis read (BZPOPMIN, 5 s); with
    redis-py 8's default 5 s socket timeout that read failed and the socket closed every ~5 s,
    dropping the pushes sent while the page reconnected. Real time: the timeout is the socket's."""
    from channels.layers import get_channel_layer

    from apps.billing import progress

    queue = make_queue(ws_tenant, total=4, status="running")
    quiet = get_channel_layer().brpop_timeout + 2

    async def run() -> tuple[bool, dict[str, Any]]:
        communicator = _communicator(f"/ws/billing/queues/{queue.pk}/", _key_header(ws_tenant.raw_key))
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected
        await communicator.receive_json_from(timeout=TIMEOUT)  # the snapshot
        stayed = await communicator.receive_nothing(timeout=quiet, interval=0.2)
        await sync_to_async(BillingQueue.objects.filter(pk=queue.pk).update)(sent_count=2)
        await sync_to_async(progress.publish_queue_progress)(queue.pk, force=True)
        pushed = await communicator.receive_json_from(timeout=TIMEOUT)
        await communicator.disconnect()
        return stayed, pushed

    stayed, pushed = async_to_sync(run)()
    assert stayed and pushed["sent"] == 2
