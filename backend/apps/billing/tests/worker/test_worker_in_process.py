"""The worker run in-process against the sandbox: statements per message, fencing, stale release."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.billing.models import BillingContact, BillingQueue
from apps.billing.services import queue_lease
from apps.billing.workers.billing_sender_worker import BillingSenderWorker

from ..pipeline.conftest import notification_contacts

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tenant(pipeline_tenant):
    t = pipeline_tenant()
    t.configure(messages_per_minute=60000)  # no pacing wait: count statements, not time
    return t


def run_worker(queue_id: str) -> tuple[int, object]:
    worker = BillingSenderWorker(queue_id, worker_id="test-worker")
    with CaptureQueriesContext(connection) as ctx:
        result = worker.run()
    return len(ctx.captured_queries), result


def test_statements_per_message_do_not_grow_with_the_queue(tenant):
    small = tenant.send("notification", notification_contacts(5), external_id="small")
    large = tenant.send("notification", notification_contacts(25, start=100), external_id="large")
    small_count, small_result = run_worker(small["queue_id"])
    large_count, large_result = run_worker(large["queue_id"])
    assert small_result.outcome == large_result.outcome == "completed"
    # 20 more messages cost 2 statements each: start_sending, and the outcome with its counters
    # and chat history (one statement, its own transaction); one batch claim serves them all.
    assert large_count - small_count <= 20 * 2 + 1, (small_count, large_count)
    assert len(tenant.messages()) == 30


def test_a_released_worker_cannot_start_a_send(tenant):
    body = tenant.send("notification", notification_contacts(3))
    lease = queue_lease.claim_queue(body["queue_id"], "zombie")
    contacts = queue_lease.claim_contacts(lease, 10)
    assert len(contacts) == 3
    BillingQueue.objects.filter(pk=body["queue_id"]).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    assert queue_lease.release_stale(lease.queue_id, timezone.now() - timedelta(minutes=10))
    assert not queue_lease.start_sending(lease, contacts[0])
    new_lease = queue_lease.claim_queue(body["queue_id"], "successor")
    assert new_lease is not None and new_lease.token != lease.token
    assert not queue_lease.start_sending(lease, contacts[0]), "old token must stay fenced"
    assert len(queue_lease.claim_contacts(new_lease, 10)) == 3


def test_stale_release_fails_the_in_flight_contact_and_frees_the_rest(tenant):
    body = tenant.send("notification", notification_contacts(3))
    lease = queue_lease.claim_queue(body["queue_id"], "crashed")
    first, *_ = queue_lease.claim_contacts(lease, 10)
    assert queue_lease.start_sending(lease, first)
    BillingQueue.objects.filter(pk=body["queue_id"]).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    assert queue_lease.release_stale(lease.queue_id, timezone.now() - timedelta(minutes=10))
    first.refresh_from_db()
    assert (first.status, first.error_code) == ("failed", "interrupted")
    queue = BillingQueue.objects.get(pk=body["queue_id"])
    assert queue.status == "pending" and queue.failed_count == 1 and queue.lease_token is None
    assert set(BillingContact.objects.filter(queue_id=queue.pk, status="pending")
               .values_list("claim_token", flat=True)) == {None}
    assert not queue_lease.record_sent(lease, first, provider_message_id="x", rendered="y")


def test_a_fresh_heartbeat_is_not_released(tenant):
    body = tenant.send("notification", notification_contacts(1))
    queue_lease.claim_queue(body["queue_id"], "alive")
    assert not queue_lease.release_stale(body["queue_id"], timezone.now() - timedelta(minutes=10))


def test_pause_from_the_api_stops_the_worker_before_the_next_send(tenant):
    body = tenant.send("notification", notification_contacts(3))
    worker = BillingSenderWorker(body["queue_id"], worker_id="w")
    assert worker.claim()
    assert tenant.control(body["queue_id"], "pause").status_code == 200
    result = worker.run()
    assert result.outcome == "stopped" and result.sent == 0
    assert tenant.messages() == []


def test_a_phone_opted_out_while_the_queue_runs_is_skipped_not_sent(tenant):
    from apps.billing.services.opt_out import suppress

    body = tenant.send("notification", notification_contacts(3))
    suppress(tenant=tenant.tenant, phone="+5511960000001", reason="SAIR")
    result = BillingSenderWorker(body["queue_id"], worker_id="w").run()
    assert result.outcome == "completed"
    skipped = BillingContact.objects.get(queue_id=body["queue_id"], phone="+5511960000001")
    assert (skipped.status, skipped.error_code) == ("skipped", "opted_out")
    queue = BillingQueue.objects.get(pk=body["queue_id"])
    assert queue.sent_count == 2 and queue.skipped_count == 1 and queue.pending_count == 0
    assert sorted(m["number"] for m in tenant.messages()) == ["5511960000000", "5511960000002"]


def test_sent_messages_land_in_the_chat_history_and_callbacks_are_queued(tenant):
    from apps.billing.models import CallbackDelivery
    from apps.chat.models import Conversation

    body = tenant.send("notification", notification_contacts(2), callback_url="https://crm.example.com/hook")
    BillingSenderWorker(body["queue_id"], worker_id="w").run()
    contact = BillingContact.objects.select_related("message__conversation").filter(queue_id=body["queue_id"]).first()
    assert contact.message.provider_message_id == contact.provider_message_id
    assert contact.message.conversation.status == Conversation.Status.CLOSED
    assert contact.message.conversation.closed_by == "billing"
    events = set(CallbackDelivery.objects.filter(queue_id=body["queue_id"]).values_list("event", flat=True))
    assert {"queue.started", "queue.completed"} <= events


def test_receipts_that_beat_the_outcome_write_are_applied_by_the_worker(tenant, monkeypatch):
    """The provider may report DELIVERY_ACK/READ before the worker has written the provider id:
    the webhook keeps the receipt in Redis, and the worker applies it after its outcome write
    (in batches, and at the end of the run at the latest)."""
    from apps.billing.services import delivery_status

    body = tenant.send("notification", notification_contacts(4))
    real_record_sent = queue_lease.record_sent
    receipts = iter(["DELIVERY_ACK", "READ", "DELIVERY_ACK", "READ"])

    def receipt_first(lease, contact, *, provider_message_id, **kwargs):
        early = delivery_status.apply_provider_status(
            tenant_id=contact.tenant_id, provider_message_id=provider_message_id, provider_status=next(receipts))
        assert early == "unknown_message"  # kept for later: the contact does not know its id yet
        return real_record_sent(lease, contact, provider_message_id=provider_message_id, **kwargs)

    monkeypatch.setattr(queue_lease, "record_sent", receipt_first)
    _, result = run_worker(body["queue_id"])

    assert result.outcome == "completed" and result.sent == 4
    statuses = sorted(BillingContact.objects.filter(queue_id=body["queue_id"]).values_list("status", flat=True))
    assert statuses == ["delivered", "delivered", "read", "read"]
    queue = BillingQueue.objects.get(pk=body["queue_id"])
    assert (queue.sent_count, queue.delivered_count, queue.read_count) == (4, 4, 2)


def test_a_send_starts_only_at_its_slot_so_a_crash_while_waiting_leaves_it_pending(pipeline_tenant, monkeypatch):
    """The worker wakes PREP_MARGIN before its pace slot for the last checks and the render, but
    marks the contact `sending` only at the slot: killed while waiting, the contact is still
    `pending`, not `interrupted`."""
    tenant = pipeline_tenant()
    tenant.configure(messages_per_minute=120)  # a slot every 0.5 s: the wait before each is real
    body = tenant.send("notification", notification_contacts(3))
    worker = BillingSenderWorker(body["queue_id"], worker_id="slot-test")
    real_start = queue_lease.start_sending
    early_by: list[float] = []

    def start_sending(lease, contact):
        early_by.append(worker.slot_at - time.monotonic())
        return real_start(lease, contact)

    monkeypatch.setattr(queue_lease, "start_sending", start_sending)
    result = worker.run()
    assert result.outcome == "completed" and result.sent == 3
    assert len(early_by) == 3 and max(early_by) <= 0.001, early_by


def test_a_shutdown_in_the_last_moment_before_the_slot_hands_the_contact_back_unsent(pipeline_tenant, monkeypatch):
    tenant = pipeline_tenant()
    tenant.configure(messages_per_minute=120)
    body = tenant.send("notification", notification_contacts(2))
    stop = threading.Event()
    worker = BillingSenderWorker(body["queue_id"], worker_id="stop-test", stop_event=stop)
    real_wait = BillingSenderWorker._wait_until_slot
    waits = []

    def wait_then_signal(self):
        waits.append(self.slot_at - time.monotonic())
        if len(waits) == 2:
            stop.set()  # SIGTERM after the render, before the second send started
        real_wait(self)

    monkeypatch.setattr(BillingSenderWorker, "_wait_until_slot", wait_then_signal)
    result = worker.run()
    assert (result.outcome, result.sent, result.republish) == ("released", 1, True)
    assert waits[1] > 0, "the second message did wait for its slot"
    statuses = sorted(BillingContact.objects.filter(queue_id=body["queue_id"]).values_list("status", flat=True))
    assert statuses == ["pending", "sent"]
    assert len(tenant.messages()) == 1


def test_an_interrupted_contact_counts_as_a_failure_everywhere(tenant):
    """The stale release fails the contact caught `sending`: the queue's and the variation's
    failed counters and the tenant's `contact.failed` callback see it like any other failure."""
    from apps.billing.models import BillingConfig, BillingTemplateVariation, CallbackDelivery

    BillingConfig.objects.filter(tenant=tenant.tenant).update(
        callback_url="https://erp.example.com/hooks/billing", callback_contact_events=True)
    body = tenant.send("notification", notification_contacts(2))
    lease = queue_lease.claim_queue(body["queue_id"], "crashed")
    first, _ = queue_lease.claim_contacts(lease, 10)
    assert queue_lease.start_sending(lease, first)
    failed_before = BillingTemplateVariation.objects.get(pk=first.variation_id).failed_count
    BillingQueue.objects.filter(pk=body["queue_id"]).update(last_heartbeat=timezone.now() - timedelta(hours=1))

    assert queue_lease.release_stale(lease.queue_id, timezone.now() - timedelta(minutes=10))

    assert BillingTemplateVariation.objects.get(pk=first.variation_id).failed_count == failed_before + 1
    assert BillingQueue.objects.get(pk=body["queue_id"]).failed_count == 1
    [batch] = CallbackDelivery.objects.filter(queue_id=body["queue_id"], event="contact.batch")
    [item] = batch.payload["data"]["events"]
    assert (item["type"], item["contact_id"], item["status"], item["error_code"]) == (
        "contact.failed", first.pk, "failed", "interrupted")
