"""Slack over HTTP, as a hostile or broken sender would use it: requests that are correctly
signed but malformed, forged requests, and event types the bot does not handle.

A malformed request is answered 400 with one WARNING line (no traceback, nothing of the
payload); a forged or stale one 401, unread; an event nobody listens to 200, because Slack
redelivers anything that is not acknowledged with a 2xx. The bot keeps serving afterwards.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from structlog.testing import capture_logs

from adapters.slack.views import PHONE_INPUT, PHONE_VIEW
from tests.e2e.slack_harness import SECRET, TEAM, Harness, running, until
from tests.emulators.slack_requests import block_action, event_callback, sign, view_submission

ALICE = "U0ALICE001"
#: Put in every malformed body: it must never reach a log line.
SECRET_NUMBER = "+447400123456"


@pytest.fixture
async def slack(make_settings: Callable[..., Any]) -> AsyncIterator[Harness]:
    async with running(make_settings) as harness:
        harness.emu.add_user(ALICE, name="alice", locale="en-US")
        harness.emu.dms[ALICE] = "D0ALICEDM1"
        yield harness


def _form_payload_without(form: str, key: str) -> str:
    """An interactivity form whose JSON ``payload`` lacks ``key``."""
    payload = json.loads(parse_qs(form)["payload"][0])
    del payload[key]
    return urlencode({"payload": json.dumps(payload)})


def _event(event: Any, **envelope: Any) -> str:
    return json.dumps(
        {"type": "event_callback", "team_id": TEAM, "event_id": "Ev0BROKEN01", **envelope}
        | ({"event": event} if event is not None else {})
    )


#: (name, body, sent as JSON): each is what a broken or hostile sender could sign.
MALFORMED: list[tuple[str, str, bool]] = [
    ("bad JSON", '{"type": "event_callback", "event": {"text": "' + SECRET_NUMBER + '"', True),
    ("a JSON array", json.dumps([{"type": "event_callback", "text": SECRET_NUMBER}]), True),
    ("a JSON string", json.dumps(SECRET_NUMBER), True),
    ("a payload that is not JSON", urlencode({"payload": "{not json " + SECRET_NUMBER}), False),
    ("a payload that is an array", urlencode({"payload": json.dumps([SECRET_NUMBER])}), False),
    (
        "a view submission without type",
        _form_payload_without(
            view_submission(
                TEAM, ALICE, {"id": "V1", "callback_id": PHONE_VIEW}, {PHONE_INPUT: SECRET_NUMBER}
            ),
            "type",
        ),
        False,
    ),
    (
        "a view submission without its view",
        _form_payload_without(
            view_submission(
                TEAM, ALICE, {"id": "V1", "callback_id": PHONE_VIEW}, {PHONE_INPUT: SECRET_NUMBER}
            ),
            "view",
        ),
        False,
    ),
    (
        "a button press without actions",
        _form_payload_without(block_action(TEAM, ALICE, "verifybot.start", "1.t"), "actions"),
        False,
    ),
    ("an event callback without an event", _event(None, text=SECRET_NUMBER), True),
    ("JSON nested too deep for the parser", _event(None)[:-1] + ', "x": ' + "[" * 100_000, True),
    ("an event that is not an object", _event(SECRET_NUMBER), True),
    ("an event without a type", _event({"text": SECRET_NUMBER, "user": ALICE}), True),
    ("a form that is no Slack request", urlencode({"text": SECRET_NUMBER}), False),
]


async def say_hello(h: Harness) -> None:
    """A DM that must still get its answer: the bot is serving."""
    before = len(h.emu.dm_messages(ALICE))
    event = {
        "type": "message",
        "channel": "D0ALICEDM1",
        "user": ALICE,
        "text": "hello",
        "ts": f"{time.time():.6f}",
        "channel_type": "im",
    }
    assert (await h.post(event_callback(TEAM, event), json_body=True))[0] == 200
    await until(lambda: len(h.emu.dm_messages(ALICE)) > before)


@pytest.mark.parametrize(("name", "body", "json_body"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_a_signed_malformed_request_is_a_400_and_one_warning(
    slack: Harness,
    caplog: pytest.LogCaptureFixture,
    name: str,
    body: str,
    json_body: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        status, _ = await slack.poster.post(body, json_body=json_body)
    assert status == 400, name
    warnings = [e for e in logs if e["log_level"] != "debug" and e["log_level"] != "info"]
    assert [(e["event"], e["log_level"]) for e in warnings] == [
        ("slack_request_malformed", "warning")
    ]
    assert "exc_info" not in warnings[0] and "exception" not in warnings[0]
    # Nothing else: no traceback from aiohttp, no complaint from bolt.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    everything = json.dumps(logs, default=str) + caplog.text
    assert SECRET_NUMBER not in everything and SECRET_NUMBER[1:] not in everything
    assert slack.emu.calls_to("views.open") == [] and slack.emu.calls_to("views.update") == []
    await say_hello(slack)


async def test_forged_or_stale_requests_are_refused_unread_even_when_malformed(
    slack: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    event = {"type": "message", "channel": "D0ALICEDM1", "user": ALICE, "text": "hello"}
    well_formed = event_callback(TEAM, {**event, "channel_type": "im"})
    ts = str(int(time.time()))
    with capture_logs() as logs:
        for body, _, json_body in MALFORMED:
            forged = sign("not-the-secret", ts, body)
            signed = await slack.poster.post(
                body, json_body=json_body, signature=forged, timestamp=float(ts)
            )
            assert signed[0] == 401
            stale = time.time() - 600
            assert (await slack.poster.post(body, json_body=json_body, timestamp=stale))[0] == 401
        assert (await slack.poster.post(well_formed, json_body=True, signature="v0=00"))[0] == 401
        # Slack signs UTF-8 text; other bytes are no Slack request, however they are signed.
        not_text = b"payload=\xff\xfe" + SECRET_NUMBER.encode()
        assert (await slack.poster.post(not_text))[0] == 401
        headers = {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"}
        async with slack.poster.session.post(
            slack.poster.url, data=well_formed, headers=headers
        ) as garbled:
            assert garbled.status == 401
        async with slack.poster.session.post(slack.poster.url, data=well_formed) as unsigned:
            assert unsigned.status == 401
    assert [e for e in logs if e["log_level"] not in ("debug", "info")] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert SECRET_NUMBER not in json.dumps(logs, default=str) + caplog.text
    assert slack.emu.dm_messages(ALICE) == []
    await say_hello(slack)


async def test_an_event_no_listener_handles_is_acknowledged(
    slack: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    unhandled = [
        (
            event_callback(TEAM, {"type": "reaction_added", "user": ALICE, "reaction": "x"}),
            True,
        ),
        # A message in a channel the bot is in: listened to, and left alone.
        (
            event_callback(
                TEAM,
                {"type": "message", "channel": "C1", "user": ALICE, "text": SECRET_NUMBER},
            ),
            True,
        ),
        # A button from an older version of the app.
        (block_action(TEAM, ALICE, "verifybot.retired", "1.t", channel="D0ALICEDM1"), False),
    ]
    with capture_logs() as logs:
        for body, json_body in unhandled:
            assert (await slack.poster.post(body, json_body=json_body))[0] == 200
    assert [e for e in logs if e["log_level"] not in ("debug", "info")] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert SECRET_NUMBER not in json.dumps(logs, default=str) + caplog.text
    assert slack.emu.dm_messages(ALICE) == []
    await say_hello(slack)


async def test_slacks_certificate_check_is_answered_and_goes_no_further(slack: Harness) -> None:
    # Slack's ssl_check of a slash command URL may come unsigned; bolt answers it before
    # its signature check, and so do we. A "check" smuggling a command reaches nothing.
    check = urlencode({"ssl_check": "1", "token": "deprecated-verification-token"})
    smuggled = urlencode({"ssl_check": "1", "command": "/verify", "user_id": ALICE})
    for body in (check, smuggled):
        async with slack.poster.session.post(
            slack.poster.url,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as answer:
            assert answer.status == 200
    assert slack.emu.calls_to("views.open") == [] and slack.emu.calls_to("users.info") == []


async def test_odd_values_inside_a_well_formed_request_do_not_break_a_listener(
    slack: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    dm = {"type": "message", "channel": "D0ALICEDM1", "user": ALICE, "channel_type": "im"}
    events: list[dict[str, Any]] = [
        {**dm, "text": 4474001234},
        {**dm, "text": SECRET_NUMBER, "channel": None},
        {**dm, "text": SECRET_NUMBER, "user": {"id": ALICE}},
        {"type": "app_home_opened", "tab": "home", "channel": "D0ALICEDM1"},
        {"type": "team_join", "user": ALICE},
    ]
    view = {"id": "V1", "callback_id": PHONE_VIEW, "type": "modal"}
    odd_state = json.loads(
        parse_qs(view_submission(TEAM, ALICE, view, {PHONE_INPUT: SECRET_NUMBER}))["payload"][0]
    )
    odd_state["view"]["state"] = {"values": {PHONE_INPUT: SECRET_NUMBER}}
    with capture_logs() as logs:
        for event in events:
            assert (await slack.post(event_callback(TEAM, event), json_body=True))[0] == 200
        status, answer = await slack.post(urlencode({"payload": json.dumps(odd_state)}))
        assert status == 200 and answer["response_action"] == "errors"
        await say_hello(slack)
    assert [e for e in logs if e["log_level"] not in ("debug", "info")] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert len(slack.emu.dm_messages(ALICE)) == 1  # only the answer to the hello


async def test_a_malformed_delivery_asks_slack_not_to_send_it_again(slack: Harness) -> None:
    body = MALFORMED[0][1]
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign(SECRET, ts, body),
    }
    async with slack.poster.session.post(slack.poster.url, data=body, headers=headers) as answer:
        assert answer.status == 400
        assert answer.headers.get("X-Slack-No-Retry") == "1"
