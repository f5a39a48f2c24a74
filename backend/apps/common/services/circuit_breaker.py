"""Circuit breaker shared by every process through Redis: one per WhatsApp instance, and one
per client callback endpoint (each kind with its own `BreakerPolicy`).

Why Redis: workers run in several processes (and hosts); when one of them learns that an
instance is dead, all of them must stop hammering it. Each transition is one Lua script, so
the read-modify-write is atomic, and the clock is Redis' own (`TIME`), so processes with
skewed clocks still agree on when the cool-down ends.

States: `closed` (calls flow; consecutive failures are counted) → `open` after `threshold`
failures (calls fail fast for `cooldown` seconds) → `half_open` (exactly one probe call is let
through, holding a lease) → `closed` if the probe succeeds, `open` again if it fails. A probe
whose process died simply lets its lease expire, and the next caller probes.

If Redis itself is unreachable the breaker fails open (allows the call) and logs: losing the
breaker must not stop all sending.

A "closed, nothing counted" answer is reused in this process for EVOLUTION_BREAKER_CACHE_SECONDS
(default 1 s), so a worker sending many messages a second does not ask Redis before each one.
Anything else is never reused, and any failure this process sees forgets the cached answer at
once; a breaker another process opened is seen here within that second.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings
from redis.commands.core import Script

from apps.common.metrics import EVOLUTION_BREAKER_STATE
from apps.common.redis_client import text

logger = logging.getLogger(__name__)

_closed_until: dict[str, float] = {}  # breaker key -> monotonic time until "closed" is reused

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
GAUGE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

# KEYS[1] = breaker hash. ARGV = op, threshold, cooldown_ms, probe_lease_ms, ttl_s.
# Hash fields: state, failures, until (ms; end of cool-down when open, end of probe lease when
# half-open). Returns {verdict_or_new_state, previous_state, remaining_ms, failures}.
_SCRIPT = """
local key = KEYS[1]
local op = ARGV[1]
local threshold = tonumber(ARGV[2])
local cooldown = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HGET', key, 'state') or 'closed'
local failures = tonumber(redis.call('HGET', key, 'failures') or '0')
local untilms = tonumber(redis.call('HGET', key, 'until') or '0')

if op == 'acquire' then
  if state == 'closed' then
    return {'allow', state, 0, failures}
  end
  if now < untilms then
    return {'reject', state, untilms - now, failures}
  end
  redis.call('HSET', key, 'state', 'half_open', 'until', now + lease)
  redis.call('EXPIRE', key, ttl)
  return {'probe', state, 0, failures}
elseif op == 'success' then
  redis.call('DEL', key)
  return {'closed', state, 0, 0}
elseif op == 'failure' then
  failures = failures + 1
  if state == 'open' then
    -- a late failure of a call admitted before the breaker opened: count it, keep the cool-down
    redis.call('HSET', key, 'failures', failures)
    redis.call('EXPIRE', key, ttl)
    return {'open', state, math.max(untilms - now, 0), failures}
  end
  if state == 'half_open' or failures >= threshold then
    redis.call('HSET', key, 'state', 'open', 'failures', failures, 'until', now + cooldown)
    redis.call('EXPIRE', key, ttl)
    return {'open', state, cooldown, failures}
  end
  redis.call('HSET', key, 'state', 'closed', 'failures', failures)
  redis.call('EXPIRE', key, ttl)
  return {'closed', state, 0, failures}
elseif op == 'probe_now' then
  -- outside evidence (a healthy health check) that the instance is back: end the cool-down
  if state == 'open' then
    redis.call('HSET', key, 'until', 0)
  end
  return {state, state, 0, failures}
elseif op == 'release' then
  -- the probe ended without evidence either way: free the lease so the next call probes
  if state == 'half_open' then
    redis.call('HSET', key, 'until', 0)
  end
  return {state, state, 0, failures}
