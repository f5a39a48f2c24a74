from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from apps.chat.models import BusinessHours, ClosedDate
from apps.chat.services import BusinessHoursService, WeeklySchedule
from apps.chat.services.business_hours import OpeningRange
from apps.tenancy.models import Tenant

SP = ZoneInfo("America/Sao_Paulo")
NY = ZoneInfo("America/New_York")


def sp(*args) -> datetime:
    return datetime(*args, tzinfo=SP)


def clinic_schedule(tz=SP, closed=()) -> WeeklySchedule:
    """Mon-Fri 08-12 and 13-18 (lunch break), Sat 08-12, Fri night 22:00-02:00."""
    ranges = []
    for day in range(5):
        ranges += [OpeningRange(day, time(8), time(12)), OpeningRange(day, time(13), time(18))]
    ranges.append(OpeningRange(5, time(8), time(12)))
    ranges.append(OpeningRange(4, time(22), time(2)))
    return WeeklySchedule(tz, ranges, closed)


# 2026-11-23 is a Monday.
IS_OPEN = [
    (sp(2026, 11, 23, 7, 59), False),
    (sp(2026, 11, 23, 8, 0), True),
    (sp(2026, 11, 23, 11, 59), True),
    (sp(2026, 11, 23, 12, 0), False),  # lunch
    (sp(2026, 11, 23, 12, 30), False),
    (sp(2026, 11, 23, 13, 0), True),
    (sp(2026, 11, 23, 18, 0), False),  # closing time is exclusive
    (sp(2026, 11, 27, 23, 0), True),  # Friday night range
    (sp(2026, 11, 28, 1, 59), True),  # ...past midnight into Saturday
    (sp(2026, 11, 28, 2, 0), False),
    (sp(2026, 11, 28, 9, 0), True),  # Saturday morning
    (sp(2026, 11, 28, 12, 0), False),
    (sp(2026, 11, 29, 10, 0), False),  # Sunday
    (datetime(2026, 11, 23, 11, 0, tzinfo=UTC), True),  # 08:00 in São Paulo
    (datetime(2026, 11, 23, 10, 59, tzinfo=UTC), False),  # 07:59 in São Paulo
]


@pytest.mark.parametrize("at,expected", IS_OPEN)
def test_is_open_in_the_tenant_timezone(at, expected):
    assert clinic_schedule().is_open(at) is expected


NEXT_OPEN = [
    (sp(2026, 11, 23, 7, 0), sp(2026, 11, 23, 8, 0)),
    (sp(2026, 11, 23, 9, 0), sp(2026, 11, 23, 9, 0)),  # already open: now
    (sp(2026, 11, 23, 12, 15), sp(2026, 11, 23, 13, 0)),  # after lunch
    (sp(2026, 11, 23, 18, 0), sp(2026, 11, 24, 8, 0)),  # next morning
    (sp(2026, 11, 27, 18, 30), sp(2026, 11, 27, 22, 0)),  # Friday night range
    (sp(2026, 11, 28, 12, 0), sp(2026, 11, 30, 8, 0)),  # Saturday noon -> Monday
    (sp(2026, 11, 29, 10, 0), sp(2026, 11, 30, 8, 0)),  # Sunday -> Monday
]


@pytest.mark.parametrize("at,expected", NEXT_OPEN)
def test_next_open_after(at, expected):
    assert clinic_schedule().next_open_after(at) == expected


def test_holidays_skip_the_whole_day():
    schedule = clinic_schedule(closed={date(2026, 11, 30), date(2026, 12, 1)})
    assert not schedule.is_open(sp(2026, 11, 30, 9, 0))
    assert schedule.next_open_after(sp(2026, 11, 28, 12, 0)) == sp(2026, 12, 2, 8, 0)


def test_a_week_with_no_opening_returns_none():
    assert WeeklySchedule(SP, []).next_open_after(sp(2026, 11, 23, 9, 0)) is None


def test_a_year_of_holidays_returns_none_without_looping_forever():
    every_day = {date(2026, 11, 1).fromordinal(date(2026, 11, 1).toordinal() + i) for i in range(500)}
    assert clinic_schedule(closed=every_day).next_open_after(sp(2026, 11, 23, 9, 0)) is None


