"""The small helpers each platform package shares from one home: the Slack team id, the TTL
cache, the page a moderator asks for, and the console's commands."""

from __future__ import annotations

from typing import Any

import pytest

from adapters._runtime import TtlCache
from adapters.console import event_for
from adapters.slack.client import team_id_of
from bot.flow import Help, Start, Text
from bot.moderation import page_number


@pytest.mark.parametrize(
    ("body", "team"),
    [
        # The workspace the interaction happened in wins: in Enterprise Grid a user's own
        # team may be another workspace of the org.
        ({"team": {"id": "T0WORK"}, "user": {"id": "U1", "team_id": "T0HOME"}}, "T0WORK"),
        # An org-wide app gets "team": null; then the user's team is all there is.
        ({"team": None, "user": {"id": "U1", "team_id": "T0HOME"}}, "T0HOME"),
        ({"user": {"id": "U1", "team_id": "T0HOME"}}, "T0HOME"),
        ({"team": {"id": ""}, "user": {"id": "U1", "team_id": "T0HOME"}}, "T0HOME"),
    ],
)
def test_the_slack_team_of_an_interaction(body: dict[str, Any], team: str) -> None:
    assert team_id_of(body) == team


@pytest.mark.parametrize(
    "body",
    [{"team": None, "user": {"id": "U1"}}, {"user": {"id": "U1", "team_id": ""}}, {}],
)
def test_an_interaction_without_a_team_is_never_given_an_empty_one(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="no team"):
        team_id_of(body)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_keeps_an_answer_for_its_ttl_and_no_longer() -> None:
    clock = Clock()
    cache: TtlCache[str, bool] = TtlCache(60, clock=clock)
    cache.put("ada", True)
    clock.now += 59
    assert cache.get("ada") is True
    assert cache.get("ada", max_age=30) is None  # a caller may want it fresher
    clock.now += 1
    assert cache.get("ada") is None


def test_a_ttl_of_zero_keeps_nothing() -> None:
    cache: TtlCache[str, bool] = TtlCache(0)
    cache.put("ada", True)
    assert cache.get("ada") is None and len(cache) == 0


def test_a_full_cache_drops_what_expired_first_then_everything() -> None:
    clock = Clock()
    cache: TtlCache[int, int] = TtlCache(10, limit=3, clock=clock)
    cache.put(1, 1)
    clock.now += 11
    cache.put(2, 2)
    cache.put(3, 3)
    cache.put(4, 4)  # full: 1 has expired and goes
    assert (cache.get(1), cache.get(2), cache.get(4), len(cache)) == (None, 2, 4, 3)
    cache.put(5, 5)  # full of live answers: start again
    assert (cache.get(2), cache.get(5), len(cache)) == (None, 5, 1)


@pytest.mark.parametrize(
    ("word", "page"),
    [(None, 1), ("", 1), ("3", 3), ("0", 0), ("x", 1), ("²", 1), ("٣", 1), ("-2", 1)],
)
def test_the_page_a_moderator_asks_for(word: str | None, page: int) -> None:
    assert page_number(word) == page


@pytest.mark.parametrize(
    ("line", "event"),
    [
        ("/start", Start()),
        ("/START now", Start()),
        ("/verify", Start()),
        ("/frobnicate", Help()),
        ("/ѕtart", Help()),  # a Cyrillic ѕ: not the command
        ("hello", Text("hello")),
    ],
)
def test_the_console_reads_commands_as_telegram_does(line: str, event: object) -> None:
    assert event_for(line) == event
