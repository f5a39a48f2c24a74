"""The status tables: one source of truth, and helpers derived from it."""

from __future__ import annotations

import pytest

from apps.billing.constants import (
    CONTACT_TRANSITIONS,
    FINAL_QUEUE_STATUSES,
    QUEUE_TRANSITIONS,
    TERMINAL_CONTACT_STATUSES,
    UNSENT_CONTACT_STATUSES,
    ContactStatus,
    InvalidTransition,
    QueueStatus,
    TemplateType,
    TransitionKind,
    check_transition,
)


def test_every_status_has_a_row_in_its_table():
    assert set(QUEUE_TRANSITIONS) == set(QueueStatus.values)
    assert set(CONTACT_TRANSITIONS) == set(ContactStatus.values)


def test_final_and_terminal_statuses_have_no_way_out_except_sent_receipts():
    assert all(not QUEUE_TRANSITIONS[s] for s in FINAL_QUEUE_STATUSES)
    for status in TERMINAL_CONTACT_STATUSES - {ContactStatus.SENT, ContactStatus.DELIVERED}:
        assert not CONTACT_TRANSITIONS[status]
    # sent/delivered only move forward through delivery receipts
    assert CONTACT_TRANSITIONS[ContactStatus.SENT] == {ContactStatus.DELIVERED, ContactStatus.READ}
    assert UNSENT_CONTACT_STATUSES.isdisjoint(TERMINAL_CONTACT_STATUSES)


def test_sources_for_is_the_inverse_of_the_table():
    assert QueueStatus.sources_for(QueueStatus.CANCELLED) == {
        QueueStatus.PENDING,
        QueueStatus.RUNNING,
        QueueStatus.PAUSED,
        QueueStatus.PAUSED_BUSINESS_HOURS,
        QueueStatus.INSTANCE_DOWN,
    }
    assert QueueStatus.sources_for(QueueStatus.RUNNING) == {QueueStatus.PENDING}
    assert ContactStatus.sources_for(ContactStatus.SENDING) == {ContactStatus.PENDING, ContactStatus.PENDING_RETRY}
    assert ContactStatus.sources_for(ContactStatus.PENDING) == frozenset()
    for target in ContactStatus.values:
        for source in ContactStatus.sources_for(target):
            assert ContactStatus.can_transition(source, target)


def test_check_transition_codes():
    check_transition(TransitionKind.QUEUE, "pending", "running")
    with pytest.raises(InvalidTransition) as exc:
        check_transition(TransitionKind.QUEUE, "pending", "completed")
    assert (exc.value.kind, exc.value.from_status, exc.value.to_status, exc.value.code) == (
        "queue",
        "pending",
        "completed",
        "invalid_transition",
    )
    with pytest.raises(InvalidTransition) as exc:
        check_transition(TransitionKind.CONTACT, "read", "sent")
    assert exc.value.code == "already_final"
    with pytest.raises(InvalidTransition) as exc:
        check_transition(TransitionKind.CONTACT, "pending", "teleported")
    assert exc.value.code == "unknown_status"
    with pytest.raises(ValueError):
        check_transition("nope", "pending", "running")


def test_priorities_by_type():
    assert TemplateType.priority_of("overdue") == 10
    assert TemplateType.UPCOMING.priority == 5
    assert TemplateType.PRIORITY["notification"] == 1
    assert TemplateType.values == ["overdue", "upcoming", "notification"]
