"""A consequence for a member who does not verify, as written in settings and /settings."""

from __future__ import annotations

import pytest

from bot.consequence import Consequence, parse_consequence


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kick", Consequence("kick")),
        ("Mute", Consequence("mute")),
        ("decline", Consequence("decline")),
        ("ban", Consequence("ban", 0)),
        ("ban:7d", Consequence("ban", 7 * 86400)),
        (" ban:90 ", Consequence("ban", 90)),
    ],
)
def test_each_written_form_parses(text: str, expected: Consequence) -> None:
    assert parse_consequence(text) == expected


@pytest.mark.parametrize("consequence", ["kick", "mute", "decline", "ban", "ban:7d", "ban:2h"])
def test_a_consequence_is_written_back_as_it_is_parsed(consequence: str) -> None:
    assert str(parse_consequence(consequence)) == consequence


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("boot", "is not one of kick, ban, ban:7d, mute, decline"),
        ("kick:1d", "only a ban takes a duration"),
        ("ban:10", "a ban lasts from 30s to 366d"),
        ("ban:400d", "a ban lasts from 30s to 366d"),
        ("ban:soon", "is not a duration"),
    ],
)
def test_a_bad_consequence_is_refused_in_one_line(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as caught:
        parse_consequence(text)
    assert "\n" not in str(caught.value)
