"""The composition root: the one place that turns settings into real ports and an engine."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import RedisError

from bot.app import App, moderation_desk
from bot.consequence import parse_consequence
from bot.directory import Directory, DirectoryConfigError
from bot.engine import Engine
from bot.flow import FlowPolicy
from bot.fraud import Breaker
from bot.gate import Gate, Gatekeeper
from bot.limits import Limits
from bot.moderation import EveryLog, Moderation, ModLog
from bot.phone import PhonePolicy
from bot.policy import CommunityPolicy, Policies, community_scope
from bot.roles import RoleBook, RoleBookError, RolePlatform, load_role_book
from bot.sanction import GateRules
from bot.settings import ConfigError, Settings
from bot.store import Store
from bot.texts import Catalogue, CatalogueError
from bot.verifier import SandboxVerifier, Verifier, VonageLegacyVerifier, VonageVerifier
from bot.verifier._sdk import SigningAuth, VonageOptions
from bot.verifier.keys import PrivateKeyError, load_private_key
from verifybot.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from verifybot.redis_client import CONNECTION_KWARGS, BoundedRedis

log = structlog.get_logger("verifybot")


def _to_operator(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def signing_auth(settings: Settings) -> SigningAuth:
    if not settings.vonage_application_id:
        raise ConfigError("VONAGE_APPLICATION_ID is not set")
    pem = settings.vonage_private_key.get_secret_value() if settings.vonage_private_key else None
    try:
        key = load_private_key(pem=pem, path=settings.vonage_private_key_path)
    except PrivateKeyError as exc:
        raise ConfigError(str(exc)) from None
    return SigningAuth(settings.vonage_application_id, key)


def build_verifier(
    settings: Settings, *, show_code: Callable[[str], None] = _to_operator
) -> Verifier:
    kind = settings.verifier_kind
    options = VonageOptions(
        brand=settings.vonage_brand_name,
        api_host=settings.vonage_api_host,
        rest_host=settings.vonage_rest_host,
        timeout=settings.vonage_timeout_seconds,
        code_length=settings.code_length,
        max_workers=settings.vonage_max_concurrency,
        start_attempts=settings.vonage_start_attempts,
        retry_wait=settings.vonage_retry_wait_seconds,
    )
    if kind == "vonage":
        return VonageVerifier(
            signing_auth(settings),
            options,
            channel_timeout=settings.vonage_channel_timeout,
            fallback_channels=settings.vonage_fallback_channels,
        )
    if kind == "vonage-legacy":
        if settings.vonage_api_key is None or settings.vonage_api_secret is None:
            raise ConfigError("VONAGE_API_KEY and VONAGE_API_SECRET are both needed")
        try:
            return VonageLegacyVerifier(
                api_key=settings.vonage_api_key,
                api_secret=settings.vonage_api_secret.get_secret_value(),
                options=options,
                pin_expiry=settings.code_validity_seconds,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return SandboxVerifier(
        show_code, code_length=settings.code_length, validity=settings.code_validity_seconds
    )


def flow_policy(settings: Settings) -> FlowPolicy:
    return FlowPolicy(
        phone=PhonePolicy(
            default_region=settings.default_region,
            allowed_countries=settings.allowed_countries,
            blocked_countries=settings.blocked_countries,
            allowed_types=settings.allowed_number_types,
            # Docs' fictional numbers are for demos; a real verifier would charge for them.
            accept_fictional=settings.verifier_kind == "sandbox",
        ),
        code_length=settings.code_length,
        code_validity=float(settings.code_validity_seconds),
        resend_cooldown=float(settings.resend_cooldown_seconds),
        start_lease=settings.vonage_start_lease,
        # A check is sent once; after a lost answer, one look-up (legacy search) follows.
        check_lease=float(2 * settings.vonage_timeout_seconds + 15),
        max_accounts_per_phone=settings.max_accounts_per_phone,
    )


def community_defaults(settings: Settings) -> dict[str, CommunityPolicy]:
    """Each platform's policy for communities that set nothing of their own."""
    common = CommunityPolicy(
        gate_mode=settings.telegram_gate_mode,
        verify_timeout=settings.telegram_verify_timeout,
        consequence=parse_consequence(settings.telegram_consequence),  # checked by Settings
        ban_after_failures=settings.ban_after_failures,
        admit_verified=settings.telegram_admit_verified,
        allowed_countries=settings.allowed_countries,
        blocked_countries=settings.blocked_countries,
        allowed_number_types=settings.allowed_number_types,
        max_accounts_per_phone=settings.max_accounts_per_phone,
        default_language=settings.default_language.lower(),
        auto_roles=settings.auto_roles,
    )
    return {
        "telegram": replace(common, log_chat=settings.telegram_log_chat_id),
        "slack": replace(common, log_chat=settings.slack_log_channel),
        "": common,
    }


