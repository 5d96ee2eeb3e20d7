"""Settings: one typed object, and one clear line for every bad value."""

from __future__ import annotations

import pytest

from bot.rates import Rate
from bot.settings import ConfigError, load_settings, parse_rates


def settings(**values: object):  # type: ignore[no-untyped-def]
    return load_settings(_env_file=None, **values)


def test_rates_read_like_the_docs() -> None:
    assert parse_rates("3/10m, 10/1d") == (Rate(3, 600), Rate(10, 86400))
    assert parse_rates("5/h") == (Rate(5, 3600),)
    assert parse_rates("off") == ()
    assert str(Rate(3, 600)) == "3/10m"


def test_defaults_need_no_configuration() -> None:
    s = settings()
    assert s.verifier_kind == "sandbox"
    assert s.code_length == 6
    assert s.database_url == "sqlite:///./verifybot.db"
    assert s.limit_sms_per_phone == (Rate(3, 600), Rate(10, 86400))


def test_the_verifier_follows_the_credentials() -> None:
    assert settings(vonage_api_key="k", vonage_api_secret="s").verifier_kind == "vonage-legacy"
    v2 = settings(vonage_application_id="app", vonage_private_key="pem")
    assert v2.verifier_kind == "vonage"


def test_lists_are_comma_separated_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_COUNTRIES", "gb, us")
    monkeypatch.setenv("ALLOWED_NUMBER_TYPES", "mobile")
    monkeypatch.setenv("LIMIT_SMS_GLOBAL", "100/1d")
    s = settings()
    assert s.allowed_countries == frozenset({"GB", "US"})
    assert s.allowed_number_types == frozenset({"MOBILE"})
    assert s.limit_sms_global == (Rate(100, 86400),)


def test_admins_and_auto_roles_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_ADMIN_IDS", "123, 456")
    monkeypatch.setenv("SLACK_ADMIN_IDS", "U0123ABCD")
    monkeypatch.setenv("AUTO_ROLES", "Verified, member, verified")
    s = settings()
    assert (s.telegram_admin_ids, s.slack_admin_ids) == (("123", "456"), ("U0123ABCD",))
    assert s.auto_roles == ("verified", "member")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ALLOWED_COUNTRIES", "GB,XX", "ALLOWED_COUNTRIES: unknown country code(s) XX"),
        ("LIMIT_SMS_PER_PHONE", "lots", "LIMIT_SMS_PER_PHONE: 'lots' is not a rate"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL: must start with redis://"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL: must be sqlite:///path or postgresql://"),
        ("DATABASE_TIMEOUT_SECONDS", "0", "DATABASE_TIMEOUT_SECONDS: Input should be greater"),
        ("DATABASE_TIMEOUT_SECONDS", "soon", "DATABASE_TIMEOUT_SECONDS: Input should be a valid"),
        ("CODE_LENGTH", "3", "CODE_LENGTH"),
        ("ALLOWED_NUMBER_TYPES", "MOBILE,FAX", "unknown number type(s) FAX"),
        ("VERIFIER", "twilio", "VERIFIER"),
        ("DEFAULT_REGION", "XX", "unknown region 'XX'"),
        ("TELEGRAM_ADMIN_IDS", "12345, @boss", "@boss: use numeric Telegram user ids"),
        ("SLACK_ADMIN_IDS", "U0123ABCD,alice", "alice: use Slack member ids like U0123ABCD"),
        ("TELEGRAM_LOG_CHAT_ID", "mods", "use a chat id like -1001234567890"),
        ("TELEGRAM_GROUP_CONCURRENCY", "0", "TELEGRAM_GROUP_CONCURRENCY"),
        ("TELEGRAM_SEND_RATE", "-1", "TELEGRAM_SEND_RATE: Input should be greater than or equal"),
        ("TELEGRAM_SEND_RATE", "1001", "TELEGRAM_SEND_RATE: Input should be less than or equal"),
        ("TELEGRAM_SEND_RATE", "fast", "TELEGRAM_SEND_RATE: Input should be a valid integer"),
        ("SLACK_LOG_CHANNEL", "#mods", "use a channel id like C0123ABCD"),
        ("HEALTH_PORT", "health", "HEALTH_PORT: Input should be a valid integer"),
        ("HEALTH_PORT", "70000", "HEALTH_PORT: Input should be less than or equal to 65535"),
        ("TELEGRAM_CONSEQUENCE", "shame", "TELEGRAM_CONSEQUENCE: 'shame' is not one of kick, ban"),
        ("TELEGRAM_CONSEQUENCE", "mute:1d", "only a ban takes a duration"),
        ("TELEGRAM_CONSEQUENCE", "ban:400d", "a ban lasts from 30s to 366d"),
        ("BAN_AFTER_FAILURES", "-1", "BAN_AFTER_FAILURES: Input should be greater"),
        ("FRAUD_WINDOW", "soon", "FRAUD_WINDOW: 'soon' is not a duration like 90, 15m, 2h or 1d"),
        ("FRAUD_WINDOW", "10", "FRAUD_WINDOW: Input should be greater than or equal to 60"),
        ("FRAUD_COOLDOWN", "2 weeks", "FRAUD_COOLDOWN: '2 weeks' is not a duration"),
        ("FRAUD_COOLDOWN", "60d", "FRAUD_COOLDOWN: Input should be less than or equal to"),
        ("FRAUD_MIN_CONVERSION", "20%", "FRAUD_MIN_CONVERSION: '20%' is not a fraction like 0.2"),
        ("FRAUD_MIN_CONVERSION", "1.5", "FRAUD_MIN_CONVERSION: Input should be less than or"),
        ("FRAUD_MIN_CONVERSION", "-0.1", "FRAUD_MIN_CONVERSION: Input should be greater than"),
        ("FRAUD_MIN_SENDS", "2.5", "FRAUD_MIN_SENDS: '2.5' is not a whole number like 20"),
        ("FRAUD_MIN_SENDS", "0", "FRAUD_MIN_SENDS: Input should be greater than or equal to 1"),
        ("FRAUD_MIN_SENDS_COUNTRY", "many", "FRAUD_MIN_SENDS_COUNTRY: 'many' is not a whole"),
        ("FRAUD_BREAKER", "maybe", "FRAUD_BREAKER: 'maybe' is not on or off"),
    ],
)
def test_bad_values_are_explained_in_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        settings()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_consequence_is_kept_as_the_settings_file_writes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (settings().telegram_consequence, settings().ban_after_failures) == ("kick", 0)
    monkeypatch.setenv("TELEGRAM_CONSEQUENCE", " BAN:168h ")
    monkeypatch.setenv("BAN_AFTER_FAILURES", "3")
    s = settings()
    assert (s.telegram_consequence, s.ban_after_failures) == ("ban:7d", 3)
