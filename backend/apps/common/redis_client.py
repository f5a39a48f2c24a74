"""One Redis connection pool per process, shared by throttles, the send pace and the breaker."""

from __future__ import annotations

import functools

import redis
from django.conf import settings


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=3, socket_timeout=5, health_check_interval=30, decode_responses=True
    )


def get_redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


def text(reply: bytes | str | None) -> str | None:
    """A reply of `get_redis()` as the str it is: the client decodes, but redis-py types its
    replies as bytes or str whatever the client does."""
    return reply.decode() if isinstance(reply, bytes) else reply
