"""Brazilian money, dates and names: the tables behind the template filters."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from apps.billing.templating.formatting import (
    first_name,
    format_date,
    format_days,
    format_money,
    title_name,
    to_date,
    to_decimal,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1234.56"), "R$ 1.234,56"),
        (Decimal("0"), "R$ 0,00"),
        (Decimal("0.005"), "R$ 0,01"),  # half up, as invoices round
        (Decimal("0.004"), "R$ 0,00"),
        (Decimal("999.995"), "R$ 1.000,00"),
        (Decimal("1234567.8"), "R$ 1.234.567,80"),
        (Decimal("-10"), "-R$ 10,00"),
        (Decimal("-0.001"), "R$ 0,00"),
        (1234, "R$ 1.234,00"),
        (0.1 + 0.2, "R$ 0,30"),
        (1234.5, "R$ 1.234,50"),
        ("1234.56", "R$ 1.234,56"),
        ("1234", "R$ 1.234,00"),
        (" 1234.56 ", "R$ 1.234,56"),
        ("1234,56", "R$ 1.234,56"),
        ("1.234,56", "R$ 1.234,56"),
        ("R$ 1.234,56", "R$ 1.234,56"),
        ("R$1.234,56", "R$ 1.234,56"),
        ("R$\u00a01.234,56", "R$ 1.234,56"),
        ("r$ 10", "R$ 10,00"),
        ("1.234.567", "R$ 1.234.567,00"),
        ("1.234", "R$ 1,23"),  # no comma: a plain decimal point (documented)
        ("-R$ 10,00", "-R$ 10,00"),
        ("R$ -10,00", "-R$ 10,00"),
        ("-5.5", "-R$ 5,50"),
    ],
)
def test_money(value, expected):
    assert format_money(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "abc",
        "12a",
        "1,234.56",
        "12,34,56",
        "1.23.4",
        "R$",
        "--1",
        "1e5",
        "NaN",
        "Infinity",
        "1" * 80,
        True,
        None,
        [],
        Decimal("NaN"),
        Decimal("Infinity"),
        float("inf"),
        Decimal("1e20"),
        date(2025, 1, 1),
    ],
)
def test_money_refuses_what_is_not_an_amount(value):
    with pytest.raises(ValueError):
        format_money(value)


def test_to_decimal_keeps_exact_values():
    assert to_decimal("1.234,5") == Decimal("1234.5")
    assert to_decimal(0.1) == Decimal("0.1")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(2025, 1, 31), "31/01/2025"),
        (datetime(2025, 1, 31, 23, 59, tzinfo=UTC), "31/01/2025"),
        ("2025-01-31", "31/01/2025"),
        (" 2025-01-31 ", "31/01/2025"),
        ("2025-01-31T10:00:00", "31/01/2025"),
        ("2025-01-31T10:00:00Z", "31/01/2025"),
        ("2025-01-31 10:00:00-03:00", "31/01/2025"),
        ("31/01/2025", "31/01/2025"),
        ("1/2/2025", "01/02/2025"),
        ("29/02/2024", "29/02/2024"),
    ],
)
def test_dates(value, expected):
    assert format_date(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "amanhã",
        "31/02/2025",
        "29/02/2025",
        "2025-13-01",
        "2025/01/31",
        "01-31-2025",
        "x" * 100,
        20250131,
        None,
        1.5,
    ],
)
def test_dates_refuse_what_is_not_a_date(value):
    with pytest.raises(ValueError):
        to_date(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("MARIA da silva", "Maria"),
        ("maria", "Maria"),
        ("  joão   pedro ", "João"),
        ("ÉRICA SOUZA", "Érica"),
        ("ANA-CLARA souza", "Ana-Clara"),
        ("d'ávila", "D'Ávila"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_first_name(value, expected):
    assert first_name(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("MARIA DA SILVA", "Maria da Silva"),
        ("joão dos santos e silva", "João dos Santos e Silva"),
        ("DE SOUZA", "De Souza"),  # a leading particle is still a name
    ],
)
def test_title_name(value, expected):
    assert title_name(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0 dias"),
        (1, "1 dia"),
        (2, "2 dias"),
        (-1, "-1 dia"),
        ("7", "7 dias"),
        (3.0, "3 dias"),
        (Decimal("4"), "4 dias"),
    ],
)
def test_days(value, expected):
    assert format_days(value) == expected


@pytest.mark.parametrize("value", [True, "x", 1.5, float("inf"), float("nan"), Decimal("NaN"), None])
def test_days_refuse_what_is_not_a_whole_number(value):
    with pytest.raises(ValueError):
        format_days(value)
