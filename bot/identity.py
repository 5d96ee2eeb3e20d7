"""Who a conversation belongs to: one member of one community on one platform."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MemberKey:
    """A member, as the platform names them.

    ``scope`` is the Telegram bot id or the Slack team id, so the same platform user id
    seen by two bots or two workspaces is two members.
    """

    platform: str
    scope: str
    user_id: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.scope}:{self.user_id}"


@dataclass(frozen=True, slots=True)
class Member:
    """A member together with what the platform tells us about them right now."""

    key: MemberKey
    display_name: str | None = None
    locale: str | None = None
    #: The platform username (Telegram's @name), so moderators can name the member by it.
    handle: str | None = None
