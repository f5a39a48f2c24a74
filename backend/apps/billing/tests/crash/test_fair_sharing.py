"""Neighbours (invariant 7) and scale, with real processes: one consumer holds many throttled
queues on a few sender threads and a few database connections; a tenant whose provider says
"retry tomorrow" or hangs delays nobody else; priorities decide who goes first on a shared
number; a poison message costs one dead letter."""

from __future__ import annotations

import time
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from apps.billing.models import BillingContact, BillingQueue
from apps.billing.tests.support.broker import publish_raw, queue_counts
from apps.billing.tests.support.processes import (
    assert_paced,
    notification_contacts,
    sandbox_times,
    wait_started,
    wait_until,
)
from apps.connections.models import WhatsAppInstance

from .conftest import db_connections

pytestmark = pytest.mark.slow  # real processes; the second broker is per worker (conftest)

PERIODIC = ("run_billing_periodic_tasks", "--interval", "1")
PERIODIC_ENV = {"BILLING_REPUBLISH_AFTER_SECONDS": "3"}


def completed(tenant, queue_id: str):
    return lambda: (q := tenant.queue(queue_id)).status == "completed" and q


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


def test_twenty_throttled_tenants_progress_together_at_their_own_pace_on_four_threads(pipeline_tenant, start_process):
    threads, pool, pace_per_minute, contacts = 4, 6, 30, 10
    tenants = [pipeline_tenant(messages_per_minute=pace_per_minute) for _ in range(20)]
    consumer = start_process("run_billing_consumer", "--concurrency", str(threads), DB_POOL_MAX_SIZE=str(pool))
    start_process(*PERIODIC, **PERIODIC_ENV)  # as deployed: it republishes a wake-up the broker missed
    wait_started(consumer)
    idle_threads = thread_count(consumer.pid)
    queue_ids, sent_at = [], []  # each tenant's queue and when its POST began (a loaded box posts slowly)
    for i, t in enumerate(tenants):
        sent_at.append(datetime.now().astimezone())
        queue_ids.append(
            t.send("notification", notification_contacts(contacts, start=100 * i), external_id=f"fair-{i}")["queue_id"]
        )
    peak_connections = peak_threads = 0
    deadline = time.monotonic() + 90
    while not all(q.status == "completed" for q in BillingQueue.objects.filter(pk__in=queue_ids)):
        assert consumer.process.poll() is None, consumer.log_path.read_text()[-2000:]
        assert time.monotonic() < deadline, Counter(
            BillingQueue.objects.filter(pk__in=queue_ids).values_list("status", flat=True)
        )
        peak_connections = max(peak_connections, db_connections(consumer.pid))
        peak_threads = max(peak_threads, thread_count(consumer.pid))
        time.sleep(0.2)
    assert 1 <= peak_connections <= pool, f"{peak_connections} database connections with a pool of {pool}"
    assert peak_threads <= idle_threads + 2, f"{peak_threads} threads for 20 queues ({idle_threads} idle)"
    interval = 60 / pace_per_minute
    for tenant, posted in zip(tenants, sent_at):
        times = sandbox_times(tenant.messages())
        assert len(times) == contacts
        # A queue that waited for a slot would wait for another's ten messages, 2 s apart: ~20 s.
        assert (times[0] - posted).total_seconds() <= 10, "every tenant starts at once: no queue waits for a slot"
        # At its own pace: never faster, and not slower than by two intervals over the ten sends
        # (lateness of a starved box adds up; a queue that lost its turns would lose far more).
        assert_paced(times, interval, lag=2 * interval)


def _tenant_a_with_six_numbers(pipeline_tenant, make_sandbox_whatsapp_instance):
    tenant_a = pipeline_tenant(messages_per_minute=600)
    numbers = [tenant_a.instance] + [make_sandbox_whatsapp_instance(tenant=tenant_a.tenant) for _ in range(5)]
    return tenant_a, numbers


def _tenant_b_sends_ten_in_time(tenant_b, limit: float) -> float:
    started = time.monotonic()
    body = tenant_b.send("notification", notification_contacts(10, start=9000), external_id="b")
    wait_until(completed(tenant_b, body["queue_id"]), timeout=60, what="tenant B's ten messages")
    took = time.monotonic() - started
    assert len(tenant_b.messages()) == 10
    assert took <= limit, f"tenant B waited {took:.1f}s behind tenant A"
    return took


def test_a_day_long_retry_after_on_six_of_a_tenants_numbers_delays_no_other_tenant(
    pipeline_tenant, make_sandbox_whatsapp_instance, start_process
):
    tenant_a, numbers = _tenant_a_with_six_numbers(pipeline_tenant, make_sandbox_whatsapp_instance)
    tenant_b = pipeline_tenant(messages_per_minute=600)
    consumer = start_process("run_billing_consumer")  # the default settings
    wait_started(consumer)
    for index, instance in enumerate(numbers):
        tenant_a.sandbox.configure(instance.instance_name, rate_limited=True, retry_after=86_400)
        tenant_a.send(
            "notification", notification_contacts(5, start=100 * index), external_id=f"a{index}", instance=instance.name
        )
    wait_until(
        lambda: BillingQueue.objects.filter(tenant=tenant_a.tenant, pause_reason="provider_rate_limited").count() == 6,
        timeout=30,
        what="A's six queues behind the provider's hold",
        alive=[consumer],
    )
    _tenant_b_sends_ten_in_time(tenant_b, limit=20)  # behind A: 15 minutes
    held = BillingQueue.objects.filter(tenant=tenant_a.tenant)
    assert set(held.values_list("status", flat=True)) == {"running"}, (
        "a hold is not a pause: the queues keep their place"
    )
    now = datetime.now().astimezone()
    for queue in held:  # Retry-After is capped (BILLING_RETRY_AFTER_CAP_SECONDS, 15 min) and shown
        assert timedelta(minutes=13) <= queue.next_resume_at - now <= timedelta(minutes=15, seconds=5)
    attempts = sum(len(tenant_a.sandbox.send_requests(i.instance_name)) for i in numbers)
    assert attempts == 6, "one attempt per number, then every queue of that number waits"


