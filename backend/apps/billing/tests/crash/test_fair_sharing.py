"""Scale and fairness (invariant 3, pace, under load): one consumer process holds many throttled
queues with few worker slots and few database connections; time slices and priorities decide
who goes next when queues outnumber slots; a poison message costs one dead letter."""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta

import pytest

from apps.billing.models import BillingQueue

from .conftest import db_connections, notification_contacts, publish_raw, queue_counts, wait_until

pytestmark = pytest.mark.slow

PERIODIC = ("run_billing_periodic_tasks", "--interval", "1")
PERIODIC_ENV = {"BILLING_REPUBLISH_AFTER_SECONDS": "3"}


def sandbox_times(messages: list[dict]) -> list[datetime]:
    return sorted(datetime.fromisoformat(m["created_at"].replace("Z", "+00:00")) for m in messages)


def completed(tenant, queue_id: str):
    return lambda: (q := tenant.queue(queue_id)).status == "completed" and q


def parse_ts(line: dict) -> datetime:
    return datetime.fromisoformat(line["timestamp"])


def test_twenty_throttled_tenants_progress_together_at_their_own_pace_on_eight_slots(pipeline_tenant, start_process):
    slots, pace_per_minute, contacts, time_slice = 8, 30, 10, 8
    tenants = [pipeline_tenant(messages_per_minute=pace_per_minute) for _ in range(20)]
    for tenant in tenants:
        tenant.configure(time_slice_seconds=time_slice)
    consumer = start_process("run_billing_consumer", "--concurrency", str(slots), "--max-queues", "24",
                             "--db-idle-seconds", "1", "--watchdog-interval", "0.5")
    start_process(*PERIODIC, **PERIODIC_ENV)  # as deployed: it republishes a wake-up the broker missed
    wait_until(lambda: any(line.get("message") == "billing consumer started" for line in consumer.log_lines()),
               timeout=30, what="consumer up", alive=[consumer])
    started = datetime.now().astimezone()
    queue_ids = [t.send("notification", notification_contacts(contacts, start=100 * i), external_id=f"fair-{i}")
                 ["queue_id"] for i, t in enumerate(tenants)]
    peak = 0
    deadline = time.monotonic() + 90
    while not all(q.status == "completed" for q in BillingQueue.objects.filter(pk__in=queue_ids)):
        assert consumer.process.poll() is None, consumer.log_path.read_text()[-2000:]
        assert time.monotonic() < deadline, (
            Counter(BillingQueue.objects.filter(pk__in=queue_ids).values_list("status", flat=True)),
            [line for line in consumer.log_lines() if line.get("level") != "INFO"][-10:])
        peak = max(peak, db_connections(consumer.pid))
        time.sleep(0.2)
    assert 1 <= peak <= slots + 2, f"{peak} database connections for {slots} worker slots"
    interval = 60 / pace_per_minute
    for tenant in tenants:
        times = sandbox_times(tenant.messages())
        assert len(times) == contacts
        assert (times[0] - started).total_seconds() <= time_slice, "a tenant waited longer than a time slice"
        rate = (len(times) - 1) / (times[-1] - times[0]).total_seconds()
        assert abs(rate * interval - 1) <= 0.05, f"pace {rate * 60:.1f}/min instead of {pace_per_minute}/min"
    wait_until(lambda: db_connections(consumer.pid) == 0, timeout=10, what="idle connections closed",
               alive=[consumer])


