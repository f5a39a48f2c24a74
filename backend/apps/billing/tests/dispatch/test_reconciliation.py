"""Reconciliation against the sandbox: an `unconfirmed` contact ends `sent` with the provider's
id when the provider has it, goes back to sending only when the provider provably never got
it, and fails as `outcome_unknown` when nothing proves either within the window. Nobody gets a
message twice."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.billing.models import BillingConfig, BillingContact, BillingQueue, CallbackDelivery
from apps.billing.services import periodic, queue_lease, reconciliation
from apps.billing.services.webhook_events import handle_event
from apps.billing.tests.support.dispatch import make_engine, run_queue
from apps.billing.tests.support.processes import notification_contacts

pytestmark = pytest.mark.django_db(transaction=True)

HOOK = "https://erp.example.com/hooks/billing"


@pytest.fixture(autouse=True)
def forget_history_proofs():
    reconciliation._history.clear()
    yield
    reconciliation._history.clear()


def sandbox_counts(tenant) -> Counter:
    return Counter(m["number"] for m in tenant.messages())


def interrupt_one(tenant, body, *, deliver: bool) -> BillingContact:
    """A contact caught `sending` when its holder died: the provider got it only if `deliver`."""
    lease = queue_lease.claim_queue(body["queue_id"], "dead:1:a")
    contact = queue_lease.claim_contacts(lease, 1)[0]
    text = "Aviso de teste."
    assert queue_lease.start_sending(lease, contact, text=text)
    if deliver:  # the call reached the provider; the process died before writing the outcome
        from apps.common.services.evolution_api_service import EvolutionAPIService

        EvolutionAPIService(tenant.instance).send(contact.phone, text, max_retries=0, normalized=True)
    assert queue_lease.release_stale(lease.queue_id, timezone.now(), holder="dead:1:a")
    # Long enough ago that no call started for it can still arrive (reconciliation.settled_after).
    BillingContact.objects.filter(pk=contact.pk).update(send_started_at=timezone.now() - timedelta(minutes=5))
    contact.refresh_from_db()
    assert contact.status == "unconfirmed"
    return contact


def test_an_answer_that_may_mean_sent_is_settled_from_the_providers_store(tenant):
    tenant.sandbox.configure(tenant.instance.instance_name, ambiguous_next=1)  # 400 after sending
    body = tenant.send("notification", notification_contacts(3))
    result = run_queue(body["queue_id"], timeout=60)
    assert result.outcome == "completed"
    contacts = list(BillingContact.objects.filter(queue_id=body["queue_id"]))
    assert {c.status for c in contacts} == {"sent"} and all(c.provider_message_id for c in contacts)
    assert set(sandbox_counts(tenant).values()) == {1} and len(sandbox_counts(tenant)) == 3
    queue = BillingQueue.objects.get(pk=body["queue_id"])
    assert (queue.sent_count, queue.failed_count) == (3, 0)
    assert {c.provider_message_id for c in contacts} == {m["id"] for m in tenant.messages()}, (
        "the reconciled contact carries the provider's own id: its receipts match"
    )


def test_an_interrupted_send_the_provider_has_ends_sent_with_its_id_and_is_not_sent_again(tenant):
    BillingConfig.objects.filter(tenant=tenant.tenant).update(callback_url=HOOK, callback_contact_events=True)
    body = tenant.send("notification", notification_contacts(3))
    contact = interrupt_one(tenant, body, deliver=True)
    assert run_queue(body["queue_id"]).outcome == "completed"
    contact.refresh_from_db()
    assert contact.status == "sent" and contact.provider_message_id and contact.message_id
    assert sandbox_counts(tenant)[contact.phone.lstrip("+")] == 1, "reconciled, never re-sent"
    assert len(sandbox_counts(tenant)) == 3
    events = [
        item
        for batch in CallbackDelivery.objects.filter(queue_id=body["queue_id"], event="contact.batch")
        for item in batch.payload["data"]["events"]
    ]
    settled = [e for e in events if e["contact_id"] == contact.pk]
    assert [(e["type"], e.get("reconciled")) for e in settled] == [("contact.sent", True)]


def test_not_found_is_no_proof_while_a_call_started_for_it_could_still_arrive(tenant):
    body = tenant.send("notification", notification_contacts(2))
    warm = tenant.send("notification", notification_contacts(1, start=50), external_id="warm")
    assert run_queue(warm["queue_id"]).outcome == "completed"
    contact = interrupt_one(tenant, body, deliver=False)
    BillingContact.objects.filter(pk=contact.pk).update(send_started_at=timezone.now())  # a moment ago
    summary = reconciliation.reconcile_due(queue_id=body["queue_id"])
    assert (summary.waiting, summary.retried) == (1, 0), "a frozen process's call may still arrive"


def test_an_interrupted_send_the_provider_never_got_is_sent_once_when_the_provider_proves_it(tenant):
    body = tenant.send("notification", notification_contacts(3))
    warm = tenant.send("notification", notification_contacts(1, start=50), external_id="warm")
    assert run_queue(warm["queue_id"]).outcome == "completed"  # something this provider is known to keep
    contact = interrupt_one(tenant, body, deliver=False)
    assert run_queue(body["queue_id"]).outcome == "completed"
    contact.refresh_from_db()
    assert (contact.status, contact.attempts) == ("sent", 2)
    assert sandbox_counts(tenant)[contact.phone.lstrip("+")] == 1


def test_without_proof_a_contact_stays_unconfirmed_and_fails_as_unknown_when_the_window_closes(tenant, settings):
    settings.BILLING_RECONCILE_WINDOW_SECONDS = 302  # the contact started 300 s ago: 2 s left
    settings.BILLING_RECONCILE_EVERY_SECONDS = 0.5
    body = tenant.send("notification", notification_contacts(1))
    contact = interrupt_one(tenant, body, deliver=False)  # and nothing this provider is known to keep
    summary = reconciliation.reconcile_due(queue_id=body["queue_id"])
    assert (summary.waiting, summary.settled) == (1, 0), "not found is not proof: keep asking"
    assert run_queue(body["queue_id"], timeout=30).outcome == "completed"
    contact.refresh_from_db()
    assert (contact.status, contact.error_code) == ("failed", "outcome_unknown")
    assert sandbox_counts(tenant).get(contact.phone.lstrip("+"), 0) == 0, "never re-sent blindly"
    assert BillingQueue.objects.get(pk=body["queue_id"]).failed_count == 1


def test_the_providers_echo_settles_a_contact_at_once_even_when_it_arrived_first(tenant):
    from apps.billing.tests.support.webhooks import SEND_MESSAGE_V2, envelope

    body = tenant.send("notification", notification_contacts(2))
    lease = queue_lease.claim_queue(body["queue_id"], "dead:1:a")
    first, second = queue_lease.claim_contacts(lease, 2)
    for contact in (first, second):
        assert queue_lease.start_sending(lease, contact, text=f"Texto {contact.pk}")

    def echo(contact, message_id):
        payload = envelope(
            SEND_MESSAGE_V2,
            tenant.instance,
            key={"remoteJid": f"{contact.phone.lstrip('+')}@s.whatsapp.net", "fromMe": True, "id": message_id},
            message={"conversation": f"Texto {contact.pk}"},
            messageTimestamp=int(time.time()),
        )
        return handle_event(instance=tenant.instance, payload=payload)

    assert echo(first, "3EB0ECHOFIRST1") != "reconciled", "still sending: the echo is only remembered"
    assert queue_lease.release_stale(lease.queue_id, timezone.now(), holder="dead:1:a")
    assert echo(second, "3EB0ECHOSECOND") == "reconciled", "unconfirmed: settled by its echo at once"
    second.refresh_from_db()
    assert (second.status, second.provider_message_id) == ("sent", "3EB0ECHOSECOND")
    summary = reconciliation.reconcile_due(queue_id=body["queue_id"])
    first.refresh_from_db()
    assert summary.sent == 1 and (first.status, first.provider_message_id) == ("sent", "3EB0ECHOFIRST1")
    assert len(tenant.sandbox.requests(tenant.instance.instance_name, path="findMessages")) == 0, (
        "the remembered echo answered: no provider look-up"
    )


def test_a_send_stranded_in_a_paused_queue_is_swept_and_settled_by_a_control_message(tenant):
    from apps.billing.broker.messages import BillingMessage
    from apps.billing.dispatch import control

    body = tenant.send("notification", notification_contacts(2))
    engine = make_engine()
    runner = engine.claim(body["queue_id"])
    contact = queue_lease.claim_contacts(runner.lease, 1)[0]
    assert queue_lease.start_sending(runner.lease, contact, text="Aviso de teste.")
    from apps.common.services.evolution_api_service import EvolutionAPIService

    EvolutionAPIService(tenant.instance).send(contact.phone, "Aviso de teste.", max_retries=0, normalized=True)
    assert tenant.control(body["queue_id"], "pause").status_code == 200  # then the worker died
    BillingContact.objects.filter(pk=contact.pk).update(send_started_at=timezone.now() - timedelta(minutes=10))
    assert periodic.sweep_stranded_sends() == 1
    assert reconciliation.queues_to_reconcile() == [body["queue_id"]]
    assert control.check_stale(BillingMessage(type="check_stale", queue_id=body["queue_id"])) == 1
    contact.refresh_from_db()
    queue = BillingQueue.objects.get(pk=body["queue_id"])
    assert contact.status == "sent" and queue.status == "paused" and queue.sent_count == 1
    assert not BillingContact.objects.filter(queue_id=body["queue_id"], status="sending").exists()


def test_a_cancelled_queues_contact_the_provider_never_got_ends_cancelled(tenant):
    body = tenant.send("notification", notification_contacts(2))
    warm = tenant.send("notification", notification_contacts(1, start=50), external_id="warm")
    assert run_queue(warm["queue_id"]).outcome == "completed"
    contact = interrupt_one(tenant, body, deliver=False)
    assert tenant.control(body["queue_id"], "cancel").status_code == 200
    assert reconciliation.reconcile_due(queue_id=body["queue_id"]).retried == 1
    contact.refresh_from_db()
    assert (contact.status, contact.error_code) == ("cancelled", "cancelled")
    assert not BillingContact.objects.filter(
        queue_id=body["queue_id"], status__in=["pending", "sending", "unconfirmed"]
    ).exists()
