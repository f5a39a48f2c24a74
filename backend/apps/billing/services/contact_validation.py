"""Validate one incoming contact in plain Python.

Ingest accepts up to 10,000 contacts per request; DRF field machinery costs tens of
microseconds per field per contact, so the contact list is checked here by hand (the DRF
`ContactInputSerializer` only documents the shape for OpenAPI). A bad contact is refused on its
own, with a code; the rest of the request goes on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from django.conf import settings

from apps.billing.constants import TemplateType
from apps.contacts.utils import PhoneNumberError, mask_raw_phone, normalize_phone

CONTACT_FIELDS = frozenset({"phone", "name", "external_id", "due_date", "amount", "variables"})
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_MAX_AMOUNT = Decimal("999999999999.99")
_BR_AMOUNT = re.compile(r"^\d{1,3}(\.\d{3})*(,\d{1,2})?$|^\d+(,\d{1,2})$")


@dataclass
class ValidContact:
    index: int
    phone: str
    name: str
    external_id: str = ""
    due_date: date | None = None
    amount: Decimal | None = None
    variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejection:
    index: int
    phone: str  # masked
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "phone": self.phone, "code": self.code, "message": self.message}


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class ContactValidator:
    """Checks contacts of one request against the template type's rules and the template's
    required variables. `today` is the tenant's local date (overdue means before it)."""

    def __init__(self, *, template_type: str, today: date, required_variables: frozenset[str]) -> None:
        self.template_type = template_type
        self.today = today
        self.required_variables = required_variables
        self.needs_money = template_type in (TemplateType.OVERDUE, TemplateType.UPCOMING)
        self.max_string = int(settings.BILLING_MAX_STRING_LENGTH)
        self.max_depth = int(settings.BILLING_MAX_VARIABLES_DEPTH)
        self.max_variables_bytes = int(settings.BILLING_MAX_VARIABLES_BYTES)

    def validate(self, index: int, raw: Any) -> ValidContact | Rejection:
        try:
            return self._validate(index, raw)
        except _Refused as refusal:
            # Masked only on refusal: masking parses the number again, which cost a third of
            # the validation time of 10,000 good contacts (bench/profile_ingest.py).
            phone = raw.get("phone") if isinstance(raw, Mapping) else None
            masked = mask_raw_phone(phone) if isinstance(phone, str) else ""
            return Rejection(index, masked, refusal.code, refusal.message)

    # ------------------------------------------------------------------ checks
    def _validate(self, index: int, raw: Any) -> ValidContact:
        if not isinstance(raw, (dict, Mapping)):  # dict first: a parsed body has nothing else
            raise _Refused("invalid_contact", "Each contact must be a JSON object.")
        phone_raw = raw.get("phone")
        if not isinstance(phone_raw, str):
            raise _Refused("missing_phone" if phone_raw is None else "invalid_phone", "phone must be a string.")
        try:
            phone = normalize_phone(phone_raw)
        except PhoneNumberError as exc:
            raise _Refused(exc.code if exc.code != "empty_phone" else "missing_phone", exc.message) from None
        name = self._string(raw.get("name"), "name", required=True, max_length=200)
        external_id = self._string(raw.get("external_id"), "external_id", required=False, max_length=200)
        due_date = self._due_date(raw.get("due_date"))
        amount = self._amount(raw.get("amount"))
        variables = self._variables(raw.get("variables"))
        return ValidContact(index, phone, name, external_id, due_date, amount, variables)

    def _string(self, value: Any, name: str, *, required: bool, max_length: int) -> str:
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise _Refused(f"missing_{name}", f"{name} is required.")
            return ""
        if not isinstance(value, str):
            raise _Refused(f"invalid_{name}", f"{name} must be a string.")
        text = value.strip()
        if len(text) > max_length or "\x00" in text:
            raise _Refused(f"invalid_{name}", f"{name} must be at most {max_length} characters.")
        return text

    def _due_date(self, value: Any) -> date | None:
        if value is None or value == "":
            if self.needs_money:
                raise _Refused("missing_due_date", f"due_date is required for {self.template_type} messages.")
            return None
        due = parse_due_date(value)
        if due is None:
            raise _Refused("invalid_due_date", "due_date must be a date as YYYY-MM-DD or DD/MM/YYYY.")
        if self.template_type == TemplateType.OVERDUE and due >= self.today:
            raise _Refused("due_date_not_past", "An overdue message needs a due_date before today.")
        if self.template_type == TemplateType.UPCOMING and due < self.today:
            raise _Refused("due_date_in_past", "An upcoming message needs a due_date today or later.")
        return due

    def _amount(self, value: Any) -> Decimal | None:
        if value is None or value == "":
            if self.needs_money:
                raise _Refused("missing_amount", f"amount is required for {self.template_type} messages.")
            return None
        amount = parse_amount(value)
        if amount is None:
            raise _Refused("invalid_amount", "amount must be a number with at most 2 decimals, e.g. 1234.56.")
        return amount

    def _variables(self, value: Any) -> dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise _Refused("invalid_variables", "variables must be a JSON object.")
        if not self._shape_ok(value, 1):
            raise _Refused(
                "invalid_variables",
                f"variables must have simple names, at most {self.max_depth} levels and short strings.",
            )
        if _json_longer_than(value, self.max_variables_bytes):
            raise _Refused("invalid_variables", f"variables must be at most {self.max_variables_bytes} bytes.")
        missing = sorted(name for name in self.required_variables if not _has_variable(value, name))
        if missing:
            raise _Refused("missing_variables", "Missing required variables: " + ", ".join(missing) + ".")
        return dict(value)

    def _shape_ok(self, value: Any, depth: int) -> bool:
        if type(value) is str:  # the common leaf first, without the ABC check below
            return len(value) <= self.max_string
        if isinstance(value, (dict, Mapping)):
            if depth > self.max_depth:
                return False
            return all(
                isinstance(k, str) and _VARIABLE_NAME.match(k) and self._shape_ok(v, depth + 1)
                for k, v in value.items()
            )
        if isinstance(value, list):
            return depth <= self.max_depth and len(value) <= 50 and all(self._shape_ok(v, depth + 1) for v in value)
        if isinstance(value, str):
            return len(value) <= self.max_string
        return value is None or isinstance(value, (bool, int, float))


