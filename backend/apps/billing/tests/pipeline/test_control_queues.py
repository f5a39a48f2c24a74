"""The three control queues carry real work: the periodic process publishes one message per thing
to act on, a real consumer acts on it, and a duplicate message changes nothing."""

from __future__ import annotations

import signal
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.billing.constants import QueueStatus
from apps.billing.models import (
    BillingConfig,
    BillingContact,
    BillingQueue,
    CallbackDelivery,
    ConsumerProcess,
)
from apps.billing.services import periodic
from apps.billing.tests.support.processes import health_check_path, notification_contacts, wait_started, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.each_provider]  # every path proven for Evolution and WAHA

HOOK = "https://crm.example.com/hooks/billing"


def completed(tenant, queue_id: str):
    return lambda: (q := tenant.queue(queue_id)).status == "completed" and q


def later() -> str:
    """A schedule far enough ahead that the live consumer leaves the new queue alone."""
    return (timezone.now() + timedelta(days=1)).isoformat()


def publish_twice(step, consumer=None) -> int:
    """Publish a check, forget it was published, publish the same check again. A running
    consumer is stopped meanwhile (SIGSTOP), so it cannot act on the first before the second is
    published (on a loaded box it did, and the second found nothing left to check)."""
    if consumer is not None:
        consumer.signal(signal.SIGSTOP)
    try:
        first = step()
        periodic.recently_published.clear()
        return first + step()
    finally:
        if consumer is not None:
            consumer.signal(signal.SIGCONT)


@pytest.fixture
def consumer(start_process):
    handle = start_process("run_billing_consumer", "--concurrency", "2")
    wait_started(handle)
    periodic.recently_published.clear()
    return handle


def test_a_resume_message_resumes_the_queue_once_and_it_is_sent(pipeline_tenant, consumer):
    tenant = pipeline_tenant()
    BillingConfig.objects.filter(tenant=tenant.tenant).update(callback_url=HOOK)
    body = tenant.send("notification", notification_contacts(3), scheduled_for=later())
    # As if it had paused at closing time and its next opening has come.
    BillingQueue.objects.filter(pk=body["queue_id"]).update(
        status=QueueStatus.PAUSED_BUSINESS_HOURS,
        next_resume_at=timezone.now() - timedelta(seconds=1),
        scheduled_for=None,
    )
    assert publish_twice(periodic.publish_due_resumes, consumer) == 2
    wait_until(completed(tenant, body["queue_id"]), timeout=30, what="resumed and sent", alive=[consumer])
    assert len(tenant.messages()) == 3
    assert CallbackDelivery.objects.filter(queue_id=body["queue_id"], event="queue.resumed").count() == 1
    handled = [line for line in consumer.log_lines() if line.get("routing_key") == "billing.resume"]
    assert not [line for line in handled if line.get("level") == "ERROR"]


def test_a_recovery_message_checks_the_instance_and_resumes_its_queues_once(pipeline_tenant, consumer):
    tenant = pipeline_tenant()
    BillingConfig.objects.filter(tenant=tenant.tenant).update(callback_url=HOOK)
    tenant.sandbox.set_state(tenant.instance.instance_name, "close")
    body = tenant.send("notification", notification_contacts(2))
    wait_until(
        lambda: tenant.queue(body["queue_id"]).status == "instance_down",
        timeout=30,
        what="instance down",
        alive=[consumer],
    )
    assert publish_twice(periodic.publish_recovery_checks, consumer) == 2
    checks = health_check_path(tenant.instance.provider)
    wait_until(
        lambda: len(tenant.sandbox.requests(tenant.instance.instance_name, path=checks)) >= 3,
        timeout=30,
        what="both checks ran",
        alive=[consumer],
    )
    assert tenant.queue(body["queue_id"]).status == "instance_down", "still closed: nothing resumes"
    tenant.sandbox.set_state(tenant.instance.instance_name, "open")
    periodic.recently_published.clear()
    assert publish_twice(periodic.publish_recovery_checks, consumer) == 2
    wait_until(completed(tenant, body["queue_id"]), timeout=30, what="recovered and sent", alive=[consumer])
    assert len(tenant.messages()) == 2
    assert CallbackDelivery.objects.filter(queue_id=body["queue_id"], event="queue.resumed").count() == 1


def test_a_stale_message_releases_a_dead_consumers_queue_once(pipeline_tenant, start_process):
    periodic.recently_published.clear()
    tenant = pipeline_tenant()
    body = tenant.send("notification", notification_contacts(4), scheduled_for=later())
    gone = "dead-host:4242:abcdef"
    ConsumerProcess.objects.create(
        id=gone,
        hostname="dead-host",
        pid=4242,
        started_at=timezone.now(),
        last_seen_at=timezone.now() - timedelta(minutes=5),
    )
    BillingQueue.objects.filter(pk=body["queue_id"]).update(
        status=QueueStatus.RUNNING,
        processing_by=gone,
        lease_token="00000000-0000-0000-0000-000000000001",
        last_heartbeat=timezone.now(),
        scheduled_for=None,
    )
    contact = BillingContact.objects.filter(queue_id=body["queue_id"]).order_by("pk").first()
    BillingContact.objects.filter(pk=contact.pk).update(  # in flight when it died; the provider never got it
        status="sending",
        attempts=1,
        rendered_message="Aviso de teste.",
        send_started_at=timezone.now() - timedelta(minutes=10),
    )
    # Both checks wait in the broker before a consumer runs: however fast it would have handled
    # the first, the second still names a stale queue.
    assert publish_twice(periodic.publish_stale_checks) == 2
    consumer = start_process("run_billing_consumer", "--concurrency", "2", BILLING_RECONCILE_EVERY_SECONDS="1")
    wait_until(completed(tenant, body["queue_id"]), timeout=60, what="released, reconciled and sent", alive=[consumer])
    queue = tenant.queue(body["queue_id"])
    # Released once; its in-flight contact was provably never received (the provider keeps the
    # other messages we sent) and was sent once, so nothing is lost and nothing doubled.
    assert (queue.sent_count, queue.failed_count) == (4, 0)
    assert sorted(Counter(m["number"] for m in tenant.messages()).values()) == [1, 1, 1, 1]
    assert periodic.forget_dead_consumers() == 1 and not ConsumerProcess.objects.filter(pk=gone).exists()