def test_a_hanging_provider_on_six_of_a_tenants_numbers_delays_no_other_tenant(
    pipeline_tenant, make_sandbox_whatsapp_instance, start_process
):
    tenant_a, numbers = _tenant_a_with_six_numbers(pipeline_tenant, make_sandbox_whatsapp_instance)
    tenant_b = pipeline_tenant(messages_per_minute=600)
    consumer = start_process("run_billing_consumer")
    wait_started(consumer)
    for instance in numbers:
        tenant_a.sandbox.configure(instance.instance_name, hang=True, hang_seconds=600)
    # Checked healthy a moment ago (by another process, say): the queues go straight to sending.
    WhatsAppInstance.objects.filter(pk__in=[i.pk for i in numbers]).update(
        health_state="open", health_checked_at=timezone.now()
    )
    for index, instance in enumerate(numbers):
        tenant_a.send(
            "notification", notification_contacts(5, start=100 * index), external_id=f"a{index}", instance=instance.name
        )
    wait_until(
        lambda: BillingContact.objects.filter(tenant=tenant_a.tenant, status="sending").count() >= 3,
        timeout=30,
        what="A's sends hanging",
        alive=[consumer],
    )
    _tenant_b_sends_ten_in_time(tenant_b, limit=20)  # behind A: a 30 s send deadline at least


def test_on_a_shared_number_overdue_goes_before_upcoming_before_notification(pipeline_tenant, start_process):
    tenant = pipeline_tenant(messages_per_minute=60)
    # The three queues must all wait for the number before it is free: one of the blocker's sends
    # stays in flight (10 s at the provider) while they are posted, however slowly this box posts.
    consumer = start_process("run_billing_consumer", "--concurrency", "1", EVOLUTION_SEND_DEADLINE="30")
    wait_started(consumer)
    blocker = tenant.send("notification", notification_contacts(10), external_id="blocker")["queue_id"]
    wait_until(lambda: tenant.queue(blocker).sent_count >= 2, timeout=30, what="blocker sending", alive=[consumer])
    tenant.sandbox.configure(tenant.instance.instance_name, latency_ms=10_000)
    in_flight = BillingContact.objects.filter(queue_id=blocker, status="sending")
    wait_until(in_flight.exists, timeout=30, what="a blocker send in flight", alive=[consumer])
    tenant.sandbox.configure(tenant.instance.instance_name, latency_ms=0)  # the next sends answer at once
    past = (date.today() - timedelta(days=3)).isoformat()
    future = (date.today() + timedelta(days=3)).isoformat()
    notification = tenant.send("notification", notification_contacts(2, start=500), external_id="n")["queue_id"]
    upcoming = tenant.send(
        "upcoming",
        [
            {"phone": f"+55 11 9{7000_0000 + i:08d}", "name": "U", "due_date": future, "amount": "10.00"}
            for i in range(2)
        ],
        external_id="u",
    )["queue_id"]
    overdue = tenant.send(
        "overdue",
        [{"phone": f"+55 11 9{7100_0000 + i:08d}", "name": "O", "due_date": past, "amount": "10.00"} for i in range(2)],
        external_id="o",
    )["queue_id"]
    waiting = BillingQueue.objects.filter(pk__in=[notification, upcoming, overdue])
    wait_until(
        lambda: waiting.filter(processing_by__isnull=False).count() == 3,
        timeout=30,
        what="the three queues claimed by the consumer",
        alive=[consumer],
    )
    assert in_flight.exists(), "the three were waiting in the consumer while the number was busy"
    for queue_id in (blocker, notification, upcoming, overdue):
        wait_until(completed(tenant, queue_id), timeout=60, what="queue completed", alive=[consumer])
    last_sent = {
        name: max(BillingContact.objects.filter(queue_id=queue_id).values_list("sent_at", flat=True))
        for name, queue_id in (("overdue", overdue), ("upcoming", upcoming), ("notification", notification))
    }
    assert last_sent["overdue"] < last_sent["upcoming"] < last_sent["notification"], last_sent
    assert tenant.queue(blocker).completed_at > last_sent["notification"], "the older notification queue went last"


def test_a_poison_message_is_dead_lettered_once_and_the_rest_keeps_flowing(
    pipeline_tenant, start_process, crash_broker
):
    tenant = pipeline_tenant()
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    publish_raw(crash_broker.url, "billing.notification", b"\x00not json at all")
    body = tenant.send("notification", notification_contacts(5))
    publish_raw(crash_broker.url, "billing.notification", b'{"type": "notification", "queue_id": "nope"}')
    wait_until(completed(tenant, body["queue_id"]), timeout=30, what="queue completed", alive=[consumer])
    wait_until(
        lambda: queue_counts(crash_broker.url, ("billing.dead",))["billing.dead"][1] == 2,
        timeout=10,
        what="both poison messages dead-lettered",
        alive=[consumer],
    )
    time.sleep(1)
    assert queue_counts(crash_broker.url, ("billing.dead", "billing.notification")) == {
        "billing.dead": (0, 2),
        "billing.notification": (1, 0),
    }
    dead_lettered = [
        line
        for line in consumer.log_lines()
        if line.get("message") == "billing consumer: unparseable message dead-lettered"
    ]
    assert len(dead_lettered) == 2, "each poison message is handled exactly once"
    assert len(tenant.messages()) == 5
