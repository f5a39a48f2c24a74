"""Ingest: turn one API request into a campaign, its queue and its contacts — in one statement.

Everything per contact (phone normalisation, checks, variation choice) happens in memory; the
tenant's templates, instances, config and hours come from the process's tenant context
(`tenant_context.py`), so a request reads no configuration from the database. The rows are
written by one SQL statement (`ingest_statement.py`), which is its own transaction and also
holds the idempotency check (the request's `external_id` is unique per tenant and type: a
repeat writes nothing and gets the first answer) and the opt-out check. The broker is told
after that statement committed, without the request waiting for its confirm.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from apps.billing import tenant_context
from apps.billing.broker.publisher import publish_stamped_queue_on_commit
from apps.billing.constants import TemplateType
from apps.billing.metrics import observe_ingest
from apps.billing.models import BillingAPIKey, BillingCampaign
from apps.billing.services.contact_validation import ContactValidator, Rejection, ValidContact
from apps.billing.services.eta import DailyCapPlan, estimate_completion
from apps.billing.services.ingest_statement import IngestOutcome, IngestRows, write_request
from apps.billing.services.variation_rotation import NoActiveVariationError, draw_variations
from apps.billing.templating.date_calculator import today_in
from apps.billing.tenant_context import TemplateEntry, TenantContext
from apps.common.exceptions import ApplicationError
from apps.contacts.utils import mask_phone
from apps.tenancy.models import Tenant

logger = logging.getLogger(__name__)

OPTED_OUT_MESSAGE = "This phone asked not to receive messages; only the tenant's admin can lift it."


@dataclass(frozen=True)
class IngestResult:
    created: bool
    body: dict[str, Any]

    @property
    def status_code(self) -> int:
        return 202 if self.created else 200


def request_fingerprint(payload: Any) -> str:
    """Canonical JSON hash: the same content in any key order is the same request."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class BillingCampaignService:
    def __init__(self, *, tenant: Tenant, api_key: BillingAPIKey | None, context: TenantContext | None = None) -> None:
        """`context`: the tenant context the API request already loaded; other callers leave it
        out and the current one is looked up."""
        self.tenant = tenant
        self.api_key = api_key
        self.context = context or tenant_context.current_context(tenant.pk)
        self.config = self.context.config

    def ingest(self, *, template_type: str, data: dict[str, Any], raw_payload: Any) -> IngestResult:
        """`data` is the validated top level; `raw_payload` the body as sent (for idempotency)."""
        contacts_raw: list[Any] = data["contacts"]
        if len(contacts_raw) > self.config.max_contacts_per_request:
            raise ApplicationError(
                "too_many_contacts",
                f"At most {self.config.max_contacts_per_request} contacts per request; got {len(contacts_raw)}.",
                status=413,
                details={"max_contacts": self.config.max_contacts_per_request},
            )
        fingerprint = request_fingerprint(raw_payload)
        try:
            return self._accept(template_type, data, fingerprint)
        except ApplicationError as refusal:
            if refusal.code == "idempotency_conflict":
                raise
            # A request refused today may repeat one accepted earlier (a date moved past, a phone
            # opted out since): a repeat always gets its first answer.
            existing = self._existing(template_type, data["external_id"])
            if existing is None:
                raise
            return self._replay(existing, fingerprint)

    def _accept(
        self, template_type: str, data: dict[str, Any], fingerprint: str, *, fresh: bool = False
    ) -> IngestResult:
        entry = self._template(template_type, data.get("template"))
        instance_id = self._instance(data.get("instance"))
        now = timezone.now()
        today = today_in(self.tenant.timezone, now)
        accepted, rejected, duplicates = self._validate_contacts(entry, template_type, today, data["contacts"])
        if data.get("strict") and rejected:
            raise ApplicationError(
                "contacts_rejected",
                "strict mode: the request has invalid contacts; nothing was accepted.",
                status=422,
                details={"rejected": [r.as_dict() for r in rejected]},
            )
        for _ in range(3):  # a run again only after dropping opted-out phones or a stale cache
            if not accepted:
                raise ApplicationError(
                    "no_valid_contacts",
                    "None of the contacts can be sent; see details.",
                    status=422,
                    details={"rejected": [r.as_dict() for r in rejected]},
                )
            rows = self._rows(entry, instance_id, template_type, data, fingerprint, accepted, rejected, duplicates, now)
            try:
                outcome = self._write(rows)
            except IntegrityError:
                if fresh:
                    raise
                # A template, variation or instance the cached context holds was deleted:
                # nothing was written; decide again on fresh configuration.
                tenant_context.invalidate(self.tenant.pk)
                context = tenant_context.context_for(self.tenant.pk, None, rebuild=True)
                if context is None:  # the tenant itself was deleted meanwhile
                    raise
                self.context, self.config = context, context.config
                return self._accept(template_type, data, fingerprint, fresh=True)
            if outcome.suppressed_phones:
                accepted, rejected = self._drop_opted_out(accepted, rejected, outcome.suppressed_phones)
                continue
            if outcome.billing_campaign_id is None:
                existing = self._existing(template_type, data["external_id"])
                if existing is None:  # pragma: no cover - the conflicting row cannot vanish in between
                    raise RuntimeError("ingest conflict without an existing campaign")
                return self._replay(existing, fingerprint)
            return self._accepted(rows, template_type, len(rejected), duplicates)
        raise RuntimeError("ingest: phones kept being opted out while the request was written")

    @staticmethod
    def _write(rows: IngestRows) -> IngestOutcome:
        """Alone, the statement is its own transaction. Inside a caller's transaction it runs in a
        savepoint with its foreign keys checked at its end (Django declares them deferred), so a
        stale cache fails here, where it is retried, not at the caller's commit."""
        if not connection.in_atomic_block:
            return write_request(rows)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            outcome = write_request(rows)
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")  # a failure rolls the savepoint back, this too
            return outcome

    def _accepted(self, rows: IngestRows, template_type: str, rejected: int, duplicates: int) -> IngestResult:
        if rows.publish_now:  # a scheduled queue is published by the periodic task when its time comes
            publish_stamped_queue_on_commit(
                queue_id=rows.queue_id, tenant_id=rows.tenant_id, template_type=template_type
            )
        logger.info(
            "billing ingest accepted",
            extra={
                "tenant_id": str(rows.tenant_id),
                "queue_id": str(rows.queue_id),
                "template_type": template_type,
                "accepted": len(rows.phones),
                "rejected": rejected,
                "duplicates_removed": duplicates,
            },
        )
        observe_ingest(len(rows.phones), template_type)
        return IngestResult(True, rows.response_snapshot)

    # ------------------------------------------------------------------ idempotency
    def _existing(self, template_type: str, external_id: str) -> BillingCampaign | None:
        return (
            BillingCampaign.objects.filter(tenant=self.tenant, template_type=template_type, external_id=external_id)
            .only("id", "request_fingerprint", "response_snapshot")
            .first()
        )

    @staticmethod
    def _replay(existing: BillingCampaign, fingerprint: str) -> IngestResult:
        if existing.request_fingerprint != fingerprint:
            raise ApplicationError(
                "idempotency_conflict",
                "This external_id was already used with different content.",
                status=409,
                details={"billing_campaign_id": str(existing.pk)},
            )
        return IngestResult(False, existing.response_snapshot)

    # ------------------------------------------------------------------ resolution
    def _template(self, template_type: str, ref: str | None) -> TemplateEntry:
        if not ref:
            entry = self.context.default_templates.get(template_type)
            if entry is None:
                raise ApplicationError(
                    "no_default_template",
                    f"There is no default {template_type} template; name one in `template`.",
                    status=422,
                )
        else:
            entry = self.context.template(str(ref))
            if entry is None:
                raise ApplicationError("unknown_template", "No active template with this name or id.", status=422)
            if entry.template.template_type != template_type:
                raise ApplicationError(
                    "template_type_mismatch",
                    f"Template {entry.template.name!r} is a {entry.template.template_type} template, "
                    f"not {template_type}.",
                    status=422,
                )
        if not entry.variations:
            raise ApplicationError(
                NoActiveVariationError.code, f"Template {entry.template.name!r} has no active variation.", status=422
            )
        return entry

    def _instance(self, ref: str | None) -> int:
        if ref:
            instance_id = self.context.instance_ids_by_name.get(ref)
            if instance_id is None:
                raise ApplicationError("unknown_instance", "No active WhatsApp instance with this name.", status=422)
            return instance_id
        if self.context.default_instance_id is None:
            raise ApplicationError(
                "no_instance", "No default WhatsApp instance is configured; name one in `instance`.", status=422
            )
        return self.context.default_instance_id

    # ------------------------------------------------------------------ contacts
    @staticmethod
    def _validate_contacts(
        entry: TemplateEntry, template_type: str, today: date, contacts_raw: list[Any]
    ) -> tuple[list[ValidContact], list[Rejection], int]:
        validator = ContactValidator(
            template_type=template_type, today=today, required_variables=entry.needed_variables
        )
        accepted: list[ValidContact] = []
        rejected: list[Rejection] = []
        seen: set[str] = set()
        duplicates = 0
        for index, raw in enumerate(contacts_raw):
            result = validator.validate(index, raw)
            if isinstance(result, Rejection):
                rejected.append(result)
            elif result.phone in seen:
                duplicates += 1
            else:
                seen.add(result.phone)
                accepted.append(result)
        return accepted, rejected, duplicates

    @staticmethod
    def _drop_opted_out(
        accepted: list[ValidContact], rejected: list[Rejection], suppressed: frozenset[str]
    ) -> tuple[list[ValidContact], list[Rejection]]:
        """Phones on the tenant's suppression list (LGPD) are reported as `opted_out` and never
        queued. Not an input error, so `strict` does not refuse the request for them."""
        refused = [
            Rejection(index=contact.index, phone=mask_phone(contact.phone), code="opted_out", message=OPTED_OUT_MESSAGE)
            for contact in accepted
            if contact.phone in suppressed
        ]
        kept = [contact for contact in accepted if contact.phone not in suppressed]
        return kept, sorted([*rejected, *refused], key=lambda rejection: rejection.index)

    # ------------------------------------------------------------------ rows
    def _rows(
        self,
        entry: TemplateEntry,
        instance_id: int,
        template_type: str,
        data: dict[str, Any],
        fingerprint: str,
        accepted: list[ValidContact],
        rejected: list[Rejection],
        duplicates: int,
        now: datetime,
    ) -> IngestRows:
        billing_campaign_id, queue_id = uuid.uuid4(), uuid.uuid4()
        scheduled_for = data.get("scheduled_for")
        body = {
            "queue_id": str(queue_id),
            "billing_campaign_id": str(billing_campaign_id),
            "status": "pending",
            "accepted": len(accepted),
            "rejected": [r.as_dict() for r in rejected],
            "duplicates_removed": duplicates,
            "eta": self._eta(template_type, len(accepted), scheduled_for, now, instance_id),
            "status_url": reverse("billing:queue-status", args=[queue_id]),
        }
        drawn = draw_variations(entry.variations, entry.template.rotation_strategy, len(accepted))
        return IngestRows(
            tenant_id=self.tenant.pk,
            template_id=entry.template.pk,
            template_type=template_type,
            instance_id=instance_id,
            api_key_id=self.api_key.pk if self.api_key is not None else None,
            campaign_id=uuid.uuid4(),
            billing_campaign_id=billing_campaign_id,
            queue_id=queue_id,
            campaign_name=f"{template_type} {data['external_id']}"[:200],
            external_id=data["external_id"],
            fingerprint=fingerprint,
            response_snapshot=body,
            callback_url=data.get("callback_url") or "",
            metadata=data.get("metadata") or {},
            priority=TemplateType.priority_of(template_type),
            scheduled_for=scheduled_for,
            now=now,
            publish_now=scheduled_for is None or scheduled_for <= now,
            phones=[c.phone for c in accepted],
            names=[c.name for c in accepted],
            contact_external_ids=[c.external_id for c in accepted],
            due_dates=[c.due_date for c in accepted],
            amounts=[c.amount for c in accepted],
            variables=[c.variables for c in accepted],
            variation_ids=None if drawn is None else [v.pk for v in drawn],
            rotation=[v.pk for v in entry.variations],
        )

    def _eta(
        self, template_type: str, count: int, scheduled_for: datetime | None, now: datetime, instance_id: int
    ) -> str | None:
        start = max(now, scheduled_for) if scheduled_for else now
        schedule = self.context.schedule if self.config.respects_business_hours(template_type) else None
        eta = estimate_completion(
            start=start,
            messages=count,
            messages_per_minute=self.config.messages_per_minute,
            jitter_seconds=float(self.config.jitter_seconds),
            schedule=schedule,
            daily_cap=DailyCapPlan.for_number(self.context.number_quotas.get(instance_id), start=start, now=now),
        )
        return eta.isoformat() if eta else None
