"""Each group's own policy, set in chat by its administrators: ``/settings``.

``/settings`` in a group, from one of its administrators, sends that group's panel to the
admin's private chat (the group gets one short line); in the private chat it lists the groups
the admin administers, as known from the groups the bot is in (kept from ``my_chat_member``).
Buttons cycle through a setting's choices; lists and texts are asked for with a ForceReply and
refused, in one line, as the settings file would refuse them. Nothing in a button is trusted:
every press and every answer asks Telegram again (through the moderators' cache) whether the
person still administers the group it names. The rules and the audit are the core's
``Policies``; this module only shows them.

A group's log chat (where its reviews and verifications are posted) is taken only if the admin
setting it also administers that chat and the bot is in it, both asked of Telegram there and
then: otherwise a group's admin could make the bot post into a chat they do not control.
``auto_roles`` is not here at all: roles can open other communities' resources, so only the
operator sets a group's (``verifybot policy set``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from telegram import (
    ChatMember,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
    User,
)
from telegram.constants import ChatType
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from adapters.telegram.client import (
    PLATFORM,
    TelegramClient,
    chat_target,
    in_chat,
    topic_of,
)
from adapters.telegram.desk import TelegramDesk
from bot.directory import AsyncDirectory
from bot.policy import ADMIT_VERIFIED, GATE_MODES, CommunityPolicy, community_scope, parse_field

if TYPE_CHECKING:
    from bot.app import App

log = structlog.get_logger("verifybot.telegram")

CALLBACK_PREFIX = "vs:"
#: Settings changed by pressing: each press moves to the next choice.
CHOICES: dict[str, tuple[str, ...]] = {
    "gate_mode": GATE_MODES,
    "verify_timeout": ("0", "5m", "15m", "1h", "1d"),
    "consequence": ("kick", "mute", "ban:1d", "ban:7d", "ban", "decline"),
    "ban_after_failures": ("0", "3", "5", "10"),
    "admit_verified": ADMIT_VERIFIED,
    "max_accounts_per_phone": ("1", "2", "3", "5"),
}
#: Settings typed in answer to a question (a ForceReply).
ASKED = ("allowed_countries", "blocked_countries", "allowed_number_types", "welcome", "log_chat")
#: How long a question waits for its answer.
QUESTION_SECONDS = 86400
RESET = "-"
#: Groups listed in one private /settings (Telegram shows at most 100 buttons), and
#: getChatMember calls made at once to list them.
LISTED_GROUPS = 50
ASKED_AT_ONCE = 8
_DATA = re.compile(r"^vs:([oca]):(-?\d{1,20})(?::(\w+))?$")

Reply = Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]]


class SettingsPanel:
    """``/settings``, its buttons and questions, and the registry of the bot's groups."""

    def __init__(
        self, client: TelegramClient, app: App, desk: TelegramDesk, *, otherwise: Reply
    ) -> None:
        self.client = client
        self.bot = client.bot
        self.app = app
        self.policies = app.policies
        self.directory = AsyncDirectory.bounded(app.directory)
        self.desk = desk
        #: Where a private text goes when it answers none of our questions: the member's chat.
        self.otherwise = otherwise
        self.choices = {
            **CHOICES,
            "default_language": tuple(sorted(client.catalogue.languages)),
        }

    def handlers(self) -> list[BaseHandler[Update, Any, Any]]:
        private = filters.ChatType.PRIVATE
        return [
            CommandHandler("settings", self.on_command, filters=filters.UpdateType.MESSAGE),
            CallbackQueryHandler(self.on_button, pattern=f"^{CALLBACK_PREFIX}"),
            MessageHandler(
                private & filters.TEXT & filters.REPLY & ~filters.COMMAND, self.on_reply
            ),
        ]

    # -- the groups the bot is in -----------------------------------------------------------

    async def on_my_chat_member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The bot was added to or removed from a group (Bot API: my_chat_member)."""
        change = update.my_chat_member
        if change is None or change.chat.type not in (ChatType.GROUP, ChatType.SUPERGROUP):
            return
        place = str(change.chat.id)
        if in_chat(change.new_chat_member):
            await self.directory.record_group(place, change.chat.title, now=datetime.now(UTC))
            log.info("group_joined", place=place)
        elif not in_chat(change.new_chat_member) and in_chat(change.old_chat_member):
            await self.directory.forget_group(place)
            log.info("group_left", place=place)

    # -- /settings ----------------------------------------------------------------------------

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user, chat = update.effective_message, update.effective_user, update.effective_chat
        if message is None or user is None or chat is None or user.is_bot:
            return
        if not await self._first(user, update):
            return
        locale = user.language_code
        if chat.type == ChatType.PRIVATE:
            await self._list_groups(user, locale)
            return
        topic = topic_of(message)  # in a forum, the group's line answers in the topic asked
        if not await self.desk.administers(user.id, (chat.id,)):
            await self._refuse(user, chat.id, tell=chat.id, topic=topic)
            return
        # A group the bot was in before the registry existed is known from now on.
        await self.directory.record_group(str(chat.id), chat.title, now=datetime.now(UTC))
        sent = await self._send(user.id, *await self._panel(chat.id, chat.title, locale))
        link = f"https://t.me/{self.bot.username}"
        note = "sent_privately" if sent else "start_private"
        await self.client.send(chat.id, self._text(note, locale, link=link), topic=topic)

    async def _list_groups(self, user: User, locale: str | None) -> None:
        groups = await self.directory.groups()
        slots = asyncio.Semaphore(ASKED_AT_ONCE)

        async def administers(chat_id: str) -> bool:
            async with slots:
                return await self.desk.administers(user.id, (int(chat_id),))

        # Telegram is asked about each group (the moderators' cache remembers the answers).
        theirs = await asyncio.gather(*(administers(group.chat_id) for group in groups))
        rows: list[list[InlineKeyboardButton]] = []
        for group, administered in zip(groups, theirs, strict=True):
            if administered and len(rows) < LISTED_GROUPS:
                data = f"{CALLBACK_PREFIX}o:{group.chat_id}"
                label = group.title or group.chat_id
                rows.append([InlineKeyboardButton(label, callback_data=data)])
        if not rows:
            await self.client.send(user.id, self._text("no_groups", locale))
            return
        markup = InlineKeyboardMarkup(rows)
        await self.client.send(user.id, self._text("choose_group", locale), markup)

    # -- buttons ------------------------------------------------------------------------------

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        await self.client.call(query.answer())  # every query, or the client keeps spinning
        match = _DATA.match(query.data or "")
        if match is None or not isinstance(query.message, Message):
            return
        op, place, name = match.group(1), int(match.group(2)), match.group(3)
        user, locale = query.from_user, query.from_user.language_code
        if (op == "c" and name not in self.choices) or (op == "a" and name not in ASKED):
            return
        if not await self._first(user, update):
            return
        # The button names a group; only Telegram's word says who administers it.
        if not await self.desk.administers(user.id, (place,)):
            await self._refuse(user, place, tell=user.id)
            return
        title = await self._title(place)
        if op == "a" and name is not None:
            await self._ask(user, place, title, name, locale)
            return
        if op == "c" and name is not None:
            policy = await self._policy(place)
            await self._change(user, place, name, self._next(name, policy.written(name)))
        text, markup = await self._panel(place, title, locale)
        await self.client.call(query.message.edit_text(text, reply_markup=markup))

    def _next(self, name: str, current: str) -> str:
        choices = self.choices[name]
        at = choices.index(current) if current in choices else -1
        return choices[(at + 1) % len(choices)]

    # -- questions and answers ----------------------------------------------------------------

    async def _ask(self, user: User, place: int, title: str, name: str, locale: str | None) -> None:
        default = self._shown(
            place, name, self.policies.default_for(self._scope(place)).written(name)
        )
        text = self._text(
            "prompt",
            locale,
            field=self._text(f"field.{name}", locale),
            group=title,
            hint=self._text(f"hint.{name}", locale),
            default=default or self._text("empty", locale),
        )
        question = await self.client.send(user.id, text, ForceReply(selective=True))
        if question is not None:
            await self.app.store.stash(
                _question(user.id, question.message_id), f"{place}|{name}", ttl=QUESTION_SECONDS
            )

    async def on_reply(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        asked = message.reply_to_message if message is not None else None
        if message is None or user is None or asked is None or message.text is None:
            await self.otherwise(update, context)
            return
        pending = await self.app.store.take(_question(user.id, asked.message_id))
        if pending is None:  # not an answer to one of our questions: the member's chat has it
            await self.otherwise(update, context)
            return
        place_text, _, name = pending.partition("|")
        place, locale = int(place_text), user.language_code
        if not await self.desk.administers(user.id, (place,)):
            await self._refuse(user, place, tell=user.id)
            return
        answer = message.text.strip()
        value = None if answer == RESET else answer
        try:
            if name == "log_chat" and value is not None:
                chat = parse_field(name, value, platform=PLATFORM)
                if chat is not None and not await self._may_log_to(user.id, chat):
                    await self.app.store.stash(
                        _question(user.id, asked.message_id), pending, ttl=3600
                    )
                    line = self._text("log_chat_refused", locale, chat=chat)
                    await self.client.send(user.id, line)
                    return
            await self._change(user, place, name, value)
        except ValueError as exc:
            await self.app.store.stash(_question(user.id, asked.message_id), pending, ttl=3600)
            await self.client.send(user.id, self._text("bad_value", locale, problem=str(exc)))
            return
        await self._send(user.id, *await self._panel(place, await self._title(place), locale))

    async def _may_log_to(self, user_id: int, chat: str) -> bool:
        """Whether the admin administers ``chat`` and the bot is in it, asked of Telegram now
        (not the moderators' cache: this decides where the bot will post)."""
        target = chat_target(chat)
        admin = await self.client.call(self.bot.get_chat_member(target, user_id))
        if admin is None or admin.status not in (ChatMember.OWNER, ChatMember.ADMINISTRATOR):
            return False
        bot = await self.client.call(self.bot.get_chat_member(target, self.bot.id))
        return bot is not None and in_chat(bot)

    # -- helpers ------------------------------------------------------------------------------

    async def _refuse(self, user: User, place: int, *, tell: int, topic: int | None = None) -> None:
        """Not an administrator of ``place`` (now): said politely, and audited as the
        moderators' desk audits its refusals."""
        actor = str(self.client.member_for(user).key)
        log.info("settings_refused", place=str(place))
        try:
            await self.directory.audit(
                "policy_refused", actor=actor, subject=self._scope(place), now=datetime.now(UTC)
            )
        except Exception:  # the refusal stands; a missing audit line must not undo it
            log.exception("audit_failed", audit_event="policy_refused")
        await self.client.send(tell, self._text("refused", user.language_code), topic=topic)

    async def _change(self, user: User, place: int, name: str, value: str | None) -> None:
        """Change one field, audited as this admin; tell them what it was and is now."""
        actor = str(self.client.member_for(user).key)
        old, new = await self.policies.change(self._scope(place), name, value, actor=actor)
        locale = user.language_code
        empty = self._text("empty", locale)
        line = self._text(
            "changed",
            locale,
            group=await self._title(place),
            field=self._text(f"field.{name}", locale),
            old=self._shown(place, name, old) or empty,
            new=self._shown(place, name, new) or empty,
        )
        await self.client.send(user.id, line)

    async def _panel(
        self, place: int, title: str | None, locale: str | None
    ) -> tuple[str, InlineKeyboardMarkup]:
        policy = await self._policy(place)
        empty = self._text("empty", locale)

        def button(name: str, op: str) -> list[InlineKeyboardButton]:
            value = self._shown(place, name, policy.written(name)) or empty
            label = f"{self._text(f'field.{name}', locale)}: {value}"
            if len(label) > 60:
                label = label[:59] + "…"
            data = f"{CALLBACK_PREFIX}{op}:{place}:{name}"
            return [InlineKeyboardButton(label, callback_data=data)]

        rows = [button(name, "c") for name in self.choices]
        rows += [button(name, "a") for name in ASKED]
        text = self._text("title", locale, group=title or str(place))
        return text, InlineKeyboardMarkup(rows)

    async def _send(self, chat_id: int, text: str, markup: InlineKeyboardMarkup) -> bool:
        """False if the admin never started the private chat (or blocked the bot)."""
        return await self.client.reached(self.bot.send_message(chat_id, text, reply_markup=markup))

    async def _policy(self, place: int) -> CommunityPolicy:
        return await self.policies.policy_for(self._scope(place))

    async def _title(self, place: int) -> str:
        for group in await self.directory.groups():
            if group.chat_id == str(place):
                return group.title or group.chat_id
        return str(place)

    async def _first(self, user: User, update: Update) -> bool:
        return await self.app.engine.first_delivery(
            self.client.member_for(user).key, str(update.update_id)
        )

    def _shown(self, place: int, name: str, value: str) -> str:
        """A value as a group's admin sees it: the operator's own log chat is not theirs to
        know, so the default log chat shows as none."""
        default = self.policies.default_for(self._scope(place))
        if name == "log_chat" and value == default.written(name):
            return ""
        return value

    def _scope(self, place: int) -> str:
        return community_scope(PLATFORM, str(place))

    def _text(self, key: str, locale: str | None, **params: Any) -> str:
        return self.client.text(f"settings.{key}", locale, **params)


def _question(user_id: int, message_id: int) -> str:
    """The stash name of a question the bot asked this admin (its message id)."""
    return f"settings_question:{user_id}:{message_id}"
