"""The Vonage verifiers through the real ``vonage`` SDK against the TLS emulator:
every outcome mapped, faults survived, and never a second SMS."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from structlog.testing import capture_logs

from bot.flow import (
    CheckFailed,
    CheckLost,
    CodeAccepted,
    CodeExpired,
    CodeRejected,
    Failure,
    ResendFailed,
    Resent,
    StartFailed,
    TooManyAttempts,
    VerificationStarted,
)
from bot.settings import ConfigError, Settings
from bot.verifier._sdk import SigningAuth
from bot.verifier.base import Verifier
from tests.conftest import VONAGE_API_KEY, VONAGE_API_SECRET, VONAGE_APP_ID
from tests.emulators.vonage import VonageEmulator
from verifybot.bootstrap import build_verifier

PHONE = "+447400123456"
DIGITS = PHONE.removeprefix("+")


def pem(key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


@pytest.fixture
async def legacy(vonage_settings: Callable[..., Settings]) -> AsyncIterator[Verifier]:
    settings = vonage_settings(
        vonage_application_id=None, vonage_private_key_path=None,
        vonage_api_key=VONAGE_API_KEY, vonage_api_secret=VONAGE_API_SECRET,
    )  # fmt: skip
    verifier = build_verifier(settings)
    yield verifier
    await verifier.aclose()


def starts(vonage: VonageEmulator, path: str = "/v2/verify") -> list[Any]:
    return [c for c in vonage.calls if c.method == "POST" and c.path == path]


# --- v2 ---------------------------------------------------------------------------------


async def test_v2_start_sends_what_the_operator_configured(
    v2: Verifier, vonage: VonageEmulator
) -> None:
    started = await v2.start(PHONE, locale="es-MX")
    assert isinstance(started, VerificationStarted)
    (call,) = starts(vonage)
    assert call.auth == "jwt" and call.status == 202
    assert call.body["brand"] == "Acme Club"
    assert call.body["code_length"] == 6
    assert call.body["locale"] == "es-mx"
    assert call.body["workflow"] == [{"channel": "sms", "to": DIGITS}]
    assert len(vonage.last_code(DIGITS)) == 6


async def test_v2_right_code(v2: Verifier, vonage: VonageEmulator) -> None:
    started = await v2.start(PHONE)
    assert isinstance(started, VerificationStarted)
    assert await v2.check(started.request_id, vonage.last_code(DIGITS)) == CodeAccepted()


async def test_v2_three_wrong_codes_end_the_request(v2: Verifier, vonage: VonageEmulator) -> None:
    started = await v2.start(PHONE)
    assert isinstance(started, VerificationStarted)
    wrong = "000000" if vonage.last_code(DIGITS) != "000000" else "111111"
    answers = [await v2.check(started.request_id, wrong) for _ in range(3)]
    assert answers == [CodeRejected(), CodeRejected(), TooManyAttempts()]


async def test_v2_expired_and_unknown_requests(v2: Verifier, vonage: VonageEmulator) -> None:
    started = await v2.start(PHONE)
    assert isinstance(started, VerificationStarted)
    vonage.expire(started.request_id)
    assert await v2.check(started.request_id, "123456") == CodeExpired()
    assert await v2.check("c6f2e2a2-0000-4000-8000-000000000000", "123456") == CodeExpired()


async def test_v2_a_concurrent_start_adopts_the_request_in_flight(
    v2: Verifier, vonage: VonageEmulator
) -> None:
    first = await v2.start(PHONE)
    second = await v2.start(PHONE)
    # Adopting is safe only for the number's claim holder; the engine sees to that.
    assert isinstance(first, VerificationStarted) and not first.adopted
    assert second == VerificationStarted(first.request_id, adopted=True)
    assert [c.status for c in starts(vonage)] == [202, 409]
    assert len(vonage.codes_sent_to(DIGITS)) == 1


async def test_v2_a_dropped_connection_never_becomes_a_second_sms(
    v2: Verifier, vonage: VonageEmulator
) -> None:
    vonage.inject("drop_after", path_prefix="/v2/verify")
    started = await v2.start(PHONE)
    assert isinstance(started, VerificationStarted)
    # The SDK re-sent the POST; Vonage answered 409 with the first id, which we adopted.
    assert [c.status for c in starts(vonage)] == [0, 409]
    assert vonage.request_ids_to(DIGITS) == [started.request_id]
    assert len(vonage.codes_sent_to(DIGITS)) == 1


async def test_v2_a_timeout_is_retried_and_the_late_request_adopted(
    v2: Verifier, vonage: VonageEmulator
) -> None:
    vonage.timeout_delay = 3.0
    vonage.inject("timeout", path_prefix="/v2/verify")
    started = await v2.start(PHONE)
    assert isinstance(started, VerificationStarted)
    assert vonage.request_ids_to(DIGITS) == [started.request_id]
    assert len(vonage.codes_sent_to(DIGITS)) == 1


@pytest.mark.parametrize("fault", ["500", "503", "429"])
async def test_v2_transient_failures_are_retried(
    v2: Verifier, vonage: VonageEmulator, fault: str
) -> None:
    vonage.inject(fault, path_prefix="/v2/verify", times=2)
    assert isinstance(await v2.start(PHONE), VerificationStarted)
    assert len(starts(vonage)) == 3


async def test_v2_persistent_rate_limiting_is_reported_as_throttled(
    v2: Verifier, vonage: VonageEmulator
) -> None:
    vonage.inject("429", path_prefix="/v2/verify", times=3)
    assert await v2.start(PHONE) == StartFailed(Failure.THROTTLED)


async def test_v2_a_check_is_never_retried(v2: Verifier, vonage: VonageEmulator) -> None:
    started = await v2.start(PHONE)
    assert isinstance(started, VerificationStarted)
    vonage.inject("500", path_prefix=f"/v2/verify/{started.request_id}")
    assert await v2.check(started.request_id, "123456") == CheckFailed(Failure.UNAVAILABLE)
    checks = [c for c in vonage.calls if c.path == f"/v2/verify/{started.request_id}"]
    assert len(checks) == 1


@pytest.mark.parametrize("fault", ["drop_after", "timeout"])
async def test_v2_a_check_whose_answer_is_lost_is_not_re_sent_and_is_lost(
    v2: Verifier, vonage: VonageEmulator, fault: str
) -> None:
    started = await v2.start(PHONE)
    assert isinstance(started, VerificationStarted)
    vonage.inject(fault, path_prefix=f"/v2/verify/{started.request_id}")
    assert await v2.check(started.request_id, vonage.last_code(DIGITS)) == CheckLost()
    checks = [c for c in vonage.calls if c.path == f"/v2/verify/{started.request_id}"]
    assert len(checks) == 1


async def test_v2_a_resend_whose_answer_is_lost_is_not_re_sent(
    vonage_settings: Callable[..., Settings], vonage: VonageEmulator
) -> None:
    verifier = build_verifier(vonage_settings(vonage_fallback_channels="sms"))
    try:
        started = await verifier.start(PHONE)
        assert isinstance(started, VerificationStarted)
        path = f"/v2/verify/{started.request_id}/next_workflow"
        vonage.inject("drop_after", path_prefix=path)
        assert await verifier.resend(started.request_id) == ResendFailed(Failure.UNAVAILABLE)
        assert sum(c.path == path for c in vonage.calls) == 1
        assert len(vonage.codes_sent_to(DIGITS)) == 2  # the one resend, not two
    finally:
        await verifier.aclose()


async def test_v2_an_invalid_number_is_refused(v2: Verifier, vonage: VonageEmulator) -> None:
    assert await v2.start("+12") == StartFailed(Failure.INVALID_NUMBER)


async def test_v2_resend_without_a_fallback_channel_is_refused(
    v2: Verifier, vonage: VonageEmulator
) -> None:
    started = await v2.start(PHONE)
    assert isinstance(started, VerificationStarted)
    assert await v2.resend(started.request_id) == ResendFailed(Failure.NO_MORE_RESENDS)


async def test_v2_resend_moves_to_the_fallback_channel(
    vonage_settings: Callable[..., Settings], vonage: VonageEmulator
) -> None:
    verifier = build_verifier(vonage_settings(vonage_fallback_channels="voice"))
    try:
        started = await verifier.start(PHONE)
        assert isinstance(started, VerificationStarted)
        assert await verifier.resend(started.request_id) == Resent()
        codes = vonage.codes_sent_to(DIGITS)
        assert len(codes) == 2 and codes[0] == codes[1]
        assert [d.channel for d in vonage.deliveries] == ["sms", "voice"]
    finally:
        await verifier.aclose()


async def test_v2_goes_through_the_proxy_its_environment_names(
    vonage_settings: Callable[..., Settings],
    vonage: VonageEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        refusing = f"http://127.0.0.1:{unused.getsockname()[1]}"
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", refusing)
    verifier = build_verifier(vonage_settings())
    try:
        assert await verifier.start(PHONE) == StartFailed(Failure.UNAVAILABLE)
        assert starts(vonage) == []  # every attempt went to the proxy, which refused it
    finally:
        await verifier.aclose()

    monkeypatch.setenv("no_proxy", "127.0.0.1")  # Vonage's host is exempt: straight there
    verifier = build_verifier(vonage_settings())
    try:
        assert isinstance(await verifier.start(PHONE), VerificationStarted)
    finally:
        await verifier.aclose()


async def test_v2_cancel(v2: Verifier, vonage: VonageEmulator) -> None:
    started = await v2.start(PHONE)
    assert isinstance(started, VerificationStarted)
    await v2.cancel(started.request_id)
    assert await v2.check(started.request_id, vonage.last_code(DIGITS)) == CodeExpired()


async def test_bad_credentials_are_the_operators_problem_logged_once(
    vonage_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    verifier = build_verifier(
        vonage_settings(vonage_private_key=pem(stranger, serialization.PrivateFormat.PKCS8),
                        vonage_private_key_path=None)
    )  # fmt: skip
    try:
        with capture_logs() as logs:
            assert await verifier.start(PHONE) == StartFailed(Failure.UNAVAILABLE)
            assert await verifier.start(PHONE) == StartFailed(Failure.UNAVAILABLE)
        loud = [entry for entry in logs if entry["log_level"] == "critical"]
        assert len(loud) == 1
        assert loud[0]["problem"] == "bad credentials"
    finally:
        await verifier.aclose()


# --- private keys in every form operators have them -----------------------------------


@pytest.mark.parametrize(
    "form", ["pkcs1_file_without_extension", "pkcs8_in_env_with_escaped_newlines"]
)
async def test_keys_the_sdk_refuses_are_converted(
    vonage_settings: Callable[..., Settings], vonage_key: Any, vonage: VonageEmulator,
    tmp_path: Path, form: str,
) -> None:  # fmt: skip
    if form == "pkcs1_file_without_extension":
        secret = tmp_path / "vonage_private_key"  # a Docker secret has no extension
        secret.write_text(pem(vonage_key, serialization.PrivateFormat.TraditionalOpenSSL))
        assert "BEGIN RSA PRIVATE KEY" in secret.read_text()
        settings = vonage_settings(vonage_private_key_path=secret)
    else:
        escaped = pem(vonage_key, serialization.PrivateFormat.PKCS8).replace("\n", "\\n")
        settings = vonage_settings(vonage_private_key_path=None, vonage_private_key=escaped)
    verifier = build_verifier(settings)
    try:
        assert isinstance(await verifier.start(PHONE), VerificationStarted)
    finally:
        await verifier.aclose()


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read it"), ("not a key", "is not an unencrypted PEM private key")],
)
def test_a_bad_key_file_is_one_clear_line(
    vonage_settings: Callable[..., Settings], tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "key.pem"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        build_verifier(vonage_settings(vonage_private_key_path=path))


@pytest.mark.parametrize(
    ("locale", "v2_tag", "legacy_tag"),
    [
        ("es-MX", "es-mx", "es-mx"),
        ("es", "es-es", "es-es"),
        ("pt_BR", "pt-br", "pt-br"),
        ("ja", None, "ja-jp"),
        ("xx", None, None),
        (None, None, None),
    ],
)
def test_the_members_locale_becomes_one_vonage_supports(
    locale: str | None, v2_tag: str | None, legacy_tag: str | None
) -> None:
    from vonage_verify.enums import Locale
    from vonage_verify_legacy.language_codes import LanguageCode

    from bot.verifier._sdk import message_language

    assert message_language(locale, frozenset(x.value for x in Locale)) == v2_tag
    assert message_language(locale, frozenset(x.value for x in LanguageCode)) == legacy_tag


def test_a_jwt_is_signed_once_and_reused_until_near_expiry(vonage_key: Any) -> None:
    now = [1_700_000_000.0]
    auth = SigningAuth(VONAGE_APP_ID, vonage_key, clock=lambda: now[0])
    first = auth.create_jwt_auth_string()
    assert auth.create_jwt_auth_string() == first
    claims = json.loads(base64.urlsafe_b64decode(first.split(b".")[1] + b"=="))
    assert claims["application_id"] == VONAGE_APP_ID
    assert claims["exp"] - claims["iat"] == 900
    assert {"iat", "jti", "exp"} <= set(claims)
    now[0] += 900 - 61
    assert auth.create_jwt_auth_string() == first
    now[0] += 2
    assert auth.create_jwt_auth_string() != first


# --- legacy v1 --------------------------------------------------------------------------


async def test_legacy_logs_a_deprecation_warning_at_startup(
    vonage_settings: Callable[..., Settings],
) -> None:
    with capture_logs() as logs:
        verifier = build_verifier(
            vonage_settings(vonage_application_id=None, vonage_private_key_path=None,
                            vonage_api_key=VONAGE_API_KEY, vonage_api_secret=VONAGE_API_SECRET)
        )  # fmt: skip
    await verifier.aclose()
    assert any("deprecated" in entry.get("message", "") for entry in logs)


async def test_legacy_start_and_right_code(legacy: Verifier, vonage: VonageEmulator) -> None:
    started = await legacy.start(PHONE, locale="pt-BR")
    assert isinstance(started, VerificationStarted)
    (call,) = starts(vonage, "/verify/json")
    assert call.auth == "basic"
    assert call.body["number"] == DIGITS and call.body["code_length"] == "6"
    assert await legacy.check(started.request_id, vonage.last_code(DIGITS)) == CodeAccepted()


async def test_legacy_wrong_codes_then_too_many(legacy: Verifier, vonage: VonageEmulator) -> None:
    started = await legacy.start(PHONE)
    assert isinstance(started, VerificationStarted)
    wrong = "000000" if vonage.last_code(DIGITS) != "000000" else "111111"
    answers = [await legacy.check(started.request_id, wrong) for _ in range(4)]
    assert answers == [CodeRejected(), CodeRejected(), TooManyAttempts(), CodeExpired()]


async def test_legacy_concurrent_start_status_10_is_adopted(
    legacy: Verifier, vonage: VonageEmulator
) -> None:
    vonage.inject("drop_after", path_prefix="/verify/json")
    started = await legacy.start(PHONE)
    assert isinstance(started, VerificationStarted)
    assert vonage.request_ids_to(DIGITS) == [started.request_id]
    assert len(vonage.codes_sent_to(DIGITS)) == 1


@pytest.mark.parametrize(
    ("status", "failure", "loud"),
    [
        ("9", Failure.UNAVAILABLE, True),   # no credit
        ("4", Failure.UNAVAILABLE, True),   # bad credentials
        ("8", Failure.UNAVAILABLE, True),   # account barred
        ("7", Failure.NUMBER_BLOCKED, False),
        ("15", Failure.NUMBER_BLOCKED, False),
        ("3", Failure.INVALID_NUMBER, False),
        ("2", Failure.UNAVAILABLE, False),
        ("5", Failure.UNAVAILABLE, False),  # internal error, after the retries
        ("29", Failure.NUMBER_BLOCKED, True),  # demo mode: the operator must whitelist
    ],
)  # fmt: skip
async def test_legacy_start_statuses(
    legacy: Verifier, vonage: VonageEmulator, status: str, failure: Failure, loud: bool
) -> None:
    vonage.inject(f"status:{status}", path_prefix="/verify/json", times=3)
    with capture_logs() as logs:
        assert await legacy.start(PHONE) == StartFailed(failure)
    assert any(e["log_level"] == "critical" for e in logs) is loud


async def test_legacy_throttling_is_retried(legacy: Verifier, vonage: VonageEmulator) -> None:
    vonage.inject("status:1", path_prefix="/verify/json", times=2)
    assert isinstance(await legacy.start(PHONE), VerificationStarted)


async def test_legacy_resend_and_cancel(legacy: Verifier, vonage: VonageEmulator) -> None:
    started = await legacy.start(PHONE)
    assert isinstance(started, VerificationStarted)
    assert await legacy.resend(started.request_id) == Resent()
    assert len(vonage.codes_sent_to(DIGITS)) == 2
    await legacy.cancel(started.request_id)  # refused after a second event (19): logged, no raise
    expired = await legacy.resend("0" * 32)
    assert expired == CodeExpired()


async def test_legacy_a_resend_whose_answer_is_lost_is_not_re_sent(
    legacy: Verifier, vonage: VonageEmulator
) -> None:
    started = await legacy.start(PHONE)
    assert isinstance(started, VerificationStarted)
    vonage.inject("drop_after", path_prefix="/verify/control/json")
    assert await legacy.resend(started.request_id) == ResendFailed(Failure.UNAVAILABLE)
    assert sum(c.path == "/verify/control/json" for c in vonage.calls) == 1
    assert len(vonage.codes_sent_to(DIGITS)) == 2  # the one resend, not two


# --- every verifier: what the number's claim relies on ----------------------------------


@pytest.mark.parametrize(
    ("kind", "overrides", "lifetime"),
    [
        ("v2", {}, 300.0),  # one SMS channel, channel_timeout 300 s
        ("v2", {"vonage_fallback_channels": "voice"}, 600.0),  # each channel waits 300 s
        ("legacy", {}, 900.0),  # workflow 1: three events 300 s apart outlive a 300 s code
        ("sandbox", {}, 300.0),  # the code's validity
    ],
)
async def test_every_verifier_says_how_long_a_request_lives_and_whether_a_cancel_took(
    vonage_settings: Callable[..., Settings],
    vonage: VonageEmulator,
    kind: str,
    overrides: dict[str, Any],
    lifetime: float,
) -> None:
    credentials: dict[str, dict[str, Any]] = {
        "v2": {},
        "legacy": {"vonage_application_id": None, "vonage_private_key_path": None,
                   "vonage_api_key": VONAGE_API_KEY, "vonage_api_secret": VONAGE_API_SECRET},
        "sandbox": {"vonage_application_id": None, "vonage_private_key_path": None},
    }  # fmt: skip
    verifier = build_verifier(vonage_settings(**credentials[kind], **overrides), show_code=print)
    try:
        assert verifier.request_lifetime == lifetime
        started = await verifier.start(PHONE)
        assert isinstance(started, VerificationStarted)
        assert await verifier.cancel(started.request_id) is True
        assert await verifier.cancel(started.request_id) is False  # already over
    finally:
        await verifier.aclose()
