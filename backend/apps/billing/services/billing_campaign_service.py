"""Ingest: turn one API request into a campaign, its queue and its contacts — in one transaction.

Everything per contact (phone normalisation, checks, variation choice) happens in memory; the
database sees a constant number of statements, whatever the number of contacts: the contact
rows are streamed with PostgreSQL COPY (`copy_insert`). The request's `external_id` is the
idempotency key: a transaction-scoped advisory lock on (tenant, type, external_id) makes
concurrent repeats wait for the first, which then answers them all with the same campaign.
"""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.urls import reverse
from django.utils import timezone

from apps.billing.constants import TemplateType
from apps.billing.metrics import observe_ingest
from apps.billing.models import (
    BillingAPIKey,
    BillingCampaign,
    BillingConfig,
    BillingContact,
    BillingQueue,
    BillingTemplate,
)
from apps.billing.rabbitmq.billing_publisher import publish_queue_on_commit
from apps.billing.services.contact_validation import ContactValidator, Rejection, ValidContact
from apps.billing.services.eta import estimate_completion
from apps.billing.services.variation_rotation import (
    NoActiveVariationError,
    choose_variations,
    record_variation_usage,
)
from apps.billing.utils.date_calculator import BillingDateCalculator, today_in
from apps.billing.utils.template_engine import BillingTemplateEngine
from apps.campaigns.models import Campaign, CampaignContact
from apps.chat.services import BusinessHoursService
from apps.common.exceptions import ApplicationError
from apps.connections.models import WhatsAppInstance
from apps.tenancy.models import Tenant

logger = logging.getLogger(__name__)

