"""Protocol-faithful emulator of the Telegram Bot API over plain HTTP on 127.0.0.1.

The real ``python-telegram-bot`` (22.8) talks to it unchanged::

    with TelegramEmulator() as emu:
        user = emu.add_user("Ada")
        async with Bot(emu.token, base_url=emu.base_url, base_file_url=emu.base_file_url) as bot:
            emu.send_text(user, "/start")
            updates = await bot.get_updates(timeout=1)
            await bot.send_message(user, "hello")
        assert emu.last_message(user).text == "hello"
        assert not emu.internal_errors

Requests go to ``{base_url}{token}/{method}`` (``base_url`` is ``http://127.0.0.1:PORT/bot``);
every answer is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N,
"description": "..."}`` (429 adds ``parameters.retry_after``). Form, multipart, JSON bodies and
query strings are accepted; in form and multipart bodies every non-string value is a JSON string
(that is how PTB sends them). Method names are case-insensitive, as on the real server.

Every request is validated against the official description (``telegram-bot-api.json``, found
like the other specs: ``VERIFYBOT_SPECS``, ``<repo>/../shared/specs``, ``/work/shared/specs``;
the emulator refuses to start without it): required parameters, the type of every value
(Integer, Float, Boolean, String, ``Array of X`` and object types checked field by field,
recursively, with unknown fields refused), and every result the emulator builds is shaped by the
spec's types (``conforms()`` checks that, and the emulator's own tests run it on every result).

Sources: ``/work/shared/specs/telegram-bot-api.json`` and ``README.md`` beside it, and the Bot API
documentation's prose that the JSON carries in its descriptions. Choices where those are silent,
or where this emulator deliberately differs from the live server:

* **Stricter than the live server, on purpose** (the product issue asks for it): an unknown
  parameter is a 400 (``Bad Request: unknown parameter "x"``; the live server ignores it), and an
  unknown method is a 400 (``Bad Request: unknown method "x"``; the live server answers **404
  "Not Found"**, which PTB turns into ``InvalidToken``). ``unknown_method_status`` switches the
  latter to 404 if a test wants the live behaviour.
* A method that the spec lists but this emulator does not implement answers 400
  ``emulator: method X is not emulated`` and is recorded in ``unemulated``.
* Missing or mistyped parameters answer 400 ``Bad Request: parameter "x" is required`` /
  ``Bad Request: parameter "x" must be <types>: <detail>``; an object with a problem answers
  ``Bad Request: can't parse <param>: <path>: <detail>``. ``text`` keeps the live wording
  ("message text is empty", "message is too long").
* Values: a form/query value is a string; Integer accepts ``-?\\d+``, Boolean ``true/false/1/0``
  (any case), Float anything ``float()`` parses; ``Integer or String`` tries Integer first.
  Inside JSON objects types are strict (``1`` is not a String, ``true`` is not an Integer). At
  the top level of a JSON body a number is accepted for a String parameter (the live server
  coerces it).
* ``parse_mode``: HTML must use supported, balanced tags (else "can't parse entities"); the
  result's ``text`` has tags stripped and entities unescaped, but no formatting entities are
  built. MarkdownV2 checks that ``_*[]()~`>#+-=|{}.!`` outside code and link targets are escaped
  (the usual mistake); its result ``text`` removes the backslashes only. ``SentMessage.text`` is
  always the text exactly as the bot sent it.
* ``allowed_updates`` (getUpdates or setWebhook) is remembered; ``[]`` or never set means every
  type except chat_member, message_reaction and message_reaction_count. As the spec says the
  setting does not affect updates created before it, the filter applies **when an update is
  created**: a simulated update of a type not allowed then is dropped and recorded in
  ``dropped_updates`` (so start the bot before simulating chat_member changes).
* getUpdates waits on a Condition for up to ``timeout`` s. A second getUpdates while one is
  waiting ends the first with 409 "Conflict: terminated by other getUpdates request; ..." (live
  behaviour; it answers the older request, so a test sees it in ``calls``), and setWebhook ends
  it with 409 "Conflict: terminated by setWebhook request".
  ``offset`` confirms updates below it; a negative offset keeps only the last ``-offset``.
* Webhooks: ``http://`` URLs are accepted (the live server demands HTTPS on 443/80/88/8443, but a
  test server cannot present a trusted certificate); other schemes answer 400 "bad webhook:
  HTTPS url must be provided for webhook". One delivery thread POSTs updates in order, one at a
  time, as JSON with ``X-Telegram-Bot-Api-Secret-Token`` when a secret was set. A non-2xx answer
  or a connection error is retried up to ``webhook_retries`` (3) more times after 0.05, 0.1,
  0.2 s; then the update is dropped and ``getWebhookInfo`` reports ``last_error_date`` /
  ``last_error_message`` (the live server keeps retrying for much longer). Every attempt is
  recorded in ``webhook_deliveries`` as ``(update_id, status)`` (status 0: no HTTP answer).
* Every group is a supergroup (id ``-100…``) with an automatically created owner ("Owner"), the
  bot and whoever joins. The chat's default permissions allow everything except
  can_change_info, can_pin_messages, can_manage_topics and can_edit_tag. restrictChatMember
  lifts the restriction (status "member") when the new permissions grant at least every default
  permission; without ``use_independent_chat_permissions`` the documented implications apply.
  Omitted ChatPermissions fields count as False. ``until_date`` less than 30 s or more than 366
  days away means forever (0); restrictions and bans do not expire on their own.
* Changes the bot makes (restrict, ban, unban, approve) produce ``chat_member`` updates (from =
  the bot), as on the live server (a chat_member handler sees its own restriction come back);
  approving also posts the ``new_chat_members`` service message. A change that leaves the
  member's shape as it was produces no update.
* Privacy mode is on (``can_read_all_group_messages`` False): in a group where the bot is not an
  administrator, ``send_text`` without a leading /command is not delivered (``dropped_updates``).
* Rights: restrict/ban/unban need can_restrict_members ("not enough rights to restrict/unrestrict
  chat member"); approve/decline need can_invite_users ("not enough rights to manage join
  requests"); createChatInviteLink needs can_invite_users ("not enough rights to manage chat
  invite link"); deleting another user's message in a group needs can_delete_messages ("message
  can't be deleted"); setChatAdministratorCustomTitle needs can_promote_members. Acting on the
  owner or an administrator answers "can't remove chat owner" / "user is an administrator of
  the chat". An unknown user id answers "Bad Request: user not found".
* promoteChatMember needs can_promote_members ("not enough rights"); granting a right the bot
  lacks answers "RIGHT_FORBIDDEN", the bot itself "can't promote self", the owner "can't remove
  chat owner", an administrator someone else promoted "CHAT_ADMIN_REQUIRED" (as does
  setChatAdministratorCustomTitle for them), and a user not in the chat "USER_NOT_PARTICIPANT".
  Any right implies can_manage_chat; a promoted member is an administrator with
  ``can_be_edited`` true, and all rights False demotes them to a plain member (title gone).
* sendDocument takes an uploaded file only (multipart; a file_id or URL is a 400 ``emulator:``
  error); an empty file answers "file must be non-empty", a caption over 1024 characters
  "message caption is too long". ``SentMessage.document`` keeps the bytes and the filename.
* ``join_by_link()`` lets a user join through an invite link the bot created, honouring
  ``expire_date`` and ``member_limit`` as a client would (AssertionError otherwise).
  revokeChatInviteLink marks the link ``is_revoked`` (it no longer admits) and returns it.
* Private chats: a user who never wrote to the bot gets 403 "bot can't initiate conversation
  with a user", unless they have a pending join request made less than 5 minutes ago (the
  ``user_chat_id`` rule); a user who blocked the bot gets 403 "bot was blocked by the user"
  until they write to it again (which first produces a ``my_chat_member`` kicked → member).
* The bot can edit only its own messages; editing with identical text and markup answers
  "message is not modified: ..." as the live server does. deleteMessages skips unknown ids.
* answerCallbackQuery answers once; a second answer or an unknown id gives "query is too old
  and response timeout expired or query ID is invalid".
* ``press()`` refuses (AssertionError) a button that is not on the message, and simulated users
  must be group members to write in a group: tests cannot simulate what a client cannot do.
* Latency: ``answer_delay`` (seconds, 0 by default) is the round trip of every call, and
  ``answer_delays`` overrides it per method (canonical name). Half of it passes before the call
  takes effect and half after, as a request and its answer each cross the network once; the
  moment a call took effect is ``RecordedCall.applied_at``.
* Each group's message budget: Telegram's Bots FAQ ("My bot is hitting limits, how do I avoid
  this?", core.telegram.org/bots/faq) says a bot "will not be able to send more than 20
  messages per minute to the same group". It is kept as a bucket of ``group_messages_per_minute``
  (20; None turns it off) that refills evenly over the minute, the reading aiolimiter and PTB's
  AIORateLimiter make of it: a send* (not sendChatAction), copy or forward to a group beyond
  it answers 429 "Too Many Requests: retry after N" with ``parameters.retry_after`` N, the
  seconds until the bucket has room. Deletions and admin actions are not messages and do not
  count. Joins post their "joined" service message (``new_chat_members``) next to the
  ``chat_member`` update, as groups without hidden join messages do.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import html
import json
import math
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, TypeVar, cast
from urllib.parse import parse_qs, urlsplit

from tests.emulators import specs
from tests.emulators._http import JsonHandler, TrackedServer

__all__ = [
    "RecordedCall",
    "SentDocument",
    "SentMessage",
    "TelegramEmulator",
    "TelegramSpec",
    "WebhookDelivery",
    "conforms",
    "find_specs",
    "load_spec",
]

T = TypeVar("T")

SPEC_FILE = "telegram-bot-api.json"
_INT = re.compile(r"^[+-]?\d+$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")
_BOT_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")
_DISCRIMINATOR = re.compile(r'(?:always|must be) "?([a-z_]+)"?')
_DEFAULT_EXCLUDED = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
        "tg-time",
    }
)
_MDV2_RESERVED = "_*[]()~`>#+-=|{}.!"
_DEFAULT_PERMISSION_OFF = frozenset(
    {"can_change_info", "can_pin_messages", "can_manage_topics", "can_edit_tag"}
)
_IMPLIED_BY_OTHER = (
    "can_send_messages",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
)
_QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)


# -- the spec ---------------------------------------------------------------------------------


def find_specs() -> Path:
    """The folder with the official API descriptions (see ``tests.emulators.specs``)."""
    return specs.find_specs(SPEC_FILE)


_spec_guard = threading.Lock()
_spec_cache: dict[Path, TelegramSpec] = {}


def load_spec(path: Path | None = None) -> TelegramSpec:
    """The parsed spec (cached per file); FileNotFoundError, loudly, when it is not there."""
    spec_file = path or find_specs() / SPEC_FILE
    with _spec_guard:
        if spec_file not in _spec_cache:
            if not spec_file.exists():
                raise FileNotFoundError(
                    f"{spec_file} is not here: the Telegram emulator validates every request "
                    "against it (set VERIFYBOT_SPECS to the shared/specs folder)"
                )
            _spec_cache[spec_file] = TelegramSpec(json.loads(spec_file.read_text("utf-8")))
        return _spec_cache[spec_file]


def conforms(type_name: str, value: Any) -> list[str]:
    """What is wrong with ``value`` as a ``type_name`` ("Message", "Array of Update",
    "ChatMember", "Boolean", ...) per the spec: required fields present, no unknown fields,
    JSON types right, recursively. Empty when it conforms."""
    return load_spec().check(type_name, value, type_name)


@dataclass(frozen=True)
class _Upload:
    """A file part of a multipart body."""

    filename: str
    content_type: str
    data: bytes


class TelegramSpec:
    """The spec's methods and types, and the checks built on them."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.version: str = data.get("version", "")
        self.methods: dict[str, dict[str, Any]] = data["methods"]
        self.types: dict[str, dict[str, Any]] = data["types"]
        self._by_lower = {name.lower(): name for name in self.methods}

    def canonical_method(self, name: str) -> str | None:
        return self._by_lower.get(name.lower())

    def fields(self, owner: str) -> dict[str, dict[str, Any]]:
        """A method's parameters or a type's fields, by name."""
        source = self.methods.get(owner) or self.types.get(owner) or {}
        return {f["name"]: f for f in source.get("fields", [])}

    def field_names(self, owner: str) -> list[str]:
        return list(self.fields(owner))

    # -- strict checking (results, and objects inside requests) ---------------------------

    def check(self, type_expr: str, value: Any, path: str) -> list[str]:
        if type_expr.startswith("Array of "):
            if not isinstance(value, list):
                return [f"{path}: expected {type_expr}, got {_kind(value)}"]
            inner = type_expr.removeprefix("Array of ")
            errors: list[str] = []
            for index, item in enumerate(value):
                errors.extend(self.check(inner, item, f"{path}[{index}]"))
            return errors
        if type_expr == "Integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif type_expr == "Float":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif type_expr == "Boolean":
            ok = isinstance(value, bool)
        elif type_expr == "True":
            ok = value is True
        elif type_expr == "String":
            ok = isinstance(value, str)
        elif type_expr == "InputFile":
            ok = isinstance(value, _Upload)
        elif type_expr in self.types:
            return self._check_object(type_expr, value, path)
        else:
            return [f"{path}: the spec has no type {type_expr!r}"]
        return [] if ok else [f"{path}: expected {type_expr}, got {_kind(value)}"]

    def check_any(self, types: list[str], value: Any, path: str) -> list[str]:
        best: list[str] | None = None
        for type_expr in types:
            errors = self.check(type_expr, value, path)
            if not errors:
                return []
            if best is None or len(errors) < len(best):
                best = errors
        if len(types) > 1 and best and all(e.startswith(f"{path}: expected") for e in best):
            return [f"{path}: expected {' or '.join(types)}, got {_kind(value)}"]
        return best or []

    def _check_object(self, type_name: str, value: Any, path: str) -> list[str]:
        definition = self.types[type_name]
        subtypes: list[str] | None = definition.get("subtypes")
        if subtypes:
            return self._check_union(type_name, subtypes, value, path)
        if not isinstance(value, dict):
            return [f"{path}: expected {type_name} object, got {_kind(value)}"]
        fields = self.fields(type_name)
        errors = [f"{path}: unknown field {k!r}" for k in value if k not in fields]
        for name, spec_field in fields.items():
            if name not in value:
                if spec_field["required"]:
                    errors.append(f"{path}: missing required field {name!r}")
                continue
            errors.extend(self.check_any(spec_field["types"], value[name], f"{path}.{name}"))
        discriminator = self.discriminator(type_name)
        if discriminator and value.get(discriminator[0]) != discriminator[1]:
            name, expected = discriminator
            errors.append(f"{path}.{name}: must be {expected!r} for {type_name}")
        return errors

    def _check_union(self, name: str, subtypes: list[str], value: Any, path: str) -> list[str]:
        if not isinstance(value, dict):
            return [f"{path}: expected {name} object, got {_kind(value)}"]
        keyed = {st: self.discriminator(st) for st in subtypes}
        for subtype, discriminator in keyed.items():
            if discriminator and value.get(discriminator[0]) == discriminator[1]:
                return self.check(subtype, value, path)
        if all(keyed.values()):
            field_name = next(iter(keyed.values()))
            assert field_name is not None
            allowed = sorted(d[1] for d in keyed.values() if d)
            return [f"{path}.{field_name[0]}: {value.get(field_name[0])!r} is not one of {allowed}"]
        return self.check_any(subtypes, value, path)

    def discriminator(self, type_name: str) -> tuple[str, str] | None:
        """("status", "creator") for ChatMemberOwner: the first field's fixed value."""
        fields = self.types.get(type_name, {}).get("fields") or []
        if not fields or fields[0]["name"] not in {"type", "status", "source"}:
            return None
        match = _DISCRIMINATOR.search(fields[0].get("description", ""))
        return (fields[0]["name"], match.group(1)) if match else None

    # -- request parameters ----------------------------------------------------------------

    def coerce(
        self, types: list[str], raw: Any, name: str, uploads: dict[str, _Upload]
    ) -> tuple[Any, str | None]:
        """A request parameter's value from its wire form; (value, None) or (None, error)."""
        if isinstance(raw, _Upload):
            if "InputFile" in types:
                return raw, None
            return None, f'Bad Request: parameter "{name}" must be {_or(types)}, not a file'
        if isinstance(raw, str):
            return self._coerce_text(types, raw, name, uploads)
        if (
            "String" in types
            and isinstance(raw, int | float)
            and not isinstance(raw, bool)
            and "Integer" not in types
        ):
            return str(raw), None
        errors = self.check_any(types, raw, name)
        if errors:
            return None, _type_error(name, types, errors)
        return raw, None

    def _coerce_text(
        self, types: list[str], raw: str, name: str, uploads: dict[str, _Upload]
    ) -> tuple[Any, str | None]:
        structured = [t for t in types if t not in _SCALARS]
        for type_expr in sorted(types, key=_text_priority):
            if type_expr == "Integer":
                if _INT.match(raw.strip()):
                    return int(raw), None
            elif type_expr == "Float":
                with contextlib.suppress(ValueError):
                    return float(raw), None
            elif type_expr == "Boolean":
                if raw.strip().lower() in {"true", "false", "1", "0"}:
                    return raw.strip().lower() in {"true", "1"}, None
            elif type_expr == "InputFile":
                if raw.startswith("attach://") and raw[9:] in uploads:
                    return uploads[raw[9:]], None
            elif type_expr == "String":
                return raw, None
        if not structured:
            return None, _type_error(name, types, [f"{name}: got {raw!r}"])
        try:  # arrays and objects travel JSON-encoded
            parsed = json.loads(raw)
        except ValueError:
            return None, _type_error(name, types, [f"{name}: not valid JSON"])
        errors = self.check_any(structured, parsed, name)
        return (None, _type_error(name, types, errors)) if errors else (parsed, None)


