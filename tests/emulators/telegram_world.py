"""The emulated Telegram: its users, groups and messages, and the helpers that the Bot API
methods (telegram_methods.py) read and change them with."""

from __future__ import annotations

import html
import json
import re
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, cast

from tests.emulators.telegram_server import _Server
from tests.emulators.telegram_spec import load_spec

_BOT_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")
_DEFAULT_EXCLUDED = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_DEFAULT_PERMISSION_OFF = frozenset(
    {"can_change_info", "can_pin_messages", "can_manage_topics", "can_edit_tag"}
)
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
    #: The forum topic it was sent to (``message_thread_id``); None: the chat (General).
    message_thread_id: int | None = None


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
    thread_id: int | None = None  # the forum topic it belongs to


@dataclass
class _Group:
    id: int
    title: str
    owner_id: int
    is_forum: bool = False
    #: A forum's topics: message_thread_id (the id of its forum_topic_created message) -> name.
    topics: dict[int, str] = field(default_factory=dict)
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


class World:
    """Users, groups, messages and the bot's settings; one lock guards them all."""

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
        forum: bool = False,
    ) -> int:
        """A supergroup with an automatic owner ("Owner") and the bot (an administrator with
        can_manage_chat, can_restrict_members, can_invite_users, can_delete_messages and
        can_promote_members unless ``bot_rights`` says otherwise; a plain member with
        ``bot_is_admin=False``). ``forum``: topics are enabled (``is_forum``); add them with
        ``add_topic``."""
        with self._lock:
            owner = self.add_user("Owner", language_code=None)
            group_id = -(10**12) - self._next_group_id
            self._next_group_id += 1
            group = _Group(group_id, title, owner, is_forum=forum)
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

    def add_topic(self, chat_id: int, name: str) -> int:
        """A topic of a forum, created by its owner: a ``forum_topic_created`` service message
        whose id is the topic's ``message_thread_id`` (as on the live server). Returns it."""
        with self._lock:
            group = self._group(chat_id)
            if not group.is_forum:
                raise AssertionError(f"{chat_id} is not a forum (add_group(forum=True))")
            message_id = self._new_message_id(chat_id)
            created = {"name": name, "icon_color": 7322096}
            msg = _Msg(
                message_id,
                chat_id,
                group.owner_id,
                int(time.time()),
                time.time(),
                thread_id=message_id,
                extra={"forum_topic_created": created},
            )
            self._store(msg)
            group.topics[message_id] = name
            return message_id

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

    def demote(self, chat_id: int, user_id: int) -> dict[str, Any]:
        """The owner makes an administrator a plain member: a chat_member update."""
        with self._lock:
            group = self._group(chat_id)
            return self._change_member(group, user_id, _Member("member"), actor=group.owner_id)

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
            group = self._groups[chat_id]
            out: dict[str, Any] = {"id": chat_id, "type": "supergroup", "title": group.title}
            if group.is_forum:
                out["is_forum"] = True
            return out
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
        if msg.thread_id is not None:
            out["message_thread_id"] = msg.thread_id
            out["is_topic_message"] = True
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
            message_thread_id=msg.thread_id,
        )

    def _user_message(
        self,
        user_id: int,
        chat_id: int | None,
        content: dict[str, Any],
        *,
        reply_to: int | None = None,
        topic: int | None = None,
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
        if topic is not None:
            if chat not in self._groups or topic not in self._groups[chat].topics:
                raise AssertionError(f"no topic {topic} in {chat} (add_topic first)")
            # In a topic, a message that replies to nothing else replies to the topic's
            # creation message, as on the live server.
            reply_to = reply_to or topic
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
                thread_id=topic,
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

    def _thread_for(self, chat: int, thread_id: int | None) -> int | None:
        """A ``message_thread_id`` to send to, checked: it names a topic of a forum. The
        spec allows it "for forum supergroups and private chats of bots with forum topic mode
        enabled only"; elsewhere (and for an unknown topic) this emulator answers as the live
        server does for an unknown one."""
        if thread_id is None:
            return None
        group = self._groups.get(chat)
        if group is None or not group.is_forum or thread_id not in group.topics:
            raise _bad("message thread not found")
        return thread_id

    def _group_for(self, chat_id: Any) -> _Group:
        chat = self._resolve_chat(chat_id)
        if chat not in self._groups:
            raise _bad("method is available only for supergroups")
        return self._groups[chat]
