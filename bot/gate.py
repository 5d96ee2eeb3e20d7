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
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from redis.asyncio import Redis

from bot import metrics
from bot.directory import AsyncDirectory, Directory
from bot.flow import Setback
from bot.identity import MemberKey
from bot.keys import Keys
from bot.sanction import GateRules, Sanction, sanction_for

log = structlog.get_logger("verifybot.gate")

#: How long a hold without a deadline is kept: a member who never verifies is forgotten.
DEFAULT_HOLD_TTL = 7 * 86400
#: Kept this long after a deadline, so a sweeper that was down for a while still sees it.
GRACE = 86400
#: A review nobody decided is dropped after this long.
REVIEW_TTL = 7 * 86400
#: What ``secrets.token_urlsafe(12)`` makes: a review's id, and all a button carries.
_REVIEW_ID = re.compile(r"[A-Za-z0-9_-]{16}")
#: Failed verifications count towards ``ban_after_failures`` for a day from the first.
FAILURE_WINDOW = 86400

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

_COUNT_FAILURE = """
-- KEYS: failures   ARGV: ttl
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""

_OPEN_REVIEW = """
-- KEYS: open, entry   ARGV: id, json, ttl
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""

_TAKE_REVIEW = """
-- KEYS: entry   ARGV: open-key prefix
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
redis.call('DEL', KEYS[1])
redis.call('DEL', ARGV[1] .. cjson.decode(raw)['field'])
return raw
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


@dataclass(frozen=True, slots=True)
class Review:
    """A held member queued for the moderators, and why. A button carries only the id."""

    id: str
    hold: Hold
    reason: Setback

    def to_json(self) -> str:
        data = {"id": self.id, "hold": self.hold.to_json(), "reason": self.reason.value}
        return json.dumps({**data, "field": self.hold.field}, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Review:
        data = json.loads(raw)
        return cls(data["id"], Hold.from_json(data["hold"]), Setback(data["reason"]))


class Gate:
    def __init__(self, redis: Redis, *, prefix: str, hold_ttl: int = DEFAULT_HOLD_TTL) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.hold_ttl = hold_ttl
        self._hold = redis.register_script(_HOLD)
        self._release = redis.register_script(_RELEASE)
        self._claim_due = redis.register_script(_CLAIM_DUE)
        self._swap_notice = redis.register_script(_SWAP_NOTICE)
        self._count_failure = redis.register_script(_COUNT_FAILURE)
        self._open_review = redis.register_script(_OPEN_REVIEW)
        self._take_review = redis.register_script(_TAKE_REVIEW)
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

    async def holds_of(self, member: MemberKey) -> list[Hold]:
        """Where the member is held now, taking nothing away."""
        places = await self.redis.smembers(self.keys.gate_of(member))
        if not places:
            return []
        fields = [f"{p.decode() if isinstance(p, bytes) else p}|{member}" for p in places]
        raw = await self.redis.mget([self.keys.gate_hold(field) for field in fields])
        return [Hold.from_json(item) for item in raw if item]

    async def count_failure(self, member: MemberKey, *, window: int = FAILURE_WINDOW) -> int:
        """Count one failed verification of the member; how many in the current window."""
        return int(await self._count_failure(keys=[self.keys.gate_failures(member)], args=[window]))

    # -- the moderators' review queue ----------------------------------------------------------

    async def open_review(self, hold: Hold, reason: Setback) -> Review | None:
        """Queue a held member for the moderators; None while an entry for them at that place
        is open already (a member who keeps hitting a limit is queued once)."""
        review = Review(secrets.token_urlsafe(12), hold, reason)
        opened = await self._open_review(
            keys=[self.keys.review_open(hold.field), self.keys.review(review.id)],
            args=[review.id, review.to_json(), REVIEW_TTL],
        )
        return review if opened else None

    async def peek_review(self, review_id: str) -> Review | None:
        """The entry as it stands, taking nothing: to check who may decide it first."""
        if not _REVIEW_ID.fullmatch(review_id):  # a forged id never names another key
            return None
        raw = await self.redis.get(self.keys.review(review_id))
        return Review.from_json(raw) if raw else None

    async def take_review(self, review_id: str) -> Review | None:
        """The entry, to one caller only; None if it was decided already, or is unknown."""
        if not _REVIEW_ID.fullmatch(review_id):
            return None
        raw = await self._take_review(
            keys=[self.keys.review(review_id)], args=[self.keys.review_open("")]
        )
        return Review.from_json(raw) if raw else None

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


#: Whether the rules of a place (platform, place) accept a verified phone number.
Accepts = Callable[[str, str, str], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Lapsed:
    """A hold whose deadline passed, and whether the member verified just in time after all."""

    hold: Hold
    verified: bool
    #: What to do to a member who did not verify (None once they did).
    sanction: Sanction | None = None


@dataclass(frozen=True, slots=True)
class Dealt:
    """A member dealt with at once at one place (``ban_after_failures``)."""

    hold: Hold
    sanction: Sanction


@dataclass(frozen=True, slots=True)
class Reckoning:
    """What a failed verification leads to: members dealt with now, entries for review."""

    dealt: list[Dealt]
    reviews: list[Review]


#: A community's gate rules, by place: the seam to the per-community policy.
RulesFor = Callable[[str], Awaitable[GateRules]]


def fixed_rules(rules: GateRules) -> RulesFor:
    """The same rules for every place: the settings' defaults."""

    async def rules_for(place: str) -> GateRules:
        return rules

    return rules_for


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
        rules_for: RulesFor | None = None,
        accepts: Accepts | None = None,
    ) -> None:
        self.gate = gate
        self.directory = AsyncDirectory.bounded(directory)
        self.admit_anywhere = admit_anywhere
        self.timeout = timeout
        self.clock = clock
        #: Each place's consequence and ``ban_after_failures``, asked when they are needed.
        self.rules_for = rules_for or fixed_rules(GateRules())
        #: Whether a place's own rules accept a verified number (``bot.policy``).
        self.accepts = accepts

    async def arrive(
        self,
        member: MemberKey,
        place: str,
        kind: str,
        *,
        reach: str | None = None,
        title: str | None = None,
        invite: str | None = None,
        deadline_in: int | None = None,
        admit_anywhere: bool | None = None,
    ) -> Hold | None:
        """A member joins or asks to join ``place`` (by the link ``invite``, if one is named):
        None to let them in, else their hold. ``deadline_in`` (seconds, 0 for none) and
        ``admit_anywhere`` are the place's own policy, when it has one."""
        if await self._walks_in(member, place, invite, admit_anywhere):
            metrics.GATE_ADMISSIONS.labels("walk_in").inc()
            return None
        metrics.GATE_HOLDS.labels(kind).inc()
        now = self.clock()
        timeout = self.timeout if deadline_in is None else deadline_in
        deadline = now + timeout if timeout else None
        hold = Hold(place, member, kind, deadline=deadline, reach=reach, title=title)
        await self.gate.hold(hold, now=now)
        return hold

    async def verified(
        self, member: MemberKey, *, origin: str | None = None, phone: str | None = None
    ) -> list[Hold]:
        """The member verified: release every hold on them whose place accepts ``phone``
        and remember the admissions.

        ``origin`` is the place whose link they verified through. It is admitted even when
        no hold is there yet, because their join may still be queued: when it comes, they
        walk in instead of being held after verifying (a forged link gains nothing, as a
        verified member who joins is let in by tapping the same link).
        """
        if origin is not None:
            await self._record_admission(member, origin)
        released = []
        for hold in await self.gate.release(member):
            if hold.place != origin and not await self._accepted(hold, phone):
                # Verified under another place's rules, which this place's refuse: still
                # held here (with its deadline), until they verify a number it accepts.
                log.info("gate_number_refused_here", place=hold.place)
                await self.gate.hold(hold, now=self.clock())
                continue
            released.append(hold)
            metrics.GATE_ADMISSIONS.labels(hold.kind).inc()
            if hold.place != origin:
                await self._record_admission(member, hold.place)
        return released

    async def _accepted(self, hold: Hold, phone: str | None) -> bool:
        if self.accepts is None or phone is None:
            return True
        try:
            return await self.accepts(hold.member.platform, hold.place, phone)
        except Exception:
            log.warning("policy_unknown", place=hold.place)
            return False

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

    async def still_held(
        self, hold: Hold, *, invite: str | None = None, admit_anywhere: bool | None = None
    ) -> bool:
        """Asked right after the platform held the member: False if they may walk in by now
        (they verified, or were admitted, while the hold was being applied), with the hold
        released, so the adapter lifts it at once. A verification always records the
        admission before its own lift is sent, so whichever lift comes last is the member's.
        ``invite`` is the link they joined by, judged as ``arrive`` judged it."""
        if not await self._walks_in(hold.member, hold.place, invite, admit_anywhere):
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
            results.append(Lapsed(hold, verified, None if verified else await self._sanction(hold)))
        return results

    async def _sanction(self, hold: Hold) -> Sanction:
        """The place's consequence for this member; its default (a kick) if it is unknown,
        as a member who did not verify must not stay for want of a policy."""
        try:
            rules = await self.rules_for(hold.place)
        except Exception:
            log.warning("gate_rules_unknown", place=hold.place)
            rules = GateRules()
        return sanction_for(rules.consequence, requested=hold.kind == REQUESTED, now=self.clock())

    # -- failed verifications ------------------------------------------------------------------

    async def set_back(self, member: MemberKey, setback: Setback) -> Reckoning:
        """A verification of ``member`` failed: deal at once with them where they failed too
        often (``ban_after_failures``), and queue them for review where they are held.

        Only a member held somewhere is counted or queued. Each place's hold is released by
        one worker, which alone deals with it."""
        holds = await self.gate.holds_of(member)
        if not holds:
            return Reckoning([], [])
        dealt: list[Dealt] = []
        queued: list[Hold] = holds
        if setback is Setback.FAILED:
            failures = await self.gate.count_failure(member)
            queued = []
            for hold in holds:
                limit = (await self.rules_for(hold.place)).ban_after_failures
                if limit and failures >= limit and await self.gate.release(member, hold.place):
                    metrics.GATE_REMOVALS.labels(hold.kind).inc()
                    dealt.append(Dealt(hold, await self._sanction(hold)))
                    queued.append(hold)
                    log.info("gate_failures_dealt", place=hold.place, failures=failures)
        reviews = [await self.gate.open_review(hold, setback) for hold in queued]
        return Reckoning(dealt, [review for review in reviews if review is not None])

    # -- the moderators' decisions -------------------------------------------------------------

    async def approve(self, hold: Hold, *, moderator: str, reason: Setback) -> None:
        """A moderator lets the member in without a phone link: their hold there ends (the
        adapter lifts it), and the audit log says who did it and why."""
        if await self.gate.release(hold.member, hold.place):
            metrics.GATE_ADMISSIONS.labels(hold.kind).inc()
        await self.directory.audit(
            "admitted_manually",
            actor=moderator,
            subject=str(hold.member),
            details={"place": hold.place, "reason": reason.value},
            now=self._now(),
        )

    async def deny(self, hold: Hold, *, moderator: str, reason: Setback) -> Sanction | None:
        """A moderator turns the member away: the place's consequence, now, for a member
        still held there. None when they are not: the consequence befell them already (at
        the deadline, or by ``ban_after_failures``), or they verified or left meanwhile."""
        released = await self.gate.release(hold.member, hold.place)
        await self.directory.audit(
            "denied",
            actor=moderator,
            subject=str(hold.member),
            details={"place": hold.place, "reason": reason.value},
            now=self._now(),
        )
        if released:
            metrics.GATE_REMOVALS.labels(hold.kind).inc()
        return await self._sanction(hold) if released else None

    async def _walks_in(
        self,
        member: MemberKey,
        place: str,
        invite: str | None = None,
        admit_anywhere: bool | None = None,
    ) -> bool:
        try:
            withdrawn = invite is not None and await self.directory.invite_withdrawn(invite)
            if withdrawn:
                # The link of a revoked role (Telegram let it through before the revocation
                # took effect): it vouches for nothing, and the member is judged a stranger.
                log.info("gate_withdrawn_invite", place=place)
                return False
            anywhere = self.admit_anywhere if admit_anywhere is None else admit_anywhere
            if anywhere:
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


