"""The SMS-fraud breaker, played as an attack: members who text numbers in one prefix and never
enter a code, while the rest of the community verifies as usual.

Real Redis, a real SQLite directory, and the real vonage SDK (Verify v2) against the emulator:
what the emulator delivered is what Vonage would have charged for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from bot.app import App
from bot.desk_commands import Request, answer
from bot.engine import Outcome
from bot.flow import Duration, Reply, Resend, Start, Text
from bot.fraud import Scope
from bot.identity import Member, MemberKey
from bot.moderation import Actor, Moderation, Rank
from tests.conftest import VONAGE_APP_ID, Inbox
from tests.emulators.vonage import VonageEmulator
from verifybot.bootstrap import open_app

MIN_SENDS = 10
#: The attack's block of numbers: +44 7400 12xxxx (valid UK mobiles).
ATTACKED = "+44740012"
ADMIN = Actor(MemberKey("telegram", "bot1", "1"), Rank.ADMIN, "Ada")
MODERATOR = Actor(MemberKey("telegram", "bot1", "2"), Rank.MODERATOR, "Mo")


def attacker(i: int) -> tuple[Member, str]:
    return Member(MemberKey("telegram", "bot1", str(5000 + i))), f"{ATTACKED}{i:04d}"


def neighbour(i: int) -> tuple[Member, str]:
    """A member of the community: a number in a prefix of their own, a country or two."""
    number = f"+4474005{i:02d}{i:03d}" if i % 3 else f"+346123{i:02d}{i:03d}"
    return Member(MemberKey("telegram", "bot1", str(7000 + i))), number


def keys(outcome: Outcome) -> list[str]:
    return [reply.key for reply in outcome.replies]


@dataclass
class ModLogLines:
    """The moderators' log chat, as the desk posts to it."""

    lines: list[Reply] = field(default_factory=list)

    async def post(self, line: Reply, *, chat: str | None = None) -> None:
        self.lines.append(line)


def by(app: App, actor: Actor) -> list[Any]:
    """The audit trail's entries in ``actor``'s name, oldest first."""
    return [e for e in reversed(app.directory.audit_trail()) if e.actor == str(actor.key)]


def trips_counted(scope: str) -> float:
    value = REGISTRY.get_sample_value("verifybot_fraud_trips_total", {"scope": scope})
    return value or 0.0


@pytest.fixture
def settings_for(
    make_settings: Callable[..., Any], vonage: VonageEmulator, key_file: Path
) -> Callable[..., Any]:
    def make(**overrides: Any) -> Any:
        values: dict[str, Any] = {
            "vonage_api_host": vonage.host,
            "vonage_application_id": VONAGE_APP_ID,
            "vonage_private_key_path": key_file,
            "vonage_timeout_seconds": 2,
            "vonage_retry_wait_seconds": 0.01,
            # Static caps far away: what stops the attack here must be the breaker.
            "limit_sms_per_prefix": "1000/1d",
            "limit_sms_per_country": "10000/1d",
            "limit_starts_per_member": "100/1h",
            "resend_cooldown_seconds": 0,
            "fraud_min_sends": str(MIN_SENDS),
            "fraud_min_conversion": "0.2",
            "fraud_window": "1h",
            "fraud_cooldown": "6h",
            **overrides,
        }
        return make_settings(**values)

    return make


@pytest.fixture
async def workers(
    settings_for: Callable[..., Any],
) -> AsyncIterator[Callable[..., Any]]:
    async with AsyncExitStack() as stack:

        async def open_workers(count: int = 1, **overrides: Any) -> list[App]:
            settings = settings_for(**overrides)
            return [
                await stack.enter_async_context(open_app(settings, show_code=Inbox()))
                for _ in range(count)
            ]

        yield open_workers


def desk(app: App, log: ModLogLines) -> Moderation:
    """The running bot's desk on Telegram, with the log chat; what follows a verification
    (and a trip) on Telegram goes to it."""
    moderation = app.moderation({}, log)
    app.follow_verifications("telegram", moderation)
    return moderation


def codes_to(vonage: VonageEmulator, prefix: str) -> int:
    digits = prefix.removeprefix("+")
    return sum(d.to.removeprefix("+").startswith(digits) for d in vonage.deliveries)


async def ask(app: App, member: Member, number: str) -> Outcome:
    await app.engine.handle(member, Start())
    return await app.engine.handle(member, Text(number))


async def verify(app: App, vonage: VonageEmulator, member: Member, number: str) -> list[str]:
    sent = await ask(app, member, number)
    assert keys(sent) == ["code.sent"], keys(sent)
    done = await app.engine.handle(member, Text(vonage.last_code(number.removeprefix("+"))))
    return keys(done)


