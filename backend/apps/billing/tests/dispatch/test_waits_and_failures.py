"""What a step does when the provider or Redis pushes back: waits are instants returned to the
scheduler (the queue holds nothing meanwhile), provider holds are per number and visible,
every provider answer counts toward max_attempts, and the pace survives Redis losing it."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from apps.billing.dispatch import queue_runner
from apps.billing.models import BillingContact, BillingQueue
from apps.billing.tests.support.dispatch import make_engine, run_queue
from apps.billing.tests.support.processes import notification_contacts
from apps.common.redis_client import get_redis

pytestmark = pytest.mark.django_db(transaction=True)


def adopt(engine, queue_id: str):
    runner = engine.claim(queue_id)
    assert runner is not None
    engine.adopt(runner)
    return runner


def test_a_day_long_retry_after_holds_that_number_only_visibly_and_capped(pipeline_tenant, settings):
    held_tenant, other = pipeline_tenant(), pipeline_tenant()
    for t in (held_tenant, other):
        t.configure(messages_per_minute=60000)
    held_tenant.sandbox.configure(held_tenant.instance.instance_name, rate_limit_next=1, retry_after=86_400)
    held = held_tenant.send("notification", notification_contacts(3), external_id="held")
    free = other.send("notification", notification_contacts(3, start=50), external_id="free")
    engine = make_engine()
    adopt(engine, held["queue_id"])
    adopt(engine, free["queue_id"])
    deadline = time.monotonic() + 20
    while BillingQueue.objects.get(pk=free["queue_id"]).status != "completed":
        assert time.monotonic() < deadline
        engine.run_due()
        time.sleep(0.01)
    queue = BillingQueue.objects.get(pk=held["queue_id"])
    assert (queue.status, queue.pause_reason) == ("running", "provider_rate_limited")
    cap = settings.BILLING_RETRY_AFTER_CAP_SECONDS
    assert timedelta(seconds=cap - 30) <= queue.next_resume_at - timezone.now() <= timedelta(seconds=cap + 1)
    assert len(other.messages()) == 3 and held_tenant.messages() == []
    assert len(held_tenant.sandbox.send_requests(held_tenant.instance.instance_name)) == 1
    limited = BillingContact.objects.get(queue_id=held["queue_id"], status="pending_retry")
    assert (limited.error_code, limited.attempts) == ("rate_limited", 1), "a 429 is an answer: it counts"
    [waiting] = engine.scheduler.waiting()
    assert waiting.due_at - time.monotonic() > cap - 30, "the queue waits in the heap, holding no thread"


def test_redis_down_during_a_step_keeps_the_lease_and_sends_when_it_is_back(tenant, monkeypatch):
    body = tenant.send("notification", notification_contacts(2))
    engine = make_engine()
    adopt(engine, body["queue_id"])
    real = queue_runner.acquire_send_slot
    calls = []

    def blinking(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RedisConnectionError("Connection refused")
        return real(*args, **kwargs)

    monkeypatch.setattr(queue_runner, "acquire_send_slot", blinking)
    entry = engine.scheduler.take(timeout=5)
    before = time.monotonic()
    step = engine.step(entry)
    after = time.monotonic()
    assert step.outcome == "redis_unavailable" and not step.left
    assert BillingQueue.objects.get(pk=body["queue_id"]).status == "running"
    assert BillingContact.objects.filter(queue_id=body["queue_id"], status="pending").count() == 2
    assert before + 1.5 <= step.at <= after + queue_runner.DEPENDENCY_RETRY_SECONDS
    [ending] = engine.run_until_empty(timeout=30)
    assert ending.outcome == "completed" and len(tenant.messages()) == 2


def test_the_pace_survives_redis_losing_it(pipeline_tenant):
    """After a Redis restart or flush the number's next slot comes from PostgreSQL (the queue's
    last send), so the first send after the loss is not early."""
    tenant = pipeline_tenant()
    tenant.configure(messages_per_minute=30)  # a slot every 2 s
    body = tenant.send("notification", notification_contacts(2))
    engine = make_engine()
    runner = adopt(engine, body["queue_id"])
    entry = engine.scheduler.take(timeout=5)
    first_began = time.monotonic()
    assert engine.step(entry).outcome == "sent"
    first_ended = time.monotonic()
    get_redis().delete(f"pace:{runner.pace_key}")  # what a flush or a restart without persistence does
    engine.scheduler.reschedule(body["queue_id"], time.monotonic())
    step = engine.step(engine.scheduler.take(timeout=5))
    assert step.outcome == "pace", "the lost pace was recovered: the slot has not come yet"
    # The slot is 2 s after the first send, which happened inside the first step (0.1 s for the
    # clocks of PostgreSQL's row and Redis): bounds that hold however slowly this box runs.
    assert first_began + 1.9 <= step.at <= first_ended + 2.1
    [ending] = engine.run_until_empty(timeout=30)
    assert ending.outcome == "completed"
    sent_at = sorted(BillingContact.objects.filter(queue_id=body["queue_id"]).values_list("sent_at", flat=True))
    assert (sent_at[1] - sent_at[0]).total_seconds() >= 1.95


def test_a_provider_failing_while_it_says_open_ends_every_contact_within_max_attempts(tenant):
    tenant.configure(max_attempts=3, retry_backoff_seconds=1)
    tenant.sandbox.configure(
        tenant.instance.instance_name, failure_rate=1.0, failure_status=500, failure_message="Internal Server Error"
    )
    body = tenant.send("notification", notification_contacts(2))
    result = run_queue(body["queue_id"], timeout=60)
    assert result.outcome == "completed"
    contacts = list(BillingContact.objects.filter(queue_id=body["queue_id"]))
    assert {(c.status, c.error_code, c.attempts) for c in contacts} == {("failed", "provider_error", 3)}
    assert len(tenant.sandbox.send_requests(tenant.instance.instance_name)) == 6, "3 attempts per contact, no more"
    assert BillingQueue.objects.get(pk=body["queue_id"]).failed_count == 2
    tenant.instance.refresh_from_db()
    assert tenant.instance.attention_since is not None and "connected" in tenant.instance.attention_reason
