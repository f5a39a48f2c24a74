"""Real-time queue progress: the snapshot, the browser token, and the publisher.

Who does what:
- `publish_queue_progress(queue_id)` (sync): the worker calls it after each outcome and each
  status change; the periodic task and the control API may too. It reads the queue's counters
  (one query by primary key) and sends them to the Channels group `billing.queue.<id>` through
  the Redis channel layer — only while somebody watches that queue (`mark_watched`, a Redis
  sorted set each process reads once a second): 1,000 queues sending with nobody looking cost
  no query and no push. Cheap, throttled per queue, and it never raises.
- `consumers.QueueProgressConsumer` (the WebSocket) sends the same snapshot on connect, then
  relays the group's messages.
- `issue_ws_token()` / `read_ws_token()`: a short-lived signed token for browsers, which cannot
  set the `X-Billing-API-Key` header on a WebSocket handshake.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing

from apps.billing.metrics import observe_progress_push
from apps.common.background_loop import BackgroundLoop

logger = logging.getLogger(__name__)

TOKEN_SALT = "billing.ws-progress"
MESSAGE_TYPE = "queue.progress"  # Channels calls QueueProgressConsumer.queue_progress
SNAPSHOT_FIELDS = (
    "id",
    "tenant_id",
    "status",
    "template_type",
    "total_contacts",
    "sent_count",
    "failed_count",
    "cancelled_count",
    "skipped_count",
    "delivered_count",
    "read_count",
    "pause_reason",
    "next_resume_at",
    "started_at",
    "completed_at",
    "updated_at",
)


def group_name(queue_id: object) -> str:
    """Channels group of one queue (group names allow letters, digits, `-`, `_`, `.`)."""
    return f"billing.queue.{queue_id}"


# --------------------------------------------------------------------------- snapshot
def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def snapshot_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """The JSON a client receives: status and counters, nothing about contacts."""
    total = int(row["total_contacts"])
    processed = sum(int(row[name]) for name in ("sent_count", "failed_count", "cancelled_count", "skipped_count"))
    final = row["status"] in ("completed", "cancelled")
    percent = round(100.0 * processed / total, 1) if total else (100.0 if final else 0.0)
    return {
        "type": "progress",
        "queue_id": str(row["id"]),
        "status": row["status"],
        "template_type": row["template_type"],
        "total": total,
        "sent": int(row["sent_count"]),
        "failed": int(row["failed_count"]),
        "cancelled": int(row["cancelled_count"]),
        "skipped": int(row["skipped_count"]),
        "delivered": int(row["delivered_count"]),
        "read": int(row["read_count"]),
        "processed": processed,
        "pending": max(total - processed, 0),
        "progress_percent": percent,
        "pause_reason": row["pause_reason"] or "",
        "next_resume_at": _iso(row["next_resume_at"]),
        "started_at": _iso(row["started_at"]),
        "completed_at": _iso(row["completed_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def queue_snapshot(queue_id: object, *, tenant_id: uuid.UUID | None = None) -> dict[str, Any] | None:
    """The snapshot of one queue (of `tenant_id` when given); None when there is no such queue."""
    from apps.billing.models import BillingQueue

    try:
        pk = uuid.UUID(str(queue_id))
    except ValueError:
        return None
    rows = BillingQueue.objects.filter(pk=pk)
    if tenant_id is not None:
        rows = rows.filter(tenant_id=tenant_id)
    row = rows.values(*SNAPSHOT_FIELDS).first()
    return snapshot_from_row(row) if row else None


# --------------------------------------------------------------------------- browser token
@dataclass(frozen=True)
class WsGrant:
    queue_id: str
    tenant_id: str
    api_key_id: str


def issue_ws_token(*, queue_id: object, tenant_id: object, api_key_id: object) -> str:
    """A token that lets a browser watch one queue for BILLING_WS_TOKEN_MAX_AGE seconds. It names
    the key that asked for it, so revoking the key also stops new connections with the token."""
    return signing.dumps({"q": str(queue_id), "t": str(tenant_id), "k": str(api_key_id)}, salt=TOKEN_SALT)


def read_ws_token(token: str) -> WsGrant | None:
    """The grant inside a valid, unexpired token; None otherwise (bad signature, expired, junk)."""
    if not token or len(token) > 500:
        return None
    try:
        data = signing.loads(token, salt=TOKEN_SALT, max_age=int(settings.BILLING_WS_TOKEN_MAX_AGE))
    except signing.BadSignature:  # SignatureExpired is a BadSignature
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("q", "t", "k")):
        return None
    return WsGrant(queue_id=data["q"], tenant_id=data["t"], api_key_id=data["k"])


# --------------------------------------------------------------------------- publishing
class _Throttle:
    """At most `rate` pushes per second per queue, in this process. A push that changes the
    status (or reaches a final one) always goes out, so a client never misses "completed" or
    "paused"; dropped counter updates are caught up by the next push. One worker holds a queue
    at a time, so a per-process throttle is a per-queue throttle. Bounded memory (LRU)."""

    def __init__(self, size: int = 4096) -> None:
        self._lock = threading.Lock()
        self._last: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._size = size

    def allow(self, queue_id: str, status: str, final: bool) -> bool:
        rate = float(getattr(settings, "BILLING_PROGRESS_MAX_PER_SECOND", 4.0))
        now = time.monotonic()
        with self._lock:
            previous = self._last.get(queue_id)
            if (
                previous is not None
                and not final
                and previous[1] == status
                and rate > 0
                and now - previous[0] < 1.0 / rate
            ):
                return False
            self._last[queue_id] = (now, status)
            self._last.move_to_end(queue_id)
            while len(self._last) > self._size:
                self._last.popitem(last=False)
            return True

    def clear(self) -> None:
        with self._lock:
            self._last.clear()


_throttle = _Throttle()

WATCHERS_KEY = "billing:progress:watched"  # sorted set: queue id → when its last watcher's lease ends
WATCH_SECONDS = 60.0  # a watcher's lease; an open socket renews it every half of it
_WATCHED_REFRESH = 1.0  # seconds a process reuses its copy of the watched set


def mark_watched(queue_id: object) -> None:
    """A WebSocket watches `queue_id` (called on connect and every WATCH_SECONDS / 2 after)."""
    from apps.common.redis_client import get_redis

    get_redis().zadd(WATCHERS_KEY, {str(queue_id): time.time() + WATCH_SECONDS})
    watched.add(str(queue_id))  # this process knows at once; the others within a second


class _Watched:
    """This process's copy of the watched queue ids, read from Redis at most once a second.
    When Redis cannot be read, every queue counts as watched (the push then fails or goes out:
    a watcher never misses an update because of this optimisation)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: frozenset[str] | None = None
        self._read_at = float("-inf")

    def __contains__(self, queue_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._read_at >= _WATCHED_REFRESH:
                self._ids = self._read()
                self._read_at = now
            return self._ids is None or queue_id in self._ids

    @staticmethod
    def _read() -> frozenset[str] | None:
        from apps.common.redis_client import get_redis

        try:
            client = get_redis()
            client.zremrangebyscore(WATCHERS_KEY, "-inf", time.time())
            return frozenset(
                member.decode() if isinstance(member, bytes) else str(member)
                for member in client.zrangebyscore(WATCHERS_KEY, time.time(), "+inf")
            )
        except Exception:
            return None

    def add(self, queue_id: str) -> None:
        with self._lock:
            if self._ids is not None:
                self._ids = self._ids | {queue_id}

    def clear(self) -> None:
        with self._lock:
            self._ids, self._read_at = None, float("-inf")


watched = _Watched()


def publish_queue_progress(queue_id: object, *, force: bool = False) -> bool:
    """Push queue `queue_id`'s current counters to its WebSocket watchers. Sync (the worker is
    sync); one query by primary key plus one channel-layer call, and nothing when nobody watches
    the queue (a new watcher gets a snapshot on connect). Returns True when a message went out;
    False when unwatched, throttled, the queue is gone, or the layer failed (logged, never raised).
    """
    if str(queue_id) not in watched:
        observe_progress_push("unwatched")
        return False
    try:
        snapshot = queue_snapshot(queue_id)
        if snapshot is None:
            return False
        final = snapshot["status"] in ("completed", "cancelled")
        if not force and not _throttle.allow(snapshot["queue_id"], snapshot["status"], final):
            observe_progress_push("throttled")
            return False
        _group_send(group_name(snapshot["queue_id"]), {"type": MESSAGE_TYPE, "data": snapshot})
    except Exception as exc:
        observe_progress_push("failed")
        logger.warning("billing progress not published", extra={"queue_id": str(queue_id), "error": type(exc).__name__})
        return False
    observe_progress_push("sent")
    return True


PUSH_TIMEOUT = 2.0  # seconds a push may take before the worker gives up on it (logged, never raised)


# `async_to_sync(layer.group_send)` started a new event loop per push, and the Redis layer keeps
# its connections per loop: a thread, a loop and new connections each time, ~5.5 ms of CPU,
# about half of a consumer's at 20 msgs/min per queue. One loop per process keeps them open.
_layer_loop: BackgroundLoop | None = None
_layer_loop_pid: int | None = None
_layer_loop_lock = threading.Lock()


def _get_layer_loop() -> BackgroundLoop:
    """One per process (re-created after a fork: a child never shares the parent's sockets)."""
    global _layer_loop, _layer_loop_pid
    with _layer_loop_lock:
        if _layer_loop is None or _layer_loop_pid != os.getpid():
            _layer_loop, _layer_loop_pid = BackgroundLoop("billing-progress"), os.getpid()
        return _layer_loop


def _group_send(group: str, message: dict[str, Any]) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    _get_layer_loop().run(layer.group_send(group, message), PUSH_TIMEOUT)
