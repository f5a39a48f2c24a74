"""Callbacks cannot hurt anyone: a client endpoint that drips one byte every second holds its
own tenant's share of the delivery threads for one deadline per attempt, never another
tenant's callbacks, and never the periodic steps."""

from __future__ import annotations

import select
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone

from apps.billing.constants import QueueStatus
from apps.billing.models import BillingQueue, CallbackDelivery
from apps.billing.services import callback_delivery, callbacks, periodic
from apps.billing.services.callback_delivery import CallbackDispatcher
from apps.billing.tests.support.api import make_tenant
from devtools.sandbox_process import wait_for

from .conftest import queue_for, set_callback


class DrippingEndpoint:
    """Reads the request, then writes its answer one byte every `interval` seconds; counts the
    connections the client holds open at once.

    A connection counts from its request until the client hangs up, read from the kernel (a
    pending end-of-file), not from when its handler thread next runs: on a saturated box that
    thread may wake after the tenant's next attempt has arrived, and the count would say three
    where the client never held more than two."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.most_open = 0
        self.live: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with endpoint.lock:
                    endpoint.live = endpoint.held()
                    endpoint.live.add(self.connection)
                    endpoint.most_open = max(endpoint.most_open, len(endpoint.live))
                try:
                    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                        if endpoint.client_left(self.connection):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        # Between two bytes, wake as soon as the client hangs up (its deadline):
                        # the connection counts as gone then, not up to a second later, when a
                        # loaded box may already have opened the tenant's next attempt.
                        select.select([self.connection], [], [], endpoint.interval)
                        if endpoint.stopping.is_set():
                            return
                except OSError:
                    pass  # the client's deadline cut the call
                finally:
                    with endpoint.lock:
                        endpoint.live.discard(self.connection)
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def held(self) -> set[socket.socket]:
        """The live connections the client has not hung up on (call under `lock`)."""
        return {sock for sock in self.live if not self.client_left(sock)}

    @property
    def open_now(self) -> int:
        with self.lock:
            return len(self.held())

    @staticmethod
    def client_left(sock: socket.socket) -> bool:
        """The client closed its end (its deadline): counted as gone at once, not at the next
        failed write."""
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:  # reset by the client
            return True

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def dripping():
    endpoint = DrippingEndpoint()
    yield endpoint
    endpoint.close()


@pytest.fixture
def running_dispatcher():
    """`run_billing_callbacks`' loop in a thread of this process (stopped at the end)."""
    started: list[tuple[CallbackDispatcher, threading.Event, threading.Thread]] = []

    def start(**options: Any) -> CallbackDispatcher:
        dispatcher, stop = CallbackDispatcher(**options), threading.Event()
        thread = threading.Thread(target=dispatcher.run, args=(stop,), kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        started.append((dispatcher, stop, thread))
        return dispatcher

    yield start
    for dispatcher, stop, thread in started:
        stop.set()
        thread.join(timeout=10)
        dispatcher.shutdown()


def enqueue(api, count: int) -> list[CallbackDelivery]:
    queue = queue_for(api, status=QueueStatus.RUNNING)
    return [callbacks.on_queue_started(queue) for _ in range(count)]


def statuses(deliveries: list[CallbackDelivery]) -> list[str]:
    return list(CallbackDelivery.objects.filter(pk__in=[d.pk for d in deliveries]).values_list("status", flat=True))


def test_a_dripping_endpoint_of_one_tenant_does_not_delay_another_tenants_callbacks(
    transactional_db, receiver, dripping, running_dispatcher, allow_loopback, settings
):
    # A's attempts last 6 s (their deadline); B must be done well inside that, while both of A's
    # first attempts are still dripping, on however slow a box (B takes ~0.1 s quietly).
    settings.BILLING_CALLBACK_DEADLINE = 6.0
    slow, fast = make_tenant("drip-a"), make_tenant("quick-b")
    set_callback(slow, dripping.url)
    endpoint = receiver()
    set_callback(fast, endpoint.url)
    slow_deliveries = enqueue(slow, 4)  # due first: they are older

    running_dispatcher(workers=4, per_tenant=2)
    wait_for(lambda: dripping.open_now == 2, timeout=5, what="tenant A's two attempts in flight")
    started = time.monotonic()
    fast_deliveries = enqueue(fast, 4)

    wait_for(lambda: statuses(fast_deliveries) == ["delivered"] * 4, timeout=10, what="tenant B delivered")
    fast_seconds = time.monotonic() - started
    assert fast_seconds < 4.0  # inside A's 6 s deadline: B never waited for A
    assert dripping.open_now == 2  # A's attempts were still dripping meanwhile

    # A is cut at each deadline and retried later; never more than its share at once.
    slow_ids = [d.pk for d in slow_deliveries]
    wait_for(
        lambda: CallbackDelivery.objects.filter(pk__in=slow_ids, attempts=1).exclude(last_error="").count() == 4,
        timeout=40,
        what="every attempt of A cut at its deadline",
    )
    assert dripping.most_open == 2
    assert set(CallbackDelivery.objects.filter(pk__in=slow_ids).values_list("status", "last_error")) == {
        ("pending", "transport: deadline")
    }


def test_each_attempt_ends_at_the_total_deadline(db, dripping, allow_loopback, settings):
    settings.BILLING_CALLBACK_DEADLINE = 1.5
    api = make_tenant("drip-deadline")
    set_callback(api, dripping.url)
    [delivery] = enqueue(api, 1)

    started = time.monotonic()
    assert callback_delivery.deliver_due() == 1
    elapsed = time.monotonic() - started

    assert 1.4 <= elapsed < 10  # the answer alone would take ~40 s at one byte a second; margin for load
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 1, "transport: deadline")


