"""The phone policy, with real numbers of each type (phonenumbers' own metadata)."""

from __future__ import annotations

import phonenumbers
import pytest

from bot.phone import (
    DEFAULT_SMS_TYPES,
    TYPE_NAMES,
    PhoneNumber,
    PhonePolicy,
    PhoneRefusal,
    normalise_contact,
    parse_phone,
)
from bot.privacy import mask_phone

GB = PhonePolicy(default_region="GB")


@pytest.mark.parametrize(
    ("typed", "policy", "e164"),
    [
        ("+44 7400 123456", PhonePolicy(), "+447400123456"),
        ("07400 123456", GB, "+447400123456"),
        ("00 44 7400 123456", PhonePolicy(), "+447400123456"),
        ("0044 7400 123456", GB, "+447400123456"),
        ("(415) 555-2671", PhonePolicy(default_region="US"), "+14155552671"),
        ("+1 415 555 2671", GB, "+14155552671"),
        ("+33 6 12 34 56 78", GB, "+33612345678"),
        ("+49 151 23456789", GB, "+4915123456789"),
        ("+٤٤ ٧٤٠٠ ١٢٣٤٥٦", PhonePolicy(), "+447400123456"),  # Arabic-Indic digits
    ],
)
def test_common_formats_become_e164(typed: str, policy: PhonePolicy, e164: str) -> None:
    parsed = parse_phone(typed, policy)
    assert isinstance(parsed, PhoneNumber)
    assert parsed.e164 == e164


@pytest.mark.parametrize(
    ("typed", "refusal"),
    [
        ("", PhoneRefusal.UNPARSEABLE),
        ("call me", PhoneRefusal.UNPARSEABLE),
        ("1" * 60, PhoneRefusal.UNPARSEABLE),
        ("07400 123456", PhoneRefusal.NEEDS_COUNTRY_CODE),  # no DEFAULT_REGION to read it by
        ("+999 1234567", PhoneRefusal.INVALID),
        ("+44 7400 12", PhoneRefusal.INVALID),
        ("+44 7700 900123", PhoneRefusal.INVALID),  # Ofcom's drama range is never assigned
    ],
)
def test_what_cannot_be_a_phone_is_refused_with_a_reason(typed: str, refusal: PhoneRefusal) -> None:
    assert parse_phone(typed, PhonePolicy()) == refusal


@pytest.mark.parametrize(
    ("typed", "kind"),
    [
        ("+44 20 7946 0000", "FIXED_LINE"),
        ("+44 909 879 0000", "PREMIUM_RATE"),
        ("+1 900 555 0199", "PREMIUM_RATE"),
        ("+1 800 555 0199", "TOLL_FREE"),
        ("+44 56 1234 5678", "VOIP"),
        ("+44 7640 123456", "PAGER"),
        ("+44 55 1234 5678", "UAN"),
        ("+44 843 123 4567", "PREMIUM_RATE"),  # phonenumbers files 084x as premium here
    ],
)
def test_numbers_that_cannot_receive_an_sms_are_refused_by_default(typed: str, kind: str) -> None:
    assert parse_phone(typed, PhonePolicy()) == PhoneRefusal.TYPE_NOT_ALLOWED


REFUSED_BY_DEFAULT = [
    name for name in sorted(TYPE_NAMES) if name not in DEFAULT_SMS_TYPES | {"UNKNOWN"}
]


@pytest.mark.parametrize("type_name", REFUSED_BY_DEFAULT)
def test_phonenumbers_own_example_of_every_non_sms_type_is_refused(type_name: str) -> None:
    """One real example per type, from phonenumbers' metadata, in whichever region has one."""
    kind = getattr(phonenumbers.PhoneNumberType, type_name)
    examples = [
        phonenumbers.example_number_for_type(region, kind) for region in ("GB", "DE", "US", "FR")
    ]
    example = next(e for e in examples if e is not None)
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    assert phonenumbers.number_type(example) == kind
    assert parse_phone(e164, PhonePolicy()) == PhoneRefusal.TYPE_NOT_ALLOWED


def test_mobile_and_fixed_line_or_mobile_are_allowed_by_default() -> None:
    mobile = parse_phone("+44 7400 123456", PhonePolicy())
    us = parse_phone("+1 415 555 2671", PhonePolicy())
    assert isinstance(mobile, PhoneNumber) and mobile.type_name == "MOBILE"
    assert isinstance(us, PhoneNumber) and us.type_name == "FIXED_LINE_OR_MOBILE"


def test_the_operator_may_allow_other_types() -> None:
    policy = PhonePolicy(allowed_types=frozenset({"MOBILE", "FIXED_LINE"}))
    assert isinstance(parse_phone("+44 20 7946 0000", policy), PhoneNumber)


def test_allowed_and_blocked_countries() -> None:
    only_us = PhonePolicy(allowed_countries=frozenset({"US"}))
    no_fr = PhonePolicy(blocked_countries=frozenset({"FR"}))
    assert parse_phone("+44 7400 123456", only_us) == PhoneRefusal.COUNTRY_NOT_ALLOWED
    assert isinstance(parse_phone("+1 415 555 2671", only_us), PhoneNumber)
    assert parse_phone("+33 6 12 34 56 78", no_fr) == PhoneRefusal.COUNTRY_NOT_ALLOWED
    assert isinstance(parse_phone("+44 7400 123456", no_fr), PhoneNumber)


def test_the_sandbox_accepts_the_fictional_numbers_printed_in_docs() -> None:
    parsed = parse_phone("+44 7700 900123", PhonePolicy(accept_fictional=True))
    assert isinstance(parsed, PhoneNumber)
    assert (parsed.e164, parsed.country) == ("+447700900123", "GB")


def test_the_prefix_is_the_number_without_its_last_four_digits() -> None:
    parsed = parse_phone("+44 7400 123456", PhonePolicy())
    assert isinstance(parsed, PhoneNumber) and parsed.prefix == "+44740012"


def test_shared_contacts_are_international_even_without_a_plus() -> None:
    assert normalise_contact("447400123456") == "+447400123456"
    assert normalise_contact("+447400123456") == "+447400123456"


def test_masking_keeps_the_country_code_and_last_four_digits_only() -> None:
    assert mask_phone("+447400123456") == "+44•••••3456"
    assert mask_phone("+14155552671") == "+1•••••2671"
    assert mask_phone("+380501234567") == "+380•••••4567"  # three-digit code
    assert mask_phone("+79161234567") == "+7•••••4567"
    assert mask_phone("not a number") == "+•••••mber"  # never more than four characters


@pytest.mark.parametrize("region", sorted(phonenumbers.SUPPORTED_REGIONS))
def test_masking_names_the_same_calling_code_as_parsing(region: str) -> None:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    if example is None:
        return
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    assert mask_phone(e164) == f"+{example.country_code}•••••{e164[-4:]}"
