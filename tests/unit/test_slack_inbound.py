"""What the Slack adapter accepts from a signed sender before bolt sees it: anything at all
is either refused with a reason word or handed on in a shape bolt can build its request
from. Fuzzed from the payloads Slack documents, with keys dropped and values replaced."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlencode

from hypothesis import given, settings
from hypothesis import strategies as st
from slack_bolt.request.async_request import AsyncBoltRequest

from adapters.slack.inbound import is_ssl_check, parse_http, shape_problem, socket_frame_problem
from tests.emulators.slack_requests import (
    block_action,
    event_callback,
    message_shortcut,
    slash_command,
    view_submission,
)

TEAM, USER = "T0EMULATED", "U0ALICE001"
VIEW = {"id": "V1", "type": "modal", "callback_id": "verifybot.phone", "blocks": []}
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

#: Slack's own shapes, as the e2e tests send them.
EVENT = json.loads(event_callback(TEAM, {"type": "message", "user": USER, "channel": "D1"}))
INTERACTIVE = [
    json.loads(parse_qs(form)["payload"][0])
    for form in (
        view_submission(TEAM, USER, VIEW, {"verifybot.phone": "+44 7400 123456"}),
        block_action(TEAM, USER, "verifybot.start", "1.t", channel="D1"),
        message_shortcut(TEAM, USER, "verifybot.grant", "1.t", {"ts": "1.1", "user": USER}),
    )
]
COMMAND = {k: v[0] for k, v in parse_qs(slash_command(TEAM, USER, "1.t")).items()}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


def test_slacks_own_shapes_are_accepted() -> None:
    for body in (EVENT, COMMAND, *INTERACTIVE):
        assert shape_problem(body) is None, body
    assert parse_http(json.dumps(EVENT), JSON) == EVENT
    assert parse_http(urlencode(COMMAND), FORM) == COMMAND


@st.composite
def mangled(draw: st.DrawFn) -> dict[str, Any]:
    """A Slack payload with keys dropped and values replaced, at the top or one level down."""
    body: dict[str, Any] = json.loads(json.dumps(draw(st.sampled_from([EVENT, *INTERACTIVE]))))
    for _ in range(draw(st.integers(1, 3))):
        target = body
        nested = [k for k, v in body.items() if isinstance(v, dict)]
        if bool(nested) and draw(st.booleans()):
            target = body[draw(st.sampled_from(nested))]
        if not target:
            break
        key = draw(st.sampled_from(sorted(target)))
        if draw(st.booleans()):
            del target[key]
        else:
            target[key] = draw(json_values)
    return body


def _accepted_builds_a_bolt_request(text: str, content_type: str) -> None:
    parsed = parse_http(text, content_type)
    if isinstance(parsed, str):
        assert parsed.replace("_", "").isalpha()  # a reason word, never content
        return
    # What is handed on, bolt can build its request (and context) from.
    request = AsyncBoltRequest(body=text, headers={"content-type": content_type})
    assert request.body == parsed


@settings(max_examples=300, deadline=None)
@given(body=mangled())
def test_a_mangled_payload_is_refused_or_safe_for_bolt(body: dict[str, Any]) -> None:
    _accepted_builds_a_bolt_request(json.dumps(body), JSON)
    _accepted_builds_a_bolt_request(urlencode({"payload": json.dumps(body)}), FORM)
    problem, envelope_id = socket_frame_problem(
        json.dumps({"envelope_id": "e1", "type": "interactive", "payload": body})
    )
    assert envelope_id == "e1" and problem == shape_problem(body)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60), content_type=st.sampled_from([JSON, FORM, "text/plain"]))
def test_any_text_is_refused_or_safe_for_bolt(text: str, content_type: str) -> None:
    _accepted_builds_a_bolt_request(text, content_type)
    socket_frame_problem(text)  # never raises
    is_ssl_check(text, content_type)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_any_json_is_refused_or_safe_for_bolt(value: Any) -> None:
    _accepted_builds_a_bolt_request(json.dumps(value), JSON)
    _accepted_builds_a_bolt_request(urlencode({"payload": json.dumps(value)}), FORM)


def test_json_nested_too_deep_for_the_parser_is_refused() -> None:
    deep = '{"type": "event_callback", "event": ' + "[" * 100_000
    assert parse_http(deep, JSON) == "too_deep"
    assert parse_http(urlencode({"payload": deep}), FORM) == "too_deep"
    assert socket_frame_problem(deep) == ("too_deep", None)


def test_only_an_exact_ssl_check_form_is_one() -> None:
    assert is_ssl_check("ssl_check=1&token=x", FORM)
    assert not is_ssl_check("ssl_check=0&token=x", FORM)
    assert not is_ssl_check("ssl_check=true", FORM)
    assert not is_ssl_check('{"ssl_check": "1"}', JSON)
