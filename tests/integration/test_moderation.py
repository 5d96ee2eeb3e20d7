"""The moderators' desk: who may do what, what is recorded, mirrored, reported and logged.

A real directory (SQLite and PostgreSQL) and a real Redis for unlink confirmations. The platform
behind the desk is a recording ``RolePlatform``: the real Telegram and Slack ones are exercised
end to end against their emulators in tests/e2e.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from bot.directory import Directory
from bot.flow import Reply
from bot.identity import Member, MemberKey
from bot.moderation import AUTO, Actor, Moderation, Rank
from bot.policy import CommunityPolicy, Policies
from bot.roles import Invite, PlatformStep, Role, RoleBook, SlackRole, TelegramRole
from bot.store import Store

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ALICE = MemberKey("telegram", "42", "1001")
BOB = MemberKey("telegram", "42", "1002")
MOD = Actor(MemberKey("telegram", "42", "7"), Rank.MODERATOR, "Mo")
ADMIN = Actor(MemberKey("telegram", "42", "9"), Rank.ADMIN, "Ada")
NOBODY = Actor(MemberKey("telegram", "42", "3"), Rank.MEMBER, "Nick")
HELPER = Role("helper", "Helps", TelegramRole((-1001,), "helper"), SlackRole(("C01",)))
VERIFIED = Role("verified", "", TelegramRole((-1002,)))
BOOK = RoleBook({"helper": HELPER, "verified": VERIFIED}, auto=("verified",))


@dataclass
class RecordingPlatform:
    """Remembers what it was asked to do; ``refuse`` makes every step fail with that problem.

    With ``invites``, applying a role makes an invite link in each of its chats (named after
    the member, role and chat); ``while_applying`` runs in the middle of an apply.
    """

    platform: str = "telegram"
    done: list[tuple[str, MemberKey, str]] = field(default_factory=list)
    refuse: str | None = None
    kept: list[tuple[str, ...]] = field(default_factory=list)
    invites: bool = False
    while_applying: Callable[[], None] | None = None

    async def apply(self, member: MemberKey, role: Role) -> list[PlatformStep]:
        if self.while_applying is not None:
            self.while_applying()
        if self.invites:
            self.done.append(("apply", member, role.name))
            return [
                PlatformStep("invite_link", str(chat), True, invite=invite_for(member, role, chat))
                for chat in role.telegram.chats
            ]
        return self._steps("apply", member, role)

    async def revoke_invite(self, member: MemberKey, invite: Invite) -> PlatformStep:
        self.done.append(("revoke_invite", member, invite.url))
        return PlatformStep("revoke_link", invite.place, self.refuse is None, self.refuse)

    async def undo(
        self, member: MemberKey, role: Role, kept: Sequence[Role] = ()
    ) -> list[PlatformStep]:
        self.kept.append(tuple(r.name for r in kept))
        return self._steps("undo", member, role)

    def _steps(self, verb: str, member: MemberKey, role: Role) -> list[PlatformStep]:
        self.done.append((verb, member, role.name))
        ok = self.refuse is None
        return [PlatformStep(verb, str(chat), ok, self.refuse) for chat in role.telegram.chats]


def invite_for(member: MemberKey, role: Role, chat: int) -> Invite:
    url = f"https://t.me/+{member.user_id}-{role.name}{chat}"
    return Invite(str(chat), url, NOW + timedelta(days=1))


@dataclass
class Log:
    lines: list[Reply] = field(default_factory=list)
    chats: list[str | None] = field(default_factory=list)

    async def post(self, line: Reply, *, chat: str | None = None) -> None:
        self.lines.append(line)
        self.chats.append(chat)


@pytest.fixture
def directory(database_url: str) -> Iterator[Directory]:
    directory = Directory(database_url)
    directory.upgrade()
    yield directory
    directory.close()


@pytest.fixture
def platform() -> RecordingPlatform:
    return RecordingPlatform()


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def desk(directory: Directory, store: Store, platform: RecordingPlatform, log: Log) -> Moderation:
    return Moderation(
        directory,
        BOOK,
        {"telegram": platform},
        log,
        store=store,
        admins={"telegram": frozenset({"9"})},
        clock=NOW.timestamp,
    )


def verify(directory: Directory, member: MemberKey, phone: str = "+447700900123") -> None:
    directory.record_verified(
        member, phone_e164=phone, country="GB", display_name="Alice", handle="alice", now=NOW
    )


def keys(result: object) -> list[str]:
    return [reply.key for reply in getattr(result, "replies", ())]


def test_admins_come_from_the_settings_and_moderators_from_the_platform(desk: Moderation) -> None:
    assert desk.rank_of(MemberKey("telegram", "42", "9"), platform_moderator=False) is Rank.ADMIN
    assert desk.rank_of(MemberKey("telegram", "42", "9"), platform_moderator=True) is Rank.ADMIN
    assert desk.rank_of(MOD.key, platform_moderator=True) is Rank.MODERATOR
    assert desk.rank_of(MOD.key, platform_moderator=False) is Rank.MEMBER
    assert desk.rank_of(MemberKey("slack", "T1", "9"), platform_moderator=False) is Rank.MEMBER


async def test_a_moderator_grants_a_role_recorded_mirrored_and_logged(
    desk: Moderation, directory: Directory, platform: RecordingPlatform, log: Log
) -> None:
    verify(directory, ALICE)
    result = await desk.grant(MOD, ALICE, "Helper")
    assert result.ok and keys(result) == ["mod.granted"]
    assert result.replies[0].params == {"member": "Alice @alice (1001)", "role": "helper"}
    assert platform.done == [("apply", ALICE, "helper")]
    link = directory.find(ALICE)
    assert link is not None and link.roles == ("helper",)
    granted = directory.audit_trail(subject=str(ALICE))[0]
    assert (granted.event, granted.actor) == ("role_granted", str(MOD))
    assert [line.key for line in log.lines] == ["modlog.granted"]
    assert log.lines[0].params["by"] == "Mo"
    again = await desk.grant(MOD, ALICE, "helper")
    assert keys(again) == ["mod.already_has"] and len(platform.done) == 1


async def test_only_verified_members_receive_roles(
    desk: Moderation, platform: RecordingPlatform
) -> None:
    result = await desk.grant(MOD, BOB, "helper")
    assert not result.ok and keys(result) == ["mod.not_verified"]
    assert platform.done == []


async def test_an_unknown_role_lists_the_roles_there_are(
    desk: Moderation, directory: Directory
) -> None:
    verify(directory, ALICE)
    result = await desk.grant(MOD, ALICE, "boss")
    assert keys(result) == ["mod.unknown_role"]
    assert result.replies[0].params == {"role": "boss", "roles": "helper, verified"}


async def test_anyone_else_is_refused_politely_and_the_attempt_is_audited(
    desk: Moderation, directory: Directory, platform: RecordingPlatform
) -> None:
    verify(directory, ALICE)
    grant = await desk.grant(NOBODY, ALICE, "helper")
    assert not grant.ok and keys(grant) == ["mod.refused.moderator"]
    whois = await desk.whois(MOD, ALICE)  # a moderator is not an admin
    assert keys(whois) == ["mod.refused.admin"]
    refusals = [e for e in directory.audit_trail() if e.event == "refused"]
    assert [(e.actor, e.details["command"]) for e in refusals] == [
        (str(MOD), "whois"),
        (str(NOBODY), "grant"),
    ]
    assert platform.done == []


async def test_a_platform_refusal_is_reported_audited_and_the_grant_stands(
    desk: Moderation, directory: Directory, platform: RecordingPlatform, log: Log
) -> None:
    verify(directory, ALICE)
    platform.refuse = "not_enough_rights"
    result = await desk.grant(MOD, ALICE, "helper")
    assert keys(result) == ["mod.granted", "mod.problem.not_enough_rights", "mod.sync_hint"]
    assert result.replies[1].params == {"target": "-1001", "action": "apply"}
    failure = directory.audit_trail(subject=str(ALICE))[0]
    assert failure.event == "role_apply_failed"
    assert failure.details == {"role": "helper", "steps": [["apply", "-1001", "not_enough_rights"]]}
    assert [line.key for line in log.lines] == ["modlog.not_applied", "modlog.granted"]
    link = directory.find(ALICE)
    assert link is not None and link.roles == ("helper",)


async def test_an_unknown_problem_is_shown_as_the_platform_said_it(
    desk: Moderation, directory: Directory, platform: RecordingPlatform
) -> None:
    verify(directory, ALICE)
    platform.refuse = "user_is_restricted"
    result = await desk.grant(MOD, ALICE, "helper")
    assert result.replies[1].key == "mod.problem.other"
    assert result.replies[1].params["problem"] == "user_is_restricted"


async def test_revoking_undoes_the_platform_action_and_records_who(
    desk: Moderation, directory: Directory, platform: RecordingPlatform, log: Log
) -> None:
    verify(directory, ALICE)
    await desk.grant(MOD, ALICE, "helper")
    result = await desk.revoke(MOD, ALICE, "helper")
    assert keys(result) == ["mod.revoked"]
    assert platform.done[-1] == ("undo", ALICE, "helper")
    assert platform.kept == [()]
    revoked = directory.audit_trail(subject=str(ALICE))[0]
    assert (revoked.event, revoked.actor) == ("role_revoked", str(MOD))
    assert log.lines[-1].key == "modlog.revoked"
    assert keys(await desk.revoke(MOD, ALICE, "helper")) == ["mod.not_held"]


async def test_a_members_roles_are_listed_for_moderators(
    desk: Moderation, directory: Directory
) -> None:
    verify(directory, ALICE)
    assert keys(await desk.roles_of(MOD, ALICE)) == ["mod.no_roles"]
    await desk.grant(MOD, ALICE, "helper")
    await desk.grant(MOD, ALICE, "verified")
    listed = await desk.roles_of(MOD, ALICE)
    assert listed.replies[0].params["roles"] == "helper, verified"
    assert "helper: Helps" in str(desk.role_list().replies[0].params["roles"])


async def test_verification_logs_and_gives_the_auto_roles_once(
    desk: Moderation, directory: Directory, platform: RecordingPlatform, log: Log
) -> None:
    verify(directory, ALICE)
    await desk.member_verified(Member(ALICE))
    await desk.member_verified(Member(ALICE))
    assert platform.done == [("apply", ALICE, "verified")]
    grant = directory.audit_trail(subject=str(ALICE))[0]
    assert (grant.event, grant.actor) == ("role_granted", AUTO)
    assert [line.key for line in log.lines] == ["modlog.verified", "modlog.verified"]


async def test_a_verification_is_logged_under_the_names_the_platform_gave_with_it(
    directory: Directory, store: Store, platform: RecordingPlatform, log: Log
) -> None:
    # No auto roles: the line is all there is to do, and the member's message named them.
    desk = Moderation(directory, RoleBook(BOOK.roles), {"telegram": platform}, log, store=store)
    verify(directory, ALICE)  # on file as "Alice @alice"
    await desk.member_verified(Member(ALICE, display_name="Alice Liddell", handle="alice_l"))
    # Without a display name from the platform, the directory's is used.
    await desk.member_verified(Member(ALICE))
    assert [line.params["member"] for line in log.lines] == [
        "Alice Liddell @alice_l (1001)",
        "Alice @alice (1001)",
    ]


async def test_whois_shows_a_masked_phone_and_never_the_number(
    desk: Moderation, directory: Directory
) -> None:
    verify(directory, ALICE)
    result = await desk.whois(ADMIN, ALICE)
    assert keys(result) == ["mod.whois.verified"]
    params = result.replies[0].params
    assert params["phone"] == "+44•••••0123" and params["verified_at"] == "2026-11-25 12:00 UTC"
    assert "447700900123" not in repr(result)
    looked_up = directory.audit_trail(subject=str(ALICE))[0]
    assert (looked_up.event, looked_up.actor) == ("looked_up", str(ADMIN))
    assert keys(await desk.whois(ADMIN, BOB)) == ["mod.whois.unknown"]


async def test_the_verified_list_comes_in_pages(desk: Moderation, directory: Directory) -> None:
    for n in range(23):
        member = MemberKey("telegram", "42", str(5000 + n))
        verify(directory, member, phone=f"+4477009001{n:02d}")
    first = await desk.verified(ADMIN, platform="telegram", scope="42")
    assert first.paging is not None and (first.paging.page, first.paging.pages) == (1, 3)
    assert first.replies[0].params["total"] == 23
    assert str(first.replies[0].params["lines"]).count("\n") == 9
    last = await desk.verified(ADMIN, platform="telegram", scope="42", page=99)
    assert last.paging is not None and last.paging.page == 3
    assert str(last.replies[0].params["lines"]).count("•••••") == 3
    empty = await desk.verified(ADMIN, platform="slack", scope="T1")
    assert keys(empty) == ["mod.verified.empty"] and empty.paging is None


async def test_stats_are_for_admins(desk: Moderation, directory: Directory) -> None:
    verify(directory, ALICE)
    directory.audit("code_sent", actor=str(ALICE), subject=str(ALICE), now=NOW)
    result = await desk.stats(ADMIN, platform="telegram", scope="42")
    assert result.replies[0].params == {
        "verified": 1,
        "pending": 0,
        "started": 1,
        "sms": 1,
        "conversion": "100%",
    }


async def test_an_export_masks_phones_unless_revealed_and_revealing_is_audited(
    desk: Moderation, directory: Directory
) -> None:
    verify(directory, ALICE)
    masked = await desk.export(ADMIN, platform="telegram", scope="42")
    assert masked.document is not None
    assert masked.document.filename == "verifybot-telegram-20261125-1200.csv"
    text = masked.document.content.decode()
    assert "+44•••••0123" in text and "447700900123" not in text
    revealed = await desk.export(ADMIN, platform="telegram", scope="42", reveal_phones=True)
    assert revealed.document is not None and b"+447700900123" in revealed.document.content
    events = [(e.event, e.actor) for e in directory.audit_trail(subject="telegram:42")]
    assert events == [("phones_revealed", str(ADMIN)), ("exported", str(ADMIN))]


async def test_unlinking_asks_first_and_the_confirmation_works_once_for_its_admin(
    desk: Moderation, directory: Directory, platform: RecordingPlatform, log: Log
) -> None:
    verify(directory, ALICE)
    await desk.grant(MOD, ALICE, "helper")
    asked = await desk.unlink(ADMIN, ALICE)
    assert keys(asked) == ["mod.unlink.confirm"] and asked.confirm
    assert directory.find_verified(ALICE) is not None  # nothing happens before confirming
    other_admin = Actor(MemberKey("telegram", "42", "10"), Rank.ADMIN)
    assert keys(await desk.confirm_unlink(other_admin, asked.confirm)) == ["mod.unlink.expired"]
    asked = await desk.unlink(ADMIN, ALICE)
    assert asked.confirm is not None
    done = await desk.confirm_unlink(ADMIN, asked.confirm)
    assert keys(done) == ["mod.unlink.done"]
    assert directory.find_verified(ALICE) is None
    link = directory.find(ALICE)
    assert link is not None and link.roles == ()
    assert platform.done[-1] == ("undo", ALICE, "helper")
    assert log.lines[-1].key == "modlog.unlinked"
    assert keys(await desk.confirm_unlink(ADMIN, asked.confirm)) == ["mod.unlink.expired"]


async def test_a_cancelled_unlink_cannot_be_confirmed(
    desk: Moderation, directory: Directory
) -> None:
    verify(directory, ALICE)
    asked = await desk.unlink(ADMIN, ALICE)
    assert asked.confirm is not None
    assert keys(await desk.cancel_unlink(asked.confirm)) == ["mod.unlink.cancelled"]
    assert keys(await desk.confirm_unlink(ADMIN, asked.confirm)) == ["mod.unlink.expired"]
    assert directory.find_verified(ALICE) is not None


async def test_members_are_named_by_handle(desk: Moderation, directory: Directory) -> None:
    verify(directory, ALICE)
    assert await desk.resolve("telegram", "42", "@ALICE") == ALICE
    assert await desk.resolve("telegram", "42", "@nobody") is None
    assert await desk.resolve("telegram", "42", "1002") == BOB


async def test_sync_applies_every_active_grant_again_and_reports_failures(
    desk: Moderation, directory: Directory, platform: RecordingPlatform
) -> None:
    verify(directory, ALICE)
    verify(directory, BOB, phone="+447700900456")
    await desk.grant(MOD, ALICE, "helper")
    await desk.grant(MOD, BOB, "verified")
    await desk.revoke(MOD, BOB, "verified")
    platform.done.clear()
    platform.refuse = "is_archived"
    report = await desk.sync(ADMIN)
    assert report.grants == 1 and platform.done == [("apply", ALICE, "helper")]
    assert [(member, role, step.problem) for member, role, step in report.failed] == [
        (str(ALICE), "helper", "is_archived")
    ]
    with pytest.raises(PermissionError):
        await desk.sync(MOD)


async def test_revoking_one_role_keeps_open_what_another_role_still_opens(
    desk: Moderation, directory: Directory, platform: RecordingPlatform
) -> None:
    verify(directory, ALICE)
    await desk.grant(MOD, ALICE, "helper")
    await desk.grant(MOD, ALICE, "verified")
    await desk.revoke(MOD, ALICE, "helper")
    assert platform.kept == [("verified",)]


async def test_a_deep_link_back_to_a_group_is_not_news_for_the_log(
    desk: Moderation, directory: Directory, platform: RecordingPlatform, log: Log
) -> None:
    verify(directory, ALICE)
    await desk.member_verified(Member(ALICE), fresh=False)
    assert log.lines == []
    assert platform.done == [("apply", ALICE, "verified")]  # auto roles are still ensured


async def test_a_group_s_own_log_chat_and_auto_roles_replace_the_process_wide_ones(
    directory: Directory, store: Store, platform: RecordingPlatform, log: Log, key_prefix: str
) -> None:
    defaults = {"telegram": CommunityPolicy(log_chat="-100999", auto_roles=("verified",))}
    policies = Policies(store.redis, directory, defaults, prefix=key_prefix)
    desk = Moderation(
        directory, BOOK, {"telegram": platform}, log, store=store, clock=NOW.timestamp,
        policies=policies,
    )  # fmt: skip
    # The operator gives Chess club its own log chat and auto role (``verifybot policy set``).
    await policies.change("telegram:-1005", "auto_roles", "helper", actor="cli:host:op")
    await policies.change("telegram:-1005", "log_chat", "-1005555", actor="cli:host:op")
    bob = MemberKey("telegram", "42", "1002")
    verify(directory, ALICE)
    verify(directory, bob, "+447700900456")

    await desk.member_verified(Member(ALICE), origin="-1005")  # for Chess club
    await desk.member_verified(Member(bob), origin="-1006")  # for a group that set nothing

    assert platform.done == [("apply", ALICE, "helper"), ("apply", bob, "verified")]
    assert [(line.key, chat) for line, chat in zip(log.lines, log.chats, strict=True)] == [
        ("modlog.verified", "-1005555"),
        ("modlog.verified", "-100999"),
    ]


async def test_an_auto_role_gone_from_the_roles_file_is_skipped_and_the_rest_given(
    directory: Directory, store: Store, platform: RecordingPlatform, log: Log, key_prefix: str
) -> None:
    defaults = {"telegram": CommunityPolicy(auto_roles=("retired", "verified"))}
    policies = Policies(store.redis, directory, defaults, prefix=key_prefix)
    desk = Moderation(directory, BOOK, {"telegram": platform}, log, policies=policies)
    verify(directory, ALICE)
    await desk.member_verified(Member(ALICE), origin="-1005")
    assert platform.done == [("apply", ALICE, "verified")]


# -- invite links a grant made -----------------------------------------------------------------


async def test_revoking_revokes_the_links_the_grant_made_before_removing_the_member(
    desk: Moderation, directory: Directory, platform: RecordingPlatform
) -> None:
    verify(directory, ALICE)
    platform.invites = True
    await desk.grant(MOD, ALICE, "helper")
    await desk.grant(MOD, ALICE, "verified")
    platform.done.clear()

    result = await desk.revoke(MOD, ALICE, "helper")

    assert keys(result) == ["mod.revoked"]
    helper_link = invite_for(ALICE, HELPER, -1001).url
    assert platform.done == [("revoke_invite", ALICE, helper_link), ("undo", ALICE, "helper")]
    assert directory.invites_to_revoke(ALICE, now=NOW) == []  # confirmed: nothing left
    assert directory.invite_withdrawn(helper_link) is True
    assert directory.invite_withdrawn(invite_for(ALICE, VERIFIED, -1002).url) is False


async def test_a_refused_revocation_is_reported_audited_and_left_to_revoke(
    desk: Moderation, directory: Directory, platform: RecordingPlatform
) -> None:
    verify(directory, ALICE)
    platform.invites = True
    await desk.grant(MOD, ALICE, "helper")
    platform.refuse = "not_enough_rights"

    result = await desk.revoke(MOD, ALICE, "helper")

    assert keys(result)[:2] == ["mod.revoked", "mod.problem.not_enough_rights"]
    [failed] = [
        e for e in directory.audit_trail(subject=str(ALICE)) if e.event == "role_undo_failed"
    ]
    assert failed.details["steps"][0] == ["revoke_link", "-1001", "not_enough_rights"]
    assert directory.invites_to_revoke(ALICE, now=NOW) == [invite_for(ALICE, HELPER, -1001)]

    report = await desk.sync(ADMIN)  # the right is back: sync revokes what was left
    assert [(member, role, step.action) for member, role, step in report.failed] == [
        (str(ALICE), "helper", "revoke_link")
    ]
    platform.refuse = None
    platform.done.clear()
    report = await desk.sync(ADMIN)
    assert report.failed == ()
    assert platform.done == [("revoke_invite", ALICE, invite_for(ALICE, HELPER, -1001).url)]
    assert directory.invites_to_revoke(ALICE, now=NOW) == []


async def test_a_link_made_while_its_grant_was_revoked_is_revoked_at_once(
    desk: Moderation, directory: Directory, platform: RecordingPlatform
) -> None:
    verify(directory, ALICE)
    platform.invites = True

    def revoked_meanwhile() -> None:
        directory.revoke_role(ALICE, "helper", revoked_by="another moderator", now=NOW)

    platform.while_applying = revoked_meanwhile
    await desk.grant(MOD, ALICE, "helper")

    late = invite_for(ALICE, HELPER, -1001).url
    assert platform.done == [("apply", ALICE, "helper"), ("revoke_invite", ALICE, late)]


async def test_a_role_gone_from_the_roles_file_still_has_its_links_revoked(
    desk: Moderation, directory: Directory, platform: RecordingPlatform
) -> None:
    verify(directory, ALICE)
    platform.invites = True
    await desk.grant(MOD, ALICE, "helper")
    desk.roles = RoleBook({"verified": VERIFIED})
    platform.done.clear()

    result = await desk.revoke(MOD, ALICE, "helper")

    assert keys(result) == ["mod.revoked"]
    assert platform.done == [("revoke_invite", ALICE, invite_for(ALICE, HELPER, -1001).url)]


async def test_unlinking_revokes_the_links_of_every_role(
    desk: Moderation, directory: Directory, platform: RecordingPlatform
) -> None:
    verify(directory, ALICE)
    platform.invites = True
    await desk.grant(MOD, ALICE, "helper")
    await desk.grant(MOD, ALICE, "verified")
    platform.done.clear()

    await desk.unlink(ADMIN, ALICE, confirmed=True)

    revoked = [url for verb, _, url in platform.done if verb == "revoke_invite"]
    assert revoked == [invite_for(ALICE, HELPER, -1001).url, invite_for(ALICE, VERIFIED, -1002).url]
