"""Roles on Slack: channels a member is invited to, a user group they are added to; and the
moderators' log channel.

``SlackRoles`` carries out what ``config/roles.toml`` says a role means on Slack, for the core's
``Moderation`` (and for ``verifybot roles grant|revoke|sync`` through ``standalone``). Slack's
refusals become ``PlatformStep`` problems the catalogue explains; nothing here raises for
one, and each failure is one log line (member and target ids, never a token or a phone).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager

import structlog
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import PLATFORM, Refused, ask, web_client
from adapters.slack.views import Views
from bot.flow import Reply
from bot.identity import MemberKey
from bot.roles import Invite, PlatformStep, Role
from bot.settings import ConfigError, Settings
from bot.texts import Catalogue

__all__ = ["SlackModLog", "SlackRoles", "mod_log", "standalone"]

log = structlog.get_logger("verifybot.slack.roles")


class SlackRoles:
    """``bot.roles.RolePlatform`` for one Slack workspace (the bot token's)."""

    platform = PLATFORM

    def __init__(self, client: AsyncWebClient, team_id: str | None = None) -> None:
        self.client = client
        #: Learnt from auth.test on first use when not given.
        self.team_id = team_id
        self._team_lock = asyncio.Lock()

    async def apply(self, member: MemberKey, role: Role) -> list[PlatformStep]:
        if not await self._ours(member):
            return [self._elsewhere(member, role)]
        steps = [
            await self._step("channel_invite", channel, member, self._invite(channel, member))
            for channel in role.slack.channels
        ]
        group = role.slack.usergroup
        if group:
            steps.append(await self._step("usergroup_add", group, member, self._add(group, member)))
        return steps

    async def undo(
        self, member: MemberKey, role: Role, kept: Sequence[Role] = ()
    ) -> list[PlatformStep]:
        if not await self._ours(member):
            return [self._elsewhere(member, role)]
        # What the member's other roles open stays open.
        kept_channels = {channel for other in kept for channel in other.slack.channels}
        kept_groups = {other.slack.usergroup for other in kept}
        steps = [
            await self._step("channel_kick", channel, member, self._kick(channel, member))
            for channel in role.slack.channels
            if channel not in kept_channels
        ]
        group = role.slack.usergroup
        if group and group not in kept_groups:
            removal = self._remove(group, member)
            steps.append(await self._step("usergroup_remove", group, member, removal))
        return steps

    async def revoke_invite(self, member: MemberKey, invite: Invite) -> PlatformStep:
        """Slack roles make no invite links (members are invited to channels directly), so the
        core never records one to revoke here."""
        return PlatformStep("revoke_link", invite.place, ok=True)

    # -- the calls -----------------------------------------------------------------------

    async def _invite(self, channel: str, member: MemberKey) -> None:
        try:
            await ask(
                "conversations.invite",
                self.client.conversations_invite(channel=channel, users=member.user_id),
            )
        except Refused as refused:
            if refused.problem != "already_in_channel":
                raise

    async def _kick(self, channel: str, member: MemberKey) -> None:
        try:
            await ask(
                "conversations.kick",
                self.client.conversations_kick(channel=channel, user=member.user_id),
            )
        except Refused as refused:
            if refused.problem != "not_in_channel":  # the member is not there: done
                raise

    async def _members(self, group: str) -> list[str]:
        answer = await ask(
            "usergroups.users.list", self.client.usergroups_users_list(usergroup=group)
        )
        users = answer.get("users")
        return [u for u in users if isinstance(u, str)] if isinstance(users, list) else []

    async def _add(self, group: str, member: MemberKey) -> None:
        # usergroups.users.update replaces the whole list: read it, add, write it back.
        users = await self._members(group)
        if member.user_id in users:
            return
        await ask(
            "usergroups.users.update",
            self.client.usergroups_users_update(usergroup=group, users=[*users, member.user_id]),
        )

    async def _remove(self, group: str, member: MemberKey) -> None:
        users = await self._members(group)
        if member.user_id not in users:
            return
        rest = [u for u in users if u != member.user_id]
        if not rest:
            # Slack refuses an empty list; disabling the group instead is a human's decision.
            raise Refused("last_in_usergroup")
        await ask(
            "usergroups.users.update",
            self.client.usergroups_users_update(usergroup=group, users=rest),
        )

    async def _step(
        self, action: str, target: str, member: MemberKey, call: Awaitable[None]
    ) -> PlatformStep:
        try:
            await call
        except Refused as refused:
            log.warning(
                "slack_role_step_failed",
                action=action,
                target=target,
                member=str(member),
                problem=refused.problem,
            )
            return PlatformStep(action, target, ok=False, problem=refused.problem)
        return PlatformStep(action, target, ok=True)

    # -- which workspace -----------------------------------------------------------------

    async def _ours(self, member: MemberKey) -> bool:
        """Whether ``member`` is in this token's workspace (False when Slack is unreachable)."""
        if member.platform != PLATFORM:
            return False
        async with self._team_lock:
            if self.team_id is None:
                try:
                    answer = await ask("auth.test", self.client.auth_test())
                except Refused as refused:
                    log.warning("slack_auth_test_failed", problem=refused.problem)
                    return False
                team = answer.get("team_id")
                self.team_id = team if isinstance(team, str) else None
        return member.scope == self.team_id

    def _elsewhere(self, member: MemberKey, role: Role) -> PlatformStep:
        log.warning(
            "slack_role_not_connected",
            member=str(member),
            role=role.name,
            workspace=self.team_id,
        )
        return PlatformStep("connect", member.scope, ok=False, problem="not_connected")


class SlackModLog:
    """``bot.moderation.ModLog``: one line per verification, grant, revoke and unlink in the
    moderators' channel (``SLACK_LOG_CHANNEL``), in the default language."""

    def __init__(self, client: AsyncWebClient, catalogue: Catalogue, channel: str) -> None:
        self.client = client
        self.views = Views(catalogue, None)
        self.channel = channel

    async def post(self, line: Reply, *, chat: str | None = None) -> None:
        channel = chat or self.channel
        try:
            text = self.views.admin_text(line)
            await ask("chat.postMessage", self.client.chat_postMessage(channel=channel, text=text))
        except Refused as refused:
            problem = refused.problem
            log.warning("slack_log_post_failed", channel=channel, line=line.key, problem=problem)
        except Exception:  # a log line must never cost the action it reports
            log.exception("slack_log_post_failed", channel=channel, line=line.key)


@asynccontextmanager
async def standalone(settings: Settings, catalogue: Catalogue) -> AsyncIterator[SlackRoles]:
    """Slack roles for the CLI (``verifybot roles grant|revoke|sync``), outside the bot.

    ``catalogue`` is taken for the same signature as Telegram's ``standalone``, whose invite
    messages need it; Slack's roles send no text of their own.
    """
    if settings.slack_bot_token is None:
        raise ConfigError(
            "SLACK_BOT_TOKEN is not set: Slack roles need the app's bot token (xoxb-…)"
        )
    yield SlackRoles(web_client(settings))


def mod_log(roles: SlackRoles, settings: Settings, catalogue: Catalogue) -> SlackModLog | None:
    """The moderators' log channel, when ``SLACK_LOG_CHANNEL`` is set (for the CLI)."""
    channel = settings.slack_log_channel
    return SlackModLog(roles.client, catalogue, channel) if channel else None