def _json_longer_than(value: Mapping[str, Any], limit: int) -> bool:
    """`len(json.dumps(value, ensure_ascii=False)) > limit` (the documented measure), asking the
    standard library only when the answer could be yes: its output is at most twice as long as
    orjson's compact bytes (one space after each separator), so a small object is cleared by
    orjson alone, about ten times sooner."""
    try:
        if 2 * len(orjson.dumps(value)) <= limit:
            return False
    except (orjson.JSONEncodeError, TypeError):
        pass
    return len(json.dumps(value, ensure_ascii=False)) > limit


def _has_variable(variables: Mapping[str, Any], dotted: str) -> bool:
    current: Any = variables
    for part in dotted.split("."):
        if not isinstance(current, Mapping) or part not in current or current[part] in (None, ""):
            return False
        current = current[part]
    return True


def parse_due_date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) > 10:
        return None
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    return None


def parse_amount(value: Any) -> Decimal | None:
    """Numbers, "1234.56", or Brazilian "1.234,56"; at most 2 decimals, not negative."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        text = repr(value) if isinstance(value, float) else str(value)
    elif isinstance(value, str) and len(value) <= 32:
        text = value.strip().removeprefix("R$").strip()
        if _BR_AMOUNT.match(text):
            text = text.replace(".", "").replace(",", ".")
    else:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0 or amount > _MAX_AMOUNT or amount != amount.quantize(Decimal("0.01")):
        return None
    return amount.quantize(Decimal("0.01"))
