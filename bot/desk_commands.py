"""The moderators' commands, one table for every desk: who may give each, what it is about,
and which ``Moderation`` call answers it. A platform's desk reads the words and the member its
way (a mention, a reply, a user id) and shows the ``Result``; what a command does is here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from bot.identity import MemberKey
from bot.moderation import Actor, Moderation, Rank, Result


@dataclass(frozen=True, slots=True)
class Request:
    """One command as a desk read it."""

    actor: Actor
    #: The member it is about (always set for a command that needs one).
    subject: MemberKey | None = None
    role: str = ""
    page: int = 1
    #: The community the desk serves: its platform and bot id or team id.
    platform: str = ""
    scope: str = ""
    #: Every word after the command's name, for commands that read their own (``fraud``).
    words: tuple[str, ...] = ()


Answer = Callable[[Moderation, Request], Awaitable[Result]]


@dataclass(frozen=True, slots=True)
class DeskCommand:
    #: Moderators' commands are answered where they are given; admins' in private.
    rank: Rank
    answer: Answer
    #: Its first word names a member (``member_needed``: it must).
    about_a_member: bool = False
    member_needed: bool = False
    #: A role's name follows the member.
    takes_role: bool = False

    @property
    def words_needed(self) -> int:
        return int(self.member_needed) + int(self.takes_role)


def _subject(request: Request) -> MemberKey:
    if request.subject is None:  # pragma: no cover - desks check member_needed first
        raise ValueError("this command is about a member")
    return request.subject


async def _roles(moderation: Moderation, request: Request) -> Result:
    if request.subject is None:
        return moderation.role_list()
    return await moderation.roles_of(request.actor, request.subject)


COMMANDS: Mapping[str, DeskCommand] = {
    "grant": DeskCommand(
        Rank.MODERATOR,
        lambda m, r: m.grant(r.actor, _subject(r), r.role),
        about_a_member=True,
        member_needed=True,
        takes_role=True,
    ),
    "revoke": DeskCommand(
        Rank.MODERATOR,
        lambda m, r: m.revoke(r.actor, _subject(r), r.role),
        about_a_member=True,
        member_needed=True,
        takes_role=True,
    ),
    # Without a member: the roles there are.
    "roles": DeskCommand(Rank.MODERATOR, _roles, about_a_member=True),
    "whois": DeskCommand(
        Rank.ADMIN,
        lambda m, r: m.whois(r.actor, _subject(r)),
        about_a_member=True,
        member_needed=True,
    ),
    "verified": DeskCommand(
        Rank.ADMIN,
        lambda m, r: m.verified(r.actor, platform=r.platform, scope=r.scope, page=r.page),
    ),
    "stats": DeskCommand(
        Rank.ADMIN, lambda m, r: m.stats(r.actor, platform=r.platform, scope=r.scope)
    ),
    "export": DeskCommand(
        Rank.ADMIN, lambda m, r: m.export(r.actor, platform=r.platform, scope=r.scope)
    ),
    "unlink": DeskCommand(
        Rank.ADMIN,
        lambda m, r: m.unlink(r.actor, _subject(r)),
        about_a_member=True,
        member_needed=True,
    ),
    # "fraud": what the SMS-fraud breaker paused; "fraud lift ES|+3461234" resumes one.
    "fraud": DeskCommand(Rank.ADMIN, lambda m, r: m.fraud(r.actor, r.words)),
}
MODERATOR_COMMANDS = tuple(name for name, c in COMMANDS.items() if c.rank is Rank.MODERATOR)
ADMIN_COMMANDS = tuple(name for name, c in COMMANDS.items() if c.rank is Rank.ADMIN)


async def answer(moderation: Moderation, name: str, request: Request) -> Result:
    """What ``moderation`` answers to the command ``name``; ranks are checked there."""
    return await COMMANDS[name].answer(moderation, request)
