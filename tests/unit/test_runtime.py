"""Adapters stop cleanly on the signals platforms send."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import cast

import pytest

from adapters._runtime import InFlight, Slots, cancel_all, until_stopped
from bot.gate import Gatekeeper, Lapsed, sweep_lapsed


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_until_stopped_returns_on_a_stop_signal_and_restores_the_handlers(
    signum: signal.Signals,
) -> None:
    waiting = asyncio.create_task(until_stopped())
    await asyncio.sleep(0.01)
    assert not waiting.done()

    os.kill(os.getpid(), signum)

    await asyncio.wait_for(waiting, timeout=2)
    assert not asyncio.get_running_loop().remove_signal_handler(signum)


async def test_a_drain_lets_updates_under_way_finish_and_drops_those_still_waiting() -> None:
    in_flight = InFlight()
    finished: list[str] = []
    turn = asyncio.Event()

    async def under_way() -> None:
        with in_flight.handling():
            in_flight.started()
            await asyncio.sleep(0.05)
            finished.append("under way")

    async def waiting_for_its_turn() -> None:
        with in_flight.handling():
            await turn.wait()
            in_flight.started()
            finished.append("waited")

    tasks = [asyncio.create_task(under_way()), asyncio.create_task(waiting_for_its_turn())]
    await asyncio.sleep(0)

    cancelled = await in_flight.drain(5.0, drop_waiting=True)

    assert (cancelled, finished, len(in_flight)) == (0, ["under way"], 0)
    assert tasks[1].cancelled()


async def test_a_drain_cancels_what_outlives_the_grace_and_says_how_many() -> None:
    in_flight = InFlight()
    stuck = asyncio.Event()

    @in_flight.tracked
    async def listener(body: dict[str, str]) -> None:
        await stuck.wait()

    task = asyncio.create_task(listener(body={}))
    await asyncio.sleep(0)
    assert len(in_flight) == 1

    assert await in_flight.drain(0.01) == 1
    assert task.cancelled() and len(in_flight) == 0


async def resisting(in_flight: InFlight, cancels: list[int]) -> None:
    """An update whose cancellation a library turns into an error that a loop retries:
    the way a stop was once held for ever."""
    with in_flight.handling():
        in_flight.started()
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels.append(1)


async def test_a_drain_ends_even_when_a_task_resists_its_cancellation() -> None:
    in_flight = InFlight()
    cancels: list[int] = []
    task = asyncio.create_task(resisting(in_flight, cancels))
    await asyncio.sleep(0)

    # The guard only stops a hang from hanging the suite; drain's own bound is what ends it.
    cancelled = await asyncio.wait_for(in_flight.drain(0.01, drop_waiting=True), 30)

    assert cancelled == 1 and cancels and not task.done()
    task.get_coro().close()


async def test_cancel_all_says_how_many_tasks_outlived_it() -> None:
    in_flight = InFlight()
    cancels: list[int] = []
    stubborn = asyncio.create_task(resisting(in_flight, cancels))
    obedient = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)

    assert await asyncio.wait_for(cancel_all([stubborn, obedient], wait=0.2), 30) == 1
    assert obedient.cancelled() and len(cancels) >= 2 and not stubborn.done()
    stubborn.get_coro().close()


async def test_the_gate_sweeper_ends_when_its_cancellation_comes_back_as_an_error() -> None:
    class ConvertingGatekeeper:
        """Answers as a Redis client may when cancelled mid-call: with an error."""

        calls = 0
        called_again = asyncio.Event()

        async def lapsed(self, *, limit: int) -> list[Lapsed]:
            self.calls += 1
            if self.calls > 1:
                self.called_again.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                raise ConnectionError("connection closed") from None
            return []

    async def act(lapsed: Lapsed) -> None:
        pass

    gatekeeper = ConvertingGatekeeper()
    sweeper = asyncio.create_task(sweep_lapsed(cast(Gatekeeper, gatekeeper), act, interval=0))
    await asyncio.sleep(0)

    sweeper.cancel()  # once, as a stop does
    again = asyncio.create_task(gatekeeper.called_again.wait())
    await asyncio.wait({sweeper, again}, timeout=30, return_when=asyncio.FIRST_COMPLETED)

    assert sweeper.done() and gatekeeper.calls == 1
    again.cancel()
    if not sweeper.done():
        await cancel_all([sweeper])


async def test_slots_let_at_most_their_size_in_at_once_first_come_first_served() -> None:
    slots = Slots(2)
    inside: list[int] = []
    most = 0
    order: list[int] = []
    gate = asyncio.Event()

    async def work(n: int) -> None:
        nonlocal most
        async with slots:
            order.append(n)
            inside.append(n)
            most = max(most, len(inside))
            await gate.wait()
            inside.remove(n)

    tasks = [asyncio.create_task(work(n)) for n in range(6)]
    await asyncio.sleep(0.01)
    assert order == [0, 1]  # the others wait
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert most == 2
    assert order == [0, 1, 2, 3, 4, 5]


async def test_a_waiter_cancelled_in_the_queue_takes_no_slot_with_it() -> None:
    slots = Slots(1)
    release = asyncio.Event()
    entered: list[str] = []

    async def holder() -> None:
        async with slots:
            await release.wait()

    async def waiter(name: str) -> None:
        async with slots:
            entered.append(name)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    quitter = asyncio.create_task(waiter("quitter"))
    patient = asyncio.create_task(waiter("patient"))
    await asyncio.sleep(0.01)
    quitter.cancel()
    release.set()
    await asyncio.wait_for(asyncio.gather(first, patient), 2)
    assert quitter.cancelled()
    assert entered == ["patient"]
    async with slots:  # the slot came back
        entered.append("after")
    assert entered == ["patient", "after"]


async def test_a_waiter_cancelled_just_as_it_is_handed_a_slot_passes_the_slot_on() -> None:
    slots = Slots(1)
    entered: list[str] = []

    async def waiter(name: str) -> None:
        async with slots:
            entered.append(name)

    await slots.__aenter__()  # this test holds the one slot
    unlucky = asyncio.create_task(waiter("unlucky"))
    next_in_line = asyncio.create_task(waiter("next"))
    await asyncio.sleep(0.01)
    await slots.__aexit__(None, None, None)  # hands the slot to "unlucky", not yet running
    unlucky.cancel()
    await asyncio.wait_for(next_in_line, 2)
    assert unlucky.cancelled()
    assert entered == ["next"]
