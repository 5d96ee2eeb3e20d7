"""Every way a member verifies hands the verification to the bus exactly once, after they saw
their reply: Telegram's private chat, its deep link from a group and its join requests; Slack's
modal and DM; the console. What the handlers then do (a group opens, the log, AUTO_ROLES) is
checked where each is built (test_telegram.py, test_*_moderation.py); here, that it happens."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from adapters.console import ConsoleChat
from adapters.slack.views import CODE_INPUT, CODE_VIEW, PHONE_INPUT, PHONE_VIEW
from bot.app import App
from bot.flow import MemberVerified
from bot.identity import Member
from tests.conftest import Inbox
from tests.e2e.conftest import RunBot
from tests.e2e.slack_harness import PHONE, TEAM, Harness, running, until
from tests.e2e.test_telegram import E164, NUMBER, next_message, verify_by_typing
from tests.emulators.slack_requests import event_callback, slash_command, view_submission
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.vonage import VonageEmulator
from verifybot.bootstrap import open_app

ALICE = "U0ALICE001"


class Published:
    """Each verification the engine hands to the bus, with what the member had seen then."""

    def __init__(self, app: App, seen: Callable[[], int] = lambda: 0) -> None:
        self.verifications: list[tuple[str, bool, int]] = []
        bus = app.engine.bus
        publish = bus.publish

        async def spy(member: Member, verified: MemberVerified) -> None:
            self.verifications.append((member.key.user_id, verified.fresh, seen()))
            await publish(member, verified)

        bus.publish = spy  # type: ignore[method-assign]


# --- Telegram ---------------------------------------------------------------------------------


async def test_telegram_private_chat_and_deep_link_each_follow_once(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ada = telegram.add_user("Ada")
    group = telegram.add_group("Club")
    async with run_bot(telegram_gate_mode="restrict") as app:
        def said() -> int:
            return len(telegram.messages_in(ada))

        published = Published(app, said)
        await verify_by_typing(telegram, vonage, ada)
        await telegram.wait_for(lambda: published.verifications)
        telegram.join(ada, group)
        await next_message(telegram, group, "Welcome, Ada")
        before = said()
        telegram.send_text(ada, f"/start g{group}")  # verified already: one tap
        await next_message(telegram, ada, "You can now take part in Club", after=before)

    (fresh_user, fresh, seen_then), (back_user, back_fresh, back_seen) = published.verifications
    assert (fresh_user, fresh, back_user, back_fresh) == (str(ada), True, str(ada), False)
    # The member had their "verified" reply before the bus ran.
    texts = [m.text for m in telegram.messages_in(ada)]
    assert "You're verified" in texts[seen_then - 1]
    assert "You can now take part in Club" not in "".join(texts[:back_seen])


async def test_telegram_join_request_follows_once_when_the_member_verifies(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ada = telegram.add_user("Ada")
    group = telegram.add_group("Club")
    async with run_bot(telegram_gate_mode="join_request") as app:
        published = Published(app)
        telegram.request_join(ada, group)
        await next_message(telegram, ada, "send me your mobile phone number")
        assert published.verifications == []  # asked, not verified
        telegram.send_text(ada, NUMBER)
        await next_message(telegram, ada, "I've sent")
        telegram.send_text(ada, vonage.last_code(E164))
        await next_message(telegram, ada, "You can now take part in Club")
        assert telegram.join_request_state(group, ada) == "approved"
    assert [(user, fresh) for user, fresh, _ in published.verifications] == [(str(ada), True)]


# --- Slack ------------------------------------------------------------------------------------


@pytest.fixture
async def slack(make_settings: Callable[..., Any]) -> AsyncIterator[Harness]:
    async with running(make_settings) as harness:
        harness.emu.add_user(ALICE, name="alice", locale="en-US")
        yield harness


async def test_slack_modal_follows_once(slack: Harness) -> None:
    published = Published(slack.app)
    await slack.post(slash_command(TEAM, ALICE, slack.emu.new_trigger()))
    phone_view = await slack.modal_with(PHONE_VIEW)
    await slack.post(view_submission(TEAM, ALICE, phone_view, {PHONE_INPUT: PHONE}))
    code_view = await slack.modal_with(CODE_VIEW)
    status, _ = await slack.post(
        view_submission(TEAM, ALICE, code_view, {CODE_INPUT: slack.inbox.last_code})
    )
    assert status == 200
    await until(lambda: published.verifications)
    assert [(user, fresh) for user, fresh, _ in published.verifications] == [(ALICE, True)]


async def test_slack_dm_follows_once_and_a_redelivery_not_again(slack: Harness) -> None:
    published = Published(slack.app)
    channel = slack.emu.dms.setdefault(ALICE, "D0ALICEDM1")

    def said(text: str, event_id: str) -> str:
        event = {"type": "message", "channel": channel, "user": ALICE, "text": text}
        event |= {"ts": f"{len(event_id)}.0", "channel_type": "im"}
        return event_callback(TEAM, event, event_id=event_id)

    await slack.post(said(PHONE, "Ev0000000001"), json_body=True)
    # The code is typed once the bot says it was sent, as a member would: the "SMS" goes out a
    # moment before the conversation is saved as waiting for it.
    await until(lambda: any("I've sent" in m["text"] for m in slack.emu.dm_messages(ALICE)))
    code = said(slack.inbox.last_code, "Ev0000000002")
    await slack.post(code, json_body=True)
    await until(lambda: published.verifications)
    await slack.post(code, json_body=True)  # Slack delivers it again
    await slack.post(said("hello", "Ev0000000003"), json_body=True)
    await until(lambda: "already verified" in slack.emu.dm_messages(ALICE)[-1]["text"])
    assert [(user, fresh) for user, fresh, _ in published.verifications] == [(ALICE, True)]


# --- The console ------------------------------------------------------------------------------


async def test_the_console_follows_once(make_settings: Callable[..., Any]) -> None:
    inbox = Inbox()
    async with open_app(make_settings(), show_code=inbox) as app:
        published = Published(app)
        stdout = io.StringIO()
        first = ConsoleChat(
            app.engine, app.catalogue, user_id="me", stdin=io.StringIO(PHONE + "\n"), stdout=stdout
        )
        await first.run()
        code = ConsoleChat(
            app.engine,
            app.catalogue,
            user_id="me",
            stdin=io.StringIO(inbox.last_code + "\n"),
            stdout=stdout,
        )
        await code.run()
    assert "verified" in stdout.getvalue()
    assert [(user, fresh) for user, fresh, _ in published.verifications] == [("me", True)]
