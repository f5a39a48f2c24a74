"""Create or update everything a tenant needs to send: the tenant, its WhatsApp instance, its
billing config, business hours and default templates — idempotently, so ops can run it again
to change a setting without duplicating rows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time

from django.db import transaction
from django.utils.text import slugify

from apps.audit.models import AuditAction
from apps.audit.services import Actor, record_event
from apps.billing.constants import RotationStrategy, TemplateType
from apps.billing.models import (
    BillingAPIKey,
    BillingConfig,
    BillingTemplate,
    BillingTemplateVariation,
)
from apps.billing.templating.default_templates import DEFAULT_TEMPLATES
from apps.chat.models import BusinessHours
from apps.common.config_version import bump_config_version
from apps.connections.models import WhatsAppInstance
from apps.tenancy.models import Tenant

DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
DEFAULT_TEMPLATE_NAMES: dict[str, str] = {
    TemplateType.OVERDUE: "Cobrança padrão",
    TemplateType.UPCOMING: "Lembrete padrão",
    TemplateType.NOTIFICATION: "Aviso padrão",
}
OPERATOR = Actor.command("billing_setup_tenant")  # who the audit trail names for this service's changes
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class BusinessHoursSpecError(ValueError):
    pass


def parse_business_hours(spec: str) -> list[tuple[int, time, time]]:
    """`"mon-fri 08:00-12:00,13:00-18:00; sat 08:00-12:00"` → (weekday, opens, closes) rows."""
    rows: list[tuple[int, time, time]] = []
    for segment in filter(None, (part.strip() for part in spec.split(";"))):
        try:
            days_part, ranges_part = segment.split(None, 1)
        except ValueError:
            raise BusinessHoursSpecError(f"expected '<days> <HH:MM-HH:MM>' in {segment!r}") from None
        days: list[int] = []
        for chunk in days_part.lower().split(","):
            if "-" in chunk:
                first, last = chunk.split("-", 1)
                if first not in DAYS or last not in DAYS:
                    raise BusinessHoursSpecError(f"unknown day in {chunk!r}")
                days += list(range(DAYS[first], DAYS[last] + 1))
            elif chunk in DAYS:
                days.append(DAYS[chunk])
            else:
                raise BusinessHoursSpecError(f"unknown day {chunk!r}")
        for opening in ranges_part.replace(" ", "").split(","):
            try:
                opens_raw, closes_raw = opening.split("-")
            except ValueError:
                raise BusinessHoursSpecError(f"expected HH:MM-HH:MM, got {opening!r}") from None
            opens, closes = _parse_time(opens_raw), _parse_time(closes_raw)
            rows += [(day, opens, closes) for day in days]
    if not rows:
        raise BusinessHoursSpecError("no opening given")
    return rows


def _parse_time(value: str) -> time:
    match = _TIME.match(value)
    if not match:
        raise BusinessHoursSpecError(f"bad time {value!r} (HH:MM)")
    return time(int(match.group(1)), int(match.group(2)))


ALWAYS_OPEN = [(day, time(0), time(0)) for day in range(7)]


@dataclass
class TenantSetupResult:
    tenant: Tenant
    instance: WhatsAppInstance | None
    config: BillingConfig
    api_key: BillingAPIKey
    raw_api_key: str
    created: bool


@transaction.atomic
def setup_tenant(
    *,
    name: str,
    slug: str | None = None,
    timezone: str | None = None,
    evolution_url: str | None = None,
    evolution_api_key: str | None = None,
    instance_name: str | None = None,
    messages_per_minute: int | None = None,
    business_hours: list[tuple[int, time, time]] | None = None,
    key_name: str = "setup",
    creditor_legal_name: str | None = None,
    creditor_document: str | None = None,
) -> TenantSetupResult:
    slug = slug or slugify(name)[:100] or "tenant"
    tenant, created = Tenant.objects.get_or_create(slug=slug, defaults={"name": name})
    changed = []
    if tenant.name != name:
        tenant.name = name
        changed.append("name")
    if timezone and tenant.timezone != timezone:
        tenant.timezone = timezone
        changed.append("timezone")
    for field, value in (("creditor_legal_name", creditor_legal_name), ("creditor_document", creditor_document)):
        if value and getattr(tenant, field) != value:
            setattr(tenant, field, value)
            changed.append(field)
    if changed:
        tenant.full_clean()
        tenant.save(update_fields=[*changed, "updated_at"])

    instance = None
    if evolution_url and instance_name:
        instance, instance_created = WhatsAppInstance.objects.update_or_create(
            tenant=tenant,
            name=instance_name,
            defaults={
                "base_url": evolution_url.rstrip("/"),
                "instance_name": instance_name,
                "is_active": True,
                **({"api_key": evolution_api_key} if evolution_api_key else {}),
            },
        )
        instance.full_clean()
        record_event(
            actor=OPERATOR,
            tenant_id=tenant.pk,
            action=AuditAction.INSTANCE_SAVED,
            obj=instance,
            details={"created": instance_created, "api_key_given": bool(evolution_api_key)},
        )

    config = BillingConfig.for_tenant(tenant)
    if instance is not None:
        config.default_instance = instance
    if messages_per_minute:
        config.messages_per_minute = messages_per_minute
    config.full_clean()
    config.save()

    if business_hours is not None:
        BusinessHours.objects.filter(tenant=tenant).delete()
        BusinessHours.objects.bulk_create(
            [BusinessHours(tenant=tenant, weekday=d, opens_at=o, closes_at=c) for d, o, c in business_hours]
        )
    elif created:
        BusinessHours.objects.bulk_create(
            [
                BusinessHours(tenant=tenant, weekday=d, opens_at=o, closes_at=c)
                for d, o, c in parse_business_hours("mon-fri 08:00-18:00; sat 08:00-12:00")
            ]
        )

    for template_type, texts in DEFAULT_TEMPLATES.items():
        _ensure_default_template(tenant, template_type, texts)

    api_key, raw = BillingAPIKey.issue(tenant=tenant, name=key_name)
    record_event(actor=OPERATOR, tenant_id=tenant.pk, action=AuditAction.API_KEY_ISSUED, obj=api_key)
    bump_config_version(tenant.pk)  # after the commit: the API's tenant caches rebuild
    return TenantSetupResult(tenant, instance, config, api_key, raw, created)


def _ensure_default_template(tenant: Tenant, template_type: str, texts: list[str]) -> None:
    if BillingTemplate.objects.filter(tenant=tenant, template_type=template_type, is_default=True).exists():
        return
    template = BillingTemplate.objects.create(
        tenant=tenant,
        name=DEFAULT_TEMPLATE_NAMES[template_type],
        template_type=template_type,
        rotation_strategy=RotationStrategy.SEQUENTIAL,
        is_default=True,
    )
    BillingTemplateVariation.objects.bulk_create(
        [
            BillingTemplateVariation(template=template, name=chr(ord("A") + i), content=text)
            for i, text in enumerate(texts[:5])
        ]
    )
