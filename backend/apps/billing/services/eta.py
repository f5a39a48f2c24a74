"""When will a queue finish? Pace and business hours decide, so the estimate walks the
tenant's openings instead of dividing by the rate."""
from __future__ import annotations

from datetime import datetime, timedelta

from apps.chat.services.business_hours import MAX_LOOKAHEAD_DAYS, WeeklySchedule

_WINDOW = timedelta(days=14)


def seconds_per_message(messages_per_minute: int, jitter_seconds: float = 0.0) -> float:
    """Mean gap between two sends through one instance (jitter adds half its range on average)."""
    return 60.0 / max(messages_per_minute, 1) + max(jitter_seconds, 0.0) / 2


def estimate_completion(
    *, start: datetime, messages: int, messages_per_minute: int, jitter_seconds: float = 0.0,
    schedule: WeeklySchedule | None = None,
) -> datetime | None:
    """Instant the last of `messages` should go out; None when the schedule never opens."""
    if messages <= 0:
        return start
    remaining = messages * seconds_per_message(messages_per_minute, jitter_seconds)
    if schedule is None:
        return start + timedelta(seconds=remaining)
    window_start = start
    horizon = start + timedelta(days=MAX_LOOKAHEAD_DAYS)
    while window_start < horizon:
        window_end = window_start + _WINDOW
        for open_start, open_end in schedule.open_intervals(window_start, window_end):
            available = (open_end - open_start).total_seconds()
            if available >= remaining:
                return open_start + timedelta(seconds=remaining)
            remaining -= available
        window_start = window_end
    return None
