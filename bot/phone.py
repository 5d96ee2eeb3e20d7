"""Reading a phone number the way a member types it, and deciding whether it may get an SMS.

Pure: no I/O. The per-phone account limit needs the directory, so the flow asks for it
separately (see ``bot.flow``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import phonenumbers
from phonenumbers import PhoneNumberType

#: Number types that can receive an SMS code unless the operator says otherwise.
DEFAULT_SMS_TYPES = frozenset({"MOBILE", "FIXED_LINE_OR_MOBILE"})

#: Every type name phonenumbers knows, for validating ``ALLOWED_NUMBER_TYPES``.
TYPE_NAMES = frozenset(
    name
    for name, value in vars(PhoneNumberType).items()
    if not name.startswith("_") and isinstance(value, int)
)

# Ofcom's drama range (07700 900000-900999): never assigned, so phonenumbers calls it
# invalid. The sandbox accepts it so that a demo can use the numbers printed in docs.
_FICTIONAL_GB_PREFIX = "7700900"

_MAX_INPUT = 40


class PhoneRefusal(enum.StrEnum):
    """Why a typed number cannot be used. Each value is also a text key suffix."""

    UNPARSEABLE = "unparseable"
    NEEDS_COUNTRY_CODE = "needs_country_code"
    INVALID = "invalid"
    TYPE_NOT_ALLOWED = "type_not_allowed"
    COUNTRY_NOT_ALLOWED = "country_not_allowed"


@dataclass(frozen=True, slots=True)
class PhonePolicy:
    default_region: str | None = None
    allowed_countries: frozenset[str] = frozenset()
    blocked_countries: frozenset[str] = frozenset()
    allowed_types: frozenset[str] = DEFAULT_SMS_TYPES
    accept_fictional: bool = False


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    e164: str
    country: str | None
    type_name: str = field(default="MOBILE")

    @property
    def prefix(self) -> str:
        return number_prefix(self.e164)


def number_prefix(e164: str) -> str:
    """The number without its last four digits: a block of numbers one sender may own."""
    return e164[:-4]


def parse_phone(text: str, policy: PhonePolicy) -> PhoneNumber | PhoneRefusal:
    """Normalise ``text`` to E.164 and apply ``policy``."""
    raw = text.strip()
    if not raw or len(raw) > _MAX_INPUT or not any(ch.isdigit() for ch in raw):
        return PhoneRefusal.UNPARSEABLE
    if raw.startswith("00"):
        # "00" is the international prefix in most of the world, whatever DEFAULT_REGION says.
        raw = "+" + raw[2:].lstrip()
    try:
        number = phonenumbers.parse(raw, policy.default_region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            return PhoneRefusal.INVALID if raw.startswith("+") else PhoneRefusal.NEEDS_COUNTRY_CODE
        return PhoneRefusal.UNPARSEABLE
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if phonenumbers.is_valid_number(number):
        type_name = PhoneNumberType.to_string(phonenumbers.number_type(number))
        country = phonenumbers.region_code_for_number(number)
    elif policy.accept_fictional and _is_fictional(number):
        type_name, country = "MOBILE", "GB"
    else:
        return PhoneRefusal.INVALID
    if type_name not in policy.allowed_types:
        return PhoneRefusal.TYPE_NOT_ALLOWED
    if country in policy.blocked_countries or (
        policy.allowed_countries and country not in policy.allowed_countries
    ):
        return PhoneRefusal.COUNTRY_NOT_ALLOWED
    return PhoneNumber(e164=e164, country=country, type_name=type_name)


def normalise_contact(phone: str) -> str:
    """Telegram shares contacts as bare digits ("447..."); they are always international."""
    phone = phone.strip()
    return phone if phone.startswith("+") else "+" + phone


def _is_fictional(number: phonenumbers.PhoneNumber) -> bool:
    national = str(number.national_number)
    return number.country_code == 44 and national.startswith(_FICTIONAL_GB_PREFIX)
