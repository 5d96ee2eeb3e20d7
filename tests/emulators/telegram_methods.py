"""The Bot API methods: one handler per method, registered with the parameters it reads."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from tests.emulators.telegram_spec import _INT, _Upload
from tests.emulators.telegram_world import (
    SentDocument,
    World,
    _bad,
    _Group,
    _Member,
    _Msg,
    _Params,
    _render,
    _Reply,
)

_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")
_IMPLIED_BY_OTHER = (
    "can_send_messages",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
)
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
_QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"


_Handler = Callable[[World, _Params], Any]
_HANDLERS: dict[str, tuple[_Handler, frozenset[str]]] = {}


def _method(name: str, *reads: str) -> Callable[[_Handler], _Handler]:
    def register(func: _Handler) -> _Handler:
        _HANDLERS[name] = (func, frozenset(reads))
        return func

    return register


def emulated_methods() -> dict[str, frozenset[str]]:
    """Every emulated method and the parameter names its handler reads."""
    return {name: reads for name, (_, reads) in _HANDLERS.items()}


def _scope_key(scope: dict[str, Any] | None) -> str:
    scope = dict(scope or {"type": "default"})
    if isinstance(scope.get("chat_id"), str) and _INT.match(scope["chat_id"]):
        scope["chat_id"] = int(scope["chat_id"])
    return json.dumps(scope, sort_keys=True)


# -- method handlers --------------------------------------------------------------------------


@_method("getMe")
def _get_me(emu: World, p: _Params) -> Any:
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
def _get_updates(emu: World, p: _Params) -> Any:
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
def _set_webhook(emu: World, p: _Params) -> Any:
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
def _delete_webhook(emu: World, p: _Params) -> Any:
    with emu._lock:
        emu._webhook = None
        if p.get("drop_pending_updates"):
            emu._pending.clear()
    return True


@_method("getWebhookInfo")
def _get_webhook_info(emu: World, p: _Params) -> Any:
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


@_method(
    "sendMessage",
    "chat_id",
    "text",
    "parse_mode",
    "reply_markup",
    "reply_parameters",
    "message_thread_id",
)
def _send_message(emu: World, p: _Params) -> Any:
    text: str = p.get("text")
    if not text.strip():
        raise _bad("message text is empty")
    if len(text) > 4096:
        raise _bad("message is too long")
    with emu._lock:
        chat = emu._sendable_chat(p.get("chat_id"))
        thread = emu._thread_for(chat, p.get("message_thread_id"))
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
                thread_id=thread,
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
def _edit_message_text(emu: World, p: _Params) -> Any:
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
def _edit_message_reply_markup(emu: World, p: _Params) -> Any:
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
def _delete_message(emu: World, p: _Params) -> Any:
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
def _delete_messages(emu: World, p: _Params) -> Any:
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
def _answer_callback_query(emu: World, p: _Params) -> Any:
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


def _command_key(emu: World, p: _Params) -> tuple[str, str]:
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
def _set_my_commands(emu: World, p: _Params) -> Any:
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
def _get_my_commands(emu: World, p: _Params) -> Any:
    with emu._lock:
        return [dict(c) for c in emu._commands.get(_command_key(emu, p), [])]


@_method("deleteMyCommands", "scope", "language_code")
def _delete_my_commands(emu: World, p: _Params) -> Any:
    with emu._lock:
        emu._commands.pop(_command_key(emu, p), None)
    return True


def _until(value: int | None) -> int:
    """0 (forever) for less than 30 s or more than 366 days from now, as the spec says."""
    if not value:
        return 0
    left = value - time.time()
    return value if 30 <= left <= 366 * 86400 else 0


def _guard_target(emu: World, group: _Group, user_id: int) -> _Member:
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
def _restrict_chat_member(emu: World, p: _Params) -> Any:
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
def _ban_chat_member(emu: World, p: _Params) -> Any:
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
def _unban_chat_member(emu: World, p: _Params) -> Any:
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


def _join_request(emu: World, p: _Params, outcome: str) -> _Group:
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
def _approve_chat_join_request(emu: World, p: _Params) -> Any:
    with emu._lock:
        group = _join_request(emu, p, "approved")
        emu._joined(group, p.get("user_id"), actor=emu.bot_id, via_request=True)
        return True


@_method("declineChatJoinRequest", "chat_id", "user_id")
def _decline_chat_join_request(emu: World, p: _Params) -> Any:
    with emu._lock:
        _join_request(emu, p, "declined")
        return True


@_method("getChatMember", "chat_id", "user_id")
def _get_chat_member(emu: World, p: _Params) -> Any:
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
def _get_chat(emu: World, p: _Params) -> Any:
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
def _get_chat_administrators(emu: World, p: _Params) -> Any:
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
def _create_chat_invite_link(emu: World, p: _Params) -> Any:
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
def _revoke_chat_invite_link(emu: World, p: _Params) -> Any:
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
def _set_chat_administrator_custom_title(emu: World, p: _Params) -> Any:
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
def _promote_chat_member(emu: World, p: _Params) -> Any:
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


@_method(
    "sendDocument",
    "chat_id",
    "document",
    "caption",
    "parse_mode",
    "reply_markup",
    "message_thread_id",
)
def _send_document(emu: World, p: _Params) -> Any:
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
        thread = emu._thread_for(chat, p.get("message_thread_id"))
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
                thread_id=thread,
            )
        )
        return emu._message_dict(msg)
