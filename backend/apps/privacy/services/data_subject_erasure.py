"""Right to erasure (LGPD art. 18, VI): remove what a tenant holds about one phone number,
keeping counters and statuses for reports and the opt-out itself as a keyed hash.

Order, and why:
1. One short transaction: the suppression entry keeps only the phone's keyed hash (or is
   created so), and every unsent contact of the phone is skipped (`opted_out`). From its commit
   on, ingest refuses the phone and the worker's `start_sending` refuses any contact of it, so
   no new message can start. In the same transaction, a contact already handed to the provider
   (`sending`, `unconfirmed`) refuses the whole request (409 `data_subject_in_flight`, nothing
   written): its outcome write and reconciliation still need the phone and the text, and would
   write the text back. Such a contact settles within the send deadline or the reconciliation
   window; the caller asks again (`Retry-After`).
2. Open charges of the phone are cancelled through the charge status service (their pending
   steps are silenced, the client is told through the usual callback).
3. The rows themselves, table by table, in batches of `ERASE_BATCH` rows per transaction (no
   long lock on the hot contact table): phones, names, variables, texts and payment data are
   blanked; conversations (and their messages) deleted; callback payloads that carried the
   phone scrubbed. Each batch finds the next by the phone it has not blanked yet, so a request
   cut short is finished by asking again.
4. The reconciliation echoes kept in Redis for the phone are dropped (they expire anyway).
5. The audit trail records who asked, when, and how many rows each table gave up — never the
   phone (only its keyed hash, so a second request for the same person can be recognised).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import models, transaction
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat
from redis.exceptions import RedisError

from apps.audit.models import ActorKind, AuditAction
from apps.audit.services import Actor, record_event
from apps.billing.constants import UNSENT_CONTACT_STATUSES, ContactErrorCode, ContactStatus
from apps.billing.models import CallbackDelivery, SuppressedPhone
from apps.billing.services.contact_skip import skip_unsent_contacts
from apps.billing.services.reconciliation import _echo_key
from apps.charges.constants import ChangeSource, ChargeStatus
from apps.charges.services.charge_status import change_charge_status
from apps.common.exceptions import ApplicationError
from apps.common.keyed_hash import phone_hash
from apps.common.redis_client import get_redis
from apps.common.services.evolution_lookup import jid_candidates
from apps.connections.models import WhatsAppInstance
from apps.contacts.utils import e164_digits
from apps.tenancy.models import Tenant

from . import data_subject_export as held

logger = logging.getLogger(__name__)

ERASE_BATCH = 500
ERASED_REASON = "data erased at the person's request"
IN_FLIGHT = (ContactStatus.SENDING, ContactStatus.UNCONFIRMED)
IN_FLIGHT_RETRY_AFTER_SECONDS = 60


def erase_data_subject(*, tenant: Tenant, phone: str, actor: Actor) -> dict[str, int]:
    """Erase `phone` (E.164) from `tenant`'s data; how many rows each table changed."""
    counts: dict[str, int] = {}
    with transaction.atomic():
        counts["opt_out_hashed"] = _keep_opt_out_as_hash(tenant=tenant, phone=phone)
        unsent = held.billing_contacts(tenant=tenant, phone=phone).filter(status__in=sorted(UNSENT_CONTACT_STATUSES))
        counts["contacts_skipped"] = skip_unsent_contacts(
            tenant=tenant,
            contact_ids=unsent.values_list("pk", flat=True),
            code=ContactErrorCode.OPTED_OUT,
            reason=ERASED_REASON,
        )
        in_flight = held.billing_contacts(tenant=tenant, phone=phone).filter(status__in=IN_FLIGHT).count()
        if in_flight:
            raise ApplicationError(
                "data_subject_in_flight",
                "A message to this number is being delivered right now; ask again in a minute.",
                status=409,
                details={"in_flight": in_flight, "retry_after": IN_FLIGHT_RETRY_AFTER_SECONDS},
                headers={"Retry-After": str(IN_FLIGHT_RETRY_AFTER_SECONDS)},
            )
    counts["charges_cancelled"] = _cancel_open_charges(tenant=tenant, phone=phone, actor=actor)
    counts["billing_contacts"] = _in_batches(
        held.billing_contacts(tenant=tenant, phone=phone),
        phone="",
        name="",
        external_id="",
        variables={},
        rendered_message="",
        last_error="",
    )
    counts["campaign_contacts"] = _in_batches(held.campaign_contacts(tenant=tenant, phone=phone), phone="", name="")
    counts["charges"] = _in_batches(
        held.charges(tenant=tenant, phone=phone),
        phone="",
        name="",
        document="",
        debtor_external_id="",
        description="",
        payment_link="",
        pix_code="",
        boleto_line="",
        variables={},
        debtor_key=Concat(Value("erased:"), Cast("id", CharField())),
    )
    counts["conversations"] = _delete_in_batches(held.conversations(tenant=tenant, phone=phone))
    counts["callbacks"] = _scrub_callbacks(tenant=tenant, phone=phone)
    _forget_echoes(tenant=tenant, phone=phone)
    record_event(
        actor=actor,
        tenant_id=tenant.pk,
        action=AuditAction.DATA_SUBJECT_ERASED,
        object_type="data_subject",
        object_id=phone_hash(phone),
        details=counts,
    )
    logger.info("data subject erased", extra={"tenant_id": str(tenant.pk), **counts})
    return counts


