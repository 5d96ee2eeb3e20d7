"""What Slack sends the bot, checked before bolt reads it.

bolt parses a request body when it builds its request object, before its own signature
check, and then indexes the shapes Slack documents. A body that is not JSON, a JSON array,
a ``payload`` form field that is not JSON or a payload without ``type`` raised inside bolt
(or aiohttp) and was answered 500 with a traceback. So, in front of bolt:

* over HTTP, the signature is checked first: a forged or stale request is 401, unread (so
  is a body that is not UTF-8: Slack signs text, and slack-sdk's verifier checks text);
* a signed request that is not what Slack sends is 400 and one WARNING line naming why
  (a fixed word, never the payload);
* in Socket Mode, where the websocket is the authentication, a malformed frame is one
  WARNING line and is acknowledged, so that Slack does not send it again.

Every shape named here is one that Slack's request payloads always carry and that bolt's
routing or our listeners read without checking (slash command, interactivity and Events
API payloads as Slack documents them; ``slack-events-api.wrapper.schema.json``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from slack_bolt.request.internals import parse_body

#: Interactivity payloads: what each kind must carry beyond ``type``, ``user.id`` and a team.
_INTERACTIVE_FIELDS: Mapping[str, tuple[str, ...]] = {
    "block_actions": ("actions", "trigger_id"),
    "view_submission": ("view",),
    "view_closed": ("view",),
    "message_action": ("callback_id", "trigger_id"),
    "shortcut": ("callback_id", "trigger_id"),
}
#: A slash command's form fields that the listeners read.
_COMMAND_FIELDS = ("command", "team_id", "user_id", "trigger_id")
#: Ids bolt reads off every request, and the objects it looks for them in
#: (``slack_bolt.request.internals.extract_*``): each id is text or an object, or absent.
_ID_FIELDS = ("user", "channel", "team", "enterprise")
_ID_HOLDERS = ("event", "message", "previous_message", "item", "assistant_thread")


def is_ssl_check(text: str, content_type: str | None) -> bool:
    """Slack's certificate check of a slash command URL (``ssl_check=1``), which wants only a
    200 and may come unsigned: bolt answers it before its signature check (Slack's
    "Implementing slash commands" docs; bolt-js #2899 narrowed it to exactly ``1``). It is
    answered 200 and goes no further, so a forged one reaches nothing."""
    if content_type != "application/x-www-form-urlencoded" or "ssl_check=" not in text:
        return False
    return parse_qs(text).get("ssl_check") == ["1"]


def parse_http(text: str, content_type: str | None) -> dict[str, Any] | str:
    """The body as bolt will see it, or why it is not a request Slack sends."""
    try:
        # bolt's own parser, so that what is checked here is what bolt will route.
        body: object = parse_body(text, content_type)
    except ValueError:  # json.JSONDecodeError included
        return "not_json"
    except RecursionError:  # "[[[[…": json gives up at the interpreter's recursion limit
        return "too_deep"
    if not isinstance(body, dict):
        return "not_an_object"
    problem = shape_problem(body)
    return body if problem is None else problem


def shape_problem(body: object) -> str | None:
    """Why ``body`` (a parsed request, or a Socket Mode envelope's payload) is not
    something Slack sends, as one short word; None when it is."""
    if not isinstance(body, dict):
        return "not_an_object"
    if not _ids_readable(body):
        return "bad_ids"
    if "command" in body:  # a form body: a slash command
        return None if _strings(body, _COMMAND_FIELDS) else "bad_command"
    kind = body.get("type")
    if not isinstance(kind, str):
        return "no_type"
    if kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "bad_event"
        return None if isinstance(body.get("team_id"), str) else "no_team"
    if kind == "url_verification":
        return None if isinstance(body.get("challenge"), str) else "bad_challenge"
    fields = _INTERACTIVE_FIELDS.get(kind)
    if fields is None:
        return None  # a kind the bot does not handle: acknowledged and ignored
    user = body.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        return "no_user"
    team = body.get("team")  # an object, or null for an org-wide install
    team_id = team.get("id") if isinstance(team, dict) else None
    if team is not None and not isinstance(team, dict):
        return "no_team"
    if not isinstance(team_id, str) and not isinstance(user.get("team_id"), str):
        return "no_team"
    if "actions" in fields and not _first_action_ok(body.get("actions")):
        return "bad_actions"
    if "view" in fields and not _view_ok(body.get("view")):
        return "bad_view"
    others = tuple(name for name in fields if name not in ("actions", "view"))
    return None if _strings(body, others) else f"bad_{kind}"


def socket_frame_problem(frame: str) -> tuple[str | None, str | None]:
    """Why a Socket Mode text frame is not one Slack sends (or None), and its envelope id
    when it has one to acknowledge."""
    try:
        message: object = json.loads(frame)
    except ValueError:
        return "not_json", None
    except RecursionError:
        return "too_deep", None
    if not isinstance(message, dict):
        return "not_an_object", None
    envelope_id = message.get("envelope_id")
    envelope_id = envelope_id if isinstance(envelope_id, str) and envelope_id else None
    if "payload" not in message:
        return None, envelope_id  # hello, disconnect: no payload to route
    return shape_problem(message["payload"]), envelope_id


def _ids_readable(body: Mapping[str, Any], depth: int = 0) -> bool:
    if depth > 3:  # bolt looks two levels down at most (event.message.user)
        return True
    if not all(isinstance(body.get(name), str | dict | None) for name in _ID_FIELDS):
        return False
    authorizations = body.get("authorizations")
    if authorizations is not None and not (
        isinstance(authorizations, list)
        and all(isinstance(a, dict) and _ids_readable(a, depth + 1) for a in authorizations)
    ):
        return False
    # bolt takes the first; with more than one it logs through a logger its context does
    # not have yet (KeyError). Our modals never ask for response URLs.
    urls = body.get("response_urls")
    if "response_urls" in body and not (
        isinstance(urls, list) and len(urls) <= 1 and all(isinstance(u, dict) for u in urls)
    ):
        return False
    holders = (body.get(name) for name in _ID_HOLDERS)
    return all(_ids_readable(h, depth + 1) for h in holders if isinstance(h, dict))


def _strings(body: Mapping[str, Any], names: tuple[str, ...]) -> bool:
    return all(isinstance(body.get(name), str) for name in names)


def _first_action_ok(actions: object) -> bool:
    if not isinstance(actions, list) or not actions:
        return False
    first = actions[0]
    return isinstance(first, dict) and isinstance(first.get("action_id"), str)


def _view_ok(view: object) -> bool:
    if not isinstance(view, dict) or not _strings(view, ("id", "callback_id")):
        return False
    return isinstance(view.get("private_metadata", ""), str)
