"""Every (from, to) pair of queue and contact statuses goes through `transition_to`:
the legal ones are written, every illegal one raises and leaves the row untouched."""

from __future__ import annotations

import itertools

import pytest

from apps.billing.constants import (
    CONTACT_TRANSITIONS,
    QUEUE_TRANSITIONS,
    ContactErrorCode,
    ContactStatus,
    InvalidTransition,
    QueueStatus,
)
from apps.billing.models import BillingContact, BillingQueue
from apps.billing.tests.support.builders import build_contact, build_queue

QUEUE_PAIRS = list(itertools.product(QueueStatus.values, repeat=2))
CONTACT_PAIRS = list(itertools.product(ContactStatus.values, repeat=2))
LEGAL_QUEUE = [(s, t) for s, t in QUEUE_PAIRS if t in QUEUE_TRANSITIONS[s]]
ILLEGAL_QUEUE = [(s, t) for s, t in QUEUE_PAIRS if t not in QUEUE_TRANSITIONS[s]]
LEGAL_CONTACT = [(s, t) for s, t in CONTACT_PAIRS if t in CONTACT_TRANSITIONS[s]]
ILLEGAL_CONTACT = [(s, t) for s, t in CONTACT_PAIRS if t not in CONTACT_TRANSITIONS[s]]


def _ids(pairs):
    return [f"{s}->{t}" for s, t in pairs]


def test_the_tables_split_every_pair():
    assert len(LEGAL_QUEUE) == 17 and len(ILLEGAL_QUEUE) == 49 - 17
    # 20: pending → pending_retry is a hold (services/debtor_holds.py); sending → unconfirmed and
    # unconfirmed → sent | pending_retry | failed | cancelled are reconciliation's.
    assert len(LEGAL_CONTACT) == 20 and len(ILLEGAL_CONTACT) == 100 - 20


@pytest.mark.django_db
@pytest.mark.parametrize(("source", "target"), LEGAL_QUEUE, ids=_ids(LEGAL_QUEUE))
def test_queue_allows_legal_transition(tenant, source, target):
    queue = build_queue(tenant, status=source)
    queue.transition_to(target)
    assert BillingQueue.objects.get(pk=queue.pk).status == target


@pytest.mark.django_db
@pytest.mark.parametrize(("source", "target"), ILLEGAL_QUEUE, ids=_ids(ILLEGAL_QUEUE))
def test_queue_refuses_illegal_transition(tenant, source, target):
    queue = build_queue(tenant, status=source)
    with pytest.raises(InvalidTransition) as exc:
        queue.transition_to(target)
    assert (exc.value.from_status, exc.value.to_status) == (source, target)
    assert exc.value.code in {"invalid_transition", "already_final"}
    assert queue.status == source
    assert BillingQueue.objects.get(pk=queue.pk).status == source


@pytest.mark.django_db
@pytest.mark.parametrize(("source", "target"), LEGAL_CONTACT, ids=_ids(LEGAL_CONTACT))
def test_contact_allows_legal_transition(queue, source, target):
    contact = build_contact(queue, status=source)
    contact.transition_to(target)
    assert BillingContact.objects.get(pk=contact.pk).status == target


@pytest.mark.django_db
@pytest.mark.parametrize(("source", "target"), ILLEGAL_CONTACT, ids=_ids(ILLEGAL_CONTACT))
def test_contact_refuses_illegal_transition(queue, source, target):
    contact = build_contact(queue, status=source)
    with pytest.raises(InvalidTransition) as exc:
        contact.transition_to(target)
    assert (exc.value.kind, exc.value.from_status, exc.value.to_status) == ("contact", source, target)
    assert BillingContact.objects.get(pk=contact.pk).status == source


@pytest.mark.django_db
def test_a_transition_from_a_stale_status_is_refused_as_concurrent_change(tenant):
    queue = build_queue(tenant, status=QueueStatus.RUNNING)
    other_view = BillingQueue.objects.get(pk=queue.pk)
    other_view.transition_to(QueueStatus.COMPLETED)
    with pytest.raises(InvalidTransition) as exc:
        queue.transition_to(QueueStatus.PAUSED)  # legal from running, but the row is completed now
    assert exc.value.code == "concurrent_change"
    assert BillingQueue.objects.get(pk=queue.pk).status == QueueStatus.COMPLETED


@pytest.mark.django_db
def test_queue_transitions_stamp_times_and_release_ownership(tenant):
    queue = build_queue(tenant)
    queue.transition_to(QueueStatus.RUNNING, processing_by="worker-1")
    assert queue.started_at is not None and queue.processing_by == "worker-1"
    queue.transition_to(QueueStatus.PAUSED_BUSINESS_HOURS, pause_reason="business_hours")
    stored = BillingQueue.objects.get(pk=queue.pk)
    assert (stored.processing_by, stored.lease_token, stored.pause_reason) == ("", None, "business_hours")
    queue.transition_to(QueueStatus.PENDING)
    queue.transition_to(QueueStatus.RUNNING)
    queue.transition_to(QueueStatus.COMPLETED)
    stored = BillingQueue.objects.get(pk=queue.pk)
    assert stored.completed_at is not None and stored.pause_reason == ""


@pytest.mark.django_db
def test_contact_transitions_stamp_receipts_and_keep_errors_short(queue):
    contact = build_contact(queue)
    contact.transition_to(ContactStatus.SENDING)
    contact.transition_to(ContactStatus.SENT, provider_message_id="ABC")
    contact.transition_to(ContactStatus.READ)  # read without a delivered receipt implies delivered
    stored = BillingContact.objects.get(pk=contact.pk)
    assert stored.sent_at and stored.delivered_at and stored.read_at and stored.provider_message_id == "ABC"

    failing = build_contact(queue)
    failing.transition_to(ContactStatus.FAILED, error_code=ContactErrorCode.INVALID_NUMBER, last_error="x" * 900)
    stored = BillingContact.objects.get(pk=failing.pk)
    assert stored.error_code == "invalid_number" and len(stored.last_error) == 500
