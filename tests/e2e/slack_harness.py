"""The real bolt app from ``adapters.slack``, wired as ``serve`` wires it, against the
Slack emulator, with a real engine (sandbox verifier, Redis, SQLite)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from adapters import slack as adapter
from bot.app import App
from tests.conftest import Inbox
from tests.emulators.slack import SlackEmulator
from tests.emulators.slack_requests import SignedPoster
from tests.emulators.specs import require_spec
from verifybot.bootstrap import open_app

TEAM = "T0EMULATED"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
PHONE = "+44 7400 123456"
MASKED = "+44•••••3456"


def find_specs() -> Path:
    return require_spec("slack-web-api.openapi.json").parent


async def until(condition: Callable[[], Any], within: float = 5.0) -> Any:
    """Poll until ``condition()`` is truthy; return its value."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        await asyncio.sleep(0.01)


class Harness:
    def __init__(self, emu: SlackEmulator, app: App, inbox: Inbox, poster: SignedPoster) -> None:
        self.emu = emu
        self.app = app
        self.inbox = inbox
        self.poster = poster

    def modal(self) -> dict[str, Any]:
        """The newest modal as Slack holds it (with id and hash), as a submission carries it."""
        stored = [v for v in self.emu.views.values() if v.view.get("type") == "modal"][-1]
        return {**stored.view, "id": stored.id, "hash": stored.hash}

    async def modal_with(self, callback_id: str) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            modals = [v for v in self.emu.views.values() if v.view.get("type") == "modal"]
            return (
                self.modal() if modals and modals[-1].view["callback_id"] == callback_id else None
            )

        result: dict[str, Any] = await until(ready)
        return result

    async def post(self, body: str, **kwargs: Any) -> tuple[int, Any]:
        status, text = await self.poster.post(body, **kwargs)
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text


def texts(blocks_or_view: Any) -> str:
    """All the text in a view or blocks, for assertions."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks_or_view)
    return "\n".join(found)


@asynccontextmanager
async def running(make_settings: Callable[..., Any], **overrides: Any) -> AsyncIterator[Harness]:
    async with SlackEmulator(find_specs() / "slack-web-api.openapi.json") as emu:
        settings = make_settings(
            slack_bot_token=emu.bot_token,
            slack_signing_secret=SECRET,
            slack_app_token=emu.app_token,
            slack_api_base_url=emu.url,
            resend_cooldown_seconds=0,
            **overrides,
        )
        inbox = Inbox()
        async with open_app(settings, show_code=inbox) as app:
            runner = web.AppRunner(
                adapter.web_app(adapter.build_app(app), settings.slack_events_path, SECRET)
            )
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            url = f"http://127.0.0.1:{port}{settings.slack_events_path}"
            try:
                async with aiohttp.ClientSession() as session:
                    yield Harness(emu, app, inbox, SignedPoster(session, url, SECRET))
            finally:
                await runner.cleanup()
        assert emu.internal_errors == []
