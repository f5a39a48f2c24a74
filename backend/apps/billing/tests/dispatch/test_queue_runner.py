"""The queue runner stepped in-process against the sandbox: statements per message, fencing,
stale release, waits that hold nothing, outcomes written with their callbacks."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.billing.models import BillingContact, BillingQueue
from apps.billing.services import queue_lease
from apps.billing.tests.support.dispatch import finish, make_engine, run_queue
from apps.billing.tests.support.processes import assert_paced, notification_contacts

pytestmark = pytest.mark.django_db(transaction=True)


def run_worker(queue_id: str) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as ctx:
        result = run_queue(queue_id)
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
    assert not queue_lease.start_sending(lease, contacts[0], text="Olá")
    new_lease = queue_lease.claim_queue(body["queue_id"], "successor")
    assert new_lease is not None and new_lease.token != lease.token
    assert not queue_lease.start_sending(lease, contacts[0], text="Olá"), "old token must stay fenced"
    assert len(queue_lease.claim_contacts(new_lease, 10)) == 3


def test_stale_release_leaves_the_in_flight_contact_unconfirmed_and_frees_the_rest(tenant):
    body = tenant.send("notification", notification_contacts(3))
    lease = queue_lease.claim_queue(body["queue_id"], "crashed")
    first, *_ = queue_lease.claim_contacts(lease, 10)
    assert queue_lease.start_sending(lease, first, text="Olá")
    BillingQueue.objects.filter(pk=body["queue_id"]).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    assert queue_lease.release_stale(lease.queue_id, timezone.now() - timedelta(minutes=10))
    first.refresh_from_db()
    assert (first.status, first.error_code) == ("unconfirmed", "interrupted")
    assert first.rendered_message == "Olá" and first.send_started_at is not None, "what reconciliation searches for"
    queue = BillingQueue.objects.get(pk=body["queue_id"])
    assert queue.status == "pending" and queue.failed_count == 0 and queue.lease_token is None
    assert set(
        BillingContact.objects.filter(queue_id=queue.pk, status="pending").values_list("claim_token", flat=True)
    ) == {None}
    assert not queue_lease.record_sent(lease, first, provider_message_id="x", rendered="y")


def test_a_fresh_heartbeat_is_not_released(tenant):
    body = tenant.send("notification", notification_contacts(1))
    queue_lease.claim_queue(body["queue_id"], "alive")
    assert not queue_lease.release_stale(body["queue_id"], timezone.now() - timedelta(minutes=10))


def test_pause_from_the_api_stops_the_runner_before_the_next_send(tenant):
    body = tenant.send("notification", notification_contacts(3))
    engine = make_engine()
    runner = engine.claim(body["queue_id"])
    engine.adopt(runner)
    assert tenant.control(body["queue_id"], "pause").status_code == 200
    result = finish(engine, runner)
    assert result.outcome == "stopped" and result.sent == 0
    assert tenant.messages() == []
    assert set(BillingContact.objects.filter(queue_id=body["queue_id"]).values_list("status", "claim_token")) == {
        ("pending", None)
    }, "the claimed contacts went back unsent"


def test_a_phone_opted_out_while_the_queue_runs_is_skipped_not_sent(tenant):
    from apps.billing.services.opt_out import suppress

    body = tenant.send("notification", notification_contacts(3))
    suppress(tenant=tenant.tenant, phone="+5511960000001", reason="SAIR")
    result = run_queue(body["queue_id"])
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
    run_queue(body["queue_id"])
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
            tenant_id=contact.tenant_id, provider_message_id=provider_message_id, provider_status=next(receipts)
        )
        assert early == "unknown_message"  # kept for later: the contact does not know its id yet
        return real_record_sent(lease, contact, provider_message_id=provider_message_id, **kwargs)

    monkeypatch.setattr(queue_lease, "record_sent", receipt_first)
    _, result = run_worker(body["queue_id"])

    assert result.outcome == "completed" and result.sent == 4
    statuses = sorted(BillingContact.objects.filter(queue_id=body["queue_id"]).values_list("status", flat=True))
    assert statuses == ["delivered", "delivered", "read", "read"]
    queue = BillingQueue.objects.get(pk=body["queue_id"])
    assert (queue.sent_count, queue.delivered_count, queue.read_count) == (4, 4, 2)


def test_a_queue_waiting_for_its_slot_holds_nothing_and_its_next_contact_stays_pending(pipeline_tenant):
    """A step never waits: after a send the queue goes back to the scheduler with the instant of
    its number's next slot. Meanwhile the next contact is `pending` (a crash now leaves nothing
    `interrupted`), and the sends reach the provider spaced by the pace."""
    tenant = pipeline_tenant()
    tenant.configure(messages_per_minute=120)  # a slot every 0.5 s
    body = tenant.send("notification", notification_contacts(3))
    engine = make_engine()
    runner = engine.claim(body["queue_id"])
    engine.adopt(runner)
    entry = engine.scheduler.take(timeout=5)
    before = time.monotonic()
    step = engine.step(entry)
    after = time.monotonic()
    assert step.outcome == "sent"
    # The next slot is 0.5 s after the send, which happened inside the step: bounds that hold
    # however long this box takes over the step.
    assert before + 0.4 <= step.at <= after + 0.5, "the next step is due at the next slot"
    statuses = sorted(BillingContact.objects.filter(queue_id=body["queue_id"]).values_list("status", flat=True))
    assert statuses == ["pending", "pending", "sent"]
    # Back in the scheduler, due at that slot and held by no thread meanwhile (checking that
    # `take` finds nothing due would race the slot itself on a box slower than half a second).
    [waiting] = engine.scheduler.waiting()
    assert waiting.due_at == pytest.approx(step.at) and not waiting.in_flight
    assert finish(engine, runner).outcome == "completed"
    sent_at = sorted(datetime.fromisoformat(m["created_at"].replace("Z", "+00:00")) for m in tenant.messages())
    assert len(sent_at) == 3
    assert_paced(sent_at, 0.5)  # arrival times: each carries its post's own delay


def test_a_shutdown_between_two_steps_hands_the_queue_back_with_its_contacts_unsent(pipeline_tenant):
    tenant = pipeline_tenant()
    tenant.configure(messages_per_minute=120)
    body = tenant.send("notification", notification_contacts(2))
    stop, republished = threading.Event(), []
    engine = make_engine(stop_event=stop, republished=republished)
    runner = engine.claim(body["queue_id"])
    engine.adopt(runner)
    assert engine.step(engine.scheduler.take(timeout=5)).outcome == "sent"
    stop.set()  # SIGTERM while the queue waits for its next slot
    engine.scheduler.reschedule(body["queue_id"], time.monotonic())
    assert engine.step(engine.scheduler.take(timeout=5)).outcome == "released"
    rows = sorted(BillingContact.objects.filter(queue_id=body["queue_id"]).values_list("status", "claim_token"))
    assert rows == [("pending", None), ("sent", None)]
    queue = BillingQueue.objects.get(pk=body["queue_id"])
    assert (queue.status, queue.lease_token) == ("pending", None)
    assert [str(q.pk) for q in republished] == [body["queue_id"]]
    assert len(tenant.messages()) == 1


def test_an_interrupted_contact_counts_nowhere_until_it_is_settled(tenant):
    """The stale release makes the contact caught `sending` `unconfirmed`: not a failure, not a
    success, no callback, until reconciliation (tests/dispatch/test_reconciliation.py) settles
    it; the queue cannot complete around it."""
    from apps.billing.models import BillingConfig, BillingTemplateVariation, CallbackDelivery

    BillingConfig.objects.filter(tenant=tenant.tenant).update(
        callback_url="https://erp.example.com/hooks/billing", callback_contact_events=True
    )
    body = tenant.send("notification", notification_contacts(2))
    lease = queue_lease.claim_queue(body["queue_id"], "crashed")
    first, _ = queue_lease.claim_contacts(lease, 10)
    assert queue_lease.start_sending(lease, first, text="Olá")
    failed_before = BillingTemplateVariation.objects.get(pk=first.variation_id).failed_count
    BillingQueue.objects.filter(pk=body["queue_id"]).update(last_heartbeat=timezone.now() - timedelta(hours=1))

    assert queue_lease.release_stale(lease.queue_id, timezone.now() - timedelta(minutes=10))

    assert BillingTemplateVariation.objects.get(pk=first.variation_id).failed_count == failed_before
    assert BillingQueue.objects.get(pk=body["queue_id"]).failed_count == 0
    assert not CallbackDelivery.objects.filter(queue_id=body["queue_id"], event="contact.batch").exists()
    assert queue_lease.unsent_summary(lease.queue_id)[:2] == (2, 1)


def _sending_contact(tenant, body) -> tuple:
    from apps.billing.services.chat_history import OutboundChat

    lease = queue_lease.claim_queue(body["queue_id"], "lock-order")
    [contact] = queue_lease.claim_contacts(lease, 10)
    assert queue_lease.start_sending(lease, contact, text="Olá")
    chat = OutboundChat(
        tenant_id=tenant.tenant.pk, instance_id=tenant.instance.pk, phone=contact.phone, contact_name=contact.name
    )
    return lease, contact, chat


def _wait_for_a_lock_wait(session) -> None:
    """Until some backend of this database waits for a row lock (the statement under test)."""
    for _ in range(200):
        session.execute("SELECT pg_stat_clear_snapshot()")  # inside a transaction it would not move
        if session.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone()[0]:
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
    conversation = Conversation.objects.create(
        tenant=tenant.tenant, instance=tenant.instance, contact_phone=contact.phone
    )  # an earlier exchange
    other = connections.create_connection("default")
    other.ensure_connection()
    session = other.connection
    session.autocommit = False
    outcome: dict = {}

    def write() -> None:
        try:
            outcome["recorded"] = queue_lease.record_sent(
                lease, contact, provider_message_id="3EB0LOCKORDER", rendered="Olá", chat=chat
            )
        except Exception as exc:
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
            session.execute(
                "SELECT id FROM billing_billingtemplatevariation WHERE id = %s FOR UPDATE NOWAIT",
                [contact.variation_id],
            )
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


def test_the_hours_are_judged_for_the_instant_the_message_leaves(pipeline_tenant):
    """A step that starts just before closing time (less than the send margin) does not send:
    the queue pauses until the next opening with its contact untouched."""
    from datetime import date

    from apps.billing.dispatch import queue_runner

    tenant = pipeline_tenant()
    tenant.configure(messages_per_minute=60000)
    due = (date.today() - timedelta(days=3)).isoformat()
    body = tenant.send(
        "overdue", [{"phone": "+55 21 98100-0001", "name": "Devedor", "due_date": due, "amount": "120.50"}]
    )
    engine = make_engine()
    runner = engine.claim(body["queue_id"])
    closing = timezone.now() + timedelta(seconds=queue_runner.SEND_MARGIN / 2)

    class ClosesInAMoment:
        def is_open(self, when) -> bool:
            return when < closing

        def next_open_after(self, when):
            return when + timedelta(hours=14)

    assert runner.schedule is not None, "overdue messages respect business hours"
    runner.schedule = ClosesInAMoment()
    engine.adopt(runner)
    result = finish(engine, runner)
    assert result.outcome == "paused_business_hours" and result.sent == 0
    assert tenant.messages() == []
    contact = BillingContact.objects.get(queue_id=body["queue_id"])
    assert (contact.status, contact.claim_token, contact.attempts) == ("pending", None, 0)
    assert BillingQueue.objects.get(pk=body["queue_id"]).status == "paused_business_hours"


def test_a_callback_that_cannot_be_written_never_costs_the_outcome(tenant, monkeypatch, caplog):
    """The outcome's callback is written in the outcome's transaction; if writing it fails, the
    outcome is still recorded (the callback is lost, and logged), so a sent message is never
    left `sending`, and the receipts waiting in Redis are applied."""
    from apps.billing.models import BillingConfig
    from apps.billing.services import callbacks, delivery_status

    BillingConfig.objects.filter(tenant=tenant.tenant).update(
        callback_url="https://erp.example.com/hooks/billing", callback_contact_events=True
    )
    body = tenant.send("notification", notification_contacts(2))
    real_record_sent = queue_lease.record_sent

    def receipt_first(lease, contact, *, provider_message_id, **kwargs):
        delivery_status.apply_provider_status(
            tenant_id=contact.tenant_id, provider_message_id=provider_message_id, provider_status="DELIVERY_ACK"
        )
        return real_record_sent(lease, contact, provider_message_id=provider_message_id, **kwargs)

    outcomes = []

    def failing_callback(contact, event, **kwargs):
        outcomes.append(event)
        if outcomes.count("contact.sent") == 2 and event == "contact.sent":
            raise RuntimeError("unexpected")

    monkeypatch.setattr(queue_lease, "record_sent", receipt_first)
    monkeypatch.setattr(callbacks, "on_contact_outcome", failing_callback)
    assert run_queue(body["queue_id"]).outcome == "completed"
    statuses = sorted(BillingContact.objects.filter(queue_id=body["queue_id"]).values_list("status", flat=True))
    assert statuses == ["delivered", "delivered"]
    assert any("callback" in record.message for record in caplog.records if record.levelname == "ERROR")
