"""Signed callbacks to the client's system (Standard Webhooks), through an outbox table.

    enqueue_event(...)  writes a CallbackDelivery row in the caller's transaction (the event and
                        the change it reports commit together, or neither does)

Delivery is services/callback_delivery.py, in its own process (`run_billing_callbacks`): a
slow or hostile client endpoint can only slow its own tenant's callbacks. Every attempt has a
total deadline, follows no redirect and may only reach public addresses
(apps/common/url_safety.py).

Signing follows https://www.standardwebhooks.com: headers `webhook-id`, `webhook-timestamp`
(Unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`. The key
is the tenant's `BillingConfig.callback_secret`: for `whsec_<base64>` secrets the key is the
decoded part (what every Standard Webhooks library expects); older secrets without the prefix
are used as UTF-8 bytes. The secret is read at send time, so a rotated secret signs retries too.

Per-contact events (`contact.*`) are sent only when the tenant turns on
`BillingConfig.callback_contact_events`, and are batched: events of one queue accumulate in one
open `contact.batch` delivery for BILLING_CALLBACK_BATCH_SECONDS (or up to
BILLING_CALLBACK_BATCH_MAX events), then go out as one request. A batch is sealed by its first
attempt (`attempts > 0`), after which its payload never changes, so every retry is identical.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from apps.billing.models import (
    BillingConfig,
    BillingContact,
    BillingQueue,
    CallbackDelivery,
    CallbackEvent,
)
from apps.tenancy.models import Tenant

logger = logging.getLogger(__name__)

QUEUE_EVENTS = frozenset(
    {
        CallbackEvent.QUEUE_STARTED,
        CallbackEvent.QUEUE_PAUSED,
        CallbackEvent.QUEUE_RESUMED,
        CallbackEvent.QUEUE_COMPLETED,
        CallbackEvent.QUEUE_CANCELLED,
    }
)
CONTACT_EVENTS = frozenset(
    {
        CallbackEvent.CONTACT_SENT,
        CallbackEvent.CONTACT_FAILED,
        CallbackEvent.CONTACT_DELIVERED,
        CallbackEvent.CONTACT_READ,
        CallbackEvent.CONTACT_REPLIED,
        CallbackEvent.CONTACT_OPTED_OUT,
    }
)
#: Sent as they happen, one delivery each, whatever `callback_contact_events` says (reply_actions.py).
REPLY_EVENTS = frozenset({CallbackEvent.REPLY_RECEIVED})
#: Events of apps above billing (charges), sent like queue events: one delivery each.
CHARGE_EVENTS = frozenset(
    {
        CallbackEvent.CHARGE_PAID,
        CallbackEvent.CHARGE_REOPENED,
        CallbackEvent.CHARGE_ESCALATED,
        CallbackEvent.CADENCE_STEP_SKIPPED,
    }
)
#: A WhatsApp number's life (services/number_protection.py): one delivery each.
NUMBER_EVENTS = frozenset({CallbackEvent.NUMBER_PROTECTED})
SECRET_PREFIX = "whsec_"

__all__ = [
    "enqueue_event",
    "on_contact_outcome",
    "on_queue_cancelled",
    "on_queue_completed",
    "on_queue_paused",
    "on_queue_resumed",
    "on_queue_started",
    "retry_delay",
    "send_again",
    "sign",
    "signature_headers",
    "signing_key",
]


# ----------------------------------------------------------------------------- signing
def signing_key(secret: str) -> bytes:
    """The HMAC key of a tenant secret: base64-decoded for `whsec_...`, else the UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            pass  # not valid base64 after all: fall back to the raw bytes (still secret)
    return secret.encode("utf-8")