def test_the_periodic_steps_never_deliver_callbacks(db, dripping, allow_loopback):
    """A due callback to a dripping endpoint does not slow a periodic cycle: delivery is not
    one of its steps, and the cycle's own work (a business-hours resume) is done at once."""
    api = make_tenant("periodic-free")
    set_callback(api, dripping.url)
    enqueue(api, 3)
    waiting = queue_for(
        api, status=QueueStatus.PAUSED_BUSINESS_HOURS, next_resume_at=timezone.now() - timedelta(minutes=1)
    )

    periodic.recently_published.clear()
    started = time.monotonic()
    results = periodic.run_cycle()

    assert time.monotonic() - started < 5  # one dripping delivery alone would take ~40 s
    assert "deliver_callbacks" not in results
    assert results["publish_due_resumes"] == 1  # a consumer acts on it (dispatch/control.py):
    from apps.billing.broker.messages import BillingMessage
    from apps.billing.dispatch import control

    assert control.resume(BillingMessage(type="resume", queue_id=str(waiting.pk))) == 1
    assert BillingQueue.objects.get(pk=waiting.pk).status == QueueStatus.PENDING
    assert not CallbackDelivery.objects.filter(attempts__gt=0).exists()
    assert dripping.most_open == 0


def test_an_endpoint_that_keeps_failing_opens_its_circuit_without_costing_attempts(
    db, receiver, allow_loopback, settings
):
    settings.BILLING_CALLBACK_BREAKER_THRESHOLD = 2
    failing, healthy = receiver([500]), receiver([200])
    api, other = make_tenant("circuit-a"), make_tenant("circuit-b")
    set_callback(api, failing.url)
    set_callback(other, healthy.url)
    deliveries = enqueue(api, 3)
    [other_delivery] = enqueue(other, 1)

    callback_delivery.deliver_due()

    assert len(failing.requests) == 2  # the third found the circuit open: no request
    third = CallbackDelivery.objects.get(pk=deliveries[2].pk)
    assert (third.status, third.attempts, third.last_error) == ("pending", 0, "circuit_open")
    assert third.next_attempt_at > timezone.now() + timedelta(seconds=30)
    other_delivery.refresh_from_db()
    assert other_delivery.status == "delivered"  # another tenant's circuit is its own
