"""The rules one community lives by (``CommunityPolicy``), resolved per message.

One deployment serves many communities: a Telegram group, or a Slack team or enterprise. Each
community's *scope* is ``<platform>:<place>`` (``telegram:-1001234``, ``slack:T0123``). The
environment gives the defaults; a community stores only the fields it changed (the directory's
``community_policies``), written as the settings file writes them and parsed by the same
parsers, so a bad value typed in chat is refused with the same one line.

``Policies`` resolves a scope's policy for every message: from a copy in this process for at
most ``LOCAL_SECONDS``, else from Redis, else from the directory. A change is written to the
directory (audited) and then to Redis at once, so every worker sees it within a second. The
Redis copy carries the row's revision and a Lua script never lets an older one replace a
newer one, so a reader that raced a change cannot put the old policy back.

What stays process-wide (the SMS budget and per-phone, per-prefix and per-country caps, code
length and lifetimes) is the operator's, because SMS cost is: it is not in here.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, get_args

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.consequence import Consequence, parse_consequence
from bot.directory import AsyncDirectory, Directory, StoredPolicy
from bot.flow import FlowPolicy, Reply, screen_phone
from bot.identity import MemberKey
from bot.keys import Keys
from bot.phone import DEFAULT_SMS_TYPES
from bot.rates import format_duration, parse_seconds
from bot.settings import (
    parse_countries,
    parse_number_types,
    parse_role_names,
    parse_slack_channel,
    parse_telegram_chat,
)

log = structlog.get_logger("verifybot.policy")

GateMode: TypeAlias = Literal["restrict", "join_request", "off"]
AdmitVerified: TypeAlias = Literal["group", "anywhere"]
GATE_MODES: tuple[GateMode, ...] = get_args(GateMode)
ADMIT_VERIFIED: tuple[AdmitVerified, ...] = get_args(AdmitVerified)

#: A community's welcome is its own words, shown as plain text, at most this long.
WELCOME_LIMIT = 500
#: As ``TELEGRAM_VERIFY_TIMEOUT`` allows.
TIMEOUT_LIMIT = 30 * 86400
#: How long a worker trusts its own copy of a policy: a change reaches it within this.
LOCAL_SECONDS = 0.5
#: How long Redis keeps a policy nobody asked for (a change replaces it at once anyway).
CACHE_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class CommunityPolicy:
    """The rules of one community. Platform-neutral; a platform uses the fields it has."""

    gate_mode: GateMode = "restrict"
    #: Seconds a newcomer has to verify; 0 waits for ever.
    verify_timeout: int = 0
    consequence: Consequence = field(default_factory=Consequence)
    #: Failed verifications in a day after which the consequence applies at once; 0 is off.
    ban_after_failures: int = 0
    #: Who walks straight in: members this bot admitted here before, or anyone verified.
    admit_verified: AdmitVerified = "group"
    allowed_countries: frozenset[str] = frozenset()
    blocked_countries: frozenset[str] = frozenset()
    allowed_number_types: frozenset[str] = DEFAULT_SMS_TYPES
    max_accounts_per_phone: int = 1
    default_language: str = "en"
    #: The community's own words for newcomers, shown after the bot's welcome (plain text).
    welcome: str | None = None
    #: The moderators' log chat (Telegram) or channel (Slack).
    log_chat: str | None = None
    auto_roles: tuple[str, ...] = ()

    def flow_policy(self, base: FlowPolicy) -> FlowPolicy:
        """The conversation's policy for this community: ``base`` holds what stays
        process-wide (region, code length and lifetimes, fictional numbers in the sandbox)."""
        return _flow_policy(self, base)

    def accepts(self, phone: str, base: FlowPolicy) -> bool:
        """Whether these rules accept a number verified elsewhere (``base`` as for
        ``flow_policy``); the account limit was the directory's to enforce then."""
        return not isinstance(screen_phone(phone, self.flow_policy(base)), Reply)

    def written(self, name: str) -> str:
        """A field as the settings file (and ``/settings``) writes it."""
        return write_field(name, getattr(self, name))

    def with_overrides(
        self, overrides: Mapping[str, str], *, platform: str = ""
    ) -> CommunityPolicy:
        """This policy with a community's stored fields on top. A stored value that no longer
        parses (a field renamed, a rule tightened) is skipped: the default stands."""
        changes: dict[str, Any] = {}
        for name, text in overrides.items():
            try:
                changes[name] = parse_field(name, text, platform=platform)
            except ValueError as exc:
                log.warning("policy_value_ignored", policy_field=name, problem=str(exc))
        return replace(self, **changes)


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CommunityPolicy))


# Asked on every message; both are frozen and their combinations few, so built once each
# (two ``dataclasses.replace`` a message were a measurable share of the engine's CPU).
@functools.lru_cache(maxsize=256)
def _flow_policy(community: CommunityPolicy, base: FlowPolicy) -> FlowPolicy:
    phone = replace(
        base.phone,
        allowed_countries=community.allowed_countries,
        blocked_countries=community.blocked_countries,
        allowed_types=community.allowed_number_types,
    )
    return replace(base, phone=phone, max_accounts_per_phone=community.max_accounts_per_phone)


