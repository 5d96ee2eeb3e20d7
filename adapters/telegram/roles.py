"""Roles on Telegram: the chats a role opens, its custom title, and the moderators' log chat.

``TelegramRoles`` is the core's ``RolePlatform`` for Telegram. Granting a role lifts a
member's restriction in each of its chats, or sends them a single-use invite link when they
are not there; a title makes them an administrator with the one right to invite users, so
Telegram shows the title beside their name. Revoking removes them from the chats (a ban then
an unban, so they may come back if granted again) and takes back a title we gave. Each invite
link made goes back to the core in its step; the core records it against the grant and has
``revoke_invite`` revoke it when the grant goes, used or not. Nothing here raises for a refusal
from Telegram: each thing done or not is a ``PlatformStep`` whose problem is a word the
catalogue explains.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TypeVar

import structlog
from telegram import Bot, ChatMember
from telegram.error import TelegramError

from adapters.telegram.client import (
    PLATFORM,
    chat_target,
    connected_bot,
    in_chat,
    lift_restriction,
    problem_of,
    remove,
)
from bot.flow import Reply
from bot.identity import MemberKey
from bot.roles import Invite, PlatformStep, Role, RoleBook
from bot.settings import Settings
from bot.texts import Catalogue

log = structlog.get_logger("verifybot.telegram")

#: How long an invite link sent for a role stays usable.
INVITE_TTL = 86400
#: Telegram allows invite link names of at most 32 characters.
LINK_NAME_LIMIT = 32
LINK_NAME_PREFIX = "verifybot "

T = TypeVar("T")
#: Records that a member's role lets them enter a chat without being held at its gate.
Admit = Callable[[MemberKey, int, str], Awaitable[None]]


class StepFailed(Exception):
    """A Bot API call refused while doing ``action``; ``problem`` is the step's word."""

    def __init__(self, action: str, problem: str) -> None:
        super().__init__(action, problem)
        self.action = action
        self.problem = problem

    def step(self, chat: int) -> PlatformStep:
        return PlatformStep(self.action, str(chat), False, self.problem)


def link_name(role: Role) -> str:
    return (LINK_NAME_PREFIX + role.name)[:LINK_NAME_LIMIT]


def role_for_link(name: str | None, book: RoleBook) -> Role | None:
    """The role an invite link we created was for, known by the link's name."""
    if not name or not name.startswith(LINK_NAME_PREFIX):
        return None
    return next((role for role in book.roles.values() if link_name(role) == name), None)


def _editable(member: ChatMember) -> bool:
    """An administrator the bot promoted, so the bot may change or take back their rights."""
    return bool(getattr(member, "can_be_edited", False))


