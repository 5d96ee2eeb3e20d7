"""Members held at a group's gate until they verify, with deadlines that survive restarts.

A *hold* says: this member joined (or asked to join) this place and may not take part until
verified. Holds live in Redis, not in a process timer, so any worker can release one when the
member verifies, and any worker's sweeper can act on a deadline after a restart. Every change
is one Lua script, so a member who verifies just as their deadline falls is either released or
timed out, never both.

A place shows one welcome at a time, for every member it is holding: a hold counts the
member in, ``uncover`` counts them out and hands back the welcome to delete once nobody is
left, and ``welcome_due`` spaces new welcomes out so that a wave of joins posts a few, not one
each.

Keys (all with TTLs): ``gate:hold:{place}|{member}`` the hold as JSON, ``gate:of:{member}`` the
places holding a member, ``gate:due`` deadlines by hold, ``gate:notice:{place}`` the place's
current welcome, ``gate:covered:{place}`` the members it serves, ``gate:welcomed:{place}`` a
recent welcome.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from redis.asyncio import Redis

from bot import metrics
from bot.directory import AsyncDirectory, Directory
from bot.identity import MemberKey
from bot.keys import Keys

log = structlog.get_logger("verifybot.gate")

#: How long a hold without a deadline is kept: a member who never verifies is forgotten.
DEFAULT_HOLD_TTL = 7 * 86400
#: Kept this long after a deadline, so a sweeper that was down for a while still sees it.
GRACE = 86400

_HOLD = """
-- KEYS: hold, of, due, covered   ARGV: json, place, field, deadline ('' for none), ttl, user
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[5])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[6])
for _, key in ipairs({KEYS[2], KEYS[4]}) do
  if tonumber(redis.call('TTL', key)) < tonumber(ARGV[5]) then
    redis.call('EXPIRE', key, ARGV[5])
  end
end
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
  if tonumber(redis.call('TTL', KEYS[3])) < tonumber(ARGV[5]) then
    redis.call('EXPIRE', KEYS[3], ARGV[5])
  end
else
  redis.call('ZREM', KEYS[3], ARGV[3])
end
return 1
"""

_RELEASE = """
-- KEYS: of, due   ARGV: hold-key prefix, member, only-place ('' for all)
local places = ARGV[3] ~= '' and {ARGV[3]} or redis.call('SMEMBERS', KEYS[1])
local out = {}
for _, place in ipairs(places) do
  local field = place .. '|' .. ARGV[2]
  local hold = redis.call('GET', ARGV[1] .. field)
  if hold then
    table.insert(out, hold)
    redis.call('DEL', ARGV[1] .. field)
  end
  redis.call('ZREM', KEYS[2], field)
  redis.call('SREM', KEYS[1], place)
end
return out
"""

_CLAIM_DUE = """
-- KEYS: due   ARGV: hold-key prefix, of-key prefix, now, limit
local fields = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3], 'LIMIT', 0, ARGV[4])
local out = {}
for _, field in ipairs(fields) do
  redis.call('ZREM', KEYS[1], field)
  local hold = redis.call('GET', ARGV[1] .. field)
  if hold then
    table.insert(out, hold)
    redis.call('DEL', ARGV[1] .. field)
    local bar = string.find(field, '|', 1, true)
    redis.call('SREM', ARGV[2] .. string.sub(field, bar + 1), string.sub(field, 1, bar - 1))
  end
end
return out
"""

_SWAP_NOTICE = """
-- KEYS: notice   ARGV: new id, ttl
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return old
"""

_UNCOVER = """
-- KEYS: covered, notice   ARGV: member
redis.call('SREM', KEYS[1], ARGV[1])
if redis.call('SCARD', KEYS[1]) > 0 then
  return false
end
local notice = redis.call('GET', KEYS[2])
redis.call('DEL', KEYS[2])
return notice
"""


@dataclass(frozen=True, slots=True)
class Hold:
    """One member waiting at one place's gate."""

    place: str
    member: MemberKey
    #: How the platform holds them, e.g. "restrict" or "join_request".
    kind: str
    #: When to give up on them (epoch seconds), or None to wait indefinitely.
    deadline: float | None = None
    #: Where to reach the member privately, when the platform says (Telegram's user_chat_id).
    reach: str | None = None
    #: The place's name, for messages to the member.
    title: str | None = None

    @property
    def field(self) -> str:
        return f"{self.place}|{self.member}"

    def to_json(self) -> str:
        data = asdict(self)
        data["member"] = asdict(self.member)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Hold:
        data: dict[str, Any] = json.loads(raw)
        data["member"] = MemberKey(**data["member"])
        return cls(**data)


