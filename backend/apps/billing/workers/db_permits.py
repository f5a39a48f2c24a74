"""The consumer's database connections: a few Django connections lent to many worker threads.

A consumer holding 200 throttled queues has 200 threads, but only the few doing database work
at any instant need a connection; `DbPermits` lends `size` of them, by priority, so the process
never opens more than its worker concurrency (docs/failure-modes.md, "More queues than a consumer can hold").
"""
from __future__ import annotations

import copy
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import load_backend

logger = logging.getLogger(__name__)

OUTCOME_PRIORITY = 12  # recording what the provider answered goes before anything else
HEALTH_CHECK_AFTER_IDLE = 5.0  # seconds a pooled connection may sit unused before a health check
IDLE_IN_TRANSACTION_MS = 60_000  # the worker's transactions last milliseconds


@dataclass
class _Pooled:
    wrapper: Any  # a Django DatabaseWrapper shared between threads, one thread at a time
    idle_since: float = field(default_factory=time.monotonic)


@dataclass
class _Ticket:
    ready: threading.Event = field(default_factory=threading.Event)
    pooled: _Pooled | None = None


class DbPermits:
    """The process's database connections: `size` Django connection objects, lent to one thread
    at a time and installed as that thread's `default` connection while it holds a permit.

    Django opens one connection per thread; a consumer holding 200 throttled queues has 200
    threads, but only the few doing work at any instant need a connection. Permits are granted
    by priority (overdue work first). A connection unused for `idle_seconds` is closed (it
    reconnects on its next use), so an idle consumer holds none. Threads never hold a permit
    inside a transaction while parked: `idle()` keeps it when an atomic block is open.
    """

    def __init__(self, size: int, *, application_name: str, alias: str = DEFAULT_DB_ALIAS) -> None:
        self.size = size
        self.alias = alias
        self._lock = threading.Lock()
        self._free = [_Pooled(self._new_wrapper(application_name)) for _ in range(size)]
        self._all = list(self._free)
        self._waiters: list[tuple[int, int, _Ticket]] = []
        self._seq = itertools.count()
        self._local = threading.local()

    def _new_wrapper(self, application_name: str) -> Any:
        settings_dict = copy.deepcopy(connections.settings[self.alias])
        options = settings_dict.setdefault("OPTIONS", {})
        # Visible in pg_stat_activity: operators can count a consumer's connections.
        options["application_name"] = application_name[:63]
        # A process frozen inside one of the worker's short transactions would keep its row locks
        # (and the stale release, which skips locked queues, waiting): PostgreSQL ends it instead.
        options["options"] = (f"{options.get('options', '')} "
                              f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}").strip()
        wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, self.alias)
        wrapper.inc_thread_sharing()
        return wrapper

    @property
    def held(self) -> bool:
        return getattr(self._local, "pooled", None) is not None

    def open_connections(self) -> int:
        return sum(1 for pooled in self._all if pooled.wrapper.connection is not None)

    def acquire(self, priority: int) -> None:
        """Take a connection, waiting behind higher priorities. A release hands its connection
        straight to the first waiter (one wake-up, not a stampede of hundreds of threads)."""
        ticket = None
        with self._lock:
            if self._free and not self._waiters:
                pooled = self._free.pop()
            else:
                ticket = _Ticket()
                heapq.heappush(self._waiters, (-priority, next(self._seq), ticket))
        if ticket is not None:
            ticket.ready.wait()
            pooled = ticket.pooled
        if time.monotonic() - pooled.idle_since > HEALTH_CHECK_AFTER_IDLE:
            pooled.wrapper.health_check_done = False  # unused for a while: check it on first use
        connections[self.alias] = pooled.wrapper
        self._local.pooled = pooled
        self._local.priority = priority

    def release(self) -> None:
        pooled = self._local.pooled
        self._local.pooled = None
        wrapper = pooled.wrapper
        try:
            if wrapper.in_atomic_block:  # never hand on an open transaction
                logger.error("billing consumer: connection returned inside a transaction; closing it")
                wrapper.close()
            elif wrapper.errors_occurred or (wrapper.close_at is not None and time.monotonic() >= wrapper.close_at):
                # Broken or past CONN_MAX_AGE. Not on every hand-over: Django would then run its
                # health check (SELECT 1) at each next use, two or three times per message.
                wrapper.close_if_unusable_or_obsolete()
        finally:
            del connections[self.alias]
            pooled.idle_since = time.monotonic()
            self._give_back([pooled])

    def _give_back(self, pooled_connections: list[_Pooled]) -> None:
        with self._lock:
            for pooled in pooled_connections:
                if self._waiters:
                    _, _, ticket = heapq.heappop(self._waiters)
                    ticket.pooled = pooled
                    ticket.ready.set()
                else:
                    self._free.append(pooled)  # a stack: hot connections are reused, cold ones age out

    @contextmanager
    def ensure(self, priority: int | None = None) -> Iterator[None]:
        """Hold a permit for the block (no-op when this thread already holds one)."""
        if self.held:
            yield
            return
        self.acquire(priority if priority is not None else getattr(self._local, "priority", 0))
        try:
            yield
        finally:
            self.release()

    @contextmanager
    def idle(self, *, resume_first: bool = False) -> Iterator[None]:
        """Give the permit back for the block (a wait that needs no database), then take one
        again; `resume_first` takes it ahead of every other waiter (an outcome to record)."""
        pooled = getattr(self._local, "pooled", None)
        if pooled is None or pooled.wrapper.in_atomic_block:
            yield
            return
        priority = self._local.priority
        self.release()
        try:
            yield
        finally:
            self.acquire(OUTCOME_PRIORITY if resume_first else priority)
            self._local.priority = priority

    def close_idle(self, older_than: float) -> int:
        """Close connections nobody used for `older_than` seconds; they reopen when needed."""
        now = time.monotonic()
        with self._lock:
            stale = [p for p in self._free if p.wrapper.connection is not None and now - p.idle_since >= older_than]
            for pooled in stale:
                self._free.remove(pooled)
        closed = 0
        for pooled in stale:
            try:
                pooled.wrapper.close()
                closed += 1
            except Exception:  # noqa: BLE001 - a broken connection is gone either way
                logger.debug("closing an idle connection failed", exc_info=True)
        if stale:
            self._give_back(stale)
        return closed

    def close_all(self) -> None:
        """At exit: close every connection not lent to a thread."""
        self.close_idle(0.0)


def run_with_permit(permits: DbPermits, priority: int, fn: Callable[..., Any], *args: Any) -> Any:
    """What runs in a pool thread: `fn` holding a database permit, given back afterwards."""
    with permits.ensure(priority):
        return fn(*args)