# Column types whose `get_db_prep_save` returns a value of the field's own Python type unchanged on
# PostgreSQL (str, int, date, Decimal, UUID): copy_insert skips that call for them, which is
# ~100,000 calls for 10,000 contacts. Anything else (JSON) is still prepared by its field.
_PASS_THROUGH_TYPES = frozenset({
    "CharField", "TextField", "DateField", "DecimalField", "BooleanField", "UUIDField", "AutoField",
    "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField", "SmallIntegerField",
    "PositiveIntegerField", "PositiveBigIntegerField", "PositiveSmallIntegerField",
})
# Names the date calculator fills in for every contact: a template may use them freely.
ENRICHED_VARIABLES = frozenset(BillingDateCalculator.COMPUTED_KEYS)


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
    def __init__(self, *, tenant: Tenant, api_key: BillingAPIKey | None) -> None:
        self.tenant = tenant
        self.api_key = api_key
        self.config = BillingConfig.for_tenant(tenant)

    def ingest(self, *, template_type: str, data: dict[str, Any], raw_payload: Any) -> IngestResult:
        """`data` is the validated top level; `raw_payload` the body as sent (for idempotency)."""
        contacts_raw: list[Any] = data["contacts"]
        if len(contacts_raw) > self.config.max_contacts_per_request:
            raise ApplicationError(
                "too_many_contacts",
                f"At most {self.config.max_contacts_per_request} contacts per request; got {len(contacts_raw)}.",
                status=413, details={"max_contacts": self.config.max_contacts_per_request},
            )
        fingerprint = request_fingerprint(raw_payload)
        external_id = data["external_id"]
        existing = self._existing(template_type, external_id)
        if existing is not None:
            return self._replay(existing, fingerprint)

        template = self._template(template_type, data.get("template"))
        instance = self._instance(data.get("instance"))
        now = timezone.now()
        today = today_in(self.tenant.timezone, now)
        accepted, rejected, duplicates = self._validate_contacts(template, template_type, today, contacts_raw)
        if data.get("strict") and rejected:
            raise ApplicationError(
                "contacts_rejected", "strict mode: the request has invalid contacts; nothing was accepted.",
                status=422, details={"rejected": [r.as_dict() for r in rejected]},
            )
        accepted, rejected = self._drop_opted_out(accepted, rejected)
        if not accepted:
            raise ApplicationError(
                "no_valid_contacts", "None of the contacts can be sent; see details.",
                status=422, details={"rejected": [r.as_dict() for r in rejected]},
            )

        with transaction.atomic():
            self._lock(template_type, external_id)
            existing = self._existing(template_type, external_id)
            if existing is not None:  # a concurrent repeat won the race while we validated
                return self._replay(existing, fingerprint)
            queue = self._create(
                template=template, instance=instance, template_type=template_type, data=data,
                fingerprint=fingerprint, accepted=accepted, rejected=rejected, duplicates=duplicates, now=now,
            )
        logger.info(
            "billing ingest accepted",
            extra={"tenant_id": str(self.tenant.pk), "queue_id": str(queue.pk), "template_type": template_type,
                   "accepted": len(accepted), "rejected": len(rejected), "duplicates_removed": duplicates},
        )
        observe_ingest(len(accepted), template_type)
        return IngestResult(True, queue.billing_campaign.response_snapshot)

    # ------------------------------------------------------------------ idempotency
    def _existing(self, template_type: str, external_id: str) -> BillingCampaign | None:
        return BillingCampaign.objects.filter(
            tenant=self.tenant, template_type=template_type, external_id=external_id
        ).only("id", "request_fingerprint", "response_snapshot").first()

    @staticmethod
    def _replay(existing: BillingCampaign, fingerprint: str) -> IngestResult:
        if existing.request_fingerprint != fingerprint:
            raise ApplicationError(
                "idempotency_conflict",
                "This external_id was already used with different content.",
                status=409, details={"billing_campaign_id": str(existing.pk)},
            )
        return IngestResult(False, existing.response_snapshot)

    def _lock(self, template_type: str, external_id: str) -> None:
        digest = hashlib.sha256(f"{self.tenant.pk}:{template_type}:{external_id}".encode()).digest()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest[:8], "big", signed=True)])

    # ------------------------------------------------------------------ resolution
    def _template(self, template_type: str, ref: str | None) -> BillingTemplate:
        templates = BillingTemplate.objects.filter(tenant=self.tenant, is_active=True)
        if not ref:
            template = templates.filter(template_type=template_type, is_default=True).first()
            if template is None:
                raise ApplicationError(
                    "no_default_template", f"There is no default {template_type} template; name one in `template`.",
                    status=422,
                )
            return template
        template = None
        try:
            template = templates.filter(pk=uuid.UUID(str(ref))).first()
        except ValueError:
            pass
        if template is None:
            template = templates.filter(name=ref).first()
        if template is None:
            raise ApplicationError("unknown_template", "No active template with this name or id.", status=422)
        if template.template_type != template_type:
            raise ApplicationError(
                "template_type_mismatch",
                f"Template {template.name!r} is a {template.template_type} template, not {template_type}.",
                status=422,
            )
        return template

    def _instance(self, ref: str | None) -> WhatsAppInstance:
        instances = WhatsAppInstance.objects.filter(tenant=self.tenant, is_active=True)
        if ref:
            instance = instances.filter(name=ref).first()
            if instance is None:
                raise ApplicationError("unknown_instance", "No active WhatsApp instance with this name.", status=422)
            return instance
        if self.config.default_instance_id:
            instance = instances.filter(pk=self.config.default_instance_id).first()
            if instance is not None:
                return instance
        candidates = list(instances[:2])
        if len(candidates) == 1:
            return candidates[0]
        raise ApplicationError(
            "no_instance", "No default WhatsApp instance is configured; name one in `instance`.", status=422
        )

    # ------------------------------------------------------------------ contacts
    def _validate_contacts(
        self, template: BillingTemplate, template_type: str, today, contacts_raw: list[Any]
    ) -> tuple[list[ValidContact], list[Rejection], int]:
        variations = list(template.active_variations())
        if not variations:
            raise ApplicationError(
                NoActiveVariationError.code, f"Template {template.name!r} has no active variation.", status=422
            )
        needed: set[str] = set(template.required_variables or [])
        for variation in variations:
            needed |= BillingTemplateEngine.variables_used(variation.content)
        needed = {name for name in needed if name.split(".")[0] not in ENRICHED_VARIABLES}
        validator = ContactValidator(template_type=template_type, today=today, required_variables=frozenset(needed))
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

    # ------------------------------------------------------------------ opt-out (LGPD)
    def _drop_opted_out(
        self, accepted: list[ValidContact], rejected: list[Rejection]
    ) -> tuple[list[ValidContact], list[Rejection]]:
        """Phones on the tenant's suppression list are reported as `opted_out` and never queued
        (one query). Not an input error, so `strict` does not refuse the request for them."""
        from apps.billing.services.opt_out import suppressed_phones
        from apps.contacts.utils import mask_phone

        suppressed = suppressed_phones(tenant=self.tenant, phones=[contact.phone for contact in accepted])
        if not suppressed:
            return accepted, rejected
        refused = [
            Rejection(index=contact.index, phone=mask_phone(contact.phone), code="opted_out",
                      message="This phone asked not to receive messages; only the tenant's admin can lift it.")
            for contact in accepted if contact.phone in suppressed
        ]
        kept = [contact for contact in accepted if contact.phone not in suppressed]
        return kept, sorted([*rejected, *refused], key=lambda rejection: rejection.index)

    # ------------------------------------------------------------------ rows
    def _create(
        self, *, template: BillingTemplate, instance: WhatsAppInstance, template_type: str, data: dict[str, Any],
        fingerprint: str, accepted: list[ValidContact], rejected: list[Rejection], duplicates: int, now: datetime,
    ) -> BillingQueue:
        tenant = self.tenant
        campaign = Campaign.objects.create(
            tenant=tenant, name=f"{template_type} {data['external_id']}"[:200], source=Campaign.Source.BILLING,
            total_contacts=len(accepted),
        )
        billing_campaign_id, queue_id = uuid.uuid4(), uuid.uuid4()
        scheduled_for = data.get("scheduled_for")
        body = {
            "queue_id": str(queue_id),
            "billing_campaign_id": str(billing_campaign_id),
            "status": "pending",
            "accepted": len(accepted),
            "rejected": [r.as_dict() for r in rejected],
            "duplicates_removed": duplicates,
            "eta": self._eta(template_type, len(accepted), scheduled_for, now),
            "status_url": reverse("billing:queue-status", args=[queue_id]),
        }
        billing_campaign = BillingCampaign.objects.create(
            id=billing_campaign_id, tenant=tenant, campaign=campaign, template=template, template_type=template_type,
            external_id=data["external_id"], request_fingerprint=fingerprint, response_snapshot=body,
            callback_url=data.get("callback_url") or "", metadata=data.get("metadata") or {},
            created_by_key=self.api_key, instance=instance,
        )
        queue = BillingQueue.objects.create(
            id=queue_id, tenant=tenant, billing_campaign=billing_campaign, template_type=template_type,
            instance=instance, priority=TemplateType.priority_of(template_type), scheduled_for=scheduled_for,
            total_contacts=len(accepted),
        )
        campaign_contact_ids = copy_insert(
            CampaignContact, CampaignContact(tenant=tenant, campaign=campaign), ("phone", "name"),
            [(c.phone, c.name) for c in accepted], return_ids=True,
        )
        chosen = choose_variations(template, len(accepted))
        copy_insert(
            BillingContact, BillingContact(tenant=tenant, billing_campaign=billing_campaign, queue=queue),
            ("campaign_contact", "variation", "phone", "name", "external_id", "due_date", "amount", "variables"),
            [
                (cc_id, variation.pk, c.phone, c.name, c.external_id, c.due_date, c.amount, c.variables)
                for c, cc_id, variation in zip(accepted, campaign_contact_ids, chosen, strict=True)
            ],
        )
        record_variation_usage(chosen)
        if scheduled_for is None or scheduled_for <= now:
            # A scheduled queue is published by the periodic task when its time comes.
            publish_queue_on_commit(queue)
        return queue

    def _eta(self, template_type: str, count: int, scheduled_for: datetime | None, now: datetime) -> str | None:
        start = max(now, scheduled_for) if scheduled_for else now
        schedule = (
            BusinessHoursService.schedule_for(self.tenant)
            if self.config.respects_business_hours(template_type) else None
        )
        eta = estimate_completion(
            start=start, messages=count, messages_per_minute=self.config.messages_per_minute,
            jitter_seconds=float(self.config.jitter_seconds), schedule=schedule,
        )
        return eta.isoformat() if eta else None


