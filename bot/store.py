"""Conversation state, duplicate guards and rate limits in Redis.

Two Lua scripts do all the work, so a message costs one round trip to load and one to
save, and several workers can share a server:

* ``LOAD`` marks a delivery id as seen (or reports a duplicate), reads the conversation
  and peeks at limits the step may need, in one call.
* ``COMMIT`` is a compare-and-set on the conversation's version that also takes from
  rate limits, all or nothing: if any limit is full nothing is written. It also takes or
  releases a number's claim (below), so owning a number costs no extra round trip.

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
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import structlog
from redis.asyncio import Redis

from bot.flow import Conversation, State
from bot.identity import MemberKey
from bot.keys import Keys
from bot.rates import Rate

log = structlog.get_logger("verifybot.store")

_LOAD = """
local now = tonumber(ARGV[1])
if ARGV[2] ~= '' then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return {1} end
end
local out = {0, redis.call('GET', KEYS[1])}
local a = 3
for k = 3, #KEYS do
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
local current = redis.call('GET', KEYS[1])
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
local wait = 0
local a = 9
for k = 3, #KEYS do
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
      if w > wait then wait = w end
    end
  end
end
if wait > 0 then return {'limited', wait} end
a = 9
for k = 3, #KEYS do
  redis.call('ZADD', KEYS[k], now, token)
  redis.call('PEXPIRE', KEYS[k], ARGV[a])
  a = a + 3
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
return {'ok', version + 1}
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
class Snapshot:
    duplicate: bool
    conversation: Conversation
    version: int
    #: Seconds until each peeked limit frees a slot; 0 when it is not full.
    waits: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Committed:
    version: int


@dataclass(frozen=True, slots=True)
class Conflict:
    """Another worker saved this conversation first."""


@dataclass(frozen=True, slots=True)
class LimitReached:
    wait: float


@dataclass(frozen=True, slots=True)
class ClaimHeld:
    """Another member holds the number's claim for ``wait`` more seconds."""

    wait: float


CommitResult = Committed | Conflict | LimitReached | ClaimHeld

_FIELDS = {f.name for f in fields(Conversation)}


def encode(conversation: Conversation, version: int) -> str:
    data = {k: v for k, v in asdict(conversation).items() if v not in (None, 0, False)}
    data["state"] = conversation.state.value
    data["v"] = version
    return json.dumps(data, separators=(",", ":"))


def decode(raw: str | bytes | None) -> tuple[Conversation, int]:
    """Read a stored conversation; anything unreadable counts as a fresh one."""
    if raw is None:
        return Conversation(), 0
    try:
        data = json.loads(raw)
        version = int(data.pop("v"))
        state = State(data.pop("state", State.IDLE))
        values = {k: v for k, v in data.items() if k in _FIELDS}
        return Conversation(state=state, **values), version
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
        self._load = redis.register_script(_LOAD)
        self._commit = redis.register_script(_COMMIT)
        self._release = redis.register_script(_RELEASE)

    def conversation_key(self, member: MemberKey) -> str:
        return self.keys.conversation(member)

    def delivery_key(self, member: MemberKey, delivery_id: str) -> str:
        return self.keys.delivery(member, delivery_id)

    def claim_key(self, phone: str) -> str:
        return self.keys.claim(phone)

    def limit_key(self, limit: Limit) -> str:
        return self.keys.limit(limit.name, limit.rate.window, limit.subject)

    async def load(
        self,
        member: MemberKey,
        *,
        now: float,
        delivery_id: str | None = None,
        peek: Sequence[Limit] = (),
    ) -> Snapshot:
        keys = [
            self.conversation_key(member),
            self.delivery_key(member, delivery_id) if delivery_id else "",
        ]
        args: list[Any] = [_ms(now), self._duplicate_ttl_ms if delivery_id else ""]
        for limit in peek:
            keys.append(self.limit_key(limit))
            args += [limit.rate.window * 1000, limit.rate.count]
        async with self._in_flight:
            result = await self._load(keys=keys, args=args)
        if int(result[0]) == 1:
            return Snapshot(duplicate=True, conversation=Conversation(), version=0)
        conversation, version = decode(result[1])
        waits = tuple(float(w) / 1000 for w in result[2:])
        return Snapshot(False, conversation, version, waits)

    async def first_delivery(self, member: MemberKey, delivery_id: str) -> bool:
        """Mark a delivery seen without loading a conversation (a group's join, say); True
        the first time. It shares the conversations' guard: ids are unique per bot."""
        key = self.delivery_key(member, delivery_id)
        async with self._in_flight:
            return bool(await self.redis.set(key, 1, nx=True, px=self._duplicate_ttl_ms))

    async def forget_delivery(self, member: MemberKey, delivery_id: str) -> None:
        """Let a delivery be handled again, after handling it failed."""
        async with self._in_flight:
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
    ) -> CommitResult:
        conversation_key = self.conversation_key(member)
        keys = [conversation_key, self.claim_key(claim.phone) if claim else conversation_key]
        body = "" if conversation == Conversation() else encode(conversation, version + 1)
        args: list[Any] = [version, body, self._conversation_ttl_ms, _ms(now), uuid.uuid4().hex]
        if claim is None:
            args += ["", "", 0]
        else:
            mode = "release" if claim.ttl is None else "take"
            args += [mode, str(member), _ms(claim.ttl or 0)]
        for hit in hits:
            keys.append(self.limit_key(hit.limit))
            args += [hit.limit.rate.window * 1000, hit.limit.rate.count, hit.mode]
        async with self._in_flight:
            if self.replicas and claim is not None and claim.ttl is not None:
                result = await self._commit_replicated(keys, args)
            else:
                result = await self._commit(keys=keys, args=args)
        outcome = result[0].decode() if isinstance(result[0], bytes) else str(result[0])
        if outcome == "ok":
            return Committed(int(result[1]))
        if outcome == "limited":
            return LimitReached(float(result[1]) / 1000)
        if outcome == "busy":
            return ClaimHeld(max(0.0, float(result[1]) / 1000))
        return Conflict()

    async def _commit_replicated(self, keys: list[str], args: list[Any]) -> Any:
        """COMMIT, then WAIT on the same connection (WAIT counts that client's writes).

        A replica that does not answer in time is logged, not fatal: a replica's outage
        must not stop every SMS, and Vonage's own in-flight check still stands behind it."""
        connection = self.redis.client()
        try:
            result = await self._commit(keys=keys, args=args, client=connection)
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
        async with self._in_flight:
            await self._release(keys=keys, args=[str(member), phone])

    async def stash(self, name: str, value: str, *, ttl: int) -> None:
        """Keep a short-lived value (a pending confirmation) under ``name`` for ``ttl`` s."""
        async with self._in_flight:
            await self.redis.set(self.keys.stash(name), value, ex=ttl)

    async def take(self, name: str) -> str | None:
        """The value stashed under ``name``, removed in the same step: taken at most once."""
        async with self._in_flight:
            raw = await self.redis.getdel(self.keys.stash(name))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def ping(self) -> None:
        await self.redis.ping()


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