def parse_field(name: str, text: str, *, platform: str = "") -> Any:
    """One field's value from its written form; a one-line ``ValueError`` (as the settings
    file gives) otherwise."""
    value = text.strip()
    if name == "gate_mode":
        return _choice(value.lower(), GATE_MODES)
    if name == "admit_verified":
        return _choice(value.lower(), ADMIT_VERIFIED)
    if name == "verify_timeout":
        seconds = parse_seconds(value)
        if seconds > TIMEOUT_LIMIT:
            raise ValueError(f"{text!r} is longer than 30d")
        return seconds
    if name == "consequence":
        return parse_consequence(value)
    if name in ("ban_after_failures", "max_accounts_per_phone"):
        low, high = (0, 100) if name == "ban_after_failures" else (1, 1000)
        if not value.isdigit() or not low <= int(value) <= high:
            raise ValueError(f"{text!r} is not a whole number from {low} to {high}")
        return int(value)
    if name in ("allowed_countries", "blocked_countries"):
        return parse_countries(value)
    if name == "allowed_number_types":
        return parse_number_types(value)
    if name == "default_language":
        if not value or not value.replace("-", "").isalpha() or len(value) > 12:
            raise ValueError(f"{text!r} is not a language code like en or es")
        return value.lower()
    if name == "welcome":
        if len(value) > WELCOME_LIMIT:
            raise ValueError(f"a welcome may be {WELCOME_LIMIT} characters at most")
        return value or None
    if name == "log_chat":
        if not value:
            return None
        return parse_slack_channel(value) if platform == "slack" else parse_telegram_chat(value)
    if name == "auto_roles":
        return parse_role_names(value)
    raise ValueError(f"unknown policy field {name!r}")


def write_field(name: str, value: Any) -> str:
    """The written form ``parse_field`` reads back."""
    if value is None:
        return ""
    if isinstance(value, frozenset):
        return ",".join(sorted(value))
    if isinstance(value, tuple):
        return ",".join(value)
    if name == "verify_timeout":
        return format_duration(value) if value else "0"
    return str(value)


