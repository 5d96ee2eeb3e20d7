"""Conversation state, duplicate guards and rate limits in Redis.

Two Lua scripts do all the work, so a message costs one round trip to load and one to
save, and several workers can share a server:

* ``LOAD`` marks a delivery id as seen (or reports a duplicate), reads the conversation
  and peeks at limits the step may need, in one call; it can take a code check's lease
  and read one more key the caller names (a community's policy, ``bot.policy``).
* ``COMMIT`` is a compare-and-set on the conversation's version that also takes from
  rate limits, all or nothing: if any limit is full nothing is written. It also takes or
  releases a number's claim (below), so owning a number costs no extra round trip, and
  it runs the SMS-fraud breaker (``bot.fraud``): a paused country or prefix refuses the
  SMS like a full limit, and the SMS that finds one below its conversion trips it.
  Given the worker's ``Copy`` of the conversation (``recall``) instead of a load's
  version, it guards the delivery and checks the copy whole first; a stale copy writes
  nothing and returns the conversation as stored.

A *claim* says which member's verification owns a phone number, from the moment its SMS is
reserved until Vonage says the request is over (or the request's lifetime has certainly
passed). While another member holds it nothing is written, as when a limit is full: only
the holder ever reaches Vonage for that number.

Under Sentinel (``replicas`` > 0) a commit that takes a number's claim, the one that goes
before a Vonage start, waits until a replica has it (``WAIT``): replication is asynchronous,
and a failover that lost the reservation would let the number be sent a second SMS.

Every key has a TTL. Limits are sliding-window logs in sorted sets: exact, and they say
precisely when a slot frees up.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Any, Literal

import structlog
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from bot import metrics
from bot.flow import Conversation, State
from bot.fraud import FraudHit, Pause, Scope
from bot.identity import MemberKey
from bot.keys import Keys
from bot.rates import Rate

log = structlog.get_logger("verifybot.store")

_LOAD = """
local now = tonumber(ARGV[1])
if ARGV[2] ~= '' then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return {1} end
end
local current = redis.call('GET', KEYS[1])
local leased = 0
if ARGV[3] ~= '' and current then
  -- A code check's lease, taken here rather than by a commit of its own: only a conversation
  -- waiting for a code, with no live check, no code already accepted and a code not lapsed.
  -- The flow decides whether to check; a lease it does not use is cleared by its save.
  local ok, c = pcall(cjson.decode, current)
  local s = now / 1000
  if ok and type(c) == 'table' and c['state'] == 'await_code' and not c['code_accepted']
      and tonumber(c['checking_until'] or 0) <= s and tonumber(c['code_expires_at'] or 0) > s
      and tonumber(c['v']) then
    c['checking_until'] = tonumber(ARGV[3])
    c['v'] = tonumber(c['v']) + 1
    redis.call('SET', KEYS[1], cjson.encode(c), 'PX', ARGV[4])
    leased = 1
  end
