"""Telegram: members verify in a private chat with the bot; groups can be gated until they do.

A thin shell over the core. Updates become ``MemberEvent``s for ``engine.handle``; replies
become Bot API calls; who may enter a group is the core ``Gatekeeper``'s call. Conversation
state lives in the core (Redis), never in PTB, so several workers may share the load.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllPrivateChats,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
    User,
)
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    ChatJoinRequestHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from adapters import telegram_admin
from adapters._runtime import until_stopped
from adapters.telegram_admin import ModeratorDesk
from adapters.telegram_commands import command_word
from adapters.telegram_gate import GroupGate
from adapters.telegram_http import AiohttpRequest
from adapters.telegram_roles import TelegramRoles, mod_log
from bot.engine import Outcome
from bot.flow import (
    ACTION_EVENTS,
    Action,
    Cancel,
    ChangeNumber,
    ContactShared,
    Help,
    MemberEvent,
    Resend,
    Start,
    State,
    Status,
    Text,
)
from bot.identity import Member, MemberKey
from bot.settings import ConfigError, Settings

if TYPE_CHECKING:  # the wiring imports every port; an adapter needs only its type
    from bot.bootstrap import App

log = structlog.get_logger("verifybot.telegram")

PLATFORM = "telegram"
VARIANT = "telegram"
CALLBACK_PREFIX = "vb:"
#: The update types the bot asks for; chat_member is only sent when asked for by name.
ALLOWED_UPDATES = [
    "message",
    "callback_query",
    "chat_member",
    "my_chat_member",
    "chat_join_request",
]
#: Updates handled at once (at least twice one group's share, so that a raid in one group
#: leaves room for everyone else), and updates waiting their turn before PTB holds more.
CONCURRENT_UPDATES = 64
QUEUED_UPDATES = 1024

COMMAND_EVENTS: dict[str, MemberEvent] = {
    "status": Status(),
    "cancel": Cancel(),
    "help": Help(),
    "resend": Resend(),
    "change": ChangeNumber(),
}
#: Commands shown in the menu: the member's in private chats, the admins' in groups.
MEMBER_COMMANDS = ("verify", "status", "cancel", "help")
ADMIN_COMMANDS = (
    ("verify", "group_verify"),
    *((name, name) for name in telegram_admin.MODERATOR_COMMANDS + telegram_admin.ADMIN_COMMANDS),
)

AnyApplication = Application[Any, Any, Any, Any, Any, Any]
Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove


def check_settings(settings: Settings, *, webhook: bool) -> None:
    """Refuse to start, in one line, when Telegram cannot work with these settings."""
    if settings.telegram_bot_token is None:
        raise ConfigError(
            "TELEGRAM_BOT_TOKEN is not set: create a bot with @BotFather and put its token "
            "in .env (see config/.env.example)"
        )
    if webhook or settings.telegram_webhook_url:
        if not settings.telegram_webhook_url:
            raise ConfigError(
                "--webhook needs TELEGRAM_WEBHOOK_URL, the public https:// URL Telegram posts to"
            )
        if settings.telegram_webhook_secret is None:
            raise ConfigError(
                "webhook mode needs TELEGRAM_WEBHOOK_SECRET, so that only Telegram can post "
                "updates (1-256 of A-Z a-z 0-9 _ -)"
            )


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


def file_url_for(base_url: str) -> str:
    """The file endpoint that goes with a Bot API base URL (``…/bot`` -> ``…/file/bot``)."""
    root, _, last = base_url.rstrip("/").rpartition("/")
    return f"{root}/file/{last}" if last == "bot" else base_url.rstrip("/") + "/file/bot"


def build_application(app: App) -> AnyApplication:
    """The PTB application with every handler wired to the core; ``serve`` starts it."""
    settings = app.settings
    assert settings.telegram_bot_token is not None  # noqa: S101 - check_settings ran
    application: AnyApplication = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(settings.telegram_api_base_url)
        .base_file_url(file_url_for(settings.telegram_api_base_url))
        .request(AiohttpRequest())
        .concurrent_updates(InOrderPerMember(per_chat=settings.telegram_group_concurrency))
        # Paces sends (30/s overall, 20/min per group) and waits out a 429 twice.
        .rate_limiter(PaceMessages(max_retries=2))
        .build()
    )
    chat = TelegramChat(app, application)
    chat.register()
    return application


async def serve(app: App, *, webhook: bool = False) -> None:
    """Run until SIGINT or SIGTERM: long polling, or a webhook server if asked."""
    settings = app.settings
    application = build_application(app)
    chat: TelegramChat = application.bot_data["chat"]
    async with application:
        await chat.register_commands()
        await application.start()
        sweeper = chat.gate.start_sweeper()
        updater = application.updater
        assert updater is not None  # noqa: S101 - built with the default updater
        if webhook or settings.telegram_webhook_url:
            url = settings.telegram_webhook_url or ""
            secret = settings.telegram_webhook_secret
            await updater.start_webhook(
                listen=settings.listen_host,
                port=settings.port,
                url_path=urlsplit(url).path.lstrip("/"),
                webhook_url=url,
                secret_token=secret.get_secret_value() if secret else None,
                allowed_updates=ALLOWED_UPDATES,
            )
            log.info("telegram_webhook", url=url, port=settings.port)
        else:
            await updater.start_polling(allowed_updates=ALLOWED_UPDATES)
            log.info("telegram_polling", bot=application.bot.username)
        try:
            await until_stopped()
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with suppress(asyncio.CancelledError):
                    await sweeper
            await updater.stop()
            await application.stop()


class PaceMessages(AIORateLimiter):
    """AIORateLimiter, with its per-group pace (20/min) kept for messages only.

    PTB counts every call that names a group, so a wave of 50 joins would queue 50
    restrictions behind the group's message budget and leave newcomers free to post for
    minutes. Admin actions and deletions are not messages: they skip both paces (Telegram's
    30/s is for messages too) and keep the 429 retries.
    """

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        if not endpoint.startswith(("send", "edit", "copy", "forward")):
            data = {name: value for name, value in data.items() if name != "chat_id"}
        return await super().process_request(
            callback, args, kwargs, endpoint, data, rate_limit_args
        )


class InOrderPerMember(BaseUpdateProcessor):
    """A member's updates in order; different members' at once, up to ``per_chat`` per chat.

    The core keeps a member's conversation consistent whatever the order, but a number typed
    right after /start must be read after it. Nothing else needs an order: the gate's Redis
    scripts make each member's hold atomic, so a raid's joins, leaves and service messages
    are handled side by side, and each newcomer is muted within a round trip or two instead
    of waiting behind everyone who joined before them. Waiting for the member's turn, then a
    slot of their chat, happens before taking one of the ``running`` slots, so one chatty
    member or one besieged group cannot starve everyone else.
    """

    def __init__(self, *, per_chat: int, running: int = CONCURRENT_UPDATES) -> None:
        super().__init__(QUEUED_UPDATES)
        self._per_chat = per_chat
        self._running = asyncio.Semaphore(max(running, 2 * per_chat))
        self._turns: dict[tuple[int, int], asyncio.Lock] = {}
        self._slots: dict[int, asyncio.Semaphore] = {}
        self._waiting: Counter[tuple[int, int]] = Counter()
        self._in_chat: Counter[int] = Counter()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = _ordering_key(update)
        if key is None:
            async with self._running:
                await coroutine
            return
        chat = key[0]
        turn = self._turns.setdefault(key, asyncio.Lock())
        slots = self._slots.setdefault(chat, asyncio.Semaphore(self._per_chat))
        self._waiting[key] += 1
        self._in_chat[chat] += 1
        try:
            async with turn, slots, self._running:
                await coroutine
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key], self._turns[key]
            self._in_chat[chat] -= 1
            if not self._in_chat[chat]:
                del self._in_chat[chat], self._slots[chat]

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


def _ordering_key(update: object) -> tuple[int, int] | None:
    """(chat, member) for an update: the member a change of membership is about, otherwise
    whoever sent it. In a private chat both are the member."""
    if not isinstance(update, Update) or update.effective_chat is None:
        return None
    change = update.chat_member or update.my_chat_member
    user = change.new_chat_member.user if change is not None else update.effective_user
    return update.effective_chat.id, user.id if user is not None else 0


def member_for(user: User, bot_id: int) -> Member:
    return Member(
        MemberKey(PLATFORM, str(bot_id), str(user.id)),
        display_name=user.full_name,
        locale=user.language_code,
        handle=user.username,
    )


class TelegramChat:
    """The private chat: member input in, core replies out."""

    def __init__(self, app: App, application: AnyApplication) -> None:
        self.app = app
        self.application = application
        self.catalogue = app.catalogue
        self.gate = GroupGate(self, app)
        bot = application.bot
        self.roles = TelegramRoles(bot, app.catalogue, admit=self.gate.admit)
        self.moderation = app.moderation(
            {PLATFORM: self.roles}, mod_log(self.roles, app.settings, app.catalogue)
        )
        self.desk = ModeratorDesk(self, app, self.moderation, self.roles)
        app.follow_verifications(PLATFORM, self.moderation, self.gate)
        application.bot_data["chat"] = self

    @property
    def bot(self) -> Any:
        return self.application.bot

    def member_for(self, user: User) -> Member:
        return member_for(user, self.bot.id)

    def register(self) -> None:
        private = filters.ChatType.PRIVATE
        add = self.application.add_handler
        add(CommandHandler(["start", "verify"], self.on_start, filters=private))
        add(CommandHandler(list(COMMAND_EVENTS), self.on_command, filters=private))
        for handler in self.desk.handlers():  # before the catch-alls below
            add(handler)
        add(MessageHandler(private & filters.CONTACT, self.on_contact))
        add(MessageHandler(private & filters.TEXT & ~filters.COMMAND, self.on_text))
        add(MessageHandler(private & filters.COMMAND, self.on_unknown_command))
        add(CallbackQueryHandler(self.on_button))  # every query, even a stale one, is answered
        add(ChatMemberHandler(self.gate.on_chat_member, ChatMemberHandler.CHAT_MEMBER))
        add(ChatMemberHandler(self.on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER))
        add(ChatJoinRequestHandler(self.gate.on_join_request))
        add(CommandHandler("verify", self.gate.on_group_verify, filters=filters.ChatType.GROUPS))
        add(
            MessageHandler(
                filters.ChatType.GROUPS
                & (filters.StatusUpdate.NEW_CHAT_MEMBERS | filters.StatusUpdate.LEFT_CHAT_MEMBER),
                self.gate.on_service_message,
            )
        )
        self.application.add_error_handler(self.on_error)

    async def register_commands(self) -> None:
        """The command menus, in every language the catalogue has."""
        for language in sorted(self.catalogue.languages):
            code = "" if language == self.catalogue.default else language
            if len(code) not in (0, 2):
                continue  # Telegram takes two-letter ISO 639-1 codes only
            member = [
                BotCommand(name, self.text(f"command.{name}", language)) for name in MEMBER_COMMANDS
            ]
            admin = [
                BotCommand(name, self.text(f"command.{key}", language))
                for name, key in ADMIN_COMMANDS
            ]
            await self.call(
                self.bot.set_my_commands(
                    member, scope=BotCommandScopeAllPrivateChats(), language_code=code or None
                )
            )
            await self.call(
                self.bot.set_my_commands(
                    admin, scope=BotCommandScopeAllChatAdministrators(), language_code=code or None
                )
            )

    # -- member input -----------------------------------------------------------------------

    async def on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        payload = context.args[0] if context.args else ""
        await self.converse(update, Start(origin=self.gate.origin_from_payload(payload)))

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        text = message.text if message else None
        word = command_word(text, COMMAND_EVENTS, bot_username=self.bot.username)
        await self.converse(update, COMMAND_EVENTS[word] if word else Help())

    async def on_unknown_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.converse(update, Help())

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message and message.text:
            await self.converse(update, Text(message.text))

    async def on_contact(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or message.contact is None or user is None:
            return
        contact = message.contact
        # A contact without a user id could be anyone's: only the member's own counts.
        is_own = contact.user_id is not None and contact.user_id == user.id
        await self.converse(update, ContactShared(contact.phone_number, is_own=is_own))

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        # Every callback is answered, or the member's client shows a spinner for a while.
        await self.call(query.answer())
        action = _action_of(query)
        if action is None or action not in ACTION_EVENTS:
            return
        await self._retire_buttons(query)
        await self.converse(update, ACTION_EVENTS[action])

    async def on_my_chat_member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        change = update.my_chat_member
        if change is None or change.chat.type != ChatType.PRIVATE:
            return
        if change.new_chat_member.status == "kicked":
            log.info("member_blocked_bot", user=change.from_user.id)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        # Never the update itself: it may hold a phone number or a code.
        update_id = update.update_id if isinstance(update, Update) else None
        error = context.error
        log.error(
            "telegram_handler_failed",
            update_id=update_id,
            error=type(error).__name__,
            exc_info=error,
        )

    # -- the conversation -----------------------------------------------------------------------

    async def converse(self, update: Update, event: MemberEvent) -> None:
        user, chat = update.effective_user, update.effective_chat
        if user is None or chat is None or user.is_bot:
            return
        member = self.member_for(user)
        await self.app.engine.handle(
            member,
            event,
            delivery_id=str(update.update_id),
            render=partial(self.show, chat.id, locale=member.locale),
        )

    async def show(self, chat_id: int | str, outcome: Outcome, *, locale: str | None) -> None:
        """Send the replies; a reply keyboard shown for the phone goes once it is given."""
        close_keyboard = (
            outcome.previous is State.AWAIT_PHONE and outcome.state is not State.AWAIT_PHONE
        )
        for reply in outcome.replies:
            markup: Markup | None = self.markup_for(reply.actions, locale)
            if close_keyboard:
                close_keyboard = False
                if markup is None:
                    markup = ReplyKeyboardRemove()
                else:
                    # One message carries one keyboard: close the old one on its own line.
                    closing = self.text("keyboard_closed", locale)
                    await self.send(chat_id, closing, ReplyKeyboardRemove())
            text = self.catalogue.render(reply, locale, variant=VARIANT)
            await self.send(chat_id, text, markup)

    def markup_for(
        self, actions: tuple[Action, ...], locale: str | None
    ) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | None:
        def label(action: Action) -> str:
            return self.catalogue.action_label(action, locale, variant=VARIANT)

        if Action.SHARE_CONTACT in actions:
            button = KeyboardButton(label(Action.SHARE_CONTACT), request_contact=True)
            return ReplyKeyboardMarkup(
                [[button]], resize_keyboard=True, one_time_keyboard=True, is_persistent=False
            )
        buttons = [
            InlineKeyboardButton(label(action), callback_data=f"{CALLBACK_PREFIX}{action.value}")
            for action in actions
            if action in ACTION_EVENTS
        ]
        return InlineKeyboardMarkup([buttons]) if buttons else None

    async def send(
        self,
        chat_id: int | str,
        text: str,
        markup: Markup | None = None,
    ) -> Message | None:
        message: Message | None = await self.call(
            self.bot.send_message(chat_id, text, reply_markup=markup)
        )
        return message

    async def call(self, request: Any) -> Any:
        """One Bot API call; a refusal is one log line and None, never a crash."""
        try:
            return await request
        except TelegramError as exc:
            self.log_refusal(exc)
        return None

    @staticmethod
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

    def text(self, key: str, locale: str | None, **params: Any) -> str:
        return self.catalogue.text(f"{VARIANT}.{key}", locale, **params)

    async def _retire_buttons(self, query: CallbackQuery) -> None:
        """Take the buttons off the message that was pressed, so it cannot be pressed twice."""
        message = query.message
        if isinstance(message, Message) and message.reply_markup is not None:
            await self.call(message.edit_reply_markup(reply_markup=None))


def _action_of(query: CallbackQuery) -> Action | None:
    data = query.data or ""
    if not data.startswith(CALLBACK_PREFIX):
        return None
    try:
        return Action(data.removeprefix(CALLBACK_PREFIX))
    except ValueError:
        return None
