"""The gate: holds with deadlines in Redis, released or timed out exactly once."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from bot.gate import GRACE, Gate, Hold
from bot.identity import MemberKey

ADA = MemberKey("telegram", "42", "1001")
BOB = MemberKey("telegram", "42", "1002")
NOW = 1_700_000_000.0


def gate_for(redis: Redis, key_prefix: str) -> Gate:
    return Gate(redis, prefix=key_prefix)


async def test_releasing_a_member_returns_every_place_holding_them(
    redis: Redis, key_prefix: str
) -> None:
    gate = gate_for(redis, key_prefix)
    await gate.hold(Hold("-1001", ADA, "restrict", deadline=NOW + 60, title="A"), now=NOW)
    await gate.hold(Hold("-1002", ADA, "join_request", reach="1001"), now=NOW)
    await gate.hold(Hold("-1001", BOB, "restrict"), now=NOW)

    released = await gate.release(ADA)

    assert sorted((h.place, h.kind, h.title) for h in released) == [
        ("-1001", "restrict", "A"),
        ("-1002", "join_request", None),
    ]
    assert await gate.release(ADA) == []
    assert await gate.claim_due(now=NOW + 3600) == []  # Ada's deadline went with her hold
    assert [h.member for h in await gate.release(BOB)] == [BOB]


async def test_release_can_be_limited_to_one_place(redis: Redis, key_prefix: str) -> None:
    gate = gate_for(redis, key_prefix)
    await gate.hold(Hold("-1001", ADA, "restrict"), now=NOW)
    await gate.hold(Hold("-1002", ADA, "restrict"), now=NOW)
    assert [h.place for h in await gate.release(ADA, "-1002")] == ["-1002"]
    assert [h.place for h in await gate.release(ADA)] == ["-1001"]


async def test_due_holds_are_claimed_once_and_only_after_their_deadline(
    redis: Redis, key_prefix: str
) -> None:
    gate = gate_for(redis, key_prefix)
    hold = Hold("-1001", ADA, "restrict", deadline=NOW + 60, reach="1001", title="Club")
    await gate.hold(hold, now=NOW)
    await gate.hold(Hold("-1001", BOB, "restrict", deadline=NOW + 600), now=NOW)

    assert await gate.claim_due(now=NOW + 59) == []
    assert await gate.claim_due(now=NOW + 61) == [hold]
    assert await gate.claim_due(now=NOW + 61) == []
    assert await gate.release(ADA) == []  # claimed means gone: a late verify finds nothing


async def test_a_deadline_is_claimed_by_exactly_one_of_many_sweepers(
    redis: Redis, key_prefix: str
) -> None:
    gate = gate_for(redis, key_prefix)
    for user in range(20):
        member = MemberKey("telegram", "42", str(user))
        await gate.hold(Hold("-1001", member, "restrict", deadline=NOW), now=NOW)

    claims = await asyncio.gather(*(gate.claim_due(now=NOW + 1, limit=5) for _ in range(8)))

    claimed = [h.member.user_id for batch in claims for h in batch]
    assert sorted(claimed, key=int) == [str(u) for u in range(20)]


async def test_rehold_replaces_the_deadline(redis: Redis, key_prefix: str) -> None:
    gate = gate_for(redis, key_prefix)
    await gate.hold(Hold("-1001", ADA, "restrict", deadline=NOW + 10), now=NOW)
    await gate.hold(Hold("-1001", ADA, "restrict"), now=NOW)
    assert await gate.claim_due(now=NOW + 100) == []
    assert len(await gate.release(ADA)) == 1


async def test_every_gate_key_expires(redis: Redis, key_prefix: str) -> None:
    gate = gate_for(redis, key_prefix)
    await gate.hold(Hold("-1001", ADA, "restrict", deadline=NOW + 60), now=NOW)
    await gate.hold(Hold("-1001", BOB, "restrict"), now=NOW)
    await gate.swap_notice("-1001", "77")
    await gate.first_sighting("update:5")
    keys = [key async for key in redis.scan_iter(match=f"{key_prefix}*")]
    assert len(keys) == 7  # two holds, two member indexes, due, notice, seen
    ttls = {key.decode(): await redis.ttl(key) for key in keys}
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    ada_hold = f"{key_prefix}gate:hold:-1001|{ADA}"
    assert 60 < ttls[ada_hold] <= 60 + GRACE


async def test_the_newest_welcome_notice_replaces_the_last(redis: Redis, key_prefix: str) -> None:
    gate = gate_for(redis, key_prefix)
    assert await gate.swap_notice("-1001", "10") is None
    assert await gate.swap_notice("-1001", "11") == "10"
    assert await gate.clear_notice("-1001", "10") is False
    assert await gate.current_notice("-1001") == "11"
    assert await gate.clear_notice("-1001", "11") is True
    assert await gate.current_notice("-1001") is None


async def test_a_delivery_is_seen_first_only_once(redis: Redis, key_prefix: str) -> None:
    gate = gate_for(redis, key_prefix)
    assert await gate.first_sighting("update:9") is True
    assert await gate.first_sighting("update:9") is False
