"""On which day does a cadence step go out? Pure date logic on the tenant's calendar.

A step's nominal date is `due_date + offset_days`. Where the step's message type respects
business hours, a nominal date on which the tenant never opens (weekend, holiday) moves to the
next business day: a D+1 of a Saturday due date goes out on Monday. So on a business day, the
steps due are those whose nominal date is today or one of the closed days right before it; on
a closed day none is. All dates are the tenant's local dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apps.billing.models import BillingConfig
from apps.billing.templating.date_calculator import today_in
from apps.charges.models.cadence import template_type_for_offset
from apps.chat.services import BusinessHoursService, WeeklySchedule
from apps.tenancy.models import Tenant

#: How far back closed days are looked for (a long holiday season is the worst case).
MAX_CLOSED_RUN_DAYS = 31


@dataclass(frozen=True)
class StepDate:
    offset_days: int
    template_type: str
    nominal: date
    effective: date | None  # None: no business day within reach


class TenantCalendar:
    """One tenant's calendar at one instant (`now`), for every step checked in a job run."""

    def __init__(
        self,
        *,
        tenant: Tenant,
        now: datetime,
        config: BillingConfig | None = None,
        schedule: WeeklySchedule | None = None,
    ) -> None:
        self.tz = ZoneInfo(tenant.timezone)
        self.now = now
        self.today = today_in(self.tz, now)
        self.config = config or BillingConfig.for_tenant(tenant)
        self.schedule = schedule or BusinessHoursService.schedule_for(tenant)
        self._business_days: dict[date, bool] = {}

    # ------------------------------------------------------------------ days
    def respects_hours(self, template_type: str) -> bool:
        return self.config.respects_business_hours(template_type)

    def is_business_day(self, day: date) -> bool:
        if day not in self._business_days:
            start = datetime.combine(day, time(0), self.tz)
            opening = self.schedule.next_open_after(start)
            self._business_days[day] = opening is not None and opening.astimezone(self.tz).date() == day
        return self._business_days[day]

    def nominal_dates_due_today(self, template_type: str) -> list[date]:
        """The nominal step dates that go out today for messages of `template_type`."""
        if not self.respects_hours(template_type):
            return [self.today]
        if not self.is_business_day(self.today):
            return []
        dates = [self.today]
        day = self.today - timedelta(days=1)
        while len(dates) <= MAX_CLOSED_RUN_DAYS and not self.is_business_day(day):
            dates.append(day)
            day -= timedelta(days=1)
        return dates

    def effective_date(self, nominal: date, template_type: str) -> date | None:
        """The day a step of nominal date `nominal` goes out (the next business day)."""
        if not self.respects_hours(template_type):
            return nominal
        day = nominal
        for _ in range(MAX_CLOSED_RUN_DAYS + 1):
            if self.is_business_day(day):
                return day
            day += timedelta(days=1)
        return None

    def step_dates(self, *, due_date: date, offsets: list[int]) -> list[StepDate]:
        """Every step's dates for one due date (the admin's preview, a charge's plan)."""
        result = []
        for offset in sorted(offsets):
            template_type = template_type_for_offset(offset)
            nominal = due_date + timedelta(days=offset)
            result.append(StepDate(offset, template_type, nominal, self.effective_date(nominal, template_type)))
        return result

    # ------------------------------------------------------------------ hours
    def opening_left_today(self, template_type: str) -> bool:
        """Whether a message of this type queued now can still go out today."""
        if not self.respects_hours(template_type):
            return True
        opening = self.schedule.next_open_after(self.now)
        return opening is not None and opening.astimezone(self.tz).date() == self.today

    def start_at(self, template_type: str, send_from: time | None) -> datetime | None:
        """When a step's queue may start: the next opening and the step's `send_from`, if
        later than now; None to start at once."""
        start = self.now
        if self.respects_hours(template_type):
            opening = self.schedule.next_open_after(self.now)
            if opening is not None:
                start = max(start, opening)
        if send_from is not None:
            start = max(start, datetime.combine(self.today, send_from, self.tz))
        return start if start > self.now else None
