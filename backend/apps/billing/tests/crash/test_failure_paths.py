"""Issue 15's failure paths with real processes: a kill between the provider's answer and the
outcome write, a pause + kill + resume, and a provider that fails for ever all end with every
contact terminal, nothing `sending`, and nobody messaged twice."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from apps.billing.models import BillingContact
from apps.billing.tests.support.processes import notification_contacts, wait_started, wait_until

pytestmark = pytest.mark.slow  # real processes; the second broker is per worker (conftest)

PERIODIC = ("run_billing_periodic_tasks", "--interval", "0.5")
PERIODIC_ENV = {
    "BILLING_CONSUMER_DEAD_AFTER_SECONDS": "3",
    "BILLING_REPUBLISH_AFTER_SECONDS": "2",
    "BILLING_CONTROL_REPUBLISH_SECONDS": "1",
}


def statuses(queue_id: str) -> Counter:
    return Counter(BillingContact.objects.filter(queue_id=queue_id).values_list("status", flat=True))


def completed(tenant, queue_id: str):
    return lambda: (q := tenant.queue(queue_id)).status == "completed" and q


def test_a_kill_after_the_providers_201_ends_sent_with_the_providers_id_and_nobody_gets_it_twice(
    pipeline_tenant, start_process
):
    tenant = pipeline_tenant(messages_per_minute=600)
    tenant.configure(health_cache_seconds=600)  # the held answer is a send's, not a health check's
    # The provider records the message, then holds its 201 back: the consumer dies then.
    tenant.sandbox.configure(tenant.instance.instance_name, hang_seconds=30)
    periodic = start_process(*PERIODIC, **PERIODIC_ENV)
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    wait_started(consumer)
    body = tenant.send("notification", notification_contacts(2))
    wait_until(completed(tenant, body["queue_id"]), timeout=30, what="warm-up", alive=[consumer])
    tenant.sandbox.configure(tenant.instance.instance_name, hang_next=1)
    body = tenant.send("notification", notification_contacts(5, start=10), external_id="kill")
    in_flight = wait_until(
        lambda: BillingContact.objects.filter(queue_id=body["queue_id"], status="sending").first(),
        timeout=30,
        what="a send in flight",
        alive=[consumer],
    )
    wait_until(
        lambda: in_flight.phone.lstrip("+") in {m["number"] for m in tenant.messages()},
        timeout=10,
        what="the provider has it",
    )
    consumer.signal(signal.SIGKILL)
    consumer.wait(10)
    successor = start_process("run_billing_consumer", "--concurrency", "1")
    wait_until(
        completed(tenant, body["queue_id"]),
        timeout=60,
        what="completed after reconciliation",
        alive=[successor, periodic],
    )
    in_flight.refresh_from_db()
    [provider_record] = [m for m in tenant.messages() if m["number"] == in_flight.phone.lstrip("+")]
    assert (in_flight.status, in_flight.provider_message_id) == ("sent", provider_record["id"])
    numbers = Counter(m["number"] for m in tenant.messages())
    assert set(numbers.values()) == {1} and len(numbers) == 7
    assert statuses(body["queue_id"]) == Counter({"sent": 5})


def test_pause_kill_and_resume_leave_no_contact_sending(pipeline_tenant, start_process):
    tenant = pipeline_tenant(messages_per_minute=600)
    tenant.configure(health_cache_seconds=600)
    tenant.sandbox.configure(tenant.instance.instance_name, hang_seconds=30)
    periodic = start_process(*PERIODIC, **PERIODIC_ENV)
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    wait_started(consumer)
    warm = tenant.send("notification", notification_contacts(1, start=50), external_id="warm")
    wait_until(completed(tenant, warm["queue_id"]), timeout=30, what="warm-up (health cached)", alive=[consumer])
    tenant.sandbox.configure(tenant.instance.instance_name, hang_next=1)
    body = tenant.send("notification", notification_contacts(6))
    wait_until(
        lambda: statuses(body["queue_id"])["sending"] == 1, timeout=30, what="a send in flight", alive=[consumer]
    )
    assert tenant.control(body["queue_id"], "pause").status_code == 200
    consumer.signal(signal.SIGKILL)
    consumer.wait(10)
    successor = start_process("run_billing_consumer", "--concurrency", "1")
    # Paused: nobody runs it, yet the stranded send is settled (swept, then reconciled).
    wait_until(
        lambda: statuses(body["queue_id"])["sending"] == 0 and statuses(body["queue_id"])["unconfirmed"] == 0,
        timeout=120,
        what="the stranded send settled while paused",
        alive=[successor, periodic],
    )
    assert tenant.control(body["queue_id"], "resume").status_code == 200
    wait_until(completed(tenant, body["queue_id"]), timeout=60, what="completed", alive=[successor, periodic])
    assert statuses(body["queue_id"]) == Counter({"sent": 6})
    numbers = Counter(m["number"] for m in tenant.messages())
    assert set(numbers.values()) == {1} and len(numbers) == 7


def test_a_provider_failing_for_ever_while_open_ends_every_contact_within_max_attempts(pipeline_tenant, start_process):
    tenant = pipeline_tenant(messages_per_minute=600)
    tenant.configure(max_attempts=3, retry_backoff_seconds=1)
    tenant.sandbox.configure(
        tenant.instance.instance_name, failure_rate=1.0, failure_status=500, failure_message="Internal Server Error"
    )
    consumer = start_process("run_billing_consumer", "--concurrency", "2")
    start_process(*PERIODIC, **PERIODIC_ENV)
    started = time.monotonic()
    body = tenant.send("notification", notification_contacts(5))
    queue = wait_until(
        completed(tenant, body["queue_id"]), timeout=120, what="every contact terminal", alive=[consumer]
    )
    took = time.monotonic() - started
    contacts = list(BillingContact.objects.filter(queue_id=body["queue_id"]))
    assert {(c.status, c.error_code) for c in contacts} == {("failed", "provider_error")}
    assert max(c.attempts for c in contacts) <= 3
    requests = Counter(
        (r.get("body") or {}).get("number") for r in tenant.sandbox.send_requests(tenant.instance.instance_name)
    )
    assert sum(requests.values()) <= 15 and max(requests.values()) <= 3, requests
    assert queue.failed_count == 5 and took < 60, took