def _text_priority(type_expr: str) -> int:
    order = {"Integer": 0, "Float": 1, "Boolean": 2, "InputFile": 3, "String": 9}
    return order.get(type_expr, 5)


_SCALARS = frozenset({"Integer", "Float", "Boolean", "String", "InputFile"})


def _type_error(name: str, types: list[str], errors: list[str]) -> str:
    objects = [t for t in types if t not in _SCALARS]
    if objects and any(": expected" not in e or "." in e.split(":")[0] for e in errors):
        return f"Bad Request: can't parse {name}: {'; '.join(errors[:3])}"
    return f'Bad Request: parameter "{name}" must be {_or(types)}: {"; ".join(errors[:3])}'


def _or(types: list[str]) -> str:
    return " or ".join(types)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# -- public records ---------------------------------------------------------------------------


@dataclass
class RecordedCall:
    """One Bot API request, in arrival order."""

    method: str  # as requested (canonical spelling when the spec knows it)
    params: dict[str, Any]  # decoded per the spec (ints, bools, parsed JSON) once validated,
    # the raw wire strings when validation failed; files appear as their filename
    status: int = 0  # HTTP status answered; 0 while in progress
    at: float = 0.0  # time.time() on arrival
    response: Any = None  # the JSON answered
    applied_at: float = 0.0  # time.time() when it took effect; 0 when it was refused


@dataclass(frozen=True)
class SentMessage:
    """A snapshot of a message the bot sent."""

    message_id: int
    chat_id: int
    text: str  # exactly as the bot sent it (markup included when parse_mode was used)
    reply_markup: dict[str, Any] | None  # any kind: inline, reply keyboard, remove, force reply
    deleted: bool
    edits: int
    sent_at: float
    parse_mode: str | None = None
    reply_to_message_id: int | None = None
    #: sendDocument: the file as uploaded, and its caption (``text`` is then "").
    document: SentDocument | None = None
    caption: str | None = None


@dataclass(frozen=True)
class SentDocument:
    """A file the bot uploaded with sendDocument, byte for byte."""

    filename: str
    mime_type: str
    content: bytes


class WebhookDelivery(NamedTuple):
    update_id: int
    status: int  # HTTP status of the bot's answer; 0 when there was none (connection error)


# -- internal state ---------------------------------------------------------------------------


@dataclass
class _User:
    id: int
    first_name: str
    last_name: str | None
    username: str | None
    language_code: str | None
    started: bool = False
    blocked: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            out["last_name"] = self.last_name
        if self.username:
            out["username"] = self.username
        if self.language_code:
            out["language_code"] = self.language_code
        return out


@dataclass
class _Member:
    status: str  # creator | administrator | member | restricted | left | kicked
    permissions: dict[str, bool] | None = None
    until_date: int = 0
    is_member: bool = True  # for "restricted"
    rights: dict[str, bool] | None = None  # for "administrator"
    custom_title: str | None = None
    promoted_by_bot: bool = False  # an administrator the bot may edit (can_be_edited)


