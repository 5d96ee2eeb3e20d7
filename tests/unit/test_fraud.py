"""The fraud breaker's words: which scopes an SMS counts in, how admins name them, and how a
prefix shows in logs (masked like a number)."""

from __future__ import annotations

import pytest

from bot.fraud import Breaker, Pause, Scope, parse_scope


def test_an_sms_counts_in_its_prefix_and_its_country() -> None:
    breaker = Breaker(min_sends_prefix=20, min_sends_country=200, window=3600, cooldown=600)
    hits = breaker.for_sms("+447400123456", "GB")
    assert [(h.scope, h.mode, h.min_sends) for h in hits] == [
        (Scope("prefix", "+44740012"), "send", 20),
        (Scope("country", "GB"), "send", 200),
    ]
    assert {(h.window, h.cooldown, h.min_conversion) for h in hits} == {(3600, 600, 0.2)}
    verified = breaker.for_verified("+447400123456", "GB")
    assert [(h.scope.field, h.mode) for h in verified] == [
        ("prefix:+44740012", "verified"),
        ("country:GB", "verified"),
    ]


def test_a_breaker_that_is_off_counts_nothing() -> None:
    off = Breaker(enabled=False)
    assert off.for_sms("+447400123456", "GB") == []
    assert off.for_verified("+447400123456", "GB") == []


@pytest.mark.parametrize(
    ("typed", "scope"),
    [
        ("ES", Scope("country", "ES")),
        ("gb", Scope("country", "GB")),
        ("+3461234", Scope("prefix", "+3461234")),
        ("3461234", Scope("prefix", "+3461234")),
        ("+44 7400 12", Scope("prefix", "+44740012")),
        ("XX", None),
        ("+12", None),
        ("lift", None),
        ("", None),
    ],
)
def test_admins_name_a_country_by_iso_code_and_a_prefix_by_its_digits(
    typed: str, scope: Scope | None
) -> None:
    assert parse_scope(typed) == scope


def test_a_prefix_shows_masked_like_a_number_and_a_country_as_its_code() -> None:
    assert Scope("prefix", "+44740012").masked == "+44•••••0012"
    assert Scope("country", "ES").masked == "ES"
    assert str(Scope("prefix", "+44740012")) == "+44740012"
    assert Scope.from_field("prefix:+44740012") == Scope("prefix", "+44740012")
    assert Scope.from_field("nonsense") is None


def test_conversion_is_verifications_over_codes_sent() -> None:
    assert Pause(Scope("country", "ES"), sent=40, verified=2, until=0).conversion == 0.05
    assert Pause(Scope("country", "ES"), sent=0, verified=0, until=0).conversion == 0.0
