"""Holding and stopping one debtor's collection messages (services/debtor_holds.py), and the
contract with the dispatch core: a held contact is never started, even one already claimed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.billing.constants import ContactErrorCode, ContactStatus, QueueStatus
from apps.billing.models import BillingContact, BillingQueue
from apps.billing.services import queue_lease
from apps.billing.services.debtor_holds import hold_debtor, stop_debtor
from apps.billing.services.reply_sending import send_staff_reply
from apps.billing.tests.support.replies import pending_collection, queue_of, sent_collection, status_of
from apps.billing.tests.support.webhooks import PHONE
from apps.chat.models import Conversation

OTHER_PHONE = "+5511998760000"


def test_a_hold_postpones_every_unsent_collection_message_of_that_phone_only(hook):
    until = timezone.now() + timedelta(days=3)
    pending = pending_collection(hook)
    retrying = pending_collection(hook, status=ContactStatus.PENDING_RETRY, next_attempt_at=timezone.now())
    later = pending_collection(hook, status=ContactStatus.PENDING_RETRY, next_attempt_at=until + timedelta(days=1))
    in_flight = pending_collection(hook, status=ContactStatus.SENDING)
    sent = sent_collection(hook)
    stranger = pending_collection(hook, phone=OTHER_PHONE)

    assert hold_debtor(tenant=hook.tenant, phone=PHONE, until=until, reason="held") == 3

    for contact in (pending, retrying):
        contact.refresh_from_db()
        assert (contact.status, contact.next_attempt_at) == (ContactStatus.PENDING_RETRY, until)
        assert contact.claim_token is None
    later.refresh_from_db()
    assert later.next_attempt_at == until + timedelta(days=1)  # a hold never brings a contact forward
    assert (status_of(in_flight), status_of(sent), status_of(stranger)) == ("sending", "sent", "pending")


def test_a_held_contact_already_claimed_by_a_running_queue_is_not_started(hook):
    contact = pending_collection(hook)
    lease = queue_lease.claim_queue(contact.queue_id, "worker-1")
    [claimed] = queue_lease.claim_contacts(lease, 10)

    hold_debtor(tenant=hook.tenant, phone=PHONE, until=timezone.now() + timedelta(days=3), reason="held")

    assert queue_lease.start_sending(lease, claimed, text="Olá") is False
    assert status_of(contact) == ContactStatus.PENDING_RETRY
    # The worker then sees only a retry that is not due: the queue waits for it.
    remaining, _, earliest = queue_lease.unsent_summary(lease.queue_id)
    assert remaining == 1 and earliest > timezone.now() + timedelta(days=2)


def test_a_hold_never_delays_an_answer_in_the_conversation(hook):
    sent_collection(hook)
    conversation = Conversation.objects.get(tenant=hook.tenant, contact_phone=PHONE)
    queued = send_staff_reply(conversation=conversation, text="Olá! Recebemos sua mensagem.")
    assert hold_debtor(tenant=hook.tenant, phone=PHONE, until=timezone.now() + timedelta(days=3), reason="x") == 0
    assert queued.reply.contact.status == ContactStatus.PENDING


def test_stopping_a_debtor_skips_their_unsent_messages_and_counts_them_per_queue(hook):
    first = pending_collection(hook, queue_status=QueueStatus.RUNNING)
    second = pending_collection(hook, status=ContactStatus.PENDING_RETRY)
    in_flight = pending_collection(hook, status=ContactStatus.SENDING)

    assert stop_debtor(tenant=hook.tenant, phone=PHONE, reason="wrong person (reply)") == 2

    for contact in (first, second):
        contact.refresh_from_db()
        assert (contact.status, contact.error_code) == (ContactStatus.SKIPPED, ContactErrorCode.OPTED_OUT)
        assert queue_of(contact).skipped_count == 1
    assert status_of(in_flight) == "sending" and queue_of(in_flight).skipped_count == 0
    assert stop_debtor(tenant=hook.tenant, phone=PHONE, reason="again") == 0


def test_a_contact_a_running_worker_claimed_is_left_to_it_and_counted_once(hook):
    """The worker refuses to start a suppressed phone and records the skip itself; skipping it
    here as well would count it twice (and break the queue's processed <= total rule)."""
    from apps.billing.services.opt_out import suppress

    contact = pending_collection(hook)
    lease = queue_lease.claim_queue(contact.queue_id, "worker-1")
    [claimed] = queue_lease.claim_contacts(lease, 10)
    suppress(tenant=hook.tenant, phone=PHONE, reason="wrong person (reply)")

    assert stop_debtor(tenant=hook.tenant, phone=PHONE, reason="wrong person (reply)") == 0
    assert queue_lease.start_sending(lease, claimed, text="Olá") is False
    assert queue_lease.record_skipped(lease, claimed, code=ContactErrorCode.OPTED_OUT, reason="opted out")
    queue = BillingQueue.objects.get(pk=contact.queue_id)
    assert (status_of(contact), queue.skipped_count) == (ContactStatus.SKIPPED, 1)


@pytest.mark.django_db(transaction=True)
def test_two_debtors_paying_at_once_each_held_where_the_other_is_credited_do_not_deadlock(hook, monkeypatch):
    """A is credited in queue X and held in Y; B credited in Y, held in X. Both replies wait for
    each other after crediting (a barrier) before holding: without the up-front ordered lock each
    would hold one queue and wait for the other, and PostgreSQL would kill one (a 500)."""
    import threading

    from django.db import connection
    from django.test import Client

    from apps.billing.services import reply_actions
    from apps.billing.tests.support.builders import build_contact
    from apps.billing.tests.support.replies import post_reply
    from apps.billing.tests.support.webhooks import Hook

    phone_a, phone_b = "+5511998760101", "+5511998760202"
    credited = {phone_a: hook.sent_contact(phone=phone_a), phone_b: hook.sent_contact(phone=phone_b)}
    variation = hook.template().variations.first()
    build_contact(credited[phone_b].queue, phone=phone_a, variation=variation)  # A pending in B's queue
    build_contact(credited[phone_a].queue, phone=phone_b, variation=variation)  # B pending in A's queue
    barrier = threading.Barrier(2, timeout=3)
    real_hold = reply_actions.hold_debtor

    def hold_after_both_credited(**kwargs):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass  # the other reply waits for our locks: the two are serialised, go on
        return real_hold(**kwargs)

    monkeypatch.setattr(reply_actions, "hold_debtor", hold_after_both_credited)
    outcomes: dict[str, int] = {}

    def answer(phone: str) -> None:
        try:
            response = post_reply(
                Hook(hook.api, Client()),
                "já paguei",
                phone_jid=f"{phone[1:]}@s.whatsapp.net",
                quoted=credited[phone].provider_message_id,
            )
            outcomes[phone] = response.status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=answer, args=(phone,)) for phone in (phone_a, phone_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes == {phone_a: 200, phone_b: 200}
    held = BillingContact.objects.filter(tenant=hook.tenant, status=ContactStatus.PENDING_RETRY)
    assert sorted(held.values_list("phone", flat=True)) == [phone_a, phone_b]
