"""Consumer processes heartbeat in PostgreSQL; the queues of a silent one are released in seconds.

A consumer killed with SIGKILL writes nothing on its way out, and the queues it held stay
`running`. Each process upserts its `ConsumerProcess` row every BILLING_CONSUMER_HEARTBEAT_SECONDS
and, in the same round trip, refreshes `last_heartbeat` on exactly the queues its scheduler
holds: a queue the process still leases in the database but no longer tends (a bug, a lost
entry) keeps an old heartbeat and is released by the per-queue `stale_threshold_seconds`, while
a dead process is noticed by its row, after `dead_after()` seconds:

    periodic process: dead_consumers()         → one billing.check_stale message per queue it held
    any consumer:     release_stale(queue, holder=dead) (fenced, SKIP LOCKED, exactly once)
    periodic process: forget_dead_consumers()  → rows of dead processes that hold nothing

The bound never drops below three heartbeats, so one slow heartbeat (a loaded machine, a
database failover) cannot release a live process's queues.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.billing.constants import QueueStatus
from apps.billing.models import BillingQueue, ConsumerProcess

logger = logging.getLogger(__name__)


def new_consumer_id() -> str:
    """host:pid:random — unique even when a container restarts with the same pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def dead_after() -> float:
    """Seconds of silence after which a consumer process counts as dead."""
    heartbeat = float(settings.BILLING_CONSUMER_HEARTBEAT_SECONDS)
    return max(float(settings.BILLING_CONSUMER_DEAD_AFTER_SECONDS), 3 * heartbeat)


def heartbeat(consumer_id: str, *, held: Iterable[object], started_at: datetime) -> int:
    """Say this process is alive, and that it still tends the queues `held`; returns how many of
    them the database still shows as ours and running."""
    held_ids = [str(queue_id) for queue_id in held]
    table = BillingQueue._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH me AS (
                    INSERT INTO {ConsumerProcess._meta.db_table} (id, hostname, pid, started_at, last_seen_at, queues_held)
                    VALUES (%(id)s, %(host)s, %(pid)s, %(started)s, now(), %(count)s)
                    ON CONFLICT (id) DO UPDATE SET last_seen_at = now(), queues_held = EXCLUDED.queues_held
                    RETURNING 1
                )
                UPDATE {table} SET last_heartbeat = now()
                 WHERE id = ANY(%(held)s::uuid[]) AND processing_by = %(id)s AND status = %(running)s
                   AND EXISTS (SELECT 1 FROM me)""",
            {
                "id": consumer_id,
                "host": socket.gethostname()[:200],
                "pid": os.getpid(),
                "started": started_at,
                "count": len(held_ids),
                "held": held_ids,
                "running": QueueStatus.RUNNING,
            },
        )
        return int(cursor.rowcount)


def unregister(consumer_id: str) -> None:
    """A clean exit: the row goes (its queues were handed back before)."""
    ConsumerProcess.objects.filter(pk=consumer_id).delete()


def dead_consumers(now: datetime | None = None) -> list[str]:
    now = now or timezone.now()
    return list(
        ConsumerProcess.objects.filter(last_seen_at__lt=now - timedelta(seconds=dead_after())).values_list(
            "pk", flat=True
        )
    )


def orphaned_queues(now: datetime | None = None) -> list[tuple[str, str]]:
    """(queue id, holder) of running queues whose holder is dead: its row is silent past the
    bound, or it has no row at all and the queue's own heartbeat is that old (a process that died
    before its first heartbeat)."""
    now = now or timezone.now()
    bound = now - timedelta(seconds=dead_after())
    alive = ConsumerProcess.objects.filter(last_seen_at__gte=bound).values("pk")
    rows = (
        BillingQueue.objects.filter(status=QueueStatus.RUNNING)
        .exclude(processing_by__in=alive)
        .filter(last_heartbeat__lt=bound)
        .values_list("pk", "processing_by")
    )
    dead = set(dead_consumers(now))
    rows_of_dead = (
        BillingQueue.objects.filter(status=QueueStatus.RUNNING, processing_by__in=dead).values_list(
            "pk", "processing_by"
        )
        if dead
        else []
    )
    return sorted({(str(pk), holder) for pk, holder in [*rows, *rows_of_dead]})


def forget_dead_consumers(now: datetime | None = None) -> int:
    """Delete the rows of dead processes that no longer hold a running queue."""
    dead = dead_consumers(now)
    if not dead:
        return 0
    holding = set(
        BillingQueue.objects.filter(status=QueueStatus.RUNNING, processing_by__in=dead).values_list(
            "processing_by", flat=True
        )
    )
    gone = [consumer_id for consumer_id in dead if consumer_id not in holding]
    deleted, _ = ConsumerProcess.objects.filter(pk__in=gone).delete()
    if deleted:
        logger.info("dead consumer processes forgotten", extra={"consumers": gone})
    return deleted
