"""The SMS-fraud breaker in chat: members of a pumped prefix told to come back later, the log
chat told once, and the admins' fraud command on Telegram and on Slack (refused to anyone
else, audited). The real python-telegram-bot and slack-bolt against their emulators."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.app import App
from tests.e2e.conftest import RunBot
from tests.e2e.slack_harness import TEAM, Harness, running
from tests.e2e.test_slack_moderation import ask, log_lines
from tests.e2e.test_telegram import next_message
from tests.emulators.telegram import TelegramEmulator
from tests.integration.test_fraud_cli import trip

ATTACKED = "+44740012"


def audit(app: App, event: str) -> list[Any]:
    return [e for e in app.directory.audit_trail() if e.event == event]


async def test_on_telegram_a_pumped_prefix_pauses_and_only_an_admin_lifts_it(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    mods, root, plain = (
        telegram.add_group("Mods"),
        telegram.add_user("Root"),
        telegram.add_user("P"),
    )
    pumpers = [telegram.add_user(f"Pumper {i}") for i in range(4)]
    async with run_bot(
        telegram_log_chat_id=str(mods),
        telegram_admin_ids=str(root),
        fraud_min_sends="3",
        limit_sms_per_prefix="100/1d",
    ) as app:
        for i, pumper in enumerate(pumpers):
            telegram.send_text(pumper, "/start")
            telegram.send_text(pumper, f"+44 7400 12{i:04d}")
            expected = "I've sent a 6-digit code" if i < 3 else "paused for now"
            await next_message(telegram, pumper, expected)
        alarm = await next_message(telegram, mods, "SMS-fraud breaker")
        assert alarm.text.startswith("🚨 SMS-fraud breaker: codes to +44•••••0012 are paused")
        assert "740012" not in alarm.text

        telegram.send_text(plain, f"/fraud lift {ATTACKED}")
        await next_message(telegram, plain, "only admins")
        [refused] = audit(app, "refused")
        assert refused.details == {"command": "fraud"}

        telegram.send_text(root, "/fraud")
        status = await next_message(telegram, root, "Paused by the SMS-fraud breaker")
        assert f"• {ATTACKED} · 0/3 (0%) · " in status.text
        telegram.send_text(root, f"/fraud lift {ATTACKED}")
        await next_message(telegram, root, f"Codes to {ATTACKED} are sent again.")
        await next_message(telegram, mods, "🔓 Root lifted the SMS pause on +44•••••0012.")
        [lifted] = audit(app, "fraud_lifted")
        assert (lifted.subject, lifted.details) == (f"prefix:{ATTACKED}", {"was_paused": True})
        # Lifted: the pumped prefix gets codes again.
        telegram.send_text(pumpers[3], f"+44 7400 12{3:04d}")
        await next_message(telegram, pumpers[3], "I've sent a 6-digit code")


OWNER = "U0OWNER001"  # in SLACK_ADMIN_IDS
MODERATOR = "U0ADMIN001"  # a workspace admin: a moderator, not an admin
LOG = "C0MODLOG01"


@pytest.fixture
async def slack(make_settings: Callable[..., Any]) -> AsyncIterator[Harness]:
    async with running(make_settings, slack_admin_ids=OWNER, slack_log_channel=LOG) as h:
        h.emu.add_user(OWNER, name="owner")
        h.emu.add_user(MODERATOR, name="admin", is_admin=True)
        h.emu.add_channel(LOG)
        yield h


async def test_on_slack_only_an_admin_sees_and_lifts_a_pause(slack: Harness) -> None:
    await trip(slack.app.store, "+447400123456", "GB", sends=4)

    refused = await ask(slack, MODERATOR, f"fraud lift {ATTACKED}")
    assert refused["text"] == "Sorry, only admins can do that."
    assert [e.actor for e in audit(slack.app, "refused")] == [f"slack:{TEAM}:{MODERATOR}"]

    status = await ask(slack, OWNER, "fraud")
    lines = status["text"].splitlines()
    assert lines[0] == "Paused by the SMS-fraud breaker:"
    assert sorted(line.split(" · ")[0] for line in lines[1:]) == ["• +44740012", "• GB"]
    lifted = await ask(slack, OWNER, "fraud lift gb")
    assert lifted["text"] == "Codes to GB are sent again."
    assert "🔓 owner lifted the SMS pause on GB." in log_lines(slack)
    usage = await ask(slack, OWNER, "fraud lift")
    assert usage["text"].startswith("Use `fraud` to list what is paused")
    assert [e.subject for e in audit(slack.app, "fraud_lifted")] == ["country:GB"]
    assert len(audit(slack.app, "fraud_status")) == 1
