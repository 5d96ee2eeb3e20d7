"""Adapters stop cleanly on the signals platforms send."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from adapters._runtime import until_stopped


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
