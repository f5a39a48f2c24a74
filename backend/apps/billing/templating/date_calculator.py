"""Days overdue / until due, counted on the tenant's calendar on the day a message is sent.

A contact is accepted once but may be sent days later (a queue paused for business hours over
a weekend, an instance that was down). The numbers in the message must be the ones of the day
it is actually sent, so the send worker builds one `BillingDateCalculator` per tenant with
`today_in(tenant.timezone)` and calls `enrich()` right before rendering each message: a contact
accepted on Friday with one day overdue says four days overdue when it goes out on Monday.

"Today" is always the tenant's local date: 02:30 UTC is still the previous day in São Paulo,
so a UTC date would tell a customer their bill is due tomorrow on the evening it is due.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .formatting import first_name as _first_name
from .formatting import format_date, format_money, to_date

__all__ = ["BillingDateCalculator", "format_date", "format_money", "today_in"]


def _zone(tz: str | tzinfo) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str) or not tz.strip():
        raise ValueError("timezone must be an IANA name such as 'America/Sao_Paulo'")
    try:
        return ZoneInfo(tz.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {tz!r}") from exc


def today_in(tz: str | ZoneInfo, now: datetime | None = None) -> date:
    """The calendar date in `tz` at the instant `now` (default: the current time).

    `now` must be timezone-aware: a naive datetime does not say which instant it is, and
    guessing is how messages end up a day off around midnight.
    """
    zone = _zone(tz)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(zone).date()


class BillingDateCalculator:
    """Date arithmetic for one "today" (the tenant's local date on the day of sending)."""

    # The keys `enrich` computes; every other key of the variables is left as the client sent it.
    COMPUTED_KEYS = (
        "name",
        "first_name",
        "due_date",
        "amount",
        "days_overdue",
        "days_until_due",
        "is_due_today",
    )

    def __init__(self, today: date) -> None:
        if isinstance(today, datetime) or not isinstance(today, date):
            raise TypeError("today must be a date (the tenant's local date); use today_in(tz) to get it")
        self.today = today

    @classmethod
    def for_timezone(cls, tz: str | ZoneInfo, now: datetime | None = None) -> BillingDateCalculator:
        """The calculator for the current day (or `now`) in the tenant's timezone."""
        return cls(today_in(tz, now))

    today_in = staticmethod(today_in)

    def days_overdue(self, due: date | str) -> int:
        """Whole days since the due date; 0 when due today or in the future."""
        return max(0, (self.today - to_date(due)).days)

    def days_until_due(self, due: date | str) -> int:
        """Whole days until the due date; 0 when due today or already overdue (never negative)."""
        return max(0, (to_date(due) - self.today).days)

    def is_due_today(self, due: date | str) -> bool:
        return to_date(due) == self.today

    @staticmethod
    def format_date(value: date | datetime | str) -> str:
        """`dd/mm/aaaa`; the same implementation as the template's `date` filter."""
        return format_date(value)

    def enrich(
        self,
        variables: Mapping[str, Any] | None,
        *,
        name: str | None = None,
        due_date: date | str | None = None,
        amount: Decimal | int | float | str | None = None,
    ) -> dict[str, Any]:
        """A new dict: the client's variables plus the values computed for today.

        Adds `name` and `first_name` when `name` is given (a `first_name` the client supplied
        is kept: it is not time-dependent and may be a preferred name); `due_date`
        (dd/mm/aaaa), `days_overdue`, `days_until_due` and `is_due_today` when `due_date` is
        given; `amount` (`R$ 1.234,56`) when `amount` is given. Computed keys always replace
        what was there before, which is how numbers computed at ingest are refreshed on the
        day of sending; keys that are not computed are never touched. `variables` itself is
        not modified. Raises ValueError for a due date or amount that cannot be read.
        """
        enriched: dict[str, Any] = dict(variables or {})
        if name is not None:
            clean_name = " ".join(str(name).split())
            enriched["name"] = clean_name
            if not str(enriched.get("first_name") or "").strip():
                enriched["first_name"] = _first_name(clean_name)
        if due_date is not None:
            due = to_date(due_date)
            enriched["due_date"] = format_date(due)
            enriched["days_overdue"] = self.days_overdue(due)
            enriched["days_until_due"] = self.days_until_due(due)
            enriched["is_due_today"] = self.is_due_today(due)
        if amount is not None:
            enriched["amount"] = format_money(amount)
        return enriched
