"""The Bot API client: the ``Bot`` factory, the call wrappers that turn Telegram's refusals into
one log line or a problem word, and the few Bot API moves that more than one module makes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import structlog
from telegram import (
    Bot,
    ChatMember,
    ChatPermissions,
    ForceReply,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    User,
)
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from adapters.telegram.http import json_request
from bot.identity import Member, MemberKey
from bot.settings import ConfigError, Settings
from bot.texts import Catalogue

log = structlog.get_logger("verifybot.telegram")

PLATFORM = "telegram"
#: The catalogue's variant for Telegram's texts (``telegram.*`` keys, HTML-free).
VARIANT = "telegram"

T = TypeVar("T")
Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | ForceReply

_RIGHTS = re.compile(r"not enough rights|chat_admin_required|right_forbidden|need administrator")
_PRESENT = {ChatMember.OWNER, ChatMember.ADMINISTRATOR, ChatMember.MEMBER}
#: Keyboards whose JSON ``TelegramClient.say`` keeps: the chat's few, many times over.
_WIRES_KEPT = 256


# -- the Bot ----------------------------------------------------------------------------------


def file_url_for(base_url: str) -> str:
    """The file endpoint that goes with a Bot API base URL (``…/bot`` -> ``…/file/bot``)."""
    root, _, last = base_url.rstrip("/").rpartition("/")
    return f"{root}/file/{last}" if last == "bot" else base_url.rstrip("/") + "/file/bot"


@asynccontextmanager
async def connected_bot(settings: Settings) -> AsyncIterator[Bot]:
    """A PTB ``Bot`` outside the running application (doctor, the CLI), initialised: a
    refused token or an unreachable API is a ``ConfigError`` in one line."""
    token = settings.telegram_bot_token
    if token is None:
        raise ConfigError("TELEGRAM_BOT_TOKEN is not set: put the bot's token in .env")
    base_url = settings.telegram_api_base_url
    bot = Bot(token.get_secret_value(), base_url=base_url, base_file_url=file_url_for(base_url))
    try:
        await bot.initialize()
    except InvalidToken:
        raise ConfigError(
            "TELEGRAM_BOT_TOKEN was refused by Telegram: check it with @BotFather"
        ) from None
    except TelegramError as exc:
        raise ConfigError(f"cannot reach {base_url}: {exc.message}") from None
    try:
        yield bot
    finally:
        await bot.shutdown()


async def check_connection(settings: Settings) -> str:
    """Who the token belongs to, asked of the Bot API (``verifybot doctor``)."""
    async with connected_bot(settings) as bot:
        try:
            webhook = await bot.get_webhook_info()
        except TelegramError as exc:
            raise ConfigError(
                f"cannot reach {settings.telegram_api_base_url}: {exc.message}"
            ) from None
    where = f"webhook {webhook.url}" if webhook.url else "no webhook (long polling)"
    return f"@{bot.username} (id {bot.id}), {where}"


def member_for(user: User, bot_id: int) -> Member:
    return Member(
        MemberKey(PLATFORM, str(bot_id), str(user.id)),
        display_name=user.full_name,
        locale=user.language_code,
        handle=user.username,
    )


def chat_target(chat: str) -> int | str:
    """A chat as the Bot API takes it: a numeric id, or an ``@channelusername``."""
    return int(chat) if re.fullmatch(r"-?\d+", chat) else chat


# -- refusals ---------------------------------------------------------------------------------


def problem_of(error: TelegramError, *, private: bool = False) -> str:
    """The ``bot.moderation.KNOWN_PROBLEMS`` word for a Bot API error, else its message."""
    reason = error.message.lower()
    if isinstance(error, RetryAfter):
        return "rate_limited"
    if isinstance(error, NetworkError) and not isinstance(error, BadRequest):
        return "not_connected"  # includes TimedOut
    if isinstance(error, Forbidden):
        # In a group, Forbidden means the bot is not there; in private, the member blocked it
        # or never started it.
        return "cannot_message" if private or "initiate" in reason else "chat_not_found"
    if _RIGHTS.search(reason):
        return "not_enough_rights"
    if "chat not found" in reason:
        return "chat_not_found"
    return error.message


def log_refusal(exc: TelegramError) -> None:
    if isinstance(exc, Forbidden):
        # Blocked by the member, or removed from the group: nothing to retry.
        log.info("telegram_forbidden", reason=exc.message)
    elif isinstance(exc, RetryAfter):
        log.warning("telegram_rate_limited", retry_after=str(exc.retry_after))
    elif isinstance(exc, BadRequest):
        log.warning("telegram_bad_request", reason=exc.message)
    else:
        log.warning("telegram_error", error=type(exc).__name__, reason=exc.message)


# -- moves made in more than one place --------------------------------------------------------


def in_chat(member: ChatMember) -> bool:
    """Whether the member is in the chat now (a restricted member may have left it)."""
    if member.status == ChatMember.RESTRICTED:
        return bool(getattr(member, "is_member", False))
    return member.status in _PRESENT


def lift_restriction(bot: Bot, chat: int, user_id: int) -> Awaitable[bool]:
    return bot.restrict_chat_member(
        chat, user_id, ChatPermissions.all_permissions(), use_independent_chat_permissions=True
    )


async def remove(bot: Bot, chat: int, user_id: int) -> bool:
    """A ban then an unban: removes the member but lets them join again. Raises what
    Telegram refuses."""
    await bot.ban_chat_member(chat, user_id)
    return await bot.unban_chat_member(chat, user_id, only_if_banned=True)


class TelegramClient:
    """The running bot's ``Bot`` with the catalogue: what the chat, the gate and the desk
    share to speak to Telegram."""

    def __init__(self, bot: Bot, catalogue: Catalogue) -> None:
        self.bot = bot
        self.catalogue = catalogue
        #: id -> (the keyboard, kept alive so that its id is not reused; its JSON)
        self._wires: dict[int, tuple[Markup, dict[str, Any]]] = {}

    def member_for(self, user: User) -> Member:
        return member_for(user, self.bot.id)

    def text(self, key: str, locale: str | None, **params: Any) -> str:
        return self.catalogue.text(f"{VARIANT}.{key}", locale, **params)

    async def call(self, request: Awaitable[T]) -> T | None:
        """One Bot API call; a refusal is one log line and None, never a crash."""
        try:
            return await request
        except TelegramError as exc:
            log_refusal(exc)
        return None

    async def reached(self, request: Awaitable[Any]) -> bool:
        """One call that writes to a chat: False only if Telegram will not let us write
        there (a private chat never started, a blocked bot); any other refusal is logged."""
        try:
            await request
        except Forbidden as error:
            log_refusal(error)
            return False
        except TelegramError as error:
            log_refusal(error)
        return True

    async def send(
        self,
        chat_id: int | str,
        text: str,
        markup: Markup | None = None,
        *,
        topic: int | None = None,
    ) -> Message | None:
        """Send a text; ``topic`` is a forum topic's ``message_thread_id`` (None: the chat
        itself, which in a forum is its General topic)."""
        return await self.call(
            self.bot.send_message(chat_id, text, reply_markup=markup, message_thread_id=topic)
        )

    async def say(
        self,
        chat_id: int | str,
        text: str,
        markup: Markup | None = None,
        *,
        topic: int | None = None,
    ) -> bool:
        """``send`` for a message nothing refers to later (a conversation's replies): the
        same ``sendMessage`` through the same limiter (pace, 429 retries) and PTB's own error
        mapping (``BaseRequest.post``), without ``Bot._post``'s per-field conversion or a
        ``Message`` built from the answer: together about a third of a send's CPU
        (bench/README.md). False when Telegram refused it (logged)."""
        data: dict[str, Any] = {"chat_id": chat_id, "text": text}
        if markup is not None:
            data["reply_markup"] = self._wire(markup)
        if topic is not None:
            data["message_thread_id"] = topic
        return await self.call(self._post("sendMessage", data)) is not None

    def _wire(self, markup: Markup) -> dict[str, Any]:
        """A keyboard as the Bot API takes it, built once per keyboard object: ``to_dict``
        walks every button (~35 µs for two), and a conversation sends the same few keyboards
        (``TelegramChat.markup_for`` keeps them; PTB's objects are frozen). Only read after."""
        kept = self._wires.get(id(markup))
        if kept is None or kept[0] is not markup:
            if len(self._wires) >= _WIRES_KEPT:  # keyboards built per call: keep no history
                self._wires.clear()
            kept = self._wires[id(markup)] = (markup, markup.to_dict())
        return kept[1]

    async def _post(self, method: str, data: dict[str, Any]) -> object:
        request = self.bot.request
        url = f"{self.bot.base_url}/{method}"
        limiter = getattr(self.bot, "rate_limiter", None)  # an ExtBot's, in the running bot
        body = json_request(data)
        if limiter is None:
            return await request.post(url, body)
        return await limiter.process_request(request.post, (url, body), {}, method, data, None)


def topic_of(message: Message | None) -> int | None:
    """The forum topic a message was posted in, to answer there; None outside topics (in a
    forum's General topic, or in a plain group, where a thread id names a reply chain)."""
    if message is None or not message.is_topic_message:
        return None
    return message.message_thread_id
