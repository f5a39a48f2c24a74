"""Sets of rows change status through the transition tables too (`transition_rows`), and a
queue goes back to pending one way (`queue_lease.return_to_pending`), whoever sends it back."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.billing.constants import ContactErrorCode, ContactStatus, InvalidTransition, QueueStatus
from apps.billing.models import BillingContact, BillingQueue
from apps.billing.models.status_machine import status_move_sql, transition_rows
from apps.billing.services import queue_lease
from apps.billing.tests.support.builders import build_contact, build_queue

pytestmark = pytest.mark.django_db


def test_a_bulk_move_writes_only_the_rows_whose_status_may_enter_the_target(tenant):
    queue = build_queue(tenant)
    pending = build_contact(queue)
    retry = build_contact(queue, status=ContactStatus.PENDING_RETRY)
    sent = build_contact(queue, status=ContactStatus.SENT)
    moved = transition_rows(
        BillingContact.objects.filter(queue=queue), ContactStatus.CANCELLED, error_code=ContactErrorCode.CANCELLED
    )
    assert moved == 2
    statuses = dict(BillingContact.objects.filter(queue=queue).values_list("pk", "status"))
    assert statuses == {pending.pk: "cancelled", retry.pk: "cancelled", sent.pk: "sent"}


def test_a_bulk_move_refuses_a_source_the_table_does_not_allow(tenant):
    contact = build_contact(build_queue(tenant), status=ContactStatus.SENT)
    with pytest.raises(InvalidTransition):
        transition_rows(
            BillingContact.objects.filter(pk=contact.pk), ContactStatus.PENDING, from_statuses=[ContactStatus.SENT]
        )
    contact.refresh_from_db()
    assert contact.status == ContactStatus.SENT


def test_hand_written_sql_moves_are_checked_against_the_table_too():
    assert status_move_sql("contact", ContactStatus.SENT, from_statuses=[ContactStatus.SENDING], alias="c") == (
        "status = 'sent'",
        "c.status IN ('sending')",
    )
    with pytest.raises(InvalidTransition):
        status_move_sql("queue", QueueStatus.RUNNING, from_statuses=[QueueStatus.COMPLETED])


@pytest.mark.parametrize("source", [QueueStatus.PAUSED_BUSINESS_HOURS, QueueStatus.INSTANCE_DOWN])
def test_back_to_pending_clears_the_holder_the_pause_and_the_last_publish(tenant, source):
    later = timezone.now() + timedelta(hours=1)
    queue = build_queue(
        tenant,
        status=source,
        pause_reason="outside business hours",
        next_resume_at=later,
        last_published_at=timezone.now(),
    )
    assert queue_lease.return_to_pending(BillingQueue.objects.filter(pk=queue.pk), from_statuses=[source]) == 1
    queue.refresh_from_db()
    assert (queue.status, queue.pause_reason, queue.next_resume_at, queue.last_published_at) == (
        QueueStatus.PENDING,
        "",
        None,
        None,
    )


def test_a_queue_that_moved_meanwhile_is_not_sent_back(tenant):
    queue = build_queue(tenant, status=QueueStatus.CANCELLED)
    moved = queue_lease.return_to_pending(
        BillingQueue.objects.filter(pk=queue.pk), from_statuses=[QueueStatus.INSTANCE_DOWN]
    )
    assert moved == 0
    queue.refresh_from_db()
    assert queue.status == QueueStatus.CANCELLED


def test_a_held_queue_goes_back_to_pending_through_hand_back_only(tenant):
    queue = build_queue(tenant)
    lease = queue_lease.claim_queue(queue.pk, "worker:1")
    assert lease is not None
    with pytest.raises(ValueError):
        queue_lease.release(lease, QueueStatus.PENDING)
    due = timezone.now() + timedelta(minutes=5)
    assert queue_lease.hand_back(lease, due_at=due)
    queue.refresh_from_db()
    assert (queue.status, queue.lease_token, queue.processing_by, queue.next_resume_at) == (
        QueueStatus.PENDING,
        None,
        "",
        due,
    )
    assert not queue_lease.hand_back(queue_lease.Lease(queue.pk, uuid.uuid4(), "worker:2")), "no lease, no move"
