"""One check per member at a time, whichever worker handles the code.

A member who types the right code twice, with the copies on two workers sharing one Redis,
gets exactly one check at Vonage: the worker that checks first holds a short lease, saved
before Vonage is called, and the other copy hears "checking…". A worker that dies mid-check
leaves the lease to lapse, and then nobody knows what Vonage did: a later "request not found"
is never called an expiry. And once the directory has the member verified, the verification
stands even if the conversation moved meanwhile.

Real Redis, a real SQLite directory, and the real vonage SDK against the emulator (or the
sandbox)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from bot.engine import Engine, Outcome
from bot.flow import ChangeNumber, CheckOutcome, State
from bot.verifier.base import Verifier
from tests.integration.test_engine_claims import (  # noqa: F401 - fixtures
    ALICE,
    APIS,
    World,
    keys,
    settings_for,
    world_for,
)


class HeldChecks:
    """A worker's verifier whose checks wait at a gate: a slow Vonage, or a worker that dies
    with the answer in hand. ``before`` holds a check before it reaches Vonage, otherwise
    Vonage answers and the answer is held."""

    def __init__(self, inner: Verifier, *, before: bool) -> None:
        self.inner = inner
        self.before = before
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.checks = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def check(self, request_id: str, code: str) -> CheckOutcome:
        self.checks += 1
        if self.checks > 1:
            self.gate.set()  # a second check is the failure under test: never hang on it
        if self.before:
            self.entered.set()
            await self.gate.wait()
            return await self.inner.check(request_id, code)
        answer = await self.inner.check(request_id, code)
        self.entered.set()
        await self.gate.wait()
        return answer


def hold_checks(world: World, *, before: bool = True) -> HeldChecks:
    """One gate shared by every worker, so the checks of all workers are counted together."""
    held = HeldChecks(world.app.engine.verifier, before=before)
    for app in world.workers:
        app.engine.verifier = held
    return held


async def ready_for_code(world: World) -> str:
    assert keys(await world.ask(ALICE)) == ["code.sent"]
    return world.code()


def later(engine: Engine, seconds: float) -> None:
    """Move one worker's clock on, as if ``seconds`` had passed for it."""
    clock = engine.clock
    engine.clock = lambda: clock() + seconds


@pytest.mark.parametrize("api", APIS)
async def test_the_right_code_typed_twice_on_two_workers_is_checked_once(
    world_for: Callable[..., Any],  # noqa: F811 - the fixture imported above
    api: str,
) -> None:
    world: World = await world_for(api, workers=2)
    code = await ready_for_code(world)
    checks_before = world.check_calls()
    held = hold_checks(world)

    copies = [asyncio.create_task(world.say(ALICE, code, worker=w)) for w in (0, 1)]
    await held.entered.wait()
    done, _ = await asyncio.wait(copies, return_when=asyncio.FIRST_COMPLETED)
    checks_meanwhile = held.checks
    held.gate.set()
    outcomes: list[Outcome] = await asyncio.gather(*copies)
    (waiting,) = [outcomes[copies.index(task)] for task in done]
    (verified,) = [outcome for outcome in outcomes if outcome is not waiting]

    # The copy that came while the other was with Vonage was not checked: it was told so.
    assert checks_meanwhile == 1, [keys(outcome) for outcome in outcomes]
    assert keys(waiting) == ["code.checking"]
    assert waiting.replies[0].about_code  # rendered with the anti-scam warning
    assert keys(verified) == ["verified.done"]
    assert verified.verified is not None and verified.state is State.VERIFIED

    assert held.checks == 1
    if api != "sandbox":
        assert world.check_calls() == checks_before + 1
    assert (await world.app.engine.conversation(ALICE)).state is State.VERIFIED
    link = world.app.directory.find_verified(ALICE.key)
    assert link is not None and link.phone_e164 == "+12065550142"


@pytest.mark.parametrize("api", ["v2", "legacy"])
async def test_a_worker_dying_mid_check_leaves_the_code_in_doubt_never_expired(
    world_for: Callable[..., Any],  # noqa: F811 - the fixture imported above
    api: str,
) -> None:
    world: World = await world_for(api, workers=2)
    code = await ready_for_code(world)
    held = hold_checks(world, before=False)
    dying = asyncio.create_task(world.say(ALICE, code, worker=0))
    await held.entered.wait()
    dying.cancel()  # Vonage accepted the code; the worker died before it could record it
    with pytest.raises(asyncio.CancelledError):
        await dying
    held.gate.set()

    # While the dead worker's lease lasts, the code is not checked again.
    assert keys(await world.say(ALICE, code, worker=1)) == ["code.checking"]
    assert held.checks == 1

    # Once it lapses, nobody knows what Vonage did: the request is gone (Vonage completed
    # it), and that is never called an expiry.
    later(world.workers[1].engine, world.app.engine.policy.check_lease + 1)
    retyped = await world.say(ALICE, code, worker=1)
    assert keys(retyped) == ["code.lost_ended"]
    assert held.checks == 2
    assert retyped.state is State.AWAIT_PHONE


async def test_a_verification_recorded_after_the_conversation_moved_still_stands(
    world_for: Callable[..., Any],  # noqa: F811 - the fixture imported above
) -> None:
    world: World = await world_for("v2", workers=2)
    code = await ready_for_code(world)
    held = hold_checks(world, before=False)
    slow = asyncio.create_task(world.say(ALICE, code, worker=0))
    await held.entered.wait()
    # Vonage has accepted the code; the first worker is slow to hear it, its lease lapses,
    # and the member changes number on the other worker.
    later(world.workers[1].engine, world.app.engine.policy.check_lease + 1)
    moved = await world.workers[1].engine.handle(ALICE, ChangeNumber())
    assert keys(moved) == ["phone.ask"]
    held.gate.set()

    # The directory recorded the member: that is the truth, and the member hears it.
    verified = await slow
    assert keys(verified) == ["verified.done"]
    assert verified.verified is not None and verified.state is State.VERIFIED
    assert (await world.app.engine.conversation(ALICE)).state is State.VERIFIED
    assert world.app.directory.find_verified(ALICE.key) is not None
