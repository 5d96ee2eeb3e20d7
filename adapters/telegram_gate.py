"""Telegram groups gated until members verify: ``TELEGRAM_GATE_MODE=restrict|join_request|off``.

restrict: a joining member is muted and welcomed with a deep link to the bot's private chat;
verifying lifts the restriction. join_request: the bot messages the requester (through
``user_chat_id``) and approves the request once they verify. Either way a deadline
(``TELEGRAM_VERIFY_TIMEOUT``) is kept by the core's ``Gatekeeper`` in Redis, so it survives a
restart, and a member who verified meanwhile is never removed.

Only one welcome per group is visible at a time, a new one at most every ``WELCOME_INTERVAL``
seconds, and it goes once every member it serves has verified or left; join/leave service
messages are deleted. So a wave of joins does not flood the group.
"""

from __future__ import annotations

import asyncio
import re
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog
from telegram import ChatMember, ChatPermissions, InlineKeyboardButton, InlineKeyboardMarkup
from telegram import Update as TelegramUpdate
from telegram.ext import ContextTypes

from bot.flow import Start
from bot.gate import Hold, Lapsed, sweep_lapsed
from bot.identity import Member, MemberKey

if TYPE_CHECKING:
    from adapters.telegram import TelegramChat
    from bot.bootstrap import App

log = structlog.get_logger("verifybot.telegram")

RESTRICT = "restrict"
#: Seconds between welcomes in one group: Telegram allows about 20 messages a minute there,
#: and the newest welcome's button serves everyone who joined since.
WELCOME_INTERVAL = 10.0
JOIN_REQUEST = "join_request"
#: Deep-link payloads are ``g<chat id>``: Telegram allows 1-64 of A-Z a-z 0-9 _ -.
_PAYLOAD = re.compile(r"^g(-?\d{1,40})$")
_PRESENT = {ChatMember.OWNER, ChatMember.ADMINISTRATOR, ChatMember.MEMBER}


def _present(member: ChatMember) -> bool:
    if member.status == ChatMember.RESTRICTED:
        return bool(getattr(member, "is_member", False))
    return member.status in _PRESENT


