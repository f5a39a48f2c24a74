"""Tenant-scoped reads. Every lookup takes `tenant=`: another tenant's row is "not found"."""

from __future__ import annotations

from datetime import date

from django.db.models import Q, QuerySet

from apps.charges.models import Cadence, Charge
from apps.charges.models.charge import debtor_key_for
from apps.common.exceptions import ApplicationError
from apps.contacts.utils import PhoneNumberError, normalize_phone
from apps.tenancy.models import Tenant


def charge_get(*, tenant: Tenant, external_id: str) -> Charge:
    charge = Charge.objects.select_related("tenant", "cadence").filter(tenant=tenant, external_id=external_id).first()
    if charge is None:
        raise ApplicationError("not_found", "Charge not found.", status=404)
    return charge


def charges_list(
    *,
    tenant: Tenant,
    status: str | None = None,
    due_from: date | None = None,
    due_to: date | None = None,
    debtor: str | None = None,
) -> QuerySet[Charge]:
    """`debtor` matches the debtor's id or, when it is a phone, the phone."""
    charges = Charge.objects.filter(tenant=tenant).select_related("cadence")
    if status:
        charges = charges.filter(status=status)
    if due_from:
        charges = charges.filter(due_date__gte=due_from)
    if due_to:
        charges = charges.filter(due_date__lte=due_to)
    if debtor:
        match = Q(debtor_key=debtor_key_for(debtor_external_id=debtor, phone=""))
        try:
            match |= Q(phone=normalize_phone(debtor))
        except PhoneNumberError:
            pass
        charges = charges.filter(match)
    return charges.order_by("id")


def cadences_list(*, tenant: Tenant) -> QuerySet[Cadence]:
    return Cadence.objects.filter(tenant=tenant).prefetch_related("steps__template").order_by("name")
