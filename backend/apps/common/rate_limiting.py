"""Atomic rate limits in Redis (GCRA), shared by every process.

DRF's cache throttles read-modify-write and are not atomic (DRF issue #8127); a send quota or
the per-instance pace needs one atomic step, so both primitives here are single Lua scripts that
use Redis' clock (never the callers'), so processes with skewed clocks still share one pace.

- `hit(key, limit, period)`: API politeness. Allows bursts up to `limit`, then one request per
  `period/limit`; answers allowed/retry-after without reserving anything when refused.
  `hit_all` counts several limits in one round trip and can read a few other keys in it
  (`read=`): the API counts the per-IP and per-key limits and reads the tenant's configuration
  version at once, so a request's throttles and cache check cost one Redis round trip.
- `reserve_slot(key, interval)`: the send pace. Every caller gets its own future slot spaced
  `interval` apart and is told how long to wait for it; no two slots overlap whatever the
  number of workers.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.commands.core import Script

from .redis_client import get_redis

_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limits = tonumber(ARGV[1])
for i = 1, limits do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  if now < tat - tolerance then
    return {0, tat - tolerance - now, i}
  end
  local new_tat = tat + interval
  redis.call('SET', KEYS[i], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
end
local answer = {1, 0, 0}
for i = limits + 1, #KEYS do
  answer[#answer + 1] = redis.call('GET', KEYS[i])
end
return answer
"""

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
redis.call('SET', KEYS[1], string.format('%d', tat + interval), 'PX', math.ceil((tat + interval - now) / 1000) + 60000)
return tat - now
"""


_scripts: dict[tuple[str, int], Script] = {}


def _run(source: str, key: str | list[str], *args: int) -> object:
    """Run a script through EVALSHA on this process's client: the body travels only when Redis
    does not know it yet (redis-py reloads it then), not on every call."""
    client = get_redis()
    script = _scripts.get((source, id(client)))
    if script is None:
        script = _scripts.setdefault((source, id(client)), client.register_script(source))
    return script(keys=[key] if isinstance(key, str) else key, args=list(args))


@dataclass(frozen=True)
class RateLimitResult:
    allowed: bool
    retry_after: float  # seconds; 0 when allowed
    values: tuple[str | None, ...] = ()  # the `read=` keys' values when allowed, in order
    refused_by: str = ""  # the key whose limit refused (hit_all)


def hit(key: str, limit: int, period_seconds: float = 60.0, *, read: Sequence[str] = ()) -> RateLimitResult:
    """Count one request against `limit` per `period_seconds` (bursts up to `limit`); when it
    is allowed, also answer the values of the `read` keys (None for a missing one)."""
    return hit_all([(key, limit)], period_seconds, read=read)


def hit_all(limits: Sequence[tuple[str, int]], period_seconds: float = 60.0, *,
            read: Sequence[str] = ()) -> RateLimitResult:
    """`hit` for several limits in one round trip, in order, as separate calls would count
    them: the first that refuses stops the count (those before it keep theirs)."""
    args: list[int] = [len(limits)]
    for key, limit in limits:
        if limit <= 0:
            return RateLimitResult(False, period_seconds, refused_by=key)
        interval_us = int(period_seconds * 1_000_000 / limit)
        args += [interval_us, interval_us * (limit - 1)]
    keys = [f"ratelimit:{key}" for key, _ in limits] + list(read)
    allowed, wait_us, refused, *values = _run(_HIT, keys, *args)
    if not allowed:
        return RateLimitResult(False, int(wait_us) / 1_000_000, refused_by=limits[int(refused) - 1][0])
    return RateLimitResult(True, 0.0, tuple(values) + (None,) * (len(read) - len(values)))


def reserve_slot(key: str, interval_seconds: float) -> float:
    """Reserve the next send slot for `key`; return how many seconds to wait before using it."""
    wait_us = _run(_RESERVE, f"pace:{key}", int(interval_seconds * 1_000_000))
    return int(wait_us) / 1_000_000
