"""One number, many members: whoever asked first owns the number's verification until
Vonage says it is over. Everyone else is told a verification is in progress (not by whom)
and when to try again; nobody else reaches Vonage for that number, so nobody can adopt,
guess against or end another member's request.

Real Redis, a real SQLite directory, and the real vonage SDK against the emulator (or the
sandbox, which must behave as Vonage does)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bot.app import App
from bot.engine import Outcome
from bot.flow import ChangeNumber, Duration, Start, State, Text
from bot.identity import Member, MemberKey
from tests.conftest import VONAGE_API_KEY, VONAGE_API_SECRET, VONAGE_APP_ID, Inbox
from tests.emulators.vonage import VonageEmulator
from verifybot.bootstrap import open_app

PHONE = "+1 206 555 0142"
DIGITS = "12065550142"
ALICE = Member(MemberKey("telegram", "bot1", "2001"), display_name="Alice")
BOB = Member(MemberKey("telegram", "bot1", "2002"), display_name="Bob")
APIS = ["v2", "legacy", "sandbox"]


def keys(outcome: Outcome) -> list[str]:
    return [reply.key for reply in outcome.replies]


class World:
    """The bot (one or more workers on one Redis and one database) and its SMS inbox."""

    def __init__(self, api: str, vonage: VonageEmulator, inbox: Inbox) -> None:
        self.api = api
        self.vonage = vonage
        self.inbox = inbox
        self.workers: list[App] = []

    @property
    def app(self) -> App:
        return self.workers[0]

    def code(self) -> str:
        if self.api == "sandbox":
            return self.inbox.last_code
        return self.vonage.last_code(DIGITS)

    def wrong(self) -> str:
        return "000000" if self.code() != "000000" else "111111"

    def sms_count(self) -> int:
        if self.api == "sandbox":
            return len(self.inbox.lines)
        return len(self.vonage.codes_sent_to(DIGITS))

    def start_calls(self) -> int:
        path = "/v2/verify" if self.api == "v2" else "/verify/json"
        return sum(c.method == "POST" and c.path == path for c in self.vonage.calls)

    def check_calls(self) -> int:
        if self.api == "v2":
            return sum(c.path.startswith("/v2/verify/") for c in self.vonage.calls)
        return sum(c.path == "/verify/check/json" for c in self.vonage.calls)

    async def ask(self, member: Member, worker: int = 0) -> Outcome:
        engine = self.workers[worker].engine
        await engine.handle(member, Start())
        return await engine.handle(member, Text(PHONE))

    async def say(self, member: Member, text: str, worker: int = 0) -> Outcome:
        return await self.workers[worker].engine.handle(member, Text(text))


@pytest.fixture
def settings_for(
    make_settings: Callable[..., Any], vonage: VonageEmulator, key_file: Path
) -> Callable[..., Any]:
    common: dict[str, Any] = {
        "vonage_api_host": vonage.host,
        "vonage_timeout_seconds": 2,
        "vonage_retry_wait_seconds": 0.01,
        # Generous SMS limits: what stops a second member here must be the claim.
        "limit_sms_per_phone": "100/1h",
        "limit_starts_per_member": "100/1h",
        "resend_cooldown_seconds": 0,
    }
    credentials: dict[str, dict[str, Any]] = {
        "v2": {"vonage_application_id": VONAGE_APP_ID, "vonage_private_key_path": key_file},
        "legacy": {"vonage_api_key": VONAGE_API_KEY, "vonage_api_secret": VONAGE_API_SECRET},
        "sandbox": {},
    }

    def make(api: str, **overrides: Any) -> Any:
        return make_settings(**common, **credentials[api], **overrides)

    return make


async def open_world(
    stack: AsyncExitStack,
    settings: Any,
    world: World,
    workers: int = 1,
) -> World:
    for _ in range(workers):
        app = await stack.enter_async_context(open_app(settings, show_code=world.inbox))
        # The docs' fictional numbers (555-01xx) are refused for real Vonage by policy; the
        # emulator texts them like any other, and they can never reach a real person.
        policy = app.engine.policy
        app.engine.policy = replace(policy, phone=replace(policy.phone, accept_fictional=True))
        world.workers.append(app)
    return world


@pytest.fixture
async def world_for(
    settings_for: Callable[..., Any], vonage: VonageEmulator
) -> AsyncIterator[Callable[..., Any]]:
    async with AsyncExitStack() as stack:

        async def make(api: str, *, workers: int = 1, **overrides: Any) -> World:
            world = World(api, vonage, Inbox())
            return await open_world(stack, settings_for(api, **overrides), world, workers)

        yield make


@pytest.mark.parametrize("api", APIS)
async def test_a_second_member_with_the_same_number_is_told_it_is_in_progress(
    world_for: Callable[..., Any], api: str
) -> None:
    world: World = await world_for(api)
    assert keys(await world.ask(ALICE)) == ["code.sent"]
    code = world.code()

    with capture_logs() as logs:
        told = await world.ask(BOB)
    assert keys(told) == ["phone.in_progress"]
    assert told.state is State.AWAIT_PHONE
    wait = told.replies[0].params["wait"]
    assert isinstance(wait, Duration) and wait.seconds > 0
    # Nothing in the reply names or hints at the member who holds the number.
    assert set(told.replies[0].params) == {"wait"}
    assert not any(entry["event"] == "verify_start_adopted" for entry in logs)
    bob = await world.app.engine.conversation(BOB)
    assert bob.request_id is None
    assert world.sms_count() == 1
    if api != "sandbox":
        assert world.start_calls() == 1

    # Bob's guesses cannot reach Alice's request.
    checks_before = world.check_calls() if api != "sandbox" else 0
    for _ in range(3):
        guess = await world.say(BOB, world.wrong())
        assert "code.wrong" not in keys(guess) and "code.too_many" not in keys(guess)
    if api != "sandbox":
        assert world.check_calls() == checks_before

    done = await world.say(ALICE, code)
    assert keys(done) == ["verified.done"]


@pytest.mark.parametrize("api", APIS)
async def test_after_too_many_wrong_codes_the_number_is_free_for_another_member(
    world_for: Callable[..., Any], api: str
) -> None:
    world: World = await world_for(api)
    assert keys(await world.ask(ALICE)) == ["code.sent"]
    assert keys(await world.ask(BOB)) == ["phone.in_progress"]
    ends = [keys(await world.say(ALICE, world.wrong())) for _ in range(3)]
    assert ends[-1] == ["code.too_many"]
    assert keys(await world.ask(BOB)) == ["code.sent"]
    assert keys(await world.say(BOB, world.code())) == ["verified.done"]


async def test_after_a_member_verifies_the_number_is_free_where_accounts_may_share_it(
    world_for: Callable[..., Any],
) -> None:
    world: World = await world_for("v2", max_accounts_per_phone=2)
    assert keys(await world.ask(ALICE)) == ["code.sent"]
    assert keys(await world.say(ALICE, world.code())) == ["verified.done"]
    assert keys(await world.ask(BOB)) == ["code.sent"]
    assert world.start_calls() == 2


async def test_the_owners_own_start_re_sent_by_the_sdk_is_adopted(
    world_for: Callable[..., Any],
) -> None:
    world: World = await world_for("v2")
    # The connection drops after Vonage created the request; the SDK re-sends the POST and
    # Vonage answers 409 with that request: it is Alice's own, under her claim.
    world.vonage.inject("drop_after", path_prefix="/v2/verify")
    with capture_logs() as logs:
        sent = await world.ask(ALICE)
    assert keys(sent) == ["code.sent"]
    assert [e["event"] for e in logs].count("verify_start_adopted") == 1
    assert world.sms_count() == 1
    assert keys(await world.ask(BOB)) == ["phone.in_progress"]
    assert keys(await world.say(ALICE, world.code())) == ["verified.done"]


@pytest.mark.parametrize(("api", "cancel_refused"), [("v2", False), ("legacy", True)])
async def test_changing_number_frees_it_only_when_vonage_confirms_the_cancel(
    world_for: Callable[..., Any], api: str, cancel_refused: bool
) -> None:
    world: World = await world_for(api)
    if cancel_refused:
        world.vonage.legacy_cancel_min_age = 30.0  # legacy refuses cancels in the first 30 s
    assert keys(await world.ask(ALICE)) == ["code.sent"]
    assert keys(await world.app.engine.handle(ALICE, ChangeNumber())) == ["phone.ask"]
    # A refused cancel leaves the request live at Vonage, so the number stays Alice's.
    expected = "phone.in_progress" if cancel_refused else "code.sent"
    assert keys(await world.ask(BOB)) == [expected]


MEMBERS = [Member(MemberKey("telegram", "bot1", str(3000 + n))) for n in range(10)]


@pytest.mark.parametrize(("api", "workers"), [("v2", 1), ("legacy", 1), ("sandbox", 1), ("v2", 2)])
async def test_ten_members_racing_for_one_number_get_exactly_one_request(
    world_for: Callable[..., Any], api: str, workers: int
) -> None:
    world: World = await world_for(api, workers=workers)
    for n, member in enumerate(MEMBERS):
        await world.workers[n % workers].engine.handle(member, Start())
    outcomes = await asyncio.gather(
        *(
            world.workers[n % workers].engine.handle(member, Text(PHONE))
            for n, member in enumerate(MEMBERS)
        )
    )
    told = [keys(outcome) for outcome in outcomes]
    assert sum(t == ["code.sent"] for t in told) == 1, told
    assert sum(t == ["phone.in_progress"] for t in told) == len(MEMBERS) - 1, told
    assert world.sms_count() == 1
    if api != "sandbox":
        assert world.start_calls() == 1
    (owner,) = [m for m, t in zip(MEMBERS, told, strict=True) if t == ["code.sent"]]
    code = world.code()
    # The others hold no request, so even the right code cannot verify them.
    for n, member in enumerate(MEMBERS):
        if member is not owner:
            reply = await world.say(member, code, worker=n % workers)
            assert "verified.done" not in keys(reply)
            assert (await world.app.engine.conversation(member)).request_id is None
    assert keys(await world.say(owner, code)) == ["verified.done"]
