"""The inbox's Redis side (bot/inbox.py), on real Redis: what is kept, removed and expires."""

from __future__ import annotations

from redis.asyncio import Redis

from bot.inbox import INBOX_TTL, UpdateInbox


async def test_a_write_keeps_a_batch_and_removes_what_was_handled_in_one_go(
    redis: Redis, key_prefix: str
) -> None:
    inbox = UpdateInbox(redis, f"{key_prefix}inbox:telegram:1")
    assert await inbox.pending() == {}
    await inbox.write({1: '{"update_id": 1}', 2: '{"update_id": 2}'})
    await inbox.write({3: '{"update_id": 3}'}, remove=[1])
    assert await inbox.pending() == {2: '{"update_id": 2}', 3: '{"update_id": 3}'}
    assert 0 < await redis.pttl(inbox.key) <= INBOX_TTL * 1000

    await inbox.write({}, remove=[2, 3, 99])  # an id never kept is no error
    assert await inbox.pending() == {}
    assert not await redis.exists(inbox.key)


async def test_thousands_of_removals_at_once_are_all_carried_out(
    redis: Redis, key_prefix: str
) -> None:
    inbox = UpdateInbox(redis, f"{key_prefix}inbox:telegram:1", ttl=60)
    await inbox.write({i: "{}" for i in range(2500)})
    assert 0 < await redis.pttl(inbox.key) <= 60_000
    await inbox.write({2500: "{}"}, remove=list(range(2500)))
    assert await inbox.pending() == {2500: "{}"}
