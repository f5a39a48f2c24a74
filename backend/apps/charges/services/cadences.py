"""Create, replace and delete a tenant's cadences through the API. (The admin edits the same
rows with model validation: the same unique offset, range and template-type rules.)

A cadence's steps are replaced whole on every save: runs remember (cadence, offset), not step
rows, so a step that keeps its offset keeps its history. A step's template must be an active
template of the type its offset calls for (upcoming up to the due date, overdue after);
`default: true` makes it the cadence of every charge that names none.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import time

from django.db import IntegrityError, transaction

from apps.audit.models import AuditAction
from apps.audit.services import Actor, record_event
from apps.billing.models import BillingTemplate
from apps.charges.constants import (
    MAX_OFFSET_DAYS,
    MAX_STEPS_PER_CADENCE,
    MIN_OFFSET_DAYS,
    ChargeStatus,
)
from apps.charges.models import Cadence, CadenceStep, Charge, ChargeSettings
from apps.charges.models.cadence import template_type_for_offset
from apps.common.exceptions import ApplicationError
from apps.tenancy.models import Tenant


@dataclass(frozen=True)
class StepSpec:
    offset_days: int
    template: str | None = None  # a template name or id; None: the type's default
    send_from: time | None = None


def cadence_get(*, tenant: Tenant, name: str) -> Cadence:
    cadence = Cadence.objects.filter(tenant=tenant, name=name).prefetch_related("steps__template").first()
    if cadence is None:
        raise ApplicationError("not_found", "Cadence not found.", status=404)
    return cadence


def cadence_create(*, tenant: Tenant, name: str, steps: list[StepSpec], actor: Actor, default: bool = False) -> Cadence:
    with transaction.atomic():
        try:
            with transaction.atomic():
                cadence = Cadence.objects.create(tenant=tenant, name=name)
        except IntegrityError:
            raise ApplicationError("cadence_exists", f"A cadence named {name!r} already exists.", status=409) from None
        _replace_steps(cadence, steps)
        if default:
            _make_default(cadence)
        _audit(actor, cadence, AuditAction.CADENCE_SAVED, created=True, steps=len(steps))
    return cadence_get(tenant=tenant, name=name)


def cadence_replace(
    *, cadence: Cadence, steps: list[StepSpec], actor: Actor, default: bool | None = None, new_name: str | None = None
) -> Cadence:
    with transaction.atomic():
        locked = Cadence.objects.select_for_update().get(pk=cadence.pk, tenant_id=cadence.tenant_id)
        if new_name and new_name != locked.name:
            try:
                with transaction.atomic():
                    Cadence.objects.filter(pk=locked.pk).update(name=new_name)
            except IntegrityError:
                raise ApplicationError(
                    "cadence_exists", f"A cadence named {new_name!r} already exists.", status=409
                ) from None
            locked.name = new_name
        _replace_steps(locked, steps)
        settings = ChargeSettings.for_tenant(locked.tenant)
        if default:
            _make_default(locked)
        elif default is False and settings.default_cadence_id == locked.pk:
            ChargeSettings.objects.filter(pk=settings.pk).update(default_cadence=None)
        locked.save(update_fields=["updated_at"])
        _audit(actor, locked, AuditAction.CADENCE_SAVED, created=False, steps=len(steps))
    return cadence_get(tenant=locked.tenant, name=locked.name)


def cadence_delete(*, cadence: Cadence, actor: Actor) -> None:
    """Refused (409) while open charges follow it, by name or as the tenant's default."""
    with transaction.atomic():
        locked = Cadence.objects.select_for_update().get(pk=cadence.pk, tenant_id=cadence.tenant_id)
        is_default = ChargeSettings.for_tenant(locked.tenant).default_cadence_id == locked.pk
        open_charges = Charge.objects.filter(tenant_id=locked.tenant_id, status=ChargeStatus.OPEN)
        following = open_charges.filter(cadence=locked).count()
        if is_default:
            following += open_charges.filter(cadence__isnull=True).count()
        if following:
            raise ApplicationError(
                "cadence_in_use",
                f"{following} open charge(s) follow this cadence.",
                status=409,
                details={"open_charges": following, "default": is_default},
            )
        _audit(actor, locked, AuditAction.CADENCE_DELETED)
        locked.delete()


def _audit(actor: Actor, cadence: Cadence, action: str, **details: object) -> None:
    record_event(actor=actor, tenant_id=cadence.tenant_id, action=action, obj=cadence, details=details)


def _replace_steps(cadence: Cadence, steps: list[StepSpec]) -> None:
    _check_steps(steps)
    templates = _templates(cadence.tenant_id, steps)
    CadenceStep.objects.filter(cadence=cadence).delete()
    CadenceStep.objects.bulk_create(
        [
            CadenceStep(
                cadence=cadence,
                offset_days=spec.offset_days,
                send_from=spec.send_from,
                template=templates.get(spec.offset_days),
            )
            for spec in steps
        ]
    )


def _check_steps(steps: list[StepSpec]) -> None:
    if not steps or len(steps) > MAX_STEPS_PER_CADENCE:
        raise ApplicationError("invalid_steps", f"A cadence has 1 to {MAX_STEPS_PER_CADENCE} steps.", status=400)
    offsets = [spec.offset_days for spec in steps]
    if len(set(offsets)) != len(offsets):
        raise ApplicationError(
            "duplicate_offset", "Two steps cannot share an offset.", status=400, details={"offsets": sorted(offsets)}
        )
    out_of_range = [o for o in offsets if not MIN_OFFSET_DAYS <= o <= MAX_OFFSET_DAYS]
    if out_of_range:
        raise ApplicationError(
            "invalid_offset",
            f"Offsets go from {MIN_OFFSET_DAYS} to {MAX_OFFSET_DAYS} days.",
            status=400,
            details={"offsets": out_of_range},
        )


def _templates(tenant_id, steps: list[StepSpec]) -> dict[int, BillingTemplate]:
    """offset → the named template, checked: active, this tenant's, the offset's type."""
    found: dict[int, BillingTemplate] = {}
    active = BillingTemplate.objects.filter(tenant_id=tenant_id, is_active=True)
    for spec in steps:
        wanted = template_type_for_offset(spec.offset_days)
        if not spec.template:
            if not active.filter(template_type=wanted, is_default=True).exists():
                raise ApplicationError(
                    "no_default_template",
                    f"There is no default {wanted} template; name one.",
                    status=422,
                    details={"offset_days": spec.offset_days},
                )
            continue
        template = None
        try:
            template = active.filter(pk=uuid.UUID(spec.template)).first()
        except ValueError:
            pass
        template = template or active.filter(name=spec.template).first()
        if template is None:
            raise ApplicationError(
                "unknown_template",
                f"No active template {spec.template!r}.",
                status=422,
                details={"offset_days": spec.offset_days},
            )
        if template.template_type != wanted:
            raise ApplicationError(
                "template_type_mismatch",
                f"A D{spec.offset_days:+d} step needs a {wanted} template; {template.name!r} is {template.template_type}.",
                status=422,
                details={"offset_days": spec.offset_days},
            )
        found[spec.offset_days] = template
    return found


def _make_default(cadence: Cadence) -> None:
    settings = ChargeSettings.for_tenant(cadence.tenant)
    ChargeSettings.objects.filter(pk=settings.pk).update(default_cadence=cadence)