@dataclass
class _Msg:
    message_id: int
    chat_id: int
    sender_id: int
    date: int
    sent_at: float
    text: str | None = None
    shown_text: str | None = None
    entities: list[dict[str, Any]] | None = None
    markup: dict[str, Any] | None = None  # as sent (any kind)
    parse_mode: str | None = None
    reply_to: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False
    edits: int = 0
    edit_date: int | None = None
    document: SentDocument | None = None
    caption: str | None = None


@dataclass
class _Group:
    id: int
    title: str
    owner_id: int
    members: dict[int, _Member] = field(default_factory=dict)
    join_requests: dict[int, tuple[str, float]] = field(default_factory=dict)
    invite_links: list[dict[str, Any]] = field(default_factory=list)
    invite_uses: dict[str, int] = field(default_factory=dict)  # members who joined per link


@dataclass
class _Fault:
    method: str
    error_code: int
    retry_after: int
    description: str | None
    remaining: int


class _Reply(Exception):
    """An error answer, raised from a handler."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after


def _bad(description: str) -> _Reply:
    return _Reply(400, f"Bad Request: {description}")


class _Params:
    """A method's validated parameters; reading a name the handler did not declare is a bug in
    the emulator (recorded in ``internal_errors``)."""

    def __init__(
        self, method: str, values: dict[str, Any], declared: frozenset[str], errors: list[str]
    ) -> None:
        self.method = method
        self._values = values
        self._declared = declared
        self._errors = errors

    def get(self, name: str, default: Any = None) -> Any:
        if name not in self._declared:
            self._errors.append(f"{self.method} handler read undeclared parameter {name!r}")
        return self._values.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self._values


_Handler = Callable[["TelegramEmulator", _Params], Any]
_HANDLERS: dict[str, tuple[_Handler, frozenset[str]]] = {}


def _method(name: str, *reads: str) -> Callable[[_Handler], _Handler]:
    def register(func: _Handler) -> _Handler:
        _HANDLERS[name] = (func, frozenset(reads))
        return func

    return register


def emulated_methods() -> dict[str, frozenset[str]]:
    """Every emulated method and the parameter names its handler reads."""
    return {name: reads for name, (_, reads) in _HANDLERS.items()}


# -- the emulator -----------------------------------------------------------------------------


class TelegramEmulator:
    """The Telegram Bot API over HTTP on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",  # noqa: S107 - the emulator's own fake token
        bot_username: str = "verifybot_test_bot",
    ) -> None:
        self.spec = load_spec()
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = bot_username
        self.bot_first_name = "Verifybot Test"
        self.url = ""
        self.base_url = ""
        self.base_file_url = ""
        self.calls: list[RecordedCall] = []
        self.internal_errors: list[str] = []
        self.unemulated: list[str] = []
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.dropped_updates: list[dict[str, Any]] = []
        self.unknown_method_status = 400
        self.webhook_retries = 3
        self.webhook_timeout = 5.0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = False
        self._next_update_id = 10_000
        self._next_user_id = 700_000_001
        self._next_group_id = 1_000_000_001
        self._pending: list[dict[str, Any]] = []
        self._allowed: list[str] = []
        self._poll_generation = 0
        self._poll_ended_by = ""
        self._webhook: dict[str, Any] | None = None
        self._webhook_error: tuple[int, str] | None = None
        self._users: dict[int, _User] = {}
        self._groups: dict[int, _Group] = {}
        self._messages: dict[int, dict[int, _Msg]] = {}
        self._next_message_id: dict[int, int] = {}
        self._callbacks: dict[str, dict[str, Any] | None] = {}
        self._callback_seq = 0
        self._commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self._faults: list[_Fault] = []
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self.answer_delay = 0.0
        self.answer_delays: dict[str, float] = {}
        self.group_messages_per_minute: int | None = 20
        self._group_budgets: dict[int, tuple[float, float]] = {}  # chat -> (used, when)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("emulator already started")
        server = _Server(("127.0.0.1", 0), self)
        self._server = server
        self._stopping = False
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self.base_url = f"{self.url}/bot"
        self.base_file_url = f"{self.url}/file/bot"
        serve = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="telegram-emulator",
            daemon=True,
        )
        deliver = threading.Thread(
            target=self._deliver_webhooks, name="telegram-emulator-webhook", daemon=True
        )
        self._threads = [serve, deliver]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        with self._lock:
            self._stopping = True
            self._changed.notify_all()  # ends long polls and the delivery thread
        server.shutdown()
        server.close_connections()
        server.server_close()
        server.join_connections(5.0)
        for thread in self._threads:
            thread.join(5.0)
        self._server = None
        self._threads = []

    def __enter__(self) -> TelegramEmulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- world building --------------------------------------------------------------------

    def add_user(
        self,
        first_name: str = "Ada",
        *,
        language_code: str | None = "en",
        username: str | None = None,
        last_name: str | None = None,
    ) -> int:
        with self._lock:
            user_id = self._next_user_id
            self._next_user_id += 1
            self._users[user_id] = _User(user_id, first_name, last_name, username, language_code)
            return user_id

    def add_group(
        self,
        title: str = "Community",
        *,
        bot_rights: dict[str, bool] | None = None,
        bot_is_admin: bool = True,
    ) -> int:
        """A supergroup with an automatic owner ("Owner") and the bot (an administrator with
        can_manage_chat, can_restrict_members, can_invite_users, can_delete_messages and
        can_promote_members unless ``bot_rights`` says otherwise; a plain member with
        ``bot_is_admin=False``)."""
        with self._lock:
            owner = self.add_user("Owner", language_code=None)
            group_id = -(10**12) - self._next_group_id
            self._next_group_id += 1
            group = _Group(group_id, title, owner)
            group.members[owner] = _Member("creator")
            if bot_is_admin:
                rights = {
                    "can_manage_chat": True,
                    "can_restrict_members": True,
                    "can_invite_users": True,
                    "can_delete_messages": True,
                    "can_promote_members": True,
                }
                if bot_rights is not None:
                    rights = {"can_manage_chat": True, **bot_rights}
                group.members[self.bot_id] = _Member("administrator", rights=self._rights(rights))
            else:
                group.members[self.bot_id] = _Member("member")
            self._groups[group_id] = group
            return group_id

    def add_admin(self, chat_id: int, user_id: int, *, owner: bool = False) -> None:
        """Make a human an administrator (all rights but can_promote_members), or the owner
        (the previous owner becomes an administrator)."""
        with self._lock:
            group = self._group(chat_id)
            self._user(user_id)
            if owner:
                group.members[group.owner_id] = _Member(
                    "administrator", rights=self._rights(self._all_rights())
                )
                group.owner_id = user_id
                group.members[user_id] = _Member("creator")
            else:
                rights = {**self._all_rights(), "can_promote_members": False}
                group.members[user_id] = _Member("administrator", rights=self._rights(rights))

    # -- simulated user actions (each returns the update it enqueued) ------------------------

    def send_text(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        reply_to: int | None = None,
    ) -> dict[str, Any]:
        """A text message from the user: in the private chat with the bot (which counts as
        having started it), or in a group the user is in; ``reply_to`` is the message id it
        replies to in the same chat. In a group where the bot is not an administrator, privacy
        mode hides text that is not a /command (it lands in ``dropped_updates``)."""
        with self._lock:
            content: dict[str, Any] = {"text": text}
            entities = _command_entities(text)
            if entities:
                content["entities"] = entities
            message = self._user_message(user_id, chat_id, content, reply_to=reply_to)
            group = self._groups.get(message["chat"]["id"])
            bot_status = self._bot_member(group).status if group else "administrator"
            if bot_status not in {"creator", "administrator"} and not text.startswith("/"):
                self._next_update_id += 1
                update = {"update_id": self._next_update_id, "message": message}
                self.dropped_updates.append(update)
                return update
            return self._enqueue({"message": message})

    def share_contact(
        self,
        user_id: int,
        phone_number: str,
        *,
        contact_user_id: int | None,
        first_name: str = "Ada",
    ) -> dict[str, Any]:
        contact: dict[str, Any] = {"phone_number": phone_number, "first_name": first_name}
        if contact_user_id is not None:
            contact["user_id"] = contact_user_id
        with self._lock:
            return self._enqueue(
                {"message": self._user_message(user_id, None, {"contact": contact})}
            )

    def press(
        self,
        user_id: int,
        message_id_or_message: int | SentMessage | dict[str, Any],
        callback_data: str,
        *,
        chat_id: int | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            user = self._user(user_id)
            target = message_id_or_message
            if isinstance(target, SentMessage):
                message_id, chat_id = target.message_id, chat_id or target.chat_id
            elif isinstance(target, dict):
                message_id, chat_id = target["message_id"], chat_id or target["chat"]["id"]
            else:
                message_id = target
            chat = chat_id if chat_id is not None else user_id
            msg = self._messages.get(chat, {}).get(message_id)
            if msg is None or msg.deleted:
                raise AssertionError(f"no message {message_id} in chat {chat} to press on")
            rows = (msg.markup or {}).get("inline_keyboard") or []
            datas = [b.get("callback_data") for row in rows for b in row]
            if callback_data not in datas:
                raise AssertionError(
                    f"message {message_id} has no button with callback_data {callback_data!r}"
                    f" (it has {datas})"
                )
            self._callback_seq += 1
            query_id = f"{user_id}{self._callback_seq:06d}"
            self._callbacks[query_id] = None
            query = {
                "id": query_id,
                "from": user.as_dict(),
                "message": self._message_dict(msg),
                "chat_instance": str((abs(chat) * 7919 + self.bot_id) % 10**19),
                "data": callback_data,
            }
            return self._enqueue({"callback_query": query})

    def callback_answer(self, callback_query_id: str) -> dict[str, Any] | None:
        """How the bot answered a callback query (text, show_alert, url, cache_time), or None."""
        with self._lock:
            return self._callbacks.get(callback_query_id)

    def join(self, user_id: int, chat_id: int) -> dict[str, Any]:
        """The user joins the group: a chat_member update (left → member) and a service message
        with new_chat_members. Returns the chat_member update."""
        with self._lock:
            group = self._group(chat_id)
            self._user(user_id)
            current = group.members.get(user_id)
            if current and current.status == "kicked":
                raise AssertionError(f"user {user_id} is banned from {chat_id} and cannot join")
            if current and current.status != "left" and current.is_member:
                raise AssertionError(f"user {user_id} is already in {chat_id}")
            return self._joined(group, user_id, actor=user_id, via_request=False)

    def leave(self, user_id: int, chat_id: int) -> dict[str, Any]:
        """The user leaves the group: a chat_member update (→ left) and a service message with
        left_chat_member. Returns the chat_member update."""
        with self._lock:
            group = self._group(chat_id)
            current = group.members.get(user_id)
            if current is None or current.status in ("left", "kicked") or not current.is_member:
                raise AssertionError(f"user {user_id} is not in {chat_id}")
            update = self._change_member(
                group, user_id, _Member("left"), actor=user_id, via_request=False
            )
            service = self._store(
                _Msg(
                    self._new_message_id(group.id),
                    group.id,
                    user_id,
                    int(time.time()),
                    time.time(),
                    extra={"left_chat_member": self._user_dict(user_id)},
                )
            )
            self._enqueue({"message": self._message_dict(service)})
            return update

    def join_by_link(self, user_id: int, invite_link: str) -> dict[str, Any]:
        """The user opens an invite link the bot created and joins, as a client would: a
        revoked or expired link, or one whose ``member_limit`` is used up, is refused
        (AssertionError), as is a banned user. Returns the chat_member update, which names
        the link (``invite_link``) as the live server does for the link's creator."""
        with self._lock:
            found = [
                (group, link)
                for group in self._groups.values()
                for link in group.invite_links
                if link["invite_link"] == invite_link
            ]
            if not found:
                raise AssertionError(f"no invite link {invite_link}")
            group, link = found[0]
            if link["is_revoked"]:
                raise AssertionError(f"invite link {invite_link} was revoked")
            if link.get("expire_date") and link["expire_date"] < time.time():
                raise AssertionError(f"invite link {invite_link} has expired")
            used = group.invite_uses.get(invite_link, 0)
            if link.get("member_limit") is not None and used >= link["member_limit"]:
                raise AssertionError(f"invite link {invite_link} is used up")
            if link["creates_join_request"]:
                raise AssertionError("this link asks to join: use request_join")
            current = group.members.get(user_id)
            if current and current.status == "kicked":
                raise AssertionError(f"user {user_id} is banned from {group.id} and cannot join")
            if current and current.status != "left" and current.is_member:
                raise AssertionError(f"user {user_id} is already in {group.id}")
            group.invite_uses[invite_link] = used + 1
            return self._joined(
                group, user_id, actor=user_id, via_request=False, invite_link=dict(link)
            )

    def request_join(self, user_id: int, chat_id: int) -> dict[str, Any]:
        with self._lock:
            group = self._group(chat_id)
            user = self._user(user_id)
            current = group.members.get(user_id)
            if current is not None and current.status == "kicked":
                raise AssertionError(f"user {user_id} is banned from {chat_id}")
            if current is not None and current.status != "left" and current.is_member:
                raise AssertionError(f"user {user_id} is already in {chat_id}")
            group.join_requests[user_id] = ("pending", time.time())
            request = {
                "chat": self._chat_dict(chat_id),
                "from": user.as_dict(),
                "user_chat_id": user_id,
                "date": int(time.time()),
            }
            return self._enqueue({"chat_join_request": request})

    def block_bot(self, user_id: int) -> dict[str, Any]:
        with self._lock:
            user = self._user(user_id)
            user.blocked = True
            bot_member = {"user": self._bot_dict()}
            update = {
                "chat": self._chat_dict(user_id),
                "from": user.as_dict(),
                "date": int(time.time()),
                "old_chat_member": {"status": "member", **bot_member},
                "new_chat_member": {"status": "kicked", **bot_member, "until_date": 0},
            }
            return self._enqueue({"my_chat_member": update})

    def redeliver(self, update: dict[str, Any]) -> dict[str, Any]:
        """Enqueue the identical update (same update_id) again."""
        with self._lock:
            return self._enqueue(json.loads(json.dumps(update)), keep_id=True)

    def inject(
        self,
        method: str,
        error_code: int = 429,
        *,
        retry_after: int = 1,
        description: str | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls of ``method`` ("*" for any) answer ``error_code`` instead
        of running; a 429 carries ``parameters.retry_after``."""
        if times < 1:
            raise ValueError("times must be >= 1")
        if method != "*" and self.spec.canonical_method(method) is None:
            raise ValueError(f"{method!r} is not a Bot API method")
        with self._lock:
            name = self.spec.canonical_method(method) or "*"
            self._faults.append(_Fault(name, error_code, retry_after, description, times))

    # -- inspection ------------------------------------------------------------------------

    def messages_in(self, chat_id: int) -> list[SentMessage]:
        """Every message the bot sent in that chat, oldest first (deleted ones included)."""
        with self._lock:
            return [
                self._snapshot(m)
                for m in self._messages.get(chat_id, {}).values()
                if m.sender_id == self.bot_id
            ]

    def last_message(self, chat_id: int) -> SentMessage | None:
        sent = self.messages_in(chat_id)
        return sent[-1] if sent else None

    def member_status(self, chat_id: int, user_id: int) -> str:
        with self._lock:
            if chat_id not in self._groups:
                user = self._user(chat_id)
                return "kicked" if user.blocked else "member"
            member = self._groups[chat_id].members.get(user_id)
            return member.status if member else "left"

    def permissions(self, chat_id: int, user_id: int) -> dict[str, bool] | None:
        """A restricted member's permissions; None for any other status."""
        with self._lock:
            member = self._group(chat_id).members.get(user_id)
            if member is None or member.status != "restricted" or member.permissions is None:
                return None
            return dict(member.permissions)

    def admin_rights(self, chat_id: int, user_id: int) -> dict[str, Any] | None:
        """An administrator's rights that are on, with ``custom_title`` if one is set (and
        ``can_be_edited`` when the bot promoted them); None for anyone else."""
        with self._lock:
            member = self._group(chat_id).members.get(user_id)
            if member is None or member.status != "administrator":
                return None
            shape = self._member_shape(member, self._user_dict(user_id))
            return {k: v for k, v in shape.items() if k.startswith("can_") and v} | (
                {"custom_title": shape["custom_title"]} if "custom_title" in shape else {}
            )

    def invite_links(self, chat_id: int) -> list[dict[str, Any]]:
        """Every invite link the bot created in the group, oldest first."""
        with self._lock:
            return [dict(link) for link in self._group(chat_id).invite_links]

    def join_request_state(self, chat_id: int, user_id: int) -> str | None:
        with self._lock:
            entry = self._group(chat_id).join_requests.get(user_id)
            return entry[0] if entry else None

    def commands(
        self, scope: dict[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self._commands.get((_scope_key(scope), language_code), [])]

    def calls_to(self, method: str) -> list[RecordedCall]:
        with self._lock:
            return [c for c in self.calls if c.method.lower() == method.lower()]

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._pending)

    @property
    def allowed_updates(self) -> list[str]:
        with self._lock:
            return list(self._allowed)

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 5.0) -> T:  # noqa: ASYNC109
        """Poll ``predicate`` (every 10 ms, yielding to the event loop) until it is truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_message(predicate, timeout))
            await asyncio.sleep(0.01)

    def wait_until(self, predicate: Callable[[], T | None], timeout: float = 5.0) -> T:
        """``wait_for`` for threaded tests."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_message(predicate, timeout))
            time.sleep(0.01)

    def _timeout_message(self, predicate: Callable[[], Any], timeout: float) -> str:
        with self._lock:
            recent = [
                f"  {c.method} {c.status} {json.dumps(c.params, default=str)[:200]}"
                for c in self.calls[-12:]
            ]
            dropped = [sorted(u) for u in self.dropped_updates[-5:]]
            lines = [
                f"condition {getattr(predicate, '__name__', predicate)!r} not met in {timeout}s",
                "recent calls:",
                *(recent or ["  (none)"]),
                f"pending updates: {len(self._pending)}; dropped (allowed_updates): {dropped}",
                f"internal errors: {self.internal_errors}",
            ]
        return "\n".join(lines)

    def post_to_webhook(
        self, update: dict[str, Any], secret: str | None, *, url: str | None = None
    ) -> int:
        """One raw POST of ``update`` to the webhook (or ``url``) with ``secret`` as the secret
        header (none when None); the HTTP status answered, 0 when there was no answer."""
        with self._lock:
            target = url or (self._webhook or {}).get("url")
        if not target:
            raise AssertionError("no webhook is set and no url was given")
        return _post_json(target, update, secret, self.webhook_timeout)

    # -- HTTP entry point ------------------------------------------------------------------

    def _handle(
        self, http_method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for one request."""
        parts = urlsplit(path)
        match = re.fullmatch(r"/bot([^/]+)/([^/]*)", parts.path)
        if match is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        token, requested = match.group(1), match.group(2)
        call = RecordedCall(requested, {}, at=time.time())
        try:
            params, uploads = _parse_request(headers.get("content-type", ""), raw, parts.query)
        except ValueError as exc:
            params, uploads = {}, {}
            error: _Reply | None = _bad(str(exc))
        else:
            error = None
        call.params = {k: (v.filename if isinstance(v, _Upload) else v) for k, v in params.items()}
        with self._lock:
            self.calls.append(call)
            delay = self.answer_delays.get(
                self.spec.canonical_method(requested) or requested, self.answer_delay
            )
        time.sleep(delay / 2)  # the request on its way
        try:
            if error is not None:
                raise error
            if token != self.token:
                raise _Reply(401, "Unauthorized")
            result = self._run(call, params, uploads)
            status, body = 200, {"ok": True, "result": result}
        except _Reply as reply:
            status = reply.code
            body = {"ok": False, "error_code": reply.code, "description": reply.description}
            if reply.retry_after is not None:
                body["parameters"] = {"retry_after": reply.retry_after}
        except Exception as exc:  # a bug in the emulator: make it loud
            with self._lock:
                self.internal_errors.append(f"{call.method}: {exc!r}")
            status = 500
            body = {"ok": False, "error_code": 500, "description": f"emulator bug: {exc!r}"}
        with self._lock:
            call.status, call.response = status, body
        time.sleep(delay / 2)  # the answer on its way back
        return status, body

    def _run(self, call: RecordedCall, params: dict[str, Any], uploads: dict[str, _Upload]) -> Any:
        name = self.spec.canonical_method(call.method)
        if name is None:
            status = self.unknown_method_status
            text = "Not Found" if status == 404 else f'Bad Request: unknown method "{call.method}"'
            raise _Reply(status, text)
        call.method = name
        with self._lock:
            for fault in self._faults:
                if fault.method in {name, "*"}:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    raise _Reply(
                        fault.error_code,
                        fault.description or _fault_text(fault.error_code, fault.retry_after),
                        fault.retry_after if fault.error_code == 429 else None,
                    )
        values = self._validate(name, params, uploads)
        with self._lock:
            call.params = {
                k: (v.filename if isinstance(v, _Upload) else v) for k, v in values.items()
            }
        if name not in _HANDLERS:
            with self._lock:
                self.unemulated.append(name)
            raise _Reply(400, f"emulator: method {name} is not emulated")
        handler, declared = _HANDLERS[name]
        errors: list[str] = []
        try:
            self._spend_group_budget(name, values.get("chat_id"))
            result = handler(self, _Params(name, values, declared, errors))
            call.applied_at = time.time()
            return result
        finally:
            if errors:
                with self._lock:
                    self.internal_errors.extend(errors)

    def _spend_group_budget(self, method: str, chat_id: Any) -> None:
        """Count a message to a group against its budget, or refuse it with a 429."""
        per_minute = self.group_messages_per_minute
        is_message = method.startswith(("send", "copyMessage", "forwardMessage"))
        if per_minute is None or not is_message or method == "sendChatAction":
            return
        with self._lock:
            if chat_id not in self._groups:
                return
            rate, now = per_minute / 60.0, time.monotonic()
            used, when = self._group_budgets.get(chat_id, (0.0, now))
            used = max(0.0, used - (now - when) * rate)
            if used + 1 > per_minute:
                wait = max(1, math.ceil((used + 1 - per_minute) / rate))
                self._group_budgets[chat_id] = (used, now)
                raise _Reply(429, _fault_text(429, wait), wait)
            self._group_budgets[chat_id] = (used + 1, now)

    def _validate(
        self, name: str, params: dict[str, Any], uploads: dict[str, _Upload]
    ) -> dict[str, Any]:
        fields = self.spec.fields(name)
        for key in params:
            if key not in fields and key not in uploads:
                raise _bad(f'unknown parameter "{key}"')
        values: dict[str, Any] = {}
        for key, spec_field in fields.items():
            if key not in params or (params[key] == "" and "String" not in spec_field["types"]):
                if spec_field["required"]:
                    raise _bad(
                        "message text is empty"
                        if key == "text"
                        else f'parameter "{key}" is required'
                    )
                continue
            value, error = self.spec.coerce(spec_field["types"], params[key], key, uploads)
            if error:
                raise _Reply(400, error)
            values[key] = value
        return values

    # -- helpers used by handlers ----------------------------------------------------------

    def _user(self, user_id: int) -> _User:
        user = self._users.get(user_id)
        if user is None:
            raise KeyError(f"no user {user_id} (add_user first)")
        return user

    def _group(self, chat_id: int) -> _Group:
        group = self._groups.get(chat_id)
        if group is None:
            raise KeyError(f"no group {chat_id} (add_group first)")
        return group

    def _bot_dict(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def _user_dict(self, user_id: int) -> dict[str, Any]:
        if user_id == self.bot_id:
            return self._bot_dict()
        return self._user(user_id).as_dict()

    def _chat_dict(self, chat_id: int) -> dict[str, Any]:
        if chat_id in self._groups:
            return {"id": chat_id, "type": "supergroup", "title": self._groups[chat_id].title}
        user = self._user(chat_id).as_dict()
        chat = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
        chat.update({k: user[k] for k in ("last_name", "username") if k in user})
        return chat

    def _resolve_chat(self, chat_id: Any) -> int:
        if isinstance(chat_id, int) and (chat_id in self._groups or chat_id in self._users):
            return chat_id
        raise _bad("chat not found")

    def _rights(self, rights: dict[str, bool]) -> dict[str, bool]:
        known = self._right_names()
        unknown = set(rights) - set(known)
        if unknown:
            raise ValueError(f"unknown administrator rights {sorted(unknown)}")
        return {name: bool(rights.get(name, False)) for name in known}

    def _right_names(self) -> list[str]:
        return [
            n
            for n in self.spec.field_names("ChatMemberAdministrator")
            if n.startswith("can_") and n != "can_be_edited"
        ]

    def _all_rights(self) -> dict[str, bool]:
        return dict.fromkeys(self._right_names(), True)

    def _permission_names(self) -> list[str]:
        return self.spec.field_names("ChatPermissions")

    def _default_permissions(self) -> dict[str, bool]:
        return {n: n not in _DEFAULT_PERMISSION_OFF for n in self._permission_names()}

    def _bot_member(self, group: _Group) -> _Member:
        return group.members.get(self.bot_id) or _Member("left")

    def _require_right(self, group: _Group, right: str, message: str) -> None:
        bot = self._bot_member(group)
        if bot.status == "creator":
            return
        if bot.status != "administrator" or not (bot.rights or {}).get(right):
            raise _bad(message)

    def _new_message_id(self, chat_id: int) -> int:
        next_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = next_id + 1
        return next_id

    def _store(self, msg: _Msg) -> _Msg:
        self._messages.setdefault(msg.chat_id, {})[msg.message_id] = msg
        return msg

    def _message_dict(self, msg: _Msg, *, nested: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": msg.message_id,
            "from": self._user_dict(msg.sender_id),
            "date": msg.date,
            "chat": self._chat_dict(msg.chat_id),
        }
        if msg.reply_to is not None and not nested:
            replied = self._messages.get(msg.chat_id, {}).get(msg.reply_to)
            if replied is not None:
                out["reply_to_message"] = self._message_dict(replied, nested=True)
        if msg.edit_date is not None:
            out["edit_date"] = msg.edit_date
        if msg.shown_text is not None:
            out["text"] = msg.shown_text
        if msg.entities:
            out["entities"] = msg.entities
        if msg.document is not None:
            doc = msg.document
            file_id = f"emu-doc-{msg.chat_id}-{msg.message_id}"
            out["document"] = {
                "file_id": file_id,
                "file_unique_id": file_id.replace("-", ""),
                "file_name": doc.filename,
                "mime_type": doc.mime_type,
                "file_size": len(doc.content),
            }
        if msg.caption is not None:
            out["caption"] = msg.caption
        out.update(msg.extra)
        if msg.markup is not None and "inline_keyboard" in msg.markup:
            out["reply_markup"] = msg.markup
        return out

    def _snapshot(self, msg: _Msg) -> SentMessage:
        return SentMessage(
            message_id=msg.message_id,
            chat_id=msg.chat_id,
            text=msg.text or "",
            reply_markup=json.loads(json.dumps(msg.markup)) if msg.markup else None,
            deleted=msg.deleted,
            edits=msg.edits,
            sent_at=msg.sent_at,
            parse_mode=msg.parse_mode,
            reply_to_message_id=msg.reply_to,
            document=msg.document,
            caption=msg.caption,
        )

    def _user_message(
        self,
        user_id: int,
        chat_id: int | None,
        content: dict[str, Any],
        *,
        reply_to: int | None = None,
    ) -> dict[str, Any]:
        user = self._user(user_id)
        chat = user_id if chat_id is None else chat_id
        if chat == user_id:
            if user.blocked:  # writing to the bot again means unblocking it
                user.blocked = False
                bot_member = {"user": self._bot_dict()}
                self._enqueue(
                    {
                        "my_chat_member": {
                            "chat": self._chat_dict(user_id),
                            "from": user.as_dict(),
                            "date": int(time.time()),
                            "old_chat_member": {"status": "kicked", **bot_member, "until_date": 0},
                            "new_chat_member": {"status": "member", **bot_member},
                        }
                    }
                )
            user.started = True
        else:
            member = self._group(chat).members.get(user_id)
            if member is None or member.status in {"left", "kicked"} or not member.is_member:
                raise AssertionError(f"user {user_id} is not in {chat} and cannot write there")
            if member.status == "restricted" and not (member.permissions or {}).get(
                "can_send_messages"
            ):
                raise AssertionError(f"user {user_id} may not send messages in {chat}")
        if reply_to is not None:
            target = self._messages.get(chat, {}).get(reply_to)
            if target is None or target.deleted:
                raise AssertionError(f"no message {reply_to} in {chat} to reply to")
        text = content.get("text")
        msg = self._store(
            _Msg(
                self._new_message_id(chat),
                chat,
                user_id,
                int(time.time()),
                time.time(),
                text=text,
                shown_text=text,
                reply_to=reply_to,
                extra={k: v for k, v in content.items() if k != "text"},
            )
        )
        return self._message_dict(msg)

    def _enqueue(self, update: dict[str, Any], *, keep_id: bool = False) -> dict[str, Any]:
        """Assign an update_id (unless kept), filter by allowed_updates, queue it."""
        if not keep_id:
            self._next_update_id += 1
            update = {"update_id": self._next_update_id, **update}
        kind = next(k for k in update if k != "update_id")
        allowed = set(self._allowed) if self._allowed else None
        if (allowed is not None and kind not in allowed) or (
            allowed is None and kind in _DEFAULT_EXCLUDED
        ):
            self.dropped_updates.append(update)
            return update
        self._pending.append(update)
        self._changed.notify_all()
        return update

    def _member_dict(self, group: _Group, user_id: int) -> dict[str, Any]:
        member = group.members.get(user_id) or _Member("left")
        return self._member_shape(member, self._user_dict(user_id))

    def _member_shape(self, member: _Member, user: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"status": member.status, "user": user}
        if member.status == "creator":
            out["is_anonymous"] = False
        elif member.status == "administrator":
            out["can_be_edited"] = member.promoted_by_bot
            out["is_anonymous"] = False
            out.update(member.rights or {})
        elif member.status == "restricted":
            out["is_member"] = member.is_member
            out.update(member.permissions or {})
            out["until_date"] = member.until_date
        elif member.status == "kicked":
            out["until_date"] = member.until_date
        if member.custom_title and member.status in {"creator", "administrator"}:
            out["custom_title"] = member.custom_title
        return out

    def _change_member(
        self,
        group: _Group,
        user_id: int,
        new: _Member,
        *,
        actor: int,
        via_request: bool = False,
        invite_link: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        user = self._user_dict(user_id)
        old = group.members.get(user_id) or _Member("left")
        old_shape = self._member_shape(old, user)
        group.members[user_id] = new
        new_shape = self._member_shape(new, user)
        if old_shape == new_shape:
            return {}
        change: dict[str, Any] = {
            "chat": self._chat_dict(group.id),
            "from": self._user_dict(actor),
            "date": int(time.time()),
            "old_chat_member": old_shape,
            "new_chat_member": new_shape,
        }
        if via_request:
            change["via_join_request"] = True
        if invite_link is not None:
            change["invite_link"] = invite_link
        return self._enqueue({"chat_member": change})

    def _joined(
        self,
        group: _Group,
        user_id: int,
        *,
        actor: int,
        via_request: bool,
        invite_link: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        current = group.members.get(user_id)
        if current is not None and current.status == "restricted":
            new = replace(current, is_member=True)
        else:
            new = _Member("member")
        update = self._change_member(
            group, user_id, new, actor=actor, via_request=via_request, invite_link=invite_link
        )
        service = self._store(
            _Msg(
                self._new_message_id(group.id),
                group.id,
                user_id,
                int(time.time()),
                time.time(),
                extra={"new_chat_members": [self._user_dict(user_id)]},
            )
        )
        self._enqueue({"message": self._message_dict(service)})
        return update

    def _member_target(self, group: _Group, user_id: int) -> _Member:
        if user_id != self.bot_id and user_id not in self._users:
            raise _bad("user not found")
        return group.members.get(user_id) or _Member("left")

    def _private_send_allowed(self, chat_id: int) -> None:
        user = self._user(chat_id)
        if user.blocked:
            raise _Reply(403, "Forbidden: bot was blocked by the user")
        if user.started:
            return
        for group in self._groups.values():
            state, at = group.join_requests.get(chat_id, ("", 0.0))
            if state == "pending" and time.time() - at < 300:
                return
        raise _Reply(403, "Forbidden: bot can't initiate conversation with a user")

    def _sendable_chat(self, chat_id: Any) -> int:
        chat = self._resolve_chat(chat_id)
        if chat in self._groups:
            status = self._bot_member(self._groups[chat]).status
            if status in {"left", "kicked"}:
                raise _Reply(403, "Forbidden: bot is not a member of the supergroup chat")
        else:
            self._private_send_allowed(chat)
        return chat

    def _inline_markup(self, markup: Any) -> dict[str, Any] | None:
        if markup is None:
            return None
        for row in markup.get("inline_keyboard") or []:
            for button in row:
                actions = set(button) - {"text", "icon_custom_emoji_id", "style"}
                if len(actions) != 1:
                    raise _bad(
                        "can't parse inline keyboard button: exactly one of the optional "
                        f"fields other than text must be used, got {sorted(actions)}"
                    )
                data = button.get("callback_data")
                if data is not None and not 1 <= len(data.encode()) <= 64:
                    raise _bad("BUTTON_DATA_INVALID")
        return cast(dict[str, Any], markup)

    def _editable(self, p: _Params) -> _Msg:
        if p.get("inline_message_id") is not None:
            raise _bad("emulator: inline messages are not emulated")
        if p.get("chat_id") is None or p.get("message_id") is None:
            raise _bad("message identifier is not specified")
        chat = self._resolve_chat(p.get("chat_id"))
        msg = self._messages.get(chat, {}).get(p.get("message_id"))
        if msg is None or msg.deleted:
            raise _bad("message to edit not found")
        if msg.sender_id != self.bot_id:
            raise _bad("message can't be edited")
        return msg

    def _deletable(self, chat: int, msg: _Msg | None) -> bool:
        if msg is None or msg.deleted:
            return False
        if chat in self._groups and msg.sender_id != self.bot_id:
            bot = self._bot_member(self._groups[chat])
            return bot.status == "creator" or bool((bot.rights or {}).get("can_delete_messages"))
        return True

    def _group_for(self, chat_id: Any) -> _Group:
        chat = self._resolve_chat(chat_id)
        if chat not in self._groups:
            raise _bad("method is available only for supergroups")
        return self._groups[chat]

    # -- webhook delivery --------------------------------------------------------------------

    def _deliver_webhooks(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not (self._webhook and self._pending):
                    self._changed.wait()
                if self._stopping:
                    return
                hook = cast(dict[str, Any], self._webhook)
                update = self._pending[0]
            status = 0
            for attempt in range(self.webhook_retries + 1):
                if attempt:
                    time.sleep(0.05 * 2 ** (attempt - 1))
                status = _post_json(hook["url"], update, hook.get("secret"), self.webhook_timeout)
                with self._lock:
                    self.webhook_deliveries.append(WebhookDelivery(update["update_id"], status))
                    if self._stopping or self._webhook is not hook:
                        break
                if 200 <= status < 300:
                    break
            with self._lock:
                if self._pending and self._pending[0] is update and self._webhook is hook:
                    self._pending.pop(0)
                    if not 200 <= status < 300:
                        text = (
                            f"Wrong response from the webhook: {status}"
                            if status
                            else ("Connection refused")
                        )
                        self._webhook_error = (int(time.time()), text)


def _post_json(url: str, update: dict[str, Any], secret: str | None, timeout: float) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked by setWebhook
        url, data=json.dumps(update).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return 0


def _fault_text(code: int, retry_after: int) -> str:
    return {
        429: f"Too Many Requests: retry after {retry_after}",
        400: "Bad Request: injected fault",
        401: "Unauthorized",
        403: "Forbidden: injected fault",
        409: "Conflict: injected fault",
        500: "Internal Server Error",
        502: "Bad Gateway",
    }.get(code, f"Error {code}")


def _scope_key(scope: dict[str, Any] | None) -> str:
    scope = dict(scope or {"type": "default"})
    if isinstance(scope.get("chat_id"), str) and _INT.match(scope["chat_id"]):
        scope["chat_id"] = int(scope["chat_id"])
    return json.dumps(scope, sort_keys=True)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _command_entities(text: str) -> list[dict[str, Any]]:
    return [
        {"type": "bot_command", "offset": _utf16_len(text[: m.start()]), "length": _utf16_len(m[0])}
        for m in _BOT_COMMAND.finditer(text)
    ]


def _render(text: str, parse_mode: str | None) -> str:
    """The text the recipient sees; _Reply for markup the live server refuses."""
    mode = (parse_mode or "").lower()
    if not mode:
        return text
    if mode == "html":
        return _render_html(text)
    if mode == "markdownv2":
        return _render_markdown_v2(text)
    if mode == "markdown":
        return re.sub(r"[*_`\[]", "", text)
    raise _bad(f"unsupported parse_mode {parse_mode!r}")


def _render_html(text: str) -> str:
    stack: list[str] = []
    for match in re.finditer(r"<(/?)([^\s>/]*)[^>]*>|<", text):
        if match[0] == "<":
            raise _bad(
                f"can't parse entities: Unsupported start tag at byte offset {match.start()}"
            )
        closing, tag = match[1] == "/", match[2].lower()
        if tag not in _HTML_TAGS:
            raise _bad(
                f'can\'t parse entities: Unsupported start tag "{tag}" at byte offset '
                f"{len(text[: match.start()].encode())}"
            )
        if closing:
            if not stack or stack[-1] != tag:
                raise _bad(
                    f"can't parse entities: Can't find end tag corresponding to start tag \"{tag}\""
                )
            stack.pop()
        else:
            stack.append(tag)
    if stack:
        raise _bad(
            f"can't parse entities: Can't find end tag corresponding to start tag \"{stack[-1]}\""
        )
    return html.unescape(re.sub(r"<[^>]*>", "", text))


def _render_markdown_v2(text: str) -> str:
    # code spans/blocks and link targets have their own escaping rules: blank them out first
    checked = re.sub(r"```.*?```|`[^`]*`", lambda m: "x" * len(m[0]), text, flags=re.S)
    checked = re.sub(r"\]\((?:\\.|[^)\\])*\)", lambda m: "]" + "x" * (len(m[0]) - 1), checked)
    offset = 0
    while offset < len(checked):
        char = checked[offset]
        if char == "\\":
            offset += 2
            continue
        at_line_start = offset == 0 or checked[offset - 1] == "\n"
        if char in "#+-=|{}.!" and not (char == "|" and checked[offset : offset + 2] == "||"):
            if char == "|" and offset and checked[offset - 1] == "|":
                offset += 1
                continue
            raise _bad(
                f"can't parse entities: Character '{char}' is reserved and must be escaped "
                "with the preceding '\\'"
            )
        if char == ">" and not at_line_start:
            raise _bad(
                "can't parse entities: Character '>' is reserved and must be escaped with the "
                "preceding '\\'"
            )
        offset += 1
    return re.sub(r"\\(.)", r"\1", text)


# -- method handlers --------------------------------------------------------------------------


@_method("getMe")
def _get_me(emu: TelegramEmulator, p: _Params) -> Any:
    known = set(emu.spec.field_names("User"))
    extras = {
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }
    return {**emu._bot_dict(), **{k: v for k, v in extras.items() if k in known}}


@_method("getUpdates", "offset", "limit", "timeout", "allowed_updates")
def _get_updates(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        if emu._webhook is not None:
            raise _Reply(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        if p.get("allowed_updates") is not None:
            emu._allowed = list(p.get("allowed_updates"))
        offset = p.get("offset")
        if offset is not None and offset > 0:
            emu._pending = [u for u in emu._pending if u["update_id"] >= offset]
        elif offset is not None and offset < 0:
            emu._pending = emu._pending[offset:]
        limit = min(max(p.get("limit") or 100, 1), 100)
        emu._poll_generation += 1  # a getUpdates still waiting ends with 409
        emu._poll_ended_by = (
            "Conflict: terminated by other getUpdates request; make sure that only one bot "
            "instance is running"
        )
        emu._changed.notify_all()
        generation = emu._poll_generation
        deadline = time.monotonic() + max(p.get("timeout") or 0, 0)
        while not emu._pending and not emu._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            emu._changed.wait(left)
            if emu._poll_generation != generation:
                raise _Reply(409, emu._poll_ended_by)
        return [json.loads(json.dumps(u)) for u in emu._pending[:limit]]


@_method(
    "setWebhook",
    "url",
    "certificate",
    "ip_address",
    "max_connections",
    "allowed_updates",
    "drop_pending_updates",
    "secret_token",
)
def _set_webhook(emu: TelegramEmulator, p: _Params) -> Any:
    url: str = p.get("url")
    secret = p.get("secret_token")
    if secret is not None and not _SECRET.match(secret):
        raise _bad("secret token contains unallowed characters")
    max_connections = p.get("max_connections")
    if max_connections is not None and not 1 <= max_connections <= 100:
        raise _bad("invalid webhook max_connections specified")
    if url and urlsplit(url).scheme not in {"http", "https"}:
        raise _bad("bad webhook: HTTPS url must be provided for webhook")
    with emu._lock:
        if p.get("drop_pending_updates"):
            emu._pending.clear()
        if p.get("allowed_updates") is not None:
            emu._allowed = list(p.get("allowed_updates"))
        if not url:
            emu._webhook = None
            return True
        emu._webhook = {
            "url": url,
            "secret": secret,
            "max_connections": max_connections or 40,
            "ip_address": p.get("ip_address"),
            "has_custom_certificate": p.get("certificate") is not None,
        }
        emu._webhook_error = None
        emu._poll_generation += 1  # a waiting getUpdates ends with 409
        emu._poll_ended_by = "Conflict: terminated by setWebhook request"
        emu._changed.notify_all()
    return True


@_method("deleteWebhook", "drop_pending_updates")
def _delete_webhook(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        emu._webhook = None
        if p.get("drop_pending_updates"):
            emu._pending.clear()
    return True


@_method("getWebhookInfo")
def _get_webhook_info(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        hook = emu._webhook
        info: dict[str, Any] = {
            "url": hook["url"] if hook else "",
            "has_custom_certificate": bool(hook and hook["has_custom_certificate"]),
            "pending_update_count": len(emu._pending),
        }
        if hook:
            info["max_connections"] = hook["max_connections"]
            if hook["ip_address"]:
                info["ip_address"] = hook["ip_address"]
            if emu._allowed:
                info["allowed_updates"] = list(emu._allowed)
            if emu._webhook_error:
                info["last_error_date"], info["last_error_message"] = emu._webhook_error
        return info


@_method("sendMessage", "chat_id", "text", "parse_mode", "reply_markup", "reply_parameters")
def _send_message(emu: TelegramEmulator, p: _Params) -> Any:
    text: str = p.get("text")
    if not text.strip():
        raise _bad("message text is empty")
    if len(text) > 4096:
        raise _bad("message is too long")
    with emu._lock:
        chat = emu._sendable_chat(p.get("chat_id"))
        shown = _render(text, p.get("parse_mode"))
        markup = p.get("reply_markup")
        if markup is not None and "inline_keyboard" in markup:
            emu._inline_markup(markup)
        reply_to = None
        reply = p.get("reply_parameters")
        if reply is not None:
            target_chat = reply.get("chat_id", chat)
            if target_chat != chat:
                raise _bad("emulator: replies to other chats are not emulated")
            existing = emu._messages.get(chat, {}).get(reply["message_id"])
            if existing is not None and not existing.deleted:
                reply_to = reply["message_id"]
            elif not reply.get("allow_sending_without_reply"):
                raise _bad("message to be replied not found")
        msg = emu._store(
            _Msg(
                emu._new_message_id(chat),
                chat,
                emu.bot_id,
                int(time.time()),
                time.time(),
                text=text,
                shown_text=shown,
                markup=markup,
                parse_mode=p.get("parse_mode"),
                reply_to=reply_to,
            )
        )
        return emu._message_dict(msg)


@_method(
    "editMessageText",
    "chat_id",
    "message_id",
    "inline_message_id",
    "text",
    "parse_mode",
    "reply_markup",
)
def _edit_message_text(emu: TelegramEmulator, p: _Params) -> Any:
    text = p.get("text")
    if text is None or not text.strip():
        raise _bad("message text is empty")
    if len(text) > 4096:
        raise _bad("message is too long")
    with emu._lock:
        msg = emu._editable(p)
        shown = _render(text, p.get("parse_mode"))
        markup = emu._inline_markup(p.get("reply_markup"))
        if shown == msg.shown_text and markup == _inline_only(msg.markup):
            raise _bad(_NOT_MODIFIED.removeprefix("Bad Request: "))
        msg.text, msg.shown_text, msg.parse_mode = text, shown, p.get("parse_mode")
        msg.markup = markup  # an edit without reply_markup removes the inline keyboard
        msg.edits += 1
        msg.edit_date = int(time.time())
        return emu._message_dict(msg)


@_method("editMessageReplyMarkup", "chat_id", "message_id", "inline_message_id", "reply_markup")
def _edit_message_reply_markup(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        msg = emu._editable(p)
        markup = emu._inline_markup(p.get("reply_markup"))
        if markup == _inline_only(msg.markup):
            raise _bad(_NOT_MODIFIED.removeprefix("Bad Request: "))
        msg.markup = markup
        msg.edits += 1
        msg.edit_date = int(time.time())
        return emu._message_dict(msg)


def _inline_only(markup: dict[str, Any] | None) -> dict[str, Any] | None:
    return markup if markup is not None and "inline_keyboard" in markup else None


@_method("deleteMessage", "chat_id", "message_id")
def _delete_message(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        chat = emu._resolve_chat(p.get("chat_id"))
        msg = emu._messages.get(chat, {}).get(p.get("message_id"))
        if msg is None or msg.deleted:
            raise _bad("message to delete not found")
        if not emu._deletable(chat, msg):
            raise _bad("message can't be deleted")
        msg.deleted = True
        return True


@_method("deleteMessages", "chat_id", "message_ids")
def _delete_messages(emu: TelegramEmulator, p: _Params) -> Any:
    ids: list[int] = p.get("message_ids")
    if not 1 <= len(ids) <= 100:
        raise _bad("message_ids must contain 1-100 identifiers")
    with emu._lock:
        chat = emu._resolve_chat(p.get("chat_id"))
        messages = emu._messages.get(chat, {})
        targets = [messages.get(i) for i in ids]
        found = [m for m in targets if m is not None and not m.deleted]
        if not found:
            raise _bad("message to delete not found")
        if any(not emu._deletable(chat, m) for m in found):
            raise _bad("message can't be deleted")
        for msg in found:
            msg.deleted = True
        return True


@_method("answerCallbackQuery", "callback_query_id", "text", "show_alert", "url", "cache_time")
def _answer_callback_query(emu: TelegramEmulator, p: _Params) -> Any:
    query_id = p.get("callback_query_id")
    text = p.get("text")
    if text is not None and len(text) > 200:
        raise _bad("MESSAGE_TOO_LONG")
    with emu._lock:
        if query_id not in emu._callbacks or emu._callbacks[query_id] is not None:
            raise _bad(_QUERY_TOO_OLD.removeprefix("Bad Request: "))
        emu._callbacks[query_id] = {
            "text": text,
            "show_alert": bool(p.get("show_alert")),
            "url": p.get("url"),
            "cache_time": p.get("cache_time") or 0,
        }
        return True


def _command_key(emu: TelegramEmulator, p: _Params) -> tuple[str, str]:
    language = p.get("language_code") or ""
    if language and not re.fullmatch(r"[a-z]{2}", language):
        raise _bad("invalid language code specified")
    scope = p.get("scope")
    if scope is not None and "chat_id" in scope:
        chat_id = scope["chat_id"]
        emu._resolve_chat(
            int(chat_id) if isinstance(chat_id, str) and _INT.match(chat_id) else chat_id
        )
    if scope is not None and "user_id" in scope and scope["user_id"] not in emu._users:
        raise _bad("user not found")
    return _scope_key(scope), language


@_method("setMyCommands", "commands", "scope", "language_code")
def _set_my_commands(emu: TelegramEmulator, p: _Params) -> Any:
    commands: list[dict[str, str]] = p.get("commands")
    if len(commands) > 100:
        raise _bad("too many commands specified")
    for command in commands:
        if not _COMMAND.match(command["command"]):
            raise _bad("BOT_COMMAND_INVALID")
        if not 1 <= len(command["description"]) <= 256:
            raise _bad("command description must be 1-256 characters")
    with emu._lock:
        key = _command_key(emu, p)
        if commands:
            emu._commands[key] = [dict(c) for c in commands]
        else:
            emu._commands.pop(key, None)
    return True


@_method("getMyCommands", "scope", "language_code")
def _get_my_commands(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        return [dict(c) for c in emu._commands.get(_command_key(emu, p), [])]


@_method("deleteMyCommands", "scope", "language_code")
def _delete_my_commands(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        emu._commands.pop(_command_key(emu, p), None)
    return True


def _until(value: int | None) -> int:
    """0 (forever) for less than 30 s or more than 366 days from now, as the spec says."""
    if not value:
        return 0
    left = value - time.time()
    return value if 30 <= left <= 366 * 86400 else 0


def _guard_target(emu: TelegramEmulator, group: _Group, user_id: int) -> _Member:
    member = emu._member_target(group, user_id)
    if member.status == "creator":
        raise _bad("can't remove chat owner")
    if member.status == "administrator":
        raise _bad("user is an administrator of the chat")
    return member


@_method(
    "restrictChatMember",
    "chat_id",
    "user_id",
    "permissions",
    "use_independent_chat_permissions",
    "until_date",
)
def _restrict_chat_member(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        group = emu._group_for(p.get("chat_id"))
        emu._require_right(
            group, "can_restrict_members", "not enough rights to restrict/unrestrict chat member"
        )
        user_id = p.get("user_id")
        if user_id == emu.bot_id:
            raise _bad("can't restrict self")
        member = _guard_target(emu, group, user_id)
        given: dict[str, bool] = p.get("permissions")
        permissions = {n: bool(given.get(n, False)) for n in emu._permission_names()}
        if not p.get("use_independent_chat_permissions"):
            if permissions.get("can_send_other_messages") or permissions.get(
                "can_add_web_page_previews"
            ):
                permissions.update(dict.fromkeys(_IMPLIED_BY_OTHER, True))
            if permissions.get("can_send_polls"):
                permissions["can_send_messages"] = True
        defaults = emu._default_permissions()
        in_chat = member.status in {"member", "restricted"} and member.is_member
        if all(permissions[n] for n, on in defaults.items() if on):
            if member.status == "kicked":
                return True
            new = _Member("member") if in_chat else _Member("left")
        else:
            new = _Member(
                "restricted",
                permissions=permissions,
                until_date=_until(p.get("until_date")),
                is_member=in_chat,
            )
        emu._change_member(group, user_id, new, actor=emu.bot_id)
        return True


@_method("banChatMember", "chat_id", "user_id", "until_date", "revoke_messages")
def _ban_chat_member(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        group = emu._group_for(p.get("chat_id"))
        emu._require_right(
            group, "can_restrict_members", "not enough rights to restrict/unrestrict chat member"
        )
        user_id = p.get("user_id")
        if user_id == emu.bot_id:
            raise _bad("can't remove self")
        _guard_target(emu, group, user_id)
        new = _Member("kicked", until_date=_until(p.get("until_date")))
        emu._change_member(group, user_id, new, actor=emu.bot_id)
        if p.get("revoke_messages"):
            for msg in emu._messages.get(group.id, {}).values():
                if msg.sender_id == user_id:
                    msg.deleted = True
        return True


@_method("unbanChatMember", "chat_id", "user_id", "only_if_banned")
def _unban_chat_member(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        group = emu._group_for(p.get("chat_id"))
        emu._require_right(
            group, "can_restrict_members", "not enough rights to restrict/unrestrict chat member"
        )
        user_id = p.get("user_id")
        member = emu._member_target(group, user_id)
        if member.status != "kicked":
            if p.get("only_if_banned") or member.status == "left":
                return True
            _guard_target(emu, group, user_id)
        emu._change_member(group, user_id, _Member("left"), actor=emu.bot_id)
        return True


def _join_request(emu: TelegramEmulator, p: _Params, outcome: str) -> _Group:
    group = emu._group_for(p.get("chat_id"))
    emu._require_right(group, "can_invite_users", "not enough rights to manage join requests")
    user_id = p.get("user_id")
    emu._member_target(group, user_id)
    state = group.join_requests.get(user_id)
    if state is None or state[0] != "pending":
        raise _bad("HIDE_REQUESTER_MISSING")
    member = group.members.get(user_id)
    joined = member is not None and member.status not in {"left", "kicked"} and member.is_member
    if outcome == "approved" and joined:
        group.join_requests[user_id] = ("approved", state[1])
        raise _bad("USER_ALREADY_PARTICIPANT")
    group.join_requests[user_id] = (outcome, state[1])
    return group


@_method("approveChatJoinRequest", "chat_id", "user_id")
def _approve_chat_join_request(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        group = _join_request(emu, p, "approved")
        emu._joined(group, p.get("user_id"), actor=emu.bot_id, via_request=True)
        return True


@_method("declineChatJoinRequest", "chat_id", "user_id")
def _decline_chat_join_request(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        _join_request(emu, p, "declined")
        return True


@_method("getChatMember", "chat_id", "user_id")
def _get_chat_member(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        chat = emu._resolve_chat(p.get("chat_id"))
        user_id = p.get("user_id")
        if chat not in emu._groups:
            if user_id not in {chat, emu.bot_id}:
                raise _bad("user not found")
            blocked = emu._users[chat].blocked and user_id == emu.bot_id
            return emu._member_shape(
                _Member("kicked" if blocked else "member"), emu._user_dict(user_id)
            )
        group = emu._groups[chat]
        emu._member_target(group, user_id)
        return emu._member_dict(group, user_id)


@_method("getChat", "chat_id")
def _get_chat(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        chat = emu._resolve_chat(p.get("chat_id"))
        info = {
            **emu._chat_dict(chat),
            "accent_color_id": abs(chat) % 7,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }
        if chat in emu._groups:
            info["permissions"] = emu._default_permissions()
            info["join_by_request"] = False
        return info


@_method("getChatAdministrators", "chat_id", "return_bots")
def _get_chat_administrators(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        chat = emu._resolve_chat(p.get("chat_id"))
        if chat not in emu._groups:
            raise _bad("there are no administrators in the private chat")
        group = emu._groups[chat]
        return [
            emu._member_dict(group, user_id)
            for user_id, member in group.members.items()
            if member.status in {"creator", "administrator"}
        ]


@_method(
    "createChatInviteLink", "chat_id", "name", "expire_date", "member_limit", "creates_join_request"
)
def _create_chat_invite_link(emu: TelegramEmulator, p: _Params) -> Any:
    name = p.get("name")
    if name is not None and len(name) > 32:
        raise _bad("invite link name must be at most 32 characters")
    limit = p.get("member_limit")
    if limit is not None and not 1 <= limit <= 99999:
        raise _bad("member limit must be 1-99999")
    if limit is not None and p.get("creates_join_request"):
        raise _bad("member limit can't be specified for links requiring administrator approval")
    with emu._lock:
        group = emu._group_for(p.get("chat_id"))
        emu._require_right(
            group, "can_invite_users", "not enough rights to manage chat invite link"
        )
        link: dict[str, Any] = {
            "invite_link": f"https://t.me/+emu{abs(group.id)}x{len(group.invite_links) + 1}",
            "creator": emu._bot_dict(),
            "creates_join_request": bool(p.get("creates_join_request")),
            "is_primary": False,
            "is_revoked": False,
        }
        for key in ("name", "expire_date", "member_limit"):
            if p.get(key) is not None:
                link[key] = p.get(key)
        group.invite_links.append(link)
        return dict(link)


@_method("revokeChatInviteLink", "chat_id", "invite_link")
def _revoke_chat_invite_link(emu: TelegramEmulator, p: _Params) -> Any:
    """Revokes a link the bot created in that chat; it no longer admits anyone. Revoking it
    again answers the same revoked link. A link that is not one of this chat's answers
    INVITE_HASH_EXPIRED, the server's word for a link it does not know (tdlib relays it)."""
    url: str = p.get("invite_link")
    with emu._lock:
        group = emu._group_for(p.get("chat_id"))
        emu._require_right(
            group, "can_invite_users", "not enough rights to manage chat invite link"
        )
        link = next((link for link in group.invite_links if link["invite_link"] == url), None)
        if link is None:
            raise _bad("INVITE_HASH_EXPIRED")
        link["is_revoked"] = True
        return dict(link)


@_method("setChatAdministratorCustomTitle", "chat_id", "user_id", "custom_title")
def _set_chat_administrator_custom_title(emu: TelegramEmulator, p: _Params) -> Any:
    title: str = p.get("custom_title")
    if len(title) > 16:
        raise _bad("ADMIN_RANK_INVALID")
    with emu._lock:
        group = emu._group_for(p.get("chat_id"))
        emu._require_right(
            group, "can_promote_members", "not enough rights to change custom title of the user"
        )
        member = emu._member_target(group, p.get("user_id"))
        if member.status != "administrator":
            raise _bad("user is not an administrator")
        if not member.promoted_by_bot:
            raise _bad("CHAT_ADMIN_REQUIRED")  # only administrators the bot promoted
        member.custom_title = title or None
        return True


_PROMOTE_RIGHTS = (
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_post_messages",
    "can_edit_messages",
    "can_pin_messages",
    "can_manage_topics",
    "can_manage_direct_messages",
    "can_manage_tags",
)


@_method("promoteChatMember", "chat_id", "user_id", "is_anonymous", *_PROMOTE_RIGHTS)
def _promote_chat_member(emu: TelegramEmulator, p: _Params) -> Any:
    with emu._lock:
        group = emu._group_for(p.get("chat_id"))
        emu._require_right(group, "can_promote_members", "not enough rights")
        user_id = p.get("user_id")
        if user_id == emu.bot_id:
            raise _bad("can't promote self")
        member = emu._member_target(group, user_id)
        if member.status == "creator":
            raise _bad("can't remove chat owner")
        if member.status == "administrator" and not member.promoted_by_bot:
            raise _bad("CHAT_ADMIN_REQUIRED")
        if p.get("is_anonymous"):
            raise _bad("emulator: anonymous administrators are not emulated")
        wanted = {name: bool(p.get(name)) for name in _PROMOTE_RIGHTS}
        # The live server implies can_manage_chat for any other right, as clients show it.
        if any(wanted.values()):
            wanted["can_manage_chat"] = True
        bot = emu._bot_member(group)
        if bot.status != "creator":
            held = bot.rights or {}
            if any(on and not held.get(name) for name, on in wanted.items()):
                raise _bad("RIGHT_FORBIDDEN")
        in_chat = member.status in {"member", "administrator"} or (
            member.status == "restricted" and member.is_member
        )
        if not in_chat:
            raise _bad("USER_NOT_PARTICIPANT")
        if not any(wanted.values()):
            if member.status == "administrator":  # all rights off demotes
                emu._change_member(group, user_id, _Member("member"), actor=emu.bot_id)
            return True
        rights = {name: wanted.get(name, False) for name in emu._right_names()}
        title = member.custom_title if member.status == "administrator" else None
        new = _Member("administrator", rights=rights, custom_title=title, promoted_by_bot=True)
        emu._change_member(group, user_id, new, actor=emu.bot_id)
        return True


@_method("sendDocument", "chat_id", "document", "caption", "parse_mode", "reply_markup")
def _send_document(emu: TelegramEmulator, p: _Params) -> Any:
    document = p.get("document")
    if not isinstance(document, _Upload):
        raise _bad("emulator: sending a file_id or URL is not emulated; upload the file")
    if not document.data:
        raise _bad("file must be non-empty")
    caption = p.get("caption")
    if caption is not None and len(caption) > 1024:
        raise _bad("message caption is too long")
    with emu._lock:
        chat = emu._sendable_chat(p.get("chat_id"))
        shown = _render(caption, p.get("parse_mode")) if caption is not None else None
        markup = p.get("reply_markup")
        if markup is not None and "inline_keyboard" in markup:
            emu._inline_markup(markup)
        msg = emu._store(
            _Msg(
                emu._new_message_id(chat),
                chat,
                emu.bot_id,
                int(time.time()),
                time.time(),
                markup=markup,
                parse_mode=p.get("parse_mode"),
                document=SentDocument(document.filename, document.content_type, document.data),
                caption=shown,
            )
        )
        return emu._message_dict(msg)


# -- HTTP plumbing ----------------------------------------------------------------------------


def _parse_request(
    content_type: str, raw: bytes, query: str
) -> tuple[dict[str, Any], dict[str, _Upload]]:
    """(parameters, file parts by name); ValueError for a body that is not what it claims."""
    params: dict[str, Any] = _form(query)
    uploads: dict[str, _Upload] = {}
    if not raw:
        return params, uploads
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            parsed = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"can't parse JSON object: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ValueError("the JSON body must be an object")
        params.update({k: v for k, v in parsed.items() if v is not None})
    elif kind == "multipart/form-data":
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
        )
        if not message.is_multipart():
            raise ValueError("can't parse multipart body")
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            data = part.get_payload(decode=True) or b""
            assert isinstance(data, bytes)
            filename = part.get_filename()
            if filename is not None:
                upload = _Upload(filename, part.get_content_type(), data)
                uploads[name] = upload
                params[name] = upload
            else:
                params[name] = data.decode(part.get_content_charset() or "utf-8")
    else:
        try:
            params.update(_form(raw.decode()))
        except UnicodeDecodeError as exc:
            raise ValueError("the body is not UTF-8") from exc
    return params, uploads


def _form(text: str) -> dict[str, Any]:
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


class _Server(TrackedServer):
    def __init__(self, address: tuple[str, int], emulator: TelegramEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _RequestHandler)


class _RequestHandler(JsonHandler):
    server_version = "telegram-emulator"

    def answer(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any, str]:
        status, body = cast(_Server, self.server).emulator._handle(method, target, headers, raw)
        return status, body, "application/json"