class GroupGate:
    def __init__(self, chat: TelegramChat, app: App) -> None:
        self.chat = chat
        self.gatekeeper = app.gatekeeper
        self.engine = app.engine
        self.mode = app.settings.telegram_gate_mode
        self.timeout = app.settings.telegram_verify_timeout

    @property
    def bot(self) -> Any:
        return self.chat.bot

    @staticmethod
    def origin_from_payload(payload: str) -> str | None:
        """The group a ``/start g<chat id>`` deep link came from, if that is what it is."""
        match = _PAYLOAD.match(payload)
        return match.group(1) if match else None

    def deep_link(self, place: str) -> str:
        return f"https://t.me/{self.bot.username}?start=g{place}"

    def _button(self, place: str, locale: str | None) -> InlineKeyboardMarkup:
        label = self.chat.text("gate.verify_button", locale)
        return InlineKeyboardMarkup([[InlineKeyboardButton(label, url=self.deep_link(place))]])

    async def _first_sighting(self, member: Member, update: TelegramUpdate) -> bool:
        # The update id is the delivery id, under the same guard as the member's messages.
        return await self.engine.first_delivery(member.key, str(update.update_id))

    # -- arrivals ------------------------------------------------------------------------------

    async def on_chat_member(
        self, update: TelegramUpdate, context: ContextTypes.DEFAULT_TYPE
    ) -> None:
        change = update.chat_member
        if change is None or change.new_chat_member.user.is_bot:
            return
        was, now = _present(change.old_chat_member), _present(change.new_chat_member)
        by_link = change.invite_link is not None and now and not was
        if self.mode != RESTRICT and not by_link:
            return
        user = change.new_chat_member.user
        member = self.chat.member_for(user)
        # Before either use: a redelivered join must not set a role's title twice.
        if not await self._first_sighting(member, update):
            return
        if by_link:
            await self.chat.desk.joined_by_link(change)
        if self.mode != RESTRICT:
            return
        place = str(change.chat.id)
        if was and not now:
            await self._forget(member, place)
            return
        if was or not now:
            return  # a change of rights, including our own restriction
        link = change.invite_link.invite_link if change.invite_link else None
        hold = await self.gatekeeper.arrive(
            member.key, place, RESTRICT, title=change.chat.title, invite=link
        )
        if hold is None:
            log.info("gate_admitted_known_member", place=place)
            return
        muted = await self.chat.call(
            self.bot.restrict_chat_member(
                change.chat.id,
                user.id,
                ChatPermissions.no_permissions(),
                use_independent_chat_permissions=True,
            )
        )
        if not muted:
            log.error(
                "gate_cannot_restrict",
                place=place,
                fix="make the bot an administrator with the 'Ban users' right",
            )
            await self._forget(member, place)
            return
        if not await self.gatekeeper.still_held(hold, invite=link):
            # They verified while the restriction was on its way, and its lift may have
            # landed first: a join never outlasts a verification.
            log.info("gate_verified_while_held", place=place)
            await self._lift(hold)
            await self._clear_welcome(hold)
            return
        if await self.gatekeeper.gate.welcome_due(place, interval=WELCOME_INTERVAL):
            text = self.chat.text(
                "gate.welcome", member.locale, name=user.full_name, group=change.chat.title or ""
            )
            welcome = await self.chat.send(change.chat.id, text, self._button(place, member.locale))
            if welcome is not None:
                previous = await self.gatekeeper.gate.swap_notice(place, str(welcome.message_id))
                if previous:
                    await self._delete(place, previous)

    async def on_join_request(
        self, update: TelegramUpdate, context: ContextTypes.DEFAULT_TYPE
    ) -> None:
        request = update.chat_join_request
        if request is None or self.mode != JOIN_REQUEST:
            return
        member = self.chat.member_for(request.from_user)
        if not await self._first_sighting(member, update):
            return
        place, reach = str(request.chat.id), request.user_chat_id
        hold = await self.gatekeeper.arrive(
            member.key, place, JOIN_REQUEST, reach=str(reach), title=request.chat.title
        )
        if hold is None:
            await self.chat.call(request.approve())
            return
        intro = self.chat.text("gate.join_request", member.locale, group=request.chat.title or "")
        await self.chat.send(reach, intro)
        await self.engine.handle(
            member, Start(origin=place), render=partial(self.chat.show, reach, locale=member.locale)
        )

    async def on_group_verify(
        self, update: TelegramUpdate, context: ContextTypes.DEFAULT_TYPE
    ) -> None:
        chat, user = update.effective_chat, update.effective_user
        if chat is None:
            return
        locale = user.language_code if user else None
        text = self.chat.text("gate.verify_here", locale)
        await self.chat.send(chat.id, text, self._button(str(chat.id), locale))

    async def on_service_message(
        self, update: TelegramUpdate, context: ContextTypes.DEFAULT_TYPE
    ) -> None:
        message = update.effective_message
        if message is not None and self.mode != "off":
            await self.chat.call(message.delete())

    # -- departures ----------------------------------------------------------------------------

    async def member_verified(self, member: Member, *, origin: str | None = None) -> None:
        """Let the member into every group holding them, and tell them so; the group they
        came from (``origin``) lets them in even if their join is still to be handled."""
        for hold in await self.gatekeeper.verified(member.key, origin=origin):
            await self._let_in(hold, member.locale)

    async def admit(self, member: MemberKey, chat: int, role: str) -> None:
        """``role`` opens ``chat`` to the member: remember it, so the gate lets them walk in,
        and end any hold there (their restriction is lifted by the role)."""
        for hold in await self.gatekeeper.admit(member, str(chat), role=role):
            await self._clear_welcome(hold)

    async def on_lapsed(self, lapsed: Lapsed) -> None:
        hold = lapsed.hold
        if lapsed.verified:
            await self._let_in(hold, None)
            return
        user_id, group = int(hold.member.user_id), hold.title or ""
        reach = int(hold.reach) if hold.reach else user_id
        if hold.kind == JOIN_REQUEST:
            await self.chat.send(reach, self.chat.text("gate.declined", None, group=group))
            await self.chat.call(self.bot.decline_chat_join_request(int(hold.place), user_id))
        else:
            # A ban followed by an unban removes the member but lets them join again.
            removed = await self.chat.call(self.bot.ban_chat_member(int(hold.place), user_id))
            if removed:
                await self.chat.call(
                    self.bot.unban_chat_member(int(hold.place), user_id, only_if_banned=True)
                )
                await self.chat.send(reach, self.chat.text("gate.timed_out", None, group=group))
        log.info("gate_timed_out", place=hold.place, kind=hold.kind)
        await self._clear_welcome(hold)

    def start_sweeper(self) -> asyncio.Task[None] | None:
        if self.mode == "off" or not self.timeout:
            return None
        interval = min(15.0, max(0.25, self.timeout / 4))
        return asyncio.create_task(sweep_lapsed(self.gatekeeper, self.on_lapsed, interval=interval))

    async def _let_in(self, hold: Hold, locale: str | None) -> None:
        done = await self._lift(hold)
        log.info("gate_let_in", place=hold.place, kind=hold.kind, ok=done)
        await self._clear_welcome(hold)
        user_id = int(hold.member.user_id)
        reach = int(hold.reach) if hold.reach else user_id
        await self.chat.send(reach, self.chat.text("gate.unlocked", locale, group=hold.title or ""))

    async def _lift(self, hold: Hold) -> bool:
        """Approve the member's request, or lift their restriction."""
        place, user_id = int(hold.place), int(hold.member.user_id)
        if hold.kind == JOIN_REQUEST:
            done = await self.chat.call(self.bot.approve_chat_join_request(place, user_id))
        else:
            done = await self.chat.call(
                self.bot.restrict_chat_member(
                    place,
                    user_id,
                    ChatPermissions.all_permissions(),
                    use_independent_chat_permissions=True,
                )
            )
        return bool(done)

    async def _forget(self, member: Member, place: str) -> None:
        for hold in await self.gatekeeper.leave(member.key, place):
            await self._clear_welcome(hold)

    async def _clear_welcome(self, hold: Hold) -> None:
        """The member is done here: the welcome goes once nobody it serves is left."""
        notice = await self.gatekeeper.gate.uncover(hold.place, hold.member.user_id)
        if notice:
            await self._delete(hold.place, notice)

    async def _delete(self, place: str, notice: str) -> None:
        await self.chat.call(self.bot.delete_message(int(place), int(notice)))
