"""The gate: holds with deadlines in Redis, released or lapsed exactly once; and the
gatekeeper's rules on top of it, with a real directory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.consequence import Consequence, parse_consequence
from bot.directory import Directory
from bot.flow import Setback
from bot.gate import (
    FAILURE_WINDOW,
    GRACE,
    Gate,
    Gatekeeper,
    Hold,
    Lapsed,
    Reckoning,
    RulesFor,
    sweep_lapsed,
)
from bot.identity import MemberKey
from bot.roles import Invite
from bot.sanction import GateRules, Sanction

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
    await gate.welcome_due("-1001", interval=10)
    keys = [key async for key in redis.scan_iter(match=f"{key_prefix}*")]
    # two holds, two member indexes, due, notice, covered, welcomed
    assert len(keys) == 8
    ttls = {key.decode(): await redis.ttl(key) for key in keys}
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    ada_hold = f"{key_prefix}gate:hold:-1001|{ADA}"
    assert 60 < ttls[ada_hold] <= 60 + GRACE


async def test_one_welcome_serves_every_member_it_covers_until_the_last_is_done(
    redis: Redis, key_prefix: str
) -> None:
    gate = gate_for(redis, key_prefix)
    await gate.hold(Hold("-1001", ADA, "restrict"), now=NOW)  # a hold counts Ada in
    assert await gate.swap_notice("-1001", "10") is None
    await gate.hold(Hold("-1001", BOB, "restrict"), now=NOW)
    assert await gate.swap_notice("-1001", "11") == "10"  # the old one is deleted

    assert await gate.uncover("-1001", ADA.user_id) is None  # Bob still needs the button
    assert await gate.uncover("-1001", BOB.user_id) == "11"
    assert await gate.uncover("-1001", BOB.user_id) is None


async def test_welcomes_are_spaced_out_per_place(redis: Redis, key_prefix: str) -> None:
    gate = gate_for(redis, key_prefix)
    assert await gate.welcome_due("-1001", interval=0.2) is True
    assert await gate.welcome_due("-1001", interval=0.2) is False
    assert await gate.welcome_due("-1002", interval=0.2) is True
    await asyncio.sleep(0.25)
    assert await gate.welcome_due("-1001", interval=0.2) is True


# --- The gatekeeper: who enters, who is held, what a lapsed deadline does ---------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Directory]:
    directory = Directory(f"sqlite:///{tmp_path / 'gate.db'}")
    directory.upgrade()
    yield directory
    directory.close()


def verify(directory: Directory, member: MemberKey) -> None:
    phone = f"+4477009001{member.user_id[-2:]}"
    directory.record_verified(
        member, phone_e164=phone, country="GB", display_name=None, now=datetime.now(UTC)
    )


def keeper(
    redis: Redis, key_prefix: str, directory: Directory, clock: Clock, **kw: Any
) -> Gatekeeper:
    options: dict[str, Any] = {"admit_anywhere": False, "timeout": 60, **kw}
    return Gatekeeper(gate_for(redis, key_prefix), directory, clock=clock, **options)


async def test_a_newcomer_is_held_with_a_deadline_and_let_in_on_verifying(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    clock = Clock()
    gatekeeper = keeper(redis, key_prefix, directory, clock)

    hold = await gatekeeper.arrive(ADA, "-1001", "restrict", title="Club")

    assert hold is not None
    assert (hold.deadline, hold.title) == (NOW + 60, "Club")
    verify(directory, ADA)
    assert [h.place for h in await gatekeeper.verified(ADA)] == ["-1001"]
    assert directory.is_admitted(ADA, "-1001")
    clock.now += 3600
    assert await gatekeeper.lapsed() == []


async def test_a_member_admitted_before_walks_straight_back_in(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    gatekeeper = keeper(redis, key_prefix, directory, Clock())
    await gatekeeper.arrive(ADA, "-1001", "restrict")
    verify(directory, ADA)
    await gatekeeper.verified(ADA)

    assert await gatekeeper.arrive(ADA, "-1001", "restrict") is None
    assert await gatekeeper.arrive(ADA, "-1002", "restrict") is not None  # another group asks


async def test_admit_anywhere_lets_in_any_verified_member(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    gatekeeper = keeper(redis, key_prefix, directory, Clock(), admit_anywhere=True)
    verify(directory, ADA)
    assert await gatekeeper.arrive(ADA, "-1002", "restrict") is None
    assert directory.is_admitted(ADA, "-1002")
    assert await gatekeeper.arrive(BOB, "-1002", "restrict") is not None


async def test_a_role_opens_a_group_while_it_is_held_and_ends_the_hold_there(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    gatekeeper = keeper(redis, key_prefix, directory, Clock())
    await gatekeeper.arrive(ADA, "-1001", "restrict")
    verify(directory, ADA)
    directory.grant_role(ADA, "helper", granted_by="mod", now=datetime.now(UTC))

    assert [h.place for h in await gatekeeper.admit(ADA, "-1001", role="helper")] == ["-1001"]
    assert await gatekeeper.arrive(ADA, "-1001", "restrict") is None  # walks back in
    directory.revoke_role(ADA, "helper", revoked_by="mod", now=datetime.now(UTC))
    assert await gatekeeper.arrive(ADA, "-1001", "restrict") is not None  # a stranger again
    assert await gatekeeper.admit(ADA, "-1001", role="helper") == []  # revoked: opens nothing


@pytest.mark.parametrize("admit_anywhere", [False, True])
async def test_a_join_by_a_revoked_roles_link_is_a_strangers(
    redis: Redis, key_prefix: str, directory: Directory, admit_anywhere: bool
) -> None:
    gatekeeper = keeper(redis, key_prefix, directory, Clock(), admit_anywhere=admit_anywhere)
    now = datetime.now(UTC)
    verify(directory, ADA)
    directory.admit(ADA, "-1001", now=now)  # let in once before, as older versions recorded
    directory.grant_role(ADA, "helper", granted_by="mod", now=now)
    link = Invite("-1001", "https://t.me/+helper", now + timedelta(days=1))
    directory.record_invite(ADA, "helper", link, now=now)
    assert await gatekeeper.arrive(ADA, "-1001", "restrict", invite=link.url) is None

    directory.revoke_role(ADA, "helper", revoked_by="mod", now=now)

    hold = await gatekeeper.arrive(ADA, "-1001", "restrict", invite=link.url)
    assert hold is not None and hold.member == ADA
    # Asked again once the restriction is on, the link still vouches for nothing.
    assert await gatekeeper.still_held(hold, invite=link.url)
    assert await gatekeeper.arrive(ADA, "-1001", "restrict") is None  # no link: as before
    unknown = "https://t.me/+made-by-a-human"
    assert await gatekeeper.arrive(ADA, "-1001", "restrict", invite=unknown) is None


async def test_a_lapsed_hold_says_whether_the_member_verified_meanwhile(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    clock = Clock()
    gatekeeper = keeper(redis, key_prefix, directory, clock)
    await gatekeeper.arrive(ADA, "-1001", "restrict")
    await gatekeeper.arrive(BOB, "-1001", "join_request", reach="1002")
    verify(directory, ADA)  # verified, but the release has not happened yet

    clock.now += 61
    lapsed = {item.hold.member: item.verified for item in await gatekeeper.lapsed()}

    assert lapsed == {ADA: True, BOB: False}
    assert directory.is_admitted(ADA, "-1001")
    assert await gatekeeper.verified(ADA) == []  # the sweeper already took the hold


async def test_no_timeout_means_no_deadline(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    clock = Clock()
    gatekeeper = keeper(redis, key_prefix, directory, clock, timeout=0)
    hold = await gatekeeper.arrive(ADA, "-1001", "restrict")
    assert hold is not None
    assert hold.deadline is None
    clock.now += 10**6
    assert await gatekeeper.lapsed() == []


async def test_the_sweeper_acts_on_lapsed_holds_and_survives_a_failing_action(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    clock = Clock()
    gatekeeper = keeper(redis, key_prefix, directory, clock, timeout=1)
    await gatekeeper.arrive(ADA, "-1001", "restrict")
    await gatekeeper.arrive(BOB, "-1001", "restrict")
    clock.now += 2
    seen: list[MemberKey] = []

    async def act(lapsed: Lapsed) -> None:
        seen.append(lapsed.hold.member)
        if lapsed.hold.member == ADA:
            raise RuntimeError("the platform refused")

    task = asyncio.create_task(sweep_lapsed(gatekeeper, act, interval=0.01))
    try:
        for _ in range(200):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert sorted(seen, key=str) == [ADA, BOB]


# --- A join never undoes a verification ------------------------------------------------------


async def test_a_member_who_verified_through_a_groups_link_walks_in_when_their_join_comes(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    gatekeeper = keeper(redis, key_prefix, directory, Clock())
    verify(directory, ADA)

    # Ada verified through -1001's welcome while her join there was still queued.
    assert await gatekeeper.verified(ADA, origin="-1001") == []

    assert await gatekeeper.arrive(ADA, "-1001", "restrict") is None
    assert await gatekeeper.arrive(ADA, "-1002", "restrict") is not None  # not another group
    assert await gatekeeper.arrive(BOB, "-1001", "restrict") is not None  # nor someone else


async def test_a_member_held_while_they_verify_is_not_held_after(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    gatekeeper = keeper(redis, key_prefix, directory, Clock())
    ada = await gatekeeper.arrive(ADA, "-1001", "restrict")
    bob = await gatekeeper.arrive(BOB, "-1001", "restrict")
    assert ada is not None and bob is not None

    # Ada verifies while her restriction is on its way to the platform.
    verify(directory, ADA)
    assert await gatekeeper.verified(ADA) == [ada]

    assert await gatekeeper.still_held(ada) is False
    assert await gatekeeper.still_held(bob) is True
    assert await gatekeeper.gate.release(BOB) == [bob]  # Bob's hold stays until then


async def test_a_hold_written_just_after_the_member_verified_is_released(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    gatekeeper = keeper(redis, key_prefix, directory, Clock())
    late = Hold("-1001", ADA, "restrict", deadline=NOW + 60)
    verify(directory, ADA)
    # The join read "not admitted", then Ada verified through the group's link (nothing to
    # release yet), then the join wrote its hold.
    assert await gatekeeper.verified(ADA, origin="-1001") == []
    await gatekeeper.gate.hold(late, now=NOW)

    assert await gatekeeper.still_held(late) is False
    assert await gatekeeper.gate.release(ADA) == []
    assert await gatekeeper.gate.claim_due(now=NOW + 3600) == []


async def test_the_sweeper_removes_a_batch_side_by_side_and_takes_the_next_at_once(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    clock = Clock()
    gatekeeper = keeper(redis, key_prefix, directory, clock, timeout=1)
    members = [MemberKey("telegram", "42", str(2000 + n)) for n in range(12)]
    for member in members:
        await gatekeeper.arrive(member, "-1001", "restrict")
    clock.now += 2
    seen: list[MemberKey] = []
    in_flight: list[int] = [0, 0]  # now, most at once

    async def act(lapsed: Lapsed) -> None:
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        await asyncio.sleep(0.05)  # a removal is a few platform calls
        in_flight[0] -= 1
        seen.append(lapsed.hold.member)

    # Batches of 5: an hour between sweeps, so only "a full batch is followed at once" can
    # finish the 12 while the test waits.
    task = asyncio.create_task(sweep_lapsed(gatekeeper, act, interval=3600, batch=5))
    try:
        for _ in range(500):
            if len(seen) == len(members):
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert sorted(seen, key=str) == sorted(members, key=str)
    assert in_flight[1] == 5


async def test_a_place_whose_own_rules_refuse_the_number_keeps_holding_the_member(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    async def accepts(platform: str, place: str, phone: str) -> bool:
        return not (place == "-1002" and phone.startswith("+33"))  # -1002 blocks France

    clock = Clock()
    gatekeeper = keeper(redis, key_prefix, directory, clock, accepts=accepts)
    await gatekeeper.arrive(ADA, "-1001", "restrict")
    held = await gatekeeper.arrive(ADA, "-1002", "restrict")
    verify(directory, ADA)

    let_in = await gatekeeper.verified(ADA, origin="-1003", phone="+33612345678")

    assert [h.place for h in let_in] == ["-1001"]
    assert (directory.is_admitted(ADA, "-1001"), directory.is_admitted(ADA, "-1002")) == (
        True,
        False,
    )
    still = await gatekeeper.gate.release(ADA)
    assert still == [held]  # the same hold, deadline and all
    # The place that sent them to verify judged the number itself (the flow used its rules).
    await gatekeeper.arrive(ADA, "-1002", "restrict")
    assert [h.place for h in await gatekeeper.verified(ADA, origin="-1002", phone="+33612")] == [
        "-1002"
    ]


# --- Consequences, ban_after_failures and the review queue -----------------------------------


def rules_by_place(rules: dict[str, GateRules]) -> RulesFor:
    """Each place's own rules: the seam the per-community policy plugs into."""

    async def rules_for(place: str) -> GateRules:
        return rules[place]

    return rules_for


