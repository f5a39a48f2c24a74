import pytest

from apps.contacts.utils import PhoneNumberError, e164_digits, mask_phone, normalize_phone

VALID = [
    ("11 99999-9999", "+5511999999999"),
    ("(11) 9 9999-9999", "+5511999999999"),
    ("+55 11 99999-9999", "+5511999999999"),
    ("5511999999999", "+5511999999999"),
    ("011 99999 9999", "+5511999999999"),
    ("0 21 11 99999 9999", "+5511999999999"),  # trunk prefix + carrier code
    ("+55 (11) 99876-5432", "+5511998765432"),
    ("11998765432", "+5511998765432"),
    ("  (21) 98765-4321  ", "+5521987654321"),
    ("21.98765.4321", "+5521987654321"),
    ("(31) 9 8765-4321", "+5531987654321"),
    # mobiles written without the ninth digit, as WhatsApp accepts them
    ("11 8765-4321", "+5511987654321"),
    ("(21) 8765-4321", "+5521987654321"),
    ("55 31 8765 4321", "+5531987654321"),
    ("553187654321", "+5531987654321"),
    ("+55 11 7654-3210", "+5511976543210"),
    ("(85) 9999-1234", "+5585999991234"),
    # other countries with an explicit +
    ("+44 7911 123456", "+447911123456"),
    ("+1 650 253 0000", "+16502530000"),
    ("+351 912 345 678", "+351912345678"),
]

INVALID = [
    ("", "empty_phone"),
    ("   ", "empty_phone"),
    (None, "empty_phone"),
    ("abc", "invalid_phone"),
    ("11 99999-999a", "invalid_phone"),
    ("99999-9999", "invalid_phone"),  # no area code
    ("123", "invalid_phone"),
    ("+55 11 99999-99999999", "invalid_phone"),
    ("1" * 41, "invalid_phone"),
    ("+999 1234567", "invalid_country"),
    ("11 3333-4444", "not_mobile"),  # São Paulo landline
    ("(21) 2555-1234", "not_mobile"),
    ("0800 123 4567", "not_mobile"),  # toll free
    ("<script>alert(1)</script>", "invalid_phone"),
    ("11 99999-9999; DROP TABLE", "invalid_phone"),
]


@pytest.mark.parametrize("raw,expected", VALID)
def test_it_normalizes_to_e164(raw, expected):
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("raw,code", INVALID)
def test_it_refuses_with_a_reason_code(raw, code):
    with pytest.raises(PhoneNumberError) as excinfo:
        normalize_phone(raw)
    assert excinfo.value.code == code
    assert excinfo.value.message


def test_total_cases_cover_at_least_thirty():
    assert len(VALID) + len(INVALID) >= 30


def test_e164_digits_strips_plus():
    assert e164_digits("+5511999999999") == "5511999999999"


@pytest.mark.parametrize(
    "phone,masked",
    [
        ("+5511998764321", "+55 11 9****-4321"),
        ("+551187654321", "+55 11 8***-4321"),
        ("+447911123456", "+44 ******3456"),
        ("", ""),
        (None, ""),
        ("123", "***"),
    ],
)
def test_mask_phone_hides_the_middle(phone, masked):
    assert mask_phone(phone) == masked
