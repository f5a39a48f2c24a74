"""`manage.py run_billing_callbacks`: one round with `--once`; the loop delivers what is due,
beats its heartbeat for /readyz, and on SIGTERM (a deploy) stops and returns."""

from __future__ import annotations

import io
import os
import signal
import threading
import uuid

import pytest
from django.core.management import call_command

from apps.billing.constants import QueueStatus
from apps.billing.services import callbacks
from apps.billing.tests.support.api import make_tenant
from apps.common.health import default_process_id, read_process_heartbeats
from apps.common.redis_client import get_redis
from devtools.sandbox_process import wait_for

from .conftest import queue_for, set_callback


@pytest.fixture
def heartbeat_key(settings):
    """A heartbeat set of this test's own, so other runs' processes do not show in it."""
    settings.BILLING_HEARTBEAT_KEY = f"test:heartbeats:{uuid.uuid4().hex}"
    yield settings.BILLING_HEARTBEAT_KEY
    get_redis().delete(settings.BILLING_HEARTBEAT_KEY)


def due_callback(slug: str, url: str):
    api = make_tenant(slug)
    set_callback(api, url)
    return callbacks.on_queue_started(queue_for(api, status=QueueStatus.RUNNING))


def test_once_attempts_what_is_due_and_says_how_many(db, receiver, allow_loopback):
    endpoint = receiver()
    delivery = due_callback("cmd-once", endpoint.url)
    out = io.StringIO()

    call_command("run_billing_callbacks", "--once", stdout=out)

    assert out.getvalue().strip() == "attempted 1"
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and len(endpoint.requests) == 1


def test_the_loop_delivers_beats_and_stops_on_sigterm(
    transactional_db, receiver, allow_loopback, heartbeat_key, settings, caplog
):
    settings.BILLING_CALLBACK_POLL_SECONDS = 0.05
    endpoint = receiver()
    delivery = due_callback("cmd-loop", endpoint.url)

    def terminate_once_delivered() -> None:
        try:
            wait_for(lambda: endpoint.requests, timeout=30, what="the callback delivered")
        finally:  # delivered or not, the command must return for the test to report
            os.kill(os.getpid(), signal.SIGTERM)

    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    threading.Thread(target=terminate_once_delivered, daemon=True).start()
    try:
        call_command("run_billing_callbacks")
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    [process] = read_process_heartbeats()["callbacks"]
    assert process["process_id"] == default_process_id() and not process["stale"]
    messages = [record.getMessage() for record in caplog.records]
    assert messages.index("billing callbacks started") < messages.index("billing callbacks stopped")
