"""Giving a thread's database connection back while it waits for somebody else's server.

With Django's connection pool (`DB_POOL_MAX_SIZE`, the consumer's default), a thread that holds
its connection through a provider call that hangs for its whole deadline keeps it from every
other thread; enough such calls and a claim or a heartbeat waits for the pool. So every
outbound call on a pooled thread is made without a connection: it goes back before the call
and the next query borrows one again. Without a pool, Django keeps one persistent connection
per thread and this only closes it if it is too old or broken, as between two requests.
"""
from __future__ import annotations

from django.db import close_old_connections, connection


def release_connection() -> None:
    if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
        connection.close()
    else:
        close_old_connections()
