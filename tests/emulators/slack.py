"""Emulator of the Slack Web API and of Socket Mode, held to Slack's OpenAPI description.

An aiohttp server on 127.0.0.1 in the test's own event loop; the real slack-sdk
``AsyncWebClient`` (and bolt through it) talks to it with ``base_url=emu.url``::

    async with SlackEmulator(spec_path) as slack:
        slack.add_user("U0ALICE01", locale="es-ES")
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.url)

Every call is checked against ``slack-web-api.openapi.json``: argument names against the
method's parameters, the bot token, and each success answer against the method's response
schema (a mismatch lands in ``internal_errors``, which tests assert empty).

Choices where the spec is silent:

* ``team_id`` is accepted on every method (see ``UNIVERSAL_ARGUMENTS``).
* An unknown argument, or a missing required one, answers ``invalid_arguments`` (the
  error name Slack uses for both, though the spec's per-method enums do not list it).
* ``token`` is accepted as a Bearer header or a form field, as Slack does; any other
  token answers ``invalid_auth``. ``apps.connections.open`` (absent from this spec) takes
  only the app-level token and answers ``{"ok": true, "url": "ws://…"}`` as Slack's docs show.
* An injected error must be one the spec lists for that method when it lists any, so a
  test cannot rely on an answer Slack never gives. Injections are one-shot.
* A 429 carries ``Retry-After`` and ``{"ok": false, "error": "ratelimited"}``.
* A ``trigger_id`` (from ``new_trigger``) works once and for 3 s; otherwise
  ``views.open`` answers ``expired_trigger_id`` (used) or ``invalid_trigger_id``.
* ``views.update`` with a stale ``hash`` answers ``hash_conflict``; an unknown id
  ``not_found``. Each update makes a new hash.
* ``chat.postMessage`` to a user id posts to that user's DM, as Slack does.
* Socket Mode: the server sends ``hello`` on connect, then the envelopes a test pushes with
  ``send_envelope``; the client's acks are recorded by ``envelope_id``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

__all__ = ["Call", "SlackEmulator", "validate"]

TRIGGER_LIFETIME = 3.0
#: slack-sdk adds ``team_id`` to every call of a client bolt made for a team (org-wide
#: apps need it); Slack accepts it everywhere, though the spec lists it per method only.
UNIVERSAL_ARGUMENTS = frozenset({"team_id"})


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]
    at: float


@dataclass
class _View:
    id: str
    view: dict[str, Any]
    hash: str
    user_id: str


@dataclass
class _Injection:
    error: str | None = None
    retry_after: int | None = None


@dataclass
class _Socket:
    ws: web.WebSocketResponse
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)


class SlackEmulator:
    def __init__(
        self,
        spec_path: Path,
        *,
        bot_token: str = "xoxb-1-emulated",  # noqa: S107 - the emulator's own fake
        app_token: str = "xapp-1-A0EMULATED-1-emulated",  # noqa: S107
        team_id: str = "T0EMULATED",
        bot_user_id: str = "U0BOT00001",
    ) -> None:
        self.spec = json.loads(spec_path.read_text())
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.users: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.internal_errors: list[str] = []
        self.views: dict[str, _View] = {}
        self.published: dict[str, dict[str, Any]] = {}
        self.dms: dict[str, str] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.sockets: list[_Socket] = []
        self._triggers: dict[str, tuple[float, bool]] = {}
        self._injected: dict[str, list[_Injection]] = {}
        self._ids = itertools.count(1)
        self._ts = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._connected = asyncio.Event()
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> SlackEmulator:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link/", self._socket)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sock in self.sockets:
            await sock.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    # --- what tests set up and read ------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        *,
        name: str = "member",
        locale: str = "en-US",
        is_admin: bool = False,
        is_owner: bool = False,
        is_bot: bool = False,
    ) -> dict[str, Any]:
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": name.title(),
            "locale": locale,
            "is_admin": is_admin,
            "is_owner": is_owner,
            "is_bot": is_bot,
            "is_app_user": False,
            "deleted": False,
            "updated": 1700000000,
            "profile": {
                key: ""
                for key in (
                    "avatar_hash",
                    "real_name_normalized",
                    "display_name_normalized",
                    "title",
                    "phone",
                    "skype",
                    "status_text",
                    "status_emoji",
                )
            }
            | {"real_name": name.title(), "display_name": name, "fields": {}},
        }
        self.users[user_id] = user
        return user

    def new_trigger(self) -> str:
        trigger = f"{next(self._ids)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        self._triggers[trigger] = (time.monotonic(), False)
        return trigger

    def inject(self, method: str, *, error: str) -> None:
        allowed = self._error_enum(method)
        if allowed is not None and error not in allowed:
            raise ValueError(f"the spec lists no {error!r} for {method}")
        self._injected.setdefault(method, []).append(_Injection(error=error))

    def inject_rate_limit(self, method: str, *, retry_after: int = 1) -> None:
        self._injected.setdefault(method, []).append(_Injection(retry_after=retry_after))

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def dm_messages(self, user_id: str) -> list[dict[str, Any]]:
        channel = self.dms.get(user_id)
        return self.messages.get(channel, []) if channel else []

    # --- Socket Mode ---------------------------------------------------------------------

    async def wait_connected(self, within: float = 5.0) -> None:
        await asyncio.wait_for(self._connected.wait(), within)

    async def send_envelope(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        envelope_id: str | None = None,
    ) -> str:
        envelope_id = envelope_id or f"{secrets.token_hex(4)}-{next(self._ids)}"
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        await self.sockets[-1].ws.send_str(json.dumps(envelope))
        return envelope_id

    async def wait_ack(self, envelope_id: str, within: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for sock in self.sockets:
                if envelope_id in sock.acks:
                    return sock.acks[envelope_id]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no ack for envelope {envelope_id}")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sock = _Socket(ws)
        self.sockets.append(sock)
        hello = {
            "type": "hello",
            "num_connections": len(self.sockets),
            "debug_info": {"host": "emulator", "approximate_connection_time": 3600},
            "connection_info": {"app_id": "A0EMULATED"},
        }
        await ws.send_str(json.dumps(hello))
        self._connected.set()
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            try:
                ack = json.loads(message.data)
                sock.acks[ack["envelope_id"]] = ack
            except (ValueError, KeyError, TypeError):
                self.internal_errors.append(f"socket: not an ack: {message.data[:200]}")
        return ws

    # --- the Web API ---------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(parse_qsl(request.query_string))
        body = await request.read()
        if body:
            if request.content_type == "application/json":
                args.update(json.loads(body))
            else:
                args.update(parse_qsl(body.decode()))
        token = args.pop("token", None)
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :]
        self.calls.append(Call(method, args, time.time()))
        if method == "apps.connections.open":
            if token != self.app_token:
                return self._error(method, "invalid_auth")
            return web.json_response(
                {
                    "ok": True,
                    "url": f"ws://127.0.0.1:{self.port}/link/?ticket={secrets.token_hex(8)}",
                }
            )
        operation = self._operation(method)
        if operation is None:
            return self._error(method, "unknown_method")
        if token != self.bot_token:
            return self._error(method, "invalid_auth")
        params = {p["name"]: p for p in operation.get("parameters", []) if p["name"] != "token"}
        unknown = set(args) - set(params) - UNIVERSAL_ARGUMENTS
        missing = {name for name, p in params.items() if p.get("required") and name not in args}
        if unknown or missing:
            return self._error(method, "invalid_arguments", unknown=sorted(unknown | missing))
        injected = self._injected.get(method)
        if injected:
            injection = injected.pop(0)
            if injection.retry_after is not None:
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(injection.retry_after)},
                )
            return self._error(method, injection.error or "internal_error")
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            self.internal_errors.append(f"{method} is in the spec but not emulated")
            return self._error(method, "unknown_method")
        answer: dict[str, Any] = handler(args)
        if answer.get("ok"):
            schema = operation["responses"]["200"].get("schema")
            if schema:
                for problem in validate(answer, schema, self.spec):
                    self.internal_errors.append(f"{method} answer: {problem}")
        return web.json_response(answer)

    def _operation(self, method: str) -> dict[str, Any] | None:
        path = self.spec["paths"].get("/" + method)
        return next(iter(path.values())) if path else None

    def _error_enum(self, method: str) -> list[str] | None:
        operation = self._operation(method)
        if operation is None:
            return None
        schema = operation["responses"].get("default", {}).get("schema", {})
        enum = schema.get("properties", {}).get("error", {}).get("enum")
        return list(enum) if enum else None

    def _error(self, method: str, error: str, **extra: Any) -> web.Response:
        return web.json_response({"ok": False, "error": error, **extra})

    def _ts_now(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    @staticmethod
    def _json_arg(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    # --- methods ---------------------------------------------------------------------------

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://emulated.slack.com/",
            "team": "Emulated",
            "user": "verifybot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": "B0EMULATED",
            "is_enterprise_install": False,
        }

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(args.get("user", ""))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        shown = dict(user)
        if str(args.get("include_locale", "")).lower() not in ("1", "true"):
            shown.pop("locale")
        return {"ok": True, "user": shown}

    def _dm_for(self, user_id: str) -> str:
        if user_id not in self.dms:
            self.dms[user_id] = f"D{next(self._ids):09d}"
        return self.dms[user_id]

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(args.get("users", "")).split(",") if u]
        if len(users) != 1:
            return {"ok": False, "error": "not_enough_users" if not users else "too_many_users"}
        if users[0] not in self.users:
            return {"ok": False, "error": "user_not_found"}
        already = users[0] in self.dms
        channel = {"id": self._dm_for(users[0])}
        return {"ok": True, "channel": channel, "already_open": already, "no_op": already}

    def _post(self, args: dict[str, Any], *, ephemeral_for: str | None = None) -> dict[str, Any]:
        channel = str(args["channel"])
        if re.fullmatch(r"[UW][A-Z0-9]+", channel):
            if channel not in self.users:
                return {"ok": False, "error": "channel_not_found"}
            channel = self._dm_for(channel)
        if not args.get("text") and not args.get("blocks"):
            return {"ok": False, "error": "no_text"}
        message = {
            "type": "message",
            "text": args.get("text") or "",
            "ts": self._ts_now(),
            "bot_id": "B0EMULATED",
            "user": self.bot_user_id,
        }
        if args.get("blocks"):
            message["blocks"] = self._json_arg(args["blocks"])
        if ephemeral_for:
            message["ephemeral_for"] = ephemeral_for
        self.messages.setdefault(channel, []).append(message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": message}

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        answer = self._post(args)
        if answer.get("ok"):
            answer["message"] = {k: v for k, v in answer["message"].items() if k != "blocks"}
        return answer

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        answer = self._post(args, ephemeral_for=str(args["user"]))
        if not answer.get("ok"):
            return answer
        return {"ok": True, "message_ts": answer["ts"]}

    def _new_view(self, view: dict[str, Any], user_id: str) -> dict[str, Any]:
        view_id = f"V{next(self._ids):09d}"
        stored = _View(view_id, view, secrets.token_hex(8), user_id)
        self.views[view_id] = stored
        return self._view_answer(stored)

    def _view_answer(self, stored: _View) -> dict[str, Any]:
        return {
            "ok": True,
            "view": {**stored.view, "id": stored.id, "hash": stored.hash, "team_id": self.team_id},
        }

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger = self._triggers.get(str(args["trigger_id"]))
        if trigger is None:
            return {"ok": False, "error": "invalid_trigger_id"}
        issued, used = trigger
        if used or time.monotonic() - issued > TRIGGER_LIFETIME:
            return {"ok": False, "error": "expired_trigger_id"}
        self._triggers[str(args["trigger_id"])] = (issued, True)
        view = self._json_arg(args["view"])
        if view.get("type") != "modal":
            return {"ok": False, "error": "invalid_arguments"}
        return self._new_view(view, "")

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        stored = self.views.get(str(args.get("view_id", "")))
        if stored is None or "view" not in args:
            return {"ok": False, "error": "not_found"}
        if args.get("hash") and args["hash"] != stored.hash:
            return {"ok": False, "error": "hash_conflict"}
        stored.view = self._json_arg(args["view"])
        stored.hash = secrets.token_hex(8)
        return self._view_answer(stored)

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        view = self._json_arg(args["view"])
        if view.get("type") != "home":
            return {"ok": False, "error": "invalid_arguments"}
        self.published[str(args["user_id"])] = view
        return self._new_view(view, str(args["user_id"]))

    def _conversations_invite(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel", ""))
        if not re.fullmatch(r"[CG][A-Z0-9]{8,}", channel):
            return {"ok": False, "error": "channel_not_found"}
        return {
            "ok": True,
            "channel": {
                "id": channel,
                "name": "verified",
                "created": 1700000000,
                "creator": self.bot_user_id,
                "is_archived": False,
                "is_channel": True,
                "is_general": False,
                "is_mpim": False,
                "is_group": False,
                "is_org_shared": False,
                "is_im": False,
                "is_shared": False,
                "is_private": False,
                "name_normalized": "verified",
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
            },
        }

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = str(args["usergroup"])
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[group])}

    def _usergroups_users_update(self, args: dict[str, Any]) -> dict[str, Any]:
        group = str(args["usergroup"])
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        users = [u for u in str(args["users"]).split(",") if u]
        self.usergroups[group] = users  # replaces the whole list, as Slack does
        return {
            "ok": True,
            "usergroup": {
                "id": group,
                "team_id": self.team_id,
                "is_usergroup": True,
                "is_subteam": True,
                "name": "Verified",
                "description": "",
                "handle": "verified",
                "is_external": False,
                "date_create": 1700000000,
                "date_update": int(time.time()),
                "date_delete": 0,
                "auto_type": None,
                "auto_provision": False,
                "enterprise_subteam_id": "",
                "created_by": self.bot_user_id,
                "updated_by": self.bot_user_id,
                "deleted_by": None,
                "prefs": {"channels": [], "groups": []},
                "users": users,
                "user_count": len(users),
            },
        }


# --- a small validator for the spec's JSON schemas (jsonschema is not installed) ---------


def validate(value: Any, schema: dict[str, Any], spec: dict[str, Any], at: str = "$") -> list[str]:
    """Problems with ``value`` against an OpenAPI 2 schema: $ref, type, enum, pattern,
    required, properties, additionalProperties false, and items. Slack's spec uses a list
    under ``items`` to mean "one of these"; that is read as anyOf."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return validate(value, spec["definitions"][name], spec, at)
    items = schema.get("items")
    if isinstance(items, list) and "type" not in schema:
        options = [validate(value, option, spec, at) for option in items]
        return [] if any(not o for o in options) else min(options, key=len)
    problems: list[str] = []
    kind = schema.get("type")
    types = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "integer": int,
        "number": (int, float),
        "null": type(None),
    }
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        ok = any(
            isinstance(value, types[k]) and not (k in ("integer", "number") and value is True)
            for k in kinds
            if k in types
        )
        if not ok:
            return [f"{at}: {value!r} is not {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{at}: {value!r} not in {schema['enum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        problems.append(f"{at}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{at}: missing {name}")
        for name, item in value.items():
            if name in properties:
                problems += validate(item, properties[name], spec, f"{at}.{name}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{at}: unexpected {name}")
    if isinstance(value, list) and isinstance(items, dict):
        for index, item in enumerate(value):
            problems += validate(item, items, spec, f"{at}[{index}]")
    return problems
