"""``verifybot doctor``: what is configured, what is reachable, what is missing.

The platform checks import their adapter only when that platform is configured."""

from __future__ import annotations

import re
from collections.abc import Awaitable
from dataclasses import dataclass

from alembic.script import ScriptDirectory

from bot.directory.directory import alembic_config
from bot.settings import ConfigError, Settings
from verifybot.bootstrap import (
    load_catalogue,
    open_directory,
    open_redis,
    redact_url,
    redis_where,
    signing_auth,
)
from verifybot.embedded_redis import redis_server_binary

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_vonage(settings: Settings) -> Check:
    kind = settings.verifier_kind
    if kind == "sandbox":
        return Check(
            "vonage", True,
            "no credentials: the sandbox verifier shows codes in the terminal and sends no SMS "
            "(set VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY_PATH for real SMS)",
        )  # fmt: skip
    if kind == "vonage-legacy":
        return Check(
            "vonage", True,
            f"legacy Verify v1 with API key {settings.vonage_api_key} (deprecated by Vonage; "
            "prefer an application and Verify v2)",
        )  # fmt: skip
    app_id = settings.vonage_application_id or ""
    if not _UUID.match(app_id):
        return Check("vonage", False, f"VONAGE_APPLICATION_ID {app_id!r} is not an application id")
    try:
        signing_auth(settings)
    except ConfigError as exc:
        return Check("vonage", False, str(exc))
    return Check("vonage", True, f"Verify v2, application {app_id}, RSA key loads and signs")


async def check_redis(settings: Settings) -> Check:
    where = redis_where(settings)
    try:
        if settings.redis_url is None and not settings.redis_sentinels:
            redis_server_binary()
        async with open_redis(settings) as redis:
            version = (await redis.info("server")).get("redis_version", "?")
    except ConfigError as exc:
        return Check("redis", False, str(exc))
    return Check("redis", True, f"{where}, Redis {version}")


def check_database(settings: Settings) -> Check:
    try:
        directory = open_directory(settings, upgrade=False)
        try:
            directory.ping()
            revision = directory.revision()
        finally:
            directory.close()
    except ConfigError as exc:
        return Check("database", False, str(exc))
    except Exception as exc:
        return Check(
            "database", False, f"{redact_url(settings.database_url)}: {exc}".splitlines()[0]
        )
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    where = redact_url(settings.database_url)
    if revision != head:
        return Check(
            "database", True,
            f"{where} reachable, schema at {revision or 'nothing'} (head {head}): it is "
            "migrated when the bot starts, or by `verifybot db upgrade`",
        )  # fmt: skip
    return Check("database", True, f"{where}, schema up to date ({head})")


async def check_platforms(settings: Settings) -> list[Check]:
    """Ask each configured platform who the bot is; unconfigured ones are only mentioned."""
    checks = []
    if settings.telegram_bot_token is None:
        checks.append(Check("telegram", True, "not configured (TELEGRAM_BOT_TOKEN is not set)"))
    else:
        from adapters import telegram

        checks.append(await _ask("telegram", telegram.check_connection(settings)))
    if settings.slack_bot_token is None:
        checks.append(Check("slack", True, "not configured (SLACK_BOT_TOKEN is not set)"))
    else:
        from adapters import slack

        checks.append(await _ask("slack", slack.check_connection(settings)))
    return checks


async def _ask(name: str, question: Awaitable[str]) -> Check:
    try:
        return Check(name, True, await question)
    except ConfigError as exc:
        return Check(name, False, str(exc))


def check_ports(settings: Settings) -> Check:
    """Where /healthz, /readyz and /metrics will answer (``verifybot.ops``); informational."""
    own = f"PORT {settings.port}"
    elsewhere = (
        f"HEALTH_PORT {settings.health_port}"
        if settings.health_port is not None
        else "nowhere (HEALTH_PORT is unset)"
    )
    telegram = own if settings.telegram_webhook_url else elsewhere
    mode = "webhook" if settings.telegram_webhook_url else "long polling"
    return Check(
        "health",
        True,
        f"/healthz /readyz /metrics on {settings.listen_host}: Telegram ({mode}) {telegram}; "
        f"Slack HTTP mode {own}, Socket Mode {elsewhere}",
    )


async def run_checks(settings: Settings) -> list[Check]:
    checks = [Check("settings", True, "read from the environment and .env")]
    try:
        catalogue = load_catalogue(settings)
        checks.append(Check("texts", True, f"languages: {', '.join(sorted(catalogue.languages))}"))
    except ConfigError as exc:
        checks.append(Check("texts", False, str(exc)))
    checks.append(check_vonage(settings))
    checks.append(await check_redis(settings))
    checks.append(check_database(settings))
    checks.extend(await check_platforms(settings))
    checks.append(check_ports(settings))
    return checks