def _keep_opt_out_as_hash(*, tenant: Tenant, phone: str) -> int:
    hashed = phone_hash(phone)
    if SuppressedPhone.objects.filter(tenant=tenant, phone_hash=hashed).exists():
        return SuppressedPhone.objects.filter(tenant=tenant, phone=phone).delete()[0]  # a later duplicate
    updated = SuppressedPhone.objects.filter(tenant=tenant, phone=phone).update(phone=None, phone_hash=hashed)
    if not updated:
        SuppressedPhone.objects.create(
            tenant=tenant, phone=None, phone_hash=hashed, reason=ERASED_REASON, source=SuppressedPhone.Source.ERASURE
        )
    return 1


def _cancel_open_charges(*, tenant: Tenant, phone: str, actor: Actor) -> int:
    source = ChangeSource.ADMIN if actor.kind == ActorKind.USER else ChangeSource.API
    cancelled = 0
    for charge in held.charges(tenant=tenant, phone=phone).filter(status=ChargeStatus.OPEN).order_by("pk"):
        cancelled += change_charge_status(
            charge=charge, target=ChargeStatus.CANCELLED, source=source, reason="data_subject_erased"
        ).changed
    return cancelled


def _in_batches(queryset: models.QuerySet, **fields: Any) -> int:
    """UPDATE the rows `queryset` finds, `ERASE_BATCH` per transaction. `fields` must take the
    rows out of `queryset` (they blank the phone it filters on), so the loop ends."""
    total = 0
    while ids := list(queryset.order_by("pk").values_list("pk", flat=True)[:ERASE_BATCH]):
        with transaction.atomic():
            total += queryset.model.objects.filter(pk__in=ids).update(**fields)
    return total


def _delete_in_batches(queryset: models.QuerySet) -> int:
    total = 0
    while ids := list(queryset.order_by("pk").values_list("pk", flat=True)[:ERASE_BATCH]):
        with transaction.atomic():
            queryset.model.objects.filter(pk__in=ids).delete()
        total += len(ids)
    return total


def _scrub_callbacks(*, tenant: Tenant, phone: str) -> int:
    """The phone (and a reply's text beside it) out of stored callback payloads — sent or still
    pending (a pending one then goes out without them)."""
    total = 0
    while rows := list(held.callback_deliveries(tenant=tenant, phone=phone).order_by("pk")[:ERASE_BATCH]):
        with transaction.atomic():
            for delivery in rows:
                CallbackDelivery.objects.filter(pk=delivery.pk).update(payload=_scrubbed(delivery.payload, phone))
        total += len(rows)
    return total


def _scrubbed(value: Any, phone: str) -> Any:
    if isinstance(value, dict):
        names_phone = phone in value.values()
        return {
            key: ("" if item == phone else _scrubbed(item, phone))
            for key, item in value.items()
            if not (names_phone and key == "text")
        }
    if isinstance(value, list):
        return [_scrubbed(item, phone) for item in value]
    return value


def _forget_echoes(*, tenant: Tenant, phone: str) -> None:
    """Best effort: the keys expire with the reconciliation window whatever happens here."""
    instance_ids = WhatsAppInstance.objects.filter(tenant=tenant).values_list("pk", flat=True)
    keys = [_echo_key(instance_id, jid) for instance_id in instance_ids for jid in jid_candidates(e164_digits(phone))]
    if not keys:
        return
    try:
        get_redis().delete(*keys)
    except RedisError:
        logger.warning(
            "reconciliation echoes not dropped at erasure; they expire by themselves",
            extra={"tenant_id": str(tenant.pk)},
        )
