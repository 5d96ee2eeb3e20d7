"""The ``RolePlatform`` contract, run over every implementation against its platform's emulator
(as aiogram's storage tests run over every storage): a role applied lets the member into its
places, undone takes them out but leaves what their other roles open, a member of another
community is not touched, and what the platform refuses comes back as a problem word.

Telegram: the role's chats (the member is there, restricted, as a gate holds them); Slack: the
role's channels. A place is "open" to the member when they are in it and free to talk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from telegram import Bot, ChatPermissions

from adapters.slack.roles import SlackRoles
from adapters.telegram.client import file_url_for
from adapters.telegram.roles import TelegramRoles
from bot.identity import MemberKey
from bot.moderation import KNOWN_PROBLEMS
from bot.roles import PlatformStep, Role, RolePlatform, SlackRole, TelegramRole
from bot.texts import Catalogue
from tests.emulators.slack import SlackEmulator
from tests.emulators.specs import require_spec
from tests.emulators.telegram import TelegramEmulator


@dataclass
class World:
    """One platform, its emulator, and a member in it."""

    roles: RolePlatform
    member: MemberKey
    #: The same person, as another bot or workspace knows them.
    stranger: MemberKey
    #: Three places the bot looks after, and one where it may not act.
    places: tuple[str, str, str]
    refusing: str
    role: Callable[[str, Sequence[str]], Role]
    is_open: Callable[[str], bool]


async def telegram_world(stack: AsyncExitStack) -> World:
    emu = stack.enter_context(TelegramEmulator())
    ada = emu.add_user("Ada")
    groups = tuple(emu.add_group(f"Group {n}") for n in range(3))
    # May restrict but not invite: Ada is not there, and a link for her is refused.
    weak = emu.add_group("Weak", bot_rights={"can_restrict_members": True})
    bot = Bot(emu.token, base_url=emu.base_url, base_file_url=file_url_for(emu.base_url))
    await bot.initialize()
    stack.push_async_callback(bot.shutdown)
    for group in groups:  # held at each gate: in, and muted
        emu.join(ada, group)
        await bot.restrict_chat_member(group, ada, ChatPermissions.no_permissions())

    def role(name: str, places: Sequence[str]) -> Role:
        return Role(name, telegram=TelegramRole(tuple(int(p) for p in places)))

    def is_open(place: str) -> bool:
        return emu.member_status(int(place), ada) == "member"

    return World(
        TelegramRoles(bot, Catalogue.load()),
        MemberKey("telegram", str(emu.bot_id), str(ada)),
        MemberKey("telegram", "42", str(ada)),
        (str(groups[0]), str(groups[1]), str(groups[2])),
        str(weak),
        role,
        is_open,
    )


async def slack_world(stack: AsyncExitStack) -> World:
    emu = await stack.enter_async_context(
        SlackEmulator(require_spec("slack-web-api.openapi.json"))
    )
    alice = "U0ALICE001"
    emu.add_user(alice, name="alice")
    channels = ("C0PLACE001", "C0PLACE002", "C0PLACE003")
    for channel in channels:
        emu.add_channel(channel)
    emu.add_channel("C0ARCHIVED", archived=True)

    def role(name: str, places: Sequence[str]) -> Role:
        return Role(name, slack=SlackRole(tuple(places)))

    def is_open(place: str) -> bool:
        return alice in emu.channels[place].members

    return World(
        SlackRoles(AsyncWebClient(token=emu.bot_token, base_url=emu.url)),
        MemberKey("slack", emu.team_id, alice),
        MemberKey("slack", "T0ELSEWHERE", alice),
        channels,
        "C0ARCHIVED",
        role,
        is_open,
    )


@pytest.fixture(params=[telegram_world, slack_world], ids=["telegram", "slack"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    async with AsyncExitStack() as stack:
        yield await request.param(stack)


def summary(steps: Sequence[PlatformStep]) -> list[tuple[str, bool]]:
    return [(step.target, step.ok) for step in steps]


async def test_a_role_applied_opens_its_places_and_undone_closes_them(world: World) -> None:
    first, second, other = world.places
    role = world.role("helper", [first, second])

    applied = await world.roles.apply(world.member, role)
    assert all(step.ok for step in applied), applied
    assert {step.target for step in applied} == {first, second}
    assert (world.is_open(first), world.is_open(second), world.is_open(other)) == (
        True,
        True,
        False,
    )

    undone = await world.roles.undo(world.member, role)
    assert all(step.ok for step in undone), undone
    assert (world.is_open(first), world.is_open(second)) == (False, False)


async def test_undoing_a_role_keeps_what_the_members_other_roles_open(world: World) -> None:
    first, second, _ = world.places
    helper = world.role("helper", [first, second])
    mentor = world.role("mentor", [second])
    await world.roles.apply(world.member, helper)

    undone = await world.roles.undo(world.member, helper, kept=[mentor])
    assert all(step.ok for step in undone), undone
    assert (world.is_open(first), world.is_open(second)) == (False, True)


async def test_a_member_of_another_community_is_not_touched(world: World) -> None:
    first, _, _ = world.places
    role = world.role("helper", [first])
    for steps in (
        await world.roles.apply(world.stranger, role),
        await world.roles.undo(world.stranger, role),
    ):
        assert [(s.action, s.ok, s.problem) for s in steps] == [
            ("connect", False, "not_connected")
        ]
    assert not world.is_open(first)


async def test_what_the_platform_refuses_is_a_problem_word_and_the_rest_is_done(
    world: World,
) -> None:
    first, _, _ = world.places
    role = world.role("helper", [world.refusing, first])
    steps = await world.roles.apply(world.member, role)
    refused = [step for step in steps if not step.ok]
    assert refused and {step.target for step in refused} == {world.refusing}
    assert all(step.problem in KNOWN_PROBLEMS for step in refused), refused
    assert world.is_open(first)
    assert (world.refusing, True) not in summary(steps)
