"""What Slack sends a bot over HTTP, built and signed as Slack does.

Payload shapes follow Slack's docs for slash commands (a form body), interactivity
(``payload=<json>`` form field: ``block_actions``, ``view_submission``, ``message_action``
for a message shortcut) and the Events API
envelope (``slack-events-api.wrapper.schema.json``). Signatures are computed here with
hmac, not with slack-sdk, so the test does not trust the code it checks:
``X-Slack-Signature: v0=HMAC-SHA256(secret, "v0:{ts}:{body}")``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp

_ids = itertools.count(1)


def sign(secret: str, timestamp: str, body: str | bytes) -> str:
    raw = body.encode() if isinstance(body, str) else body
    base = f"v0:{timestamp}:".encode() + raw
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def slash_command(
    team_id: str,
    user_id: str,
    trigger_id: str,
    text: str = "",
    *,
    command: str = "/verify",
    response_url: str = "https://hooks.slack.com/commands/T0/1/x",
    channel_id: str = "C0GENERAL1",
) -> str:
    return urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": team_id,
            "team_domain": "emulated",
            "channel_id": channel_id,
            "channel_name": "general",
            "user_id": user_id,
            "user_name": "member",
            "command": command,
            "text": text,
            "api_app_id": "A0EMULATED",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
    )


def verifybot(team_id: str, user_id: str, text: str, *, response_url: str, trigger_id: str) -> str:
    """``/verifybot <text>``, the moderators' command. The command is escaped (the
    manifest's ``should_escape: true``), so a mention in ``text`` is ``<@U123|name>``."""
    return slash_command(
        team_id, user_id, trigger_id, text, command="/verifybot", response_url=response_url
    )


def message_shortcut(
    team_id: str,
    user_id: str,
    callback_id: str,
    trigger_id: str,
    message: dict[str, Any],
    *,
    channel: str = "C0GENERAL1",
    response_url: str = "https://hooks.slack.com/app/T0/1/x",
) -> str:
    """A message shortcut chosen from ``message``'s menu (``type: message_action``)."""
    payload = {
        "type": "message_action",
        "callback_id": callback_id,
        "trigger_id": trigger_id,
        "response_url": response_url,
        "team": {"id": team_id, "domain": "emulated"},
        "channel": {"id": channel, "name": "general"},
        "user": _user(team_id, user_id),
        "message": {"type": "message", **message},
        "message_ts": message.get("ts", "1.1"),
        "action_ts": f"{time.time():.6f}",
        "token": "deprecated-verification-token",
    }
    return urlencode({"payload": json.dumps(payload)})


def _user(team_id: str, user_id: str) -> dict[str, Any]:
    return {"id": user_id, "username": "member", "name": "member", "team_id": team_id}


def view_submission(
    team_id: str,
    user_id: str,
    view: dict[str, Any],
    values: dict[str, str],
    *,
    selected: dict[str, str] | None = None,
) -> str:
    """The member pressed submit on ``view`` (as the emulator stored it) with ``values``
    typed into the inputs and ``selected`` options chosen in static selects (block_id =
    action_id = key, as the adapter builds them)."""
    state: dict[str, Any] = {
        "values": {
            key: {key: {"type": "plain_text_input", "value": value}}
            for key, value in values.items()
        }
    }
    for key, value in (selected or {}).items():
        option = {"text": {"type": "plain_text", "text": value, "emoji": True}, "value": value}
        state["values"][key] = {key: {"type": "static_select", "selected_option": option}}
    payload = {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "emulated"},
        "user": _user(team_id, user_id),
        "api_app_id": "A0EMULATED",
        "token": "deprecated-verification-token",
        "trigger_id": f"{next(_ids)}.trigger",
        "view": {**view, "state": state, "app_id": "A0EMULATED"},
        "response_urls": [],
    }
    return urlencode({"payload": json.dumps(payload)})


def block_action(
    team_id: str,
    user_id: str,
    action_id: str,
    trigger_id: str,
    *,
    view: dict[str, Any] | None = None,
    channel: str | None = None,
    value: str | None = None,
    response_url: str | None = None,
    ephemeral: bool = False,
) -> str:
    """A button press in a modal or the Home tab (``view``) or in a message (``channel``);
    a message the app posted through a ``response_url`` is ``ephemeral``, and the press
    carries a fresh ``response_url`` to replace it."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": team_id, "domain": "emulated"},
        "user": _user(team_id, user_id),
        "api_app_id": "A0EMULATED",
        "token": "deprecated-verification-token",
        "trigger_id": trigger_id,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b1",
                "value": action_id if value is None else value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    if view is not None:
        payload["container"] = {"type": "view", "view_id": view["id"]}
        payload["view"] = view
    if channel is not None:
        payload["container"] = {"type": "message", "channel_id": channel, "message_ts": "1.1"}
        if ephemeral:
            payload["container"]["is_ephemeral"] = True
        payload["channel"] = {"id": channel, "name": "directmessage"}
    if response_url is not None:
        payload["response_url"] = response_url
    return urlencode({"payload": json.dumps(payload)})


def event_callback(team_id: str, event: dict[str, Any], event_id: str | None = None) -> str:
    envelope = {
        "token": "deprecated-verification-token",
        "team_id": team_id,
        "api_app_id": "A0EMULATED",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_ids):010d}",
        "event_time": int(time.time()),
        "authed_users": [],
    }
    return json.dumps(envelope)


class SignedPoster:
    """POSTs bodies to the bot's endpoint as Slack would, signed with ``secret``."""

    def __init__(self, session: aiohttp.ClientSession, url: str, secret: str) -> None:
        self.session = session
        self.url = url
        self.secret = secret

    async def post(
        self,
        body: str | bytes,
        *,
        json_body: bool = False,
        timestamp: float | None = None,
        signature: str | None = None,
        retry_num: int | None = None,
    ) -> tuple[int, str]:
        ts = str(int(time.time() if timestamp is None else timestamp))
        headers = {
            "Content-Type": "application/json"
            if json_body
            else "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature or sign(self.secret, ts, body),
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        data = body.encode() if isinstance(body, str) else body
        async with self.session.post(self.url, data=data, headers=headers) as response:
            return response.status, await response.text()
