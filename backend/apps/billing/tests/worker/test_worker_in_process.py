"""The worker run in-process against the sandbox: statements per message, fencing, stale release."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
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


def _sending_contact(tenant, body) -> tuple:
    from apps.billing.services.billing_send_service import OutboundChat

    lease = queue_lease.claim_queue(body["queue_id"], "lock-order")
    [contact] = queue_lease.claim_contacts(lease, 10)
    assert queue_lease.start_sending(lease, contact)
    chat = OutboundChat(tenant_id=tenant.tenant.pk, instance_id=tenant.instance.pk, phone=contact.phone,
                        contact_name=contact.name)
    return lease, contact, chat


def _wait_for_a_lock_wait(session) -> None:
    """Until some backend of this database waits for a row lock (the statement under test)."""
    for _ in range(200):
        session.execute("SELECT pg_stat_clear_snapshot()")  # inside a transaction it would not move
        if session.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND datname = current_database()").fetchone()[0]:
            return
        time.sleep(0.01)
    raise AssertionError("nothing waited for a lock")


def test_the_outcome_write_takes_the_variation_before_the_conversation_like_a_reply_does(tenant):
    """A customer's reply locks the variation (replied counter), then the conversation. The
    outcome statement must take them in the same order, or the two can deadlock. Seen from a
    session holding the conversation row: by the time the outcome statement waits for it, it
    must already hold the variation row."""
    from django.db import connections

    from apps.chat.models import Conversation

    body = tenant.send("notification", notification_contacts(1))
    lease, contact, chat = _sending_contact(tenant, body)
    conversation = Conversation.objects.create(tenant=tenant.tenant, instance=tenant.instance,
                                               contact_phone=contact.phone)  # an earlier exchange
    other = connections.create_connection("default")
    other.ensure_connection()
    session = other.connection
    session.autocommit = False
    outcome: dict = {}

    def write() -> None:
        try:
            outcome["recorded"] = queue_lease.record_sent(lease, contact, provider_message_id="3EB0LOCKORDER",
                                                         rendered="Olá", chat=chat)
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            outcome["error"] = exc
        finally:
            connection.close()

    try:
        session.execute("SELECT id FROM chat_conversation WHERE id = %s FOR UPDATE", [conversation.pk])
        writer = threading.Thread(target=write)
        writer.start()
        _wait_for_a_lock_wait(session)
        session.execute("SAVEPOINT probe")
        try:
            session.execute("SELECT id FROM billing_billingtemplatevariation WHERE id = %s FOR UPDATE NOWAIT",
                            [contact.variation_id])
            variation_taken_first = False
        except psycopg.errors.LockNotAvailable:
            variation_taken_first = True
            session.execute("ROLLBACK TO SAVEPOINT probe")
        session.commit()
        writer.join(10)
    finally:
        other.close()
    assert variation_taken_first, "the outcome statement waited for the conversation before locking the variation"
    assert outcome == {"recorded": True}
    contact.refresh_from_db()
    assert contact.status == "sent" and contact.message.conversation_id == conversation.pk


def test_an_outcome_write_chosen_as_deadlock_victim_runs_again(tenant, monkeypatch):
    from django.db import OperationalError

    from apps.common import prepared_sql

    body = tenant.send("notification", notification_contacts(1))
    lease, contact, chat = _sending_contact(tenant, body)
    real_run, calls = prepared_sql.run, []

    def deadlocked_once(sql, params=(), **kwargs):
        calls.append(sql)
        if len(calls) == 1:
            raise OperationalError("deadlock detected") from psycopg.errors.DeadlockDetected("deadlock detected")
        return real_run(sql, params, **kwargs)

    monkeypatch.setattr(prepared_sql, "run", deadlocked_once)
    assert queue_lease.record_sent(lease, contact, provider_message_id="3EB0RETRY", rendered="Olá", chat=chat)
    assert len(calls) == 2
    queue = BillingQueue.objects.get(pk=body["queue_id"])
    assert queue.sent_count == 1, "the failed attempt changed nothing; the second wrote once"


def test_any_other_database_error_in_the_outcome_write_is_not_retried(tenant, monkeypatch):
    from django.db import OperationalError

    from apps.common import prepared_sql

    body = tenant.send("notification", notification_contacts(1))
    lease, contact, chat = _sending_contact(tenant, body)
    calls = []

    def broken(sql, params=(), **kwargs):
        calls.append(sql)
        raise OperationalError("server closed") from psycopg.errors.AdminShutdown("terminating connection")

    monkeypatch.setattr(prepared_sql, "run", broken)
    with pytest.raises(OperationalError):
        queue_lease.record_sent(lease, contact, provider_message_id="3EB0NORETRY", rendered="Olá", chat=chat)
    assert len(calls) == 1


def test_closing_time_reached_while_waiting_for_the_slot_stops_before_the_send(pipeline_tenant, monkeypatch):
    """The last wait before a send (the slot; in the consumer also a database permit) can cross
    the closing time: the hours are judged again at the instant the send starts."""
    from datetime import date

    tenant = pipeline_tenant()
    tenant.configure(messages_per_minute=60000)
    due = (date.today() - timedelta(days=3)).isoformat()
    body = tenant.send("overdue", [{"phone": "+55 21 98100-0001", "name": "Devedor", "due_date": due,
                                    "amount": "120.50"}])
    worker = BillingSenderWorker(body["queue_id"], worker_id="closing-test")
    real_load, real_wait = worker._load, worker._wait_until_slot
    shop = {"closed": False}

    class ClosesDuringTheWait:
        def __init__(self, schedule) -> None:
            self._schedule = schedule

        def is_open(self, when) -> bool:
            return not shop["closed"] and self._schedule.is_open(when)

        def next_open_after(self, when):
            return when + timedelta(hours=14)

    def load() -> None:
        real_load()
        assert worker.schedule is not None, "overdue messages respect business hours"
        worker.schedule = ClosesDuringTheWait(worker.schedule)

    def wait_until_slot() -> None:
        real_wait()
        shop["closed"] = True  # the permit wait of a busy consumer ran past closing time

    monkeypatch.setattr(worker, "_load", load)
    monkeypatch.setattr(worker, "_wait_until_slot", wait_until_slot)
    result = worker.run()
    assert result.outcome == "paused_business_hours" and result.sent == 0
    assert tenant.messages() == []
    contact = BillingContact.objects.get(queue_id=body["queue_id"])
    assert (contact.status, contact.claim_token, contact.attempts) == ("pending", None, 0)
    assert BillingQueue.objects.get(pk=body["queue_id"]).status == "paused_business_hours"


def test_receipts_waiting_in_redis_are_applied_even_when_the_run_ends_in_an_error(tenant, monkeypatch):
    from apps.billing.services import callbacks, delivery_status

    body = tenant.send("notification", notification_contacts(2))
    real_record_sent = queue_lease.record_sent

    def receipt_first(lease, contact, *, provider_message_id, **kwargs):
        delivery_status.apply_provider_status(tenant_id=contact.tenant_id, provider_message_id=provider_message_id,
                                              provider_status="DELIVERY_ACK")
        return real_record_sent(lease, contact, provider_message_id=provider_message_id, **kwargs)

    outcomes = []

    def failing_callback(contact, event, **kwargs):
        outcomes.append(event)
        if len(outcomes) == 2:
            raise RuntimeError("unexpected")

    monkeypatch.setattr(queue_lease, "record_sent", receipt_first)
    monkeypatch.setattr(callbacks, "on_contact_outcome", failing_callback)
    with pytest.raises(RuntimeError):
        BillingSenderWorker(body["queue_id"], worker_id="error-test").run()
    statuses = sorted(BillingContact.objects.filter(queue_id=body["queue_id"]).values_list("status", flat=True))
    assert statuses == ["delivered", "delivered"]


def test_the_health_checks_provider_call_holds_no_database_permit(tenant, monkeypatch):
    """A provider that hangs answers a health check only at the read timeout (30 s): meanwhile
    the consumer's database connection must serve other queues, as during a send."""
    from concurrent.futures import ThreadPoolExecutor

    from apps.billing.workers import billing_sender_worker
    from apps.billing.workers.db_permits import DbPermits, run_with_permit
    from apps.billing.workers.parking_worker import claim_worker
    from apps.billing.workers.parking_worker import run_worker as run_parked
    from apps.common.services.evolution_api_service import EvolutionAPIService

    body = tenant.send("notification", notification_contacts(1))
    billing_sender_worker._default_health.forget(tenant.instance.pk)
    permits = DbPermits(1, application_name="test parked health check")
    real_check, seen = EvolutionAPIService.check_health, []

    def check_health(self):
        seen.append(("permit held", permits.held))
        other = threading.Thread(target=run_with_permit,
                                 args=(permits, 0, lambda: seen.append(("another queue's work", "ran"))))
        other.start()
        other.join(5)  # it needs the only connection: it runs now only if we gave it back
        return real_check(self)

    monkeypatch.setattr(EvolutionAPIService, "check_health", check_health)
    with ThreadPoolExecutor(max_workers=1) as pool:
        worker = pool.submit(run_with_permit, permits, 1, claim_worker, body["queue_id"], "parked-health",
                             threading.Event(), permits).result()
        result = pool.submit(run_with_permit, permits, 1, run_parked, worker).result()
        pool.submit(permits.close_all).result()
    assert result.outcome == "completed" and result.sent == 1
    assert seen[:2] == [("permit held", False), ("another queue's work", "ran")]