class TelegramRoles:
    """``RolePlatform`` for Telegram, acting through a PTB ``Bot`` that is initialised."""

    platform = PLATFORM

    def __init__(
        self,
        bot: Bot,
        catalogue: Catalogue,
        *,
        admit: Admit | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bot = bot
        self.catalogue = catalogue
        self.admit = admit
        self.clock = clock

    async def apply(self, member: MemberKey, role: Role) -> list[PlatformStep]:
        if not self._ours(member):
            return [PlatformStep("connect", member.scope, False, "not_connected")]
        user_id = int(member.user_id)
        steps: list[PlatformStep] = []
        for chat in role.telegram.chats:
            try:
                step, present = await self._open(member, user_id, chat, role)
            except StepFailed as failed:
                steps.append(failed.step(chat))
                continue
            steps.append(step)
            if present and role.telegram.title:
                # A member who still has to join gets the title when they come in by the link.
                steps.append(await self.set_title(chat, user_id, role.telegram.title))
        return steps

    async def undo(
        self, member: MemberKey, role: Role, kept: Sequence[Role] = ()
    ) -> list[PlatformStep]:
        if not self._ours(member):
            return [PlatformStep("connect", member.scope, False, "not_connected")]
        user_id = int(member.user_id)
        # The chats the member's other roles open: a revoke leaves them in those.
        kept_chats = {chat for other in kept for chat in other.telegram.chats}
        steps: list[PlatformStep] = []
        for chat in role.telegram.chats:
            try:
                steps += await self._close(user_id, chat, role, keep=chat in kept_chats)
            except StepFailed as failed:
                steps.append(failed.step(chat))
        return steps

    async def revoke_invite(self, member: MemberKey, invite: Invite) -> PlatformStep:
        """Revoke a link made for the member's role, so it admits nobody, used or not."""
        if not self._ours(member):
            return PlatformStep("connect", member.scope, False, "not_connected")
        request = self.bot.revoke_chat_invite_link(chat_target(invite.place), invite.url)
        try:
            await self._call("revoke_link", request)
        except StepFailed as failed:
            # Telegram's word for a link it no longer knows: it admits nobody, as wanted.
            if failed.problem.upper() != "INVITE_HASH_EXPIRED":
                return PlatformStep(failed.action, invite.place, False, failed.problem)
        return PlatformStep("revoke_link", invite.place, True)

    async def set_title(self, chat: int, user_id: int, title: str) -> PlatformStep:
        """Make the member an administrator who may only invite users, titled ``title``."""
        try:
            current = await self._call("title", self.bot.get_chat_member(chat, user_id))
            if current.status == ChatMember.OWNER:
                return PlatformStep("title", str(chat), False, "not_enough_rights")
            if not (current.status == ChatMember.ADMINISTRATOR and _editable(current)):
                await self._call(
                    "title", self.bot.promote_chat_member(chat, user_id, can_invite_users=True)
                )
            await self._call(
                "title", self.bot.set_chat_administrator_custom_title(chat, user_id, title)
            )
        except StepFailed as failed:
            return failed.step(chat)
        return PlatformStep("title", str(chat), True)

    # -- one chat ---------------------------------------------------------------------------

    async def _open(
        self, member: MemberKey, user_id: int, chat: int, role: Role
    ) -> tuple[PlatformStep, bool]:
        """Let the member into ``chat``: what was done, and whether they are in it now."""
        current = await self._call("check", self.bot.get_chat_member(chat, user_id))
        status = current.status
        if self.admit is not None:
            # Before they walk in, so the gate does not hold them.
            await self.admit(member, chat, role.name)
        if status in (ChatMember.OWNER, ChatMember.ADMINISTRATOR, ChatMember.MEMBER):
            return PlatformStep("member", str(chat), True), True
        if status == ChatMember.RESTRICTED:
            await self._call("unrestrict", lift_restriction(self.bot, chat, user_id))
            if in_chat(current):
                return PlatformStep("unrestrict", str(chat), True), True
        elif status == ChatMember.BANNED:
            await self._call(
                "unban", self.bot.unban_chat_member(chat, user_id, only_if_banned=True)
            )
        return await self._invite(user_id, chat, role), False

    async def _invite(self, user_id: int, chat: int, role: Role) -> PlatformStep:
        expires = int(self.clock()) + INVITE_TTL
        try:
            link = await self._call(
                "invite_link",
                self.bot.create_chat_invite_link(
                    chat, expire_date=expires, member_limit=1, name=link_name(role)
                ),
            )
        except StepFailed as failed:
            return failed.step(chat)
        invite = Invite(str(chat), link.invite_link, datetime.fromtimestamp(expires, UTC))
        try:
            info = await self._call("invite_link", self.bot.get_chat(chat))
            text = self.catalogue.text(
                "telegram.admin.invite_link",
                None,
                role=role.name,
                chat=info.title or str(chat),
                link=link.invite_link,
            )
            await self._call("invite_link", self.bot.send_message(user_id, text), private=True)
        except StepFailed as failed:
            # Not sent, but made: the core still records it, so a revoke revokes it.
            return PlatformStep(failed.action, str(chat), False, failed.problem, invite)
        return PlatformStep("invite_link", str(chat), True, invite=invite)

    async def _close(
        self, user_id: int, chat: int, role: Role, *, keep: bool
    ) -> list[PlatformStep]:
        current = await self._call("check", self.bot.get_chat_member(chat, user_id))
        status = current.status
        steps: list[PlatformStep] = []
        title = role.telegram.title
        ours = status == ChatMember.ADMINISTRATOR and _editable(current)
        if title and ours and getattr(current, "custom_title", None) == title:
            await self._call("title", self.bot.promote_chat_member(chat, user_id))  # all off
            steps.append(PlatformStep("title", str(chat), True))
            status = ChatMember.MEMBER
        # Administrators other than the ones we titled stay where they are.
        present = status == ChatMember.MEMBER or (
            status == ChatMember.RESTRICTED and in_chat(current)
        )
        if present and not keep:
            # Removed, free to join again if granted again.
            await self._call("remove", remove(self.bot, chat, user_id))
            steps.append(PlatformStep("remove", str(chat), True))
        return steps

    # -- plumbing ---------------------------------------------------------------------------

    def _ours(self, member: MemberKey) -> bool:
        """A member of this bot's community (the CLI may name anyone, in any words)."""
        return (
            member.platform == PLATFORM
            and member.scope == str(self.bot.id)
            and member.user_id.isdigit()
        )

    async def _call(self, action: str, request: Awaitable[T], *, private: bool = False) -> T:
        """One Bot API call; a refusal is logged once and raised as ``StepFailed(action)``."""
        try:
            return await request
        except TelegramError as error:
            problem = problem_of(error, private=private)
            log.warning(
                "telegram_role_step_failed",
                action=action,
                problem=problem,
                error=type(error).__name__,
                reason=error.message,
            )
            raise StepFailed(action, problem) from None


class TelegramModLog:
    """``ModLog`` for Telegram: each line to ``TELEGRAM_LOG_CHAT_ID`` (or a group's own log
    chat), in the default language."""

    def __init__(self, bot: Bot, catalogue: Catalogue, chat: str | None) -> None:
        self.bot = bot
        self.catalogue = catalogue
        self.chat = chat_target(chat) if chat else None

    async def post(self, line: Reply, *, chat: str | None = None) -> None:
        target = chat_target(chat) if chat else self.chat
        if target is None:
            return
        try:
            text = self.catalogue.render(line, None, variant=PLATFORM)
            await self.bot.send_message(target, text)
        except TelegramError as error:
            log.warning(
                "telegram_log_chat_failed", error=type(error).__name__, reason=error.message
            )
        except Exception as error:  # the log chat must never break a moderator's command
            log.warning("telegram_log_chat_failed", error=type(error).__name__)


def mod_log(
    roles: TelegramRoles, settings: Settings, catalogue: Catalogue
) -> TelegramModLog | None:
    """The moderators' log chat, when ``TELEGRAM_LOG_CHAT_ID`` is set (for the CLI)."""
    chat = settings.telegram_log_chat_id
    return TelegramModLog(roles.bot, catalogue, chat) if chat else None


@asynccontextmanager
async def standalone(settings: Settings, catalogue: Catalogue) -> AsyncIterator[TelegramRoles]:
    """Telegram roles outside the running bot, for ``verifybot roles grant|revoke|sync``."""
    async with connected_bot(settings) as bot:
        yield TelegramRoles(bot, catalogue)