def limits_from(settings: Settings) -> Limits:
    return Limits(
        starts_per_member=settings.limit_starts_per_member,
        sms_per_phone=settings.limit_sms_per_phone,
        sms_per_prefix=settings.limit_sms_per_prefix,
        sms_per_country=settings.limit_sms_per_country,
        sms_global=settings.limit_sms_global,
        wrong_codes_per_member=settings.limit_wrong_codes_per_member,
    )


def breaker_from(settings: Settings) -> Breaker:
    return Breaker(
        enabled=settings.fraud_breaker,
        window=settings.fraud_window,
        cooldown=settings.fraud_cooldown,
        min_conversion=settings.fraud_min_conversion,
        min_sends_prefix=settings.fraud_min_sends,
        min_sends_country=settings.fraud_min_sends_country,
    )


def admin_ids(settings: Settings) -> dict[str, frozenset[str]]:
    return {
        "telegram": frozenset(settings.telegram_admin_ids),
        "slack": frozenset(settings.slack_admin_ids),
    }


def load_roles(settings: Settings) -> RoleBook:
    try:
        return load_role_book(settings.roles_file, settings.roles, settings.auto_roles)
    except RoleBookError as exc:
        raise ConfigError(str(exc)) from None


def redact_url(url: str) -> str:
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)


def load_catalogue(settings: Settings) -> Catalogue:
    try:
        return Catalogue.load(settings.texts_dir, settings.default_language)
    except CatalogueError as exc:
        raise ConfigError(str(exc)) from None


def open_directory(settings: Settings, *, upgrade: bool = True) -> Directory:
    try:
        directory = Directory(
            settings.database_url,
            max_accounts_per_phone=settings.max_accounts_per_phone,
            timeout=settings.database_timeout_seconds,
        )
    except DirectoryConfigError as exc:
        raise ConfigError(str(exc)) from None
    except Exception as exc:
        raise _unopenable(settings, exc) from None
    if upgrade:
        try:
            directory.upgrade()
        except Exception as exc:
            directory.close()
            raise _unopenable(settings, exc) from None
    return directory


def _unopenable(settings: Settings, exc: Exception) -> ConfigError:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return ConfigError(
        f"cannot open the database {redact_url(settings.database_url)}: "
        f"{exc.__class__.__name__}: {first_line}"
    )


#: Under Sentinel, how long a number's claim waits for a replica before Vonage is called
#: (README, "High availability"): a replica acknowledges in well under a millisecond here.
REPLICA_WAIT_SECONDS = 0.5
#: Sentinels and a primary that do not answer within this are treated as down.
SENTINEL_SOCKET_TIMEOUT = 2.0


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool, but waiting for a free connection instead of raising
    MaxConnectionsError (DEPENDENCY-NOTES: redis-py 8's default pools raise at 100)."""


def sentinel_client(settings: Settings) -> Redis:
    """The primary that REDIS_SENTINELS name REDIS_SENTINEL_MASTER, followed after a
    failover: a demoted primary's ReadOnlyError and a dead one's errors reach the engine as
    ConnectionErrors (the member's "try again"), and the next connection asks the sentinels."""
    sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8.2
        list(settings.redis_sentinels),
        sentinel_kwargs={
            "socket_timeout": SENTINEL_SOCKET_TIMEOUT,
            "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT,
        },
        socket_connect_timeout=SENTINEL_SOCKET_TIMEOUT,
    )
    client: Redis = sentinel.master_for(
        settings.redis_sentinel_master or "",
        redis_class=BoundedRedis,
        connection_pool_class=BlockingSentinelPool,
        max_connections=settings.redis_max_connections,
        timeout=None,
        socket_timeout=None,
    )
    return client


def redis_where(settings: Settings) -> str:
    """Where Redis is, for the operator (no password)."""
    if settings.redis_sentinels:
        hosts = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
        return f"sentinels {hosts} (master {settings.redis_sentinel_master})"
    return redact_url(settings.redis_url) if settings.redis_url else "embedded"


@asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[Redis]:
    if settings.redis_sentinels:
        redis = sentinel_client(settings)
        try:
            try:
                await redis.ping()
            except (RedisError, OSError) as exc:
                raise ConfigError(
                    f"cannot reach Redis through {redis_where(settings)}: {exc}"
                ) from None
            yield redis
        finally:
            await redis.aclose()
        return
    embedded: EmbeddedRedis | None = None
    url = settings.redis_url
    if url is None:
        embedded = EmbeddedRedis(settings.data_dir)
        try:
            embedded.start()
        except EmbeddedRedisError as exc:
            raise ConfigError(f"cannot start the embedded Redis: {exc}") from None
        url = embedded.url
        log.info(
            "embedded_redis",
            socket=str(embedded.socket_path),
            note="REDIS_URL is not set, so a private Redis runs under DATA_DIR; "
            "set REDIS_URL to share state between workers",
        )
    # Blocking, so a burst of updates waits for a connection instead of failing; each
    # command's own deadline bounds that wait (``verifybot.redis_client``).
    pool = BlockingConnectionPool.from_url(
        url, max_connections=settings.redis_max_connections, timeout=None, **CONNECTION_KWARGS
    )
    redis = BoundedRedis(connection_pool=pool)
    try:
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            raise ConfigError(f"cannot reach Redis at {redact_url(url)}: {exc}") from None
        yield redis
    finally:
        await redis.aclose()
        await pool.disconnect()
        if embedded is not None:
            embedded.stop()


