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
import json
import math
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from tests.emulators.telegram_methods import _HANDLERS, _scope_key, emulated_methods
from tests.emulators.telegram_server import _parse_request, _Server
from tests.emulators.telegram_spec import (
    SPEC_FILE,
    TelegramSpec,
    _Upload,
    conforms,
    find_specs,
    load_spec,
)
from tests.emulators.telegram_world import (
    RecordedCall,
    SentDocument,
    SentMessage,
    WebhookDelivery,
    World,
    _bad,
    _command_entities,
    _Fault,
    _Group,
    _Member,
    _Msg,
    _Params,
    _Reply,
)

__all__ = [
    "SPEC_FILE",
    "RecordedCall",
    "SentDocument",
    "SentMessage",
    "TelegramEmulator",
    "TelegramSpec",
    "WebhookDelivery",
    "conforms",
    "emulated_methods",
    "find_specs",
    "load_spec",
]

T = TypeVar("T")


class TelegramEmulator(World):
    """The Telegram Bot API over HTTP on 127.0.0.1 (see the module docstring)."""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("emulator already started")
        server = _Server(("127.0.0.1", 0), self._handle)
        self._server = server
        self._stopping = False
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self.base_url = f"{self.url}/bot"
        self.base_file_url = f"{self.url}/file/bot"
        serve = server.serve_in_background("telegram-emulator")
        deliver = threading.Thread(
            target=self._deliver_webhooks, name="telegram-emulator-webhook", daemon=True
        )
        deliver.start()
        self._threads = [serve, deliver]

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        with self._lock:
            self._stopping = True
            self._changed.notify_all()  # ends long polls and the delivery thread
        server.stop_serving(*self._threads)
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

    # -- simulated user actions (each returns the update it enqueued) ------------------------

    def send_text(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        reply_to: int | None = None,
        topic: int | None = None,
    ) -> dict[str, Any]:
        """A text message from the user: in the private chat with the bot (which counts as
        having started it), or in a group the user is in; ``reply_to`` is the message id it
        replies to in the same chat, ``topic`` the forum topic it is posted in (the General
        topic when None). In a group where the bot is not an administrator, privacy
        mode hides text that is not a /command (it lands in ``dropped_updates``)."""
        with self._lock:
            content: dict[str, Any] = {"text": text}
            entities = _command_entities(text)
            if entities:
                content["entities"] = entities
            message = self._user_message(user_id, chat_id, content, reply_to=reply_to, topic=topic)
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
        forged: bool = False,
    ) -> dict[str, Any]:
        """The user presses a button of the message. ``forged``: a modified client sends data
        no button carries (the Bot API warns that "a bad client can send arbitrary data" in
        ``callback_data``)."""
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
            if callback_data not in datas and not forged:
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

    def add_bot(self, chat_id: int, *, by: int, as_admin: bool = True) -> dict[str, Any]:
        """A user adds the bot to the group (as an administrator with the usual rights, or a
        plain member). As the Bot API documents my_chat_member ("The bot's chat member status
        was updated in a chat"), the bot gets one such update, sent whatever allowed_updates
        says, as it is not one of the kinds that must be asked for by name."""
        with self._lock:
            group = self._group(chat_id)
            if as_admin:
                rights = {
                    "can_manage_chat": True,
                    "can_restrict_members": True,
                    "can_invite_users": True,
                    "can_delete_messages": True,
                }
                new = _Member("administrator", rights=self._rights(rights))
            else:
                new = _Member("member")
            return self._bot_changed(group, new, by=by)

    def remove_bot(self, chat_id: int, *, by: int) -> dict[str, Any]:
        """A user removes the bot from the group: a my_chat_member update (→ left)."""
        with self._lock:
            return self._bot_changed(self._group(chat_id), _Member("left"), by=by)

    def _bot_changed(self, group: _Group, new: _Member, *, by: int) -> dict[str, Any]:
        bot = self._bot_dict()
        old = group.members.get(self.bot_id) or _Member("left")
        old_shape = self._member_shape(old, bot)
        group.members[self.bot_id] = new
        update = {
            "chat": self._chat_dict(group.id),
            "from": self._user_dict(by),
            "date": int(time.time()),
            "old_chat_member": old_shape,
            "new_chat_member": self._member_shape(new, bot),
        }
        return self._enqueue({"my_chat_member": update})

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

    def banned_until(self, chat_id: int, user_id: int) -> int | None:
        """A banned member's ``until_date`` (0: forever); None if they are not banned."""
        with self._lock:
            member = self._group(chat_id).members.get(user_id)
            return member.until_date if member and member.status == "kicked" else None

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

    def handed_over(self) -> bool:
        """Every update not yet confirmed has been in a getUpdates answer: the bot has them
        all, though it may not have confirmed (handled) them yet."""
        answered = {
            update["update_id"]
            for call in self.calls_to("getUpdates")
            if isinstance(call.response, dict)
            for update in call.response.get("result") or []
        }
        return all(update["update_id"] in answered for update in self.pending_updates)

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
