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

Channels, user groups and files (the roles and admin work):

* Channels exist only once a test adds them (``add_channel``), with their members, and
  marked archived, private or without the bot as the test needs. ``conversations.invite``
  answers ``channel_not_found`` (unknown, or private without the bot), ``is_archived``,
  ``not_in_channel`` (the bot is not a member), ``already_in_channel``, ``user_not_found``
  and ``cant_invite_self``; ``conversations.kick`` answers ``not_in_channel`` for a member
  who is not there and ``cant_kick_from_general``.
* ``usergroups.users.update`` replaces the whole list, and refuses an empty one with
  ``no_users_provided`` (Slack's docs: use usergroups.disable instead). ``free_plan = True``
  makes every user group call answer ``plan_upgrade_required``, as a free workspace does.
* The spec's error enums predate some errors Slack's method docs list (``no_such_subteam``,
  ``plan_upgrade_required``, ``no_users_provided``, ``invalid_users`` for the user group
  calls): ``DOCUMENTED_ERRORS`` adds those, so they can be injected too.
* File uploads as slack-sdk's ``files_upload_v2`` performs them. The spec has neither
  ``files.getUploadURLExternal`` nor ``files.completeUploadExternal``, so ``DOCS_METHODS``
  describes them from Slack's method docs (arguments, errors, a success schema) and they
  are checked the same way. The upload URL is served here (``/upload/v1/<file id>``), takes
  the raw bytes (Slack also takes multipart; the SDK sends raw) and answers ``OK - <n>``.
  Completing with ``channel_id`` shares the file in that channel as a bot message with
  ``files``; every completed upload is kept in ``files`` (bytes, filename, channel).
* ``response_url``: ``new_response_url()`` gives one served here; what the app POSTs to it
  is kept in ``responses`` (Slack's 5 uses and 30 minutes are not enforced).
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
#: Errors Slack's method docs list that the spec's enums omit.
DOCUMENTED_ERRORS: dict[str, frozenset[str]] = {
    "usergroups.users.list": frozenset({"no_such_subteam", "plan_upgrade_required"}),
    "usergroups.users.update": frozenset(
        {"no_such_subteam", "plan_upgrade_required", "no_users_provided", "invalid_users"}
    ),
}
_STANDARD_ERRORS = (
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "invalid_arguments",
    "missing_scope",
    "ratelimited",
    "internal_error",
    "fatal_error",
)
#: Methods the spec lacks, described from Slack's method docs as the spec would: the
#: arguments (name: required), the error names, and the success answer's schema.
DOCS_METHODS: dict[str, dict[str, Any]] = {
    "files.getUploadURLExternal": {
        "arguments": {"filename": True, "length": True, "alt_txt": False, "snippet_type": False},
        "errors": (
            "missing_argument",
            "alt_txt_too_large",
            "file_type_not_allowed",
            "file_upload_size_restricted",
            "file_uploads_disabled",
            "file_uploads_except_images_disabled",
            "snippet_too_large",
            "storage_limit_reached",
            *_STANDARD_ERRORS,
        ),
        "schema": {
            "type": "object",
            "additionalProperties": False,
            "required": ["ok", "upload_url", "file_id"],
            "properties": {
                "ok": {"enum": [True]},
                "upload_url": {"type": "string", "pattern": "^https?://"},
                "file_id": {"type": "string", "pattern": "^F[A-Z0-9]{8,}$"},
            },
        },
    },
    "files.completeUploadExternal": {
        "arguments": {
            "files": True,
            "channel_id": False,
            "channels": False,
            "initial_comment": False,
            "thread_ts": False,
            "blocks": False,
        },
        "errors": (
            "file_not_found",
            "channel_not_found",
            "invalid_channel",
            "not_in_channel",
            "file_update_failed",
            "posting_to_general_channel_denied",
            "restricted_action",
            *_STANDARD_ERRORS,
        ),
        "schema": {
            "type": "object",
            "additionalProperties": False,
            "required": ["ok", "files"],
            "properties": {
                "ok": {"enum": [True]},
                "files": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "title"],
                        "properties": {
                            "id": {"type": "string", "pattern": "^F[A-Z0-9]{8,}$"},
                            "title": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}


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


@dataclass
class Channel:
    id: str
    name: str
    members: set[str] = field(default_factory=set)
    archived: bool = False
    private: bool = False
    general: bool = False
    #: Whether the bot is a member: it can invite only into channels it is in.
    bot_in: bool = True


@dataclass
class UploadedFile:
    id: str
    filename: str
    length: int
    content: bytes | None = None
    title: str | None = None
    #: Where it was shared (channel_id or channels); empty for a private file.
    channels: tuple[str, ...] = ()
    initial_comment: str | None = None


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
        self.channels: dict[str, Channel] = {}
        #: A free workspace: user groups need a paid plan.
        self.free_plan = False
        self.uploads: dict[str, UploadedFile] = {}
        #: Completed uploads, in order.
        self.files: list[UploadedFile] = []
        #: What the app posted to each response_url, by its id.
        self.responses: dict[str, list[dict[str, Any]]] = {}
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
        app.router.add_post("/upload/v1/{file_id}", self._upload)
        app.router.add_post("/response/{response_id}", self._respond)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
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

    def add_channel(
        self,
        channel_id: str,
        *,
        name: str = "verified",
        members: tuple[str, ...] = (),
        archived: bool = False,
        private: bool = False,
        general: bool = False,
        bot_in: bool = True,
    ) -> Channel:
        channel = Channel(channel_id, name, set(members), archived, private, general, bot_in)
        self.channels[channel_id] = channel
        return channel

    def new_response_url(self) -> str:
        response_id = f"R{next(self._ids):09d}"
        self.responses[response_id] = []
        return f"http://127.0.0.1:{self.port}/response/{response_id}"

    def responded(self, response_url: str) -> list[dict[str, Any]]:
        """What the app posted to ``response_url`` so far."""
        return self.responses.get(response_url.rsplit("/", 1)[-1], [])

    def new_trigger(self) -> str:
        trigger = f"{next(self._ids)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        self._triggers[trigger] = (time.monotonic(), False)
        return trigger

    def inject(self, method: str, *, error: str) -> None:
        allowed = self._error_enum(method)
        if allowed is not None and error not in allowed | DOCUMENTED_ERRORS.get(method, set()):
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

    async def send_raw(self, frame: str) -> None:
        """A websocket text frame as it is, for a test of what the client does with junk."""
        await self.sockets[-1].ws.send_str(frame)

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
        # An empty value is an argument given empty, as Slack reads it (``users=`` is
        # no_users_provided, not a missing argument).
        args: dict[str, Any] = dict(parse_qsl(request.query_string, keep_blank_values=True))
        body = await request.read()
        if body:
            if request.content_type == "application/json":
                args.update(json.loads(body))
            else:
                args.update(parse_qsl(body.decode(), keep_blank_values=True))
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
        if path:
            operation: dict[str, Any] = next(iter(path.values()))
            return operation
        described = DOCS_METHODS.get(method)
        if described is None:
            return None
        # In the spec's own shape, so the checks below treat both alike.
        return {
            "parameters": [
                {"name": name, "required": required}
                for name, required in described["arguments"].items()
            ],
            "responses": {
                "200": {"schema": described["schema"]},
                "default": {
                    "schema": {"properties": {"error": {"enum": list(described["errors"])}}}
                },
            },
        }

    def _error_enum(self, method: str) -> set[str] | None:
        operation = self._operation(method)
        if operation is None:
            return None
        schema = operation["responses"].get("default", {}).get("schema", {})
        enum = schema.get("properties", {}).get("error", {}).get("enum")
        return set(enum) if enum else None

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

    def _channel_answer(self, channel: Channel) -> dict[str, Any]:
        return {
            "id": channel.id,
            "name": channel.name,
            "created": 1700000000,
            "creator": self.bot_user_id,
            "is_archived": channel.archived,
            "is_channel": not channel.private,
            "is_general": channel.general,
            "is_mpim": False,
            "is_group": channel.private,
            "is_org_shared": False,
            "is_im": False,
            "is_shared": False,
            "is_private": channel.private,
            "name_normalized": channel.name,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }

    def _visible_channel(self, channel_id: str) -> Channel | None:
        channel = self.channels.get(channel_id)
        # A private channel the bot is not in does not exist, as far as the bot can tell.
        if channel is None or (channel.private and not channel.bot_in):
            return None
        return channel

    def _conversations_invite(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._visible_channel(str(args.get("channel", "")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        users = [u for u in str(args.get("users", "")).split(",") if u]
        if not users:
            return {"ok": False, "error": "no_user"}
        if len(users) > 1000:
            return {"ok": False, "error": "too_many_users"}
        if channel.archived:
            return {"ok": False, "error": "is_archived"}
        if not channel.bot_in:
            return {"ok": False, "error": "not_in_channel"}
        for user in users:
            if user == self.bot_user_id:
                return {"ok": False, "error": "cant_invite_self"}
            if user not in self.users:
                return {"ok": False, "error": "user_not_found"}
            if user in channel.members:
                return {"ok": False, "error": "already_in_channel"}
        channel.members.update(users)
        return {"ok": True, "channel": self._channel_answer(channel)}

    def _conversations_kick(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._visible_channel(str(args.get("channel", "")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        user = str(args.get("user", ""))
        if user == self.bot_user_id:
            return {"ok": False, "error": "cant_kick_self"}
        if user not in self.users:
            return {"ok": False, "error": "user_not_found"}
        if channel.general:
            return {"ok": False, "error": "cant_kick_from_general"}
        if user not in channel.members:
            return {"ok": False, "error": "not_in_channel"}
        channel.members.discard(user)
        return {"ok": True}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.free_plan:
            return {"ok": False, "error": "plan_upgrade_required"}
        group = str(args["usergroup"])
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[group])}

    def _usergroups_users_update(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.free_plan:
            return {"ok": False, "error": "plan_upgrade_required"}
        group = str(args["usergroup"])
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        users = [u for u in str(args["users"]).split(",") if u]
        if not users:
            return {"ok": False, "error": "no_users_provided"}
        if any(u not in self.users for u in users):
            return {"ok": False, "error": "invalid_users"}
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

    # --- files (upload v2) and response_url ----------------------------------------------

    def _files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            length = int(args["length"])
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}
        if length <= 0:
            return {"ok": False, "error": "missing_argument"}
        file_id = f"F{next(self._ids):09d}"
        self.uploads[file_id] = UploadedFile(file_id, str(args["filename"]), length)
        url = f"http://127.0.0.1:{self.port}/upload/v1/{file_id}"
        return {"ok": True, "upload_url": url, "file_id": file_id}

    async def _upload(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["file_id"])
        if upload is None:
            return web.Response(status=404, text="not found")
        upload.content = await request.read()
        if len(upload.content) != upload.length:
            self.internal_errors.append(
                f"upload {upload.id}: {len(upload.content)} bytes, announced {upload.length}"
            )
        return web.Response(text=f"OK - {len(upload.content)}")

    def _files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            wanted = self._json_arg(args["files"])
            ids = [(str(f["id"]), f.get("title")) for f in wanted]
        except (ValueError, TypeError, KeyError):
            return {"ok": False, "error": "invalid_arguments"}
        uploads = [self.uploads.get(file_id) for file_id, _ in ids]
        if not ids or any(u is None or u.content is None for u in uploads):
            return {"ok": False, "error": "file_not_found"}
        targets = [str(args["channel_id"])] if args.get("channel_id") else []
        targets += [c for c in str(args.get("channels", "")).split(",") if c]
        for index, target in enumerate(targets):
            if re.fullmatch(r"[UW][A-Z0-9]+", target) and target in self.users:
                targets[index] = self._dm_for(target)
            elif target not in self.dms.values() and self._visible_channel(target) is None:
                return {"ok": False, "error": "channel_not_found"}
        done: list[UploadedFile] = []
        for upload, (_, title) in zip(uploads, ids, strict=True):
            assert upload is not None
            upload.title = title or upload.filename
            upload.channels = tuple(targets)
            upload.initial_comment = args.get("initial_comment")
            del self.uploads[upload.id]
            self.files.append(upload)
            done.append(upload)
        for target in targets:
            message = {
                "type": "message",
                "text": args.get("initial_comment") or "",
                "ts": self._ts_now(),
                "bot_id": "B0EMULATED",
                "user": self.bot_user_id,
                "files": [{"id": f.id, "name": f.filename, "title": f.title} for f in done],
            }
            self.messages.setdefault(target, []).append(message)
        return {"ok": True, "files": [{"id": f.id, "title": f.title} for f in done]}

    async def _respond(self, request: web.Request) -> web.Response:
        response_id = request.match_info["response_id"]
        if response_id not in self.responses:
            return web.Response(status=404, text="no_active_hooks")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return web.Response(status=400, text="no_text")
        self.responses[response_id].append(body)
        return web.Response(text="ok")


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
    types: dict[str, type | tuple[type, ...]] = {
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
