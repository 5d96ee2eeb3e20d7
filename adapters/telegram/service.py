"""The running Telegram bot: settings checked, the PTB application built and wired, served.

This is where the chat, the group gate, the roles and the moderators' desk are put together
for one ``App``; each of them knows only the client and what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog
import tornado.web
from telegram import (
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllPrivateChats,
    Update,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatJoinRequestHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from adapters._runtime import cancel_all, until_stopped
from adapters.telegram.chat import COMMAND_EVENTS, MEMBER_COMMANDS, TelegramChat
from adapters.telegram.client import PLATFORM, TelegramClient, file_url_for
from adapters.telegram.desk import TelegramDesk
from adapters.telegram.gate import GroupGate
from adapters.telegram.http import AiohttpRequest
from adapters.telegram.panel import SettingsPanel
from adapters.telegram.polling import Polling
from adapters.telegram.review import ReviewDesk
from adapters.telegram.roles import TelegramModLog, TelegramRoles
from adapters.telegram.updates import InOrderPerMember, PaceMessages
from bot.desk_commands import ADMIN_COMMANDS as DESK_ADMIN_COMMANDS
from bot.desk_commands import MODERATOR_COMMANDS
from bot.health import PATHS, Health
from bot.inbox import UpdateInbox
from bot.settings import ConfigError, Settings

if TYPE_CHECKING:  # the wiring imports every port; an adapter needs only its type
    from bot.app import App

log = structlog.get_logger("verifybot.telegram")

#: The update types the bot asks for; chat_member is only sent when asked for by name.
ALLOWED_UPDATES = [
    "message",
    "callback_query",
    "chat_member",
    "my_chat_member",
    "chat_join_request",
]
#: Commands shown in the menu of groups, to their administrators.
ADMIN_COMMANDS = (
    ("verify", "group_verify"),
    ("settings", "settings"),
    *((name, name) for name in MODERATOR_COMMANDS + DESK_ADMIN_COMMANDS),
)

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


@dataclass(frozen=True, slots=True)
class Wired:
    """What ``build_application`` put together, for ``serve``."""

    client: TelegramClient
    chat: TelegramChat
    gate: GroupGate
    desk: TelegramDesk
    review: ReviewDesk
    panel: SettingsPanel


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
        # The long poll too: PTB would otherwise load httpx for this one connection.
        .get_updates_request(AiohttpRequest(connections=1))
        .concurrent_updates(InOrderPerMember(per_chat=settings.telegram_group_concurrency))
        # Paces sends (TELEGRAM_SEND_RATE overall, 20/min per group); waits out a 429 twice.
        .rate_limiter(PaceMessages.at(settings.telegram_send_rate, max_retries=2))
        .build()
    )
    client = TelegramClient(application.bot, app.catalogue)
    chat = TelegramChat(client, app.engine)
    gate = GroupGate(client, app, chat)
    roles = TelegramRoles(client.bot, app.catalogue, admit=gate.admit)
    # Always a log: a group may have its own log chat when TELEGRAM_LOG_CHAT_ID is unset.
    log_chat = TelegramModLog(roles.bot, app.catalogue, app.settings.telegram_log_chat_id)
    moderation = app.moderation({PLATFORM: roles}, log_chat)
    desk = TelegramDesk(client, app, moderation, roles)
    gate.on_link_join = desk.joined_by_link
    review = ReviewDesk(client, app, gate, desk)
    gate.on_review = review.post
    app.follow_verifications(PLATFORM, moderation, gate)
    app.follow_setbacks(PLATFORM, gate)
    panel = SettingsPanel(client, app, desk, otherwise=chat.on_text)
    wired = Wired(client, chat, gate, desk, review, panel)
    register(application, wired)
    application.bot_data["wired"] = wired
    return application


def register(application: AnyApplication, wired: Wired) -> None:
    chat, gate = wired.chat, wired.gate
    private = filters.ChatType.PRIVATE
    add = application.add_handler
    add(CommandHandler(["start", "verify"], chat.on_start, filters=private))
    add(CommandHandler(list(COMMAND_EVENTS), chat.on_command, filters=private))
    # Before the catch-alls below.
    for handler in [*wired.desk.handlers(), *wired.review.handlers(), *wired.panel.handlers()]:
        add(handler)
    add(MessageHandler(private & filters.CONTACT, chat.on_contact))
    add(MessageHandler(private & filters.TEXT & ~filters.COMMAND, chat.on_text))
    add(MessageHandler(private & filters.COMMAND, chat.on_unknown_command))
    add(CallbackQueryHandler(chat.on_button))  # every query, even a stale one, is answered
    add(ChatMemberHandler(gate.on_chat_member, ChatMemberHandler.CHAT_MEMBER))

    async def on_my_chat_member(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await chat.on_my_chat_member(update, context)  # a member blocked the bot
        await wired.panel.on_my_chat_member(update, context)  # the bot joined or left a group

    add(ChatMemberHandler(on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER))
    add(ChatJoinRequestHandler(gate.on_join_request))
    add(CommandHandler("verify", gate.on_group_verify, filters=filters.ChatType.GROUPS))
    add(
        MessageHandler(
            filters.ChatType.GROUPS
            & (filters.StatusUpdate.NEW_CHAT_MEMBERS | filters.StatusUpdate.LEFT_CHAT_MEMBER),
            gate.on_service_message,
        )
    )
    application.add_error_handler(chat.on_error)


async def register_commands(client: TelegramClient) -> None:
    """The command menus, in every language the catalogue has."""
    catalogue = client.catalogue
    for language in sorted(catalogue.languages):
        code = "" if language == catalogue.default else language
        if len(code) not in (0, 2):
            continue  # Telegram takes two-letter ISO 639-1 codes only
        member = [
            BotCommand(name, client.text(f"command.{name}", language)) for name in MEMBER_COMMANDS
        ]
        admin = [
            BotCommand(name, client.text(f"command.{key}", language))
            for name, key in ADMIN_COMMANDS
        ]
        await client.call(
            client.bot.set_my_commands(
                member, scope=BotCommandScopeAllPrivateChats(), language_code=code or None
            )
        )
        await client.call(
            client.bot.set_my_commands(
                admin, scope=BotCommandScopeAllChatAdministrators(), language_code=code or None
            )
        )


class _HealthHandler(tornado.web.RequestHandler):
    """``/healthz``, ``/readyz`` and ``/metrics`` beside the webhook (``bot.health``)."""

    def initialize(self, health: Health) -> None:
        self.health = health

    async def get(self) -> None:
        found = await self.health.answer(self.request.path)
        self.set_status(found.status)
        self.set_header("Content-Type", found.content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(found.body)


def mount_health(updater: Any, health: Health) -> None:
    """Add the health routes to PTB's webhook server, so they answer on the bot's own port.

    PTB keeps its tornado application private (``Updater._httpd._http_server``, PTB 22);
    tornado's public ``add_handlers`` then adds routes, which come before the webhook's and
    fall through to it for any other path. tests/e2e/test_health.py probes the result."""
    server = getattr(getattr(updater, "_httpd", None), "_http_server", None)
    webapp = getattr(server, "request_callback", None)
    if not isinstance(webapp, tornado.web.Application):
        raise RuntimeError("PTB's webhook server is not where it was: cannot serve /readyz")
    webapp.add_handlers(r".*", [(path, _HealthHandler, {"health": health}) for path in PATHS])


async def serve(app: App, *, webhook: bool = False, health: Health | None = None) -> None:
    """Run until SIGINT or SIGTERM: long polling, or a webhook server if asked. ``health``
    is told the token was accepted, and served beside the webhook.

    On the signal no new update is taken; those being handled get SHUTDOWN_GRACE_SECONDS to
    finish, and the rest are cancelled. In polling mode those stay in the bot's inbox in Redis
    and are handled on the next start (``adapters.telegram.polling``); a webhook's were
    already acknowledged to Telegram.
    """
    settings = app.settings
    application = build_application(app)
    wired: Wired = application.bot_data["wired"]
    processor = application.update_processor
    assert isinstance(processor, InOrderPerMember)  # noqa: S101 - build_application's
    async with application:
        if health is not None:  # initialising asked getMe: the token works
            health.token_accepted(PLATFORM)
        await register_commands(wired.client)
        await application.start()
        sweeper = wired.gate.start_sweeper()
        updater = application.updater
        assert updater is not None  # noqa: S101 - built with the default updater
        polling: Polling | None = None
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
            if health is not None:
                mount_health(updater, health)
            log.info("telegram_webhook", url=url, port=settings.port)
        else:
            inbox = UpdateInbox(
                app.store.redis, app.store.keys.inbox(PLATFORM, str(application.bot.id))
            )
            polling = Polling(
                application,
                allowed_updates=ALLOWED_UPDATES,
                in_flight=processor.in_flight,
                inbox=inbox,
            )
            await polling.start()
            log.info("telegram_polling", bot=application.bot.username)
        try:
            await until_stopped()
        finally:
            grace = float(settings.shutdown_grace_seconds)
            log.info("telegram_stopping", in_flight=len(processor.in_flight), grace=grace)
            if sweeper is not None:
                await cancel_all([sweeper])
            if polling is not None:
                await polling.stop(grace)
            else:
                await updater.stop()
                await processor.in_flight.drain(grace)
            await application.stop()
