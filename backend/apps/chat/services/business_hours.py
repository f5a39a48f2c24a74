"""When may a tenant message its customers?

`WeeklySchedule` is pure (no database): built once from a tenant's rows, then asked
`is_open(at)` before every message, so the worker loads it once per queue and the check costs
no query. All arithmetic happens on UTC instants built from local wall-clock times, so DST
changes and ranges that cross midnight need no special cases at the call sites.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# How far ahead `next_open_after` looks before answering "never" (a year of holidays is
# the worst realistic case; the bound keeps a schedule with no opening from looping forever).
MAX_LOOKAHEAD_DAYS = 400


@dataclass(frozen=True)
class OpeningRange:
    weekday: int  # 0 = Monday
    opens_at: time
    closes_at: time  # <= opens_at: closes on the next day


class WeeklySchedule:
    def __init__(self, tz: ZoneInfo | str, ranges: Iterable[OpeningRange], closed_dates: Iterable[date] = ()) -> None:
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.closed_dates = frozenset(closed_dates)
        self._by_weekday: dict[int, list[OpeningRange]] = {d: [] for d in range(7)}
        for opening in ranges:
            self._by_weekday[opening.weekday].append(opening)
        for day_ranges in self._by_weekday.values():
            day_ranges.sort(key=lambda r: r.opens_at)
        self.has_openings = any(self._by_weekday.values())

    @classmethod
    def always_open(cls, tz: ZoneInfo | str = "UTC") -> WeeklySchedule:
        return cls(tz, [OpeningRange(d, time(0), time(0)) for d in range(7)])

    # ------------------------------------------------------------------ queries
    def is_open(self, at: datetime) -> bool:
        at = _utc(at)
        local_day = at.astimezone(self.tz).date()
        return any(
            start <= at < end
            for day in (local_day - timedelta(days=1), local_day)
            for start, end in self._intervals_on(day)
        )

    def next_open_after(self, at: datetime) -> datetime | None:
        """The first instant at or after `at` when sending is allowed; None if never (within
        MAX_LOOKAHEAD_DAYS)."""
        at = _utc(at)
        if not self.has_openings:
            return None
        if self.is_open(at):
            return at
        first_day = at.astimezone(self.tz).date() - timedelta(days=1)
        for offset in range(MAX_LOOKAHEAD_DAYS + 1):
            starts = [start for start, _ in self._intervals_on(first_day + timedelta(days=offset)) if start > at]
            if starts:
                return min(starts)
        return None

    def closes_after(self, at: datetime) -> datetime | None:
        """When the opening that contains `at` ends (None when closed at `at`)."""
        at = _utc(at)
        local_day = at.astimezone(self.tz).date()
        ends = [
            end
            for day in (local_day - timedelta(days=1), local_day)
            for start, end in self._intervals_on(day)
            if start <= at < end
        ]
        if not ends:
            return None
        end = max(ends)
        # An opening that ends exactly where the next begins (e.g. 24/7 rows) is one opening.
        while True:
            follow = [
                e
                for day in (end.astimezone(self.tz).date() - timedelta(days=1), end.astimezone(self.tz).date())
                for s, e in self._intervals_on(day)
                if s <= end < e
            ]
            if not follow or max(follow) <= end or end - at > timedelta(days=MAX_LOOKAHEAD_DAYS):
                return end
            end = max(follow)

    def open_intervals(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Openings clipped to [start, end), in order. Used to turn a send time into an ETA."""
        start, end = _utc(start), _utc(end)
        day = start.astimezone(self.tz).date() - timedelta(days=1)
        last_day = end.astimezone(self.tz).date()
        while day <= last_day:
            for s, e in self._intervals_on(day):
                s, e = max(s, start), min(e, end)
                if s < e:
                    yield s, e
            day += timedelta(days=1)

    # ------------------------------------------------------------------ internals
    def _intervals_on(self, day: date) -> list[tuple[datetime, datetime]]:
        if day in self.closed_dates:
            return []
        intervals = []
        for opening in self._by_weekday[day.weekday()]:
            close_day = day if opening.closes_at > opening.opens_at else day + timedelta(days=1)
            start = datetime.combine(day, opening.opens_at, tzinfo=self.tz).astimezone(UTC)
            end = datetime.combine(close_day, opening.closes_at, tzinfo=self.tz).astimezone(UTC)
            if end > start:  # a range swallowed by a DST jump is empty, not negative
                intervals.append((start, end))
        return intervals


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("naive datetime: pass an aware datetime")
    return at.astimezone(UTC)


class BusinessHoursService:
    """Database entry points. A tenant with no rows has no opening at all."""

    @staticmethod
    def schedule_for(tenant) -> WeeklySchedule:
        from apps.chat.models import BusinessHours, ClosedDate

        ranges = [
            OpeningRange(row.weekday, row.opens_at, row.closes_at)
            for row in BusinessHours.objects.filter(tenant=tenant).only("weekday", "opens_at", "closes_at")
        ]
        closed = ClosedDate.objects.filter(tenant=tenant).values_list("date", flat=True)
        return WeeklySchedule(tenant.timezone, ranges, closed)

    @classmethod
    def is_open(cls, tenant, at: datetime) -> bool:
        return cls.schedule_for(tenant).is_open(at)

    @classmethod
    def next_open_after(cls, tenant, at: datetime) -> datetime | None:
        return cls.schedule_for(tenant).next_open_after(at)
