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
    ("99999-9999", "missing_area_code"),  # a mobile without its DDD
    ("9876-5432", "missing_area_code"),  # an old 8-digit mobile or a landline, no DDD
    ("+55 98765-4321", "missing_area_code"),
    ("11 9876-543", "invalid_phone"),  # nine digits, DDD first: a digit is missing, not the DDD
    ("1234-5678", "invalid_phone"),  # no subscriber number starts with 1
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


# ----------------------------------------------------------------------------- the fast path
# `normalize_phone` skips `phonenumbers.parse` for the common Brazilian shapes. It must never
# answer differently from parse: generated inputs, Brazilian-looking and not, go both ways.
from unittest import mock  # noqa: E402 - the property tests' imports open their section

from hypothesis import given, settings  # noqa: E402 - as above
from hypothesis import strategies as st  # noqa: E402 - as above

from apps.contacts import utils as phone_utils  # noqa: E402 - as above

_PUNCTUATION = st.sampled_from(["", "", "", " ", "-", ".", "(", ")", "/", "  ", "\t"])


@st.composite
def phone_like(draw) -> str:
    prefix = draw(st.sampled_from(["", "", "+", "+55", "55", "+55 ", "0", "0 21 ", "90", "+1 ", "+351 "]))
    area = draw(st.sampled_from(["11", "21", "55", "85", "99", "10", "90", "01", "1", ""]))
    subscriber = draw(st.text("0123456789", min_size=6, max_size=11))
    cut = draw(st.integers(0, len(subscriber)))
    parts = [
        prefix,
        draw(_PUNCTUATION),
        area,
        draw(_PUNCTUATION),
        subscriber[:cut],
        draw(_PUNCTUATION),
        subscriber[cut:],
        draw(_PUNCTUATION),
    ]
    return "".join(parts)


def _outcome(raw: str) -> str:
    try:
        return phone_utils.normalize_phone(raw)
    except PhoneNumberError as exc:
        return f"error:{exc.code}"


@settings(max_examples=1000, deadline=None)
@given(phone_like())
def test_the_fast_path_agrees_with_phonenumbers_parse(raw):
    text = raw.strip()
    digits = "".join(c for c in text if c.isdigit())
    fast = phone_utils._brazilian_fast_path(text, digits)
    if fast is not None:
        import phonenumbers

        parsed = phonenumbers.parse(text, "BR")
        assert (fast.country_code, fast.national_number) == (parsed.country_code, parsed.national_number)


@settings(max_examples=1000, deadline=None)
@given(phone_like())
def test_normalize_phone_answers_the_same_without_the_fast_path(raw):
    """Both shortcuts off (`parse` skipped, and the 11-digit mobile answered from the metadata's
    patterns without `number_type`): the same answer, or the same refusal."""
    with_fast_path = _outcome(raw)
    with mock.patch.object(phone_utils, "_brazilian_national", return_value=None):
        assert _outcome(raw) == with_fast_path


def test_the_fast_path_takes_the_common_shapes_and_leaves_the_rest():
    for raw in ("(11) 99876-5432", "11998765432", "+55 11 99876-5432", "21.98765.4321", "(21) 8765-4321"):
        assert phone_utils._brazilian_fast_path(raw, "".join(c for c in raw if c.isdigit())) is not None, raw
    for raw in ("011 99999 9999", "55 31 8765 4321", "+44 7911 123456", "0800 123 4567", "11\t99876-5432"):
        assert phone_utils._brazilian_fast_path(raw, "".join(c for c in raw if c.isdigit())) is None, raw


def test_a_number_without_area_code_says_the_ddd_is_missing():
    with pytest.raises(PhoneNumberError) as excinfo:
        normalize_phone("99876-5432")
    assert excinfo.value.code == "missing_area_code"
    assert "DDD" in excinfo.value.message
