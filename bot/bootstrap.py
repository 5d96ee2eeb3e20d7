"""Wiring: the one place that turns settings into real ports and an engine."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from bot.bus import GatePort, desk_handler, gate_handler
from bot.directory import Directory, DirectoryConfigError
from bot.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from bot.engine import Engine
from bot.flow import FlowPolicy
from bot.gate import Gate, Gatekeeper
from bot.limits import Limits
from bot.moderation import Moderation, ModLog
from bot.phone import PhonePolicy
from bot.roles import RoleBook, RoleBookError, RolePlatform, load_role_book
from bot.settings import ConfigError, Settings
from bot.store import Store
from bot.texts import Catalogue, CatalogueError
from bot.verifier import build_verifier
from bot.verifier.base import Verifier

log = structlog.get_logger("verifybot")


@dataclass(frozen=True)
class App:
    settings: Settings
    engine: Engine
    catalogue: Catalogue
    store: Store
    directory: Directory
    verifier: Verifier
    gatekeeper: Gatekeeper
    roles: RoleBook

    def moderation(
        self, platforms: Mapping[str, RolePlatform], log: ModLog | None = None
    ) -> Moderation:
        """The moderators' desk for an adapter, acting through its ``platforms``."""
        return Moderation(
            self.directory,
            self.roles,
            platforms,
            log,
            store=self.store,
            admins=admin_ids(self.settings),
        )

    def follow_verifications(
        self, platform: str, moderation: Moderation, gate: GatePort | None = None
    ) -> None:
        """What follows a verification on ``platform`` (``bot.bus``): its gate lets the
        member in, then the moderators' desk logs it and grants ``AUTO_ROLES``."""
        opening = [gate_handler(gate)] if gate is not None else []
        self.engine.bus.register(platform, [*opening, desk_handler(moderation)])


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
            settings.database_url, max_accounts_per_phone=settings.max_accounts_per_phone
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


@asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[Redis]:
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
    # Blocking, so a burst of updates waits for a connection instead of failing.
    pool = BlockingConnectionPool.from_url(
        url, max_connections=settings.redis_max_connections, timeout=10
    )
    redis = Redis(connection_pool=pool)
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
    settings: Settings, *, show_code: Callable[[str], None] | None = None
) -> AsyncIterator[App]:
    """Everything the bot needs, opened in order of what fails most plainly first."""
    catalogue = load_catalogue(settings)
    roles = load_roles(settings)
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
                )
                engine = Engine(
                    store=store,
                    directory=directory,
                    verifier=verifier,
                    policy=flow_policy(settings),
                    limits=Limits.from_settings(settings),
                )
                if verifier.name == "sandbox":
                    log.warning(
                        "sandbox_verifier",
                        note="no Vonage credentials: codes are shown here and no SMS is sent",
                    )
                gatekeeper = Gatekeeper(
                    Gate(redis, prefix=settings.redis_prefix),
                    directory,
                    admit_anywhere=settings.telegram_admit_verified == "anywhere",
                    timeout=settings.telegram_verify_timeout,
                )
                yield App(
                    settings, engine, catalogue, store, directory, verifier, gatekeeper, roles
                )
        finally:
            directory.close()
    finally:
        await verifier.aclose()
