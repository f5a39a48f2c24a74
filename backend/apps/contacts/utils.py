"""Phone numbers: the one normaliser (E.164 through `phonenumbers`, Brazil by default) and the
one masker used in logs, API answers and admin lists."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneNumberType

MAX_RAW_LENGTH = 40
_ALLOWED_CHARS = re.compile(r"^[0-9+()\-.\s/]+$")
_WHATSAPP_TYPES = {
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
}


class PhoneNumberError(ValueError):
    """A phone number we cannot send to. `code` is machine-readable:
    `empty_phone`, `invalid_phone`, `missing_area_code`, `invalid_country`, `not_mobile`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _with_brazilian_ninth_digit(number: phonenumbers.PhoneNumber) -> phonenumbers.PhoneNumber:
    """Brazilian mobiles gained a leading 9 (2012-2016). CRMs still hold the old 8-digit form
    (`11 8765-4321`); like WhatsApp, treat an 8-digit subscriber number starting with 6-9 as
    that mobile and put the 9 back."""
    national = str(number.national_number)
    if number.country_code == 55 and len(national) == 10 and national[2] in "6789":
        fixed = phonenumbers.PhoneNumber(country_code=55, national_number=int(national[:2] + "9" + national[2:]))
        if phonenumbers.is_valid_number(fixed):
            return fixed
    return number


_FAST_PATH_TEXT = re.compile(r"^\+?[0-9() .\-/]+$")


def _brazilian_national(text: str, digits: str) -> str | None:
    """The national number `phonenumbers.parse` would find for the shapes Brazilian systems
    nearly always send (area code + number, or +55 and that), or None to let it decide. `parse`
    costs ~24 µs, four fifths of a normalisation, and an ingest normalises every contact. For
    these shapes none of its rules applies: only punctuation it ignores, no trunk prefix (`0`,
    `90`: the area code's digits are 1-9), and no bare `55…` it might take for a country code.
    The shape is checked against `parse` itself on many generated inputs
    (tests/test_normalize_phone.py)."""
    if not _FAST_PATH_TEXT.match(text):
        return None
    if text.startswith("+"):
        if not digits.startswith("55"):
            return None
        national = digits[2:]
    elif digits.startswith("55"):
        return None
    else:
        national = digits
    if len(national) not in (10, 11) or national[0] == "0" or national[1] == "0":
        return None
    return national


def _brazilian_fast_path(text: str, digits: str) -> phonenumbers.PhoneNumber | None:
    """`_brazilian_national` as the PhoneNumber `phonenumbers.parse` would return."""
    national = _brazilian_national(text, digits)
    return None if national is None else phonenumbers.PhoneNumber(country_code=55, national_number=int(national))


