"""The engine hands a verification to the bus once, after the adapter rendered the reply:
through the real bootstrap (real Redis, real SQLite, the sandbox verifier)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.app import App
from bot.engine import Outcome
from bot.flow import MemberVerified, Start, Text
from bot.identity import Member, MemberKey
from tests.conftest import Inbox
from verifybot.bootstrap import open_app

ALICE = Member(MemberKey("telegram", "bot1", "1001"), display_name="Alice", locale="en")
PHONE = "+44 7400 123456"


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def app(make_settings: Callable[..., Any], inbox: Inbox) -> AsyncIterator[App]:
    async with open_app(make_settings(), show_code=inbox) as opened:
        yield opened


class Journal:
    """What the member saw and what followed, in the order it happened."""

    def __init__(self, app: App, platform: str = "telegram") -> None:
        self.lines: list[str] = []
        app.engine.bus.register(platform, [self.follow])

    async def render(self, outcome: Outcome) -> None:
        self.lines += [f"reply:{reply.key}" for reply in outcome.replies]

    async def follow(self, member: Member, verified: MemberVerified) -> None:
        self.lines.append(f"verified:{member.key.user_id}:fresh={verified.fresh}")


async def code_sent(app: App, inbox: Inbox) -> str:
    await app.engine.handle(ALICE, Start())
    await app.engine.handle(ALICE, Text(PHONE))
    return inbox.last_code


async def test_the_member_sees_verified_before_anything_follows_and_it_follows_once(
    app: App, inbox: Inbox
) -> None:
    journal = Journal(app)
    code = await code_sent(app, inbox)
    await app.engine.handle(ALICE, Text(code), delivery_id="u1", render=journal.render)
    assert journal.lines == ["reply:verified.done", "verified:1001:fresh=True"]


async def test_a_redelivered_code_is_neither_shown_nor_followed_again(
    app: App, inbox: Inbox
) -> None:
    journal = Journal(app)
    code = await code_sent(app, inbox)
    await app.engine.handle(ALICE, Text(code), delivery_id="u1", render=journal.render)
    again = await app.engine.handle(ALICE, Text(code), delivery_id="u1", render=journal.render)
    assert again.duplicate
    assert journal.lines == ["reply:verified.done", "verified:1001:fresh=True"]


async def test_coming_back_by_a_groups_link_follows_but_is_no_news(
    app: App, inbox: Inbox
) -> None:
    code = await code_sent(app, inbox)
    await app.engine.handle(ALICE, Text(code))
    journal = Journal(app)
    await app.engine.handle(ALICE, Start(origin="-100"), render=journal.render)
    assert journal.lines[-1] == "verified:1001:fresh=False"
    assert len([line for line in journal.lines if line.startswith("verified:")]) == 1


async def test_a_reply_that_cannot_be_shown_still_lets_the_gate_open(
    app: App, inbox: Inbox
) -> None:
    journal = Journal(app)
    code = await code_sent(app, inbox)

    async def broken(outcome: Outcome) -> None:
        raise ConnectionError("the platform hung up")

    with pytest.raises(ConnectionError):
        await app.engine.handle(ALICE, Text(code), render=broken)
    assert journal.lines == ["verified:1001:fresh=True"]


async def test_a_message_that_verifies_nothing_is_shown_and_followed_by_nothing(
    app: App, inbox: Inbox
) -> None:
    journal = Journal(app)
    await app.engine.handle(ALICE, Start(), render=journal.render)
    assert journal.lines and not any(line.startswith("verified:") for line in journal.lines)
