"""The one typed settings object. Nothing else in verifybot reads ``os.environ``.

Values come from the environment and from ``.env`` in the working directory;
``config/.env.example`` documents every one of them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.consequence import parse_consequence
from bot.phone import DEFAULT_SMS_TYPES, TYPE_NAMES
from bot.rates import UNITS, Rate, parse_seconds


class ConfigError(Exception):
    """Bad configuration, explained in one line for the operator."""


_SWITCH = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")


def parse_rates(value: str) -> tuple[Rate, ...]:
    """``"3/10m, 10/1d"`` -> two rates; ``""`` or ``"off"`` -> no limit."""
    if value.strip().lower() in ("", "off", "none"):
        return ()
    rates = []
    for part in value.split(","):
        match = _RATE.match(part)
        if not match:
            raise ValueError(f"{part.strip()!r} is not a rate like 3/10m or 10/1d")
        count, size, unit = match.groups()
        rates.append(Rate(int(count), int(size or 1) * UNITS[unit]))
    return tuple(rates)


Rates = Annotated[tuple[Rate, ...], NoDecode]
Seconds = Annotated[int, NoDecode, Field(ge=0, le=30 * 86400)]
Countries = Annotated[frozenset[str], NoDecode]
Names = Annotated[tuple[str, ...], NoDecode]
Addresses = Annotated[tuple[tuple[str, int], ...], NoDecode]


def parse_addresses(value: str) -> tuple[tuple[str, int], ...]:
    """``"10.0.0.1:26379, [::1]:26379"`` -> ((host, port), …), each host:port checked."""
    addresses = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9_.-]+):(\d{1,5})", part)
        port = int((match.group(2) or match.group(4)) if match else 0)
        if match is None or not 1 <= port <= 65535:
            raise ValueError(f"{part!r} is not a host:port like 10.0.0.5:26379")
        addresses.append((match.group(1) or match.group(3), port))
    return tuple(addresses)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # "NAME=" in .env means "not set", as in config/.env.example.
        env_ignore_empty=True,
    )

    # Vonage
    verifier: Literal["auto", "vonage", "vonage-legacy", "sandbox"] = "auto"
    vonage_application_id: str | None = None
    vonage_private_key_path: Path | None = None
    vonage_private_key: SecretStr | None = None
    vonage_api_key: str | None = None
    vonage_api_secret: SecretStr | None = None
    vonage_brand_name: str = Field("verifybot", min_length=1, max_length=16)
    vonage_api_host: str = "api.nexmo.com"
    vonage_rest_host: str = "rest.nexmo.com"
    vonage_timeout_seconds: int = Field(10, ge=1, le=120)
    vonage_start_attempts: int = Field(3, ge=1, le=10)
    vonage_retry_wait_seconds: float = Field(0.5, ge=0, le=30)
    vonage_fallback_channels: Names = ()
    vonage_channel_timeout: int = Field(300, ge=15, le=900)
    vonage_max_concurrency: int = Field(8, ge=1, le=256)

    # Storage
    redis_url: str | None = None
    redis_prefix: str = "verifybot:"
    redis_max_connections: int = Field(64, ge=2, le=10_000)
    #: Sentinels to ask where the primary is, instead of REDIS_URL.
    redis_sentinels: Addresses = ()
    redis_sentinel_master: str | None = None
    database_url: str = "sqlite:///./verifybot.db"
    database_timeout_seconds: float = Field(5.0, ge=0.5, le=60)
    data_dir: Path = Path(".verifybot")

    # Phone policy and the conversation
    default_region: str | None = None
    allowed_countries: Countries = frozenset()
    blocked_countries: Countries = frozenset()
    allowed_number_types: Annotated[frozenset[str], NoDecode] = DEFAULT_SMS_TYPES
    code_length: int = Field(6, ge=4, le=10)
    code_validity_seconds: int = Field(300, ge=1, le=3600)
    resend_cooldown_seconds: int = Field(30, ge=0, le=3600)
    max_accounts_per_phone: int = Field(1, ge=1, le=1000)
    conversation_ttl_seconds: int = Field(7 * 86400, ge=600)
    duplicate_ttl_seconds: int = Field(25 * 3600, ge=86400)

    # Rate limits: "count/window" rules, comma-separated; "off" disables one.
    limit_starts_per_member: Rates = parse_rates("3/1h")
    limit_sms_per_phone: Rates = parse_rates("3/10m,10/1d")
    limit_sms_per_prefix: Rates = parse_rates("30/1d")
    limit_sms_per_country: Rates = parse_rates("1000/1d")
    limit_sms_global: Rates = parse_rates("5000/1d")
    limit_wrong_codes_per_member: Rates = parse_rates("10/1d")

    # The SMS-fraud breaker (bot/fraud.py); config/.env.example explains the defaults.
    fraud_breaker: bool = True
    fraud_window: Annotated[int, NoDecode, Field(ge=60, le=7 * 86400)] = 86400
    fraud_cooldown: Annotated[int, NoDecode, Field(ge=60, le=30 * 86400)] = 6 * 3600
    fraud_min_conversion: float = Field(0.2, ge=0, le=1)
    fraud_min_sends: int = Field(20, ge=1, le=1_000_000)
    fraud_min_sends_country: int = Field(200, ge=1, le=1_000_000)

    # Serving HTTP (Telegram webhooks, Slack's HTTP mode)
    port: int = Field(8080, ge=1, le=65535)
    listen_host: str = "0.0.0.0"  # noqa: S104 - a bot behind a platform's webhook must listen
    #: /healthz, /readyz and /metrics in long polling and Socket Mode (off when unset).
    health_port: int | None = Field(None, ge=1, le=65535)

    # Telegram
    telegram_bot_token: SecretStr | None = None
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    telegram_gate_mode: Literal["restrict", "join_request", "off"] = "restrict"
    telegram_verify_timeout: Seconds = 0
    telegram_admit_verified: Literal["group", "anywhere"] = "group"
    #: What befalls a member who does not verify in time (``bot.consequence``); a default
    #: that each group's policy may override.
    telegram_consequence: str = "kick"
    #: Deal with a member at once after this many failed verifications in a day; 0 is off.
    ban_after_failures: int = Field(0, ge=0, le=100)
    #: Updates of one group handled at once (a raid's joins are muted side by side).
    telegram_group_concurrency: int = Field(32, ge=1, le=1000)
    #: Messages the bot sends per second, overall (Telegram asks for 30); 0 lifts the pace.
    telegram_send_rate: int = Field(30, ge=0, le=1000)
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_base_url: str = "https://slack.com/api/"
    slack_events_path: str = "/slack/events"
    slack_invite_new_members: bool = True

    # Roles, moderators and admins
    roles_file: Path | None = None
    roles: str | None = None
    auto_roles: Names = ()
    telegram_admin_ids: Names = ()
    slack_admin_ids: Names = ()
    telegram_log_chat_id: str | None = None
    slack_log_channel: str | None = None
    moderator_cache_seconds: int = Field(60, ge=0, le=3600)

    # Stopping: how long in-flight updates may take to finish after SIGTERM.
    shutdown_grace_seconds: int = Field(10, ge=0, le=600)

    # Texts and logs
    default_language: str = "en"
    texts_dir: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"

    @field_validator(
        "limit_starts_per_member",
        "limit_sms_per_phone",
        "limit_sms_per_prefix",
        "limit_sms_per_country",
        "limit_sms_global",
        "limit_wrong_codes_per_member",
        mode="before",
    )
    @classmethod
    def _rates(cls, value: Any) -> Any:
        return parse_rates(value) if isinstance(value, str) else value

    @field_validator("telegram_verify_timeout", "fraud_window", "fraud_cooldown", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        return parse_seconds(value) if isinstance(value, str) else value

    @field_validator("telegram_consequence")
    @classmethod
    def _consequence(cls, value: str) -> str:
        return str(parse_consequence(value))

    @field_validator("fraud_breaker", mode="before")
    @classmethod
    def _on_off(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() not in _SWITCH:
            raise ValueError(f"{value!r} is not on or off")
        return _SWITCH[value.strip().lower()] if isinstance(value, str) else value

    @field_validator("fraud_min_conversion", mode="before")
    @classmethod
    def _fraction(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a fraction like 0.2") from None
        return value

    @field_validator("fraud_min_sends", "fraud_min_sends_country", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().isdigit():
            raise ValueError(f"{value!r} is not a whole number like 20")
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram's own rule for secret_token; anything else is refused by setWebhook.
        secret = value.get_secret_value() if value is not None else None
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ValueError("use 1-256 characters from A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("telegram_api_base_url", "slack_api_base_url", "telegram_webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("slack_events_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /, e.g. /slack/events")
        return value

    @field_validator("auto_roles", mode="before")
    @classmethod
    def _role_names(cls, value: Any) -> Any:
        return parse_role_names(value) if isinstance(value, str) else value

    @field_validator("telegram_admin_ids", mode="before")
    @classmethod
    def _telegram_ids(cls, value: Any) -> Any:
        return _ids(value, r"\d{1,20}", "use numeric Telegram user ids (ask @userinfobot)")

    @field_validator("slack_admin_ids", mode="before")
    @classmethod
    def _slack_ids(cls, value: Any) -> Any:
        return _ids(value, r"[UW][A-Z0-9]{2,}", "use Slack member ids like U0123ABCD")

    @field_validator("telegram_log_chat_id")
    @classmethod
    def _log_chat(cls, value: str | None) -> str | None:
        return parse_telegram_chat(value) if value is not None else None

    @field_validator("slack_log_channel")
    @classmethod
    def _log_channel(cls, value: str | None) -> str | None:
        return parse_slack_channel(value) if value is not None else None

    @field_validator("allowed_countries", "blocked_countries", mode="before")
    @classmethod
    def _countries(cls, value: Any) -> Any:
        return parse_countries(value) if isinstance(value, str) else value

    @field_validator("allowed_number_types", mode="before")
    @classmethod
    def _types(cls, value: Any) -> Any:
        return parse_number_types(value) if isinstance(value, str) else value

    @field_validator("vonage_fallback_channels", mode="before")
    @classmethod
    def _channels(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        channels = tuple(c.strip().lower() for c in value.split(",") if c.strip())
        unknown = sorted(set(channels) - {"voice", "sms", "whatsapp"})
        if unknown:
            raise ValueError(f"unknown channel(s) {', '.join(unknown)}: use voice, sms or whatsapp")
        return channels

    @field_validator("default_region", mode="before")
    @classmethod
    def _region(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper() or None
            if value and value not in phonenumbers.SUPPORTED_REGIONS:
                raise ValueError(f"unknown region {value!r} (use an ISO code such as GB)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        if value and not re.match(r"^(redis|rediss|unix)://", value):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _sentinels(cls, value: Any) -> Any:
        return parse_addresses(value) if isinstance(value, str) else value

    @field_validator("redis_sentinel_master")
    @classmethod
    def _sentinel_master(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", value):
            raise ValueError(
                "use the name in the sentinels' 'sentinel monitor' line, e.g. mymaster"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("must be sqlite:///path or postgresql://user@host/db")
        return value

    @model_validator(mode="after")
    def _one_redis(self) -> Settings:
        if self.redis_sentinels and self.redis_url:
            raise ValueError(
                "set REDIS_URL or REDIS_SENTINELS, not both (the sentinels name the primary)"
            )
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER, the monitored name")
        if self.redis_sentinel_master and not self.redis_sentinels:
            raise ValueError("REDIS_SENTINEL_MASTER needs REDIS_SENTINELS, a host:port list")
        return self

    @model_validator(mode="after")
    def _verifier_has_credentials(self) -> Settings:
        if self.verifier == "vonage" and not self.vonage_application_id:
            raise ValueError("VERIFIER=vonage needs VONAGE_APPLICATION_ID and a private key")
        if self.verifier == "vonage-legacy" and not (
            self.vonage_api_key and self.vonage_api_secret
        ):
            raise ValueError("VERIFIER=vonage-legacy needs VONAGE_API_KEY and VONAGE_API_SECRET")
        if self.vonage_application_id and not (
            self.vonage_private_key or self.vonage_private_key_path
        ):
            raise ValueError(
                "VONAGE_APPLICATION_ID is set but neither VONAGE_PRIVATE_KEY_PATH nor "
                "VONAGE_PRIVATE_KEY is"
            )
        if bool(self.vonage_api_key) != bool(self.vonage_api_secret):
            raise ValueError("set both VONAGE_API_KEY and VONAGE_API_SECRET, or neither")
        return self

    @property
    def verifier_kind(self) -> Literal["vonage", "vonage-legacy", "sandbox"]:
        """``auto`` means Vonage v2 if there is an application, else legacy, else the sandbox."""
        if self.verifier != "auto":
            return self.verifier
        if self.vonage_application_id:
            return "vonage"
        if self.vonage_api_key:
            return "vonage-legacy"
        return "sandbox"

    @property
    def vonage_start_lease(self) -> float:
        """How long a member's SMS request may take before another message may retry it."""
        return float(self.vonage_timeout_seconds * self.vonage_start_attempts + 15)


