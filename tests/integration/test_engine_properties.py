"""Random conversations through the real engine (real Redis, real SQLite, the sandbox
verifier), checking what must hold after every message, whatever the member does."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import App
from bot.flow import (
    Cancel,
    ChangeNumber,
    Help,
    MemberEvent,
    Resend,
    Start,
    State,
    Status,
    Text,
)
from bot.identity import Member, MemberKey
from bot.privacy import mask_phone
from verifybot.bootstrap import open_app

SMS_PER_PHONE = 3
_members = itertools.count()


class Inbox:
    def __init__(self) -> None:
        self.codes: dict[str, list[str]] = {}

    def __call__(self, line: str) -> None:
        match = re.match(r"\[sandbox\] code for (\S+): (\d+)$", line)
        assert match, line
        self.codes.setdefault(match.group(1), []).append(match.group(2))


@pytest.fixture
async def bot_and_inbox(make_settings: Callable[..., Any]) -> AsyncIterator[tuple[App, Inbox]]:
    inbox = Inbox()
    settings = make_settings(
        resend_cooldown_seconds=0,
        limit_sms_per_phone=f"{SMS_PER_PHONE}/1h",
        limit_starts_per_member="off",
        limit_wrong_codes_per_member="off",
    )
    async with open_app(settings, show_code=inbox) as app:
        yield app, inbox


ACTIONS = st.sampled_from(
    ["start", "phone_a", "phone_b", "right_code", "wrong_code", "garbage", "resend", "change",
     "cancel", "status", "help"]
)  # fmt: skip


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(actions=st.lists(ACTIONS, min_size=1, max_size=14))
async def test_every_message_is_answered_and_state_agrees_with_the_directory(
    bot_and_inbox: tuple[App, Inbox], actions: list[str]
) -> None:
    bot, inbox = bot_and_inbox
    n = next(_members)
    member = Member(MemberKey("telegram", "props", str(n)))
    # Numbers of this member's own (the sandbox shows the last four digits), so examples
    # share neither phone limits nor inbox lines.
    phones = {"phone_a": f"+447400{2 * n:06d}", "phone_b": f"+447400{2 * n + 1:06d}"}
    sent_before: Counter[str] = Counter()
    for action in actions:
        conversation = await bot.engine.conversation(member)
        event = _event(action, phones, conversation.phone, inbox)
        outcome = await bot.engine.handle(member, event)

        assert outcome.replies, f"silence after {action}"
        assert all(reply.key != "error.internal" for reply in outcome.replies)
        stored = await bot.engine.conversation(member)
        assert stored.state is outcome.state
        link = bot.directory.find(member.key)
        if outcome.state is State.VERIFIED:
            assert link is not None
            assert link.is_phone_verified
            assert link.phone_e164 == stored.phone
        if outcome.verified is not None:
            assert [r.key for r in outcome.replies][-1] == "verified.done"
        # Every SMS is announced to the member, and every announcement is an SMS that went
        # out, to the number the conversation now holds; never more than the limit allows.
        announced = sum(r.key in ("code.sent", "resend.done") for r in outcome.replies)
        texted = Counter(
            {phone: len(inbox.codes.get(mask_phone(phone), [])) for phone in phones.values()}
        )
        texted.subtract(sent_before)
        assert sum(texted.values()) == announced, (action, outcome.replies)
        if announced:
            assert texted[stored.phone or ""] == announced
        for phone in phones.values():
            sent_before[phone] = len(inbox.codes.get(mask_phone(phone), []))
            assert sent_before[phone] <= SMS_PER_PHONE


def _event(action: str, phones: dict[str, str], current: str | None, inbox: Inbox) -> MemberEvent:
    codes = inbox.codes.get(mask_phone(current), []) if current else []
    right = codes[-1] if codes else "123456"
    simple: dict[str, MemberEvent] = {
        "start": Start(), "resend": Resend(), "change": ChangeNumber(), "cancel": Cancel(),
        "status": Status(), "help": Help(), "garbage": Text("what is this?"),
        "right_code": Text(right),
        "wrong_code": Text(f"{(int(right) + 1) % 1_000_000:06d}"),
    }  # fmt: skip
    if action in phones:
        return Text(phones[action])
    return simple[action]