def copy_insert(
    model: type[models.Model], prototype: models.Model, fields: Sequence[str], rows: Sequence[Sequence[Any]],
    *, return_ids: bool = False,
) -> list[int]:
    """Insert `rows` (values of `fields`, in that order) with PostgreSQL COPY, in the caller's
    transaction; every other column gets `prototype`'s value (model defaults, auto_now stamps).

    Why not `bulk_create`: for 10,000 contacts it spends ~2.5 s composing and binding INSERTs of
    thousands of parameters per batch, more than the whole 2 s ingest budget; COPY streams the
    same rows in about a quarter of that (bench/ingest_bench.py). Values still go through each
    field's `get_db_prep_save`, as bulk_create does, so the rows are identical. The primary key
    must be an auto field: the database numbers the rows, or, with `return_ids`, ids are drawn
    from its sequence first (COPY returns nothing) and written explicitly, in row order.
    """
    db = connections[DEFAULT_DB_ALIAS]  # not the `connection` proxy: each attribute read costs a lookup
    meta = model._meta
    pk = meta.auto_field
    if pk is None:
        raise ValueError(f"copy_insert needs an auto primary key; {meta.label} has none")
    varying = [meta.get_field(name) for name in fields]
    varying_columns = {field.column for field in varying}
    fixed = [field for field in meta.concrete_fields if field is not pk and field.column not in varying_columns]
    columns = ([pk.column] if return_ids else []) + [f.column for f in varying] + [f.column for f in fixed]
    constant = tuple(field.get_db_prep_save(field.pre_save(prototype, True), db) for field in fixed)
    prepare = [None if _passes_through(field) else field.get_db_prep_save for field in varying]
    quote = db.ops.quote_name
    ids: list[int] = []
    with db.cursor() as cursor:
        if return_ids:
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                           [meta.db_table, pk.column, len(rows)])
            ids = sorted(row[0] for row in cursor.fetchall())
        statement = f"COPY {quote(meta.db_table)} ({', '.join(quote(column) for column in columns)}) FROM STDIN"
        with cursor.cursor.copy(statement) as copy:  # the psycopg cursor under Django's wrapper
            for position, row in enumerate(rows):
                values = tuple(
                    value if prep is None else prep(value, db) for prep, value in zip(prepare, row, strict=True)
                )
                copy.write_row(((ids[position],) if return_ids else ()) + values + constant)
    return ids


def _passes_through(field: models.Field) -> bool:
    """True when the field's database preparation is the identity (see _PASS_THROUGH_TYPES)."""
    target = field.target_field if field.is_relation else field
    return target.get_internal_type() in _PASS_THROUGH_TYPES
