"""/healthz, /readyz and /metrics in each way the bot runs: Telegram long polling and webhook,
Slack HTTP and Socket Mode. The real ``serve()`` of each adapter, wired as ``verifybot run``
wires it (``verifybot.ops.serving``), against the platform emulators, on a private
redis-server that the test hangs (SIGSTOP), resumes, kills and starts again. Then
``verifybot run telegram`` as a process, with HEALTH_PORT set by its environment."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

import adapters.slack as slack
import adapters.telegram as telegram
from bot.health import CHECK_TIMEOUT
from tests.conftest import VONAGE_APP_ID, unconfigured_environment
from tests.e2e.slack_harness import SECRET, find_specs
from tests.emulators.slack import SlackEmulator
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.vonage import VonageEmulator
from verifybot import ops
from verifybot.bootstrap import open_app
from verifybot.embedded_redis import EmbeddedRedis

MODES = ["telegram-polling", "telegram-webhook", "slack-http", "slack-socket"]
#: A bound on each probe, so a hanging /readyz fails the test instead of stalling it.
PROBE_LIMIT = CHECK_TIMEOUT + 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def private_redis() -> Iterator[EmbeddedRedis]:
    # A short directory: a unix socket path must stay under ~100 characters.
    with tempfile.TemporaryDirectory(prefix="vb-health-") as folder:
        server = EmbeddedRedis(Path(folder), persist=False)
        server.start()
        try:
            yield server
        finally:
            server.stop()


class Probe:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.base + path) as response:
            return response.status, await response.text()

    async def ready(self) -> tuple[int, dict[str, Any]]:
        status, text = await self.get("/readyz")
        return status, json.loads(text)

    async def until_ready(self, within: float = 20.0) -> dict[str, Any]:
        """/readyz until it says 200 (a restarted Redis is reconnected to on first use)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            with suppress(aiohttp.ClientConnectionError):
                status, body = await self.ready()
                if status == 200:
                    return body
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("/readyz never answered 200")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def running(
    mode: str,
    make_settings: Callable[..., Any],
    redis_url: str,
    stack: dict[str, Any],
) -> AsyncIterator[Probe]:
    """The bot in ``mode`` with its health endpoints, and a client for them."""
    port = free_port()
    common = {"redis_url": redis_url, "listen_host": "127.0.0.1", "port": port}
    platform, _, kind = mode.partition("-")
    if platform == "telegram":
        emulator: TelegramEmulator = stack["telegram"]
        vonage: VonageEmulator = stack["vonage"]
        webhook = kind == "webhook"
        settings = make_settings(
            **common,
            telegram_bot_token=emulator.token,
            telegram_api_base_url=emulator.base_url,
            vonage_application_id=VONAGE_APP_ID,
            vonage_private_key_path=stack["key_file"],
            vonage_api_host=vonage.host,
            telegram_webhook_url=f"http://127.0.0.1:{port}/telegram" if webhook else None,
            telegram_webhook_secret="s3cret-Token_1" if webhook else None,
            health_port=None if webhook else port,
        )
        own_port = webhook
        serve: Any = lambda app, health: telegram.serve(app, webhook=webhook, health=health)  # noqa: E731
    else:
        slack_emulator: SlackEmulator = stack["slack"]
        socket_mode = kind == "socket"
        settings = make_settings(
            **common,
            slack_bot_token=slack_emulator.bot_token,
            slack_signing_secret=SECRET,
            slack_app_token=slack_emulator.app_token,
            slack_api_base_url=slack_emulator.url,
            health_port=port if socket_mode else None,
        )
        own_port = not socket_mode
        serve = lambda app, health: slack.serve(app, socket=socket_mode, health=health)  # noqa: E731
    async with open_app(settings) as app, ops.serving(app, own_port=own_port) as health:
        task = asyncio.create_task(serve(app, health))
        timeout = aiohttp.ClientTimeout(total=PROBE_LIMIT)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                yield Probe(session, f"http://127.0.0.1:{port}")
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def stack(
    request: pytest.FixtureRequest, key_file: Path, vonage: VonageEmulator
) -> AsyncIterator[dict[str, Any]]:
    with TelegramEmulator() as telegram_emulator:
        async with SlackEmulator(find_specs() / "slack-web-api.openapi.json") as slack_emulator:
            yield {
                "telegram": telegram_emulator,
                "slack": slack_emulator,
                "vonage": vonage,
                "key_file": key_file,
            }
            assert slack_emulator.internal_errors == []
        assert telegram_emulator.internal_errors == []


