"""One Redis connection pool per process, shared by throttles, the send pace and the breaker."""

from __future__ import annotations

import functools
from typing import Any

import redis
from django.conf import settings
from redis.commands.core import Script


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


_scripts: dict[tuple[str, int], Script] = {}


def run_script(source: str, keys: str | list[str], *args: int) -> Any:  # the script's reply: a number or a list
    """Run a Lua script through EVALSHA on this process's client: the body travels only when
    Redis does not know it yet (redis-py reloads it then), not on every call."""
    client = get_redis()
    script = _scripts.get((source, id(client)))
    if script is None:
        script = _scripts.setdefault((source, id(client)), client.register_script(source))
    return script(keys=[keys] if isinstance(keys, str) else keys, args=list(args))
