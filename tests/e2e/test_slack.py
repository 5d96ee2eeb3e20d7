"""Slack over HTTP: the real bolt app from ``adapters.slack`` against the Slack emulator,
driven by signed requests as Slack sends them, with a real engine behind it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from adapters.slack.views import CODE_INPUT, CODE_VIEW, PHONE_INPUT, PHONE_VIEW
from bot.identity import MemberKey
from tests.e2e.slack_harness import MASKED, PHONE, TEAM, Harness, running, texts, until
from tests.emulators.slack_requests import (
    block_action,
    event_callback,
    sign,
    slash_command,
    view_submission,
)

ALICE = "U0ALICE001"


@pytest.fixture
async def slack(make_settings: Callable[..., Any]) -> AsyncIterator[Harness]:
    async with running(make_settings) as harness:
        harness.emu.add_user(ALICE, name="alice", locale="en-US")
        yield harness


async def open_modal(h: Harness, user: str = ALICE) -> dict[str, Any]:
    status, _ = await h.post(slash_command(TEAM, user, h.emu.new_trigger()))
    assert status == 200
    return await h.modal_with(PHONE_VIEW)


async def submit(h: Harness, view: dict[str, Any], **values: str) -> tuple[int, Any]:
    return await h.post(view_submission(TEAM, ALICE, view, values))


async def to_code_view(h: Harness) -> dict[str, Any]:
    phone_view = await open_modal(h)
    status, answer = await submit(h, phone_view, **{PHONE_INPUT: PHONE})
    assert status == 200 and answer["response_action"] == "update"
    assert "Sending your code" in texts(answer["view"])
    return await h.modal_with(CODE_VIEW)


def dm(h: Harness, user: str = ALICE) -> list[dict[str, Any]]:
    return h.emu.dm_messages(user)


async def test_verify_modal_from_number_to_confirmation_and_dm(slack: Harness) -> None:
    code_view = await to_code_view(slack)
    assert f"I've sent a 6-digit code to {MASKED}" in texts(code_view)
    assert "Never share it" in texts(code_view)  # the anti-scam warning
    buttons = {
        e["action_id"] for b in code_view["blocks"] if b["type"] == "actions" for e in b["elements"]
    }
    assert buttons == {"verifybot.resend", "verifybot.change_number", "verifybot.cancel"}

    status, answer = await submit(slack, code_view, **{CODE_INPUT: slack.inbox.last_code})
    assert status == 200 and answer["response_action"] == "update"
    assert f"You're verified with {MASKED}" in texts(answer["view"])
    message = (await until(lambda: dm(slack)))[-1]
    assert f"You're verified with {MASKED}" in message["text"]
    link = await slack.app.engine.verification(MemberKey("slack", TEAM, ALICE))
    assert link is not None and link.phone_e164 == "+447400123456"
    # The member's name came from users.info, with the locale asked for.
    info = slack.emu.calls_to("users.info")[0]
    assert info.args["include_locale"] in ("1", "true", True)


async def test_an_invalid_number_is_shown_inline(slack: Harness) -> None:
    phone_view = await open_modal(slack)
    status, answer = await submit(slack, phone_view, **{PHONE_INPUT: "call me maybe"})
    assert status == 200
    assert answer["response_action"] == "errors"
    assert "doesn't look like a phone number" in answer["errors"][PHONE_INPUT]
    assert slack.emu.calls_to("views.update") == []


async def test_a_wrong_code_is_shown_inline_with_the_tries_left(slack: Harness) -> None:
    code_view = await to_code_view(slack)
    wrong = "000000" if slack.inbox.last_code != "000000" else "111111"
    status, answer = await submit(slack, code_view, **{CODE_INPUT: wrong})
    assert status == 200 and answer["response_action"] == "errors"
    assert "You have 2 tries left" in answer["errors"][CODE_INPUT]
    status, answer = await submit(slack, code_view, **{CODE_INPUT: slack.inbox.last_code})
    assert answer["response_action"] == "update"
    assert "You're verified" in texts(answer["view"])


async def test_resend_and_cancel_buttons_update_the_modal(slack: Harness) -> None:
    code_view = await to_code_view(slack)
    first = slack.inbox.last_code
    press = block_action(TEAM, ALICE, "verifybot.resend", slack.emu.new_trigger(), view=code_view)
    assert (await slack.post(press))[0] == 200
    resent = await until(lambda: "again" in texts(slack.modal()) and slack.modal())
    assert f"I've sent the code to {MASKED} again" in texts(resent)
    assert len(slack.inbox.lines) == 2 and slack.inbox.last_code == first
    cancel = block_action(TEAM, ALICE, "verifybot.cancel", slack.emu.new_trigger(), view=resent)
    await slack.post(cancel)
    await until(lambda: "Verification cancelled" in texts(slack.modal()))


def said(h: Harness, user: str = ALICE) -> str:
    return "\n".join(m["text"] for m in dm(h, user))


async def say(h: Harness, text: str, user: str = ALICE) -> None:
    """``user`` types ``text`` in their DM with the bot."""
    channel = h.emu.dms.setdefault(user, f"D{user[1:]}")
    event = {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": f"{time.time():.6f}",
        "channel_type": "im",
    }
    assert (await h.post(event_callback(TEAM, event), json_body=True))[0] == 200


async def test_a_number_as_the_first_dm_sends_the_code(slack: Harness) -> None:
    await say(slack, PHONE)
    await until(lambda: f"I've sent a 6-digit code to {MASKED}" in said(slack))
    assert len(slack.inbox.lines) == 1
    await say(slack, slack.inbox.last_code)
    await until(lambda: f"You're verified with {MASKED}" in said(slack))
    assert len(dm(slack)) == 2


@pytest.mark.parametrize("typed", ["hello", "verify", "Verificar", "/start"])
async def test_any_other_first_dm_asks_for_the_number(slack: Harness, typed: str) -> None:
    await say(slack, typed)
    await until(lambda: "send me your mobile phone number" in said(slack))
    assert "I verify members' phone numbers" not in said(slack)  # not the idle help
    await say(slack, PHONE)
    await until(lambda: "I've sent a 6-digit code" in said(slack))


async def test_a_verified_member_saying_hello_is_told_so(slack: Harness) -> None:
    await say(slack, PHONE)
    await until(lambda: "I've sent a 6-digit code" in said(slack))
    await say(slack, slack.inbox.last_code)
    await until(lambda: "You're verified" in said(slack))
    await slack.app.store.redis.delete(
        slack.app.store.conversation_key(MemberKey("slack", TEAM, ALICE))
    )
    await say(slack, "hello")  # the conversation is gone; the directory still knows
    await until(lambda: len(dm(slack)) == 3)
    assert f"You're already verified with {MASKED}" in dm(slack)[-1]["text"]
    assert len(slack.inbox.lines) == 1


async def test_the_dm_conversation(slack: Harness) -> None:
    slack.emu.dms[ALICE] = "D0ALICEDM1"
    await say(slack, "hello")
    await until(lambda: "send me your mobile phone number" in said(slack))
    cancel = block_action(
        TEAM, ALICE, "verifybot.cancel", slack.emu.new_trigger(), channel="D0ALICEDM1"
    )
    await slack.post(cancel)
    await until(lambda: "Verification cancelled" in said(slack))
    verify = dm(slack)[-1]["blocks"][-1]["elements"][0]
    assert verify["action_id"] == "verifybot.start"
    press = block_action(
        TEAM, ALICE, "verifybot.start", slack.emu.new_trigger(), channel="D0ALICEDM1"
    )
    await slack.post(press)
    await until(lambda: said(slack).count("send me your mobile phone number") == 2)
    await say(slack, PHONE)
    await until(lambda: "I've sent a 6-digit code" in said(slack))
    # The bot's own message echoed back, and an edit, are not the member typing.
    bot_echo = {"type": "message", "channel": "D0ALICEDM1", "bot_id": "B0EMULATED", "text": "x"}
    edit = {"type": "message", "subtype": "message_changed", "channel": "D0ALICEDM1"}
    for event in (bot_echo, edit):
        await slack.post(event_callback(TEAM, event), json_body=True)
    await say(slack, slack.inbox.last_code)
    await until(lambda: f"You're verified with {MASKED}" in said(slack))
    assert len(dm(slack)) == 5


async def test_the_home_tab_shows_the_status_and_opens_the_modal(slack: Harness) -> None:
    async def open_home() -> dict[str, Any]:
        before = len(slack.emu.calls_to("views.publish"))
        event = {"type": "app_home_opened", "user": ALICE, "channel": "D0ALICEDM1", "tab": "home"}
        await slack.post(event_callback(TEAM, event), json_body=True)
        await until(lambda: len(slack.emu.calls_to("views.publish")) > before)
        return slack.emu.published[ALICE]

    home = await open_home()
    assert "You're not verified yet" in texts(home)
    home_view = {**home, "id": "VHOME00001", "type": "home"}
    press = block_action(TEAM, ALICE, "verifybot.start", slack.emu.new_trigger(), view=home_view)
    await slack.post(press)
    phone_view = await slack.modal_with(PHONE_VIEW)
    assert len(slack.emu.calls_to("views.open")) == 1  # opened by the Home tab's button
    await submit(slack, phone_view, **{PHONE_INPUT: PHONE})
    code_view = await slack.modal_with(CODE_VIEW)
    assert f"A code was sent to {MASKED}" in texts(await open_home())
    await submit(slack, code_view, **{CODE_INPUT: slack.inbox.last_code})
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert f"You're verified with {MASKED} since {today}" in texts(await open_home())
    # The messages tab is not the home tab: nothing published.
    before = len(slack.emu.calls_to("views.publish"))
    event = {"type": "app_home_opened", "user": ALICE, "channel": "D1", "tab": "messages"}
    await slack.post(event_callback(TEAM, event), json_body=True)
    await until(lambda: slack.emu.calls_to("users.info"))
    assert len(slack.emu.calls_to("views.publish")) == before


async def test_a_new_member_is_invited_once(slack: Harness) -> None:
    bob = "U0BOB00001"
    slack.emu.add_user(bob, name="bob", locale="es-ES")
    event = {"type": "team_join", "user": {"id": bob, "team_id": TEAM, "is_bot": False}}
    body = event_callback(TEAM, event, "Ev0TEAMJOIN1")
    with capture_logs() as logs:
        assert (await slack.post(body, json_body=True))[0] == 200
        invite = (await until(lambda: dm(slack, bob)))[0]
        # Slack redelivers: the core's duplicate guard drops it.
        assert (await slack.post(body, json_body=True, retry_num=1))[0] == 200
        await until(lambda: any(e["event"] == "duplicate_delivery" for e in logs))
    assert "verifiquen su número de móvil" in invite["text"]  # in Bob's language
    assert [e["action_id"] for e in invite["blocks"][-1]["elements"]] == ["verifybot.start"]
    assert len(dm(slack, bob)) == 1


async def test_no_invite_when_turned_off(make_settings: Callable[..., Any]) -> None:
    async with running(make_settings, slack_invite_new_members=False) as h:
        h.emu.add_user("U0CAROL001")
        event = {"type": "team_join", "user": {"id": "U0CAROL001", "team_id": TEAM}}
        assert (await h.post(event_callback(TEAM, event), json_body=True))[0] == 200
        await until(lambda: h.emu.calls_to("auth.test"))
        assert h.emu.calls_to("conversations.open") == []


async def test_bad_and_stale_signatures_are_refused(slack: Harness) -> None:
    body = slash_command(TEAM, ALICE, slack.emu.new_trigger())
    ts = str(int(time.time()))
    forged = sign("not-the-secret", ts, body)
    assert (await slack.post(body, signature=forged, timestamp=float(ts)))[0] == 401
    stale = time.time() - 600
    assert (await slack.post(body, timestamp=stale))[0] == 401
    assert slack.emu.calls_to("views.open") == []


async def test_a_retried_delivery_is_acknowledged_and_ignored(slack: Harness) -> None:
    slack.emu.dms[ALICE] = "D0ALICEDM1"
    event = {
        "type": "message",
        "channel": "D0ALICEDM1",
        "user": ALICE,
        "text": "hi",
        "ts": "1700000000.000100",
        "channel_type": "im",
    }
    body = event_callback(TEAM, event, "Ev0RETRIED1")
    with capture_logs() as logs:
        assert (await slack.post(body, json_body=True))[0] == 200
        await until(lambda: dm(slack))
        assert (await slack.post(body, json_body=True, retry_num=1))[0] == 200
        await until(lambda: any(e["event"] == "duplicate_delivery" for e in logs))
    assert len(dm(slack)) == 1


async def test_a_rate_limited_post_is_retried(slack: Harness) -> None:
    slack.emu.dms[ALICE] = "D0ALICEDM1"
    slack.emu.inject_rate_limit("chat.postMessage", retry_after=1)
    event = {
        "type": "message",
        "channel": "D0ALICEDM1",
        "user": ALICE,
        "text": "hi",
        "ts": "1700000000.000200",
        "channel_type": "im",
    }
    await slack.post(event_callback(TEAM, event), json_body=True)
    await until(lambda: dm(slack))
    calls = slack.emu.calls_to("chat.postMessage")
    assert len(calls) == 2 and calls[1].at - calls[0].at >= 0.9


async def test_slack_refusals_are_one_log_line_and_no_crash(slack: Harness) -> None:
    ghost = "U0GHOST001"  # unknown to Slack: users.info and conversations.open refuse
    slack.emu.dms[ALICE] = "D0ALICEDM1"
    slack.emu.inject("chat.postMessage", error="not_in_channel")
    with capture_logs() as logs:
        join = {"type": "team_join", "user": {"id": ghost, "team_id": TEAM}}
        await slack.post(event_callback(TEAM, join), json_body=True)
        event = {
            "type": "message",
            "channel": "D0ALICEDM1",
            "user": ALICE,
            "text": "hi",
            "ts": "1700000000.000300",
            "channel_type": "im",
        }
        await slack.post(event_callback(TEAM, event), json_body=True)

        def refusals() -> list[MutableMapping[str, Any]]:
            return [e for e in logs if e["event"] == "slack_api_error"]

        await until(lambda: len(refusals()) == 3)
    assert {(e["method"], e["error"]) for e in refusals()} == {
        ("users.info", "user_not_found"),
        ("conversations.open", "user_not_found"),
        ("chat.postMessage", "not_in_channel"),
    }
    text = json.dumps(logs, default=str)
    assert slack.emu.bot_token not in text and "xoxb-" not in text
    assert not [e for e in logs if e.get("log_level") in ("error", "critical")]
    # Still serving: the next message gets its answer.
    await slack.post(event_callback(TEAM, {**event, "ts": "1700000000.000400"}), json_body=True)
    await until(lambda: dm(slack))


async def test_doctor_asks_slack_which_workspace_the_token_is_for(slack: Harness) -> None:
    from verifybot.doctor import check_platforms

    settings = slack.app.settings
    [telegram, ok] = await check_platforms(settings)
    [_, refused] = await check_platforms(
        settings.model_copy(update={"slack_bot_token": SecretStr("xoxb-wrong")})
    )

    assert telegram.ok and "not configured" in telegram.detail
    assert ok.ok and ok.detail.startswith("workspace ")
    assert not refused.ok and refused.detail == "SLACK_BOT_TOKEN was refused by Slack: invalid_auth"
