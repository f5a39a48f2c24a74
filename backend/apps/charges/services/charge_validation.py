"""Validate one incoming charge in plain Python (an upsert carries up to 10,000).

The debtor's phone, name, the due date, the amount (Brazilian formats included) and the
variables go through billing's `ContactValidator`, the send endpoints' own checks and codes;
what only a charge has (a required id, due date and amount, CPF/CNPJ, payment data, cadence)
is checked here. A bad charge is refused on its own, with a code; the rest go on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from stdnum.br import cnpj, cpf

from apps.billing.constants import TemplateType
from apps.billing.services.contact_validation import ContactValidator, Rejection, ValidContact
from apps.charges.models.charge import debtor_key_for
from apps.contacts.utils import mask_phone

CHARGE_FIELDS = frozenset(
    {
        "external_id",
        "phone",
        "name",
        "amount",
        "due_date",
        "cadence",
        "variables",
        "description",
        "document",
        "debtor_external_id",
        "payment_link",
        "pix_code",
        "boleto_line",
        "asaas_payment_id",
    }
)
#: Free-text fields: (maximum length).
_TEXT_FIELDS = {
    "description": 500,
    "debtor_external_id": 200,
    "pix_code": 1000,
    "boleto_line": 100,
    "asaas_payment_id": 100,
    "cadence": 100,
}


@dataclass
class ValidCharge:
    index: int
    external_id: str
    phone: str
    name: str
    amount: Decimal
    due_date: date
    variables: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    document: str = ""
    debtor_external_id: str = ""
    payment_link: str = ""
    pix_code: str = ""
    boleto_line: str = ""
    asaas_payment_id: str = ""
    cadence: str = ""  # a name; resolved by the upsert service

    @property
    def debtor_key(self) -> str:
        return debtor_key_for(debtor_external_id=self.debtor_external_id, phone=self.phone)


@dataclass(frozen=True)
class ChargeRejection:
    index: int
    external_id: str
    phone: str  # masked
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "external_id": self.external_id,
            "phone": self.phone,
            "code": self.code,
            "message": self.message,
        }


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class ChargeValidator:
    def __init__(self, *, today: date) -> None:
        # `notification` rules: due date and amount optional and any date allowed there; a
        # charge requires both below, and may be due in the past or the future.
        self.contacts = ContactValidator(
            template_type=TemplateType.NOTIFICATION, today=today, required_variables=frozenset()
        )
        self.max_string = int(settings.BILLING_MAX_STRING_LENGTH)

    def validate(self, index: int, raw: Any) -> ValidCharge | ChargeRejection:
        external_id = raw.get("external_id") if isinstance(raw, Mapping) else None
        shown_id = external_id[:200] if isinstance(external_id, str) else ""
        contact = self.contacts.validate(index, raw)
        if isinstance(contact, Rejection):
            return ChargeRejection(index, shown_id, contact.phone, contact.code, contact.message)
        try:
            return self._charge(index, raw, contact)
        except _Refused as refusal:
            return ChargeRejection(index, shown_id, mask_phone(contact.phone), refusal.code, refusal.message)

    def _charge(self, index: int, raw: Mapping[str, Any], contact: ValidContact) -> ValidCharge:
        if not contact.external_id:
            raise _Refused("missing_external_id", "external_id is required.")
        if contact.due_date is None:
            raise _Refused("missing_due_date", "due_date is required.")
        if contact.amount is None:
            raise _Refused("missing_amount", "amount is required.")
        if contact.amount <= 0:
            raise _Refused("invalid_amount", "amount must be greater than zero.")
        texts = {name: self._text(raw.get(name), name, limit) for name, limit in _TEXT_FIELDS.items()}
        return ValidCharge(
            index=index,
            external_id=contact.external_id,
            phone=contact.phone,
            name=contact.name,
            amount=contact.amount,
            due_date=contact.due_date,
            variables=contact.variables,
            document=self._document(raw.get("document")),
            payment_link=self._link(raw.get("payment_link")),
            **texts,
        )

    def _text(self, value: Any, name: str, limit: int) -> str:
        if value is None:
            return ""
        if not isinstance(value, str) or len(value) > limit or any(ord(ch) < 32 for ch in value):
            raise _Refused(f"invalid_{name}", f"{name} must be printable text of at most {limit} characters.")
        return value.strip()

    @staticmethod
    def _document(value: Any) -> str:
        if value is None or value == "":
            return ""
        if not isinstance(value, str):
            raise _Refused("invalid_document", "document must be a CPF or CNPJ string.")
        digits = "".join(ch for ch in value if ch.isdigit())
        # Repeated digits pass the check-digit test but are never issued ("111.111.111-11").
        if (
            len(set(digits)) <= 1
            or not (len(digits) == 11 and cpf.is_valid(digits))
            and not (len(digits) == 14 and cnpj.is_valid(digits))
        ):
            raise _Refused("invalid_document", "document is not a valid CPF or CNPJ.")
        return digits

    @staticmethod
    def _link(value: Any) -> str:
        if value is None or value == "":
            return ""
        if not isinstance(value, str) or len(value) > 500 or not value.lower().startswith(("https://", "http://")):
            raise _Refused("invalid_payment_link", "payment_link must be an http(s) URL of at most 500 characters.")
        return value.strip()
