"""Warm-up: how many messages a number may send a day while it is new in this service.

A brand-new WhatsApp number that fires hundreds of collection messages on its first day is the
classic way to get banned (contract §5: "warming numbers, not mass-sending from cold numbers").
So a number's daily cap grows with its age here: by default 20 a day from day 0, 50 from day 4,
100 from day 8, 200 from day 15, and no cap from day 31. The tenant edits the steps
(`NumberHealthSettings`); a person may skip the warm-up of a number with history (audited on the
instance). Pure: days are the tenant's local dates, passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

DEFAULT_SCHEDULE: tuple[tuple[int, int], ...] = ((0, 20), (4, 50), (8, 100), (15, 200))
DEFAULT_UNCAPPED_FROM_DAY = 31


@dataclass(frozen=True)
class WarmUpSchedule:
    """Steps `(from_day, cap)`, ascending, the first at day 0; no cap from `uncapped_from_day`."""

    steps: tuple[tuple[int, int], ...] = DEFAULT_SCHEDULE
    uncapped_from_day: int = DEFAULT_UNCAPPED_FROM_DAY

    @staticmethod
    def default_steps() -> list[list[int]]:
        """The model field's default (a fresh list each time)."""
        return [list(step) for step in DEFAULT_SCHEDULE]

    @classmethod
    def from_steps(cls, steps: Any, *, uncapped_from_day: int) -> WarmUpSchedule:
        """Validate `[[day, cap], ...]`; ValueError with a reason a person can act on."""
        if not isinstance(steps, (list, tuple)) or not steps:
            raise ValueError("give at least one step, [day, cap], starting at day 0")
        parsed: list[tuple[int, int]] = []
        for step in steps:
            if (
                not isinstance(step, (list, tuple))
                or len(step) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in step)
            ):
                raise ValueError("each step is [day, cap] with whole numbers")
            parsed.append((int(step[0]), int(step[1])))
        days = [day for day, _ in parsed]
        if days[0] != 0 or days != sorted(set(days)):
            raise ValueError("steps start at day 0 and their days go strictly up")
        if any(cap < 1 for _, cap in parsed):
            raise ValueError("a daily cap is at least 1")
        if uncapped_from_day <= days[-1]:
            raise ValueError("the day the cap ends must come after the last step")
        return cls(tuple(parsed), int(uncapped_from_day))

    @classmethod
    def parse(cls, text: str, *, uncapped_from_day: int) -> WarmUpSchedule:
        """`"0:20, 4:50, 8:100, 15:200"` (the admin's form) → a schedule."""
        steps = []
        for part in filter(None, (chunk.strip() for chunk in str(text).split(","))):
            day, sep, cap = part.partition(":")
            if not sep or not day.strip().isdigit() or not cap.strip().isdigit():
                raise ValueError(f"{part!r}: write day:cap, e.g. 0:20")
            steps.append([int(day), int(cap)])
        return cls.from_steps(steps, uncapped_from_day=uncapped_from_day)

    def as_text(self) -> str:
        return ", ".join(f"{day}:{cap}" for day, cap in self.steps)

    def cap_for_age(self, age_days: int) -> int | None:
        """The cap on the number's `age_days`-th day here (0 = its first), None = no cap."""
        if age_days >= self.uncapped_from_day:
            return None
        cap = self.steps[0][1]
        for day, step_cap in self.steps:
            if age_days >= day:
                cap = step_cap
        return cap


@dataclass(frozen=True)
class WarmUp:
    """One number's warm-up: when it started (local date) and whether a person skipped it."""

    started_on: date
    skipped: bool
    schedule: WarmUpSchedule

    def age_on(self, day: date) -> int:
        return max((day - self.started_on).days, 0)

    def cap_on(self, day: date) -> int | None:
        """Messages the number may send on local `day`; None = no cap."""
        if self.skipped:
            return None
        return self.schedule.cap_for_age(self.age_on(day))
