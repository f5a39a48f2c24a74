"""What happened to a message whose outcome we do not know: zero lost, zero sent twice.

A contact is `unconfirmed` when its provider call may have delivered it and no answer says so:
the process died between the call and the outcome write (`interrupted`), the call's deadline
passed after the request was written, or the provider answered something that may mean "sent"
(`outcome_unknown`, upstream #1247). Sending it again blindly could bill a customer twice;
calling it failed could tell the CRM "not sent" about a message the customer has. So it is
settled with evidence, in this order:

1. **the provider's echo** — Evolution emits `send.message` (and some builds a `fromMe`
   `messages.upsert`), WAHA `message.any` with `fromMe`, for every message it sends. The
   webhook settles a matching `unconfirmed`
   contact at once and remembers every echo in Redis for the window, for the contacts that
   become `unconfirmed` after their echo arrived (a deadline that passed a moment too late);
2. **the provider's own store** — Evolution's `POST /chat/findMessages`, WAHA's chat history
   (`GET /api/{session}/chats/{chatId}/messages`), for that chat around the send:
   our message with the same text → `sent`, with the provider's id (receipts then match);
3. **provably never received** — the send's deadline (and a minute) has passed, so no call
   started for it can still arrive, even from a process that was frozen and wakes up; the
   lookup read every record; and this provider demonstrably keeps our messages (it returns one we
   know it sent: an empty answer from a server that keeps nothing proves nothing) →
   `pending_retry` (the attempt counts), or `cancelled` when the queue was cancelled meanwhile;
4. otherwise it stays `unconfirmed` and is asked again every BILLING_RECONCILE_EVERY_SECONDS
   until BILLING_RECONCILE_WINDOW_SECONDS after the send; then `failed/outcome_unknown`, for a
   person to look at — never re-sent.

The CRM gets the settled outcome as a `contact.sent` / `contact.failed` callback, written in the
same transaction. Each decision is a compare-and-swap on `status = 'unconfirmed'`, so the
webhook, the queue's runner and a control message racing on one contact settle it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest, Now
from django.utils import timezone
from redis.exceptions import RedisError

from apps.billing import metrics
from apps.billing.constants import ContactErrorCode, ContactStatus, QueueStatus
from apps.billing.models import (
    BillingConfig,
    BillingContact,
    BillingQueue,
    BillingTemplateVariation,
)
from apps.billing.models.status_machine import transition_rows
from apps.billing.services import callbacks
from apps.billing.services.chat_history import store_outbound_message
from apps.common.db_connections import release_connection
from apps.common.redis_client import get_redis
from apps.common.services.evolution_lookup import jid_candidates
from apps.common.services.provider import client_for
from apps.common.services.provider_client import ProviderClient
from apps.common.services.provider_errors import ProviderError
from apps.connections.models import WhatsAppInstance
from apps.contacts.utils import e164_digits

logger = logging.getLogger(__name__)

LOOKUP_MARGIN = timedelta(seconds=60)  # provider clocks and second-granular timestamps
HISTORY_PROOF_TTL = {True: 3600.0, False: 600.0}  # seconds a "keeps our messages" answer is reused
ECHOES_KEPT = 50  # per chat
START_BOUND_MARGIN = 10.0  # seconds beyond the send deadline: the runner's start bound, clocks


def window() -> timedelta:
    return timedelta(seconds=float(settings.BILLING_RECONCILE_WINDOW_SECONDS))


def every() -> timedelta:
    return timedelta(seconds=float(settings.BILLING_RECONCILE_EVERY_SECONDS))


def same_text(a: str, b: str) -> bool:
    return _normal(a) == _normal(b)


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", str(text or "")).strip()


def _text_hash(text: str) -> str:
    return hashlib.sha256(_normal(text).encode()).hexdigest()[:32]


# ----------------------------------------------------------------------------- the echo
def _echo_key(instance_id: int, jid: str) -> str:
    return f"billing:echo:{instance_id}:{jid.split('@', 1)[0]}"


def remember_echo(*, instance_id: int, remote_jid: str, text: str, provider_message_id: str, at: datetime) -> None:
    """Keep a `send.message` echo for the window: a contact may become `unconfirmed` after it."""
    key = _echo_key(instance_id, remote_jid)
    entry = json.dumps({"id": provider_message_id, "h": _text_hash(text), "at": at.timestamp()})
    pipe = get_redis().pipeline(transaction=False)
    pipe.lpush(key, entry)
    pipe.ltrim(key, 0, ECHOES_KEPT - 1)
    pipe.expire(key, int(window().total_seconds()) + 600)
    pipe.execute()


def _find_echo(instance_id: int, phone: str, text: str, since: datetime) -> tuple[str, datetime] | None:
    wanted = _text_hash(text)
    for jid in jid_candidates(e164_digits(phone)):
        for raw in get_redis().lrange(_echo_key(instance_id, jid), 0, ECHOES_KEPT - 1):
            entry = json.loads(raw)
            at = datetime.fromtimestamp(float(entry["at"]), tz=UTC)
            if entry["h"] == wanted and at >= since - LOOKUP_MARGIN:
                return str(entry["id"]), at
    return None


def settle_from_echo(
    *, instance: WhatsAppInstance, remote_jid: str, text: str, provider_message_id: str, at: datetime | None = None
) -> str:
    """The webhook side: remember the echo and settle the `unconfirmed` contact it proves sent."""
    at = at or timezone.now()
    digits = remote_jid.split("@", 1)[0]
    if not provider_message_id or not digits.isdigit():
        return "ignored"
    try:
        remember_echo(
            instance_id=instance.pk, remote_jid=remote_jid, text=text, provider_message_id=provider_message_id, at=at
        )
    except RedisError:
        logger.warning("billing echo not remembered (Redis)", extra={"instance_id": instance.pk})
    phones = {f"+{jid.split('@', 1)[0]}" for jid in jid_candidates(digits)}
    candidates = BillingContact.objects.filter(
        tenant_id=instance.tenant_id,
        queue__instance=instance,
        phone__in=phones,
        status=ContactStatus.UNCONFIRMED,
        send_started_at__gte=at - window(),
        send_started_at__lte=at + LOOKUP_MARGIN,
    ).order_by("-send_started_at")
    for contact in candidates:
        if same_text(contact.rendered_message, text) and settle_sent(contact, provider_message_id, at, how="echo"):
            return "reconciled"
    return "echo"


# ----------------------------------------------------------------------------- asking the provider
_history: dict[int, tuple[float, bool]] = {}
_history_lock = threading.Lock()


def provider_keeps_history(instance: WhatsAppInstance, client: ProviderClient) -> bool:
    """Does this provider keep our sent messages (so that "not found" means "not sent")? Proved
    by looking up the latest message we know it accepted; cached per process."""
    with _history_lock:
        cached = _history.get(instance.pk)
    if cached is not None and time.monotonic() < cached[0]:
        return cached[1]
    known = (
        BillingContact.objects.filter(
            queue__instance=instance,
            status__in=[ContactStatus.SENT, ContactStatus.DELIVERED, ContactStatus.READ],
            sent_at__gte=timezone.now() - timedelta(days=7),
        )
        .exclude(provider_message_id="")
        .order_by("-sent_at")
        .values("phone", "provider_message_id", "sent_at")
        .first()
    )
    if known is None or known["sent_at"] is None:  # (the filter asked for a sent_at)
        return False  # nothing to prove it with yet (not cached: the next sent message will do)
    sent_at = known["sent_at"]
    release_connection()
    try:
        lookup = client.find_messages(
            known["phone"], sent_after=sent_at - LOOKUP_MARGIN, sent_before=sent_at + LOOKUP_MARGIN
        )
    except ProviderError:
        return False  # not cached: the provider did not answer, which proves nothing either way
    keeps = any(m.provider_message_id == known["provider_message_id"] for m in lookup.messages)
    with _history_lock:
        _history[instance.pk] = (time.monotonic() + HISTORY_PROOF_TTL[keeps], keeps)
    return keeps


@dataclass(frozen=True)
class Evidence:
    kind: str  # "sent" | "not_received" | "unknown"
    provider_message_id: str = ""
    at: datetime | None = None
    how: str = ""


def find_evidence(
    contact: BillingContact, instance: WhatsAppInstance, client: ProviderClient, now: datetime
) -> Evidence:
    started = contact.send_started_at or contact.updated_at
    echo = None
    try:
        echo = _find_echo(instance.pk, contact.phone, contact.rendered_message, started)
    except RedisError:
        logger.warning("billing echo look-up failed (Redis)", extra={"contact_id": contact.pk})
    if echo is not None:
        return Evidence("sent", echo[0], echo[1], "echo")
    release_connection()
    try:
        lookup = client.find_messages(
            contact.phone, sent_after=started - LOOKUP_MARGIN, sent_before=now + LOOKUP_MARGIN
        )
    except ProviderError as error:
        logger.info(
            "billing reconciliation: provider look-up failed",
            extra={"contact_id": contact.pk, "error_code": error.code},
        )
        return Evidence("unknown")
    for message in lookup.messages:
        if (
            message.from_me
            and same_text(message.text, contact.rendered_message)
            and (message.timestamp is None or message.timestamp >= started - LOOKUP_MARGIN)
        ):
            return Evidence("sent", message.provider_message_id, message.timestamp or started, "provider_lookup")
    if now - started >= settled_after() and lookup.complete and provider_keeps_history(instance, client):
        return Evidence("not_received")
    return Evidence("unknown")


def settled_after() -> timedelta:
    """ "Not found" counts only once no call started for this contact can still arrive: the send's
    total deadline has passed (libcurl aborts a call frozen past it; the runner refuses to start
    a call whose `start_sending` is older than START_BOUND), plus a margin."""
    return timedelta(seconds=float(settings.EVOLUTION_SEND_DEADLINE) + START_BOUND_MARGIN)


# ----------------------------------------------------------------------------- settling
@dataclass
class Summary:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    waiting: int = 0

    @property
    def settled(self) -> int:
        return self.sent + self.retried + self.failed


def reconcile_due(
    *, queue_id: Any, client: ProviderClient | None = None, limit: int = 20, now: datetime | None = None
) -> Summary:
    """Settle the queue's `unconfirmed` contacts whose turn has come (at most `limit`, each at
    most one provider look-up within its deadline)."""
    now = now or timezone.now()
    summary = Summary()
    due = list(
        BillingContact.objects.filter(
            queue_id=queue_id, status=ContactStatus.UNCONFIRMED, next_attempt_at__lte=now
        ).order_by("next_attempt_at")[:limit]
    )
    if not due:
        return summary
    queue = BillingQueue.objects.select_related("instance", "tenant").get(pk=queue_id)
    if queue.instance is None:
        for contact in due:
            summary.failed += settle_failed(contact, reason="no WhatsApp instance to ask")
        return summary
    client = client or client_for(queue.instance)
    for contact in due:
        evidence = find_evidence(contact, queue.instance, client, now)
        if evidence.kind == "sent":
            summary.sent += settle_sent(contact, evidence.provider_message_id, evidence.at or now, how=evidence.how)
        elif evidence.kind == "not_received":
            summary.retried += settle_not_received(contact, queue_status=queue.status)
        elif now - (contact.send_started_at or contact.updated_at) >= window():
            summary.failed += settle_failed(contact, reason="no evidence within the reconciliation window")
        else:
            BillingContact.objects.filter(pk=contact.pk, status=ContactStatus.UNCONFIRMED).update(
                next_attempt_at=now + every()
            )
            summary.waiting += 1
    if summary.settled:
        logger.info(
            "billing contacts reconciled",
            extra={
                "queue_id": str(queue_id),
                "sent": summary.sent,
                "retried": summary.retried,
                "failed": summary.failed,
            },
        )
    return summary


def _config(tenant_id: Any) -> BillingConfig | None:
    return BillingConfig.objects.filter(tenant_id=tenant_id).first()


def _callback(contact: BillingContact, event: str) -> None:
    config = _config(contact.tenant_id)
    if config is not None and config.callback_contact_events:
        callbacks.on_contact_outcome(contact, event, config=config, reconciled=True)


def settle_sent(contact: BillingContact, provider_message_id: str, at: datetime, *, how: str) -> int:
    """unconfirmed → sent with the provider's id, counted as sent (queue, variation), its chat
    history written and `contact.sent` queued, in one transaction (queue row locked first)."""
    from apps.billing.services.delivery_status import apply_early_receipt

    with transaction.atomic():
        BillingQueue.objects.select_for_update(no_key=True).filter(pk=contact.queue_id).exists()
        moved = transition_rows(
            BillingContact.objects.filter(pk=contact.pk),
            ContactStatus.SENT,
            from_statuses=[ContactStatus.UNCONFIRMED],
            provider_message_id=provider_message_id[:128],
            sent_at=at,
            error_code="",
            last_error="",
            next_attempt_at=None,
            claim_token=None,
            updated_at=Now(),
        )
        if not moved:
            return 0
        BillingQueue.objects.filter(pk=contact.queue_id).update(
            sent_count=F("sent_count") + 1, last_sent_at=Greatest(F("last_sent_at"), at), updated_at=Now()
        )
        if contact.variation_id:
            BillingTemplateVariation.objects.filter(pk=contact.variation_id).update(sent_count=F("sent_count") + 1)
        instance = WhatsAppInstance.objects.filter(billing_queues__pk=contact.queue_id).first()
        if instance is not None:  # a number deleted since leaves the queue without one: no chat to write in
            message = store_outbound_message(
                tenant_id=contact.tenant_id,
                instance=instance,
                phone=contact.phone,
                contact_name=contact.name,
                text=contact.rendered_message,
                provider_message_id=provider_message_id,
            )
            BillingContact.objects.filter(pk=contact.pk).update(message=message)
        contact.status = ContactStatus.SENT
        _callback(contact, "contact.sent")
    try:
        apply_early_receipt(tenant_id=contact.tenant_id, provider_message_id=provider_message_id)
    except RedisError:
        logger.warning("billing early receipt not looked up after reconciliation", extra={"contact_id": contact.pk})
    metrics.observe_reconciliation("sent", how)
    return 1


def settle_not_received(contact: BillingContact, *, queue_status: str) -> int:
    """unconfirmed → pending_retry (the provider provably never got it; the attempt counts), or
    cancelled when its queue was cancelled, or failed when its attempts are used up."""
    config = _config(contact.tenant_id)
    max_attempts = config.max_attempts if config else 3
    with transaction.atomic():
        BillingQueue.objects.select_for_update(no_key=True).filter(pk=contact.queue_id).exists()
        rows = BillingContact.objects.filter(pk=contact.pk)
        unconfirmed = [ContactStatus.UNCONFIRMED]
        if queue_status == QueueStatus.CANCELLED:
            moved = transition_rows(
                rows,
                ContactStatus.CANCELLED,
                from_statuses=unconfirmed,
                error_code=ContactErrorCode.CANCELLED,
                next_attempt_at=None,
            )
            counter, outcome = "cancelled_count", "cancelled"
        elif contact.attempts >= max_attempts:
            moved = transition_rows(
                rows,
                ContactStatus.FAILED,
                from_statuses=unconfirmed,
                error_code=ContactErrorCode.MAX_ATTEMPTS,
                last_error="never received, attempts used up",
                next_attempt_at=None,
            )
            counter, outcome = "failed_count", "failed"
        else:
            moved = transition_rows(
                rows,
                ContactStatus.PENDING_RETRY,
                from_statuses=unconfirmed,
                next_attempt_at=Now(),
                claim_token=None,
                last_error="never received by the provider: sent again",
            )
            counter, outcome = None, "resent"
        if not moved:
            return 0
        if counter:
            BillingQueue.objects.filter(pk=contact.queue_id).update(**{counter: F(counter) + 1}, updated_at=Now())
        if outcome == "failed":
            if contact.variation_id:
                BillingTemplateVariation.objects.filter(pk=contact.variation_id).update(
                    failed_count=F("failed_count") + 1
                )
            _callback(contact, "contact.failed")
    metrics.observe_reconciliation(outcome, "provider_lookup")
    return 1


def settle_failed(contact: BillingContact, *, reason: str) -> int:
    """unconfirmed → failed/outcome_unknown: the window closed without evidence. Never re-sent."""
    with transaction.atomic():
        BillingQueue.objects.select_for_update(no_key=True).filter(pk=contact.queue_id).exists()
        moved = transition_rows(
            BillingContact.objects.filter(pk=contact.pk),
            ContactStatus.FAILED,
            from_statuses=[ContactStatus.UNCONFIRMED],
            error_code=ContactErrorCode.OUTCOME_UNKNOWN,
            last_error=reason[:500],
            next_attempt_at=None,
        )
        if not moved:
            return 0
        BillingQueue.objects.filter(pk=contact.queue_id).update(failed_count=F("failed_count") + 1, updated_at=Now())
        if contact.variation_id:
            BillingTemplateVariation.objects.filter(pk=contact.variation_id).update(failed_count=F("failed_count") + 1)
        _callback(contact, "contact.failed")
    metrics.observe_reconciliation("still_unknown", "window")
    return 1


def sweep_stranded(now: datetime | None = None) -> int:
    """`sending` contacts older than the send deadline (plus a margin: `settled_after`) whose call
    nobody will finish — their holder died, or lost its queue to a pause, a cancel or a stale release —
    become `unconfirmed` (`interrupted`). In any queue status: a queue never completes around
    them, and reconciliation settles them."""
    from apps.billing.services.queue_lease import mark_interrupted

    now = now or timezone.now()
    limit = now - settled_after()
    return mark_interrupted(BillingContact.objects.filter(status=ContactStatus.SENDING, send_started_at__lt=limit))


def queues_to_reconcile(now: datetime | None = None) -> list[str]:
    """Queues no runner holds with `unconfirmed` contacts due (a running queue's runner settles
    its own)."""
    now = now or timezone.now()
    return [
        str(pk)
        for pk in BillingContact.objects.filter(status=ContactStatus.UNCONFIRMED, next_attempt_at__lte=now)
        .exclude(queue__status=QueueStatus.RUNNING)
        .values_list("queue_id", flat=True)
        .distinct()[:500]
    ]
