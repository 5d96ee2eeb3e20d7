"""Which rate limits apply to what; the shell's bootstrap fills them from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from bot.flow import Purpose
from bot.identity import MemberKey
from bot.phone import number_prefix
from bot.rates import Rate
from bot.store import Hit, Limit


@dataclass(frozen=True, slots=True)
class Limits:
    starts_per_member: tuple[Rate, ...] = ()
    sms_per_phone: tuple[Rate, ...] = ()
    sms_per_prefix: tuple[Rate, ...] = ()
    sms_per_country: tuple[Rate, ...] = ()
    sms_global: tuple[Rate, ...] = ()
    wrong_codes_per_member: tuple[Rate, ...] = ()

    def for_sms(
        self, member: MemberKey, phone: str, country: str | None, purpose: Purpose
    ) -> list[Hit]:
        """Every limit one SMS counts against. A resend is an SMS but not a new start."""
        limits = [
            *self._each("phone", phone, self.sms_per_phone),
            *self._each("prefix", number_prefix(phone), self.sms_per_prefix),
            *self._each("country", country or "unknown", self.sms_per_country),
            *self._each("global", "all", self.sms_global),
        ]
        if purpose is Purpose.START:
            limits += self._each("member_starts", str(member), self.starts_per_member)
        return [Hit(limit, "take") for limit in limits]

    def wrong_codes(self, member: MemberKey) -> list[Limit]:
        return self._each("wrong_codes", str(member), self.wrong_codes_per_member)

    @staticmethod
    def _each(name: str, subject: str, rates: tuple[Rate, ...]) -> list[Limit]:
        return [Limit(name, subject, rate) for rate in rates]