async def test_a_lapsed_hold_carries_its_places_consequence(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    clock = Clock()
    rules = rules_by_place(
        {"-1001": GateRules(parse_consequence("ban:1d")), "-1002": GateRules(Consequence("mute"))}
    )
    gatekeeper = keeper(redis, key_prefix, directory, clock, rules_for=rules)
    await gatekeeper.arrive(ADA, "-1001", "restrict")
    await gatekeeper.arrive(ADA, "-1002", "restrict")
    await gatekeeper.arrive(BOB, "-1001", "join_request", reach="1002")

    clock.now += 61
    lapsed = {
        (item.hold.member, item.hold.place): item.sanction for item in await gatekeeper.lapsed()
    }

    until = int(clock.now) + 86400
    assert lapsed == {
        (ADA, "-1001"): Sanction(Consequence("ban", 86400), ban=True, until=until),
        (ADA, "-1002"): Sanction(Consequence("mute")),
        (BOB, "-1001"): Sanction(Consequence("ban", 86400), decline=True, ban=True, until=until),
    }


async def test_failures_deal_with_the_member_where_the_place_says_and_queue_them(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    rules = rules_by_place(
        {
            "-1001": GateRules(Consequence("kick"), ban_after_failures=2),
            "-1002": GateRules(Consequence("ban"), ban_after_failures=3),
            "-1003": GateRules(Consequence("kick"), ban_after_failures=0),
        }
    )
    gatekeeper = keeper(redis, key_prefix, directory, Clock(), rules_for=rules)
    for place in ("-1001", "-1002", "-1003"):
        await gatekeeper.arrive(ADA, place, "restrict", title=place)

    first = await gatekeeper.set_back(ADA, Setback.FAILED)
    second = await gatekeeper.set_back(ADA, Setback.FAILED)
    third = await gatekeeper.set_back(ADA, Setback.FAILED)

    assert (first.dealt, first.reviews) == ([], [])
    assert [(d.hold.place, d.sanction.remove) for d in second.dealt] == [("-1001", True)]
    assert [(d.hold.place, d.sanction.ban) for d in third.dealt] == [("-1002", True)]
    assert [(r.hold.place, r.reason) for r in second.reviews + third.reviews] == [
        ("-1001", Setback.FAILED),
        ("-1002", Setback.FAILED),
    ]
    # Where failures do not count, the member is still held, waiting for the deadline.
    assert [h.place for h in await gatekeeper.gate.holds_of(ADA)] == ["-1003"]
    # The count is TTL'd: a day from the first failure.
    ttl = await redis.ttl(gatekeeper.gate.keys.gate_failures(ADA))
    assert 0 < ttl <= FAILURE_WINDOW


async def test_a_member_held_nowhere_is_neither_counted_nor_queued(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    gatekeeper = keeper(redis, key_prefix, directory, Clock())
    assert await gatekeeper.set_back(ADA, Setback.PHONE_TAKEN) == Reckoning([], [])
    assert await gatekeeper.set_back(ADA, Setback.FAILED) == Reckoning([], [])
    assert await redis.exists(gatekeeper.gate.keys.gate_failures(ADA)) == 0


async def test_failures_are_counted_atomically_across_workers(
    redis: Redis, key_prefix: str
) -> None:
    gate = gate_for(redis, key_prefix)
    counts = await asyncio.gather(*(gate.count_failure(ADA) for _ in range(20)))
    assert sorted(counts) == list(range(1, 21))


async def test_a_limit_queues_the_member_once_per_place_until_decided(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    gatekeeper = keeper(redis, key_prefix, directory, Clock())
    await gatekeeper.arrive(ADA, "-1001", "restrict", title="Club")

    first = await gatekeeper.set_back(ADA, Setback.LIMITED)
    again = await gatekeeper.set_back(ADA, Setback.PHONE_TAKEN)

    assert [(r.hold.place, r.reason) for r in first.reviews] == [("-1001", Setback.LIMITED)]
    assert again.reviews == []  # one open entry per member and place
    (review,) = first.reviews
    assert await gatekeeper.gate.peek_review(review.id) == review
    # A forged id reads nothing else: not even the open-entry key beside the entry.
    for forged in ("open:" + review.hold.field, "../x", review.id + "x", ""):
        assert await gatekeeper.gate.peek_review(forged) is None
        assert await gatekeeper.gate.take_review(forged) is None
    taken = await asyncio.gather(*(gatekeeper.gate.take_review(review.id) for _ in range(5)))
    assert [t for t in taken if t is not None] == [review]  # one press wins
    assert await gatekeeper.gate.peek_review(review.id) is None
    # Decided: the next setback may queue them again.
    assert len((await gatekeeper.set_back(ADA, Setback.LIMITED)).reviews) == 1


async def test_approve_releases_the_hold_and_is_audited_as_a_manual_admission(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    gatekeeper = keeper(redis, key_prefix, directory, Clock())
    hold = await gatekeeper.arrive(ADA, "-1001", "restrict")
    assert hold is not None

    await gatekeeper.approve(hold, moderator="telegram:42:7", reason=Setback.PHONE_TAKEN)

    assert await gatekeeper.gate.holds_of(ADA) == []
    (entry,) = directory.audit_trail(subject=str(ADA))
    assert (entry.event, entry.actor, entry.details) == (
        "admitted_manually",
        "telegram:42:7",
        {"place": "-1001", "reason": "phone_taken"},
    )


async def test_deny_applies_the_consequence_to_a_member_still_held_only(
    redis: Redis, key_prefix: str, directory: Directory
) -> None:
    rules = rules_by_place({"-1001": GateRules(Consequence("ban"))})
    clock = Clock()
    gatekeeper = keeper(redis, key_prefix, directory, clock, rules_for=rules)
    held = await gatekeeper.arrive(ADA, "-1001", "restrict")
    verified = await gatekeeper.arrive(BOB, "-1001", "restrict")
    assert held is not None and verified is not None
    verify(directory, BOB)
    await gatekeeper.verified(BOB)  # verified after being queued: never punished for it

    denied = await gatekeeper.deny(held, moderator="telegram:42:7", reason=Setback.LIMITED)
    again = await gatekeeper.deny(held, moderator="telegram:42:7", reason=Setback.LIMITED)
    spared = await gatekeeper.deny(verified, moderator="telegram:42:7", reason=Setback.LIMITED)

    assert denied == Sanction(Consequence("ban"), ban=True)
    assert (again, spared) == (None, None)
    assert [e.event for e in directory.audit_trail(subject=str(ADA))] == ["denied", "denied"]