def test_queues_beyond_the_slots_take_turns_by_time_slice(pipeline_tenant, start_process):
    time_slice, held = 2, 3
    tenants = [pipeline_tenant(messages_per_minute=120) for _ in range(6)]
    for tenant in tenants:
        tenant.configure(time_slice_seconds=time_slice)
    consumer = start_process("run_billing_consumer", "--concurrency", "2", "--max-queues", str(held))
    start_process(*PERIODIC, **PERIODIC_ENV)
    wait_until(lambda: any(line.get("message") == "billing consumer started" for line in consumer.log_lines()),
               timeout=30, what="consumer up", alive=[consumer])
    started = datetime.now().astimezone()
    queue_ids = [t.send("notification", notification_contacts(10, start=100 * i), external_id=f"turns-{i}")
                 ["queue_id"] for i, t in enumerate(tenants)]
    for tenant, queue_id in zip(tenants, queue_ids):
        wait_until(completed(tenant, queue_id), timeout=60, what="queue completed", alive=[consumer])
    rounds = len(tenants) / held
    for tenant in tenants:
        numbers = Counter(m["number"] for m in tenant.messages())
        assert len(numbers) == 10 and set(numbers.values()) == {1}
        first = sandbox_times(tenant.messages())[0]
        assert (first - started).total_seconds() <= rounds * time_slice + 2, "a queue waited more than its turn"
    runs: dict[str, list[datetime]] = defaultdict(list)
    for line in consumer.log_lines():
        if line.get("message") in ("billing worker started queue", "billing worker finished"):
            runs[line["worker_id"]].append(parse_ts(line))
    longest = max((ts[-1] - ts[0]).total_seconds() for ts in runs.values())
    assert longest <= time_slice + 1.0, f"a worker held its queue {longest:.1f}s with a {time_slice}s slice"
    reasons = Counter(line.get("reason") for line in consumer.log_lines()
                      if line.get("message") == "billing queue released")
    assert reasons["time_slice"] >= len(tenants)


def test_when_slots_are_scarce_overdue_starts_before_upcoming_before_notification(pipeline_tenant, start_process):
    tenant = pipeline_tenant(messages_per_minute=600)
    consumer = start_process("run_billing_consumer", "--concurrency", "1", "--max-queues", "1")
    blocker = tenant.send("notification", notification_contacts(40), external_id="blocker")["queue_id"]
    wait_until(lambda: tenant.queue(blocker).status == "running", timeout=30, what="blocker running", alive=[consumer])
    past = (date.today() - timedelta(days=3)).isoformat()
    future = (date.today() + timedelta(days=3)).isoformat()
    notification = tenant.send("notification", notification_contacts(2, start=500), external_id="n")["queue_id"]
    upcoming = tenant.send("upcoming", [{"phone": f"+55 11 9{7000_0000 + i:08d}", "name": "U", "due_date": future,
                                         "amount": "10.00"} for i in range(2)], external_id="u")["queue_id"]
    overdue = tenant.send("overdue", [{"phone": f"+55 11 9{7100_0000 + i:08d}", "name": "O", "due_date": past,
                                       "amount": "10.00"} for i in range(2)], external_id="o")["queue_id"]
    assert tenant.queue(blocker).status == "running", "the blocker must still hold the only slot"
    for queue_id in (blocker, notification, upcoming, overdue):
        wait_until(completed(tenant, queue_id), timeout=60, what="queue completed", alive=[consumer])
    starts = {name: tenant.queue(queue_id).started_at
              for name, queue_id in (("overdue", overdue), ("upcoming", upcoming), ("notification", notification))}
    assert starts["overdue"] < starts["upcoming"] < starts["notification"], starts


def test_a_poison_message_is_dead_lettered_once_and_the_rest_keeps_flowing(pipeline_tenant, start_process,
                                                                          crash_broker):
    tenant = pipeline_tenant()
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    publish_raw(crash_broker.url, "billing.notification", b"\x00not json at all")
    body = tenant.send("notification", notification_contacts(5))
    publish_raw(crash_broker.url, "billing.notification", b'{"type": "notification", "queue_id": "nope"}')
    wait_until(completed(tenant, body["queue_id"]), timeout=30, what="queue completed", alive=[consumer])
    wait_until(lambda: queue_counts(crash_broker.url, ("billing.dead",))["billing.dead"][1] == 2, timeout=10,
               what="both poison messages dead-lettered", alive=[consumer])
    time.sleep(1)
    assert queue_counts(crash_broker.url, ("billing.dead", "billing.notification")) == {
        "billing.dead": (0, 2), "billing.notification": (1, 0)}
    dead_lettered = [line for line in consumer.log_lines()
                     if line.get("message") == "billing consumer: unparseable message dead-lettered"]
    assert len(dead_lettered) == 2, "each poison message is handled exactly once"
    assert len(tenant.messages()) == 5
