"""Today's sends of one WhatsApp number against its warm-up cap (connections/warmup.py).

The dispatch step takes one unit of the number's daily quota right after the pace grants its
slot and before the message is started (dispatch/queue_runner.py): one Lua script in Redis
counts today's sends per number and local day, and refuses once the cap is reached, atomically,
so two processes sending through one number can never pass it together. A queue refused pauses
until the next day (its tenant's time zone) with a `pause_reason` saying so; the ETA counts the
cap (services/eta.py).

The counter lives in Redis like the pace, and is recovered like the pace: when today's key is
missing (the day's first send, or Redis restarted or was flushed), PostgreSQL says how many sends
the number started today (`BillingContact.send_started_at`), and the count starts there. A
contact retried today counts once in that seed; the counter counts every attempt.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apps.billing.models import BillingContact
from apps.common.redis_client import get_redis, run_script
from apps.connections.models import NumberHealthSettings, WhatsAppInstance
from apps.connections.warmup import WarmUp
from apps.tenancy.models import Tenant

KEY_TTL_SECONDS = 3 * 86400

# KEYS: today's counter. ARGV: cap (-1: none), seed (-1: not looked up yet), ttl.
# Answers {1, count}: granted, the count with this send; {0, count}: the cap is reached;
# {-1, 0}: the counter is missing: look today's sends up in PostgreSQL and ask again with a seed.
_TAKE = """
local count = redis.call('GET', KEYS[1])
if not count then
  if tonumber(ARGV[2]) < 0 then return {-1, 0} end
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]), 'NX')
  count = redis.call('GET', KEYS[1])
end
count = tonumber(count)
local cap = tonumber(ARGV[1])
if cap >= 0 and count >= cap then return {0, count} end
return {1, redis.call('INCR', KEYS[1])}
"""
_GIVE_BACK = """
local count = tonumber(redis.call('GET', KEYS[1]) or 0)
if count > 0 then redis.call('DECR', KEYS[1]) end
return 1
"""


@dataclass(frozen=True)
class Day:
    """One local day of a tenant: its date and its bounds as aware instants."""

    local_date: date
    starts_at: datetime
    ends_at: datetime

    @classmethod
    def of(cls, moment: datetime, tz: ZoneInfo) -> Day:
        local = moment.astimezone(tz).date()
        return cls(
            local, datetime.combine(local, time.min, tz), datetime.combine(local + timedelta(days=1), time.min, tz)
        )


@dataclass(frozen=True)
class QuotaAnswer:
    granted: bool
    count: int  # today's sends with this one (granted), or the count that reached the cap
    cap: int | None
    day: Day


@dataclass(frozen=True)
class NumberQuota:
    """One number's quota: its pace key (the physical number), warm-up, zone and rows."""

    number_key: str
    warm_up: WarmUp
    tz: ZoneInfo
    instance_ids: tuple[int, ...]

    def counter_key(self, day: Day) -> str:
        return f"billing:daily-sends:{self.number_key}:{day.local_date.isoformat()}"

    def take(self, now: datetime) -> QuotaAnswer:
        """One unit of today's quota, or the refusal once the cap is reached. A number with no
        cap today is not counted (no round trip)."""
        day = Day.of(now, self.tz)
        cap = self.warm_up.cap_on(day.local_date)
        if cap is None:
            return QuotaAnswer(True, 0, None, day)
        key = self.counter_key(day)
        granted, count = run_script(_TAKE, key, cap, -1, KEY_TTL_SECONDS)
        if int(granted) == -1:
            seed = sends_started(instance_ids=self.instance_ids, day=day)
            granted, count = run_script(_TAKE, key, cap, seed, KEY_TTL_SECONDS)
        return QuotaAnswer(int(granted) == 1, int(count), cap, day)

    def give_back(self, answer: QuotaAnswer) -> None:
        """A unit taken for a send that did not start (or provably sent nothing)."""
        if answer.granted and answer.cap is not None:
            run_script(_GIVE_BACK, self.counter_key(answer.day))

    def sent_today(self, now: datetime) -> int:
        """Today's count as Redis holds it (0 when it holds none): the status API's ETA."""
        return int(get_redis().get(self.counter_key(Day.of(now, self.tz))) or 0)


def number_key(base_url: str, instance_name: str) -> str:
    """The physical number is (provider URL, instance name): two rows pointing at the same one
    share one pace, one lane, one provider hold and one daily quota."""
    digest = hashlib.sha256(f"{base_url.rstrip('/')}/{instance_name}".encode()).hexdigest()[:24]
    return f"instance:{digest}"


def tenant_quotas(tenant: Tenant) -> dict[int, NumberQuota]:
    """Each active number of the tenant with its warm-up (two queries): the API's tenant context
    keeps them, so the status ETA counts the cap without reading configuration per request."""
    schedule = NumberHealthSettings.for_tenant(tenant.pk).schedule
    return {
        instance.pk: NumberQuota(
            number_key=number_key(instance.base_url, instance.instance_name),
            warm_up=instance.warm_up(schedule, tenant.tzinfo),
            tz=tenant.tzinfo,
            instance_ids=(instance.pk,),
        )
        for instance in WhatsAppInstance.objects.filter(tenant=tenant, is_active=True).only(
            "pk", "base_url", "instance_name", "warmup_started_at", "warmup_skipped_at"
        )
    }


def sends_started(*, instance_ids: tuple[int, ...], day: Day) -> int:
    """Contacts whose send through the number started on `day`, as PostgreSQL knows them."""
    return BillingContact.objects.filter(
        queue__instance_id__in=instance_ids, send_started_at__gte=day.starts_at, send_started_at__lt=day.ends_at
    ).count()
