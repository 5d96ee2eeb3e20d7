"""Who a Slack user is: their language, display name, and whether Slack makes them a moderator
(a workspace admin or owner), from ``users.info``, kept briefly in process."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient

from adapters._runtime import TtlCache
from adapters.slack.client import PLATFORM, call
from bot.identity import Member, MemberKey

#: A member's language and name change rarely; one users.info per member per ten minutes.
PROFILE_TTL = 600.0


@dataclass(frozen=True, slots=True)
class Profile:
    locale: str | None = None
    name: str | None = None
    #: A workspace admin or owner: Slack's own moderators.
    admin: bool = False


class Profiles:
    """users.info answers (language, display name, admin), kept briefly in process."""

    def __init__(self, client: AsyncWebClient, ttl: float = PROFILE_TTL) -> None:
        self.client = client
        self._cache: TtlCache[tuple[str, str], Profile] = TtlCache(ttl)

    async def get(self, team_id: str, user_id: str, *, max_age: float | None = None) -> Profile:
        """The member's profile, fetched again when older than ``max_age`` (or the TTL)."""
        hit = self._cache.get((team_id, user_id), max_age=max_age)
        if hit is not None:
            return hit
        answer = await call("users.info", self.client.users_info(user=user_id, include_locale=True))
        user = answer.get("user") if answer else None
        if not isinstance(user, dict):
            return Profile()  # not cached: the next message tries again
        profile = user.get("profile") or {}
        found = Profile(
            locale=user.get("locale"),
            name=profile.get("display_name") or profile.get("real_name") or user.get("name"),
            admin=bool(user.get("is_admin") or user.get("is_owner")),
        )
        self._cache.put((team_id, user_id), found)
        return found

    async def member(self, team_id: str, user_id: str) -> Member:
        return member(team_id, user_id, await self.get(team_id, user_id))

    async def moderator(self, team_id: str, user_id: str, *, max_age: float) -> tuple[Member, bool]:
        """The member, and whether Slack makes them a moderator, asked again after
        ``max_age`` seconds (MODERATOR_CACHE_SECONDS)."""
        profile = await self.get(team_id, user_id, max_age=max_age)
        return member(team_id, user_id, profile), profile.admin


def member(team_id: str, user_id: str, profile: Profile) -> Member:
    key = MemberKey(PLATFORM, team_id, user_id)
    return Member(key, display_name=profile.name, locale=profile.locale)