def sign(secret: str, msg_id: str, timestamp: int | str, body: bytes | str) -> str:
    """`v1,<base64 HMAC-SHA256>` over `{msg_id}.{timestamp}.{body}` (Standard Webhooks)."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    message = f"{msg_id}.{timestamp}.".encode() + raw
    digest = hmac.new(signing_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


# ----------------------------------------------------------------------------- enqueue
def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    jsonable: dict[str, Any] = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    return jsonable


def _target_url(config: BillingConfig, queue: BillingQueue | None) -> str:
    """The request's `callback_url`, else the tenant's default."""
    if queue is not None:
        url = BillingQueue.objects.filter(pk=queue.pk).values_list("billing_campaign__callback_url", flat=True).first()
        if url:
            return url
    return config.callback_url or ""


def enqueue_event(
    *,
    tenant: Tenant,
    queue: BillingQueue | None,
    event: str,
    data: dict[str, Any],
    config: BillingConfig | None = None,
) -> CallbackDelivery | None:
    """Record `event` for delivery to the tenant's callback URL; None when nothing is to be sent
    (no URL, or a per-contact event while the tenant has them off). Call it inside the
    transaction that makes the change, so both commit together."""
    if (
        event not in QUEUE_EVENTS
        and event not in CONTACT_EVENTS
        and event not in REPLY_EVENTS
        and event not in CHARGE_EVENTS
        and event not in NUMBER_EVENTS
    ):
        raise ValueError(f"unknown callback event {event!r}")
    config = config or BillingConfig.for_tenant(tenant)
    if event in CONTACT_EVENTS and not config.callback_contact_events:
        return None
    url = _target_url(config, queue)
    if not url:
        return None
    now = timezone.now()
    data = _jsonable(data)
    if event in CONTACT_EVENTS and queue is not None:
        return _add_to_batch(
            tenant_id=tenant.pk, queue=queue, url=url, item={"type": str(event), "at": now.isoformat(), **data}, now=now
        )
    return CallbackDelivery.objects.create(
        tenant_id=tenant.pk,
        queue=queue,
        event=str(event),
        webhook_id=_new_id(),
        url=url,
        payload={"type": str(event), "timestamp": now.isoformat(), "data": data},
        next_attempt_at=now,
        give_up_at=now + _give_up_after(),
    )


def _add_to_batch(
    *, tenant_id: Any, queue: BillingQueue, url: str, item: dict[str, Any], now: datetime
) -> CallbackDelivery:
    """Append to the queue's open batch (never attempted, not full), or open a new one. The row
    lock makes a concurrent first attempt wait or skip: a sealed batch is never appended to."""
    limit = int(settings.BILLING_CALLBACK_BATCH_MAX)
    with transaction.atomic():
        batch = (
            CallbackDelivery.objects.select_for_update()
            .filter(
                tenant_id=tenant_id,
                queue=queue,
                event=CallbackEvent.CONTACT_BATCH,
                url=url,
                status=CallbackDelivery.Status.PENDING,
                attempts=0,
                item_count__lt=limit,
            )
            .order_by("-id")
            .first()
        )
        if batch is not None:
            batch.payload["data"]["events"].append(item)
            batch.item_count += 1
            batch.save(update_fields=["payload", "item_count", "updated_at"])
            return batch
        return CallbackDelivery.objects.create(
            tenant_id=tenant_id,
            queue=queue,
            event=CallbackEvent.CONTACT_BATCH,
            webhook_id=_new_id(),
            url=url,
            payload={
                "type": CallbackEvent.CONTACT_BATCH.value,
                "timestamp": now.isoformat(),
                "data": {"queue_id": str(queue.pk), "events": [item]},
            },
            next_attempt_at=now + timedelta(seconds=float(settings.BILLING_CALLBACK_BATCH_SECONDS)),
            give_up_at=now + _give_up_after(),
        )


def _new_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def _give_up_after() -> timedelta:
    return timedelta(hours=float(settings.BILLING_CALLBACK_GIVE_UP_HOURS))


# ----------------------------------------------------------------------------- hooks (worker, queue control)
def _queue_data(queue: BillingQueue, **extra: Any) -> dict[str, Any]:
    """Ids, status and counters, read fresh (the caller's instance may predate F() updates)."""
    row: Mapping[str, Any] = (
        BillingQueue.objects.filter(pk=queue.pk)
        .values(
            "status",
            "template_type",
            "billing_campaign_id",
            "billing_campaign__external_id",
            "billing_campaign__metadata",
            "total_contacts",
            "sent_count",
            "failed_count",
            "cancelled_count",
            "skipped_count",
            "delivered_count",
            "read_count",
            "replied_count",
        )
        .first()
    ) or {}
    counters = {
        name: row.get(f"{name}_count", 0)
        for name in ("sent", "failed", "cancelled", "skipped", "delivered", "read", "replied")
    }
    return {
        "queue_id": str(queue.pk),
        "billing_campaign_id": str(row.get("billing_campaign_id") or ""),
        "external_id": row.get("billing_campaign__external_id") or "",
        "template_type": row.get("template_type") or "",
        "status": row.get("status") or queue.status,
        "counters": {"total": row.get("total_contacts", 0), **counters},
        "metadata": row.get("billing_campaign__metadata") or {},
        **extra,
    }


def _queue_event(
    queue: BillingQueue, event: str, *, config: BillingConfig | None = None, **extra: Any
) -> CallbackDelivery | None:
    # Most tenants have no callback URL: find that out before reading fresh counters for a
    # payload nobody will receive (the worker calls this when a queue starts and completes).
    config = config or BillingConfig.for_tenant(queue.tenant)
    if not _target_url(config, queue):
        return None
    return enqueue_event(tenant=queue.tenant, queue=queue, event=event, data=_queue_data(queue, **extra), config=config)


def on_queue_started(queue: BillingQueue, *, config: BillingConfig | None = None) -> CallbackDelivery | None:
    return _queue_event(queue, CallbackEvent.QUEUE_STARTED, config=config)


def on_queue_paused(queue: BillingQueue, reason: str) -> CallbackDelivery | None:
    """`reason`: manual, business_hours, instance_down, ... (a short code, no free text)."""
    return _queue_event(queue, CallbackEvent.QUEUE_PAUSED, reason=str(reason)[:100])


def on_queue_resumed(queue: BillingQueue) -> CallbackDelivery | None:
    return _queue_event(queue, CallbackEvent.QUEUE_RESUMED)


def on_queue_completed(queue: BillingQueue, *, config: BillingConfig | None = None) -> CallbackDelivery | None:
    return _queue_event(queue, CallbackEvent.QUEUE_COMPLETED, config=config)


def on_queue_cancelled(queue: BillingQueue) -> CallbackDelivery | None:
    return _queue_event(queue, CallbackEvent.QUEUE_CANCELLED)


def on_contact_outcome(
    contact: BillingContact, event: str, *, config: BillingConfig | None = None, **extra: Any
) -> CallbackDelivery | None:
    """A per-contact event (`contact.sent`, `contact.failed`, ...). Pass the worker's cached
    `config` to save a query; nothing is read or written when the tenant has these events off."""
    if event not in CONTACT_EVENTS:
        raise ValueError(f"not a per-contact event: {event!r}")
    config = config or BillingConfig.objects.filter(tenant_id=contact.tenant_id).first()
    if config is None or not config.callback_contact_events:
        return None
    row = (
        BillingContact.objects.filter(pk=contact.pk)
        .values(
            "status",
            "external_id",
            "queue_id",
            "error_code",
            "provider_message_id",
            "sent_at",
            "delivered_at",
            "read_at",
            "replied_at",
        )
        .first()
    )
    if row is None:
        return None
    queue = BillingQueue.objects.select_related("tenant").get(pk=row["queue_id"])
    data = {"contact_id": contact.pk, **{k: v for k, v in row.items() if k != "queue_id"}, **extra}
    return enqueue_event(tenant=queue.tenant, queue=queue, event=event, data=data, config=config)


# ----------------------------------------------------------------------------- retries
def retry_delay(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: base·2^(n-1), capped."""
    base = float(settings.BILLING_CALLBACK_RETRY_BASE_SECONDS)
    cap = float(settings.BILLING_CALLBACK_RETRY_MAX_SECONDS)
    return min(base * (2.0 ** max(attempts - 1, 0)), cap)


def send_again(deliveries: Iterable[CallbackDelivery]) -> int:
    """Admin "send again": due now, with a fresh retry window; the same `webhook-id`."""
    now = timezone.now()
    ids = [delivery.pk for delivery in deliveries]
    return CallbackDelivery.objects.filter(pk__in=ids).update(
        status=CallbackDelivery.Status.PENDING,
        next_attempt_at=now,
        give_up_at=now + _give_up_after(),
        last_error="",
        updated_at=now,
    )
