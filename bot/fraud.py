"""The SMS-fraud circuit breaker: stop texting a country or a prefix that never verifies.

SMS pumping sends codes to numbers that never enter them, usually in a few prefixes or
countries. For each country (ISO code) and each prefix (the number without its last four
digits) the store keeps sliding logs of codes sent and of verifications. When a scope has
sent at least ``min_sends`` codes in ``window`` and fewer than ``min_conversion`` of them
verified, SMS there is paused for ``cooldown``. The check, the trip and the count of the
code all happen in the script that reserves the SMS (``bot.store``), so two workers cannot
both send past a trip, and the common path costs no extra round trip.

This module is pure: what a scope is, which logs an SMS or a verification touches, and what
a pause looks like. Redis is the store's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import phonenumbers

from bot.phone import number_prefix
from bot.privacy import mask_phone

Kind = Literal["country", "prefix"]

_PREFIX = re.compile(r"^\+?(\d{4,14})$")


@dataclass(frozen=True, slots=True)
class Scope:
    """A country (``ES``) or a prefix (``+3461234``) the breaker watches."""

    kind: Kind
    subject: str

    def __str__(self) -> str:
        """As admins type it: the ISO code, or ``+`` and the prefix's digits."""
        return self.subject

    @property
    def field(self) -> str:
        """Its name in Redis keys and in the list of pauses."""
        return f"{self.kind}:{self.subject}"

    @property
    def masked(self) -> str:
        """As log lines and the moderators' log show it: a prefix masked like a number."""
        return self.subject if self.kind == "country" else mask_phone(self.subject)

    @classmethod
    def from_field(cls, field: str) -> Scope | None:
        kind, _, subject = field.partition(":")
        if kind == "country":
            return cls("country", subject)
        if kind == "prefix":
            return cls("prefix", subject)
        return None


def parse_scope(text: str) -> Scope | None:
    """A country's ISO code (``es``, ``ES``) or a prefix (``+3461234``, spaces allowed)."""
    word = "".join(text.split())
    if word.upper() in phonenumbers.SUPPORTED_REGIONS:
        return Scope("country", word.upper())
    match = _PREFIX.match(word)
    return Scope("prefix", "+" + match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class FraudHit:
    """One code sent to (``send``: checked against a pause and a trip first) or one member
    verified in (``verified``) a scope, in the same write as the conversation."""

    scope: Scope
    mode: Literal["send", "verified"]
    min_sends: int
    min_conversion: float
    window: int
    cooldown: int


@dataclass(frozen=True, slots=True)
class Pause:
    """A scope where SMS is paused: what was seen when it tripped, and until when."""

    scope: Scope
    sent: int
    verified: int
    until: float

    @property
    def conversion(self) -> float:
        return self.verified / self.sent if self.sent else 0.0


@dataclass(frozen=True, slots=True)
class Breaker:
    """The operator's settings (FRAUD_*); ``enabled=False`` counts and checks nothing."""

    enabled: bool = True
    window: int = 86400
    cooldown: int = 6 * 3600
    min_conversion: float = 0.2
    min_sends_prefix: int = 20
    min_sends_country: int = 200

    def for_sms(self, phone: str, country: str | None) -> list[FraudHit]:
        return self._hits(phone, country, "send")

    def for_verified(self, phone: str, country: str | None) -> list[FraudHit]:
        return self._hits(phone, country, "verified")

    def _hits(
        self, phone: str, country: str | None, mode: Literal["send", "verified"]
    ) -> list[FraudHit]:
        if not self.enabled:
            return []
        scopes = [(Scope("prefix", number_prefix(phone)), self.min_sends_prefix)]
        if country:
            scopes.append((Scope("country", country), self.min_sends_country))
        return [
            FraudHit(scope, mode, sends, self.min_conversion, self.window, self.cooldown)
            for scope, sends in scopes
        ]
