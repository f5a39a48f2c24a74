"""Charge vocabulary, stated once: statuses and the only moves between them, where a status
change came from, why a cadence step was skipped, and the Asaas events we act on.

The charge table is registered with billing's transition machinery (`register_transitions`),
so `Charge.transition_to` checks it and compares-and-swaps like every other status here.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import models

from apps.billing.constants import StatusChoices, register_transitions

CHARGE_KIND = "charge"

#: At most this many charges in one upsert request.
MAX_CHARGES_PER_REQUEST = 10_000
#: Offsets a cadence step may have, in days from the due date.
MIN_OFFSET_DAYS, MAX_OFFSET_DAYS = -60, 365
MAX_STEPS_PER_CADENCE = 20


class ChargeStatus(StatusChoices):
    OPEN = "open", "Open"
    PAID = "paid", "Paid"
    CANCELLED = "cancelled", "Cancelled"
    WRITTEN_OFF = "written_off", "Written off"

    @classmethod
    def _kind(cls) -> str:
        return CHARGE_KIND


_S = ChargeStatus
CHARGE_TRANSITIONS: Mapping[str, frozenset[str]] = {
    _S.OPEN: frozenset({_S.PAID, _S.CANCELLED, _S.WRITTEN_OFF}),
    # A refund, chargeback, undone cash receipt or restored payment opens the debt again.
    _S.PAID: frozenset({_S.OPEN}),
    # A payment always counts, even for a debt given up on.
    _S.CANCELLED: frozenset({_S.OPEN, _S.PAID}),
    _S.WRITTEN_OFF: frozenset({_S.OPEN, _S.PAID}),
}
del _S
register_transitions(CHARGE_KIND, CHARGE_TRANSITIONS)

#: Statuses in which a charge's messages must not go out (invariant 9: paid means silent).
CLOSED_STATUSES = frozenset({ChargeStatus.PAID, ChargeStatus.CANCELLED, ChargeStatus.WRITTEN_OFF})


class ChangeSource(models.TextChoices):
    """Who changed a charge: the client's API, a payment provider, a person, or our own jobs."""

    API = "api", "API"
    ASAAS = "asaas", "Asaas webhook"
    ADMIN = "admin", "Admin"
    IMPORT = "import", "Spreadsheet import"
    SYSTEM = "system", "System (cadence job)"


class ChargeEventKind(models.TextChoices):
    """One line of a charge's timeline that is not a message (messages come from billing)."""

    PAID = "paid", "Paid"
    CANCELLED = "cancelled", "Cancelled"
    WRITTEN_OFF = "written_off", "Written off"
    REOPENED = "reopened", "Reopened"
    ESCALATED = "escalated", "Escalated"
    UPDATED = "updated", "Amount or due date changed"


#: The timeline event a status change writes.
EVENT_FOR_STATUS: dict[str, ChargeEventKind] = {
    ChargeStatus.PAID: ChargeEventKind.PAID,
    ChargeStatus.CANCELLED: ChargeEventKind.CANCELLED,
    ChargeStatus.WRITTEN_OFF: ChargeEventKind.WRITTEN_OFF,
    ChargeStatus.OPEN: ChargeEventKind.REOPENED,
}


class StepRunStatus(models.TextChoices):
    QUEUED = "queued", "Queued (a billing contact carries it)"
    SKIPPED = "skipped", "Skipped"


class SkipReason(models.TextChoices):
    """Why a due step produced no message. Ingest refusals keep ingest's own code instead
    (e.g. `missing_variables`, `no_default_template`, `no_instance`)."""

    OPTED_OUT = "opted_out", "The phone opted out"
    DAILY_CAP = "daily_cap", "The debtor already got today's collection messages"
    SUPERSEDED = "superseded", "A later step of the same charge falls on the same day"
    PAST_DUE = "past_due", "A reminder moved past the due date (non-business days)"
    AFTER_HOURS = "after_hours", "No business hours left today"
    HELD = "held", "The debtor says it is paid (a reply): held for the reply settings' days"


class AsaasOutcome(models.TextChoices):
    """What one Asaas event did (the dedup log keeps it)."""

    APPLIED = "applied", "Applied"
    UNCHANGED = "unchanged", "Already in that state"
    STALE = "stale", "Older than what was applied (out of order)"
    REFUSED = "refused", "Not allowed from the charge's status"


class AsaasAction(models.TextChoices):
    PAY = "pay", "Mark paid"
    CANCEL = "cancel", "Mark cancelled"
    REOPEN = "reopen", "Open again"
    UPDATE = "update", "New amount or due date"


#: Asaas payment events we act on (https://docs.asaas.com/docs/payment-events); every other
#: event is answered 200 and ignored.
ASAAS_EVENT_ACTIONS: Mapping[str, str] = {
    "PAYMENT_RECEIVED": AsaasAction.PAY,
    "PAYMENT_CONFIRMED": AsaasAction.PAY,
    "PAYMENT_RECEIVED_IN_CASH": AsaasAction.PAY,
    "PAYMENT_DELETED": AsaasAction.CANCEL,
    "PAYMENT_REFUNDED": AsaasAction.REOPEN,
    "PAYMENT_CHARGEBACK_REQUESTED": AsaasAction.REOPEN,
    "PAYMENT_RECEIVED_IN_CASH_UNDONE": AsaasAction.REOPEN,
    "PAYMENT_RESTORED": AsaasAction.REOPEN,
    "PAYMENT_UPDATED": AsaasAction.UPDATE,
}
#: Asaas writes its timestamps in Brasília time, without an offset.
ASAAS_TIMEZONE = "America/Sao_Paulo"
