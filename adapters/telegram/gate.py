"""Telegram groups gated until members verify: ``TELEGRAM_GATE_MODE=restrict|join_request|off``.

restrict: a joining member is muted and welcomed with a deep link to the bot's private chat;
verifying lifts the restriction. join_request: the bot messages the requester (through
``user_chat_id``) and approves the request once they verify. Either way a deadline
(``TELEGRAM_VERIFY_TIMEOUT``) is kept by the core's ``Gatekeeper`` in Redis, so it survives a
restart, and a member who verified meanwhile is never removed. What befalls one who did not
(kick, ban, mute, decline) is the group's consequence, decided by the core (``bot.sanction``);
``carry_out`` turns it into Bot API calls, at the deadline or at once after too many failed
verifications (``member_set_back``).

Only one welcome per group is visible at a time, a new one at most every ``WELCOME_INTERVAL``
seconds, and it goes once every member it serves has verified or left; join/leave service
messages are deleted. So a wave of joins does not flood the group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

import structlog
from telegram import (
    ChatMemberUpdated,
    ChatPermissions,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
)
from telegram import Update as TelegramUpdate
from telegram.ext import ContextTypes

from adapters.telegram.chat import TelegramChat, deep_link
from adapters.telegram.client import (
    TelegramClient,
    in_chat,
    lift_restriction,
    remove,
    topic_of,
)
from bot.flow import Date, MemberSetback, Start
from bot.gate import REQUESTED, Hold, Lapsed, Review, sweep_lapsed
from bot.identity import Member, MemberKey
from bot.policy import CommunityPolicy, community_scope
from bot.sanction import Sanction

if TYPE_CHECKING:
    from bot.app import App

log = structlog.get_logger("verifybot.telegram")

RESTRICT = "restrict"
#: Seconds between welcomes in one group: Telegram allows about 20 messages a minute there,
#: and the newest welcome's button serves everyone who joined since.
WELCOME_INTERVAL = 10.0
JOIN_REQUEST = REQUESTED


class GroupGate:
    """``bot.bus.GatePort`` for Telegram: groups that hold members until they verify."""

    def __init__(self, client: TelegramClient, app: App, chat: TelegramChat) -> None:
        self.client = client
        self.bot = client.bot
        self.chat = chat
        self.gatekeeper = app.gatekeeper
        self.engine = app.engine
        self.policies = app.policies
        #: The defaults; each group's own policy may say otherwise (``policy_of``).
        self.timeout = app.settings.telegram_verify_timeout
        #: Set by the wiring: the desk gives a role's title to whoever joins by its link.
        self.on_link_join: Callable[[ChatMemberUpdated], Awaitable[None]] | None = None
        #: Set by the wiring: the review queue shows an entry to the moderators.
        self.on_review: Callable[[Review, Member], Awaitable[None]] | None = None

    async def policy_of(self, place: str | int) -> CommunityPolicy:
        """The group's own rules: its gate mode, timeout, admission, welcome."""
        return await self.policies.policy_for(community_scope("telegram", str(place)))

    def deep_link(self, place: str) -> str:
        return deep_link(self.bot.username, place)

    def _button(self, place: str, locale: str | None) -> InlineKeyboardMarkup:
        label = self.client.text("gate.verify_button", locale)
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
        was, now = in_chat(change.old_chat_member), in_chat(change.new_chat_member)
        by_link = change.invite_link is not None and now and not was
        policy = await self.policy_of(change.chat.id)
        if policy.gate_mode != RESTRICT and not by_link:
            return
        user = change.new_chat_member.user
        member = self.client.member_for(user)
        # Before either use: a redelivered join must not set a role's title twice.
        if not await self._first_sighting(member, update):
            return
        if by_link and self.on_link_join is not None:
            await self.on_link_join(change)
        if policy.gate_mode != RESTRICT:
            return
        place = str(change.chat.id)
        if was and not now:
            await self._forget(member, place)
            return
        if was or not now:
            return  # a change of rights, including our own restriction
        link = change.invite_link.invite_link if change.invite_link else None
        anywhere = policy.admit_verified == "anywhere"
        hold = await self.gatekeeper.arrive(
            member.key,
            place,
            RESTRICT,
            title=change.chat.title,
            invite=link,
            deadline_in=policy.verify_timeout,
            admit_anywhere=anywhere,
        )
        if hold is None:
            log.info("gate_admitted_known_member", place=place)
            return
        muted = await self.client.call(
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
        if not await self.gatekeeper.still_held(hold, invite=link, admit_anywhere=anywhere):
            # They verified while the restriction was on its way, and its lift may have
            # landed first: a join never outlasts a verification.
            log.info("gate_verified_while_held", place=place)
            await self._lift(hold)
            await self.clear_welcome(hold)
            return
        if await self.gatekeeper.gate.welcome_due(place, interval=WELCOME_INTERVAL):
            locale = self.client.catalogue.language_for(member.locale, policy.default_language)
            text = self.client.text(
                "gate.welcome", locale, name=user.full_name, group=change.chat.title or ""
            )
            if policy.welcome:  # the community's own words, sent as plain text (no markup)
                text += "\n\n" + policy.welcome
            welcome = await self.client.send(
                change.chat.id, text, self._button(place, member.locale)
            )
            if welcome is not None:
                previous = await self.gatekeeper.gate.swap_notice(place, str(welcome.message_id))
                if previous:
                    await self._delete(place, previous)

    async def on_join_request(
        self, update: TelegramUpdate, context: ContextTypes.DEFAULT_TYPE
    ) -> None:
        request = update.chat_join_request
        if request is None:
            return
        policy = await self.policy_of(request.chat.id)
        if policy.gate_mode != JOIN_REQUEST:
            return
        member = self.client.member_for(request.from_user)
        if not await self._first_sighting(member, update):
            return
        place, reach = str(request.chat.id), request.user_chat_id
        hold = await self.gatekeeper.arrive(
            member.key,
            place,
            JOIN_REQUEST,
            reach=str(reach),
            title=request.chat.title,
            deadline_in=policy.verify_timeout,
            admit_anywhere=policy.admit_verified == "anywhere",
        )
        if hold is None:
            await self.client.call(request.approve())
            return
        intro = self.client.text("gate.join_request", member.locale, group=request.chat.title or "")
        if policy.welcome:  # the community's own words, as plain text
            intro += "\n\n" + policy.welcome
        await self.client.send(reach, intro)
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
        text = self.client.text("gate.verify_here", locale)
        button = self._button(str(chat.id), locale)
        # In a forum, answered in the topic it was asked in.
        await self.client.send(chat.id, text, button, topic=topic_of(update.effective_message))

    async def on_service_message(
        self, update: TelegramUpdate, context: ContextTypes.DEFAULT_TYPE
    ) -> None:
        message = update.effective_message
        if message is not None and (await self.policy_of(message.chat_id)).gate_mode != "off":
            await self.client.call(message.delete())

    # -- departures ----------------------------------------------------------------------------

    async def member_verified(
        self, member: Member, *, origin: str | None = None, phone: str | None = None
    ) -> None:
        """Let the member into every group holding them whose rules accept ``phone``, and
        tell them so; the group they came from (``origin``) lets them in even if their join
        is still to be handled."""
        for hold in await self.gatekeeper.verified(member.key, origin=origin, phone=phone):
            await self._let_in(hold, member.locale)

    async def admit(self, member: MemberKey, chat: int, role: str) -> None:
        """``role`` opens ``chat`` to the member: remember it, so the gate lets them walk in,
        and end any hold there (their restriction is lifted by the role)."""
        for hold in await self.gatekeeper.admit(member, str(chat), role=role):
            await self.clear_welcome(hold)

    async def on_lapsed(self, lapsed: Lapsed) -> None:
        hold, sanction = lapsed.hold, lapsed.sanction
        if lapsed.verified:
            await self._let_in(hold, None)
            return
        if sanction is not None:  # the core always gives one for a member who did not verify
            await self.carry_out(hold, sanction, None)
        log.info(
            "gate_timed_out",
            place=hold.place,
            kind=hold.kind,
            consequence=str(sanction.consequence) if sanction else None,
        )
        await self.clear_welcome(hold)

    async def member_set_back(self, member: Member, setback: MemberSetback) -> None:
        """``bot.bus.SetbackPort``: a verification failed. Where the member failed too often
        they are dealt with now; where they are held, the moderators may review them."""
        reckoning = await self.gatekeeper.set_back(member.key, setback.setback)
        for dealt in reckoning.dealt:
            await self.carry_out(dealt.hold, dealt.sanction, member.locale)
            await self.clear_welcome(dealt.hold)
        if self.on_review is not None:
            for review in reckoning.reviews:
                await self.on_review(review, member)

    async def carry_out(self, hold: Hold, sanction: Sanction, locale: str | None) -> bool:
        """The core's sanction as Bot API calls, and the member told; False if refused."""
        place, user_id = int(hold.place), int(hold.member.user_id)
        reach = int(hold.reach) if hold.reach else user_id
        notice = self.client.text(
            f"gate.{sanction.notice}", locale, group=hold.title or "", until=Date(sanction.until)
        )
        done: bool | None = True
        if sanction.decline:
            # Told first: a requester can be written to only while the request is open.
            await self.client.send(reach, notice)
            done = await self.client.call(self.bot.decline_chat_join_request(place, user_id))
        if sanction.ban:
            until = sanction.until or None  # none: forever
            done = await self.client.call(
                self.bot.ban_chat_member(place, user_id, until_date=until)
            )
        elif sanction.remove:
            done = await self.client.call(remove(self.bot, place, user_id))
        if done and not sanction.decline:
            await self.client.send(reach, notice)
        return bool(done)

    async def pardon(self, hold: Hold, locale: str | None) -> None:
        """A moderator let the member in: whatever the gate did to them is undone (a ban is
        lifted, a restriction too), and they are told."""
        place, user_id = int(hold.place), int(hold.member.user_id)
        await self.client.call(self.bot.unban_chat_member(place, user_id, only_if_banned=True))
        await self._lift(hold)
        await self.clear_welcome(hold)
        reach = int(hold.reach) if hold.reach else user_id
        await self.client.send(
            reach, self.client.text("gate.approved", locale, group=hold.title or "")
        )

    def start_sweeper(self) -> asyncio.Task[None] | None:
        # Always: any group may set a timeout of its own. Without a default, once a second
        # (one Redis call) keeps a group's short timeout close.
        interval = min(15.0, max(0.25, self.timeout / 4)) if self.timeout else 1.0
        return asyncio.create_task(sweep_lapsed(self.gatekeeper, self.on_lapsed, interval=interval))

    async def _let_in(self, hold: Hold, locale: str | None) -> None:
        done = await self._lift(hold)
        log.info("gate_let_in", place=hold.place, kind=hold.kind, ok=done)
        await self.clear_welcome(hold)
        user_id = int(hold.member.user_id)
        reach = int(hold.reach) if hold.reach else user_id
        unlocked = self.client.text("gate.unlocked", locale, group=hold.title or "")
        await self.client.send(reach, unlocked)

    async def _lift(self, hold: Hold) -> bool:
        """Approve the member's request, or lift their restriction."""
        place, user_id = int(hold.place), int(hold.member.user_id)
        if hold.kind == JOIN_REQUEST:
            done = await self.client.call(self.bot.approve_chat_join_request(place, user_id))
        else:
            done = await self.client.call(lift_restriction(self.bot, place, user_id))
        return bool(done)

    async def _forget(self, member: Member, place: str) -> None:
        for hold in await self.gatekeeper.leave(member.key, place):
            await self.clear_welcome(hold)

    async def clear_welcome(self, hold: Hold) -> None:
        """The member is done here: the welcome goes once nobody it serves is left."""
        notice = await self.gatekeeper.gate.uncover(hold.place, hold.member.user_id)
        if notice:
            await self._delete(hold.place, notice)

    async def _delete(self, place: str, notice: str) -> None:
        await self.client.call(self.bot.delete_message(int(place), int(notice)))
