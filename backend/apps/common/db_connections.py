"""Giving a thread's database connection back while it waits for somebody else's server.

With Django's connection pool (`DB_POOL_MAX_SIZE`, the consumer's default), a thread that holds
its connection through a provider call that hangs for its whole deadline keeps it from every
other thread; enough such calls and a claim or a heartbeat waits for the pool. So every
outbound call on a pooled thread is made without a connection: it goes back before the call
and the next query borrows one again. Without a pool each thread owns its connection anyway,
and there is nothing to give back.
"""

from __future__ import annotations

from django.db import close_old_connections, connection


def release_connection() -> None:
    """Before a call to somebody else's server: back to the pool (no-op without one)."""
    if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
        connection.close()


def release_idle_connection() -> None:
    """A thread about to wait for work: back to the pool, or (without one) closed only if it
    is too old or broken, as Django does between two requests."""
    if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
        connection.close()
    else:
        close_old_connections()