class Gate:
    def __init__(self, redis: Redis, *, prefix: str, hold_ttl: int = DEFAULT_HOLD_TTL) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.hold_ttl = hold_ttl
        self._hold = redis.register_script(_HOLD)
        self._release = redis.register_script(_RELEASE)
        self._claim_due = redis.register_script(_CLAIM_DUE)
        self._swap_notice = redis.register_script(_SWAP_NOTICE)
        self._uncover = redis.register_script(_UNCOVER)

    async def hold(self, hold: Hold, *, now: float) -> None:
        """Hold a member at a place, replacing any earlier hold there, and count them in to
        the place's welcome."""
        ttl = self.hold_ttl
        if hold.deadline is not None:
            ttl = max(1, int(hold.deadline - now)) + GRACE
        await self._hold(
            keys=[
                self.keys.gate_hold(hold.field),
                self.keys.gate_of(hold.member),
                self.keys.gate_due,
                self.keys.gate_covered(hold.place),
            ],
            args=[
                hold.to_json(),
                hold.place,
                hold.field,
                "" if hold.deadline is None else repr(hold.deadline),
                ttl,
                hold.member.user_id,
            ],
        )

    async def release(self, member: MemberKey, place: str | None = None) -> list[Hold]:
        """Take away the member's holds (at ``place``, or everywhere) and return them."""
        raw = await self._release(
            keys=[self.keys.gate_of(member), self.keys.gate_due],
            args=[self.keys.gate_holds, str(member), place or ""],
        )
        return [Hold.from_json(item) for item in raw]

    async def claim_due(self, *, now: float, limit: int = 50) -> list[Hold]:
        """Take away the holds whose deadline has passed; each is returned to one caller only."""
        raw = await self._claim_due(
            keys=[self.keys.gate_due],
            args=[self.keys.gate_holds, self.keys.gate_of_prefix, repr(now), limit],
        )
        return [Hold.from_json(item) for item in raw]

    async def welcome_due(self, place: str, *, interval: float) -> bool:
        """True if no welcome was posted at ``place`` in the last ``interval`` seconds."""
        key = self.keys.gate_welcomed(place)
        return bool(await self.redis.set(key, 1, nx=True, px=max(1, int(interval * 1000))))

    async def swap_notice(self, place: str, notice: str) -> str | None:
        """Make ``notice`` the place's welcome; return the one it replaces, to delete."""
        old = await self._swap_notice(
            keys=[self.keys.gate_notice(place)], args=[notice, self.hold_ttl]
        )
        return old.decode() if isinstance(old, bytes) else old

    async def uncover(self, place: str, user_id: str) -> str | None:
        """Count a member out; the welcome to delete when nobody it serves is left."""
        notice = await self._uncover(
            keys=[self.keys.gate_covered(place), self.keys.gate_notice(place)],
            args=[user_id],
        )
        return notice.decode() if isinstance(notice, bytes) else notice


@dataclass(frozen=True, slots=True)
class Lapsed:
    """A hold whose deadline passed, and whether the member verified just in time after all."""

    hold: Hold
    verified: bool


