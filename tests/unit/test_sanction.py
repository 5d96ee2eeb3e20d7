"""What befalls a member who does not verify: the core's rule, for every consequence and
both ways of being held (``bot.sanction``)."""

from __future__ import annotations

import pytest

from bot.consequence import Consequence, parse_consequence
from bot.sanction import Sanction, sanction_for

NOW = 1_700_000_000.0
WEEK = 7 * 86400


@pytest.mark.parametrize(
    ("consequence", "member", "requester"),
    [
        # consequence    a member who joined                      a join request
        ("kick", Sanction(Consequence("kick"), remove=True), "decline"),
        ("decline", Sanction(Consequence("decline"), remove=True), "decline"),
        ("mute", Sanction(Consequence("mute")), "decline"),
        ("ban", Sanction(Consequence("ban"), ban=True), "decline+ban"),
        (
            "ban:7d",
            Sanction(Consequence("ban", WEEK), ban=True, until=int(NOW) + WEEK),
            "decline+ban",
        ),
    ],
)
def test_each_consequence_for_a_member_and_for_a_requester(
    consequence: str, member: Sanction, requester: str
) -> None:
    chosen = parse_consequence(consequence)

    assert sanction_for(chosen, requested=False, now=NOW) == member
    asked = sanction_for(chosen, requested=True, now=NOW)
    assert asked.decline is True
    assert asked.remove is False  # a requester is not in the group
    assert asked.ban is (requester == "decline+ban")
    assert asked.until == member.until


def test_a_muted_member_is_left_restricted_and_told_so() -> None:
    mute = sanction_for(Consequence("mute"), requested=False, now=NOW)
    assert (mute.decline, mute.remove, mute.ban) == (False, False, False)
    assert mute.notice == "muted"


@pytest.mark.parametrize(
    ("consequence", "requested", "notice"),
    [
        ("kick", False, "timed_out"),
        ("decline", False, "timed_out"),
        ("kick", True, "declined"),
        ("ban", False, "banned"),
        ("ban", True, "banned"),
        ("ban:2h", False, "banned_until"),
        ("mute", True, "declined"),
    ],
)
def test_what_the_member_is_told(consequence: str, requested: bool, notice: str) -> None:
    sanction = sanction_for(parse_consequence(consequence), requested=requested, now=NOW)
    assert sanction.notice == notice
