"""The moderators' review queue on Telegram: one message per entry in the log chat of the
entry's group (its policy's ``log_chat``, else ``TELEGRAM_LOG_CHAT_ID``), with Approve and Deny.

The core queues the entries and decides what each verdict means (``bot.gate``); this module
shows them and reads the presses. A press is trusted for nothing but the entry id it names:
the entry itself is in Redis, the press must come from its group's log chat, and the
presser's rank is asked again on every press (an administrator of the log chat or of the
entry's group, or a ``TELEGRAM_ADMIN_IDS`` admin). The entry is taken by one press only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from telegram import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram.ext import BaseHandler, CallbackQueryHandler, ContextTypes

from adapters.telegram.client import PLATFORM, TelegramClient, chat_target
from adapters.telegram.desk import TelegramDesk, actor_name
from adapters.telegram.gate import GroupGate
from bot.gate import Review
from bot.identity import Member
from bot.moderation import Rank, member_label
from bot.policy import community_scope

if TYPE_CHECKING:
    from bot.app import App

log = structlog.get_logger("verifybot.telegram")

#: Callback data of the review buttons: ``vr:a:<id>`` approves, ``vr:d:<id>`` denies.
CALLBACK_PREFIX = "vr:"
_APPROVE, _DENY = "a", "d"


class ReviewDesk:
    """Entries for the moderators in the log chat, and their verdicts."""

    def __init__(self, client: TelegramClient, app: App, gate: GroupGate, desk: TelegramDesk):
        self.client = client
        self.gate = gate
        self.gatekeeper = app.gatekeeper
        self.desk = desk
        self.policies = app.policies

    def handlers(self) -> list[BaseHandler[Update, Any, Any]]:
        return [CallbackQueryHandler(self.on_button, pattern=f"^{CALLBACK_PREFIX}")]

    async def post(self, review: Review, member: Member) -> None:
        """Show an entry to the moderators of its group."""
        hold = review.hold
        log_chat = await self._log_chat(hold.place)
        if log_chat is None:
            log.info("review_without_log_chat", place=hold.place)
            return
        text = self.client.text(
            f"review.{review.reason.value}",
            None,
            member=member_label(member, member.key),
            group=hold.title or hold.place,
        )
        buttons = [
            InlineKeyboardButton(
                self.client.text(f"review.{word}", None),
                callback_data=f"{CALLBACK_PREFIX}{verdict}:{review.id}",
            )
            for word, verdict in (("approve", _APPROVE), ("deny", _DENY))
        ]
        await self.client.send(log_chat, text, InlineKeyboardMarkup([buttons]))

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        answer = await self._decide(query)
        # Every query is answered, once, or the presser's client keeps spinning.
        await self.client.call(query.answer(answer, show_alert=answer is not None))

    async def _decide(self, query: CallbackQuery) -> str | None:
        """Carry out the press; what the presser is told when it was not carried out."""
        locale = query.from_user.language_code
        verdict, _, review_id = (query.data or "").removeprefix(CALLBACK_PREFIX).partition(":")
        message = query.message
        if verdict not in (_APPROVE, _DENY) or not isinstance(message, Message):
            return None
        review = await self.gatekeeper.gate.peek_review(review_id)
        if review is None:
            return self.client.text("review.gone", locale)
        log_chat = await self._log_chat(review.hold.place)
        if log_chat is None or not _is_chat(message, log_chat):
            log.warning("review_press_outside_log_chat", chat=message.chat.id)
            return self.client.text("review.refused", locale)
        actor = await self.desk.moderator_of(query.from_user, (log_chat, int(review.hold.place)))
        if actor.rank < Rank.MODERATOR:
            log.warning("review_press_refused", place=review.hold.place)
            return self.client.text("review.refused", locale)
        review = await self.gatekeeper.gate.take_review(review_id)
        if review is None:  # another moderator's press won
            return self.client.text("review.gone", locale)
        hold, moderator = review.hold, str(actor.key)
        if verdict == _APPROVE:
            await self.gatekeeper.approve(hold, moderator=moderator, reason=review.reason)
            await self.gate.pardon(hold, None)
        else:
            sanction = await self.gatekeeper.deny(hold, moderator=moderator, reason=review.reason)
            if sanction is not None:
                await self.gate.carry_out(hold, sanction, None)
            await self.gate.clear_welcome(hold)
        log.info("review_decided", place=hold.place, verdict=verdict, reason=review.reason.value)
        outcome = "approved" if verdict == _APPROVE else "denied"
        line = self.client.text(f"review.{outcome}", None, by=actor_name(query.from_user))
        await self.client.call(message.edit_text(f"{message.text or ''}\n{line}"))
        return None

    async def _log_chat(self, place: str) -> int | str | None:
        """The group's own log chat, else ``TELEGRAM_LOG_CHAT_ID`` (the policy's default)."""
        policy = await self.policies.policy_for(community_scope(PLATFORM, place))
        return chat_target(policy.log_chat) if policy.log_chat else None


def _is_chat(message: Message, chat: int | str) -> bool:
    if isinstance(chat, int):
        return message.chat.id == chat
    return f"@{message.chat.username}".lower() == chat.lower()
