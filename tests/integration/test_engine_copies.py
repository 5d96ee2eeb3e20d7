"""A worker's copy of a conversation: a message may start from it, never act on it stale.

A worker keeps the conversation it last wrote or read, and a message that is not a code
starts from it without a load; the message's first write checks the copy whole and
guards the delivery, in one script. Two workers are two bots opened on the same Redis
prefix and the same SQLite file, as two processes of one deployment would be.
"""

from __future__ import annotations

from bot.app import App
from bot.engine import Outcome
from bot.flow import Cancel, Start, State, Text
from bot.identity import Member, MemberKey
from tests.conftest import Inbox
from tests.integration.test_engine import CommandCounter

ALICE = Member(MemberKey("telegram", "bot1", "1001"), display_name="Alice", locale="en")
PHONE, OTHER = "+447400123456", "+447400654321"


def keys(outcome: Outcome) -> list[str]:
    return [reply.key for reply in outcome.replies]


async def test_a_number_on_a_stale_copy_sends_no_second_code(
    workers: list[App], inbox: Inbox
) -> None:
    one, two = workers
    await one.engine.handle(ALICE, Start())  # one's copy: waiting for a number
    sent = await two.engine.handle(ALICE, Text(PHONE))
    assert keys(sent) == ["code.sent"]
    counter = CommandCounter(one.store.redis)
    # One's copy still waits for a number; the stored conversation waits for a code.
    again = await counter.during(one.engine.handle(ALICE, Text(OTHER)))
    assert len(inbox.lines) == 1, "a stale copy must never reserve or send an SMS"
    snapshot = await one.store.load(ALICE.key, now=0)
    assert snapshot.conversation.state is State.AWAIT_CODE
    assert snapshot.conversation.phone == PHONE
    # The stale commit brought the conversation back: no more round trips than a load.
    assert again <= 2


async def test_a_copy_is_checked_whole_not_by_its_version(workers: list[App], inbox: Inbox) -> None:
    """A conversation deleted and started again has the same version as before: the copy of
    the first must not be written over the second."""
    one, two = workers
    await one.engine.handle(ALICE, Start())
    await two.engine.handle(ALICE, Cancel())  # deleted: its version starts again
    await two.engine.handle(ALICE, Start(origin="-100"))
    mine = one.store.recall(ALICE.key)
    stored = await two.store.load(ALICE.key, now=0)
    assert mine is not None and mine.version == stored.version
    assert mine.conversation.origin is None and stored.conversation.origin == "-100"

    sent = await one.engine.handle(ALICE, Text(PHONE))
    assert keys(sent) == ["code.sent"]
    after = await two.store.load(ALICE.key, now=0)
    assert after.conversation.state is State.AWAIT_CODE
    assert after.conversation.origin == "-100", "the copy's older conversation was written"


async def test_a_delivery_guarded_by_a_copys_commit_is_not_handled_twice(
    workers: list[App], inbox: Inbox
) -> None:
    one, two = workers
    await one.engine.handle(ALICE, Start(), delivery_id="1")
    counter = CommandCounter(one.store.redis)
    sent = await counter.during(one.engine.handle(ALICE, Text(PHONE), delivery_id="2"))
    assert sent == 2  # reserved and saved, no load: the reservation guarded the delivery
    redelivered = await two.engine.handle(ALICE, Text(PHONE), delivery_id="2")
    assert redelivered.duplicate
    again = await one.engine.handle(ALICE, Text(PHONE), delivery_id="2")
    assert again.duplicate
    assert len(inbox.lines) == 1


async def test_a_message_that_writes_nothing_loads_first(workers: list[App], inbox: Inbox) -> None:
    """Its reply must come from the conversation as stored, not from the copy."""
    one, two = workers
    await one.engine.handle(ALICE, Start())
    await two.engine.handle(ALICE, Text(PHONE))  # one's copy is stale now
    junk = await one.engine.handle(ALICE, Text("hello?"))
    assert keys(junk) == keys(await two.engine.handle(ALICE, Text("hello?")))
    assert "phone.ask" not in keys(junk)
