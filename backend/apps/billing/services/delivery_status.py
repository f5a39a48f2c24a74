"""Delivery receipts from the provider: statuses only move forward, counters count once.

`messages.update` (and `send.message`) name a message by its provider id (`keyId`, v1 `id`) and
a status. A contact moves `sent → delivered → read` (or `sent → read`); anything else — a late
DELIVERY_ACK after READ, the same receipt again (the provider retries webhooks up to 10 times),
an ERROR for a message already accepted — changes nothing.

Each move is one short transaction: the queue counters first (the lock order of
queue_lease.py: queue row, then contact rows), then a compare-and-swap on the contact's old
status. When the swap matches no row (another delivery of the same receipt won), the
transaction is rolled back, counters included, and the new status is re-read. So duplicates and
shuffled orders can never count twice: `sent → read` counts delivered and read together (read
implies delivered), and a later DELIVERY_ACK finds nothing to do.

A receipt can beat the worker: the provider may report DELIVERY_ACK before the worker has
written the provider id on the contact. Such receipts are kept in Redis for
BILLING_EARLY_RECEIPT_TTL seconds. The worker looks them up for what it sent, in batches
(`apply_early_receipts`: the last half second's messages, and everything at the end of a run);
`record_outbound_message` does it for its own message (`apply_early_receipt`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone
from redis.exceptions import RedisError

from apps.billing.constants import ContactStatus
from apps.billing.models import (
    BillingContact,
    BillingQueue,
    BillingTemplateVariation,
    CallbackEvent,
)
from apps.billing.models.status_machine import transition_rows
from apps.chat.models import Message
from apps.common.redis_client import get_redis, text

logger = logging.getLogger(__name__)

# renderStatus.ts: 0 ERROR, 1 PENDING, 2 SERVER_ACK, 3 DELIVERY_ACK, 4 READ, 5 PLAYED (v1 may send numbers).
NUMERIC_STATUS = {0: "ERROR", 1: "PENDING", 2: "SERVER_ACK", 3: "DELIVERY_ACK", 4: "READ", 5: "PLAYED"}
PROVIDER_TO_CONTACT = {
    "DELIVERY_ACK": ContactStatus.DELIVERED,
    "READ": ContactStatus.READ,
    "PLAYED": ContactStatus.READ,
}
_RANK: dict[str, int] = {ContactStatus.SENT: 1, ContactStatus.DELIVERED: 2, ContactStatus.READ: 3}
_MESSAGE_RANK = {Message.Status.PENDING: 0, Message.Status.SENT: 1, Message.Status.DELIVERED: 2, Message.Status.READ: 3}
_CAS_ATTEMPTS = 3


class _Raced(Exception):
    """The contact changed between our read and our swap: roll back and look again."""


def provider_status_name(raw: Any) -> str:
    """`"DELIVERY_ACK"`, `3` or `"3"` → `"DELIVERY_ACK"`; unknown values → `""`."""
    if isinstance(raw, bool):
        return ""
    if isinstance(raw, int) or (isinstance(raw, str) and raw.strip().isdigit()):
        return NUMERIC_STATUS.get(int(raw), "")
    return str(raw or "").strip().upper()


def target_status(raw: Any) -> str | None:
    """The contact status a provider status means, or None when it moves nothing."""
    return PROVIDER_TO_CONTACT.get(provider_status_name(raw))


def apply_provider_status(
    *, tenant_id: Any, provider_message_id: str, provider_status: Any, remember_early: bool = True
) -> str:
    """Apply one receipt; returns `moved`, `unchanged`, `ignored` or `unknown_message`."""
    target = target_status(provider_status)
    if target is None or not provider_message_id:
        return "ignored"
    _advance_chat_message(tenant_id, provider_message_id, target)
    for _ in range(_CAS_ATTEMPTS):
        row = (
            BillingContact.objects.filter(tenant_id=tenant_id, provider_message_id=provider_message_id)
            .values("pk", "status", "queue_id", "variation_id")
            .first()
        )
        if row is None:
            if remember_early:
                _remember_early(tenant_id, provider_message_id, target)
            return "unknown_message"
        old = row["status"]
        if not ContactStatus.can_transition(old, target):
            return "unchanged"
        try:
            _move(row, old, target, tenant_id)
        except _Raced:
            continue
        logger.info(
            "billing contact %s",
            target,
            extra={"contact_id": row["pk"], "queue_id": str(row["queue_id"]), "from_status": old, "to_status": target},
        )
        return "moved"
    return "unchanged"


def _move(row: Mapping[str, Any], old: str, target: str, tenant_id: Any) -> None:
    now = timezone.now()
    counters = ["read_count"] if target == ContactStatus.READ else []
    if target == ContactStatus.DELIVERED or old == ContactStatus.SENT:
        counters.append("delivered_count")  # sent → read: read implies delivered
    fields: dict[str, Any] = {"updated_at": now, "delivered_at": Coalesce(F("delivered_at"), now)}
    if target == ContactStatus.READ:
        fields["read_at"] = Coalesce(F("read_at"), now)
    with transaction.atomic():
        BillingQueue.objects.filter(pk=row["queue_id"]).update(**{name: F(name) + 1 for name in counters})
        if not transition_rows(BillingContact.objects.filter(pk=row["pk"]), target, from_statuses=[old], **fields):
            raise _Raced()
        if row["variation_id"]:
            BillingTemplateVariation.objects.filter(pk=row["variation_id"]).update(
                **{name: F(name) + 1 for name in counters}
            )
        from apps.billing.services.callbacks import on_contact_outcome

        event = CallbackEvent.CONTACT_READ if target == ContactStatus.READ else CallbackEvent.CONTACT_DELIVERED
        on_contact_outcome(BillingContact(pk=row["pk"], tenant_id=tenant_id), event)


def _advance_chat_message(tenant_id: Any, provider_message_id: str, target: str) -> None:
    """The chat history row follows the same forward-only rule (one UPDATE)."""
    status = Message.Status.READ if target == ContactStatus.READ else Message.Status.DELIVERED
    lower = [name for name, rank in _MESSAGE_RANK.items() if rank < _MESSAGE_RANK[status]]
    now = timezone.now()
    fields: dict[str, Any] = {"status": status, "delivered_at": Coalesce(F("delivered_at"), now)}
    if status == Message.Status.READ:
        fields["read_at"] = Coalesce(F("read_at"), now)
    Message.objects.filter(
        tenant_id=tenant_id,
        provider_message_id=provider_message_id,
        direction=Message.Direction.OUTBOUND,
        status__in=lower,
    ).update(**fields)


# ----------------------------------------------------------------------------- early receipts
# Plain keys on the process's shared Redis client, not Django's cache: the worker looks one up
# after every send, and Django's RedisCache builds a new client object per call (~0.5 ms of
# Python each time). The cache's key prefix still separates deployments sharing a Redis.
def _early_key(tenant_id: Any, provider_message_id: str) -> str:
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    return f"{prefix}:billing:early-receipt:{tenant_id}:{provider_message_id[:128]}"


def _remember_early(tenant_id: Any, provider_message_id: str, target: str) -> None:
    key = _early_key(tenant_id, provider_message_id)
    redis = get_redis()
    known = text(redis.get(key))
    if known is None or _RANK.get(target, 0) > _RANK.get(known, 0):
        redis.set(key, target, ex=int(settings.BILLING_EARLY_RECEIPT_TTL))


def apply_early_receipt(*, tenant_id: Any, provider_message_id: str) -> str:
    """Apply a receipt that arrived before the contact knew its provider id, if one is kept."""
    if not provider_message_id:
        return "ignored"
    target = text(get_redis().getdel(_early_key(tenant_id, provider_message_id)))
    return "ignored" if target is None else _apply_early(tenant_id, provider_message_id, target)


def apply_early_receipts(*, tenant_id: Any, provider_message_ids: list[str]) -> int:
    """`apply_early_receipt` for several messages in one round trip (a pipeline of GETDELs):
    the worker checks the messages it sent in batches, not one by one. Returns how many
    receipts were waiting."""
    ids = [pmid for pmid in provider_message_ids if pmid]
    if not ids:
        return 0
    pipe = get_redis().pipeline(transaction=False)
    for pmid in ids:
        pipe.getdel(_early_key(tenant_id, pmid))
    waiting = [(pmid, target) for pmid, target in zip(ids, pipe.execute(), strict=True) if target is not None]
    for index, (pmid, target) in enumerate(waiting):
        try:
            _apply_early(tenant_id, pmid, target)
        except Exception:
            # Taken out of Redis but not applied: put this one and the rest back, so a later
            # look-up still finds them, then let the caller see the error.
            for later_pmid, later_target in waiting[index:]:
                try:
                    _remember_early(tenant_id, later_pmid, later_target)
                except RedisError:
                    logger.warning("billing early receipt lost", extra={"tenant_id": str(tenant_id)})
            raise
    return len(waiting)


def _apply_early(tenant_id: Any, provider_message_id: str, target: str) -> str:
    status = "READ" if target == ContactStatus.READ else "DELIVERY_ACK"
    return apply_provider_status(
        tenant_id=tenant_id, provider_message_id=provider_message_id, provider_status=status, remember_early=False
    )
