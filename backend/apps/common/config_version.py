"""A per-tenant configuration version in Redis: how process-local caches learn that a tenant's
configuration changed.

Readers (the billing API's tenant context) keep what they built from the database beside the
version they read *before* building it, and use it only while Redis still holds that version.
Writers — the services and admin paths that change a tenant's keys, config, templates,
instances or hours — call `bump_config_version` after their transaction commits, so every
process rebuilds on its next request. Nothing here runs in `save()` or a signal: a write that
bypasses those paths (a shell, a migration) is picked up when the readers' entries expire.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import redis
from django.db import transaction

from .redis_client import get_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "tenant-config-version:"


def version_key(tenant_id: Any) -> str:
    return f"{KEY_PREFIX}{tenant_id}"


def bump_config_version(tenant_id: Any) -> None:
    """Give the tenant a new version now and again once the current transaction commits: the
    first makes every process drop what it holds at once, the second what some process rebuilt
    from the database before the change was visible. A random token rather than a counter: a
    flushed Redis can never hand back a version a reader already holds."""

    def bump() -> None:
        try:
            get_redis().set(version_key(tenant_id), uuid.uuid4().hex)
        except redis.RedisError as exc:  # the readers' entries expire by themselves
            logger.warning(
                "tenant config version not bumped", extra={"tenant_id": str(tenant_id), "error": type(exc).__name__}
            )

    if transaction.get_connection().in_atomic_block:
        bump()
    transaction.on_commit(bump)


def ensure_config_version(tenant_id: Any, version: str | None) -> str:
    """`version` as read, or — when Redis holds none (never bumped, or flushed since) — the
    one set now. Readers never cache at "no version": after a flush that would let a copy
    built before it pass for current."""
    if version is not None:
        return version
    client = get_redis()
    key = version_key(tenant_id)
    pipe = client.pipeline(transaction=False)
    pipe.set(key, uuid.uuid4().hex, nx=True)
    pipe.get(key)
    _, current = pipe.execute()
    return str(current)