async def test_a_pumping_attack_on_one_prefix_is_stopped_and_the_community_keeps_verifying(
    workers: Callable[..., Any], vonage: VonageEmulator
) -> None:
    (app,) = await workers()
    log = ModLogLines()
    moderation = desk(app, log)
    before = trips_counted("prefix")
    answers: list[list[str]] = []
    with capture_logs() as logs:
        for i in range(50):
            member, number = attacker(i)
            answers.append(keys(await ask(app, member, number)))
            if i % 5 == 4:  # normal traffic elsewhere, all along
                assert await verify(app, vonage, *neighbour(i)) == ["verified.done"]

    # The breaker tripped on the first SMS past MIN_SENDS: every later attacker was refused.
    assert answers[:MIN_SENDS] == [["code.sent"]] * MIN_SENDS
    assert answers[MIN_SENDS:] == [["limit.paused"]] * (50 - MIN_SENDS)
    assert codes_to(vonage, ATTACKED) == MIN_SENDS < MIN_SENDS + 2
    # The member is told when to try again: after the cooldown.
    refused = await ask(app, *attacker(60))
    (reply,) = refused.replies
    wait = reply.params["wait"]
    assert isinstance(wait, Duration) and 6 * 3600 - 60 < wait.seconds <= 6 * 3600

    # One CRITICAL line, with the prefix masked like a number and no attacked number in it.
    critical = [entry for entry in logs if entry["log_level"] == "critical"]
    assert len(critical) == 1
    (line,) = critical
    assert line["event"] == "fraud_breaker_tripped"
    assert (line["scope"], line["country"], line["prefix"]) == ("prefix", "GB", "+44•••••0012")
    assert (line["sent"], line["verified"]) == (MIN_SENDS, 0)
    rendered = repr(line)
    assert ATTACKED.removeprefix("+") not in rendered
    assert not any(attacker(i)[1].removeprefix("+")[-8:] in rendered for i in range(60))
    # The moderators' log heard of it once, masked the same way, and the metric counted it.
    tripped = [entry for entry in log.lines if entry.key == "modlog.fraud_tripped"]
    assert [entry.params["scope"] for entry in tripped] == ["+44•••••0012"]
    assert trips_counted("prefix") == before + 1

    # The country, texted by the attack and by members who verify, was not paused.
    pauses = await app.store.pauses(now=app.engine.clock())
    assert [(p.scope, p.sent, p.verified) for p in pauses] == [
        (Scope("prefix", ATTACKED), MIN_SENDS, 0)
    ]
    assert await verify(app, vonage, *neighbour(51)) == ["verified.done"]

    # An admin lifts it: sending resumes in that prefix, audited and posted.
    lifted = await moderation.fraud(ADMIN, ["lift", ATTACKED])
    assert lifted.ok and [r.key for r in lifted.replies] == ["mod.fraud.lifted"]
    again = await ask(app, *attacker(61))
    assert keys(again) == ["code.sent"]
    assert codes_to(vonage, ATTACKED) == MIN_SENDS + 1
    assert await app.store.pauses(now=app.engine.clock()) == []
    trail = by(app, ADMIN)
    assert [(e.event, e.subject) for e in trail] == [("fraud_lifted", f"prefix:{ATTACKED}")]
    assert [entry.key for entry in log.lines][-1] == "modlog.fraud_lifted"


async def test_members_who_verify_never_trip_it_however_many_share_a_prefix(
    workers: Callable[..., Any], vonage: VonageEmulator
) -> None:
    (app,) = await workers(vonage_fallback_channels="voice")  # a resend calls
    with capture_logs() as logs:
        for i in range(3 * MIN_SENDS):
            member, number = attacker(i)
            # A code or two each (a resend counts as a code sent), then the right one.
            await ask(app, member, number)
            if i % 2:
                assert keys(await app.engine.handle(member, Resend())) == ["resend.done"]
            code = vonage.last_code(number.removeprefix("+"))
            assert keys(await app.engine.handle(member, Text(code))) == ["verified.done"]
    assert codes_to(vonage, ATTACKED) == 3 * MIN_SENDS + 3 * MIN_SENDS // 2
    assert not [entry for entry in logs if entry["log_level"] == "critical"]
    assert await app.store.pauses(now=app.engine.clock()) == []