end
-- One more key the caller wants read in this round trip (a community's policy).
local also = false
if ARGV[5] ~= '' then also = redis.call('GET', KEYS[4]) end
local out = {0, current, redis.call('GET', KEYS[3]), leased, also}
local a = 6
for k = 5, #KEYS do
  local window, limit = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now - window)
  local n = redis.call('ZCARD', KEYS[k])
  local wait = 0
  if limit <= 0 then
    wait = window
  elseif n >= limit then
    local e = redis.call('ZRANGE', KEYS[k], n - limit, n - limit, 'WITHSCORES')
    wait = tonumber(e[2]) + window - now
  end
  out[#out + 1] = wait
end
return out
"""

_COMMIT = """
local TOMBSTONE = '0'
-- KEYS: conversation, claim, known, gate_of, nl limits, 3 per fraud scope, fraud index (if
-- any scope), the delivery's guard (if any).
-- ARGV: 1-8 the conversation and claim, 9-11 the known link, 12-13 nl and nf, then 3 per
-- limit, then 6 per fraud scope, then the guard's TTL and the copy expected (or '' each).
local nl, nf = tonumber(ARGV[12]), tonumber(ARGV[13])
local fk, fa = 5 + nl, 14 + 3 * nl
local current = redis.call('GET', KEYS[1])
-- A turn run on this worker's copy of the conversation (``Store.recall``): its delivery is
-- guarded here rather than by a load (the guard's key is the last), and the copy must be
-- what is stored, whole, as a version alone can come round again after a delete. If it is
-- not, nothing else is written and the conversation comes back, as a load would return it.
local tail = fa + 6 * nf
if ARGV[tail] ~= '' then
  if not redis.call('SET', KEYS[#KEYS], '1', 'NX', 'PX', ARGV[tail]) then return {'duplicate'} end
end
if ARGV[tail + 1] ~= '' and current ~= ARGV[tail + 1] then
  return {'stale', current, redis.call('GET', KEYS[3])}
end
local version = 0
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' and tonumber(decoded['v']) then
    version = tonumber(decoded['v'])
  end
end
if version ~= tonumber(ARGV[1]) then return {'conflict', version} end
local now, token = tonumber(ARGV[4]), ARGV[5]
local claim, owner = ARGV[6], ARGV[7]
if claim == 'take' then
  local holder = redis.call('GET', KEYS[2])
  if holder and holder ~= owner then return {'busy', redis.call('PTTL', KEYS[2])} end
end
-- The fraud breaker: each scope has 3 keys (sent, verified, pause) and 6 args.
local paused = 0
for i = 0, nf - 1 do
  if ARGV[fa + 6 * i] == 'send' then
    local ttl = redis.call('PTTL', KEYS[fk + 3 * i + 2])
    if ttl > paused then paused = ttl end
  end
end
if paused > 0 then return {'paused', paused} end
local tripped = {}
for i = 0, nf - 1 do
  local a, sent, verified = fa + 6 * i, KEYS[fk + 3 * i], KEYS[fk + 3 * i + 1]
  local window = tonumber(ARGV[a + 3])
  redis.call('ZREMRANGEBYSCORE', sent, '-inf', now - window)
  redis.call('ZREMRANGEBYSCORE', verified, '-inf', now - window)
  if ARGV[a] == 'send' then
    local s, v = redis.call('ZCARD', sent), redis.call('ZCARD', verified)
    if s >= tonumber(ARGV[a + 1]) and v < tonumber(ARGV[a + 2]) * s then
      local cooldown = tonumber(ARGV[a + 4])
      local index = KEYS[fk + 3 * nf]
      redis.call('SET', KEYS[fk + 3 * i + 2], cjson.encode({s, v, now + cooldown}), 'PX', cooldown)
      -- A fresh count after the pause: the evidence is kept in the pause itself.
      redis.call('DEL', sent, verified)
      redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
      redis.call('ZADD', index, now + cooldown, ARGV[a + 5])
      if redis.call('PTTL', index) < cooldown then redis.call('PEXPIRE', index, cooldown) end
      tripped[#tripped + 1] = ARGV[a + 5]
      tripped[#tripped + 1] = s
      tripped[#tripped + 1] = v
      if cooldown > paused then paused = cooldown end
    end
  end
end
if #tripped > 0 then return {'tripped', paused, unpack(tripped)} end
local wait, which = 0, 0
local a = 14
for k = 5, 4 + nl do
  local window, limit, mode = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2]
  a = a + 3
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now - window)
  if mode == 'take' then
    local n = redis.call('ZCARD', KEYS[k])
    if n >= limit then
      local w = window
      if limit > 0 then
        local e = redis.call('ZRANGE', KEYS[k], n - limit, n - limit, 'WITHSCORES')
        w = tonumber(e[2]) + window - now
      end
      if w > wait then wait, which = w, k - 4 end  -- the hit's 1-based index
    end
  end
end
if wait > 0 then return {'limited', wait, which} end
a = 14
for k = 5, 4 + nl do
  redis.call('ZADD', KEYS[k], now, token)
  redis.call('PEXPIRE', KEYS[k], ARGV[a])
  a = a + 3
end
for i = 0, nf - 1 do
  local a = fa + 6 * i
  local log = KEYS[fk + 3 * i]
  if ARGV[a] == 'verified' then log = KEYS[fk + 3 * i + 1] end
  redis.call('ZADD', log, now, token)
  redis.call('PEXPIRE', log, ARGV[a + 3])
end
if claim == 'take' then
  redis.call('SET', KEYS[2], owner, 'PX', ARGV[8])
elseif claim == 'release' and redis.call('GET', KEYS[2]) == owner then
  redis.call('DEL', KEYS[2])
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
-- The directory's answer for this member, kept for the next messages: 'fill' only where
-- nothing is kept (a tombstone stays), 'set' over anything but a tombstone.
if ARGV[9] == 'fill' then
  redis.call('SET', KEYS[3], ARGV[10], 'NX', 'PX', ARGV[11])
elseif ARGV[9] == 'set' and redis.call('GET', KEYS[3]) ~= TOMBSTONE then
  redis.call('SET', KEYS[3], ARGV[10], 'PX', ARGV[11])
end
return {'ok', version + 1, redis.call('EXISTS', KEYS[4])}
"""

# Release outside a COMMIT: only if the member still holds the claim and its conversation,
# as it stands now, is not using the number again (a newer start may have refreshed it).
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local current = redis.call('GET', KEYS[2])
if current then
  local ok, c = pcall(cjson.decode, current)
  if ok and type(c) == 'table' and c['phone'] == ARGV[2]
      and (c['state'] == 'starting' or c['state'] == 'await_code') then
    return 0
  end
end
return redis.call('DEL', KEYS[1])
"""


@dataclass(frozen=True, slots=True)
class Limit:
    """One sliding window over one subject, e.g. 3 SMS per 10 minutes for one phone."""

    name: str
    subject: str
    rate: Rate


@dataclass(frozen=True, slots=True)
class Hit:
    """Take one from ``limit`` (refused when full) or just count it (``record``)."""

    limit: Limit
    mode: Literal["take", "record"] = "take"


@dataclass(frozen=True, slots=True)
class Claim:
    """Take (or refresh) ``phone``'s claim for the committing member for ``ttl`` seconds;
    with no ttl, release it if that member still holds it. The holder is named by its
    member key, which only the store ever reads."""

    phone: str
    ttl: float | None = None


@dataclass(frozen=True, slots=True)
class KnownLink:
    """The directory's answer to "is this member verified, and with which number", kept in
    Redis so that a member's messages need not ask the database (``phone`` None: not
    verified). Whatever unlinks a member in the directory first calls
    ``Store.forget_verification``, whose tombstone no later write of an older answer passes.
    """

    phone: str | None
    country: str | None = None
    verified_at: float | None = None

    def encode(self) -> str:
        if self.phone is None:
            return _NOT_VERIFIED
        return json.dumps({"p": self.phone, "c": self.country, "t": self.verified_at})

    @staticmethod
    def decode(raw: str | bytes | None) -> KnownLink | None:
        """None when nothing usable is kept (or a tombstone): ask the directory."""
        if raw is None or raw in (_TOMBSTONE, _TOMBSTONE.encode()):
            return None
        if raw in (_NOT_VERIFIED, _NOT_VERIFIED.encode()):
            return KnownLink(None)
        try:
            data = json.loads(raw)
            return KnownLink(str(data["p"]), data.get("c"), data.get("t"))
        except (ValueError, TypeError, KeyError):
            return None


_TOMBSTONE = "0"
_NOT_VERIFIED = "n"
#: How long an answer is kept: a verified member's for a day, "not verified" for an hour
#: (the engine overwrites it when the member verifies), a tombstone for ten minutes (far
#: longer than any message takes between asking the directory and writing its answer).
_KEEP_VERIFIED_MS = 86_400_000
_KEEP_NOT_VERIFIED_MS = 3_600_000
_KEEP_TOMBSTONE_MS = 600_000


@dataclass(frozen=True, slots=True)
class Remember:
    """Keep the directory's answer with a commit: ``fill`` what the directory just said
    (unless something is kept already), or ``set`` what this message just recorded there
    (unless a tombstone says an unlink came after)."""

    link: KnownLink
    mode: Literal["fill", "set"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    duplicate: bool
    conversation: Conversation
    version: int
    #: Seconds until each peeked limit frees a slot; 0 when it is not full.
    waits: tuple[float, ...] = ()
    #: The directory's answer kept for this member, if any.
    known: KnownLink | None = None
    #: The load took the code check's lease asked for (``version`` counts it; the
    #: conversation is as it was before).
    leased: bool = False
    #: The value of the key ``load`` was asked to read ``also``, if any.
    also: bytes | None = None


@dataclass(frozen=True, slots=True)
class Copy:
    """This worker's copy of a conversation, as it last wrote or read it (``Store.recall``):
    a turn may start from it, and its first commit checks it is still what is stored."""

    conversation: Conversation
    version: int
    raw: str


@dataclass(frozen=True, slots=True)
class Committed:
    version: int
    #: Whether any gate held the member when this was written (``Keys.gate_of``).
    held: bool = True


@dataclass(frozen=True, slots=True)
class Conflict:
    """Another worker saved this conversation first."""


@dataclass(frozen=True, slots=True)
class LimitReached:
    wait: float
    #: The name of the limit that keeps the longest wait (``Limit.name``), for the metrics.
    limit: str = ""


@dataclass(frozen=True, slots=True)
class ClaimHeld:
    """Another member holds the number's claim for ``wait`` more seconds."""

    wait: float


@dataclass(frozen=True, slots=True)
class ScopePaused:
    """The fraud breaker has paused SMS to the number's country or prefix for ``wait`` s."""

    wait: float


@dataclass(frozen=True, slots=True)
class BreakerTripped:
    """This SMS found its country or prefix below the conversion: the breaker tripped there
    (only this commit is told so) and nothing else was written."""

    wait: float
    pauses: tuple[Pause, ...]


@dataclass(frozen=True, slots=True)
class Stale:
    """The copy a commit expected is not what is stored: nothing was written, and here is
    the conversation as a load would have returned it (its delivery is guarded)."""

    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The delivery a commit was to guard was seen before: nothing was written."""


CommitResult = Committed | Conflict | LimitReached | ClaimHeld | ScopePaused | BreakerTripped

#: Copies kept per worker (``Store.recall``), the least recently used dropped first, and
#: how long one is trusted to be current: an older one would mostly cost a stale commit.
_COPIES = 4096
_COPY_SECONDS = 600.0

#: The conversation's fields after ``state``, in the order they are written. Encoding reads
#: them by name rather than through ``dataclasses.asdict``, which deep-copies every value and
#: was most of a save's own CPU; the JSON is the same, key for key.
_STORED = tuple(f.name for f in fields(Conversation) if f.name != "state")
_FIELDS = frozenset(_STORED)
_STATES = {state.value: state for state in State}
_STATE_VALUES = {state: state.value for state in State}
_JSON = json.JSONEncoder(separators=(",", ":"))


def encode(conversation: Conversation, version: int) -> str:
    data: dict[str, Any] = {"state": _STATE_VALUES[conversation.state]}
    for name in _STORED:
        value = getattr(conversation, name)
        if value is not None and value != 0:  # None, 0 and False are the defaults: left out
            data[name] = value
    data["v"] = version
    return _JSON.encode(data)


def decode(raw: str | bytes | None) -> tuple[Conversation, int]:
    """Read a stored conversation; anything unreadable counts as a fresh one. Keys this
    version does not know (written by a newer one) are ignored."""
    if raw is None:
        return Conversation(), 0
    try:
        data = json.loads(raw)
        version = int(data.pop("v"))
        state = _STATES[data.pop("state", "idle")]
        if not data.keys() <= _FIELDS:
            data = {k: v for k, v in data.items() if k in _FIELDS}
        return Conversation(state, **data), version
    except (ValueError, TypeError, KeyError, AttributeError):
        return Conversation(), _version_of(raw)


def _version_of(raw: str | bytes) -> int:
    try:
        return int(json.loads(raw)["v"])
    except (ValueError, TypeError, KeyError):
        return 0


class Store:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "verifybot:",
        conversation_ttl: float = 7 * 86400,
        duplicate_ttl: float = 25 * 3600,
        max_in_flight: int = 64,
        replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        self.redis = redis
        #: Replicas that must hold a claim before Vonage is called (0: do not wait).
        self.replicas = replicas
        self._replica_timeout_ms = max(1, int(replica_timeout * 1000))
        # redis-py's BlockingConnectionPool hands a freed connection to whoever asks next,
        # not to the longest waiter: above the pool size some messages starve until its
        # timeout. A FIFO semaphore of the pool's size queues them fairly instead.
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self.keys = Keys(prefix)
        self._conversation_ttl_ms = int(conversation_ttl * 1000)
        self._duplicate_ttl_ms = int(duplicate_ttl * 1000)
        self._copies: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._load = redis.register_script(_LOAD)
        self._commit = redis.register_script(_COMMIT)
        self._release = redis.register_script(_RELEASE)

    def _round_trip(self, operation: str) -> _RoundTrip:
        """One Redis round trip: queued fairly, timed and counted (``bot.metrics``)."""
        return _RoundTrip(self._in_flight, operation)

    async def _run(
        self, script: AsyncScript, keys: list[str], args: list[Any], client: Redis | None = None
    ) -> Any:
        """``script(keys=keys, args=args, client=client)``, less redis-py's checks for
        pipelines and clusters on every call (2 us): EVALSHA, and after a NOSCRIPT (a Redis
        restarted or flushed) the script object loads itself and runs again."""
        try:
            return await (client or self.redis).evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await script(keys=keys, args=args, client=client)

    def recall(self, member: MemberKey) -> Copy | None:
        """This worker's copy of the member's conversation, if it wrote or read it lately."""
        key = self.conversation_key(member)
        kept = self._copies.get(key)
        if kept is None or time.monotonic() - kept[1] > _COPY_SECONDS:
            return None
        conversation, version = decode(kept[0])
        return Copy(conversation, version, kept[0])

    def _keep_copy(self, key: str, raw: str | bytes | None) -> None:
        if not raw:
            self._copies.pop(key, None)
            return
        self._copies[key] = (raw.decode() if isinstance(raw, bytes) else raw, time.monotonic())
        self._copies.move_to_end(key)
        if len(self._copies) > _COPIES:
            self._copies.popitem(last=False)

    def conversation_key(self, member: MemberKey) -> str:
        return self.keys.conversation(member)

    def delivery_key(self, member: MemberKey, delivery_id: str) -> str:
        return self.keys.delivery(member, delivery_id)

    def claim_key(self, phone: str) -> str:
        return self.keys.claim(phone)

    def known_key(self, member: MemberKey) -> str:
        return self.keys.verified(member)

    def limit_key(self, limit: Limit) -> str:
        return self.keys.limit(limit.name, limit.rate.window, limit.subject)

    async def load(
        self,
        member: MemberKey,
        *,
        now: float,
        delivery_id: str | None = None,
        peek: Sequence[Limit] = (),
        lease_until: float | None = None,
        also: str | None = None,
    ) -> Snapshot:
        """The conversation (and the directory's answer kept for the member), in one round
        trip. With ``lease_until``, a conversation waiting for a code takes the check's lease
        until then, if no check is live: the turn then needs no commit before Vonage. With
        ``also`` (a whole key, prefix included), that key's value too (``Snapshot.also``)."""
        conversation_key = self.conversation_key(member)
        keys = [
            conversation_key,
            self.delivery_key(member, delivery_id) if delivery_id else "",
            self.known_key(member),
            also or conversation_key,
        ]
        args: list[Any] = [
            _ms(now),
            self._duplicate_ttl_ms if delivery_id else "",
            "" if lease_until is None else repr(lease_until),
            self._conversation_ttl_ms,
            "" if also is None else "1",
        ]
        for limit in peek:
            keys.append(self.limit_key(limit))
            args += [limit.rate.window * 1000, limit.rate.count]
        async with self._round_trip("load"):
            result = await self._run(self._load, keys, args)
        if int(result[0]) == 1:
            return Snapshot(duplicate=True, conversation=Conversation(), version=0)
        conversation, version = decode(result[1])
        leased = int(result[3]) == 1
        self._keep_copy(conversation_key, None if leased else result[1])
        waits = tuple(float(w) / 1000 for w in result[5:])
        known = KnownLink.decode(result[2])
        return Snapshot(False, conversation, version + leased, waits, known, leased, result[4])

    async def first_delivery(self, member: MemberKey, delivery_id: str) -> bool:
        """Mark a delivery seen without loading a conversation (a group's join, say); True
        the first time. It shares the conversations' guard: ids are unique per bot."""
        key = self.delivery_key(member, delivery_id)
        async with self._round_trip("first_delivery"):
            return bool(await self.redis.set(key, 1, nx=True, px=self._duplicate_ttl_ms))

    async def forget_delivery(self, member: MemberKey, delivery_id: str) -> None:
        """Let a delivery be handled again, after handling it failed."""
        async with self._round_trip("forget_delivery"):
            await self.redis.delete(self.delivery_key(member, delivery_id))

    async def commit(
        self,
        member: MemberKey,
        conversation: Conversation,
        *,
        version: int,
        now: float,
        hits: Sequence[Hit] = (),
        claim: Claim | None = None,
        remember: Remember | None = None,
        fraud: Sequence[FraudHit] = (),
        expect: Copy | None = None,
        delivery_id: str | None = None,
    ) -> CommitResult | Stale | Duplicate:
        """Write ``conversation`` over ``version`` with the limits' hits, the claim, the
        directory's answer and the fraud breaker's counts, all or nothing. A turn started
        from a ``Copy`` passes it as ``expect`` with its ``delivery_id``, to be guarded."""
        conversation_key = self.conversation_key(member)
        keys = [
            conversation_key,
            self.claim_key(claim.phone) if claim else conversation_key,
            self.known_key(member),
            self.keys.gate_of(member),
        ]
        body = "" if conversation == Conversation() else encode(conversation, version + 1)
        # Names this write's entries in the limits' and the breaker's logs (none: no entry).
        token = uuid.uuid4().hex if hits or fraud else ""
        args: list[Any] = [version, body, self._conversation_ttl_ms, _ms(now), token]
        if claim is None:
            args += ["", "", 0]
        else:
            mode = "release" if claim.ttl is None else "take"
            args += [mode, str(member), _ms(claim.ttl or 0)]
        if remember is None:
            args += ["", "", 0]
        else:
            keep = _KEEP_VERIFIED_MS if remember.link.phone else _KEEP_NOT_VERIFIED_MS
            args += [remember.mode, remember.link.encode(), keep]
        args += [len(hits), len(fraud)]
        for hit in hits:
            keys.append(self.limit_key(hit.limit))
            args += [hit.limit.rate.window * 1000, hit.limit.rate.count, hit.mode]
        for each in fraud:
            field = each.scope.field
            keys += [self.keys.fraud(log, field) for log in ("sent", "verified", "pause")]
            args += [
                each.mode,
                each.min_sends,
                each.min_conversion,
                each.window * 1000,
                each.cooldown * 1000,
                field,
            ]
        if fraud:
            keys.append(self.keys.fraud_paused)
        if delivery_id:
            keys.append(self.delivery_key(member, delivery_id))
        args += [
            self._duplicate_ttl_ms if delivery_id else "",
            expect.raw if expect is not None else "",
        ]
        async with self._round_trip("commit"):
            if self.replicas and claim is not None and claim.ttl is not None:
                result = await self._commit_replicated(keys, args)
            else:
                result = await self._run(self._commit, keys, args)
        outcome = _text(result[0])
        if outcome == "ok":
            self._keep_copy(conversation_key, body)
            return Committed(int(result[1]), bool(int(result[2])))
        if outcome == "stale":
            self._keep_copy(conversation_key, result[1])
            current, version = decode(result[1])
            return Stale(Snapshot(False, current, version, known=KnownLink.decode(result[2])))
        if outcome == "duplicate":
            return Duplicate()
        if outcome == "limited":
            which = int(result[2]) - 1 if len(result) > 2 else -1
            name = hits[which].limit.name if 0 <= which < len(hits) else ""
            return LimitReached(float(result[1]) / 1000, name)
        if outcome == "busy":
            return ClaimHeld(max(0.0, float(result[1]) / 1000))
        if outcome == "paused":
            return ScopePaused(float(result[1]) / 1000)
        if outcome == "tripped":
            wait = float(result[1]) / 1000
            pauses = [
                Pause(scope, int(sent), int(verified), now + wait)
                for field, sent, verified in zip(*[iter(result[2:])] * 3, strict=True)
                if (scope := Scope.from_field(_text(field))) is not None
            ]
            return BreakerTripped(wait, tuple(pauses))
        self._copies.pop(conversation_key, None)
        return Conflict()

    async def _commit_replicated(self, keys: list[str], args: list[Any]) -> Any:
        """COMMIT, then WAIT on the same connection (WAIT counts that client's writes).

        A replica that does not answer in time is logged, not fatal: a replica's outage
        must not stop every SMS, and Vonage's own in-flight check still stands behind it."""
        connection = self.redis.client()
        try:
            result = await self._run(self._commit, keys, args, connection)
            if result[0] in (b"ok", "ok"):
                acked = await connection.wait(self.replicas, self._replica_timeout_ms)
                if int(acked) < self.replicas:
                    log.warning("replica_behind", acked=int(acked), wanted=self.replicas)
            return result
        finally:
            await connection.aclose(close_connection_pool=False)

    async def release_claim(self, member: MemberKey, phone: str) -> None:
        """Free ``phone`` for other members, if ``member`` holds it and is not using it
        again (one round trip)."""
        keys = [self.claim_key(phone), self.conversation_key(member)]
        async with self._round_trip("release_claim"):
            await self._run(self._release, keys, [str(member), phone])

    async def forget_verification(self, member: MemberKey) -> None:
        """Before the directory unlinks ``member`` (or changes their number outside a
        conversation): every worker's next message asks the directory again, and no answer
        read before the change can be kept over this tombstone."""
        async with self._round_trip("forget_verification"):
            await self.redis.set(self.known_key(member), _TOMBSTONE, px=_KEEP_TOMBSTONE_MS)

    async def pauses(self, *, now: float) -> list[Pause]:
        """Every country and prefix the fraud breaker has paused, soonest to resume first."""
        async with self._round_trip("fraud_pauses"):
            fields = await self.redis.zrangebyscore(self.keys.fraud_paused, _ms(now), "+inf")
            scopes = [s for s in (Scope.from_field(_text(f)) for f in fields) if s is not None]
            if not scopes:
                return []
            raw = await self.redis.mget([self.keys.fraud("pause", s.field) for s in scopes])
        pauses = []
        for scope, value in zip(scopes, raw, strict=True):
            if value is None:  # lapsed or lifted since it was listed
                continue
            sent, verified, until = json.loads(value)
            pauses.append(Pause(scope, int(sent), int(verified), float(until) / 1000))
        return pauses

    async def lift(self, scope: Scope) -> bool:
        """Resume SMS to ``scope`` now, with fresh counts; False if it was not paused."""
        keys = [self.keys.fraud(log, scope.field) for log in ("pause", "sent", "verified")]
        async with self._round_trip("fraud_lift"), self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys[0])
            pipe.delete(*keys[1:])
            pipe.zrem(self.keys.fraud_paused, scope.field)
            removed, _, _ = await pipe.execute()
        return bool(removed)

    async def stash(self, name: str, value: str, *, ttl: int) -> None:
        """Keep a short-lived value (a pending confirmation) under ``name`` for ``ttl`` s."""
        async with self._round_trip("stash"):
            await self.redis.set(self.keys.stash(name), value, ex=ttl)

    async def take(self, name: str) -> str | None:
        """The value stashed under ``name``, removed in the same step: taken at most once."""
        async with self._round_trip("take"):
            raw = await self.redis.getdel(self.keys.stash(name))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def ping(self) -> None:
        await self.redis.ping()


class _RoundTrip:
    """``Store._round_trip``: a class, not a generator, as it wraps every round trip."""

    __slots__ = ("_gate", "_timer")

    def __init__(self, gate: asyncio.Semaphore, operation: str) -> None:
        self._gate = gate
        self._timer = metrics.timed(metrics.REDIS_SECONDS, metrics.REDIS_ERRORS, operation)

    async def __aenter__(self) -> None:
        await self._gate.acquire()
        self._timer.__enter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._timer.__exit__(kind, error, traceback)
        finally:
            self._gate.release()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
