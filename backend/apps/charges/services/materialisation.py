"""Turn today's due cadence steps into ordinary billing queues, through billing's ingest service.

Run every few minutes (`run_charges_periodic`); each run, per tenant:

1. finds open, unescalated charges with a step due today (tenant calendar, see
   cadence_calendar) that has no step run yet — one query per cadence step;
2. decides, in memory, which of them must not be sent and why: a later step of the same charge
   falls on the same day (`superseded`), a reminder moved past its due date (`past_due`), no
   business hours left today (`after_hours`), the phone opted out (`opted_out`), the debtor said
   "já paguei" within the hold of the reply settings (`held`, as its queued messages are), the debtor
   already got `debtor_daily_cap` collection messages today across all charges (`daily_cap`);
3. queues the rest through `BillingCampaignService.ingest`, one queue per step and day (split
   further only where ingest must: more contacts than the tenant's per-request limit, or one
   debtor phone twice in a step when the cap allows more than one message a day), so
   variations, business hours, pace, receipts, callbacks and progress work unchanged.

Idempotent: a step run is unique per (charge, cadence, offset, due date), written in the same
transaction as the queue it fills, under a per-tenant advisory lock; a second run finds
nothing new. The charges being queued are locked (FOR NO KEY UPDATE) and re-checked, so a
payment committed meanwhile either waits for the queue to commit (and then silences it) or
keeps its charge out of it.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from apps.billing.constants import ContactStatus, TemplateType
from apps.billing.models import BillingConfig, BillingContact
from apps.billing.services.billing_campaign_service import BillingCampaignService
from apps.billing.services.copy_rows import copy_insert
from apps.billing.services.debtor_holds import held_phones
from apps.billing.services.opt_out import suppressed_phones
from apps.charges.constants import ChargeStatus, SkipReason, StepRunStatus
from apps.charges.metrics import observe_steps
from apps.charges.models import CadenceStep, Charge, ChargeSettings, ChargeStepRun
from apps.charges.services.cadence_calendar import TenantCalendar
from apps.charges.services.charge_callbacks import on_steps_skipped
from apps.common.exceptions import ApplicationError
from apps.tenancy.models import Tenant

logger = logging.getLogger(__name__)

_CHARGE_FIELDS = (
    "id",
    "external_id",
    "phone",
    "name",
    "debtor_key",
    "amount",
    "due_date",
    "variables",
    "description",
    "payment_link",
    "pix_code",
    "boleto_line",
)
_PAYMENT_VARIABLES = ("description", "payment_link", "pix_code", "boleto_line")
_NEVER_SENT = (ContactStatus.SKIPPED, ContactStatus.CANCELLED)


@dataclass
class Due:
    """One step of one charge, due today."""

    step: CadenceStep
    charge: dict[str, Any]

    @property
    def template_type(self) -> str:
        return self.step.template_type


@dataclass
class MaterialiseResult:
    queued: int = 0
    skipped: Counter = field(default_factory=Counter)
    queues: list[str] = field(default_factory=list)
    locked_out: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"queued": self.queued, "skipped": dict(self.skipped), "queues": len(self.queues)}


def materialise_due_steps(*, tenant: Tenant, now: datetime | None = None) -> MaterialiseResult:
    """Queue (or skip, with a reason) every step of `tenant` due today that has no run yet."""
    now = now or timezone.now()
    result = MaterialiseResult()
    steps = list(CadenceStep.objects.filter(cadence__tenant=tenant).select_related("cadence").order_by("id"))
    if not steps:
        return result
    with _tenant_lock(tenant) as acquired:
        if not acquired:
            result.locked_out = True
            return result
        _Run(tenant=tenant, now=now, steps=steps, result=result).run()
    observe_steps(queued=result.queued, skipped=result.skipped)
    if result.queued or result.skipped:
        logger.info("charge steps materialised", extra={"tenant_id": str(tenant.pk), **result.as_dict()})
    return result


def tenant_lock_key(tenant: Tenant) -> int:
    digest = hashlib.sha256(f"charges.materialise:{tenant.pk}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def _tenant_lock(tenant: Tenant) -> Iterator[bool]:
    """A session advisory lock per tenant: two job processes never materialise one tenant at once."""
    key = tenant_lock_key(tenant)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


class _Run:
    def __init__(self, *, tenant: Tenant, now: datetime, steps: list[CadenceStep], result: MaterialiseResult) -> None:
        self.tenant = tenant
        self.now = now
        self.steps = steps
        self.result = result
        self.config = BillingConfig.for_tenant(tenant)
        self.settings = ChargeSettings.for_tenant(tenant)
        self.calendar = TenantCalendar(tenant=tenant, now=now, config=self.config)
        self.today = self.calendar.today
        self.skips: list[tuple[Due, str]] = []

    def run(self) -> None:
        due = self._find_due()
        if not due:
            return
        sendable = self._filter(due)
        self._record_skips()
        groups: dict[int, list[Due]] = defaultdict(list)
        for item in sendable:
            groups[item.step.pk].append(item)
        for items in groups.values():
            for chunk in self._chunks(items):
                self._queue(chunk)

    # ------------------------------------------------------------------ 1. what is due
    def _find_due(self) -> list[Due]:
        default_id = self.settings.default_cadence_id
        found: list[Due] = []
        for step in self.steps:
            nominal = self.calendar.nominal_dates_due_today(step.template_type)
            if not nominal:
                continue
            due_dates = [day - timedelta(days=step.offset_days) for day in nominal]
            on_cadence = Q(cadence_id=step.cadence_id)
            if step.cadence_id == default_id:
                on_cadence |= Q(cadence__isnull=True)
            has_run = ChargeStepRun.objects.filter(
                charge=OuterRef("pk"),
                cadence_id=step.cadence_id,
                offset_days=step.offset_days,
                due_date=OuterRef("due_date"),
            )
            rows = (
                Charge.objects.filter(
                    on_cadence,
                    tenant=self.tenant,
                    status=ChargeStatus.OPEN,
                    escalated_at__isnull=True,
                    due_date__in=due_dates,
                )
                .filter(~Exists(has_run))
                .values(*_CHARGE_FIELDS)
            )
            found += [Due(step, row) for row in rows]
        return found

    # ------------------------------------------------------------------ 2. what must not go out
    def _filter(self, due: list[Due]) -> list[Due]:
        # The latest step of a charge wins a day several of its steps fall on (closed days).
        latest: dict[int, Due] = {}
        for item in due:
            current = latest.get(item.charge["id"])
            if current is None or item.step.offset_days > current.step.offset_days:
                if current is not None:
                    self._skip(current, SkipReason.SUPERSEDED)
                latest[item.charge["id"]] = item
            else:
                self._skip(item, SkipReason.SUPERSEDED)
        remaining = []
        for item in latest.values():
            if item.template_type == TemplateType.UPCOMING and item.charge["due_date"] < self.today:
                self._skip(item, SkipReason.PAST_DUE)
            elif not self.calendar.opening_left_today(item.template_type):
                self._skip(item, SkipReason.AFTER_HOURS)
            else:
                remaining.append(item)
        phones = [item.charge["phone"] for item in remaining]
        opted_out = suppressed_phones(tenant=self.tenant, phones=phones)
        held = held_phones(tenant=self.tenant, phones=phones, now=self.now)
        allowed = []
        for item in remaining:
            if item.charge["phone"] in opted_out:
                self._skip(item, SkipReason.OPTED_OUT)
            elif item.charge["phone"] in held:
                self._skip(item, SkipReason.HELD)
            else:
                allowed.append(item)
        return self._apply_daily_cap(allowed)

    def _apply_daily_cap(self, items: list[Due]) -> list[Due]:
        """At most `debtor_daily_cap` messages a day per debtor and per phone, across charges
        and cadences (CDC art. 42); the oldest debts go first. A message skipped or cancelled
        before it went out (the charge was paid or changed) does not count."""
        cap = self.settings.debtor_daily_cap
        sent_today = ChargeStepRun.objects.filter(
            tenant=self.tenant, scheduled_date=self.today, status=StepRunStatus.QUEUED
        ).exclude(billing_contact__status__in=_NEVER_SENT)
        by_debtor: Counter = Counter()
        by_phone: Counter = Counter()
        for debtor_key, phone in sent_today.values_list("charge__debtor_key", "charge__phone"):
            by_debtor[debtor_key] += 1
            by_phone[phone] += 1
        allowed = []
        for item in sorted(items, key=lambda i: (i.charge["due_date"], i.charge["id"])):
            debtor, phone = item.charge["debtor_key"], item.charge["phone"]
            if by_debtor[debtor] >= cap or by_phone[phone] >= cap:
                self._skip(item, SkipReason.DAILY_CAP)
                continue
            by_debtor[debtor] += 1
            by_phone[phone] += 1
            allowed.append(item)
        return allowed

    def _skip(self, item: Due, reason: str) -> None:
        self.skips.append((item, str(reason)))

    def _record_skips(self) -> None:
        """Skipped runs (so the step is decided once) and one callback per step and reason."""
        if not self.skips:
            return
        with transaction.atomic():
            self._write_skipped(self.skips)
        self.skips = []

    def _write_skipped(self, skips: list[tuple[Due, str]]) -> None:
        ChargeStepRun.objects.bulk_create(
            [self._run_row(item, StepRunStatus.SKIPPED, skip_reason=reason) for item, reason in skips],
            ignore_conflicts=True,
            batch_size=2000,
        )
        grouped: dict[tuple[int, str], list[Due]] = defaultdict(list)
        for item, reason in skips:
            grouped[(item.step.pk, reason)].append(item)
            self.result.skipped[reason] += 1
        for (_, reason), items in grouped.items():
            step = items[0].step
            on_steps_skipped(
                tenant=self.tenant,
                cadence=step.cadence.name,
                offset_days=step.offset_days,
                day=self.today,
                reason=reason,
                external_ids=[i.charge["external_id"] for i in items],
                config=self.config,
            )

    def _run_row(
        self, item: Due, status: str, *, skip_reason: str = "", billing_contact_id: int | None = None
    ) -> ChargeStepRun:
        return ChargeStepRun(
            tenant=self.tenant,
            charge_id=item.charge["id"],
            cadence_id=item.step.cadence_id,
            offset_days=item.step.offset_days,
            due_date=item.charge["due_date"],
            scheduled_date=self.today,
            status=status,
            skip_reason=skip_reason,
            billing_contact_id=billing_contact_id,
        )

    # ------------------------------------------------------------------ 3. queue the rest
    def _chunks(self, items: list[Due]) -> Iterator[list[Due]]:
        """Ingest refuses a phone twice in one request and more than the per-request limit:
        each debtor phone goes once per round, each round in chunks of that limit."""
        rounds: list[list[Due]] = []
        seen: Counter = Counter()
        for item in items:
            position = seen[item.charge["phone"]]
            seen[item.charge["phone"]] += 1
            if position == len(rounds):
                rounds.append([])
            rounds[position].append(item)
        limit = self.config.max_contacts_per_request
        for batch in rounds:
            for start in range(0, len(batch), limit):
                yield batch[start : start + limit]

    def _queue(self, chunk: list[Due]) -> None:
        step = chunk[0].step
        with transaction.atomic():
            chunk = self._lock_still_due(chunk)
            if not chunk:
                return
            data = self._ingest_request(step, chunk)
            try:
                ingested = BillingCampaignService(tenant=self.tenant, api_key=None).ingest(
                    template_type=step.template_type, data=data, raw_payload=data
                )
            except ApplicationError as refusal:
                # The whole step is refused (no template, no instance, nothing valid): say why.
                rejected = {r["index"]: r["code"] for r in (refusal.details or {}).get("rejected", [])}
                self._write_skipped([(item, rejected.get(index, refusal.code)) for index, item in enumerate(chunk)])
                logger.warning(
                    "charge step not queued",
                    extra={
                        "tenant_id": str(self.tenant.pk),
                        "offset_days": step.offset_days,
                        "error_code": refusal.code,
                        "charges": len(chunk),
                    },
                )
                return
            body = ingested.body
            contact_ids = dict(
                BillingContact.objects.filter(queue_id=body["queue_id"]).values_list("external_id", "pk")
            )
            rejected = {r["index"]: r["code"] for r in body["rejected"]}
            copy_insert(
                ChargeStepRun,
                ChargeStepRun(
                    tenant=self.tenant,
                    cadence_id=step.cadence_id,
                    offset_days=step.offset_days,
                    scheduled_date=self.today,
                    status=StepRunStatus.QUEUED,
                ),
                ("charge", "due_date", "billing_contact"),
                [
                    (item.charge["id"], item.charge["due_date"], contact_ids[item.charge["external_id"]])
                    for index, item in enumerate(chunk)
                    if index not in rejected
                ],
            )
            if rejected:
                self._write_skipped([(chunk[index], code) for index, code in rejected.items()])
            self.result.queued += len(chunk) - len(rejected)
            self.result.queues.append(body["queue_id"])

    def _lock_still_due(self, chunk: list[Due]) -> list[Due]:
        """Lock the chunk's charges and keep those still open, unescalated and due as read
        (a payment or a new due date may have committed since)."""
        still = dict(
            Charge.objects.select_for_update(no_key=True)
            .filter(pk__in=[item.charge["id"] for item in chunk], status=ChargeStatus.OPEN, escalated_at__isnull=True)
            .values_list("pk", "due_date")
        )
        return [item for item in chunk if still.get(item.charge["id"]) == item.charge["due_date"]]

    def _ingest_request(self, step: CadenceStep, chunk: list[Due]) -> dict[str, Any]:
        scheduled_for = self.calendar.start_at(step.template_type, step.send_from)
        return {
            "external_id": f"cadence-{self.today.isoformat()}-{step.cadence_id}-d{step.offset_days:+d}-"
            f"{uuid.uuid4().hex[:12]}",
            "template": str(step.template_id) if step.template_id else None,
            "instance": None,
            "scheduled_for": scheduled_for,
            "callback_url": "",
            "metadata": {
                "source": "charges",
                "cadence": step.cadence.name,
                "offset_days": step.offset_days,
                "date": self.today.isoformat(),
            },
            "strict": False,
            "contacts": [_contact(item.charge) for item in chunk],
        }


def _contact(charge: dict[str, Any]) -> dict[str, Any]:
    variables = dict(charge["variables"] or {})
    for name in _PAYMENT_VARIABLES:
        if charge[name]:
            variables[name] = charge[name]
    return {
        "phone": charge["phone"],
        "name": charge["name"],
        "external_id": charge["external_id"],
        "due_date": charge["due_date"].isoformat(),
        "amount": str(charge["amount"]),
        "variables": variables,
    }
