"""Billing vocabulary, stated once: template types and their priorities, rotation strategies,
queue and contact statuses with the only transitions allowed between them, and error codes.

Every other module (models, worker, API, periodic tasks) asks these tables instead of
re-listing statuses, so a rule changes in one place. Bulk updates put the allowed *source*
statuses in their WHERE clause (`QueueStatus.sources_for(target)`), which makes an illegal
transition a no-op under concurrency instead of a silent overwrite.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from django.db import models

#: A template may rotate among at most this many *active* variations (anti-blocking).
MAX_ACTIVE_VARIATIONS = 5

#: Raw API keys look like `bk_live_<public id>_<secret>`.
API_KEY_PREFIX = "bk_live_"


class TemplateType(models.TextChoices):
    OVERDUE = "overdue", "Overdue (cobrança atrasada)"
    UPCOMING = "upcoming", "Upcoming (a vencer)"
    NOTIFICATION = "notification", "Notification (aviso)"

    #: RabbitMQ message priority per type (x-max-priority is 10).
    PRIORITY = enum.nonmember({"overdue": 10, "upcoming": 5, "notification": 1})

    @property
    def priority(self) -> int:
        return TemplateType.PRIORITY[self.value]

    @classmethod
    def priority_of(cls, template_type: str) -> int:
        return cls.PRIORITY[str(template_type)]


class RotationStrategy(models.TextChoices):
    RANDOM = "random", "Random (uniform)"
    SEQUENTIAL = "sequential", "Sequential (round-robin)"
    WEIGHTED = "weighted", "Weighted (by weight)"


class TransitionKind(models.TextChoices):
    QUEUE = "queue", "Queue"
    CONTACT = "contact", "Contact"


class _StatusChoices(models.TextChoices):
    """Adds transition look-ups to a status enum; the tables themselves live below."""

    @classmethod
    def _kind(cls) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def allowed_targets(cls, source: str) -> frozenset[str]:
        """Statuses reachable in one step from `source`."""
        return _TABLES[cls._kind()][str(source)]

    @classmethod
    def sources_for(cls, target: str) -> frozenset[str]:
        """Statuses from which `target` may be entered: the WHERE clause of a bulk update."""
        return status_sources(cls._kind(), target)

    @classmethod
    def can_transition(cls, source: str, target: str) -> bool:
        return str(target) in cls.allowed_targets(source)


class QueueStatus(_StatusChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    PAUSED_BUSINESS_HOURS = "paused_business_hours", "Paused (outside business hours)"
    INSTANCE_DOWN = "instance_down", "Instance down"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"

    @classmethod
    def _kind(cls) -> str:
        return TransitionKind.QUEUE


class ContactStatus(_StatusChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    READ = "read", "Read"
    PENDING_RETRY = "pending_retry", "Pending retry"
    UNCONFIRMED = "unconfirmed", "Unconfirmed (being reconciled with the provider)"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    SKIPPED = "skipped", "Skipped"

    @classmethod
    def _kind(cls) -> str:
        return TransitionKind.CONTACT


class ContactErrorCode(models.TextChoices):
    """Machine-readable reason stored on a contact (`BillingContact.error_code`)."""

    INVALID_NUMBER = "invalid_number", "Invalid number"
    OUTCOME_UNKNOWN = "outcome_unknown", "Outcome unknown (provider may have sent it)"
    INTERRUPTED = "interrupted", "Interrupted"
    MAX_ATTEMPTS = "max_attempts", "Max attempts reached"
    PROVIDER_ERROR = "provider_error", "The provider kept failing while it reported the number connected"
    PROVIDER_AUTH = "provider_auth", "Provider rejected our credentials"
    RATE_LIMITED = "rate_limited", "Rate limited by the provider"
    RENDER_ERROR = "render_error", "Template could not be rendered"
    OPTED_OUT = "opted_out", "Opted out"
    DUPLICATE = "duplicate", "Duplicate"
    CANCELLED = "cancelled", "Cancelled"
    #: Skipped because the debt it collects was paid, cancelled, written off or escalated (apps.charges).
    CHARGE_CLOSED = "charge_closed", "Charge closed (paid, cancelled, written off, escalated)"
    #: Skipped because the debt's amount or due date changed after the message was queued.
    CHARGE_CHANGED = "charge_changed", "Charge changed (amount or due date)"


_Q = QueueStatus
QUEUE_TRANSITIONS: Mapping[str, frozenset[str]] = {
    _Q.PENDING: frozenset({_Q.RUNNING, _Q.PAUSED, _Q.CANCELLED}),
    # running → pending: released by the stale check, a worker shutdown or the end of a time slice.
    _Q.RUNNING: frozenset(
        {_Q.COMPLETED, _Q.PAUSED, _Q.PAUSED_BUSINESS_HOURS, _Q.INSTANCE_DOWN, _Q.PENDING, _Q.CANCELLED}
    ),
    _Q.PAUSED: frozenset({_Q.PENDING, _Q.CANCELLED}),  # resume goes back through pending
    _Q.PAUSED_BUSINESS_HOURS: frozenset({_Q.PENDING, _Q.PAUSED, _Q.CANCELLED}),
    _Q.INSTANCE_DOWN: frozenset({_Q.PENDING, _Q.PAUSED, _Q.CANCELLED}),
    _Q.COMPLETED: frozenset(),
    _Q.CANCELLED: frozenset(),
}

_C = ContactStatus
CONTACT_TRANSITIONS: Mapping[str, frozenset[str]] = {
    # pending → pending_retry: a hold (services/debtor_holds.py) postpones a contact not yet sent.
    _C.PENDING: frozenset({_C.SENDING, _C.PENDING_RETRY, _C.FAILED, _C.CANCELLED, _C.SKIPPED}),
    _C.SENDING: frozenset({_C.SENT, _C.PENDING_RETRY, _C.FAILED, _C.UNCONFIRMED}),
    _C.PENDING_RETRY: frozenset({_C.SENDING, _C.FAILED, _C.CANCELLED, _C.SKIPPED}),
    # The provider may have it (a crash after the call started, an answer that may mean "sent"):
    # reconciliation decides — found → sent, provably never received → retried (or cancelled,
    # if the queue was), still unknown when the window closes → failed/outcome_unknown.
    _C.UNCONFIRMED: frozenset({_C.SENT, _C.PENDING_RETRY, _C.FAILED, _C.CANCELLED}),
    _C.SENT: frozenset({_C.DELIVERED, _C.READ}),
    _C.DELIVERED: frozenset({_C.READ}),
    _C.READ: frozenset(),
    _C.FAILED: frozenset(),
    _C.CANCELLED: frozenset(),
    _C.SKIPPED: frozenset(),
}

#: A queue in one of these never runs again.
FINAL_QUEUE_STATUSES = frozenset({_Q.COMPLETED, _Q.CANCELLED})
#: Queue statuses that still have work ahead of them.
OPEN_QUEUE_STATUSES = frozenset(set(QueueStatus.values) - FINAL_QUEUE_STATUSES)
#: A contact in one of these is done: it will never be handed to the provider again.
TERMINAL_CONTACT_STATUSES = frozenset({_C.SENT, _C.DELIVERED, _C.READ, _C.FAILED, _C.CANCELLED, _C.SKIPPED})
#: Contacts still waiting for a send attempt.
UNSENT_CONTACT_STATUSES = frozenset({_C.PENDING, _C.PENDING_RETRY})
#: Contacts not yet in a terminal state: a queue never completes around one of them.
UNFINISHED_CONTACT_STATUSES = frozenset({_C.PENDING, _C.PENDING_RETRY, _C.SENDING, _C.UNCONFIRMED})
#: Contacts the provider accepted (delivered and read are subsets of sent).
SENT_CONTACT_STATUSES = frozenset({_C.SENT, _C.DELIVERED, _C.READ})

del _Q, _C


def _invert(table: Mapping[str, Iterable[str]], statuses: Iterable[str]) -> dict[str, frozenset[str]]:
    sources: dict[str, set[str]] = {status: set() for status in statuses}
    for source, targets in table.items():
        for target in targets:
            sources[target].add(source)
    return {target: frozenset(found) for target, found in sources.items()}


_TABLES: dict[str, Mapping[str, frozenset[str]]] = {
    TransitionKind.QUEUE: QUEUE_TRANSITIONS,
    TransitionKind.CONTACT: CONTACT_TRANSITIONS,
}
_SOURCES: dict[str, dict[str, frozenset[str]]] = {
    TransitionKind.QUEUE: _invert(QUEUE_TRANSITIONS, QueueStatus.values),
    TransitionKind.CONTACT: _invert(CONTACT_TRANSITIONS, ContactStatus.values),
}


class InvalidTransition(Exception):
    """A status change the tables above do not allow.

    `code` is machine-readable: `invalid_transition` (the step is not in the table),
    `already_final` (the row is in a status with no way out) or `concurrent_change` (the row
    changed in the database since it was read, so the step was not applied).
    """

    def __init__(self, kind: str, from_status: str, to_status: str, code: str = "invalid_transition") -> None:
        self.kind = str(kind)
        self.from_status = str(from_status)
        self.to_status = str(to_status)
        self.code = code
        super().__init__(f"{self.kind} status cannot go from {self.from_status!r} to {self.to_status!r} ({code})")


#: The base of every status enum with a transition table (`sources_for`, `can_transition`).
StatusChoices = _StatusChoices


def register_transitions(kind: str, table: Mapping[str, frozenset[str]]) -> None:
    """Put an app's own status table under the same checks (`check_transition`,
    `StatusMachineMixin`, `StatusChoices` look-ups), so apps above billing (charges) change
    statuses the same way without billing knowing their statuses. Registering a kind twice
    with the same table is a no-op (module reloads); another table is an error."""
    kind = str(kind)
    if kind in _TABLES:
        if _TABLES[kind] != table:
            raise ValueError(f"transition kind {kind!r} is already registered")
        return
    _TABLES[kind] = table
    _SOURCES[kind] = _invert(table, table.keys())


def status_sources(kind: str, target: str) -> frozenset[str]:
    """Statuses from which `target` may be entered, for the table of `kind`."""
    return _SOURCES[str(kind)][str(target)]


def check_transition(kind: str, from_status: str, to_status: str) -> None:
    """Raise `InvalidTransition` unless `from_status → to_status` is allowed for `kind`."""
    try:
        table = _TABLES[str(kind)]
    except KeyError:
        raise ValueError(f"Unknown transition kind {kind!r}") from None
    if str(from_status) not in table or str(to_status) not in table:
        raise InvalidTransition(kind, from_status, to_status, code="unknown_status")
    targets = table[str(from_status)]
    if not targets:
        raise InvalidTransition(kind, from_status, to_status, code="already_final")
    if str(to_status) not in targets:
        raise InvalidTransition(kind, from_status, to_status)