async def test_a_resend_to_a_paused_prefix_is_refused_and_the_code_sent_still_works(
    workers: Callable[..., Any], vonage: VonageEmulator
) -> None:
    (app,) = await workers(vonage_fallback_channels="voice")
    early, number = attacker(99)
    assert keys(await ask(app, early, number)) == ["code.sent"]
    for i in range(MIN_SENDS):  # the attack, after this member's code went out
        await ask(app, *attacker(i))
    assert keys(await ask(app, *attacker(MIN_SENDS))) == ["limit.paused"]
    resent = await app.engine.handle(early, Resend())
    assert keys(resent) == ["limit.paused"]
    code = vonage.last_code(number.removeprefix("+"))
    assert keys(await app.engine.handle(early, Text(code))) == ["verified.done"]


async def test_a_country_trips_on_its_own_larger_count(
    workers: Callable[..., Any], vonage: VonageEmulator
) -> None:
    (app,) = await workers(fraud_min_sends_country="15")
    # Spread over many prefixes, so that no prefix reaches MIN_SENDS.
    answers = [
        keys(await ask(app, Member(MemberKey("telegram", "bot1", str(9000 + i))), number))
        for i, number in enumerate(f"+3461{i:03d}{i:04d}" for i in range(20))
    ]
    assert answers == [["code.sent"]] * 15 + [["limit.paused"]] * 5
    pauses = await app.store.pauses(now=app.engine.clock())
    assert [(p.scope, p.sent) for p in pauses] == [(Scope("country", "ES"), 15)]
    # Other countries are not affected.
    assert await verify(app, vonage, *neighbour(1)) == ["verified.done"]


async def test_two_workers_racing_past_the_threshold_send_no_more_than_it(
    workers: Callable[..., Any], vonage: VonageEmulator
) -> None:
    first, second = await workers(2)
    with capture_logs() as logs:
        outcomes = await asyncio.gather(
            *(ask((first, second)[i % 2], *attacker(i)) for i in range(3 * MIN_SENDS))
        )
    sent = [o for o in outcomes if keys(o) == ["code.sent"]]
    paused = [o for o in outcomes if keys(o) == ["limit.paused"]]
    assert (len(sent), len(paused)) == (MIN_SENDS, 2 * MIN_SENDS)
    assert codes_to(vonage, ATTACKED) == MIN_SENDS
    # Exactly one worker tripped it, so the alarm sounds once.
    assert len([e for e in logs if e["event"] == "fraud_breaker_tripped"]) == 1
    assert sum(len(o.trips) for o in outcomes) == 1


async def test_the_breaker_turned_off_counts_and_stops_nothing(
    workers: Callable[..., Any], vonage: VonageEmulator
) -> None:
    (app,) = await workers(fraud_breaker="off")
    answers = [keys(await ask(app, *attacker(i))) for i in range(2 * MIN_SENDS)]
    assert answers == [["code.sent"]] * (2 * MIN_SENDS)
    assert codes_to(vonage, ATTACKED) == 2 * MIN_SENDS


async def test_the_chat_command_is_for_admins_and_audited(
    workers: Callable[..., Any], vonage: VonageEmulator
) -> None:
    (app,) = await workers()
    moderation = desk(app, ModLogLines())
    for i in range(MIN_SENDS + 1):
        await ask(app, *attacker(i))

    def request(actor: Actor, *words: str) -> Request:
        return Request(actor, platform="telegram", scope="bot1", words=words)

    refused = await answer(moderation, "fraud", request(MODERATOR))
    assert not refused.ok and [r.key for r in refused.replies] == ["mod.refused.admin"]
    refused = await answer(moderation, "fraud", request(MODERATOR, "lift", ATTACKED))
    assert not refused.ok
    assert len(await app.store.pauses(now=app.engine.clock())) == 1  # still paused
    refusals = by(app, MODERATOR)
    assert [(e.event, e.details) for e in refusals] == [("refused", {"command": "fraud"})] * 2

    status = await answer(moderation, "fraud", request(ADMIN))
    (reply,) = status.replies
    assert reply.key == "mod.fraud.status"
    lines = str(reply.params["lines"]).splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"• {ATTACKED} · 0/{MIN_SENDS} (0%) · ")
    usage = await answer(moderation, "fraud", request(ADMIN, "lift", "nowhere"))
    assert [r.key for r in usage.replies] == ["mod.fraud.usage"]
    lifted = await answer(moderation, "fraud", request(ADMIN, "lift", ATTACKED))
    assert lifted.ok
    twice = await answer(moderation, "fraud", request(ADMIN, "lift", ATTACKED))
    assert not twice.ok and [r.key for r in twice.replies] == ["mod.fraud.not_paused"]
    none = await answer(moderation, "fraud", request(ADMIN, "status"))
    assert [r.key for r in none.replies] == ["mod.fraud.none"]
    audited = by(app, ADMIN)
    assert sorted(e.event for e in audited) == [
        "fraud_lifted",
        "fraud_lifted",
        "fraud_status",
        "fraud_status",
    ]
