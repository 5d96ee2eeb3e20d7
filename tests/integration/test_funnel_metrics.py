"""The funnel's counters (``bot.funnel``) for what a plain verification does not do: cancels,
expiries, limits, numbers in use elsewhere and redelivered updates. The engine through the
real bootstrap (Redis, SQLite, the sandbox verifier); each test counts under a platform
name of its own, so other tests in the process cannot move its numbers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from bot.flow import Cancel, ChangeNumber, Start, Status, Text
from bot.identity import Member, MemberKey
from tests.conftest import Inbox
from verifybot.bootstrap import open_app

PHONE = "+44 7400 123456"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def member(platform: str, user: str) -> Member:
    return Member(MemberKey(platform, "bot1", user), display_name=user)


async def test_a_cancel_counts_one_cancel_and_one_code_sent(
    make_settings: Callable[..., Any],
) -> None:
    ada = member("funnel-cancel", "ada")
    async with open_app(make_settings(), show_code=Inbox()) as bot:
        await bot.engine.handle(ada, Start())
        await bot.engine.handle(ada, Text(PHONE))
        await bot.engine.handle(ada, Cancel())
    assert value("verifybot_conversations_started_total", platform="funnel-cancel") == 1
    assert (
        value("verifybot_codes_sent_total", platform="funnel-cancel", channel="sms", country="GB")
        == 1
    )
    assert value("verifybot_verifications_cancelled_total", platform="funnel-cancel") == 1
    assert value("verifybot_codes_expired_total", platform="funnel-cancel") == 0


async def test_a_code_that_lapses_counts_one_expiry(make_settings: Callable[..., Any]) -> None:
    ada = member("funnel-expiry", "ada")
    now = [1_800_000_000.0]
    settings = make_settings(code_validity_seconds=300)
    async with open_app(settings, show_code=Inbox(), clock=lambda: now[0]) as bot:
        await bot.engine.handle(ada, Start())
        await bot.engine.handle(ada, Text(PHONE))
        now[0] += 301
        lapsed = await bot.engine.handle(ada, Status())
        assert "code.expired" in [reply.key for reply in lapsed.replies]
        await bot.engine.handle(ada, Status())  # asked again: nothing more lapses
    assert value("verifybot_codes_expired_total", platform="funnel-expiry") == 1


async def test_a_full_limit_and_a_number_in_use_are_refusals_by_reason(
    make_settings: Callable[..., Any],
) -> None:
    ada, bob = member("funnel-limits", "ada"), member("funnel-limits", "bob")
    limit_hits = value("verifybot_rate_limit_hits_total", limit="phone")
    async with open_app(make_settings(limit_sms_per_phone="1/1h"), show_code=Inbox()) as bot:
        await bot.engine.handle(ada, Start())
        await bot.engine.handle(ada, Text(PHONE))
        # Bob types Ada's number while her code is live: someone else's, for now.
        await bot.engine.handle(bob, Start())
        busy = await bot.engine.handle(bob, Text(PHONE))
        assert [reply.key for reply in busy.replies] == ["phone.in_progress"]
        # Ada starts over with the same number: one SMS an hour is spent.
        await bot.engine.handle(ada, ChangeNumber())
        limited = await bot.engine.handle(ada, Text(PHONE))
        assert [reply.key for reply in limited.replies] == ["limit.sms"]

    def refused(reason: str) -> float:
        return value("verifybot_numbers_refused_total", platform="funnel-limits", reason=reason)

    assert (refused("busy"), refused("limited"), refused("invalid")) == (1, 1, 0)
    assert value("verifybot_rate_limit_hits_total", limit="phone") == limit_hits + 1
    assert value("verifybot_conversations_started_total", platform="funnel-limits") == 2


async def test_a_redelivered_update_counts_as_a_duplicate_only(
    make_settings: Callable[..., Any],
) -> None:
    ada = member("funnel-duplicates", "ada")
    async with open_app(make_settings(), show_code=Inbox()) as bot:
        first = await bot.engine.handle(ada, Start(), delivery_id="update-1")
        again = await bot.engine.handle(ada, Start(), delivery_id="update-1")
        assert not first.duplicate and again.duplicate
        assert not await bot.engine.first_delivery(ada.key, "update-1")
    assert value("verifybot_duplicate_deliveries_total", platform="funnel-duplicates") == 2
    assert value("verifybot_conversations_started_total", platform="funnel-duplicates") == 1


async def test_a_turn_replayed_after_a_conflict_is_counted_once(
    make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker saves the member's conversation first: the turn is played again on
    the newer version (which the commit that found this worker's copy stale returned), and
    only the replay counts."""
    ada = member("funnel-replay", "ada")
    async with open_app(make_settings(), show_code=Inbox()) as bot:
        await bot.engine.handle(ada, Start())
        store, commit = bot.store, bot.store.commit
        raced: list[int] = []

        async def commit_after_another_worker(key: MemberKey, *args: Any, **kw: Any) -> Any:
            if not raced:
                raced.append(1)
                theirs = await store.load(key, now=kw["now"])
                await commit(key, theirs.conversation, version=theirs.version, now=kw["now"])
            return await commit(key, *args, **kw)

        monkeypatch.setattr(store, "commit", commit_after_another_worker)
        with capture_logs() as logs:
            cancelled = await bot.engine.handle(ada, Cancel())
        assert [reply.key for reply in cancelled.replies] == ["cancel.done"]
        # This worker's copy of the conversation was stale: its commit said so, with theirs.
        assert [e["event"] for e in logs].count("conversation_copy_stale") == 1
    assert value("verifybot_verifications_cancelled_total", platform="funnel-replay") == 1
