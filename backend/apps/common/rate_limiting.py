"""Atomic rate limits in Redis (GCRA), shared by every process.

DRF's cache throttles read-modify-write and are not atomic (DRF issue #8127); a send quota or
the per-instance pace needs one atomic step, so both primitives here are single Lua scripts that
use Redis' clock (never the callers'), so processes with skewed clocks still share one pace.

- `hit(key, limit, period)`: API politeness. Allows bursts up to `limit`, then one request per
  `period/limit`; answers allowed/retry-after without reserving anything when refused.
  `hit_all` counts several limits in one round trip and can read a few other keys in it
  (`read=`): the API counts the per-IP and per-key limits and reads the tenant's configuration
  version at once, so a request's throttles and cache check cost one Redis round trip.
- `acquire_send_slot(key, interval, ...)`: the send pace of one WhatsApp number. It grants the
  slot only when it has come (nothing is reserved ahead, so a queue that is paused or cancelled
  while it waits wastes no one's slot) and otherwise says how long to wait; the caller waits as
  data (dispatch/scheduler.py), not in a thread. Two grants are never closer than `interval`
  whatever the number of processes, apart from a few milliseconds of `tolerance` that keep the
  average exact when a waiting caller wakes a little early or late.
- `hold_back(key, seconds)`: a provider's `Retry-After` for that number only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .redis_client import run_script

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

# KEYS: pace (the theoretical arrival time of the next send, µs on Redis' clock), hold (a
# provider's Retry-After: no send before it). ARGV: interval, tolerance, seed (the next allowed
# instant from PostgreSQL when the pace key is missing; -1 = not looked up yet), catch-up (how
# much of a late grant's lateness the next slot may win back: a send a few milliseconds late
# does not push every later one back, so the average pace stays exact, while no two sends are
# ever closer than interval − catch-up).
# Answers {granted, µs, reason}: granted 1 → µs until the next slot; 0 → µs to wait (reason
# 1 = the provider's hold); 2 → the pace key is missing: look the last send up and ask again.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local hold = tonumber(redis.call('GET', KEYS[2]) or 0)
if now < hold then
  return {0, hold - now, 1}
end
local tat = tonumber(redis.call('GET', KEYS[1]) or -1)
if tat < 0 then
  tat = tonumber(ARGV[3])
  if tat < 0 then return {2, 0, 0} end
  if tat > now then
    redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 60000)
  end
end
if now + tolerance < tat then
  return {0, tat - now, 0}
end
local next_tat = tat + interval
if tat < now then
  local late = now - tat
  if late >= interval then late = 0 end  -- idle, not late: nothing to win back
  next_tat = now + interval - math.min(late, tonumber(ARGV[4]))
end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 60000)
return {1, next_tat - now, 0}
"""

_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_us = now + tonumber(ARGV[1])
local hold = tonumber(redis.call('GET', KEYS[1]) or 0)
if until_us > hold then
  redis.call('SET', KEYS[1], string.format('%d', until_us), 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
end
return 1
"""


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


def hit_all(
    limits: Sequence[tuple[str, int]], period_seconds: float = 60.0, *, read: Sequence[str] = ()
) -> RateLimitResult:
    """`hit` for several limits in one round trip, in order, as separate calls would count
    them: the first that refuses stops the count (those before it keep theirs)."""
    args: list[int] = [len(limits)]
    for key, limit in limits:
        if limit <= 0:
            return RateLimitResult(False, period_seconds, refused_by=key)
        interval_us = int(period_seconds * 1_000_000 / limit)
        args += [interval_us, interval_us * (limit - 1)]
    keys = [f"ratelimit:{key}" for key, _ in limits] + list(read)
    allowed, wait_us, refused, *values = run_script(_HIT, keys, *args)
    if not allowed:
        return RateLimitResult(False, int(wait_us) / 1_000_000, refused_by=limits[int(refused) - 1][0])
    return RateLimitResult(True, 0.0, tuple(values) + (None,) * (len(read) - len(values)))


@dataclass(frozen=True)
class SlotAnswer:
    """`granted`: send now; `seconds` is then the time until the next slot, else the wait.
    `held`: the wait is a provider's Retry-After, not the pace. `unknown`: Redis has no pace
    for this number (first send, or Redis restarted or was flushed): ask again with a seed."""

    granted: bool
    seconds: float
    held: bool = False
    unknown: bool = False


CATCH_UP_SHARE = 0.1  # a late grant wins back at most a tenth of an interval


def acquire_send_slot(
    key: str, interval_seconds: float, *, tolerance_seconds: float = 0.0, seed_epoch_seconds: float | None = None
) -> SlotAnswer:
    """Take the send slot of the number `key` if it has come. `seed_epoch_seconds` is the next
    allowed instant (Unix time) as PostgreSQL knows it, used only when Redis lost the pace, so a
    Redis restart or flush never lets a number send faster than its pace."""
    seed = -1 if seed_epoch_seconds is None else max(0, int(seed_epoch_seconds * 1_000_000))
    interval_us = int(interval_seconds * 1_000_000)
    granted, micros, reason = run_script(
        _ACQUIRE,
        [f"pace:{key}", f"hold:{key}"],
        interval_us,
        int(tolerance_seconds * 1_000_000),
        seed,
        int(interval_us * CATCH_UP_SHARE),
    )
    if int(granted) == 2:
        return SlotAnswer(False, 0.0, unknown=True)
    return SlotAnswer(bool(int(granted)), int(micros) / 1_000_000, held=int(reason) == 1)


def hold_back(key: str, seconds: float) -> None:
    """No send through the number `key` for `seconds` (a provider's Retry-After, already capped
    by the caller); a longer hold already in place is kept."""
    run_script(_HOLD, f"hold:{key}", max(1, int(seconds * 1_000_000)))
