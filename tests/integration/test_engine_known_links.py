"""What the directory says about a member, kept in Redis: every worker sees a change at once.

Two workers are two bots opened on the same Redis prefix and the same SQLite file, as two
processes of one deployment would be. A verified member's ``/start`` is answered from Redis
(the directory is not asked: it is made to fail), and so is a member's "not verified"; an
unlink, a verification, or a verification of another number, is seen by the very next
message on either worker.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from bot.app import App
from bot.engine import Outcome
from bot.flow import Cancel, ChangeNumber, Conversation, Start, State, Text
from bot.identity import Member, MemberKey
from bot.moderation import Actor, Rank
from bot.privacy import mask_phone
from bot.store import Committed, KnownLink, Remember
from tests.conftest import Inbox

ALICE = Member(MemberKey("telegram", "bot1", "1001"), display_name="Alice", locale="en")
ADMIN = Actor(MemberKey("telegram", "bot1", "9"), Rank.ADMIN, "Ada")
PHONE, OTHER = "+447400123456", "+447400654321"


def keys(outcome: Outcome) -> list[str]:
    return [reply.key for reply in outcome.replies]


async def verify(app: App, inbox: Inbox, phone: str) -> None:
    await app.engine.handle(ALICE, Start())
    sent = await app.engine.handle(ALICE, Text(phone))
    assert keys(sent) == ["code.sent"], keys(sent)
    done = await app.engine.handle(ALICE, Text(inbox.last_code))
    assert keys(done) == ["verified.done"], keys(done)


def directory_unreachable(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the directory was asked")

    monkeypatch.setattr(app.directory, "verified_number", refuse)
    monkeypatch.setattr(app.directory, "find_verified", refuse)


async def test_a_verified_members_start_on_another_worker_is_answered_without_sql(
    workers: list[App], inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = workers
    await verify(one, inbox, PHONE)
    directory_unreachable(two, monkeypatch)
    again = await two.engine.handle(ALICE, Start())
    assert keys(again) == ["verified.already"]
    assert again.replies[0].params["phone"] == mask_phone(PHONE)


async def test_not_verified_is_kept_too_and_a_verification_elsewhere_is_seen_at_once(
    workers: list[App], inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = workers
    assert keys(await one.engine.handle(ALICE, Start())) == ["phone.ask"]  # the directory asked
    assert (await one.engine.handle(ALICE, Cancel())).state is State.IDLE
    with monkeypatch.context() as patch:
        directory_unreachable(two, patch)
        again = await two.engine.handle(ALICE, Start())
    assert keys(again) == ["phone.ask"]  # answered from what the first look-up kept

    await verify(one, inbox, PHONE)
    after = await two.engine.handle(ALICE, Start())
    assert keys(after) == ["verified.already"]
    assert after.replies[0].params["phone"] == mask_phone(PHONE)


async def test_an_unlink_is_seen_by_the_next_message_on_every_worker(
    workers: list[App], inbox: Inbox
) -> None:
    one, two = workers
    await verify(one, inbox, PHONE)
    for app in workers:  # both have the answer kept, and use it
        assert keys(await app.engine.handle(ALICE, Start())) == ["verified.already"]

    desk = one.moderation({})
    unlinked = await desk.unlink(ADMIN, ALICE.key, confirmed=True)
    assert [reply.key for reply in unlinked.replies] == ["mod.unlink.done"]

    first = await two.engine.handle(ALICE, Start())
    assert keys(first) == ["phone.ask"]
    assert first.state is State.AWAIT_PHONE
    # And the directory agrees: the tombstone made the worker ask it.
    assert one.directory.find_verified(ALICE.key) is None


async def test_a_change_of_number_is_seen_by_the_next_message_on_the_other_worker(
    workers: list[App], inbox: Inbox
) -> None:
    one, two = workers
    await verify(one, inbox, PHONE)
    before = await two.engine.handle(ALICE, Start())
    assert before.replies[0].params["phone"] == mask_phone(PHONE)

    assert keys(await one.engine.handle(ALICE, ChangeNumber())) == ["phone.ask"]
    sent = await one.engine.handle(ALICE, Text(OTHER))
    assert keys(sent) == ["code.sent"]
    assert keys(await one.engine.handle(ALICE, Text(inbox.last_code))) == ["verified.done"]

    after = await two.engine.handle(ALICE, Start())
    assert keys(after) == ["verified.already"]
    assert after.replies[0].params["phone"] == mask_phone(OTHER)
    link = two.directory.find_verified(ALICE.key)
    assert link is not None and link.phone_e164 == OTHER


async def test_an_answer_read_before_an_unlink_is_not_kept_after_it(workers: list[App]) -> None:
    """The race the tombstone closes: a worker read "verified" from the directory, the
    member was unlinked, and then that worker's commit tries to keep what it read."""
    store, now = workers[0].store, time.time()
    waiting = Conversation(state=State.AWAIT_PHONE)
    await store.forget_verification(ALICE.key)  # the unlink, before its SQL
    stale = Remember(KnownLink(PHONE, "GB", now - 60), "fill")
    assert isinstance(await store.commit(ALICE.key, waiting, version=0, now=now), Committed)
    await store.commit(ALICE.key, waiting, version=1, now=now, remember=stale)
    assert (await store.load(ALICE.key, now=now)).known is None  # ask the directory
    # Nor does a verification recorded before the unlink, whose commit comes after it.
    recorded = Remember(KnownLink(PHONE, "GB", now), "set")
    await store.commit(ALICE.key, waiting, version=2, now=now, remember=recorded)
    assert (await store.load(ALICE.key, now=now)).known is None
