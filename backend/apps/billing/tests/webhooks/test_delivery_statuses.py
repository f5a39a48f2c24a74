"""Delivery receipts: statuses only move forward, whatever the order or the number of repeats,
and the queue's and the variation's counters count each contact once."""

from __future__ import annotations

import itertools
import random
import threading

import pytest
from django.db import close_old_connections, connection

from apps.billing.constants import ContactStatus
from apps.billing.models import BillingContact, BillingQueue, BillingTemplateVariation
from apps.billing.services.chat_history import record_outbound_message
from apps.billing.services.delivery_status import apply_provider_status
from apps.billing.tests.support.webhooks import MESSAGES_UPDATE_V1, MESSAGES_UPDATE_V2, SEND_MESSAGE_V2, envelope
from apps.chat.models import Message


def counters(contact: BillingContact) -> dict[str, int]:
    queue = BillingQueue.objects.get(pk=contact.queue_id)
    variation = BillingTemplateVariation.objects.get(pk=contact.variation_id)
    return {
        "queue_delivered": queue.delivered_count,
        "queue_read": queue.read_count,
        "variation_delivered": variation.delivered_count,
        "variation_read": variation.read_count,
    }


def receipt(hook, contact, status):
    return hook.post(envelope(MESSAGES_UPDATE_V2, hook.instance, keyId=contact.provider_message_id, status=status))


def test_the_contract_body_moves_a_sent_contact_to_delivered(hook):
    contact = hook.sent_contact(provider_message_id="3EB0A1B2C3D4E5F6")
    response = hook.post(envelope(MESSAGES_UPDATE_V2, hook.instance))
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "outcome": "moved"}
    contact.refresh_from_db()
    assert contact.status == ContactStatus.DELIVERED and contact.delivered_at is not None and contact.read_at is None
    assert counters(contact) == {"queue_delivered": 1, "queue_read": 0, "variation_delivered": 1, "variation_read": 0}


def test_read_after_delivered_counts_read_only(hook):
    contact = hook.sent_contact()
    receipt(hook, contact, "DELIVERY_ACK")
    receipt(hook, contact, "READ")
    contact.refresh_from_db()
    assert contact.status == ContactStatus.READ and contact.read_at >= contact.delivered_at
    assert counters(contact) == {"queue_delivered": 1, "queue_read": 1, "variation_delivered": 1, "variation_read": 1}


def test_read_straight_after_sent_counts_delivered_too(hook):
    contact = hook.sent_contact()
    receipt(hook, contact, "READ")
    contact.refresh_from_db()
    assert contact.status == ContactStatus.READ and contact.delivered_at is not None
    assert counters(contact) == {"queue_delivered": 1, "queue_read": 1, "variation_delivered": 1, "variation_read": 1}


def test_a_late_delivery_ack_after_read_changes_nothing(hook):
    contact = hook.sent_contact()
    receipt(hook, contact, "READ")
    contact.refresh_from_db()
    read_at, delivered_at = contact.read_at, contact.delivered_at
    response = receipt(hook, contact, "DELIVERY_ACK")
    assert response.json()["outcome"] == "unchanged"
    contact.refresh_from_db()
    assert (contact.status, contact.read_at, contact.delivered_at) == (ContactStatus.READ, read_at, delivered_at)
    assert counters(contact)["queue_delivered"] == 1


ORDERS = sorted(set(itertools.permutations(["SERVER_ACK", "DELIVERY_ACK", "DELIVERY_ACK", "READ", "READ", "PLAYED"])))


@pytest.mark.parametrize("seed", range(12))
def test_shuffled_and_repeated_receipts_end_read_and_count_once(hook, seed):
    contact = hook.sent_contact()
    order = random.Random(seed).choice(ORDERS)
    for status in order:
        assert receipt(hook, contact, status).status_code == 200
    contact.refresh_from_db()
    assert contact.status == ContactStatus.READ, order
    assert counters(contact) == {"queue_delivered": 1, "queue_read": 1, "variation_delivered": 1, "variation_read": 1}


@pytest.mark.parametrize(
    "statuses,final,delivered",
    [
        (["DELIVERY_ACK"] * 10, ContactStatus.DELIVERED, 1),  # the provider retries up to 10 times
        (["SERVER_ACK", "PENDING", "ERROR", "DELETED", "SOMETHING"], ContactStatus.SENT, 0),
        ([3, "3", 4], ContactStatus.READ, 1),  # v1 may send numeric statuses (renderStatus.ts)
    ],
)
def test_repeats_and_statuses_that_mean_nothing(hook, statuses, final, delivered):
    contact = hook.sent_contact()
    for status in statuses:
        assert receipt(hook, contact, status).status_code == 200
    contact.refresh_from_db()
    assert contact.status == final
    assert counters(contact)["queue_delivered"] == delivered


@pytest.mark.parametrize("status", [ContactStatus.FAILED, ContactStatus.CANCELLED, ContactStatus.SKIPPED])
def test_receipts_never_revive_a_finished_contact(hook, status):
    contact = hook.sent_contact(status=status)
    receipt(hook, contact, "READ")
    contact.refresh_from_db()
    assert contact.status == status
    assert counters(contact)["queue_read"] == 0


def test_the_v1_shape_with_id_instead_of_key_id_works(hook):
    contact = hook.sent_contact(provider_message_id="BAE5A1B2C3D4E5F6")
    response = hook.post(envelope(MESSAGES_UPDATE_V1, hook.instance))
    assert response.json()["outcome"] == "moved"
    contact.refresh_from_db()
    assert contact.status == ContactStatus.DELIVERED


