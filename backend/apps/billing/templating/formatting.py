"""Brazilian formatting of money, dates and names: the one implementation behind the
template filters (`money`, `date`, `first_name`, ...) and `BillingDateCalculator.enrich`.

Every parser here also accepts its own output (`"R$ 1.234,56"`, `"31/01/2025"`), so a value
that was already formatted when the contact was accepted formats to the same text again at
send time; applying a filter twice never changes the message.

All functions raise `ValueError` for input they cannot read; the template engine turns that
into a `TemplateError` that names the variable.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

# Longer strings are not amounts or dates; refusing them early keeps parsing trivially cheap.
_MAX_PARSE_LENGTH = 64
_CENTS = Decimal("0.01")
# The largest amount we format: far beyond any real invoice, small enough that quantize()
# never leaves Decimal's default 28-digit precision.
_MAX_AMOUNT = Decimal("1e15")

_PLAIN_DECIMAL = re.compile(r"\d+(?:\.\d+)?")
_BR_DECIMAL = re.compile(r"(?:\d{1,3}(?:\.\d{3})+|\d+)(?:,\d+)?")
_BR_THOUSANDS_ONLY = re.compile(r"\d{1,3}(?:\.\d{3}){2,}")
_BR_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_SPACES = re.compile(r"[\s\u00a0]+")

# Lower-case particles in Brazilian names ("Maria da Silva", "João dos Santos").
_NAME_PARTICLES = frozenset({"da", "das", "de", "do", "dos", "e", "di", "du", "del", "van", "von"})


def to_decimal(value: Any) -> Decimal:
    """Read an amount: Decimal, int, float, or a string such as `"1234.56"`, `"1234,56"`,
    `"1.234,56"` or `"R$ 1.234,56"`.

    A string with a comma is read the Brazilian way (dots group thousands); a string without a
    comma is read as a plain decimal (`"1.234"` is one point two three four) unless it has two
    or more thousand groups (`"1.234.567"`). `bool`, NaN and infinities are refused.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(repr(value))  # repr: the shortest text that round-trips (0.1, not 0.1000000000000000055)
    elif isinstance(value, str):
        amount = _parse_amount_text(value)
    else:
        raise ValueError(f"{type(value).__name__} is not an amount")
    if not amount.is_finite():
        raise ValueError("amount is not a finite number")
    if abs(amount) >= _MAX_AMOUNT:
        raise ValueError("amount is too large")
    return amount


def _parse_amount_text(text: str) -> Decimal:
    if len(text) > _MAX_PARSE_LENGTH:
        raise ValueError("amount text is too long")
    cleaned = _SPACES.sub("", text)
    negative = cleaned.startswith("-")
    if negative:
        cleaned = cleaned[1:]
    if cleaned[:2].upper() == "R$":
        cleaned = cleaned[2:]
    if not negative and cleaned.startswith("-"):  # "R$ -10,00"
        negative, cleaned = True, cleaned[1:]
    if "," in cleaned:
        if not _BR_DECIMAL.fullmatch(cleaned):
            raise ValueError("amount is not a number")
        cleaned = cleaned.replace(".", "").replace(",", ".")
    elif _BR_THOUSANDS_ONLY.fullmatch(cleaned):
        cleaned = cleaned.replace(".", "")
    elif not _PLAIN_DECIMAL.fullmatch(cleaned):
        raise ValueError("amount is not a number")
    amount = Decimal(cleaned)
    return -amount if negative else amount


def format_money(value: Any) -> str:
    """`Decimal("1234.56")` → `"R$ 1.234,56"`; negative amounts → `"-R$ 10,00"`.

    Rounds half up to the cent, as Brazilian invoices do. Raises ValueError for anything that
    is not an amount (see `to_decimal`).
    """
    amount = to_decimal(value)
    try:
        cents = amount.quantize(_CENTS, rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise ValueError("amount cannot be rounded to cents") from exc
    sign = "-" if cents < 0 else ""
    text = f"{abs(cents):,.2f}"  # "1,234.56"
    return f"{sign}R$ " + text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


def to_date(value: Any) -> date:
    """Read a date: `date`, `datetime` (its own calendar date: convert to the tenant's zone
    first), an ISO string (`"2025-01-31"`, `"2025-01-31T10:00:00-03:00"`) or `"31/01/2025"`."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{type(value).__name__} is not a date")
    text = value.strip()
    if not text or len(text) > _MAX_PARSE_LENGTH:
        raise ValueError("date text is empty or too long")
    match = _BR_DATE.fullmatch(text)
    try:
        if match:
            day, month, year = (int(part) for part in match.groups())
            return date(year, month, day)
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text).date()
    except ValueError as exc:
        raise ValueError("not a valid date") from exc


def format_date(value: Any) -> str:
    """`date(2025, 1, 31)` → `"31/01/2025"` (dd/mm/aaaa). Accepts whatever `to_date` reads."""
    return to_date(value).strftime("%d/%m/%Y")


def _capitalize_word(word: str) -> str:
    # "ana-clara" → "Ana-Clara"; "d'ávila" → "D'Ávila"
    parts = re.split(r"([-'’])", word.lower())
    return "".join(part[:1].upper() + part[1:] for part in parts)


def first_name(value: Any) -> str:
    """`"MARIA da silva"` → `"Maria"`: the first word of a name, capitalised."""
    words = str(value).split()
    return _capitalize_word(words[0]) if words else ""


def title_name(value: Any) -> str:
    """`"MARIA DA SILVA"` → `"Maria da Silva"`: every word capitalised except the particles
    Brazilian names keep in lower case."""
    words = str(value).split()
    return " ".join(
        word.lower() if index and word.lower() in _NAME_PARTICLES else _capitalize_word(word)
        for index, word in enumerate(words)
    )


def format_days(value: Any) -> str:
    """`1` → `"1 dia"`, `5` → `"5 dias"`: the count of days a message talks about."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number of days")
    if isinstance(value, int):
        days = value
    elif (
        isinstance(value, str)
        and re.fullmatch(r"\s*-?\d{1,9}\s*", value)
        or isinstance(value, (float, Decimal))
        and math.isfinite(value)
        and value == int(value)
    ):
        days = int(value)
    else:
        raise ValueError("not a whole number of days")
    return f"{days} dia" if abs(days) == 1 else f"{days} dias"
