"""The Redis store against a real Redis: compare-and-set, duplicate guards, TTLs and limits."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from redis.asyncio import Redis

from bot.flow import Conversation, State
from bot.identity import MemberKey
from bot.rates import Rate
from bot.store import (
    Claim,
    ClaimHeld,
    Committed,
    Conflict,
    Hit,
    Limit,
    LimitReached,
    Store,
    decode,
    encode,
)
from verifybot.embedded_redis import EmbeddedRedis

ALICE = MemberKey("telegram", "bot1", "42")
NOW = 1_700_000_000.0
WAITING = Conversation(state=State.AWAIT_CODE, phone="+447400123456", request_id="r1")


async def test_a_new_member_has_an_idle_conversation_at_version_zero(store: Store) -> None:
    snapshot = await store.load(ALICE, now=NOW)
    assert (snapshot.duplicate, snapshot.conversation, snapshot.version) == (
        False, Conversation(), 0,
    )  # fmt: skip


async def test_a_saved_conversation_round_trips_with_a_new_version(store: Store) -> None:
    assert await store.commit(ALICE, WAITING, version=0, now=NOW) == Committed(1, held=False)
    snapshot = await store.load(ALICE, now=NOW)
    assert (snapshot.conversation, snapshot.version) == (WAITING, 1)


async def test_a_stale_version_loses_and_writes_nothing(store: Store) -> None:
    await store.commit(ALICE, WAITING, version=0, now=NOW)
    other = Conversation(state=State.AWAIT_PHONE)
    assert await store.commit(ALICE, other, version=0, now=NOW) == Conflict()
    assert (await store.load(ALICE, now=NOW)).conversation == WAITING


async def test_two_workers_racing_on_one_version_produce_exactly_one_winner(store: Store) -> None:
    results = await asyncio.gather(
        *(
            store.commit(
                ALICE,
                Conversation(state=State.STARTING, phone=f"+4474001234{i:02d}"),
                version=0,
                now=NOW,
            )
            for i in range(20)
        )
    )
    assert sum(isinstance(r, Committed) for r in results) == 1


async def test_every_key_has_a_ttl(store: Store, redis: Redis, key_prefix: str) -> None:
    limit = Limit("phone", "+447400123456", Rate(3, 600))
    await store.load(ALICE, now=NOW, delivery_id="update-1")
    await store.commit(ALICE, WAITING, version=0, now=NOW, hits=[Hit(limit)])
    keys = [key async for key in redis.scan_iter(match=f"{key_prefix}*")]
    assert len(keys) == 3
    for key in keys:
        assert await redis.pttl(key) > 0, key


async def test_conversations_expire_after_their_ttl(redis: Redis, key_prefix: str) -> None:
    store = Store(redis, prefix=key_prefix, conversation_ttl=0.2)
    await store.commit(ALICE, WAITING, version=0, now=NOW)
    await asyncio.sleep(0.35)
    assert (await store.load(ALICE, now=NOW)).conversation == Conversation()


async def test_a_delivery_seen_before_is_reported_as_a_duplicate(
    store: Store, redis: Redis
) -> None:
    first = await store.load(ALICE, now=NOW, delivery_id="update-7")
    second = await store.load(ALICE, now=NOW, delivery_id="update-7")
    assert (first.duplicate, second.duplicate) == (False, True)
    # Held for at least a day.
    assert await redis.pttl(store.delivery_key(ALICE, "update-7")) >= 24 * 3600 * 1000


async def test_a_forgotten_delivery_may_be_handled_again(store: Store) -> None:
    await store.load(ALICE, now=NOW, delivery_id="update-8")
    await store.forget_delivery(ALICE, "update-8")
    assert not (await store.load(ALICE, now=NOW, delivery_id="update-8")).duplicate


async def test_a_delivery_without_a_conversation_shares_the_guard(
    store: Store, redis: Redis
) -> None:
    assert await store.first_delivery(ALICE, "update-9") is True
    assert await store.first_delivery(ALICE, "update-9") is False
    assert (await store.load(ALICE, now=NOW, delivery_id="update-9")).duplicate
    assert await redis.pttl(store.delivery_key(ALICE, "update-9")) >= 24 * 3600 * 1000


async def test_duplicate_guards_are_per_platform_and_bot(store: Store) -> None:
    other_bot = MemberKey("telegram", "bot2", "42")
    await store.load(ALICE, now=NOW, delivery_id="u1")
    assert not (await store.load(other_bot, now=NOW, delivery_id="u1")).duplicate


async def test_a_limit_refuses_the_fourth_sms_and_says_when_a_slot_frees(store: Store) -> None:
    limit = Limit("phone", "+447400123456", Rate(3, 600))
    version = 0
    for i in range(3):
        result = await store.commit(ALICE, WAITING, version=version, now=NOW + i, hits=[Hit(limit)])
        assert isinstance(result, Committed)
        version = result.version
    refused = await store.commit(
        ALICE, Conversation(), version=version, now=NOW + 10, hits=[Hit(limit)]
    )
    assert refused == LimitReached(wait=590.0, limit="phone")
    # Refused means nothing written: the conversation is as it was.
    assert (await store.load(ALICE, now=NOW)).conversation == WAITING
    # The window slides: the first SMS leaves it at NOW + 600.
    later = await store.commit(ALICE, WAITING, version=version, now=NOW + 600.5, hits=[Hit(limit)])
    assert isinstance(later, Committed)


async def test_a_refusal_names_the_limit_that_keeps_the_longest_wait(store: Store) -> None:
    """For ``verifybot_rate_limit_hits{limit}``: the limit a member actually waits for."""
    hourly = Limit("member_starts", "telegram:bot1:42", Rate(1, 3600))
    daily = Limit("country", "GB", Rate(1, 86400))
    first = await store.commit(ALICE, WAITING, version=0, now=NOW, hits=[Hit(hourly), Hit(daily)])
    assert isinstance(first, Committed)
    refused = await store.commit(
        ALICE, WAITING, version=first.version, now=NOW + 1, hits=[Hit(hourly), Hit(daily)]
    )
    assert refused == LimitReached(wait=86399.0, limit="country")


async def test_limits_are_all_or_nothing(store: Store) -> None:
    roomy = Limit("phone", "+447400123456", Rate(10, 600))
    full = Limit("global", "all", Rate(0, 86400))
    result = await store.commit(ALICE, WAITING, version=0, now=NOW, hits=[Hit(roomy), Hit(full)])
    assert isinstance(result, LimitReached)
    assert (await store.load(ALICE, now=NOW, peek=[roomy])).waits == (0.0,)
    ok = await store.commit(ALICE, WAITING, version=0, now=NOW, hits=[Hit(roomy)])
    assert isinstance(ok, Committed)


async def test_recorded_hits_count_without_being_refused_and_can_be_peeked(store: Store) -> None:
    wrong = Limit("wrong_codes", str(ALICE), Rate(2, 86400))
    version = 0
    for i in range(3):
        result = await store.commit(
            ALICE, WAITING, version=version, now=NOW + i, hits=[Hit(wrong, "record")]
        )
        assert isinstance(result, Committed)
        version = result.version
    snapshot = await store.load(ALICE, now=NOW + 10, peek=[wrong])
    # Three recorded against a limit of two: it frees when the second of them leaves.
    assert snapshot.waits == (86400 + 1 - 10,)


async def test_concurrent_reservations_never_exceed_a_limit(store: Store) -> None:
    limit = Limit("global", "all", Rate(5, 60))
    members = [MemberKey("slack", "T1", f"U{i}") for i in range(40)]
    results = await asyncio.gather(
        *(store.commit(m, WAITING, version=0, now=NOW, hits=[Hit(limit)]) for m in members)
    )
    assert sum(isinstance(r, Committed) for r in results) == 5


async def test_saving_a_fresh_conversation_deletes_the_key(store: Store, redis: Redis) -> None:
    await store.commit(ALICE, WAITING, version=0, now=NOW)
    await store.commit(ALICE, Conversation(), version=1, now=NOW)
    assert not await redis.exists(store.conversation_key(ALICE))


def test_unreadable_stored_state_counts_as_a_fresh_conversation() -> None:
    assert decode(b"not json") == (Conversation(), 0)
    assert decode('{"v": 4, "state": "nonsense"}') == (Conversation(), 4)
    assert decode(encode(WAITING, 3)) == (WAITING, 3)


def test_a_conversation_is_stored_in_the_same_json_every_version_reads() -> None:
    """The format the Lua scripts and other workers (a rolling deploy) read: the state, the
    fields that are not None, 0 or False in their order, then the version."""
    conversation = Conversation(
        state=State.AWAIT_CODE,
        phone="+447400123456",
        country="GB",
        request_id="r1",
        code_sent_at=1764800000.123,
        code_expires_at=1764800300.5,
        wrong_codes=2,
        code_accepted=True,
        checking_until=0.0,
        origin="-100123",
    )
    written = (
        '{"state":"await_code","phone":"+447400123456","country":"GB","request_id":"r1",'
        '"code_sent_at":1764800000.123,"code_expires_at":1764800300.5,"wrong_codes":2,'
        '"code_accepted":true,"origin":"-100123","v":7}'
    )
    assert encode(conversation, 7) == written
    assert decode(written) == (replace(conversation, checking_until=None), 7)
    assert encode(Conversation(), 0) == '{"state":"idle","v":0}'
    # A field a newer version added is ignored; a missing state is idle.
    assert decode(b'{"v":3,"phone":"+1","later":1}') == (Conversation(phone="+1"), 3)


async def test_a_redis_that_forgot_the_scripts_loads_them_again(tmp_path: Path) -> None:
    """A restarted (or flushed) Redis answers NOSCRIPT: the store loads its scripts again and
    the message goes through. A private redis-server, as SCRIPT FLUSH is server-wide."""
    with EmbeddedRedis(tmp_path / "redis", persist=False) as server:
        async with Redis.from_url(server.url) as redis:
            store = Store(redis, prefix="forgot:")
            await store.commit(ALICE, WAITING, version=0, now=NOW)
            await redis.script_flush()
            snapshot = await store.load(ALICE, now=NOW)
            assert (snapshot.conversation, snapshot.version) == (WAITING, 1)
            await redis.script_flush()
            limit = Limit("phone", "+447400123456", Rate(3, 600))
            saved = await store.commit(ALICE, WAITING, version=1, now=NOW, hits=[Hit(limit)])
            assert saved == Committed(2, held=False)


async def test_more_messages_than_connections_all_get_a_turn(
    redis_url: str, key_prefix: str
) -> None:
    """A steady stream of messages, many more than connections: none starves past the
    pool's timeout (redis-py hands a freed connection to a newcomer, not the longest
    waiter; the store queues callers first-come, first-served)."""
    from redis.asyncio import BlockingConnectionPool

    pool = BlockingConnectionPool.from_url(redis_url, max_connections=4, timeout=1)
    client = Redis(connection_pool=pool)
    store = Store(client, prefix=key_prefix, max_in_flight=4)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.5

    async def member(i: int) -> int:
        handled = 0
        while loop.time() < deadline:
            await store.load(MemberKey("telegram", "bot1", str(i)), now=NOW)
            handled += 1
        return handled

    try:
        handled = await asyncio.gather(*(member(i) for i in range(100)))
        assert min(handled) > 0
    finally:
        await client.aclose()
        await pool.disconnect()


# --- a number's claim -------------------------------------------------------------------

BOB = MemberKey("telegram", "bot1", "43")
PHONE = "+447400123456"
STARTING = Conversation(state=State.STARTING, phone=PHONE, lease_until=NOW + 45)


async def test_a_claim_held_by_another_member_writes_nothing(store: Store, redis: Redis) -> None:
    limit = Limit("phone", PHONE, Rate(3, 600))
    taken = await store.commit(
        ALICE, STARTING, version=0, now=NOW, hits=[Hit(limit)], claim=Claim(PHONE, 400)
    )
    assert taken == Committed(1, held=False)
    refused = await store.commit(
        BOB, STARTING, version=0, now=NOW, hits=[Hit(limit)], claim=Claim(PHONE, 400)
    )
    assert isinstance(refused, ClaimHeld) and 399 < refused.wait <= 400
    assert (await store.load(BOB, now=NOW)).conversation == Conversation()
    assert await redis.zcard(store.limit_key(limit)) == 1  # Bob took no SMS
    assert await redis.get(store.claim_key(PHONE)) == str(ALICE).encode()


async def test_the_holder_refreshes_its_claim_and_only_the_holder_releases_it(
    store: Store, redis: Redis
) -> None:
    await store.commit(ALICE, STARTING, version=0, now=NOW, claim=Claim(PHONE, 10))
    again = await store.commit(ALICE, STARTING, version=1, now=NOW, claim=Claim(PHONE, 400))
    assert again == Committed(2, held=False)
    assert 399_000 < await redis.pttl(store.claim_key(PHONE)) <= 400_000
    # Bob's release (in a save, or on its own) leaves Alice's claim alone.
    await store.commit(BOB, WAITING, version=0, now=NOW, claim=Claim(PHONE))
    await store.release_claim(BOB, PHONE)
    assert await redis.get(store.claim_key(PHONE)) is not None
    await store.commit(ALICE, Conversation(), version=2, now=NOW, claim=Claim(PHONE))
    assert await redis.get(store.claim_key(PHONE)) is None


async def test_a_release_on_its_own_spares_a_claim_the_member_is_using_again(
    store: Store, redis: Redis
) -> None:
    # A confirmed cancel lands after the same member already started again on the number.
    await store.commit(ALICE, STARTING, version=0, now=NOW, claim=Claim(PHONE, 400))
    await store.release_claim(ALICE, PHONE)
    assert await redis.get(store.claim_key(PHONE)) is not None
    await store.commit(ALICE, Conversation(state=State.AWAIT_PHONE), version=1, now=NOW)
    await store.release_claim(ALICE, PHONE)
    assert await redis.get(store.claim_key(PHONE)) is None