def _eleven_digit_mobile_check():
    """For an 11-digit Brazilian national number (area code + 9 + eight digits, the shape of
    every current mobile), `phonenumbers.number_type` answers MOBILE exactly when the number
    matches the region's general and mobile patterns — provided no other number type of the
    region has 11-digit numbers (then it would be asked first). Built from the library's own
    metadata, so a metadata change that breaks the premise turns the shortcut off."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("BR")
    others = (
        metadata.fixed_line,
        metadata.toll_free,
        metadata.premium_rate,
        metadata.shared_cost,
        metadata.personal_number,
        metadata.voip,
        metadata.pager,
        metadata.uan,
        metadata.voicemail,
    )
    if (
        any(desc is not None and 11 in desc.possible_length for desc in others)
        or 11 not in metadata.mobile.possible_length
    ):
        return None
    general = re.compile(metadata.general_desc.national_number_pattern)
    mobile = re.compile(metadata.mobile.national_number_pattern)
    return lambda national: general.fullmatch(national) is not None and mobile.fullmatch(national) is not None


_is_eleven_digit_mobile = _eleven_digit_mobile_check()


def _lacks_area_code(number: phonenumbers.PhoneNumber) -> bool:
    """A Brazilian subscriber number written alone, the most common mistake in CRM exports: eight
    digits (a landline, or a mobile without its ninth digit) or nine starting with 9 (a mobile).
    Subscriber numbers never start with 0 or 1, and a full national number has ten or eleven
    digits, area code first, so a shorter one that looks like this lacks only the DDD."""
    national = str(number.national_number)
    return number.country_code == 55 and (
        (len(national) == 8 and national[0] in "23456789") or (len(national) == 9 and national[0] == "9")
    )


def normalize_phone(raw: str, default_region: str = "BR") -> str:
    """Return the number in E.164 (`+5511999999999`) or raise `PhoneNumberError`.

    Accepts the ways Brazilian systems write numbers: with or without country code, trunk
    prefix 0 (and carrier code), punctuation, and mobiles without the ninth digit.
    """
    if raw is None or not str(raw).strip():
        raise PhoneNumberError("empty_phone", "Phone number is empty.")
    text = str(raw).strip()
    if len(text) > MAX_RAW_LENGTH or not _ALLOWED_CHARS.match(text):
        raise PhoneNumberError("invalid_phone", "Phone number has characters or a length that are not allowed.")
    digits = re.sub(r"\D", "", text)
    # `5511999999999` (country code without +) is how Evolution and most CRMs store numbers.
    if not text.startswith("+") and digits.startswith("55") and len(digits) in (12, 13) and default_region == "BR":
        text = "+" + digits
    national = _brazilian_national(text, digits) if default_region == "BR" else None
    if (
        national is not None
        and len(national) == 11
        and _is_eleven_digit_mobile is not None
        and _is_eleven_digit_mobile(national)
    ):
        return f"+55{national}"  # what number_type + format_number below would answer, ~10x sooner
    try:
        number = _brazilian_fast_path(text, digits) if national is not None else None
        number = number or phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise PhoneNumberError("invalid_country", "Phone number has an unknown country code.") from exc
        raise PhoneNumberError("invalid_phone", "Phone number could not be parsed.") from exc
    number = _with_brazilian_ninth_digit(number)
    # A number whose type is mobile is a valid number (`is_valid_number` is "has a known type"
    # for its own region), so validity is only asked when the type is not a mobile one: half
    # the metadata matching on the common path (large ingests are dominated by this function).
    if phonenumbers.number_type(number) in _WHATSAPP_TYPES:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if not phonenumbers.is_valid_number(number):
        if phonenumbers.region_code_for_country_code(number.country_code or 0) == "ZZ":
            raise PhoneNumberError("invalid_country", "Phone number has an unknown country code.")
        if _lacks_area_code(number):
            raise PhoneNumberError(
                "missing_area_code", "Phone number has no area code (DDD): send it as (11) 99876-5432."
            )
        raise PhoneNumberError("invalid_phone", "Phone number is not a valid number.")
    raise PhoneNumberError("not_mobile", "Phone number is not a mobile number (WhatsApp needs a mobile).")


def e164_digits(e164: str) -> str:
    """E.164 without the plus: the form the Evolution API expects in `number`."""
    return e164.lstrip("+")


def mask_phone(phone: str | None) -> str:
    """`+5511998764321` → `+55 11 9****-4321`. Safe for logs and API answers."""
    if not phone:
        return ""
    digits = re.sub(r"\D", "", str(phone))
    if len(digits) < 6:
        return "*" * len(digits)
    if digits.startswith("55") and len(digits) in (12, 13):
        subscriber = digits[4:]
        return f"+55 {digits[2:4]} {subscriber[0]}{'*' * (len(subscriber) - 5)}-{subscriber[-4:]}"
    return f"+{digits[:2]} {'*' * (len(digits) - 6)}{digits[-4:]}"


def mask_raw_phone(raw: object, default_region: str = "BR") -> str:
    """Mask what a client sent, even when it is not a valid number (for refusal reports)."""
    text = str(raw or "")[:MAX_RAW_LENGTH]
    try:
        number = phonenumbers.parse(text, default_region)
        return mask_phone(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    except phonenumbers.NumberParseException:
        digits = re.sub(r"\D", "", text)
        return "*" * max(len(digits) - 2, 0) + digits[-2:] if len(digits) > 2 else "*" * len(digits)