def test_the_fraud_breaker_s_settings_read_like_the_other_durations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = settings()
    assert (s.fraud_breaker, s.fraud_window, s.fraud_cooldown) == (True, 86400, 6 * 3600)
    assert (s.fraud_min_conversion, s.fraud_min_sends, s.fraud_min_sends_country) == (
        0.2,
        20,
        200,
    )
    monkeypatch.setenv("FRAUD_WINDOW", "90")
    monkeypatch.setenv("FRAUD_COOLDOWN", "15m")
    monkeypatch.setenv("FRAUD_MIN_CONVERSION", "0.35")
    monkeypatch.setenv("FRAUD_MIN_SENDS", "12")
    monkeypatch.setenv("FRAUD_BREAKER", "off")
    s = settings()
    assert (s.fraud_window, s.fraud_cooldown, s.fraud_min_conversion) == (90, 900, 0.35)
    assert (s.fraud_min_sends, s.fraud_breaker) == (12, False)
    monkeypatch.setenv("FRAUD_WINDOW", "2h")
    monkeypatch.setenv("FRAUD_COOLDOWN", "1d")
    assert (settings().fraud_window, settings().fraud_cooldown) == (7200, 86400)


def test_an_application_without_a_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="neither VONAGE_PRIVATE_KEY_PATH nor VONAGE_PRIVATE_KEY"):
        settings(vonage_application_id="app")


def test_secrets_do_not_show_in_the_settings_repr() -> None:
    s = settings(vonage_api_key="key", vonage_api_secret="hunter2")
    assert "hunter2" not in repr(s)


def test_telegram_sends_at_telegrams_pace_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings().telegram_send_rate == 30
    monkeypatch.setenv("TELEGRAM_SEND_RATE", "0")
    assert settings().telegram_send_rate == 0


def test_sentinels_are_a_host_port_list_with_the_master_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)  # a developer's or CI's own Redis
    monkeypatch.setenv("REDIS_SENTINELS", "10.0.0.5:26379, sentinel-b:26380,[::1]:26381")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "mymaster")
    s = settings()
    assert s.redis_sentinels == (("10.0.0.5", 26379), ("sentinel-b", 26380), ("::1", 26381))
    assert (s.redis_sentinel_master, s.redis_url) == ("mymaster", None)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"REDIS_SENTINELS": "10.0.0.5", "REDIS_SENTINEL_MASTER": "m"}, "'10.0.0.5' is not a"),
        ({"REDIS_SENTINELS": "a:26379,b:70000", "REDIS_SENTINEL_MASTER": "m"}, "'b:70000'"),
        ({"REDIS_SENTINELS": "a:26379"}, "REDIS_SENTINELS needs REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINEL_MASTER needs REDIS_SENTINELS"),
        (
            {"REDIS_SENTINELS": "a:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_URL": "redis://x"},
            "set REDIS_URL or REDIS_SENTINELS, not both",
        ),
        ({"SHUTDOWN_GRACE_SECONDS": "-1"}, "SHUTDOWN_GRACE_SECONDS"),
    ],
)
def test_bad_redis_and_shutdown_settings_are_explained_in_one_line(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], message: str
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)  # a developer's or CI's own Redis
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        settings()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