@asynccontextmanager
async def open_app(
    settings: Settings,
    *,
    show_code: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[App]:
    """Everything the bot needs, opened in order of what fails most plainly first."""
    catalogue = load_catalogue(settings)
    roles = load_roles(settings)
    defaults = community_defaults(settings)
    verifier = build_verifier(settings, **({"show_code": show_code} if show_code else {}))
    try:
        directory = open_directory(settings)
        try:
            async with open_redis(settings) as redis:
                store = Store(
                    redis,
                    prefix=settings.redis_prefix,
                    conversation_ttl=settings.conversation_ttl_seconds,
                    duplicate_ttl=settings.duplicate_ttl_seconds,
                    max_in_flight=settings.redis_max_connections,
                    replicas=1 if settings.redis_sentinels else 0,
                    replica_timeout=REPLICA_WAIT_SECONDS,
                )
                policies = Policies(redis, directory, defaults, prefix=settings.redis_prefix)
                engine = Engine(
                    store=store,
                    directory=directory,
                    verifier=verifier,
                    policy=flow_policy(settings),
                    limits=limits_from(settings),
                    clock=clock,
                    breaker=breaker_from(settings),
                    policies=policies,
                )
                if verifier.name == "sandbox":
                    log.warning(
                        "sandbox_verifier",
                        note="no Vonage credentials: codes are shown here and no SMS is sent",
                    )
                base = engine.policy

                async def accepts(platform: str, place: str, phone: str) -> bool:
                    community = await policies.policy_for(community_scope(platform, place))
                    return community.accepts(phone, base)

                async def rules_for(place: str) -> GateRules:
                    # Held places are Telegram groups today.
                    community = await policies.policy_for(community_scope("telegram", place))
                    return GateRules(community.consequence, community.ban_after_failures)

                gatekeeper = Gatekeeper(
                    Gate(redis, prefix=settings.redis_prefix),
                    directory,
                    admit_anywhere=settings.telegram_admit_verified == "anywhere",
                    timeout=settings.telegram_verify_timeout,
                    clock=clock,
                    rules_for=rules_for,
                    accepts=accepts,
                )
                yield App(
                    settings,
                    engine,
                    catalogue,
                    store,
                    directory,
                    verifier,
                    gatekeeper,
                    roles,
                    admin_ids(settings),
                    policies,
                )
        finally:
            directory.close()
    finally:
        await verifier.aclose()


@asynccontextmanager
async def open_policies(settings: Settings) -> AsyncIterator[Policies]:
    """Every community's policy outside the running bot, for ``verifybot policy``: the same
    ``Policies`` (directory, audit, Redis copy) ``/settings`` changes through."""
    directory = open_directory(settings)
    try:
        async with open_redis(settings) as redis:
            defaults = community_defaults(settings)
            yield Policies(redis, directory, defaults, prefix=settings.redis_prefix)
    finally:
        directory.close()


@asynccontextmanager
async def open_desk(
    settings: Settings, *, connect: bool, redis: bool = False
) -> AsyncIterator[Moderation]:
    """The moderators' desk outside the running bot, for the command line, with its directory.

    ``connect`` reaches each platform whose bot token is set here; its adapter is imported
    only then, so a command that needs no platform never loads an SDK. ``redis`` gives the
    desk the store: for what the running bot must see at once (an unlink), and for the
    commands about what lives there (the fraud breaker's pauses).
    """
    roles, catalogue = load_roles(settings), load_catalogue(settings)
    directory = open_directory(settings)
    try:
        platforms: dict[str, RolePlatform] = {}
        logs: list[ModLog] = []
        async with AsyncExitStack() as stack:
            store = None
            if redis:
                client = await stack.enter_async_context(open_redis(settings))
                store = Store(client, prefix=settings.redis_prefix, max_in_flight=4)
            if connect and settings.telegram_bot_token is not None:
                from adapters.telegram import roles as telegram_roles

                telegram = await stack.enter_async_context(
                    telegram_roles.standalone(settings, catalogue)
                )
                platforms["telegram"] = telegram
                logs += filter(None, [telegram_roles.mod_log(telegram, settings, catalogue)])
            if connect and settings.slack_bot_token is not None:
                from adapters.slack import roles as slack_roles

                slack = await stack.enter_async_context(slack_roles.standalone(settings, catalogue))
                platforms["slack"] = slack
                logs += filter(None, [slack_roles.mod_log(slack, settings, catalogue)])
            yield moderation_desk(
                directory, roles, admin_ids(settings), platforms, EveryLog(logs), store=store
            )
    finally:
        directory.close()
