"""Readiness checks and process heartbeats (docs/operations.md, "Health").

`/healthz` says the web process answers (liveness; apps.common.views). `/readyz` says whether
it can do its job: PostgreSQL, Redis and RabbitMQ each answer a real request (a query, a PING,
an AMQP connection with login), reported per component; any of them down → 503.

The consumer and periodic processes serve no HTTP traffic, so they prove they are alive by
heart-beating into Redis (`record_process_heartbeat`), and `/readyz` reports the last beat of
each. A stale or missing process does **not** make the web unready: the API keeps accepting
work while a consumer restarts (PostgreSQL is the outbox; the periodic task republishes), and
taking the web out of rotation would turn a worker problem into an API outage. It is reported
(`processes.status` = `stale`/`missing`, top-level `status` = `degraded`) for people and alerts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from django.conf import settings
from django.db import connections

from apps.common.redis_client import get_redis

logger = logging.getLogger(__name__)

OK = "ok"
DOWN = "down"

_started = time.monotonic()
_local_beats: dict[str, float] = {}


# --------------------------------------------------------------------------- heartbeats
def default_process_id() -> str:
    """`host:pid`: unique per process, readable in the readiness answer."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _heartbeat_key() -> str:
    return str(getattr(settings, "BILLING_HEARTBEAT_KEY", "billing:process-heartbeats"))


def _stale_after() -> float:
    return float(getattr(settings, "BILLING_PROCESS_STALE_SECONDS", 90.0))


def record_process_heartbeat(kind: str, process_id: str | None = None) -> bool:
    """Note that process `process_id` of `kind` ("consumer", "periodic") is alive now.

    One sorted-set member per process (score = Unix time), so the readiness view reads every
    process in one command; members silent for ten stale periods are pruned on each write.
    Cheap (two Redis commands) and never raises: a Redis blip must not stop the sending.
    """
    _local_beats[kind] = time.monotonic()
    now = time.time()
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.zadd(_heartbeat_key(), {f"{kind}|{process_id or default_process_id()}": now})
        pipe.zremrangebyscore(_heartbeat_key(), "-inf", now - 10 * _stale_after())
        pipe.execute()
    except Exception as exc:
        logger.warning("process heartbeat not recorded", extra={"kind": kind, "error": type(exc).__name__})
        return False
    return True


async def heartbeat_forever(
    kind: str, process_id: str | None = None, *, interval: float | None = None, stop: asyncio.Event | None = None
) -> None:
    """For asyncio processes (the consumer): beat every `interval` seconds until `stop` is set.
    It runs on the event loop itself, so a blocked loop stops the beats, which is the point."""
    interval = float(interval) if interval else float(getattr(settings, "BILLING_PROCESS_HEARTBEAT_SECONDS", 15.0))
    process_id = process_id or default_process_id()
    while stop is None or not stop.is_set():
        await asyncio.to_thread(record_process_heartbeat, kind, process_id)
        try:
            if stop is None:
                await asyncio.sleep(interval)
            else:
                await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            continue


def read_process_heartbeats(now: float | None = None) -> dict[str, Any]:
    """Last beat of every known process, grouped by kind, with a verdict."""
    now = time.time() if now is None else now
    stale_after = _stale_after()
    expected = list(getattr(settings, "BILLING_EXPECTED_PROCESSES", ["consumer", "periodic"]))
    members = get_redis().zrange(_heartbeat_key(), 0, -1, withscores=True)
    kinds: dict[str, list[dict[str, Any]]] = {kind: [] for kind in expected}
    for member, score in cast(list[tuple[str, float]], members):  # withscores: pairs; redis-py types any reply
        kind, _, process_id = str(member).partition("|")
        age = max(now - float(score), 0.0)
        kinds.setdefault(kind, []).append(
            {
                "process_id": process_id,
                "last_seen": datetime.fromtimestamp(float(score), tz=UTC).isoformat(),
                "age_seconds": round(age, 1),
                "stale": age > stale_after,
            }
        )
    missing = [kind for kind in expected if not any(not p["stale"] for p in kinds.get(kind, []))]
    status = OK
    if missing:
        status = "missing" if all(not kinds.get(kind) for kind in missing) else "stale"
    return {"status": status, "stale_after_seconds": stale_after, "without_live_process": missing, **kinds}


def local_liveness(kind: str) -> tuple[bool, dict[str, Any]]:
    """This process's own view, for its side exporter's `/healthz`: alive while it has beaten
    within the stale period (or has just started and not beaten yet)."""
    stale_after = _stale_after()
    last = _local_beats.get(kind)
    age = time.monotonic() - (last if last is not None else _started)
    alive = age <= stale_after
    return alive, {"status": OK if alive else "stale", "kind": kind, "seconds_since_heartbeat": round(age, 1)}


# --------------------------------------------------------------------------- components
@dataclass(frozen=True)
class Check:
    status: str
    latency_ms: float
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "latency_ms": self.latency_ms}
        if self.error:
            body["error"] = self.error
        return body


def _timed(fn: Callable[[], object]) -> Check:
    started = time.monotonic()
    try:
        fn()
    except Exception as exc:
        return Check(DOWN, round(1000 * (time.monotonic() - started), 1), type(exc).__name__)
    return Check(OK, round(1000 * (time.monotonic() - started), 1))


def check_database() -> Check:
    def query() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    return _timed(query)


def check_redis() -> Check:
    return _timed(lambda: get_redis().ping())


def check_rabbitmq(url: str | None = None, timeout: float | None = None) -> Check:
    """A real AMQP connection (protocol handshake, login, vhost open), then closed. A bare TCP
    connect is not enough: RabbitMQ accepts sockets before it can serve them."""
    url = url or settings.RABBITMQ_URL
    timeout = float(timeout) if timeout else float(getattr(settings, "READINESS_AMQP_TIMEOUT", 3.0))

    async def connect() -> None:
        import aio_pika

        connection = await asyncio.wait_for(aio_pika.connect(url, timeout=timeout), timeout)
        await connection.close()

    return _timed(lambda: asyncio.run(connect()))


def readiness() -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for `/readyz`."""
    components = {"database": check_database(), "redis": check_redis(), "rabbitmq": check_rabbitmq()}
    body: dict[str, Any] = {name: check.as_dict() for name, check in components.items()}
    if components["redis"].status == OK:
        try:
            body["processes"] = read_process_heartbeats()
        except Exception as exc:
            body["processes"] = {"status": "unknown", "error": type(exc).__name__}
    else:
        body["processes"] = {"status": "unknown", "error": "redis down"}
    down = [name for name, check in components.items() if check.status != OK]
    if down:
        status = "unavailable"
    elif body["processes"].get("status") != OK:
        status = "degraded"
    else:
        status = OK
    return (503 if down else 200), {"status": status, **body}
