"""The send pipeline's promises, proven with real processes: exactly once across consumers,
the per-instance pace, business hours, instance outages, API control, provider errors."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from apps.billing.constants import ContactStatus
from apps.billing.models import BillingContact
from apps.billing.tests.support.processes import (
    assert_paced,
    notification_contacts,
    sandbox_times,
    wait_started,
    wait_until,
)
from apps.chat.models import BusinessHours

pytestmark = [pytest.mark.slow, pytest.mark.each_provider]  # every path proven for Evolution and WAHA


def completed(tenant, queue_id: str):
    return lambda: (q := tenant.queue(queue_id)).status == "completed" and q


def settled(tenant, queue_id: str):
    """No send of the queue in flight, and the sandbox holds exactly the ones recorded as sent:
    what was handed to the provider before a pause or a cancel has landed (ordering, not time)."""

    def check() -> bool:
        contacts = BillingContact.objects.filter(queue_id=queue_id)
        return not contacts.filter(status=ContactStatus.SENDING).exists() and len(tenant.messages()) == (
            contacts.filter(status=ContactStatus.SENT).count()
        )

    return check


def holder_pid(queue) -> int:
    """The pid inside a ConsumerProcess id (host:pid:random)."""
    return int(queue.processing_by.split(":")[-2])


def test_a_queue_handed_over_between_two_consumers_sends_every_contact_exactly_once(pipeline_tenant, start_process):
    tenant = pipeline_tenant()
    tenant.configure(messages_per_minute=3000)
    consumers = {}
    for _ in range(2):
        handle = start_process("run_billing_consumer", "--concurrency", "2")
        consumers[handle.pid] = handle
    body = tenant.send("notification", notification_contacts(300))
    running = wait_until(
        lambda: (q := tenant.queue(body["queue_id"])).status == "running" and q.sent_count >= 30 and q,
        timeout=60,
        what="first sends",
        alive=list(consumers.values()),
    )
    first = consumers[holder_pid(running)]
    first.signal(signal.SIGTERM)  # a deploy: the holder hands the queue back, the other takes it
    assert first.wait(30) == 0
    queue = wait_until(
        completed(tenant, body["queue_id"]),
        timeout=120,
        what="queue completed",
        alive=[h for h in consumers.values() if h is not first],
    )
    numbers = Counter(m["number"] for m in tenant.messages())
    assert len(numbers) == 300 and set(numbers.values()) == {1}
    assert queue.sent_count == 300
    senders = {
        pid
        for pid, handle in consumers.items()
        if any(line.get("message") == "billing message sent" for line in handle.log_lines())
    }
    assert len(senders) == 2, "both consumer processes should have sent part of the queue"


def test_pace_holds_across_two_consumer_processes(pipeline_tenant, start_process):
    tenant = pipeline_tenant(messages_per_minute=120)  # one message every 0.5 s through this instance
    # one queue per process: both send through the one number at the same time
    consumers = [start_process("run_billing_consumer", "--concurrency", "1", "--max-queues", "1") for _ in range(2)]
    wait_started(*consumers)
    first = tenant.send("notification", notification_contacts(11), external_id="pace-a")
    second = tenant.send("notification", notification_contacts(11, start=100), external_id="pace-b")
    for body in (first, second):
        wait_until(completed(tenant, body["queue_id"]), timeout=60, what="queue completed", alive=consumers)
    times = sandbox_times(tenant.messages())
    assert len(times) == 22
    # One pace for both processes: never faster than it, and not much slower either (two sends'
    # worth of lateness over 21 gaps, which a starved box adds up; two paces would halve the span).
    assert_paced(times, 0.5, lag=1.0)
    senders = {
        line.get("holder") for c in consumers for line in c.log_lines() if line.get("message") == "billing message sent"
    }
    assert len(senders) == 2, "both processes must have been sending at the same time"


def _zone_with_daytime_now() -> ZoneInfo:
    """A fixed-offset zone where it is mid-day now, so test openings never cross midnight."""
    now = datetime.now(UTC)
    for hours in range(-12, 13):
        local = now + timedelta(hours=hours)
        if 3 <= local.hour <= 20:
            name = "Etc/GMT" + (f"-{hours}" if hours > 0 else f"+{-hours}" if hours < 0 else "")
            return ZoneInfo(name)
    raise AssertionError("no zone")


def test_business_hours_end_mid_run_and_the_queue_resumes_by_itself(pipeline_tenant, start_process):
    tenant = pipeline_tenant(messages_per_minute=60)
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    periodic = start_process("run_billing_periodic_tasks", "--interval", "0.5")
    wait_until(
        lambda: any(line.get("message") == "billing consumer started" for line in consumer.log_lines()),
        timeout=30,
        what="consumer ready",
        alive=[consumer],
    )
    # Open now, closed from +8 s to +13 s, open again: the hours are set once the consumer is
    # ready, so the run really straddles the closing time (+4 s was too close under a CPU burner:
    # the first send came after the closing), with twelve messages at one a second.
    tz = _zone_with_daytime_now()
    now_local = datetime.now(tz).replace(microsecond=0)
    closes = now_local + timedelta(seconds=8)
    reopens = now_local + timedelta(seconds=13)
    tenant.tenant.timezone = tz.key
    tenant.tenant.save(update_fields=["timezone"])
    BusinessHours.objects.filter(tenant=tenant.tenant).delete()
    weekday = now_local.weekday()
    BusinessHours.objects.bulk_create(
        [
            BusinessHours(
                tenant=tenant.tenant,
                weekday=weekday,
                opens_at=(now_local - timedelta(hours=1)).time(),
                closes_at=closes.time(),
            ),
            BusinessHours(
                tenant=tenant.tenant,
                weekday=weekday,
                opens_at=reopens.time(),
                closes_at=(now_local + timedelta(hours=1)).time(),
            ),
        ]
    )
    due = (date.today() - timedelta(days=5)).isoformat()
    overdue = [
        {"phone": f"+55 21 9{8100_0000 + i:08d}", "name": f"Devedor {i}", "due_date": due, "amount": "99.90"}
        for i in range(12)
    ]
    body = tenant.send("overdue", overdue)
    paused = wait_until(
        lambda: (q := tenant.queue(body["queue_id"])).status == "paused_business_hours" and q,
        timeout=30,
        what="paused for business hours",
        alive=[consumer],
    )
    assert paused.next_resume_at == reopens.astimezone(UTC)
    assert paused.pause_reason
    queue = wait_until(
        completed(tenant, body["queue_id"]), timeout=60, what="resumed and completed", alive=[consumer, periodic]
    )
    times = sandbox_times(tenant.messages())
    assert len(times) == 12 and queue.sent_count == 12
    assert not [t for t in times if closes <= t < reopens], "a message went out while closed"
    assert any(t < closes for t in times) and any(t >= reopens for t in times)


def test_instance_down_pauses_the_queue_and_it_resumes_on_recovery(pipeline_tenant, start_process):
    tenant = pipeline_tenant(messages_per_minute=120)
    # The send that met the closed instance is retried after the backoff; the recovery check is
    # published again every 2 s, not 15: the test waits for the behaviour, not the defaults.
    tenant.configure(health_cache_seconds=0, retry_backoff_seconds=1)
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    periodic = start_process("run_billing_periodic_tasks", "--interval", "0.5", BILLING_CONTROL_REPUBLISH_SECONDS="2")
    body = tenant.send("notification", notification_contacts(12))
    wait_until(lambda: len(tenant.messages()) >= 3, timeout=30, what="first messages", alive=[consumer])
    tenant.sandbox.set_state(tenant.instance.instance_name, "close")
    down = wait_until(
        lambda: (q := tenant.queue(body["queue_id"])).status == "instance_down" and q,
        timeout=30,
        what="instance_down",
        alive=[consumer],
    )
    assert down.pause_reason.startswith("instance_down")
    sent_while_open = len(tenant.messages())
    time.sleep(2)
    assert len(tenant.messages()) == sent_while_open, "sent while the instance was down"
    tenant.sandbox.set_state(tenant.instance.instance_name, "open")
    queue = wait_until(completed(tenant, body["queue_id"]), timeout=60, what="recovered", alive=[consumer, periodic])
    numbers = Counter(m["number"] for m in tenant.messages())
    assert len(numbers) == 12 and set(numbers.values()) == {1}
    assert queue.sent_count == 12 and queue.failed_count == 0


def test_pause_resume_and_cancel_through_the_api_during_a_run(pipeline_tenant, start_process):
    tenant = pipeline_tenant(messages_per_minute=60)
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    body = tenant.send("notification", notification_contacts(30))
    queue_id = body["queue_id"]
    wait_until(lambda: len(tenant.messages()) >= 2, timeout=30, what="first messages", alive=[consumer])
    assert tenant.control(queue_id, "pause").status_code == 200
    wait_until(settled(tenant, queue_id), timeout=30, what="the send in flight landed", alive=[consumer])
    paused_count = len(tenant.messages())
    time.sleep(2.5)  # a window in which nothing may be sent (two paces at 60 a minute)
    assert len(tenant.messages()) == paused_count, "sent while paused"
    assert tenant.queue(queue_id).status == "paused"
    assert tenant.control(queue_id, "resume").status_code == 200
    wait_until(lambda: len(tenant.messages()) >= paused_count + 2, timeout=30, what="sending again", alive=[consumer])
    response = tenant.control(queue_id, "cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    wait_until(settled(tenant, queue_id), timeout=30, what="the send in flight landed", alive=[consumer])
    cancelled_count = len(tenant.messages())
    time.sleep(2)  # a window in which nothing may be sent
    assert len(tenant.messages()) == cancelled_count, "sent after cancel"
    statuses = Counter(BillingContact.objects.filter(queue_id=queue_id).values_list("status", flat=True))
    assert statuses["sent"] == cancelled_count and statuses["cancelled"] == 30 - cancelled_count
    assert not statuses.keys() - {"sent", "cancelled"}
    queue = tenant.queue(queue_id)
    assert queue.sent_count == cancelled_count and queue.cancelled_count == 30 - cancelled_count


def test_invalid_numbers_fail_and_provider_errors_are_retried(pipeline_tenant, start_process):
    tenant = pipeline_tenant()
    tenant.configure(retry_backoff_seconds=1, max_attempts=3)
    batch = notification_contacts(10)
    invalid = ["5511960000003", "5511960000007"]
    tenant.sandbox.set_not_on_whatsapp(*invalid)
    tenant.sandbox.configure(
        tenant.instance.instance_name, fail_next=2, failure_status=503, rate_limit_next=1, retry_after=1
    )
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    periodic = start_process("run_billing_periodic_tasks", "--interval", "0.5", BILLING_REPUBLISH_AFTER_SECONDS="1")
    body = tenant.send("notification", batch)
    queue = wait_until(
        completed(tenant, body["queue_id"]), timeout=60, what="completed after retries", alive=[consumer, periodic]
    )
    contacts = {c.phone: c for c in BillingContact.objects.filter(queue_id=queue.pk)}
    for number in invalid:
        assert contacts["+" + number].status == "failed" and contacts["+" + number].error_code == "invalid_number"
    sent = [c for c in contacts.values() if c.status == "sent"]
    assert len(sent) == 8 and queue.sent_count == 8 and queue.failed_count == 2
    assert any(c.attempts > 1 for c in sent), "a 503 should have been retried"
    numbers = Counter(m["number"] for m in tenant.messages())
    assert len(numbers) == 8 and set(numbers.values()) == {1}


def test_a_run_never_exceeds_max_attempts(pipeline_tenant, start_process):
    tenant = pipeline_tenant()
    tenant.configure(retry_backoff_seconds=1, max_attempts=2)
    tenant.sandbox.configure(tenant.instance.instance_name, failure_rate=1.0, failure_status=503)
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    periodic = start_process("run_billing_periodic_tasks", "--interval", "0.5", BILLING_REPUBLISH_AFTER_SECONDS="1")
    body = tenant.send("notification", notification_contacts(2))
    queue = wait_until(completed(tenant, body["queue_id"]), timeout=60, what="gave up", alive=[consumer, periodic])
    assert queue.failed_count == 2
    assert set(BillingContact.objects.filter(queue_id=queue.pk).values_list("error_code", "attempts")) == {
        ("max_attempts", 2)
    }