end
return redis.error_reply('unknown breaker op ' .. op)
"""


@dataclass(frozen=True)
class BreakerPolicy:
    """Thresholds of one kind of breaker. `gauge`: publish the state per breaker (bounded label
    values only: WhatsApp instances yes, client endpoints no)."""

    key_prefix: str
    threshold: int
    cooldown: float  # seconds open before a probe
    probe_lease: float  # seconds a probe may take (one call) before its lease is considered lost
    gauge: bool = False


def provider_breaker_policy() -> BreakerPolicy:
    """WhatsApp instances (EVOLUTION_BREAKER_*); a probe is one send, bounded by its deadline."""
    return BreakerPolicy(
        key_prefix=settings.EVOLUTION_BREAKER_KEY_PREFIX,
        threshold=int(settings.EVOLUTION_BREAKER_THRESHOLD),
        cooldown=float(settings.EVOLUTION_BREAKER_COOLDOWN),
        probe_lease=float(settings.EVOLUTION_SEND_DEADLINE) + 1.0,
        gauge=True,
    )


@dataclass(frozen=True)
class BreakerDecision:
    """The answer to "may I call the instance now?"."""

    allowed: bool
    probe: bool  # this call is the single half-open probe
    state: str  # breaker state before this call
    retry_after: float  # seconds until a probe is allowed, when not allowed
    failures: int = 0  # consecutive failures counted when asked

    @property
    def success_changes_state(self) -> bool:
        """Whether a success after this call has anything to reset. A closed breaker with no
        failure counted has nothing, so the caller saves a Redis round trip per call. Under
        concurrency a failure another process counts in between then waits for a later success
        to be forgotten: this process reuses its "closed, nothing counted" answer for up to
        EVOLUTION_BREAKER_CACHE_SECONDS, so for that long its successes do not reset failures
        counted elsewhere. Only consecutive failures reaching the threshold within that second,
        while this process's own calls succeed, would open the breaker early; a failure here
        drops the cached answer at once."""
        return self.probe or self.state != CLOSED or self.failures > 0


@lru_cache(maxsize=4)
def _redis(url: str) -> tuple[redis.Redis, Script]:
    """One client (its own connection pool) and one registered script per Redis URL and
    process. Short socket timeouts: the breaker sits on the hot path of every send."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0, health_check_interval=30)
    return client, client.register_script(_SCRIPT)  # EVALSHA, reloading the script if needed


