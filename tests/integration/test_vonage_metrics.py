"""What the Vonage verifiers report to /metrics (``bot.metrics``): each call timed by
operation, each failure by its HTTP or legacy status, each start sent again. The real SDK
against the TLS emulator, as in ``test_vonage_verifier``."""

from __future__ import annotations

from prometheus_client import REGISTRY

from bot.flow import CodeRejected, VerificationStarted
from bot.verifier.base import Verifier
from tests.emulators.vonage import VonageEmulator
from tests.integration.test_vonage_verifier import (  # noqa: F401 - a fixture
    DIGITS,
    PHONE,
    legacy,
)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def snapshot() -> dict[str, float]:
    return {
        "start calls": value("verifybot_vonage_request_seconds_count", operation="start"),
        "check calls": value("verifybot_vonage_request_seconds_count", operation="check"),
        "start retries": value("verifybot_vonage_retries_total", operation="start"),
        "start 503": value("verifybot_vonage_errors_total", operation="start", status="503"),
        "check 400": value("verifybot_vonage_errors_total", operation="check", status="400"),
        "check legacy_16": value(
            "verifybot_vonage_errors_total", operation="check", status="legacy_16"
        ),
    }


def changes(before: dict[str, float]) -> dict[str, float]:
    after = snapshot()
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}


async def test_v2_retries_and_a_wrong_code_are_counted(
    v2: Verifier,
    vonage: VonageEmulator,
) -> None:
    before = snapshot()
    vonage.inject("503", path_prefix="/v2/verify", times=2)
    started = await v2.start(PHONE)
    assert isinstance(started, VerificationStarted)
    wrong = "000000" if vonage.last_code(DIGITS) != "000000" else "111111"
    assert await v2.check(started.request_id, wrong) == CodeRejected()
    assert changes(before) == {
        "start calls": 3,
        "start retries": 2,
        "start 503": 2,
        "check calls": 1,
        "check 400": 1,
    }


async def test_legacy_failures_are_counted_by_their_own_status(
    legacy: Verifier,  # noqa: F811 - the fixture imported above
    vonage: VonageEmulator,
) -> None:
    before = snapshot()
    started = await legacy.start(PHONE)
    assert isinstance(started, VerificationStarted)
    wrong = "000000" if vonage.last_code(DIGITS) != "000000" else "111111"
    assert await legacy.check(started.request_id, wrong) == CodeRejected()
    assert changes(before) == {"start calls": 1, "check calls": 1, "check legacy_16": 1}
