"""Ingest: turn one API request into a campaign, its queue and its contacts — in one transaction.

Everything per contact (phone normalisation, checks, variation choice) happens in memory; the
database sees a constant number of statements plus the bulk-insert batches, whatever the
number of contacts. The request's `external_id` is the idempotency key: a transaction-scoped
advisory lock on (tenant, type, external_id) makes concurrent repeats wait for the first, which
then answers them all with the same campaign.
"""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from apps.billing.constants import TemplateType
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

BULK_BATCH_SIZE = 2000
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
        campaign_contacts = CampaignContact.objects.bulk_create(
            [CampaignContact(tenant=tenant, campaign=campaign, phone=c.phone, name=c.name) for c in accepted],
            batch_size=BULK_BATCH_SIZE,
        )
        chosen = choose_variations(template, len(accepted))
        BillingContact.objects.bulk_create(
            [
                BillingContact(
                    tenant=tenant, billing_campaign=billing_campaign, queue=queue, campaign_contact=cc,
                    variation=variation, phone=c.phone, name=c.name, external_id=c.external_id,
                    due_date=c.due_date, amount=c.amount, variables=c.variables,
                )
                for c, cc, variation in zip(accepted, campaign_contacts, chosen)
            ],
            batch_size=BULK_BATCH_SIZE,
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