class CircuitBreaker:
    """The breaker of one WhatsApp instance (or, with another policy, one callback endpoint).
    Cheap to create; all state lives in Redis."""

    def __init__(self, instance_id: str, policy: BreakerPolicy | None = None) -> None:
        self.instance_id = str(instance_id)
        self.policy = policy or provider_breaker_policy()

    @property
    def key(self) -> str:
        return f"{self.policy.key_prefix}:{self.instance_id}"

    # ------------------------------------------------------------------ public operations
    def acquire(self) -> BreakerDecision:
        """Ask before each call. Fails open (allows) when Redis is unreachable."""
        now = time.monotonic()
        if _closed_until.get(self.key, 0.0) > now:
            return BreakerDecision(allowed=True, probe=False, state=CLOSED, retry_after=0.0)
        result = self._run("acquire")
        if result is None:
            return BreakerDecision(allowed=True, probe=False, state=CLOSED, retry_after=0.0)
        verdict, previous, remaining_ms, failures = result
        if verdict == "reject":
            self._publish(previous)
            return BreakerDecision(allowed=False, probe=False, state=previous, retry_after=remaining_ms / 1000)
        if verdict == "probe":
            self._publish(HALF_OPEN)
            logger.info(
                "evolution breaker half-open: letting one probe through",
                extra={"instance_id": self.instance_id, "breaker_state": HALF_OPEN},
            )
            return BreakerDecision(allowed=True, probe=True, state=previous, retry_after=0.0, failures=failures)
        self._publish(previous)  # a success may skip its write (success_changes_state): the gauge is set here
        cache_for = float(settings.EVOLUTION_BREAKER_CACHE_SECONDS)
        if previous == CLOSED and not failures and cache_for > 0:
            _closed_until[self.key] = now + cache_for
        return BreakerDecision(allowed=True, probe=False, state=previous, retry_after=0.0, failures=failures)

    def record_success(self) -> None:
        """The instance answered in a way that proves it works: close the breaker."""
        result = self._run("success")
        if result is None:
            return
        _state, previous, _remaining, _failures = result
        self._publish(CLOSED)
        if previous != CLOSED:
            logger.info("evolution breaker closed", extra={"instance_id": self.instance_id, "breaker_state": CLOSED})

    def record_failure(self) -> None:
        """An availability failure (instance down, transient 5xx, connect timeout)."""
        self.forget_cached()
        result = self._run("failure")
        if result is None:
            return
        state, previous, remaining_ms, failures = result
        self._publish(state)
        if state == OPEN and previous != OPEN:
            logger.warning(
                "evolution breaker opened: failing fast for the cool-down",
                extra={
                    "instance_id": self.instance_id,
                    "breaker_state": OPEN,
                    "failures": failures,
                    "cooldown_seconds": remaining_ms / 1000,
                },
            )

    def release(self) -> None:
        """End a half-open probe that proved nothing (e.g. a 429 or an ambiguous timeout)."""
        self.forget_cached()
        self._run("release")

    def forget_cached(self) -> None:
        """Ask Redis on the next `acquire` (this process saw something go wrong)."""
        _closed_until.pop(self.key, None)

    def probe_now(self) -> None:
        """End an open breaker's cool-down early: the next call is the single half-open probe.
        Used when a health check says the instance is back; it does not close the breaker,
        because `state: open` is no proof that sends work (upstream issues #2403, #1153)."""
        self._run("probe_now")

    def state(self) -> str:
        """The current state, for admin screens and tests (`closed` when unknown)."""
        try:
            raw = _redis(settings.REDIS_URL)[0].hget(self.key, "state")
        except redis.RedisError:
            return CLOSED
        return text(raw) or CLOSED

    def reset(self) -> None:
        """Forget everything (an operator fixed the instance)."""
        self.forget_cached()
        try:
            _redis(settings.REDIS_URL)[0].delete(self.key)
        except redis.RedisError:
            logger.warning("evolution breaker reset failed: Redis unreachable", extra={"instance_id": self.instance_id})
        self._publish(CLOSED)

    # ------------------------------------------------------------------ internals
    def _run(self, op: str) -> tuple[str, str, int, int] | None:
        threshold = max(1, self.policy.threshold)
        cooldown_ms = max(1, int(self.policy.cooldown * 1000))
        lease_ms = int(self.policy.probe_lease * 1000)
        ttl_s = max(3600, int(cooldown_ms / 1000) * 10)
        try:
            _client, script = _redis(settings.REDIS_URL)
            verdict, previous, remaining, failures = script(
                keys=[self.key], args=[op, threshold, cooldown_ms, lease_ms, ttl_s]
            )
        except redis.RedisError as exc:
            _warn_redis_down(self.instance_id, exc)
            return None
        return _text(verdict), _text(previous), int(remaining), int(failures)

    def _publish(self, state: str) -> None:
        if not self.policy.gauge:
            return
        EVOLUTION_BREAKER_STATE.labels(instance_id=self.instance_id).set(GAUGE_VALUES.get(state, 0))


_last_redis_warning = 0.0
REDIS_WARNING_INTERVAL = 60.0  # seconds: one warning a minute per process, not one per send


def _warn_redis_down(instance_id: str, exc: Exception) -> None:
    global _last_redis_warning
    now = time.monotonic()
    if now - _last_redis_warning >= REDIS_WARNING_INTERVAL or _last_redis_warning == 0.0:
        _last_redis_warning = now
        logger.warning(
            "evolution breaker unavailable (Redis error); allowing calls",
            extra={"instance_id": instance_id, "error": type(exc).__name__},
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
