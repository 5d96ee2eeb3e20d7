"""What every long-running adapter needs from its process."""

from __future__ import annotations

import asyncio
import signal
from contextlib import suppress


async def until_stopped() -> None:
    """Wait for SIGINT or SIGTERM (or cancellation), so an adapter can shut down cleanly.

    asyncio.run turns only SIGINT into a cancellation; platforms stop processes with SIGTERM,
    which would otherwise end the bot without closing its connections or its webhook server.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    try:
        await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
