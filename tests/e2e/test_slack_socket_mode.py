"""Slack over Socket Mode: bolt's AsyncSocketModeHandler, as ``serve(socket=True)`` builds
it, connected to the emulator's websocket. Socket Mode marks first deliveries with
``retry_attempt: 0`` (bolt turns it into ``X-Slack-Retry-Num: 0``): they must be handled;
a redelivery of the same ``event_id`` must be acknowledged and ignored."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

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
        handler = adapter.socket_handler(h.bot, adapter.build_app(h.bot))
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
            assert "I verify members' phone numbers" in h.emu.dm_messages(ALICE)[0]["text"]
        finally:
            await handler.close_async()  # type: ignore[no-untyped-call]
