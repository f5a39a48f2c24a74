"""BillingDateCalculator: days counted on the tenant's calendar on the day of sending."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from apps.billing.templating.date_calculator import (
    BillingDateCalculator,
    format_date,
    format_money,
    today_in,
)
from apps.billing.templating.default_templates import DEFAULT_TEMPLATES
from apps.billing.templating.engine import BillingTemplateEngine

CREDITOR_VARIABLES = {"creditor_name": "Clínica Exemplo Ltda.", "creditor_document": "11.222.333/0001-81"}


@pytest.mark.parametrize(
    ("today", "due", "overdue", "until", "due_today"),
    [
        # same day
        (date(2025, 3, 10), date(2025, 3, 10), 0, 0, True),
        # month ends
        (date(2025, 2, 1), date(2025, 1, 31), 1, 0, False),
        (date(2025, 1, 31), date(2025, 2, 1), 0, 1, False),
        (date(2025, 5, 1), date(2025, 4, 30), 1, 0, False),
        (date(2025, 4, 30), date(2025, 3, 31), 30, 0, False),
        (date(2025, 1, 31), date(2025, 2, 28), 0, 28, False),
        # February in a common year and in leap years
        (date(2023, 3, 1), date(2023, 2, 28), 1, 0, False),
        (date(2024, 3, 1), date(2024, 2, 28), 2, 0, False),
        (date(2024, 3, 1), date(2024, 2, 29), 1, 0, False),
        (date(2024, 2, 29), date(2024, 2, 29), 0, 0, True),
        (date(2024, 2, 28), date(2024, 2, 29), 0, 1, False),
        (date(2024, 2, 28), date(2024, 3, 1), 0, 2, False),
        (date(2023, 2, 28), date(2023, 3, 1), 0, 1, False),
        (date(2000, 3, 1), date(2000, 2, 28), 2, 0, False),  # 2000 was a leap year
        (date(2100, 3, 1), date(2100, 2, 28), 1, 0, False),  # 2100 will not be
        (date(2025, 2, 28), date(2024, 2, 29), 365, 0, False),
        # year ends
        (date(2025, 1, 1), date(2024, 12, 31), 1, 0, False),
        (date(2024, 12, 31), date(2025, 1, 1), 0, 1, False),
        (date(2025, 1, 1), date(2024, 1, 1), 366, 0, False),
        (date(2024, 1, 1), date(2025, 1, 1), 0, 366, False),
        (date(2025, 1, 1), date(2024, 12, 1), 31, 0, False),
    ],
)
def test_days_overdue_and_until_due(today, due, overdue, until, due_today):
    calculator = BillingDateCalculator(today)
    assert calculator.days_overdue(due) == overdue
    assert calculator.days_until_due(due) == until
    assert calculator.is_due_today(due) is due_today


@pytest.mark.parametrize("due", ["2024-12-31", "31/12/2024", datetime(2024, 12, 31, 23, 59)])
def test_due_dates_may_come_as_iso_or_brazilian_text(due):
    assert BillingDateCalculator(date(2025, 1, 1)).days_overdue(due) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(2025, 1, 5), "05/01/2025"),
        (date(2024, 2, 29), "29/02/2024"),
        (date(2024, 12, 31), "31/12/2024"),
        (datetime(2025, 1, 1, 0, 0), "01/01/2025"),
        ("2025-07-04", "04/07/2025"),
    ],
)
def test_dates_are_formatted_dd_mm_aaaa(value, expected):
    assert format_date(value) == expected
    assert BillingDateCalculator(date(2025, 1, 1)).format_date(value) == expected


@pytest.mark.parametrize(
    ("tz", "instant", "expected"),
    [
        # São Paulo is UTC-3 all year (no DST since 2019): midnight local is 03:00 UTC.
        ("America/Sao_Paulo", datetime(2025, 3, 1, 2, 30, tzinfo=UTC), date(2025, 2, 28)),
        ("America/Sao_Paulo", datetime(2025, 3, 1, 2, 59, 59, tzinfo=UTC), date(2025, 2, 28)),
        ("America/Sao_Paulo", datetime(2025, 3, 1, 3, 0, tzinfo=UTC), date(2025, 3, 1)),
        ("America/Sao_Paulo", datetime(2024, 3, 1, 2, 30, tzinfo=UTC), date(2024, 2, 29)),
        ("America/Sao_Paulo", datetime(2025, 1, 1, 2, 30, tzinfo=UTC), date(2024, 12, 31)),
        ("America/Sao_Paulo", datetime(2025, 1, 1, 3, 30, tzinfo=UTC), date(2025, 1, 1)),
        # Manaus is UTC-4, Noronha UTC-2: one Brazilian instant, three Brazilian dates.
        ("America/Manaus", datetime(2025, 1, 1, 3, 30, tzinfo=UTC), date(2024, 12, 31)),
        ("America/Noronha", datetime(2025, 1, 1, 1, 30, tzinfo=UTC), date(2024, 12, 31)),
        ("America/Noronha", datetime(2025, 1, 1, 2, 30, tzinfo=UTC), date(2025, 1, 1)),
        # East of UTC the local day starts earlier.
        ("Asia/Tokyo", datetime(2024, 12, 31, 15, 0, tzinfo=UTC), date(2025, 1, 1)),
        ("Asia/Tokyo", datetime(2024, 12, 31, 14, 59, tzinfo=UTC), date(2024, 12, 31)),
        # A zone with DST: New York on the night clocks change.
        ("America/New_York", datetime(2024, 3, 10, 4, 30, tzinfo=UTC), date(2024, 3, 9)),
        ("America/New_York", datetime(2024, 3, 10, 5, 30, tzinfo=UTC), date(2024, 3, 10)),
        ("UTC", datetime(2025, 1, 1, 0, 0, tzinfo=UTC), date(2025, 1, 1)),
        # The instant may be given in any zone.
        ("America/Sao_Paulo", datetime(2025, 3, 1, 0, 30, tzinfo=ZoneInfo("America/Sao_Paulo")), date(2025, 3, 1)),
        (ZoneInfo("America/Sao_Paulo"), datetime(2025, 3, 1, 2, 30, tzinfo=UTC), date(2025, 2, 28)),
    ],
)
def test_today_is_the_tenant_local_date(tz, instant, expected):
    assert today_in(tz, instant) == expected
    assert BillingDateCalculator.today_in(tz, instant) == expected
    assert BillingDateCalculator.for_timezone(tz, instant).today == expected


@time_machine.travel(datetime(2025, 3, 1, 2, 30, tzinfo=UTC), tick=False)
def test_today_defaults_to_the_current_instant():
    assert today_in("America/Sao_Paulo") == date(2025, 2, 28)
    assert today_in("UTC") == date(2025, 3, 1)


def test_a_bill_due_today_is_not_called_overdue_on_the_evening_it_is_due():
    # 23:30 in São Paulo on the due date is already the next day in UTC.
    evening = datetime(2025, 3, 11, 2, 30, tzinfo=UTC)
    calculator = BillingDateCalculator.for_timezone("America/Sao_Paulo", evening)
    assert calculator.is_due_today(date(2025, 3, 10))
    assert calculator.days_overdue(date(2025, 3, 10)) == 0
    next_morning = BillingDateCalculator.for_timezone("America/Sao_Paulo", evening + timedelta(hours=1))
    assert next_morning.days_overdue(date(2025, 3, 10)) == 1


@pytest.mark.parametrize(
    ("tz", "now", "error"),
    [
        ("Mars/Olympus_Mons", None, ValueError),
        ("", None, ValueError),
        ("../../etc/passwd", None, ValueError),
        ("America/Sao_Paulo", datetime(2025, 1, 1, 12, 0), ValueError),  # naive: which instant?
    ],
)
def test_bad_timezones_and_naive_instants_are_refused(tz, now, error):
    with pytest.raises(error):
        today_in(tz, now)


@pytest.mark.parametrize("today", [datetime(2025, 1, 1, 12, 0), "2025-01-01", None])
def test_the_calculator_needs_a_date(today):
    with pytest.raises(TypeError):
        BillingDateCalculator(today)


def test_enrich_adds_todays_values_in_a_new_dict():
    variables = {"invoice": "123", "days_overdue": 99}
    enriched = BillingDateCalculator(date(2025, 3, 10)).enrich(
        variables, name="  MARIA   da SILVA ", due_date=date(2025, 3, 5), amount=Decimal("1234.56")
    )
    assert enriched == {
        "invoice": "123",
        "name": "MARIA da SILVA",
        "first_name": "Maria",
        "due_date": "05/03/2025",
        "amount": "R$ 1.234,56",
        "days_overdue": 5,
        "days_until_due": 0,
        "is_due_today": False,
    }
    assert variables == {"invoice": "123", "days_overdue": 99}


def test_enrich_keeps_the_clients_other_keys_and_first_name():
    enriched = BillingDateCalculator(date(2025, 3, 10)).enrich(
        {"first_name": "Dona Maria", "payment_link": "https://x.com", "amount_note": "à vista"},
        name="Maria Silva",
    )
    assert enriched["first_name"] == "Dona Maria"
    assert enriched["payment_link"] == "https://x.com"
    assert enriched["amount_note"] == "à vista"
    assert "due_date" not in enriched and "amount" not in enriched


@pytest.mark.parametrize(
    ("kwargs", "keys"),
    [
        ({}, set()),
        ({"name": "Ana"}, {"name", "first_name"}),
        ({"due_date": date(2025, 3, 12)}, {"due_date", "days_overdue", "days_until_due", "is_due_today"}),
        ({"amount": 10}, {"amount"}),
        (
            {"due_date": "2025-03-12", "amount": "99.9"},
            {"due_date", "days_overdue", "days_until_due", "is_due_today", "amount"},
        ),
    ],
)
def test_enrich_adds_only_what_applies(kwargs, keys):
    assert set(BillingDateCalculator(date(2025, 3, 10)).enrich(None, **kwargs)) == keys


@pytest.mark.parametrize(("kwargs"), [{"due_date": "amanhã"}, {"due_date": "2025-02-30"}, {"amount": "dez reais"}])
def test_enrich_refuses_values_it_cannot_read(kwargs):
    with pytest.raises(ValueError):
        BillingDateCalculator(date(2025, 3, 10)).enrich({}, **kwargs)


def test_a_queue_paused_over_the_weekend_sends_mondays_numbers():
    contact = {"name": "João Souza", "due_date": date(2025, 3, 6), "amount": Decimal("89.90")}
    friday = BillingDateCalculator.for_timezone("America/Sao_Paulo", datetime(2025, 3, 7, 20, 0, tzinfo=UTC))
    monday = BillingDateCalculator.for_timezone("America/Sao_Paulo", datetime(2025, 3, 10, 12, 0, tzinfo=UTC))

    on_friday = friday.enrich(CREDITOR_VARIABLES, **contact)
    on_monday = monday.enrich(on_friday, **contact)  # re-enriching stored variables refreshes them

    assert (on_friday["days_overdue"], on_monday["days_overdue"]) == (1, 4)
    template = DEFAULT_TEMPLATES["overdue"][0]
    assert "(há 1 dia)" in BillingTemplateEngine.render(template, on_friday)
    assert "(há 4 dias)" in BillingTemplateEngine.render(template, on_monday)


def test_an_upcoming_bill_counts_down_until_the_due_day():
    due = date(2025, 3, 14)
    messages = {}
    for day in (10, 13, 14):
        variables = BillingDateCalculator(date(2025, 3, day)).enrich(CREDITOR_VARIABLES, due_date=due, amount=50)
        messages[day] = BillingTemplateEngine.render(DEFAULT_TEMPLATES["upcoming"][0], variables)
    assert "daqui a 4 dias" in messages[10]
    assert "daqui a 1 dia)" in messages[13]
    assert "vence *hoje* (14/03/2025)" in messages[14]


def test_money_is_the_same_implementation_as_the_filter():
    assert format_money(Decimal("1234.56")) == "R$ 1.234,56"
    assert BillingTemplateEngine.render("{{v|money}}", {"v": Decimal("1234.56")}) == format_money(Decimal("1234.56"))
