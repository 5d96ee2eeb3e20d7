"""Slack over Socket Mode: bolt's AsyncSocketModeHandler, as ``serve(socket=True)`` builds
it, connected to the emulator's websocket. Socket Mode marks first deliveries with
``retry_attempt: 0`` (bolt turns it into ``X-Slack-Retry-Num: 0``): they must be handled;
a redelivery of the same ``event_id`` must be acknowledged and ignored. Malformed frames
are one WARNING line each, acknowledged when they carry an envelope id, and the client
goes on serving."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from adapters import slack as adapter
from tests.e2e.slack_harness import TEAM, running, until

ALICE = "U0ALICE001"


async def test_socket_mode_handles_first_deliveries_and_ignores_redeliveries(
    make_settings: Callable[..., Any],
) -> None:
    async with running(make_settings) as h:
        h.emu.add_user(ALICE, locale="en-GB")
        h.emu.dms[ALICE] = "D0ALICEDM1"
        handler = adapter.socket_handler(h.app, adapter.build_app(h.app))
        await handler.connect_async()  # type: ignore[no-untyped-call]
        try:
            await h.emu.wait_connected()
            opened = h.emu.calls_to("apps.connections.open")
            assert len(opened) == 1
            payload = json.loads(
                json.dumps(
                    {
                        "token": "deprecated-verification-token",
                        "team_id": TEAM,
                        "api_app_id": "A0EMULATED",
                        "type": "event_callback",
                        "event_id": "Ev0SOCKET01",
                        "event_time": 1700000000,
                        "event": {
                            "type": "message",
                            "channel": "D0ALICEDM1",
                            "channel_type": "im",
                            "user": ALICE,
                            "text": "hello",
                            "ts": "1700000000.000100",
                        },
                    }
                )
            )
            with capture_logs() as logs:
                first = await h.emu.send_envelope("events_api", payload, retry_attempt=0)
                assert (await h.emu.wait_ack(first))["envelope_id"] == first
                await until(lambda: h.emu.dm_messages(ALICE))
                again = await h.emu.send_envelope(
                    "events_api", payload, retry_attempt=1, retry_reason="timeout"
                )
                await h.emu.wait_ack(again)
                await until(lambda: any(e["event"] == "duplicate_delivery" for e in logs))
            assert len(h.emu.dm_messages(ALICE)) == 1
            assert "send me your mobile phone number" in h.emu.dm_messages(ALICE)[0]["text"]
        finally:
            await handler.close_async()  # type: ignore[no-untyped-call]


def _envelope(kind: str, payload: Any, envelope_id: str) -> str:
    return json.dumps(
        {"envelope_id": envelope_id, "type": kind, "payload": payload, "retry_attempt": 0}
    )


#: Frames a broken or hostile Socket Mode peer could send, each with a phone number in it
#: that must never reach a log line; the ones with an envelope id must still be acked, or
#: Slack would send them again.
SECRET_NUMBER = "+447400123456"
MALFORMED_FRAMES: list[tuple[str, str, str | None]] = [
    ("not JSON", "{not json " + SECRET_NUMBER, None),
    ("a JSON array", json.dumps(["events_api", SECRET_NUMBER]), None),
    ("JSON nested too deep", '{"payload": ' + "[" * 100_000 + SECRET_NUMBER, None),
    (
        "a payload that is an array",
        _envelope("events_api", [SECRET_NUMBER], "env-array"),
        "env-array",
    ),
    ("a payload that is text", _envelope("events_api", SECRET_NUMBER, "env-text"), "env-text"),
    (
        "an event callback without an event",
        _envelope("events_api", {"type": "event_callback", "team_id": TEAM}, "env-noevent"),
        "env-noevent",
    ),
    (
        "an event that is not an object",
        _envelope(
            "events_api",
            {"type": "event_callback", "team_id": TEAM, "event": SECRET_NUMBER},
            "env-eventtext",
        ),
        "env-eventtext",
    ),
    (
        "a view submission without type",
        _envelope(
            "interactive",
            {"user": {"id": ALICE}, "view": {"id": "V1", "callback_id": "verifybot.phone"}},
            "env-notype",
        ),
        "env-notype",
    ),
]


async def test_socket_mode_survives_malformed_envelopes_and_acks_unhandled_events(
    make_settings: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    # INFO: slack-sdk's client prints every raw frame at DEBUG (issue 10, defect 2's filter).
    caplog.set_level(logging.INFO)
    async with running(make_settings) as h:
        h.emu.add_user(ALICE, locale="en-GB")
        h.emu.dms[ALICE] = "D0ALICEDM1"
        handler = adapter.socket_handler(h.app, adapter.build_app(h.app))
        await handler.connect_async()  # type: ignore[no-untyped-call]
        try:
            await h.emu.wait_connected()
            with capture_logs() as logs:
                for _, frame, envelope_id in MALFORMED_FRAMES:
                    await h.emu.send_raw(frame)
                    if envelope_id is not None:
                        await h.emu.wait_ack(envelope_id)
                await until(lambda: len(logs) >= len(MALFORMED_FRAMES))
                unhandled = {
                    "type": "event_callback",
                    "team_id": TEAM,
                    "event_id": "Ev0REACTION",
                    "event": {"type": "reaction_added", "user": ALICE, "reaction": "x"},
                }
                await h.emu.wait_ack(await h.emu.send_envelope("events_api", unhandled))
                hello = {
                    "type": "event_callback",
                    "team_id": TEAM,
                    "event_id": "Ev0SOCKET02",
                    "event": {
                        "type": "message",
                        "channel": "D0ALICEDM1",
                        "channel_type": "im",
                        "user": ALICE,
                        "text": "hello",
                        "ts": "1700000000.000200",
                    },
                }
                await h.emu.wait_ack(await h.emu.send_envelope("events_api", hello))
                await until(lambda: h.emu.dm_messages(ALICE))
            warnings = [e for e in logs if e["log_level"] not in ("debug", "info")]
            assert [(e["event"], e["log_level"]) for e in warnings] == [
                ("slack_request_malformed", "warning")
            ] * len(MALFORMED_FRAMES)
            assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
            everything = json.dumps(logs, default=str) + caplog.text
            assert SECRET_NUMBER not in everything and SECRET_NUMBER[1:] not in everything
            assert "send me your mobile phone number" in h.emu.dm_messages(ALICE)[0]["text"]
        finally:
            await handler.close_async()  # type: ignore[no-untyped-call]
