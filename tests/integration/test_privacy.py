"""Whole flows through Vonage (v2 and legacy, via the emulator), with every logger at DEBUG
(the Vonage SDK's own, which print request bodies, turned back up too) and JSON output, then a
scan of everything logged for codes and full phone numbers. The other modes (Telegram, Slack,
the console, the CLI) are scanned in ``tests/e2e/test_privacy.py``."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from bot.flow import ChangeNumber, Resend, Start, Text
from bot.identity import Member, MemberKey
from bot.logs import configure_logging
from tests.conftest import VONAGE_API_KEY, VONAGE_API_SECRET, VONAGE_APP_ID
from tests.emulators.vonage import VonageEmulator
from tests.log_scan import leaks, loud
from verifybot.bootstrap import open_app

NUMBERS = ["+447400123456", "+447400654321", "+14155552671"]


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    hooks = sys.excepthook, threading.excepthook
    stream = io.StringIO()
    try:
        with loud():
            configure_logging("DEBUG", "json", stream=stream)
            yield stream
    finally:
        root.handlers[:], root.level = saved
        sys.excepthook, threading.excepthook = hooks
        structlog.reset_defaults()


async def run_flows(app: Any, vonage: VonageEmulator) -> None:
    engine = app.engine
    alice = Member(MemberKey("telegram", "b", "1"), display_name="Alice")
    bob = Member(MemberKey("slack", "T1", "U2"), locale="es")
    await engine.handle(alice, Start())
    await engine.handle(alice, Text("+44 7400 123456"))
    await engine.handle(
        alice, Text("000000" if vonage.last_code(NUMBERS[0][1:]) != "000000" else "111111")
    )
    await engine.handle(alice, Text(vonage.last_code(NUMBERS[0][1:])))
    vonage.inject("drop_after", path_prefix="/v")
    await engine.handle(bob, Text("+1 415 555 2671"))
    await engine.handle(bob, Start())
    await engine.handle(bob, Text("+1 415 555 2671"))
    await engine.handle(bob, Resend())
    await engine.handle(bob, ChangeNumber())
    vonage.inject("500", path_prefix="/v", times=1)
    await engine.handle(bob, Text("+44 7400 654321"))
    await engine.handle(bob, Text(vonage.last_code(NUMBERS[1][1:])))


@pytest.mark.parametrize("api", ["v2", "legacy"])
async def test_no_log_line_carries_a_code_or_a_full_phone_number(
    api: str,
    vonage: VonageEmulator,
    key_file: Path,
    make_settings: Callable[..., Any],
    log_output: io.StringIO,
) -> None:
    if api == "v2":
        credentials: dict[str, Any] = {
            "vonage_application_id": VONAGE_APP_ID, "vonage_private_key_path": key_file,
            "vonage_fallback_channels": "voice",
        }  # fmt: skip
    else:
        credentials = {"vonage_api_key": VONAGE_API_KEY, "vonage_api_secret": VONAGE_API_SECRET}
    settings = make_settings(
        vonage_api_host=vonage.host, resend_cooldown_seconds=0, max_accounts_per_phone=5,
        vonage_retry_wait_seconds=0.01,
        **credentials,
    )  # fmt: skip
    async with open_app(settings) as app:
        await run_flows(app, vonage)
    assert len(vonage.deliveries) >= 3
    text = log_output.getvalue()
    lines = text.splitlines()
    assert len(lines) > 10
    for line in lines:
        json.loads(line)  # every line is a JSON object
    assert leaks(lines, NUMBERS, {d.code for d in vonage.deliveries}) == []
    assert VONAGE_API_SECRET not in text
    # The SDK's loggers were at DEBUG: their request bodies were written, masked.
    assert any(line.startswith('{"event": "') and '"logger": "vonage' in line for line in lines)
    # The masked form is what operators see.
    assert "+44•••••3456" in text
