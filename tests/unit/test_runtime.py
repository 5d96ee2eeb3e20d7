"""Adapters stop cleanly on the signals platforms send."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from adapters._runtime import InFlight, until_stopped


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