def _ids(value: Any, pattern: str, hint: str) -> Any:
    """A comma-separated list of platform user ids, each shaped like ``pattern``."""
    if not isinstance(value, str):
        return value
    ids = tuple(part.strip() for part in value.split(",") if part.strip())
    bad = [i for i in ids if not re.fullmatch(pattern, i)]
    if bad:
        raise ValueError(f"{', '.join(bad)}: {hint}")
    return ids


# Parsers shared with a community's own policy (bot/policy.py), so that a value typed in chat
# is refused with the same one line as in the settings file.


def parse_countries(value: str) -> frozenset[str]:
    """``"GB, us"`` -> ``{"GB", "US"}``; ``""`` -> no countries."""
    return _names(value, phonenumbers.SUPPORTED_REGIONS, "country code", "use ISO codes: GB, US")


def parse_number_types(value: str) -> frozenset[str]:
    return _names(value, TYPE_NAMES, "number type", f"use {', '.join(sorted(TYPE_NAMES))}")


def parse_role_names(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip().lower() for p in value.split(",") if p.strip()))


def parse_telegram_chat(value: str) -> str:
    """A Telegram chat id (``-100…``) or a channel's ``@username``."""
    if not re.fullmatch(r"-?\d{1,20}|@[A-Za-z]\w{3,31}", value):
        raise ValueError("use a chat id like -1001234567890 or a channel's @username")
    return value


def parse_slack_channel(value: str) -> str:
    if not re.fullmatch(r"[CG][A-Z0-9]{2,}", value):
        raise ValueError("use a channel id like C0123ABCD (not a #name)")
    return value


def _names(value: str, known: frozenset[str] | set[str], what: str, hint: str) -> frozenset[str]:
    """A comma-separated list of upper-case names, each one we know."""
    names = frozenset(part.strip().upper() for part in value.split(",") if part.strip())
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(f"unknown {what}(s) {', '.join(unknown)} ({hint})")
    return names


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning validation errors into one operator-readable line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "bad configuration: " + "; ".join(problems)