#: ``Hold.kind`` of a member who asked to join (a join request) rather than joined.
REQUESTED = "join_request"

#: Lapsed holds claimed, and acted on side by side, at a time.
SWEEP_BATCH = 50


async def sweep_lapsed(
    gatekeeper: Gatekeeper,
    act: Callable[[Lapsed], Awaitable[None]],
    *,
    interval: float,
    batch: int = SWEEP_BATCH,
) -> None:
    """Act on deadlines until cancelled (even when the cancellation comes back as an
    error). One failure is logged and never stops the loop.

    Each batch is acted on concurrently (a removal is several platform calls, so a raid's
    79 lapsed members took 35 s one by one); a full batch is followed by the next at once.
    """

    async def act_on(lapsed: Lapsed) -> None:
        try:
            await act(lapsed)
        except Exception:
            log.exception("gate_timeout_failed", place=lapsed.hold.place)

    current = asyncio.current_task()
    # A cancellation that a library turned into an error (caught below), or that
    # ``wait_for`` swallowed, still counts: the loop must end, or a stop waits on it.
    while current is None or not current.cancelling():
        claimed = 0
        try:
            due = await gatekeeper.lapsed(limit=batch)
            claimed = len(due)
            await asyncio.gather(*(act_on(lapsed) for lapsed in due))
        except Exception:
            log.exception("gate_sweep_failed")
        if claimed < batch:
            await asyncio.sleep(interval)