def test_always_open_is_open_at_any_time():
    schedule = WeeklySchedule.always_open(SP)
    assert schedule.is_open(sp(2026, 11, 29, 3, 0))
    assert schedule.closes_after(sp(2026, 11, 29, 3, 0)) > sp(2027, 1, 1)


def test_closes_after_reports_the_end_of_the_current_opening():
    schedule = clinic_schedule()
    assert schedule.closes_after(sp(2026, 11, 23, 9, 0)) == sp(2026, 11, 23, 12, 0)
    assert schedule.closes_after(sp(2026, 11, 27, 23, 30)) == sp(2026, 11, 28, 2, 0)
    assert schedule.closes_after(sp(2026, 11, 23, 12, 30)) is None


def test_open_intervals_are_clipped_and_ordered():
    intervals = list(clinic_schedule().open_intervals(sp(2026, 11, 23, 10, 0), sp(2026, 11, 23, 14, 0)))
    assert intervals == [
        (sp(2026, 11, 23, 10, 0).astimezone(UTC), sp(2026, 11, 23, 12, 0).astimezone(UTC)),
        (sp(2026, 11, 23, 13, 0).astimezone(UTC), sp(2026, 11, 23, 14, 0).astimezone(UTC)),
    ]


def test_dst_spring_forward_keeps_local_wall_clock_hours():
    # New York: 2026-03-08 02:00 -> 03:00. Sunday 08:00 local opens at 12:00 UTC (EDT).
    schedule = WeeklySchedule(NY, [OpeningRange(6, time(8), time(18)), OpeningRange(5, time(8), time(18))])
    assert schedule.next_open_after(datetime(2026, 3, 8, 5, 0, tzinfo=UTC)) == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    # the Saturday before still used EST (UTC-5)
    assert schedule.is_open(datetime(2026, 3, 7, 13, 0, tzinfo=UTC))
    assert not schedule.is_open(datetime(2026, 3, 7, 12, 59, tzinfo=UTC))


def test_dst_range_inside_the_skipped_hour_does_not_break():
    # 02:00-03:00 does not exist on 2026-03-08 in New York: the opening is empty, not negative.
    schedule = WeeklySchedule(NY, [OpeningRange(6, time(2), time(3))])
    nxt = schedule.next_open_after(datetime(2026, 3, 8, 0, 0, tzinfo=UTC))
    assert nxt is not None and nxt > datetime(2026, 3, 8, 0, 0, tzinfo=UTC)


def test_dst_fall_back_night_range_covers_the_repeated_hour():
    # 2026-11-01 01:00-02:00 happens twice in New York; a 00:00-03:00 range lasts 4 real hours.
    schedule = WeeklySchedule(NY, [OpeningRange(6, time(0), time(3))])
    intervals = list(
        schedule.open_intervals(datetime(2026, 11, 1, 0, 0, tzinfo=UTC), datetime(2026, 11, 2, 0, 0, tzinfo=UTC))
    )
    ((start, end),) = intervals
    assert (end - start).total_seconds() == 4 * 3600


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        clinic_schedule().is_open(datetime(2026, 11, 23, 9, 0))


@pytest.mark.django_db
def test_service_reads_the_tenant_rows_and_timezone():
    tenant = Tenant.objects.create(name="Clinic", slug="clinic", timezone="America/Sao_Paulo")
    BusinessHours.objects.create(tenant=tenant, weekday=0, opens_at=time(8), closes_at=time(18))
    ClosedDate.objects.create(tenant=tenant, date=date(2026, 11, 30), reason="Holiday")
    assert BusinessHoursService.is_open(tenant, sp(2026, 11, 23, 9, 0))
    assert not BusinessHoursService.is_open(tenant, sp(2026, 11, 23, 19, 0))
    assert BusinessHoursService.next_open_after(tenant, sp(2026, 11, 23, 19, 0)) == sp(2026, 12, 7, 8, 0)


@pytest.mark.django_db
def test_tenant_without_rows_is_never_open():
    tenant = Tenant.objects.create(name="Empty", slug="empty")
    assert BusinessHoursService.next_open_after(tenant, sp(2026, 11, 23, 9, 0)) is None