def _choice(value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
    return value


def community_scope(platform: str, place: str) -> str:
    """The scope of a community: a Telegram chat id, a Slack team or enterprise id."""
    return f"{platform}:{place}"


def parse_community_scope(text: str) -> str:
    """A scope as an operator types it (``telegram:-1001234567890``, ``slack:T0123ABCD``);
    a one-line ``ValueError`` otherwise."""
    platform, _, place = text.strip().partition(":")
    valid = (platform == "telegram" and re.fullmatch(r"-?\d{1,20}", place)) or (
        platform == "slack" and re.fullmatch(r"[TE][A-Z0-9]{2,}", place)
    )
    if not valid:
        raise ValueError(
            f"{text!r} is not a community: use telegram:<chat id> (telegram:-1001234567890) "
            "or slack:<team id> (slack:T0123ABCD)"
        )
    return community_scope(platform, place)


def scope_for(member: MemberKey, origin: str | None) -> str:
    """The community a member is verifying for: the place that sent them (a Telegram deep
    link or join request names its group), else their own platform scope (the Slack team,
    or the Telegram bot itself, for which only the defaults exist)."""
    return community_scope(member.platform, origin or member.scope)


def platform_of(scope: str) -> str:
    return scope.partition(":")[0]


# Never lets an older revision replace a newer one: a reader that read the directory before
# a change cannot put the old policy back after the change was written here.
_PUT = """
-- KEYS: policy   ARGV: json, revision, ttl
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and tonumber(decoded['revision']) > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


@dataclass(frozen=True, slots=True)
class PolicyRead:
    """A scope's policy as of the round trip the caller makes anyway (the engine's load of
    the conversation): ``key`` to read in it, if this process's copy had lapsed, then
    ``value`` as read. With no key, the copy that was fresh then will do."""

    scope: str
    key: str | None
    #: ``Policies``' clock and count of changes when asked: a read that a change overtook
    #: is not kept.
    asked_at: float
    generation: int
    value: bytes | None = None


class Policies:
    """Every community's policy: resolved per message, changed by its admins, audited."""

    def __init__(
        self,
        redis: Redis,
        directory: Directory,
        defaults: Mapping[str, CommunityPolicy],
        *,
        prefix: str,
        cache_seconds: int = CACHE_SECONDS,
        local_seconds: float = LOCAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.directory = AsyncDirectory.bounded(directory)
        #: Per platform ("telegram", "slack"); "" for any other.
        self.defaults = dict(defaults)
        self.keys = Keys(prefix)
        self.cache_seconds = cache_seconds
        self.local_seconds = local_seconds
        self.clock = clock
        self._local: dict[str, tuple[float, CommunityPolicy]] = {}
        #: The one lookup under way per scope, which every message that needs it waits for.
        self._pending: dict[str, asyncio.Task[CommunityPolicy]] = {}
        self._generation = 0
        self._put = redis.register_script(_PUT)

    def default_for(self, scope: str) -> CommunityPolicy:
        platform = platform_of(scope)
        return self.defaults.get(platform) or self.defaults.get("") or CommunityPolicy()

    def to_read(self, scope: str) -> PolicyRead:
        """Ask before the message's own load: its ``key``, if set, is to be read from Redis
        in that round trip (this process's copy of ``scope``'s policy has lapsed and no
        lookup is under way). ``policy_for`` then takes the read, not a round trip, and a
        copy fresh when asked still does for this message."""
        now = self.clock()
        cached = self._local.get(scope)
        fresh = cached is not None and cached[0] > now
        key = None if fresh or scope in self._pending else self.keys.policy(scope)
        return PolicyRead(scope, key, now, self._generation)

    async def policy_for(self, scope: str, read: PolicyRead | None = None) -> CommunityPolicy:
        """The policy of the community ``scope``: its own fields over the defaults. ``read``
        is its Redis copy as the caller read it (``to_read``), if it did."""
        now = self.clock()
        cached = self._local.get(scope)
        if cached is not None and cached[0] > now:
            return cached[1]
        if read and read.scope == scope and read.generation == self._generation:
            if read.value:
                return self._keep(scope, _decode_stored(read.value), now)
            if read.key is None and cached is not None and cached[0] > read.asked_at:
                return cached[1]  # it lapsed during this message's load
        # As the copy lapses, every message in flight misses it at once: one asks Redis and
        # the others wait for its answer, not a round trip each.
        pending = self._pending.get(scope)
        if pending is None:
            pending = asyncio.create_task(self._look_up(scope, now))
            self._pending[scope] = pending
            pending.add_done_callback(lambda done: self._settled(scope, done))
        return await asyncio.shield(pending)

    def _settled(self, scope: str, done: asyncio.Task[CommunityPolicy]) -> None:
        if self._pending.get(scope) is done:
            del self._pending[scope]
        if not done.cancelled():
            done.exception()  # retrieved: each waiter has it raised already

    async def _look_up(self, scope: str, now: float) -> CommunityPolicy:
        stored = await self.stored(scope)
        if self._pending.get(scope) is not asyncio.current_task():
            # Changed meanwhile: this answer may be older than the change, so not kept.
            return self.default_for(scope).with_overrides(
                stored.overrides, platform=platform_of(scope)
            )
        return self._keep(scope, stored, now)

    def _keep(self, scope: str, stored: StoredPolicy, now: float) -> CommunityPolicy:
        policy = self.default_for(scope).with_overrides(
            stored.overrides, platform=platform_of(scope)
        )
        if len(self._local) > 10_000:  # a bound, not an eviction policy: they expire anyway
            self._local.clear()
        self._local[scope] = (now + self.local_seconds, policy)
        return policy

    async def stored(self, scope: str) -> StoredPolicy:
        """The fields ``scope`` overrode, from Redis or else the directory."""
        key = self.keys.policy(scope)
        try:
            raw = await self.redis.get(key)
        except RedisError as exc:
            log.warning("policy_cache_unavailable", error=type(exc).__name__)
            return await self.directory.community_policy(scope)
        if raw is not None:
            return _decode_stored(raw)
        stored = await self.directory.community_policy(scope)
        await self._cache(scope, stored)
        return stored

    async def change(
        self, scope: str, name: str, text: str | None, *, actor: str
    ) -> tuple[str, str]:
        """Set one field (``None``: back to the default) after parsing it as the settings
        file would (``ValueError`` in one line), audited; ``(old, new)`` as written."""
        if name not in FIELDS:
            raise ValueError(f"unknown policy field {name!r}")
        written = None
        if text is not None:
            written = write_field(name, parse_field(name, text, platform=platform_of(scope)))
        change = await self.directory.change_community_policy(
            scope,
            name,
            written,
            default=self.default_for(scope).written(name),
            actor=actor,
            now=datetime.now(UTC),
        )
        await self._cache(scope, change.stored)
        # Only now: whatever was read before Redis had the change is not kept, here.
        self._local.pop(scope, None)
        self._pending.pop(scope, None)  # a lookup under way may have read the old policy
        self._generation += 1  # and so may a read asked for with a load
        log.info("policy_changed", scope=scope, policy_field=name, actor=actor)
        return change.old, change.new

    async def _cache(self, scope: str, stored: StoredPolicy) -> None:
        value = json.dumps(
            {"overrides": stored.overrides, "revision": stored.revision}, separators=(",", ":")
        )
        try:
            await self._put(
                keys=[self.keys.policy(scope)],
                args=[value, stored.revision, self.cache_seconds],
            )
        except RedisError as exc:
            # The directory has the change; a stale copy, if any, lapses with its TTL.
            log.warning("policy_cache_unavailable", error=type(exc).__name__)


def _decode_stored(raw: bytes | str) -> StoredPolicy:
    data = json.loads(raw)
    return StoredPolicy(dict(data["overrides"]), int(data["revision"]))
