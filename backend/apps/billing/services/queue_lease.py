"""Who holds a queue, and the fenced writes a holder may make.

A worker holds a queue through a lease: `status = running`, `processing_by`, and a
`lease_token` that is new on every claim. Every write the worker makes afterwards names the
token in its WHERE clause (contacts carry it as `claim_token`), so a worker that lost its lease —
released as stale while it was frozen, say — writes nothing: its statements match no row.

Lock order is always queue row first, then contact rows (the stale release does the same), so a
release racing an outcome write cannot deadlock.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.db import OperationalError, connection, transaction
from django.db.models import Case, F, QuerySet, When
from django.db.models.functions import Now
from django.utils import timezone

from apps.billing.constants import (
    UNFINISHED_CONTACT_STATUSES,
    UNSENT_CONTACT_STATUSES,
    ContactErrorCode,
    ContactStatus,
    QueueStatus,
    TransitionKind,
)
from apps.billing.models import (
    BillingContact,
    BillingQueue,
    BillingTemplateVariation,
    SuppressedPhone,
)
from apps.billing.models.status_machine import status_move_sql, transition_rows
from apps.billing.services.chat_history import (
    OutboundChat,
    next_message_id_sql,
    outbound_chat_ctes,
)
from apps.common import prepared_sql
from apps.common.keyed_hash import phone_hash

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LeaseLost(Exception):
    """The queue is no longer ours (released, paused, cancelled): stop without writing."""


@dataclass(frozen=True)
class Lease:
    queue_id: uuid.UUID
    token: uuid.UUID
    worker_id: str
    first_start: bool = False

    def queue_rows(self) -> QuerySet[BillingQueue]:
        return BillingQueue.objects.filter(pk=self.queue_id, lease_token=self.token, status=QueueStatus.RUNNING)


def claim_queue(queue_id: str | uuid.UUID, worker_id: str) -> Lease | None:
    """pending → running for this worker, if the queue is due; None when someone else has it,
    it is paused/finished, or its time has not come. `Lease.first_start` tells whether this is
    the queue's first run (for the `queue.started` callback)."""
    token = uuid.uuid4()
    table = BillingQueue._meta.db_table
    with connection.cursor() as cursor:
        # now() is the statement's transaction time, so `started_at = now()` in RETURNING is
        # true exactly when COALESCE filled it in: this claim is the first start.
        cursor.execute(
            f"""UPDATE {table} SET {_SET_RUNNING}, processing_by = %s, lease_token = %s, last_heartbeat = now(),
                       started_at = COALESCE(started_at, now()), pause_reason = '', next_resume_at = NULL,
                       updated_at = now()
                 WHERE id = %s AND {_WHERE_CLAIMABLE}
                   AND (scheduled_for IS NULL OR scheduled_for <= now())
                   AND (next_resume_at IS NULL OR next_resume_at <= now())
             RETURNING started_at = now()""",
            [worker_id[:200], token, queue_id],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return Lease(uuid.UUID(str(queue_id)), token, worker_id, first_start=bool(row[0]))


def current_status(lease: Lease) -> str | None:
    """The queue's status if we still hold it; None when the lease is gone."""
    row = BillingQueue.objects.filter(pk=lease.queue_id).values_list("status", "lease_token").first()
    if row is None or row[1] != lease.token:
        return None
    return row[0]


def claim_contacts(lease: Lease, limit: int) -> list[BillingContact]:
    """Up to `limit` unsent contacts that are due, marked with our token; locks held only for
    this short transaction (never across an HTTP call). Other workers skip locked rows."""
    with transaction.atomic():
        if not lease.queue_rows().select_for_update(no_key=True).exists():
            raise LeaseLost()
        contacts = list(
            BillingContact.objects.raw(_CLAIM, {"queue": lease.queue_id, "token": lease.token, "limit": int(limit)})
        )
    return sorted(contacts, key=lambda contact: contact.pk)


_CONTACT = BillingContact._meta.db_table
_QUEUE = BillingQueue._meta.db_table
_VARIATION = BillingTemplateVariation._meta.db_table
_SUPPRESSED = SuppressedPhone._meta.db_table

# Pick and mark in one statement, returning the rows. A token other than ours is a leftover of
# an earlier lease: only one lease exists at a time, and every send re-checks it (start_sending).
_CLAIM = f"""
WITH picked AS (
    SELECT id FROM {_CONTACT}
     WHERE queue_id = %(queue)s AND status IN ('pending', 'pending_retry')
       AND (next_attempt_at IS NULL OR next_attempt_at <= now())
       AND (claim_token IS NULL OR claim_token <> %(token)s)
     ORDER BY id LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
UPDATE {_CONTACT} c SET claim_token = %(token)s, claimed_at = now() FROM picked WHERE c.id = picked.id
RETURNING c.*
"""

# The hot path is plain SQL, one prepared statement each (apps.common.prepared_sql): planned
# once per connection, no ORM query building per message.
_SET_SENDING, _WHERE_SENDABLE = status_move_sql(
    TransitionKind.CONTACT, ContactStatus.SENDING, from_statuses=UNSENT_CONTACT_STATUSES, alias="c"
)
_SET_SENT, _WHERE_SENDING = status_move_sql(
    TransitionKind.CONTACT, ContactStatus.SENT, from_statuses=[ContactStatus.SENDING]
)
_SET_RUNNING, _WHERE_CLAIMABLE = status_move_sql(
    TransitionKind.QUEUE, QueueStatus.RUNNING, from_statuses=[QueueStatus.PENDING]
)
_START_SENDING = f"""
UPDATE {_CONTACT} c SET {_SET_SENDING}, attempts = c.attempts + 1, updated_at = now(),
       send_started_at = now(), rendered_message = %(text)s
  FROM {_QUEUE} q
 WHERE c.id = %(contact)s AND c.claim_token = %(token)s AND {_WHERE_SENDABLE}
   AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= now())
   AND q.id = c.queue_id AND q.lease_token = %(token)s AND q.status = 'running'
   AND NOT EXISTS (SELECT 1 FROM {_SUPPRESSED} s WHERE s.tenant_id = c.tenant_id
                      AND (s.phone = c.phone OR s.phone_hash = %(phone_hash)s))
"""


@functools.cache
def _sent_statement(*, with_chat: bool) -> str:
    """sending → sent as ONE statement (its own transaction in autocommit). Every part below
    `done` runs only when `done` changed the contact, so a fenced-out outcome writes nothing.
    Lock order as everywhere: `q` locks the queue row before `done` touches the contact (the
    contact UPDATE reads `q`), then the variation, then the chat rows (the conversation's
    INSERT reads `variation` first: see `outbound_chat_ctes`)."""
    chat = outbound_chat_ctes(rows="done", message_id="message_id", after="variation") if with_chat else ""
    return f"""
WITH q AS (
    SELECT id FROM {_QUEUE} WHERE id = %(queue)s FOR NO KEY UPDATE
), {"message_id AS (SELECT " + next_message_id_sql() + " AS id)," if with_chat else ""}
done AS (
    UPDATE {_CONTACT} SET {_SET_SENT}, provider_message_id = %(pmid)s, rendered_message = %(text)s,
           sent_at = now(), claim_token = NULL, claimed_at = NULL, last_error = '', error_code = '',
           {"message_id = (SELECT id FROM message_id)," if with_chat else ""} updated_at = now()
     WHERE id = %(contact)s AND claim_token = %(token)s AND {_WHERE_SENDING} AND EXISTS (SELECT 1 FROM q)
    RETURNING variation_id
), counters AS (
    UPDATE {_QUEUE} SET sent_count = sent_count + 1, updated_at = now(), last_sent_at = now(),
           last_heartbeat = CASE WHEN lease_token = %(token)s THEN now() ELSE last_heartbeat END
     WHERE id = (SELECT id FROM q) AND EXISTS (SELECT 1 FROM done)
), variation AS (
    UPDATE {_VARIATION} SET sent_count = sent_count + 1 WHERE id IN (SELECT variation_id FROM done)
    RETURNING id
){"," + chat if chat else ""}
SELECT count(*) FROM done
"""


# deadlock_detected, serialization_failure: PostgreSQL rolled the whole statement back.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
_OUTCOME_ATTEMPTS = 3


def _then(then: Callable[[], object]) -> None:
    """The callbacks reporting an outcome, inside the outcome's transaction but under a savepoint:
    if writing them fails, the outcome still commits (a message the provider accepted must never
    stay `sending` for want of its callback); the loss is logged for a person."""
    try:
        with transaction.atomic():
            then()
    except Exception:
        logger.exception("billing outcome callback not written; the outcome is kept")


def retrying_conflicts(write: Callable[[], T]) -> T:
    """Run an outcome write (one statement, or one `atomic()` block with its callbacks) again if
    PostgreSQL chose it as a deadlock victim. The failed attempt changed nothing and the write is
    fenced, so running it again is exactly the write that was meant; raising instead would leave
    a delivered message `sending` (later `interrupted`). Not inside a caller's transaction:
    there the error has already broken it."""
    for attempt in range(1, _OUTCOME_ATTEMPTS + 1):
        try:
            return write()
        except OperationalError as exc:
            sqlstate = getattr(exc.__cause__, "sqlstate", None)
            if sqlstate not in _RETRYABLE_SQLSTATES or attempt == _OUTCOME_ATTEMPTS or connection.in_atomic_block:
                raise
            logger.warning(
                "billing outcome write conflicted; running it again", extra={"sqlstate": sqlstate, "attempt": attempt}
            )
    raise AssertionError("unreachable")


def start_sending(lease: Lease, contact: BillingContact, *, text: str) -> bool:
    """pending/pending_retry → sending, in one statement that also checks the queue is still
    ours and running (the fence) and that the phone is not on the tenant's suppression list (a
    reply can opt out while the queue runs), and that nobody postponed the contact after we
    claimed it (a hold moves `next_attempt_at` forward). From here the row says "handed to the
    provider", with the text and the instant reconciliation needs: a crash now ends
    `unconfirmed`, never a blind resend. False: see the runner's `_not_started`."""
    # phone_hash: an opt-out whose phone was erased survives as its keyed hash (opt_out.py).
    updated = prepared_sql.run(
        _START_SENDING,
        {"contact": contact.pk, "token": lease.token, "text": text, "phone_hash": phone_hash(contact.phone)},
    ).rowcount
    if updated:
        contact.status = ContactStatus.SENDING
        contact.attempts += 1
    return bool(updated)


def record_sent(
    lease: Lease,
    contact: BillingContact,
    *,
    provider_message_id: str,
    rendered: str,
    chat: OutboundChat | None = None,
    then: Callable[[], object] | None = None,
) -> bool:
    """sending → sent with the queue's and the variation's counters and, given `chat`, the
    chat history (conversation, message, the contact's link to it): one statement, so one
    round trip and one commit. Fenced by the contact's claim token: a stale release cleared it,
    so a frozen worker records nothing; a pause or cancel did not, so the real outcome of an
    in-flight message is kept. `then` runs in the same transaction when the outcome was
    recorded (the callbacks that report it: they commit together or not at all)."""
    params = {
        "token": lease.token,
        "queue": lease.queue_id,
        "contact": contact.pk,
        "pmid": provider_message_id[:128],
        "text": rendered,
    }
    if chat is not None:
        params.update(chat.params(text=rendered, provider_message_id=provider_message_id))
    sql = _sent_statement(with_chat=chat is not None)

    def write() -> int:
        if then is None:
            return int(prepared_sql.run(sql, params).rows[0][0])
        with transaction.atomic():
            count = int(prepared_sql.run(sql, params).rows[0][0])
            if count == 1:
                contact.status = ContactStatus.SENT
                _then(then)
            return count

    recorded = retrying_conflicts(write)
    if recorded != 1:
        logger.warning(
            "billing contact changed under us; outcome not recorded",
            extra={"queue_id": str(lease.queue_id), "contact_id": contact.pk},
        )
        return False
    contact.status = ContactStatus.SENT
    return True


def _finish(
    lease: Lease,
    contact: BillingContact,
    *,
    status: str,
    from_statuses: Collection[str],
    queue_counters: dict[str, int],
    variation_counter: str | None,
    then: Callable[[], object] | None = None,
    **contact_fields: Any,
) -> bool:
    """The other outcomes (failed, retry, skipped): rarer, so plain ORM; same lock order and
    fence as `record_sent`; `then` (the callbacks) commits with the outcome."""
    return retrying_conflicts(
        lambda: _finish_once(
            lease,
            contact,
            status=status,
            from_statuses=from_statuses,
            queue_counters=queue_counters,
            variation_counter=variation_counter,
            then=then,
            **contact_fields,
        )
    )


def _finish_once(
    lease: Lease,
    contact: BillingContact,
    *,
    status: str,
    from_statuses: Collection[str],
    queue_counters: dict[str, int],
    variation_counter: str | None,
    then: Callable[[], object] | None,
    **contact_fields: Any,
) -> bool:
    with transaction.atomic():
        # Queue row locked first (lock order), counted only once the contact really moved: the
        # fence is the contact's claim token. A pause or cancel from the API leaves our in-flight
        # contact alone, so its real outcome is still recorded; a stale release cleared the token
        # and a paid charge or a hold changed the status, so nothing is written (not even a
        # counter that would then break the queue's processed-within-total check).
        BillingQueue.objects.select_for_update(no_key=True).filter(pk=lease.queue_id).exists()
        done = transition_rows(
            BillingContact.objects.filter(pk=contact.pk, claim_token=lease.token),
            status,
            from_statuses=from_statuses,
            **contact_fields,
        )
        if not done:
            logger.warning(
                "billing contact changed under us; outcome not recorded",
                extra={"queue_id": str(lease.queue_id), "contact_id": contact.pk},
            )
            return False
        updates = {name: F(name) + n for name, n in queue_counters.items()}
        BillingQueue.objects.filter(pk=lease.queue_id).update(
            last_heartbeat=Case(When(lease_token=lease.token, then=Now()), default=F("last_heartbeat")),
            updated_at=Now(),
            **updates,
        )
        if variation_counter and contact.variation_id:
            BillingTemplateVariation.objects.filter(pk=contact.variation_id).update(
                **{variation_counter: F(variation_counter) + 1}
            )
        contact.status = status
        if then is not None:
            _then(then)
    return True


def record_failed(
    lease: Lease,
    contact: BillingContact,
    *,
    code: str,
    error: str,
    rendered: str = "",
    then: Callable[[], object] | None = None,
) -> bool:
    return _finish(
        lease,
        contact,
        from_statuses=ContactStatus.sources_for(ContactStatus.FAILED),
        then=then,
        queue_counters={"failed_count": 1},
        variation_counter="failed_count",
        status=ContactStatus.FAILED,
        error_code=code,
        last_error=error[:500],
        claim_token=None,
        claimed_at=None,
        **({"rendered_message": rendered} if rendered else {}),
    )


def record_unconfirmed(
    lease: Lease,
    contact: BillingContact,
    *,
    code: str,
    error: str,
    reconcile_at: datetime,
    then: Callable[[], object] | None = None,
) -> bool:
    """sending → unconfirmed: the provider may have it (a deadline passed after the request was
    written, an answer that may mean "sent"). Never re-sent blindly: reconciliation decides
    from `reconcile_at` on (services/reconciliation.py); counted nowhere until it has."""
    return _finish(
        lease,
        contact,
        from_statuses=[ContactStatus.SENDING],
        queue_counters={},
        variation_counter=None,
        then=then,
        status=ContactStatus.UNCONFIRMED,
        error_code=code,
        last_error=error[:500],
        next_attempt_at=reconcile_at,
        claim_token=None,
        claimed_at=None,
    )


def record_skipped(lease: Lease, contact: BillingContact, *, code: str, reason: str) -> bool:
    """An unsent contact that must not be sent (opted out while the queue ran)."""
    return _finish(
        lease,
        contact,
        from_statuses=ContactStatus.sources_for(ContactStatus.SKIPPED),
        queue_counters={"skipped_count": 1},
        variation_counter=None,
        status=ContactStatus.SKIPPED,
        error_code=code,
        last_error=reason[:500],
        claim_token=None,
        claimed_at=None,
    )


def record_retry(
    lease: Lease, contact: BillingContact, *, at: datetime, code: str, error: str, refund_attempt: bool = False
) -> bool:
    """sending → pending_retry at `at`. `refund_attempt` when provably nothing left our process
    (circuit open, connection refused): that try does not count toward max_attempts. Any
    answer from the provider counts, so every contact ends within max_attempts."""
    extra: dict[str, Any] = {"attempts": F("attempts") - 1} if refund_attempt else {}
    if refund_attempt:
        contact.attempts -= 1
    return _finish(
        lease,
        contact,
        from_statuses=[ContactStatus.SENDING],
        queue_counters={},
        variation_counter=None,
        status=ContactStatus.PENDING_RETRY,
        next_attempt_at=at,
        error_code=code,
        last_error=error[:500],
        claim_token=None,
        claimed_at=None,
        **extra,
    )


def release(lease: Lease, to_status: str, *, then: Callable[[], object] | None = None, **queue_fields: Any) -> bool:
    """Let go of the queue into a waiting or final status (paused_business_hours, paused,
    instance_down, completed; back to pending is `hand_back`): the queue row first, then our
    claimed-but-unsent contacts. False when the lease was already gone. `then` (the callback
    reporting the change) commits with it."""
    if to_status == QueueStatus.PENDING:
        raise ValueError("a queue goes back to pending through hand_back")
    fields = {"processing_by": "", "lease_token": None, **queue_fields}
    if to_status == QueueStatus.COMPLETED:
        fields["completed_at"] = timezone.now()
    return _let_go(
        lease, lambda rows: transition_rows(rows, to_status, from_statuses=[QueueStatus.RUNNING], **fields), then
    )


def hand_back(lease: Lease, *, due_at: datetime | None = None, then: Callable[[], object] | None = None) -> bool:
    """running → pending, due at `due_at` (at once when None): a time slice ended, a retry is
    far away, the worker crashed on it or stops. Another consumer (or this one) takes it."""
    return _let_go(
        lease, lambda rows: return_to_pending(rows, from_statuses=[QueueStatus.RUNNING], due_at=due_at), then
    )


def return_to_pending(
    rows: QuerySet[BillingQueue], *, from_statuses: Iterable[str], due_at: datetime | None = None
) -> int:
    """The one way queues go back to pending (`BillingQueue.back_to_pending_fields`), from the
    statuses the caller names; how many moved. A queue that moved meanwhile is left alone."""
    return transition_rows(
        rows, QueueStatus.PENDING, from_statuses=from_statuses, **BillingQueue.back_to_pending_fields(due_at=due_at)
    )


def _let_go(lease: Lease, move: Callable[[QuerySet[BillingQueue]], int], then: Callable[[], object] | None) -> bool:
    with transaction.atomic():
        if not move(lease.queue_rows()):
            return False
        BillingContact.objects.filter(
            queue_id=lease.queue_id, claim_token=lease.token, status__in=UNSENT_CONTACT_STATUSES
        ).update(claim_token=None, claimed_at=None)
        if then is not None:
            _then(then)
    return True


def forget_claims(lease: Lease, contact_ids: list[int]) -> None:
    """Our claimed contacts go back to the pool unsent (the queue left us, or one was postponed
    after we claimed it): a later claim, ours or another lease's, takes them again."""
    if contact_ids:
        BillingContact.objects.filter(
            pk__in=contact_ids, claim_token=lease.token, status__in=UNSENT_CONTACT_STATUSES
        ).update(claim_token=None, claimed_at=None)


def show_hold(lease: Lease, *, reason: str, until: datetime | None) -> None:
    """A running queue that waits (a provider's Retry-After on its number) says why and until
    when, without changing status: it still holds its place and resumes by itself."""
    lease.queue_rows().update(pause_reason=reason[:200], next_resume_at=until, updated_at=Now())


def last_sent_at(instance_ids: list[int]) -> datetime | None:
    """When a number last sent, as PostgreSQL knows it (`BillingQueue.last_sent_at` of the queues
    of every instance row pointing at that number): the pace's memory when Redis lost it."""
    return (
        BillingQueue.objects.filter(instance_id__in=instance_ids, last_sent_at__isnull=False)
        .order_by("-last_sent_at")
        .values_list("last_sent_at", flat=True)
        .first()
    )


def release_stale(queue_id: uuid.UUID, stale_before: datetime, *, holder: str | None = None) -> bool:
    """Free a running queue whose holder stopped tending it (heartbeat before `stale_before`),
    or, given `holder`, that a dead consumer process held. Claimed-but-unsent contacts go back
    to pending; a contact caught `sending` may have been delivered, so it becomes `unconfirmed`
    (`interrupted`), for reconciliation to settle, instead of being sent again. Fenced: the new
    state carries no token."""
    with transaction.atomic():
        rows = BillingQueue.objects.select_for_update(skip_locked=True).filter(pk=queue_id, status=QueueStatus.RUNNING)
        rows = rows.filter(processing_by=holder) if holder is not None else rows.filter(last_heartbeat__lt=stale_before)
        queue = rows.first()
        if queue is None:
            return False
        caught = mark_interrupted(BillingContact.objects.filter(queue_id=queue_id, status=ContactStatus.SENDING))
        BillingContact.objects.filter(
            queue_id=queue_id, status__in=UNSENT_CONTACT_STATUSES, claim_token__isnull=False
        ).update(claim_token=None, claimed_at=None)
        return_to_pending(BillingQueue.objects.filter(pk=queue_id), from_statuses=[QueueStatus.RUNNING])
    logger.warning(
        "billing queue released as stale",
        extra={"queue_id": str(queue_id), "holder": queue.processing_by, "interrupted": caught},
    )
    return True


def mark_interrupted(contacts: QuerySet[BillingContact]) -> int:
    """`sending` contacts whose call nobody will finish (their holder died or lost the queue) →
    `unconfirmed` (`interrupted`), due for reconciliation now. `contacts` is a queryset of
    `sending` rows; the status in the UPDATE's WHERE makes a concurrent outcome write win."""
    return transition_rows(
        contacts,
        ContactStatus.UNCONFIRMED,
        from_statuses=[ContactStatus.SENDING],
        error_code=ContactErrorCode.INTERRUPTED,
        claim_token=None,
        claimed_at=None,
        last_error="the call was in flight when its worker stopped",
        next_attempt_at=Now(),
        updated_at=Now(),
    )


def unsent_summary(queue_id: uuid.UUID) -> tuple[int, int, datetime | None]:
    """How many contacts are not finished (to send, `sending` or `unconfirmed`: a queue never
    completes around a message whose outcome is not settled), how many of those are
    `unconfirmed`, and when the earliest retry or reconciliation is due."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = %s), min(next_attempt_at) "
            "FROM billing_billingcontact WHERE queue_id = %s AND status = ANY(%s)",
            [ContactStatus.UNCONFIRMED, queue_id, sorted(UNFINISHED_CONTACT_STATUSES)],
        )
        count, unconfirmed, earliest = cursor.fetchone()
    return int(count), int(unconfirmed), earliest
