"""Fixed hot-path statements as server-side prepared statements.

Why: Django's psycopg 3 backend binds parameters on the client (`ClientCursor`), so PostgreSQL
parses and plans every statement it receives as if it had never seen it. The sender worker runs
the same two statements for every message it sends, and planning them cost PostgreSQL more than
running them (docs/performance.md, "Send pipeline"). Here they go through a server-binding
psycopg cursor on Django's own connection with `prepare=True`: the first execution on a
connection prepares the statement, later ones only bind parameters and run a cached plan.

It is Django's connection, so everything else holds: the same transaction as the ORM (inside
`atomic()` or autocommit), Django's health checks and reconnection (`ensure_connection`), its
error classes (`wrap_database_errors`), its health check of a reused connection
(`CONN_HEALTH_CHECKS`), its broken-transaction guard, and its query log while
`connection.queries_logged` (DEBUG, `CaptureQueriesContext`), so statement-count tests see these
statements too.

Only for a few fixed statements: a prepared statement lives as long as its connection (a
pooler in transaction mode, e.g. PgBouncer before 1.21, would need `prepare=False`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections


@dataclass(frozen=True)
class Result:
    rowcount: int
    rows: list[tuple[Any, ...]]


def run(sql: str, params: Mapping[str, Any] | Sequence[Any] = (), *, alias: str = DEFAULT_DB_ALIAS) -> Result:
    """Execute `sql` (`%s` / `%(name)s` placeholders) as a prepared statement on Django's
    connection `alias`; return the affected row count and any rows it returned."""
    wrapper = connections[alias]
    wrapper.validate_no_broken_transaction()
    wrapper.validate_thread_sharing()
    # As Django's own cursor() does: a connection that went unused for a while (the consumer's
    # pooled ones, CONN_HEALTH_CHECKS) is checked and replaced if the server dropped it.
    wrapper.close_if_health_check_failed()
    wrapper.ensure_connection()
    started = time.monotonic()
    with wrapper.wrap_database_errors, psycopg.Cursor(wrapper.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        rows = cursor.fetchall() if cursor.description is not None else []
        rowcount = cursor.rowcount
    if wrapper.queries_logged:
        wrapper.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})
    return Result(rowcount, rows)