def test_send_message_echo_is_accepted_and_moves_nothing(hook):
    contact = hook.sent_contact(provider_message_id="3EB0A1B2C3D4E5F6")
    response = hook.post(envelope(SEND_MESSAGE_V2, hook.instance))
    assert response.status_code == 200
    contact.refresh_from_db()
    assert contact.status == ContactStatus.SENT


def test_receipts_for_an_inbound_message_are_ignored(hook):
    contact = hook.sent_contact()
    response = hook.post(
        envelope(MESSAGES_UPDATE_V2, hook.instance, keyId=contact.provider_message_id, fromMe=False, status="READ")
    )
    assert response.json()["outcome"] == "ignored"


def test_another_tenants_message_id_is_not_touched(hook):
    from apps.billing.tests.support.api import make_tenant
    from apps.billing.tests.support.webhooks import Hook

    other = Hook(make_tenant("status-other"), hook.client)
    theirs = other.sent_contact()
    response = hook.post(envelope(MESSAGES_UPDATE_V2, hook.instance, keyId=theirs.provider_message_id))
    assert response.json()["outcome"] == "unknown_message"
    theirs.refresh_from_db()
    assert theirs.status == ContactStatus.SENT


def test_the_chat_message_follows_forward_only_too(hook):
    contact = hook.sent_contact()
    message = record_outbound_message(
        contact=contact, instance=hook.instance, text="Olá", provider_message_id=contact.provider_message_id
    )
    receipt(hook, contact, "READ")
    receipt(hook, contact, "DELIVERY_ACK")
    message.refresh_from_db()
    assert message.status == Message.Status.READ and message.read_at and message.delivered_at


def test_a_receipt_that_beats_the_worker_is_applied_when_the_send_is_recorded(hook):
    """The provider may report DELIVERY_ACK before the worker wrote the provider id."""
    contact = hook.sent_contact(provider_message_id="")
    early_id = "3EB0EARLY0000001"
    response = hook.post(envelope(MESSAGES_UPDATE_V2, hook.instance, keyId=early_id, status="DELIVERY_ACK"))
    assert response.json()["outcome"] == "unknown_message"
    BillingContact.objects.filter(pk=contact.pk).update(provider_message_id=early_id)  # record_sent
    record_outbound_message(contact=contact, instance=hook.instance, text="Olá", provider_message_id=early_id)
    contact.refresh_from_db()
    assert contact.status == ContactStatus.DELIVERED
    assert counters(contact)["queue_delivered"] == 1


def test_early_receipts_taken_but_not_applied_go_back_to_redis(hook, monkeypatch):
    """The batch look-up takes every waiting receipt out of Redis at once; when applying one
    fails, that one and the rest are put back for the next look-up instead of being lost."""
    from apps.billing.services import delivery_status

    ids = ["3EB0EARLYBATCH01", "3EB0EARLYBATCH02", "3EB0EARLYBATCH03"]
    contacts = [hook.sent_contact(provider_message_id="") for _ in ids]
    for pmid in ids:
        response = hook.post(envelope(MESSAGES_UPDATE_V2, hook.instance, keyId=pmid, status="DELIVERY_ACK"))
        assert response.json()["outcome"] == "unknown_message"
    for contact, pmid in zip(contacts, ids):
        BillingContact.objects.filter(pk=contact.pk).update(provider_message_id=pmid)  # record_sent
    real_apply, applied = delivery_status._apply_early, []

    def fails_on_the_second(tenant_id, provider_message_id, target):
        if len(applied) == 1:
            raise RuntimeError("database went away")
        applied.append(provider_message_id)
        return real_apply(tenant_id, provider_message_id, target)

    monkeypatch.setattr(delivery_status, "_apply_early", fails_on_the_second)
    with pytest.raises(RuntimeError):
        delivery_status.apply_early_receipts(tenant_id=hook.instance.tenant_id, provider_message_ids=ids)
    monkeypatch.setattr(delivery_status, "_apply_early", real_apply)
    assert delivery_status.apply_early_receipts(tenant_id=hook.instance.tenant_id, provider_message_ids=ids) == 2
    assert (
        sorted(BillingContact.objects.filter(pk__in=[c.pk for c in contacts]).values_list("status", flat=True))
        == [ContactStatus.DELIVERED] * 3
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_receipts_count_once(hook):
    """Eight threads deliver the same receipts at once (separate connections): one wins each
    step, the losers roll back their counter increments."""
    contact = hook.sent_contact()
    tenant_id, message_id = contact.tenant_id, contact.provider_message_id
    statuses = ["DELIVERY_ACK", "READ"] * 4
    random.Random(7).shuffle(statuses)
    barrier = threading.Barrier(len(statuses))
    errors: list[BaseException] = []

    def deliver(status: str) -> None:
        try:
            barrier.wait(timeout=10)
            apply_provider_status(tenant_id=tenant_id, provider_message_id=message_id, provider_status=status)
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=deliver, args=(status,)) for status in statuses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    contact.refresh_from_db()
    assert contact.status == ContactStatus.READ
    assert counters(contact) == {"queue_delivered": 1, "queue_read": 1, "variation_delivered": 1, "variation_read": 1}


def test_a_receipt_is_a_handful_of_statements(hook, django_assert_max_num_queries):
    """Processed synchronously: it must stay small (auth, chat row, contact swap, counters)."""
    contact = hook.sent_contact()
    with django_assert_max_num_queries(12):
        assert receipt(hook, contact, "DELIVERY_ACK").json()["outcome"] == "moved"
