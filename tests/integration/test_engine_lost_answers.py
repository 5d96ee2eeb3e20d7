"""A right code is never called "expired" because Vonage's answer to a check was lost.

A check is sent once: the transport never re-sends it by itself. When its answer is lost
(a dropped connection after the request went out, or a read timeout), the bot finds out
what happened where it can (legacy: the search API) and otherwise says truthfully that it
does not know yet. Real Redis, a real SQLite directory, and the real vonage SDK against
the emulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.engine import Outcome
from bot.flow import PhoneGiven, State, Text
from bot.identity import Member, MemberKey
from tests.conftest import VONAGE_API_KEY, VONAGE_API_SECRET, VONAGE_APP_ID
from tests.emulators.vonage import RecordedCall, VonageEmulator
from verifybot.bootstrap import open_app

PHONE = "+447400123456"
DIGITS = PHONE.removeprefix("+")
ALICE = Member(MemberKey("telegram", "bot1", "4001"), display_name="Alice")


def keys(outcome: Outcome) -> list[str]:
    return [reply.key for reply in outcome.replies]


@pytest.fixture
async def bot_for(
    make_settings: Callable[..., Any], vonage: VonageEmulator, key_file: Path
) -> AsyncIterator[Callable[..., Any]]:
    credentials: dict[str, dict[str, Any]] = {
        "v2": {"vonage_application_id": VONAGE_APP_ID, "vonage_private_key_path": key_file},
        "legacy": {"vonage_api_key": VONAGE_API_KEY, "vonage_api_secret": VONAGE_API_SECRET},
    }
    opened: list[Any] = []

    async def make(api: str) -> App:
        settings = make_settings(
            vonage_api_host=vonage.host,
            vonage_timeout_seconds=2,
            vonage_retry_wait_seconds=0.01,
            **credentials[api],
        )
        context = open_app(settings)
        opened.append(context)
        return await context.__aenter__()

    yield make
    for context in reversed(opened):
        await context.__aexit__(None, None, None)


def checks(vonage: VonageEmulator, request_id: str) -> list[RecordedCall]:
    return [c for c in vonage.calls if c.path == f"/v2/verify/{request_id}"]


def wait_until_settled(vonage: VonageEmulator, request_id: str) -> None:
    """Block until the emulator has carried out the check it was slow to answer."""
    for _ in range(200):
        if vonage.status_of(request_id) != "in_progress":
            return
        time.sleep(0.05)
    raise AssertionError("the emulator never carried out the slow check")


async def code_sent(bot: App, vonage: VonageEmulator) -> str:
    assert keys(await bot.engine.handle(ALICE, PhoneGiven(PHONE))) == ["code.sent"]
    (request_id,) = vonage.request_ids_to(DIGITS)
    return request_id


async def test_v2_a_dropped_answer_to_a_right_code_is_not_re_sent_nor_called_expired(
    bot_for: Callable[..., Any], vonage: VonageEmulator
) -> None:
    bot: App = await bot_for("v2")
    request_id = await code_sent(bot, vonage)
    code = vonage.last_code(DIGITS)
    vonage.inject("drop_after", path_prefix=f"/v2/verify/{request_id}")

    lost = await bot.engine.handle(ALICE, Text(code))

    # Vonage completed the check; the SDK did not send it a second time.
    assert len(checks(vonage, request_id)) == 1
    assert vonage.status_of(request_id) == "completed"
    assert keys(lost) == ["code.lost"]
    assert lost.replies[0].about_code  # it carries the anti-scam warning
    assert lost.state is State.AWAIT_CODE and lost.verified is None
    # Typing it again gets 404: we cannot know whether the lost check completed it.
    again = await bot.engine.handle(ALICE, Text(code))
    assert keys(again) == ["code.lost_ended"]
    assert again.state is State.AWAIT_PHONE and again.verified is None
    assert bot.directory.find(ALICE.key) is None  # never verified on inference


async def test_v2_a_read_timeout_after_a_right_code_then_retyping_is_never_expired(
    bot_for: Callable[..., Any], vonage: VonageEmulator
) -> None:
    bot: App = await bot_for("v2")
    request_id = await code_sent(bot, vonage)
    code = vonage.last_code(DIGITS)
    vonage.timeout_delay = 3.0  # longer than the client's 2 s timeout
    vonage.inject("timeout", path_prefix=f"/v2/verify/{request_id}")

    lost = await bot.engine.handle(ALICE, Text(code))
    assert keys(lost) == ["code.lost"]
    await asyncio.to_thread(wait_until_settled, vonage, request_id)  # the slow check lands

    again = await bot.engine.handle(ALICE, Text(code))
    assert keys(again) == ["code.lost_ended"]
    assert "code.expired" not in keys(lost) + keys(again)
    assert len(checks(vonage, request_id)) == 2


async def test_v2_after_a_lost_answer_the_next_check_decides(
    bot_for: Callable[..., Any], vonage: VonageEmulator
) -> None:
    bot: App = await bot_for("v2")
    request_id = await code_sent(bot, vonage)
    code = vonage.last_code(DIGITS)
    wrong = "000000" if code != "000000" else "111111"
    vonage.inject("drop_after", path_prefix=f"/v2/verify/{request_id}")
    assert keys(await bot.engine.handle(ALICE, Text(wrong))) == ["code.lost"]
    # The lost check was a wrong one (Vonage counted it); the request is still live.
    assert keys(await bot.engine.handle(ALICE, Text(code))) == ["verified.done"]


async def test_v2_a_connection_that_never_opened_is_simply_unavailable(
    bot_for: Callable[..., Any], vonage: VonageEmulator
) -> None:
    bot: App = await bot_for("v2")
    await code_sent(bot, vonage)
    code = vonage.last_code(DIGITS)
    vonage.stop()  # nothing listens: the connection is refused, so nothing was sent
    failed = await bot.engine.handle(ALICE, Text(code))
    assert keys(failed) == ["failure.unavailable"]
    assert failed.state is State.AWAIT_CODE


@pytest.mark.parametrize(
    ("fault", "right", "expected"),
    [
        ("drop_after", True, ["verified.done"]),  # search: SUCCESS
        ("drop_after", False, ["code.wrong"]),  # search: IN PROGRESS, our check INVALID
        ("drop_before", True, ["code.lost"]),  # search: IN PROGRESS, our check never arrived
    ],
)
async def test_legacy_a_lost_answer_is_resolved_by_the_search_api(
    bot_for: Callable[..., Any],
    vonage: VonageEmulator,
    fault: str,
    right: bool,
    expected: list[str],
) -> None:
    bot: App = await bot_for("legacy")
    request_id = await code_sent(bot, vonage)
    code = vonage.last_code(DIGITS)
    typed = code if right else ("000000" if code != "000000" else "111111")
    vonage.inject(fault, path_prefix="/verify/check/json")

    outcome = await bot.engine.handle(ALICE, Text(typed))

    assert keys(outcome) == expected
    sent = [c for c in vonage.calls if c.path == "/verify/check/json"]
    assert len(sent) == 1  # never re-sent
    searched = [c for c in vonage.calls if c.path == "/verify/search/json"]
    assert [c.body.get("request_id") for c in searched] == [request_id]
    if right and fault == "drop_after":
        assert outcome.verified is not None
        assert bot.directory.find(ALICE.key) is not None


async def test_legacy_when_the_search_fails_too_the_member_hears_the_truth(
    bot_for: Callable[..., Any], vonage: VonageEmulator
) -> None:
    bot: App = await bot_for("legacy")
    await code_sent(bot, vonage)
    vonage.inject("drop_after", path_prefix="/verify/check/json")
    vonage.inject("500", path_prefix="/verify/search/json", times=10)
    outcome = await bot.engine.handle(ALICE, Text(vonage.last_code(DIGITS)))
    assert keys(outcome) == ["code.lost"]
    vonage.clear_faults()
    # The check had completed it; legacy answers 6 now, which after a doubt is no "expired".
    assert keys(await bot.engine.handle(ALICE, Text(vonage.last_code(DIGITS)))) == [
        "code.lost_ended"
    ]
