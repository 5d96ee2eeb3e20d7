"""Roles: what the operator says each role means on each platform (``config/roles.toml``).

A role is a name the directory records against a verified member. What granting it *does*
on a platform (open a Telegram chat, invite to a Slack channel) is spelt out here and carried
out by that platform's ``RolePlatform``; the database stays the source of truth and
``verifybot roles sync`` makes the platforms match it again.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from bot.identity import MemberKey

__all__ = [
    "Invite",
    "PlatformStep",
    "Role",
    "RoleBook",
    "RoleBookError",
    "RolePlatform",
    "SlackRole",
    "TelegramRole",
    "load_role_book",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SLACK_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")
_SLACK_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")


class RoleBookError(ValueError):
    """The roles file is missing, unreadable or says something that cannot work."""


@dataclass(frozen=True, slots=True)
class TelegramRole:
    #: Chats opened to the member: unrestricted if they are in, else a single-use invite link.
    chats: tuple[int, ...] = ()
    #: A custom administrator title, set in each of ``chats`` (needs can_promote_members).
    title: str | None = None


@dataclass(frozen=True, slots=True)
class SlackRole:
    #: Channels the member is invited to (``conversations.invite``).
    channels: tuple[str, ...] = ()
    #: A user group the member is added to (``usergroups.users.update``; paid plans only).
    usergroup: str | None = None


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    description: str = ""
    telegram: TelegramRole = field(default_factory=TelegramRole)
    slack: SlackRole = field(default_factory=SlackRole)


@dataclass(frozen=True, slots=True)
class RoleBook:
    """Every role the operator defined, and the ones given on verification."""

    roles: Mapping[str, Role] = field(default_factory=dict)
    auto: tuple[str, ...] = ()

    def get(self, name: str) -> Role | None:
        return self.roles.get(name.strip().lower())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.roles))


@dataclass(frozen=True, slots=True)
class Invite:
    """An invite link a platform made for a member's role: it lets one person into ``place``
    until ``expires_at``, whether or not the role still stands, unless it is revoked."""

    place: str
    url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class PlatformStep:
    """One thing done, or not, on a platform for a role: a chat opened, a channel joined."""

    action: str  # e.g. "unrestrict", "invite_link", "title", "channel_invite", "usergroup_add"
    target: str  # the chat, channel or user group
    ok: bool
    #: Why it failed, as a short word the catalogue explains (``mod.problem.<word>``), e.g.
    #: "not_enough_rights", "is_archived", "plan_upgrade_required".
    problem: str | None = None
    #: The invite link this step made (sent to the member or not); the core records it
    #: against the grant, so a revoke can revoke it.
    invite: Invite | None = None


class RolePlatform(Protocol):
    """Carries out a role's meaning on one platform. Never raises for a platform refusal."""

    platform: str

    async def apply(self, member: MemberKey, role: Role) -> list[PlatformStep]: ...

    async def undo(
        self, member: MemberKey, role: Role, kept: Sequence[Role] = ()
    ) -> list[PlatformStep]:
        """Undo ``role``, leaving open what the member's ``kept`` roles still open."""
        ...

    async def revoke_invite(self, member: MemberKey, invite: Invite) -> PlatformStep:
        """Make ``invite`` (made for ``member``'s role) admit nobody any more."""
        ...


def load_role_book(
    path: Path | None, inline: str | None = None, auto: tuple[str, ...] = ()
) -> RoleBook:
    """Roles from ``ROLES_FILE`` (TOML) or ``ROLES`` (the same shape as JSON), and ``AUTO_ROLES``.

    Raises ``RoleBookError`` with a one-line reason an operator can act on.
    """
    if path is not None and inline is not None:
        raise RoleBookError("set ROLES_FILE or ROLES, not both")
    data: Mapping[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise RoleBookError(f"ROLES_FILE {path} does not exist") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RoleBookError(f"cannot read ROLES_FILE {path}: {exc}") from None
        where = str(path)
    elif inline is not None:
        try:
            data = json.loads(inline)
        except json.JSONDecodeError as exc:
            raise RoleBookError(f"ROLES is not JSON: {exc}") from None
        where = "ROLES"
    else:
        where = "the settings"
    table = data.get("roles", {}) if isinstance(data, Mapping) else None
    if not isinstance(table, Mapping):
        raise RoleBookError(f"{where}: 'roles' must be a table of roles")
    unknown_top = sorted(set(data) - {"roles"}) if isinstance(data, Mapping) else []
    if unknown_top:
        raise RoleBookError(f"{where}: unknown section(s) {', '.join(unknown_top)}")
    roles = {name: _role(name, spec, where) for name, spec in table.items()}
    auto = tuple(dict.fromkeys(name.strip().lower() for name in auto if name.strip()))
    missing = [name for name in auto if name not in roles]
    if missing:
        have = ", ".join(sorted(roles)) or "none defined"
        raise RoleBookError(f"AUTO_ROLES names undefined role(s) {', '.join(missing)} ({have})")
    return RoleBook(roles, auto)


def _role(name: str, spec: Any, where: str) -> Role:
    at = f"{where}: role {name!r}"
    if not _NAME.match(name):
        raise RoleBookError(f"{at}: use lower-case letters, digits, - and _ (at most 64)")
    if not isinstance(spec, Mapping):
        raise RoleBookError(f"{at} must be a table")
    _only(spec, {"description", "telegram", "slack"}, at)
    telegram = _table(spec, "telegram", at)
    slack = _table(spec, "slack", at)
    _only(telegram, {"chats", "title"}, f"{at}.telegram")
    _only(slack, {"channels", "usergroup"}, f"{at}.slack")
    chats = telegram.get("chats", [])
    if not isinstance(chats, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in chats
    ):
        raise RoleBookError(f"{at}.telegram.chats must be a list of chat ids like -1001234567890")
    title = telegram.get("title")
    if title is not None and (not isinstance(title, str) or not 0 < len(title) <= 16):
        raise RoleBookError(f"{at}.telegram.title must be 1-16 characters (Telegram's limit)")
    if title is not None and not chats:
        raise RoleBookError(f"{at}.telegram.title needs telegram.chats to set it in")
    channels = slack.get("channels", [])
    if not isinstance(channels, list) or not all(
        isinstance(c, str) and _SLACK_CHANNEL.match(c) for c in channels
    ):
        raise RoleBookError(
            f"{at}.slack.channels must be a list of channel ids like C0123ABCD (not #names)"
        )
    usergroup = slack.get("usergroup")
    if usergroup is not None and not (isinstance(usergroup, str) and _SLACK_GROUP.match(usergroup)):
        raise RoleBookError(f"{at}.slack.usergroup must be a user group id like S0123ABCD")
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise RoleBookError(f"{at}.description must be text")
    return Role(
        name=name,
        description=description,
        telegram=TelegramRole(tuple(chats), title),
        slack=SlackRole(tuple(channels), usergroup),
    )


def _table(spec: Mapping[str, Any], name: str, at: str) -> Mapping[str, Any]:
    value = spec.get(name, {})
    if not isinstance(value, Mapping):
        raise RoleBookError(f"{at}.{name} must be a table")
    return value


def _only(spec: Mapping[str, Any], allowed: set[str], at: str) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise RoleBookError(
            f"{at}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )
