"""A data subject's request, as the API and the admin take it: the phone in any common
writing (as in the send endpoints), the tenant of the key or the staff member, and one audit
event per request naming who asked — never the phone (only its keyed hash)."""

from __future__ import annotations

from typing import Any

from apps.audit.models import AuditAction
from apps.audit.services import Actor, record_event
from apps.common.exceptions import ApplicationError
from apps.common.keyed_hash import phone_hash
from apps.contacts.utils import PhoneNumberError, normalize_phone
from apps.tenancy.models import Tenant

from .data_subject_erasure import erase_data_subject
from .data_subject_export import export_data_subject


def data_subject_phone(raw: str) -> str:
    """E.164, or a 400 in the API's error shape (`invalid_phone`, `empty_phone`, ...)."""
    try:
        return normalize_phone(raw)
    except PhoneNumberError as exc:
        raise ApplicationError(exc.code, exc.message, status=400) from exc


def export_request(*, tenant: Tenant, raw_phone: str, actor: Actor) -> dict[str, Any]:
    phone = data_subject_phone(raw_phone)
    document = export_data_subject(tenant=tenant, phone=phone)
    counts = {name: len(rows) for name, rows in document.items() if isinstance(rows, list)}
    record_event(
        actor=actor,
        tenant_id=tenant.pk,
        action=AuditAction.DATA_SUBJECT_EXPORTED,
        object_type="data_subject",
        object_id=phone_hash(phone),
        details=counts,
    )
    return document


def erase_request(*, tenant: Tenant, raw_phone: str, actor: Actor) -> dict[str, int]:
    return erase_data_subject(tenant=tenant, phone=data_subject_phone(raw_phone), actor=actor)
