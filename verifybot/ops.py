"""The health and metrics server: ``/healthz``, ``/readyz`` and ``/metrics`` (``bot.health``).

In Telegram's webhook mode and Slack's HTTP mode the adapter mounts them on the bot's own
port (``PORT``); in long polling and Socket Mode there is no server, so a small one listens
on ``HEALTH_PORT`` (none when it is unset). Each worker serves its own metrics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from aiohttp import web

from adapters._runtime import add_health_routes
from bot.app import App
from bot.health import Health
from bot.settings import ConfigError

log = structlog.get_logger("verifybot.ops")


@asynccontextmanager
async def open_health(app: App) -> AsyncIterator[Health]:
    health = Health(app.store, app.directory)
    try:
        yield health
    finally:
        health.close()


@asynccontextmanager
async def health_server(health: Health, *, host: str, port: int) -> AsyncIterator[int]:
    """Serve the endpoints on ``host:port`` until the block ends; yields the port bound."""
    application = web.Application()
    add_health_routes(application, health)
    runner = web.AppRunner(application, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on HEALTH_PORT {port}: {exc.strerror}") from None
        bound = _bound_port(runner, port)
        log.info("health_listening", host=host, port=bound)
        yield bound
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serving(app: App, *, own_port: bool) -> AsyncIterator[Health]:
    """The endpoints for a running bot: on its own port when ``own_port`` (the adapter
    mounts them), else on HEALTH_PORT if it is set."""
    settings = app.settings
    async with open_health(app) as health:
        if own_port or settings.health_port is None:
            if own_port and settings.health_port not in (None, settings.port):
                log.info("health_port_unused", port=settings.port, note="served on PORT")
            yield health
            return
        async with health_server(health, host=settings.listen_host, port=settings.health_port):
            yield health


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return asked
