"""The moderators' desk on Telegram: /grant, /revoke, /roles, /whois, /verified, /stats, /export,
/unlink and /fraud.

Telegram says who moderates: a group's administrators, asked live with ``getChatMember`` and
remembered for ``MODERATOR_CACHE_SECONDS``; in a private chat, an administrator of any chat the
bot looks after (the log chat and the roles' chats). ``TELEGRAM_ADMIN_IDS`` are admins. What
each rank may do, the refusals and the audit are the core's ``Moderation``; this module only
reads commands and shows ``Result``s. Moderator commands are answered where they were given;
admin commands in the admin's private chat, as they list members and (masked) phone numbers.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from telegram import (
    Chat,
    ChatMember,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    Update,
    User,
)
from telegram.constants import ChatType
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, ContextTypes, filters

from adapters._commands import command_word
from adapters._runtime import TtlCache
from adapters.telegram.client import (
    PLATFORM,
    VARIANT,
    TelegramClient,
    chat_target,
    topic_of,
)
from adapters.telegram.roles import TelegramRoles, role_for_link
from bot.desk_commands import ADMIN_COMMANDS, COMMANDS, Request, answer
from bot.identity import MemberKey
from bot.moderation import Actor, Moderation, Rank, Result, page_number

if TYPE_CHECKING:
    from bot.app import App

log = structlog.get_logger("verifybot.telegram")

#: Callback data of the desk's buttons; the member's own buttons use "vb:".
CALLBACK_PREFIX = "va:"
DESK_COMMANDS = frozenset(COMMANDS)
#: A member named in a command: @username or a numeric user id.
_MEMBER_REF = re.compile(r"^(@[A-Za-z][A-Za-z0-9_]{2,31}|\d{1,20})$")
_CACHE_LIMIT = 4096
_CAPTION_LIMIT = 1024


def moderated_places(app: App) -> tuple[int | str, ...]:
    """The chats whose administrators moderate from a private chat."""
    places: list[int | str] = []
    log_chat = app.settings.telegram_log_chat_id
    if log_chat:
        places.append(chat_target(log_chat))
    for role in app.roles.roles.values():
        places.extend(role.telegram.chats)
    return tuple(dict.fromkeys(places))


def actor_name(user: User) -> str:
    return user.full_name + (f" (@{user.username})" if user.username else "")


class TelegramDesk:
    """Commands and buttons for moderators and admins."""

    def __init__(
        self, client: TelegramClient, app: App, moderation: Moderation, roles: TelegramRoles
    ) -> None:
        self.client = client
        self.bot = client.bot
        self.app = app
        self.moderation = moderation
        self.roles = roles
        self.places = moderated_places(app)
        #: Telegram's word on who administers which chat, for MODERATOR_CACHE_SECONDS.
        self._moderators: TtlCache[tuple[int | str, int], bool] = TtlCache(
            app.settings.moderator_cache_seconds, limit=_CACHE_LIMIT
        )

    @property
    def scope(self) -> str:
        return str(self.bot.id)

    def handlers(self) -> list[BaseHandler[Update, Any, Any]]:
        return [
            CommandHandler(
                sorted(DESK_COMMANDS),
                self.on_command,
                filters=filters.UpdateType.MESSAGE,  # an edited command is not a second one
            ),
            CallbackQueryHandler(self.on_button, pattern=f"^{CALLBACK_PREFIX}"),
        ]

    # -- commands ---------------------------------------------------------------------------

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user, chat = update.effective_message, update.effective_user, update.effective_chat
        if message is None or user is None or chat is None or user.is_bot:
            return
        key = self.client.member_for(user).key
        if not await self.app.engine.first_delivery(key, str(update.update_id)):
            return
        word = command_word(message.text, DESK_COMMANDS, bot_username=self.bot.username)
        if word is None:  # a lookalike of a desk command: say which commands there are
            help_text = self.client.text("admin.help", user.language_code)
            await self.client.send(chat.id, help_text, topic=topic_of(message))
            return
        args = list(context.args or [])
        if word in ADMIN_COMMANDS:
            await self._administer(word, message, user, chat, args)
        else:
            await self._moderate(word, message, user, chat, args)

    async def _moderate(
        self, word: str, message: Message, user: User, chat: Chat, args: list[str]
    ) -> None:
        locale, topic = user.language_code, topic_of(message)
        command, replied = COMMANDS[word], _replied_member(message)
        if not command.member_needed and not args and replied is None:  # /roles: the list
            result = await answer(self.moderation, word, self._ask(user))
            await self._show(chat.id, result, locale, topic=topic)
            return
        ref, rest = _subject(args, replied, takes_role=command.takes_role)
        if ref is None or (command.takes_role and not rest):
            usage = self.client.text(f"admin.usage_{word}", locale)
            await self.client.send(chat.id, usage, topic=topic)
            return
        actor = await self._moderator(user, chat)
        subject = await self._resolve(ref, actor, Rank.MODERATOR, chat.id, locale, topic)
        if subject is None:
            return
        role = rest[0] if command.takes_role else ""
        request = self._ask(user, actor=actor, subject=subject, role=role)
        await self._show(chat.id, await answer(self.moderation, word, request), locale, topic=topic)

    async def _administer(
        self, word: str, message: Message, user: User, chat: Chat, args: list[str]
    ) -> None:
        locale, topic = user.language_code, topic_of(message)
        actor = self._admin(user)
        subject = None
        if COMMANDS[word].member_needed:
            ref, _ = _subject(args, _replied_member(message), takes_role=False)
            if ref is None:
                usage = self.client.text(f"admin.usage_{word}", locale)
                await self.client.send(chat.id, usage, topic=topic)
                return
            subject = await self._resolve(ref, actor, Rank.ADMIN, chat.id, locale, topic)
            if subject is None:
                return
        page = page_number(args[0] if args else None)
        request = self._ask(user, actor=actor, subject=subject, page=page, words=tuple(args))
        result = await answer(self.moderation, word, request)
        if actor.rank < Rank.ADMIN or chat.type == ChatType.PRIVATE:
            await self._show(chat.id, result, locale, topic=topic)  # said where it was asked
            return
        reached = await self._show(user.id, result, locale)
        note = "answered_in_private" if reached else "start_private"
        link = f"https://t.me/{self.bot.username}"
        reply = self.client.text(f"admin.{note}", locale, link=link)
        await self.client.send(chat.id, reply, topic=topic)

    def _ask(
        self,
        user: User,
        *,
        actor: Actor | None = None,
        subject: MemberKey | None = None,
        role: str = "",
        page: int = 1,
        words: tuple[str, ...] = (),
    ) -> Request:
        return Request(
            actor or self._admin(user),
            subject,
            role,
            page,
            platform=PLATFORM,
            scope=self.scope,
            words=words,
        )

    # -- buttons ----------------------------------------------------------------------------

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        await self.client.call(query.answer())  # every query, or the client keeps spinning
        kind, _, value = (query.data or "").removeprefix(CALLBACK_PREFIX).partition(":")
        actor = self._admin(query.from_user)
        locale = query.from_user.language_code
        if kind == "page" and value.isdigit():
            result = await self.moderation.verified(
                actor, platform=PLATFORM, scope=self.scope, page=page_number(value)
            )
        elif kind == "unlink" and value:
            result = await self.moderation.confirm_unlink(actor, value)
        elif kind == "keep" and value and actor.rank >= Rank.ADMIN:
            result = await self.moderation.cancel_unlink(value)
        else:
            return
        if isinstance(query.message, Message):
            await self.client.call(
                query.message.edit_text(
                    self._text(result, locale), reply_markup=self._markup(result, locale)
                )
            )

    # -- members joining by a role's link ---------------------------------------------------

    async def joined_by_link(self, change: ChatMemberUpdated) -> None:
        """A member who joined with a role's invite link gets the role's title there."""
        link, user = change.invite_link, change.new_chat_member.user
        if link is None or link.creator.id != self.bot.id:
            return
        role = role_for_link(link.name, self.app.roles)
        if role is None or not role.telegram.title or change.chat.id not in role.telegram.chats:
            return
        held = await self.app.engine.verification(self.client.member_for(user).key)
        if held is None or role.name not in held.roles:
            return  # revoked since the link was sent
        step = await self.roles.set_title(change.chat.id, user.id, role.telegram.title)
        log.info("role_title_on_join", role=role.name, chat=change.chat.id, ok=step.ok)

    # -- who is asking ----------------------------------------------------------------------

    def _admin(self, user: User) -> Actor:
        key = self.client.member_for(user).key
        rank = self.moderation.rank_of(key, platform_moderator=False)
        return Actor(key, rank, actor_name(user))

    async def _moderator(self, user: User, chat: Chat) -> Actor:
        places = self.places if chat.type == ChatType.PRIVATE else (chat.id,)
        return await self.moderator_of(user, places)

    async def moderator_of(self, user: User, places: Sequence[int | str]) -> Actor:
        """The user, as a moderator if they administer any of ``places`` (asked live, then
        cached for MODERATOR_CACHE_SECONDS) or as the settings rank them."""
        actor = self._admin(user)
        if actor.rank >= Rank.MODERATOR:
            return actor
        moderates = await self.administers(user.id, places)
        rank = self.moderation.rank_of(actor.key, platform_moderator=moderates)
        return Actor(actor.key, rank, actor.name)

    async def administers(self, user_id: int, places: Sequence[int | str]) -> bool:
        """Whether the user is an administrator of any of ``places``, asked live."""
        for place in places:
            answer = self._moderators.get((place, user_id))
            if answer is None:
                member = await self.client.call(self.bot.get_chat_member(place, user_id))
                if member is None:
                    continue  # not known there, or Telegram did not answer: not cached
                answer = member.status in (ChatMember.OWNER, ChatMember.ADMINISTRATOR)
                self._moderators.put((place, user_id), answer)
            if answer:
                return True
        return False

    async def _resolve(
        self,
        ref: str | User,
        actor: Actor,
        needed: Rank,
        chat_id: int,
        locale: str | None,
        topic: int | None = None,
    ) -> MemberKey | None:
        """The member a command names; None once the asker was told the @username is unknown."""
        if isinstance(ref, User):
            return self.client.member_for(ref).key
        subject = await self.moderation.resolve(PLATFORM, self.scope, ref)
        if subject is not None:
            return subject
        if actor.rank < needed:
            # Whether a @username verified is for moderators to know: the core refuses this.
            return MemberKey(PLATFORM, self.scope, ref)
        unknown = self.client.text("admin.unknown_handle", locale, handle=ref)
        await self.client.send(chat_id, unknown, topic=topic)
        return None

    # -- answers ----------------------------------------------------------------------------

    def _text(self, result: Result, locale: str | None) -> str:
        return "\n".join(
            self.client.catalogue.render(reply, locale, variant=VARIANT) for reply in result.replies
        )

    def _markup(self, result: Result, locale: str | None) -> InlineKeyboardMarkup | None:
        def button(key: str, data: str) -> InlineKeyboardButton:
            return InlineKeyboardButton(
                self.client.text(f"admin.{key}", locale), callback_data=CALLBACK_PREFIX + data
            )

        row = []
        if result.paging is not None:
            page, pages = result.paging.page, result.paging.pages
            if page > 1:
                row.append(button("previous", f"page:{page - 1}"))
            if page < pages:
                row.append(button("next", f"page:{page + 1}"))
        if result.confirm is not None:
            row.append(button("confirm_unlink", f"unlink:{result.confirm}"))
            row.append(button("cancel_unlink", f"keep:{result.confirm}"))
        return InlineKeyboardMarkup([row]) if row else None

    async def _show(
        self, chat_id: int, result: Result, locale: str | None, *, topic: int | None = None
    ) -> bool:
        """Send the result (in a forum, to ``topic``); False if Telegram refused to let us
        write to that chat."""
        text = self._text(result, locale)
        document = result.document
        if document is not None:
            upload = InputFile(document.content, filename=document.filename)
            request: Awaitable[Any] = self.bot.send_document(
                chat_id, upload, caption=text[:_CAPTION_LIMIT], message_thread_id=topic
            )
        else:
            request = self.bot.send_message(
                chat_id, text, reply_markup=self._markup(result, locale), message_thread_id=topic
            )
        return await self.client.reached(request)


def _replied_member(message: Message) -> User | None:
    """The author of the message this command replies to, if that names a member."""
    reply = message.reply_to_message
    if reply is None or reply.forum_topic_created is not None:
        return None  # in a forum topic every message "replies" to the topic's first one
    author = reply.from_user
    return author if author is not None and not author.is_bot else None


def _subject(
    args: list[str], replied: User | None, *, takes_role: bool
) -> tuple[str | User | None, list[str]]:
    """Who a command is about, and the words after them.

    A member named in the command wins over the message replied to, except for
    ``/grant <role>`` as a reply, whose one word is the role.
    """
    if args and _MEMBER_REF.match(args[0]) and not (takes_role and len(args) == 1 and replied):
        return args[0], args[1:]
    if replied is not None:
        return replied, args
    return None, args
