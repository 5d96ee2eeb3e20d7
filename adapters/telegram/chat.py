"""Telegram's private chat: members verify there, by commands, buttons, text and a shared contact.

Updates become ``MemberEvent``s for ``engine.handle``; its replies become messages and
keyboards. Conversation state lives in the core (Redis), never in PTB, so several workers may
share the load. What follows a verification (a held group opens, the moderators' log) is the
core's bus's, not this module's.
"""

from __future__ import annotations

import re
from functools import partial

import structlog
from telegram import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.constants import ChatType
from telegram.ext import ContextTypes

from adapters._commands import command_word
from adapters.telegram.client import VARIANT, Markup, TelegramClient
from bot.engine import Engine, Outcome
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

log = structlog.get_logger("verifybot.telegram")

CALLBACK_PREFIX = "vb:"
COMMAND_EVENTS: dict[str, MemberEvent] = {
    "status": Status(),
    "cancel": Cancel(),
    "help": Help(),
    "resend": Resend(),
    "change": ChangeNumber(),
}
#: Commands shown in the menu of private chats.
MEMBER_COMMANDS = ("verify", "status", "cancel", "help")
#: One object for every reply that closes the phone keyboard (frozen, its JSON kept by ``say``).
CLOSE_KEYBOARD = ReplyKeyboardRemove()
#: Deep-link payloads are ``g<chat id>``: Telegram allows 1-64 of A-Z a-z 0-9 _ -.
_PAYLOAD = re.compile(r"^g(-?\d{1,40})$")


def origin_from_payload(payload: str) -> str | None:
    """The group a ``/start g<chat id>`` deep link came from, if that is what it is."""
    match = _PAYLOAD.match(payload)
    return match.group(1) if match else None


def deep_link(bot_username: str, place: str) -> str:
    """The link to the bot's private chat that ``origin_from_payload`` reads back."""
    return f"https://t.me/{bot_username}?start=g{place}"


class TelegramChat:
    """The private chat: member input in, core replies out."""

    def __init__(self, client: TelegramClient, engine: Engine) -> None:
        self.client = client
        self.engine = engine
        self.catalogue = client.catalogue
        self._markups: dict[
            tuple[tuple[Action, ...], str | None], InlineKeyboardMarkup | ReplyKeyboardMarkup | None
        ] = {}

    # -- member input -----------------------------------------------------------------------

    async def on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        payload = context.args[0] if context.args else ""
        await self.converse(update, Start(origin=origin_from_payload(payload)))

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        text = message.text if message else None
        word = command_word(text, COMMAND_EVENTS, bot_username=self.client.bot.username)
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
        await self.client.call(query.answer())
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
        member = self.client.member_for(user)
        await self.engine.handle(
            member,
            event,
            delivery_id=str(update.update_id),
            render=partial(self.show, chat.id, locale=member.locale),
        )

    async def show(self, chat_id: int | str, outcome: Outcome, *, locale: str | None) -> None:
        """Send the replies; a reply keyboard shown for the phone goes once it is given."""
        locale = self.catalogue.language_for(locale, outcome.language)
        close_keyboard = (
            outcome.previous is State.AWAIT_PHONE and outcome.state is not State.AWAIT_PHONE
        )
        for reply in outcome.replies:
            markup: Markup | None = self.markup_for(reply.actions, locale)
            if close_keyboard:
                close_keyboard = False
                if markup is None:
                    markup = CLOSE_KEYBOARD
                else:
                    # One message carries one keyboard: close the old one on its own line.
                    closing = self.client.text("keyboard_closed", locale)
                    await self.client.say(chat_id, closing, CLOSE_KEYBOARD)
            text = self.catalogue.render(reply, locale, variant=VARIANT)
            await self.client.say(chat_id, text, markup)

    def markup_for(
        self, actions: tuple[Action, ...], locale: str | None
    ) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | None:
        """The keyboard for a reply's actions; built once per actions and language (PTB's
        objects are frozen, so one may go out with many replies)."""
        key = (actions, locale)
        if key not in self._markups:
            self._markups[key] = self._build_markup(actions, locale)
        return self._markups[key]

    def _build_markup(
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

    async def _retire_buttons(self, query: CallbackQuery) -> None:
        """Take the buttons off the message that was pressed, so it cannot be pressed twice."""
        message = query.message
        if isinstance(message, Message) and message.reply_markup is not None:
            await self.client.call(message.edit_reply_markup(reply_markup=None))


def _action_of(query: CallbackQuery) -> Action | None:
    data = query.data or ""
    if not data.startswith(CALLBACK_PREFIX):
        return None
    try:
        return Action(data.removeprefix(CALLBACK_PREFIX))
    except ValueError:
        return None
