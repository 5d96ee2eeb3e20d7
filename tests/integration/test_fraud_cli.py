"""``verifybot fraud status`` and ``verifybot fraud lift``, run as an operator would, against
pauses the store's own script tripped."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from bot.directory import Directory
from bot.flow import Conversation
from bot.fraud import Breaker
from bot.identity import MemberKey
from bot.store import BreakerTripped, Store
from tests.conftest import unconfigured_environment
from tests.integration.test_cli import verifybot

MEMBER = MemberKey("telegram", "bot1", "1")


async def trip(store: Store, phone: str, country: str, sends: int) -> None:
    """Send ``sends`` codes to ``phone``'s prefix and country, none verified, then one more:
    that one trips the breaker."""
    breaker = Breaker(min_sends_prefix=sends, min_sends_country=sends, cooldown=3600)
    now = time.time()
    for _ in range(sends):
        await store.commit(
            MEMBER, Conversation(), version=0, now=now, fraud=breaker.for_sms(phone, country)
        )
    result = await store.commit(
        MEMBER, Conversation(), version=0, now=now, fraud=breaker.for_sms(phone, country)
    )
    assert isinstance(result, BreakerTripped)


@pytest.fixture
def env(tmp_path: Path, redis_url: str, key_prefix: str) -> dict[str, str]:
    return unconfigured_environment(
        REDIS_URL=redis_url,
        REDIS_PREFIX=key_prefix,
        DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}",
    )


async def test_status_lists_each_pause_and_lift_resumes_one(
    store: Store, env: dict[str, str], tmp_path: Path
) -> None:
    nothing = verifybot("fraud", "status", env=env, cwd=tmp_path)
    assert (nothing.returncode, nothing.stdout) == (0, "nothing is paused\n")
    await trip(store, "+447400123456", "GB", sends=4)

    status = verifybot("fraud", "status", env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert len(lines) == 2
    pattern = r"{}\tconversion 0% \(0 of 4 verified\)\tresumes \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
    assert any(re.fullmatch(pattern.format(re.escape("+44740012")), line) for line in lines)
    assert any(re.fullmatch(pattern.format("GB"), line) for line in lines)

    lifted = verifybot("fraud", "lift", "+44740012", env=env, cwd=tmp_path)
    assert lifted.returncode == 0, lifted.stderr
    assert lifted.stdout.strip() == "Codes to +44740012 are sent again."
    left = verifybot("fraud", "status", env=env, cwd=tmp_path).stdout.splitlines()
    assert [line.split("\t")[0] for line in left] == ["GB"]

    assert verifybot("fraud", "lift", "gb", env=env, cwd=tmp_path).returncode == 0
    again = verifybot("fraud", "lift", "GB", env=env, cwd=tmp_path)
    assert again.returncode == 1 and "GB isn't paused." in again.stderr
    bad = verifybot("fraud", "lift", "nowhere", env=env, cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "verifybot: 'nowhere' is neither a country's ISO code (ES) nor a prefix (+3461234)"
    ]
    # Each lift is audited in the operator's name.
    directory = Directory(env["DATABASE_URL"])
    try:
        trail = [e for e in directory.audit_trail() if e.event == "fraud_lifted"]
    finally:
        directory.close()
    assert sorted((e.subject, e.details["was_paused"]) for e in trail) == [
        ("country:GB", False),
        ("country:GB", True),
        ("prefix:+44740012", True),
    ]
    assert {e.actor.split(":")[0] for e in trail} == {"cli"}