@pytest.mark.parametrize("mode", MODES)
async def test_readiness_follows_redis_down_and_back_in_every_mode(
    mode: str,
    make_settings: Callable[..., Any],
    private_redis: EmbeddedRedis,
    stack: dict[str, Any],
) -> None:
    platform = mode.partition("-")[0]
    async with running(mode, make_settings, private_redis.url, stack) as probe:
        healthy = await probe.until_ready()
        assert healthy == {
            "status": "ready",
            "checks": {"redis": "ok", "database": "ok", platform: "ok"},
        }
        assert await probe.get("/healthz") == (200, '{"status":"ok"}')
        status, metrics = await probe.get("/metrics")
        assert status == 200
        assert 'verifybot_platform_calls_total{method="getMe"' in metrics
        assert "# TYPE verifybot_codes_sent_total counter" in metrics

        # Redis hangs: the check gives up after its own timeout and says so.
        async with Redis.from_url(private_redis.url) as client:
            pid = int((await client.info("server"))["process_id"])
        os.kill(pid, signal.SIGSTOP)
        try:
            status, body = await probe.ready()
            assert status == 503
            assert body["down"] == ["redis"]
            assert body["checks"]["redis"] == f"no answer within {CHECK_TIMEOUT:g} s"
            assert body["checks"]["database"] == "ok"
            # Liveness is the process, not its dependencies.
            assert (await probe.get("/healthz"))[0] == 200
        finally:
            os.kill(pid, signal.SIGCONT)
        await probe.until_ready()

        # Redis stopped: refused at once, named as what is down.
        private_redis.stop()
        status, body = await probe.ready()
        assert status == 503
        assert body["status"] == "not ready"
        assert body["down"] == ["redis"]
        assert body["checks"]["redis"].startswith("error: ")

        private_redis.start()
        assert (await probe.until_ready())["checks"]["redis"] == "ok"


async def test_verifybot_run_serves_health_port_in_long_polling(
    private_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    """``verifybot run telegram`` as a process, wired by the command line itself: HEALTH_PORT
    answers, /readyz follows Redis, and SIGTERM still stops the bot cleanly."""
    port = free_port()
    with TelegramEmulator() as emulator:
        env = unconfigured_environment(
            TELEGRAM_BOT_TOKEN=emulator.token,
            TELEGRAM_API_BASE_URL=emulator.base_url,
            REDIS_URL=private_redis.url,
            DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}",
            DATA_DIR=str(tmp_path / "data"),
            LISTEN_HOST="127.0.0.1",
            HEALTH_PORT=str(port),
        )
        log = tmp_path / "bot.log"
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "verifybot", "run", "telegram",
                env=env, cwd=tmp_path, stdout=output, stderr=output,
            )  # fmt: skip
        try:
            timeout = aiohttp.ClientTimeout(total=PROBE_LIMIT)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                probe = Probe(session, f"http://127.0.0.1:{port}")
                ready = await probe.until_ready(within=60)
                assert ready["checks"]["telegram"] == "ok"
                private_redis.stop()
                status, body = await probe.ready()
                assert (status, body["down"]) == (503, ["redis"])
                private_redis.start()
                await probe.until_ready()
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), timeout=30)
        assert emulator.internal_errors == []
    text = log.read_text()
    assert process.returncode == 0, text[-3000:]
    assert "health_listening" in text
    assert "Traceback" not in text, text[-3000:]
