"""Asaas payment webhooks: who is calling, what the event says, and applying it to a charge.

Asaas signs nothing: the URL names the tenant (`asaas_url_token`) and the `asaas-access-token`
header carries the token chosen at set-up, compared in constant time with the stored hash.
Asaas delivers at least once and pauses a webhook queue after 15 failed answers in a row, so:

* every authenticated, well-formed event is answered 200 — an unknown charge or an event we
  do not act on too (logged and counted, nothing changed);
* events are de-duplicated by their `id` (AsaasEvent, unique per tenant);
* out-of-order delivery cannot undo a newer state: an event whose `dateCreated` is older than
  the charge's newest applied fact (`Charge.last_event_at`) is recorded as `stale` and ignored.
  Every event carries the whole payment, so the newest event is the whole truth.

The charge is found by `payment.externalReference` (our `external_id`) or by the Asaas payment
id stored on it (learnt from the first event that named it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeGuard
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction

from apps.billing.services.contact_validation import parse_amount
from apps.charges.constants import (
    ASAAS_EVENT_ACTIONS,
    ASAAS_TIMEZONE,
    AsaasAction,
    AsaasOutcome,
    ChangeSource,
    ChargeStatus,
)
from apps.charges.metrics import observe_asaas_event
from apps.charges.models import AsaasEvent, Charge, ChargeSettings
from apps.charges.services.charge_changes import record_amount_or_due_change
from apps.charges.services.charge_status import change_locked_charge_status
from apps.common.exceptions import ApplicationError
from apps.tenancy.models import Tenant

logger = logging.getLogger(__name__)

_TARGETS: dict[str, ChargeStatus] = {
    AsaasAction.PAY: ChargeStatus.PAID,
    AsaasAction.CANCEL: ChargeStatus.CANCELLED,
    AsaasAction.REOPEN: ChargeStatus.OPEN,
}


class AsaasAuthError(Exception):
    """Unknown URL token or wrong `asaas-access-token`: 401, nothing written."""


class MalformedAsaasEvent(Exception):
    """Not an Asaas payment event: 400, nothing written."""


@dataclass(frozen=True)
class AsaasNotification:
    event_id: str
    event: str
    occurred_at: datetime
    payment_id: str
    external_reference: str
    value: Decimal | None
    due_date: date | None


def authenticate(*, url_token: str, access_token: str | None) -> Tenant:
    if not url_token or len(url_token) > 64:
        raise AsaasAuthError("malformed url token")
    settings = ChargeSettings.objects.select_related("tenant").filter(asaas_url_token=url_token).first()
    if settings is None or not settings.asaas_token_matches(access_token) or not settings.tenant.is_active:
        raise AsaasAuthError("unknown or wrong token")
    return settings.tenant


def parse_notification(payload: Any) -> AsaasNotification:
    """The fields we use, checked; raise MalformedAsaasEvent for anything else."""
    if not isinstance(payload, dict):
        raise MalformedAsaasEvent("the body must be a JSON object")
    event_id, event, payment = payload.get("id"), payload.get("event"), payload.get("payment")
    if not _text(event_id, 200) or not _text(event, 60) or not isinstance(payment, dict):
        raise MalformedAsaasEvent("an Asaas event needs `id`, `event` and a `payment` object")
    payment_id = payment.get("id")
    if not _text(payment_id, 100):
        raise MalformedAsaasEvent("payment.id is missing")
    reference = payment.get("externalReference")
    if reference not in (None, "") and not _text(reference, 200):
        raise MalformedAsaasEvent("payment.externalReference must be a string")
    occurred_at = _asaas_datetime(payload.get("dateCreated"))
    value = parse_amount(payment["value"]) if payment.get("value") is not None else None
    if payment.get("value") is not None and value is None:
        raise MalformedAsaasEvent("payment.value is not an amount")
    due = None
    if payment.get("dueDate") is not None:
        try:
            due = date.fromisoformat(str(payment["dueDate"]))
        except ValueError:
            raise MalformedAsaasEvent("payment.dueDate is not a date") from None
    return AsaasNotification(
        event_id=event_id,
        event=event,
        occurred_at=occurred_at,
        payment_id=payment_id,
        external_reference=reference or "",
        value=value,
        due_date=due,
    )


def _text(value: Any, limit: int) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= limit and not any(ord(ch) < 32 for ch in value)


def _asaas_datetime(value: Any) -> datetime:
    """`dateCreated` is "YYYY-MM-DD HH:MM:SS" in Brasília time (an offset is honoured if sent)."""
    if not isinstance(value, str):
        raise MalformedAsaasEvent("dateCreated is missing")
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError:
        raise MalformedAsaasEvent("dateCreated is not a date and time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo(ASAAS_TIMEZONE))


def handle_notification(*, tenant: Tenant, notification: AsaasNotification) -> str:
    """Apply one event; the outcome names what happened (for the answer, logs and metrics)."""
    action = ASAAS_EVENT_ACTIONS.get(notification.event)
    context = {"tenant_id": str(tenant.pk), "event": notification.event, "event_id": notification.event_id}
    if action is None:
        observe_asaas_event("ignored")
        return "ignored"
    try:
        with transaction.atomic():
            charge = _find_charge(tenant, notification)
            if charge is None:
                logger.info("asaas event for an unknown charge", extra=context)
                observe_asaas_event("unknown_charge")
                return "unknown_charge"
            event = AsaasEvent.objects.create(
                tenant=tenant,
                event_id=notification.event_id,
                event=notification.event,
                payment_id=notification.payment_id,
                charge=charge,
                occurred_at=notification.occurred_at,
                outcome=AsaasOutcome.APPLIED,
            )
            outcome = _apply(charge, action, notification)
            if outcome != AsaasOutcome.APPLIED:
                AsaasEvent.objects.filter(pk=event.pk).update(outcome=outcome)
    except IntegrityError:  # the same event id, already processed
        observe_asaas_event("duplicate")
        return "duplicate"
    logger.info("asaas event processed", extra={**context, "charge_id": charge.pk, "outcome": str(outcome)})
    observe_asaas_event(str(outcome))
    return str(outcome)


def _find_charge(tenant: Tenant, notification: AsaasNotification) -> Charge | None:
    charges = Charge.objects.select_for_update().select_related("tenant").filter(tenant=tenant)
    charge = None
    if notification.external_reference:
        charge = charges.filter(external_id=notification.external_reference).first()
    if charge is None:
        charge = charges.filter(asaas_payment_id=notification.payment_id).first()
    return charge


def _apply(charge: Charge, action: str, notification: AsaasNotification) -> str:
    if charge.last_event_at is not None and notification.occurred_at < charge.last_event_at:
        return AsaasOutcome.STALE
    learnt = {} if charge.asaas_payment_id else {"asaas_payment_id": notification.payment_id}
    if action == AsaasAction.UPDATE:
        changed = record_amount_or_due_change(
            charge=charge,
            amount=notification.value,
            due_date=notification.due_date,
            source=ChangeSource.ASAAS,
            occurred_at=notification.occurred_at,
            **learnt,
        )
        return AsaasOutcome.APPLIED if changed else AsaasOutcome.UNCHANGED
    target = _TARGETS[action]
    try:
        change = change_locked_charge_status(
            locked=charge,
            target=target,
            source=ChangeSource.ASAAS,
            occurred_at=notification.occurred_at,
            paid_amount=notification.value if target == ChargeStatus.PAID else None,
            reference=notification.payment_id,
            reason=notification.event,
            **learnt,
        )
    except ApplicationError:
        return AsaasOutcome.REFUSED
    if not change.changed:
        Charge.objects.filter(pk=charge.pk).update(last_event_at=notification.occurred_at, **learnt)
        return AsaasOutcome.UNCHANGED
    return AsaasOutcome.APPLIED
