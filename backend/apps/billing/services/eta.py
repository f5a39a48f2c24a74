"""When will a queue finish? Pace, business hours and the number's warm-up cap decide, so the
estimate walks the tenant's openings (and, for a number in warm-up, its days) instead of
dividing by the rate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apps.billing.services.daily_cap import Day, NumberQuota
from apps.chat.services.business_hours import MAX_LOOKAHEAD_DAYS, WeeklySchedule
from apps.connections.warmup import WarmUp

_WINDOW = timedelta(days=14)


@dataclass(frozen=True)
class DailyCapPlan:
    """A number's warm-up as the ETA needs it: its caps by local day, and today's sends."""

    warm_up: WarmUp
    tz: ZoneInfo
    sent_today: int

    @classmethod
    def for_number(cls, quota: NumberQuota | None, *, start: datetime, now: datetime) -> DailyCapPlan | None:
        """None unless the number is still capped on the day the queue starts (then today's
        sends count, one Redis read, when that day is today): the ingest answer and the status
        estimate read the cap the same way."""
        if quota is None or quota.warm_up.cap_on(start.astimezone(quota.tz).date()) is None:
            return None
        same_day = start.astimezone(quota.tz).date() == now.astimezone(quota.tz).date()
        return cls(warm_up=quota.warm_up, tz=quota.tz, sent_today=quota.sent_today(now) if same_day else 0)


def seconds_per_message(messages_per_minute: int, jitter_seconds: float = 0.0) -> float:
    """Mean gap between two sends through one instance (jitter adds half its range on average)."""
    return 60.0 / max(messages_per_minute, 1) + max(jitter_seconds, 0.0) / 2


def estimate_completion(
    *,
    start: datetime,
    messages: int,
    messages_per_minute: int,
    jitter_seconds: float = 0.0,
    schedule: WeeklySchedule | None = None,
    daily_cap: DailyCapPlan | None = None,
) -> datetime | None:
    """Instant the last of `messages` should go out; None when the schedule never opens."""
    if messages <= 0:
        return start
    per_message = seconds_per_message(messages_per_minute, jitter_seconds)
    horizon = start + timedelta(days=MAX_LOOKAHEAD_DAYS)
    if daily_cap is None:
        return _finish(start, messages * per_message, schedule, horizon)
    remaining, day_start, first = messages, start, True
    while day_start < horizon:
        day = Day.of(day_start, daily_cap.tz)
        cap = daily_cap.warm_up.cap_on(day.local_date)
        if cap is None:  # the warm-up is over: pace and hours only
            return _finish(day_start, remaining * per_message, schedule, horizon)
        allowed = max(cap - (daily_cap.sent_today if first else 0), 0)
        if allowed >= remaining:
            done = _finish(day_start, remaining * per_message, schedule, day.ends_at)
            if done is not None:
                return done
        remaining -= min(allowed, math.floor(_open_seconds(day_start, day.ends_at, schedule) / per_message))
        day_start, first = day.ends_at, False
    return None


def _finish(start: datetime, seconds: float, schedule: WeeklySchedule | None, limit: datetime) -> datetime | None:
    """The instant `seconds` of open time after `start` are used up, None if not by `limit`."""
    if schedule is None:
        end = start + timedelta(seconds=seconds)
        return end if end <= limit else None
    window_start = start
    while window_start < limit:
        window_end = min(window_start + _WINDOW, limit)
        for open_start, open_end in schedule.open_intervals(window_start, window_end):
            available = (open_end - open_start).total_seconds()
            if available >= seconds:
                return open_start + timedelta(seconds=seconds)
            seconds -= available
        window_start = window_end
    return None


def _open_seconds(start: datetime, end: datetime, schedule: WeeklySchedule | None) -> float:
    if schedule is None:
        return (end - start).total_seconds()
    return sum((b - a).total_seconds() for a, b in schedule.open_intervals(start, end))