class Gatekeeper:
    """Who is let straight in, who is held, and what happens when they verify or time out.

    The adapter does the platform's part (restrict, approve, remove, tell the member); the
    rules live here so Telegram's restrict and join-request gates share them.
    """

    def __init__(
        self,
        gate: Gate,
        directory: Directory,
        *,
        admit_anywhere: bool,
        timeout: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gate = gate
        self.directory = AsyncDirectory.bounded(directory)
        self.admit_anywhere = admit_anywhere
        self.timeout = timeout
        self.clock = clock

    async def arrive(
        self,
        member: MemberKey,
        place: str,
        kind: str,
        *,
        reach: str | None = None,
        title: str | None = None,
        invite: str | None = None,
    ) -> Hold | None:
        """A member joins or asks to join ``place`` (by the link ``invite``, if one is named):
        None to let them in, else their hold."""
        if await self._walks_in(member, place, invite):
            metrics.GATE_ADMISSIONS.labels("walk_in").inc()
            return None
        metrics.GATE_HOLDS.labels(kind).inc()
        now = self.clock()
        deadline = now + self.timeout if self.timeout else None
        hold = Hold(place, member, kind, deadline=deadline, reach=reach, title=title)
        await self.gate.hold(hold, now=now)
        return hold

    async def verified(self, member: MemberKey, *, origin: str | None = None) -> list[Hold]:
        """The member verified: release every hold on them and remember the admissions.

        ``origin`` is the place whose link they verified through. It is admitted even when
        no hold is there yet, because their join may still be queued: when it comes, they
        walk in instead of being held after verifying (a forged link gains nothing, as a
        verified member who joins is let in by tapping the same link).
        """
        if origin is not None:
            await self._record_admission(member, origin)
        holds = await self.gate.release(member)
        for hold in holds:
            metrics.GATE_ADMISSIONS.labels(hold.kind).inc()
            if hold.place != origin:
                await self._record_admission(member, hold.place)
        return holds

    async def _record_admission(self, member: MemberKey, place: str) -> None:
        try:
            await self.directory.admit(member, place, now=self._now())
        except Exception:
            # The holds are released already: let the member in all the same. Without the
            # record, a later rejoin is held and asked to verify again, which says so.
            log.warning("admission_not_recorded", member=str(member), place=place)

    async def admit(self, member: MemberKey, place: str, *, role: str) -> list[Hold]:
        """``role`` opened ``place`` to verified ``member``: remember it while they hold the
        role, so a rejoin walks in, and end their hold there (none if the role is gone)."""
        opened = await self.directory.admit_for_role(member, place, role, now=self._now())
        return await self.gate.release(member, place) if opened else []

    async def leave(self, member: MemberKey, place: str) -> list[Hold]:
        """The member left ``place`` (or was removed by someone else): forget their hold."""
        return await self.gate.release(member, place)

    async def still_held(self, hold: Hold, *, invite: str | None = None) -> bool:
        """Asked right after the platform held the member: False if they may walk in by now
        (they verified, or were admitted, while the hold was being applied), with the hold
        released, so the adapter lifts it at once. A verification always records the
        admission before its own lift is sent, so whichever lift comes last is the member's.
        ``invite`` is the link they joined by, judged as ``arrive`` judged it."""
        if not await self._walks_in(hold.member, hold.place, invite):
            return True
        await self.gate.release(hold.member, hold.place)
        return False

    async def lapsed(self, *, limit: int = 50) -> list[Lapsed]:
        """Holds past their deadline, each claimed by one worker only.

        A member who verified after the deadline fell but before this claim is not removed:
        the directory is read after the claim, and it is written before holds are released.
        """
        due = await self.gate.claim_due(now=self.clock(), limit=limit)
        results = []
        for hold in due:
            # admit() admits only a verified member: one write both checks and records.
            try:
                verified = await self.directory.admit(hold.member, hold.place, now=self._now())
            except Exception:
                # Whether they verified is unknown: put the hold back for the next sweep,
                # rather than remove a member who may have verified or forget the hold.
                log.warning("lapse_deferred", member=str(hold.member), place=hold.place)
                await self.gate.hold(hold, now=self.clock())
                continue
            counter = metrics.GATE_ADMISSIONS if verified else metrics.GATE_REMOVALS
            counter.labels(hold.kind).inc()
            results.append(Lapsed(hold, verified))
        return results

    async def _walks_in(self, member: MemberKey, place: str, invite: str | None = None) -> bool:
        try:
            withdrawn = invite is not None and await self.directory.invite_withdrawn(invite)
            if withdrawn:
                # The link of a revoked role (Telegram let it through before the revocation
                # took effect): it vouches for nothing, and the member is judged a stranger.
                log.info("gate_withdrawn_invite", place=place)
                return False
            if self.admit_anywhere:
                # Any verified member: admit() checks that and records the admission at once.
                return await self.directory.admit(member, place, now=self._now())
            # Only a remembered admission counts, and it is already on record.
            return await self.directory.is_admitted(member, place)
        except Exception:
            # Closed, not open: held, the member is asked to verify, and a verified member's
            # "already verified" releases the hold.
            log.warning("admission_unknown", member=str(member), place=place)
            return False

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)


#: Lapsed holds claimed, and acted on side by side, at a time.
SWEEP_BATCH = 50


async def sweep_lapsed(
    gatekeeper: Gatekeeper,
    act: Callable[[Lapsed], Awaitable[None]],
    *,
    interval: float,
    batch: int = SWEEP_BATCH,
) -> None:
    """Act on deadlines until cancelled. One failure is logged and never stops the loop.

    Each batch is acted on concurrently (a removal is several platform calls, so a raid's
    79 lapsed members took 35 s one by one); a full batch is followed by the next at once.
    """

    async def act_on(lapsed: Lapsed) -> None:
        try:
            await act(lapsed)
        except Exception:
            log.exception("gate_timeout_failed", place=lapsed.hold.place)

    while True:
        claimed = 0
        try:
            due = await gatekeeper.lapsed(limit=batch)
            claimed = len(due)
            await asyncio.gather(*(act_on(lapsed) for lapsed in due))
        except Exception:
            log.exception("gate_sweep_failed")
        if claimed < batch:
            await asyncio.sleep(interval)
