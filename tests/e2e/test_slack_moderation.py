"""Moderating on Slack: ``/verifybot``, the "Grant a role" shortcut, roles mirrored into
channels and user groups, and the log channel. The real bolt app and slack-sdk against the
Slack emulator, with a real core (Redis, SQLite) behind them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.slack.roles import SlackRoles, standalone
from adapters.slack.views import (
    CODE_INPUT,
    CODE_VIEW,
    GRANT_SHORTCUT,
    GRANT_VIEW,
    PAGE_NEXT,
    PAGE_PREVIOUS,
    PHONE_INPUT,
    PHONE_VIEW,
    ROLE_INPUT,
    UNLINK_CANCEL,
    UNLINK_CONFIRM,
)
from bot.directory.models import RoleGrantRow
from bot.identity import MemberKey
from bot.roles import Role, SlackRole
from bot.settings import ConfigError
from bot.texts import Catalogue
from tests.e2e.slack_harness import MASKED, PHONE, TEAM, Harness, running, texts, until
from tests.emulators.slack_requests import (
    block_action,
    event_callback,
    message_shortcut,
    slash_command,
    verifybot,
    view_submission,
)

ADMIN = "U0ADMIN001"  # a workspace admin: a moderator
OWNER = "U0OWNER001"  # in SLACK_ADMIN_IDS: an admin
PLAIN = "U0PLAIN001"  # nobody in particular
ALICE = "U0ALICE001"
BOB = "U0BOB00001"
LOG = "C0MODLOG01"
HELPERS = ("C0HELPERS1", "C0HELPERS2")
ROLES = {
    "roles": {
        "verified": {
            "description": "Every verified member",
            "slack": {"channels": ["C0VERIFIED"], "usergroup": "S0VERIFIED"},
        },
        "helper": {
            "description": "Helps newcomers",
            "slack": {"channels": list(HELPERS), "usergroup": "S0HELPERS1"},
        },
    }
}


def key(user: str) -> MemberKey:
    return MemberKey("slack", TEAM, user)


def settings(**overrides: Any) -> dict[str, Any]:
    return {
        "roles": json.dumps(ROLES),
        "auto_roles": "verified",
        "slack_admin_ids": OWNER,
        "slack_log_channel": LOG,
        **overrides,
    }


def set_up_workspace(h: Harness) -> None:
    h.emu.add_user(ADMIN, name="admin", is_admin=True)
    h.emu.add_user(OWNER, name="owner")
    h.emu.add_user(PLAIN, name="plain")
    h.emu.add_user(ALICE, name="alice")
    h.emu.add_user(BOB, name="bob")
    for channel in ("C0VERIFIED", *HELPERS, LOG):
        h.emu.add_channel(channel)
    h.emu.usergroups["S0VERIFIED"] = [BOB]
    h.emu.usergroups["S0HELPERS1"] = [BOB]


@pytest.fixture
async def slack(make_settings: Callable[..., Any]) -> AsyncIterator[Harness]:
    async with running(make_settings, **settings()) as harness:
        set_up_workspace(harness)
        yield harness


def link(h: Harness, user: str, phone: str = "+447400123456", name: str = "alice") -> None:
    """A member verified earlier (the directory written directly, for speed)."""
    h.app.directory.record_verified(
        key(user), phone_e164=phone, country="GB", display_name=name, now=datetime.now(UTC)
    )


async def ask(h: Harness, user: str, text: str) -> dict[str, Any]:
    """``/verifybot <text>`` as ``user``; the ephemeral answer it gets."""
    url = h.emu.new_response_url()
    status, _ = await h.post(verifybot(TEAM, user, text, response_url=url, trigger_id="1.2.3"))
    assert status == 200
    answers = await until(lambda: h.emu.responded(url))
    answer: dict[str, Any] = answers[-1]
    assert answer["response_type"] == "ephemeral"
    return answer


async def press(
    h: Harness, user: str, action_id: str, value: str, under: dict[str, Any]
) -> dict[str, Any]:
    """Press a button of ``under`` (an ephemeral answer); what replaces that answer."""
    assert buttons(under).get(action_id) == value, buttons(under)
    url = h.emu.new_response_url()
    body = block_action(
        TEAM,
        user,
        action_id,
        "1.2.3",
        channel="C0GENERAL1",
        value=value,
        response_url=url,
        ephemeral=True,
    )
    assert (await h.post(body))[0] == 200
    answer: dict[str, Any] = (await until(lambda: h.emu.responded(url)))[-1]
    assert answer["replace_original"] is True
    return answer


def buttons(answer: dict[str, Any]) -> dict[str, str]:
    return {
        e["action_id"]: e["value"]
        for b in answer.get("blocks", [])
        if b["type"] == "actions"
        for e in b["elements"]
    }


def entries(answer: dict[str, Any]) -> int:
    return sum(line.startswith("• ") for line in answer["text"].splitlines())


def log_lines(h: Harness) -> list[str]:
    return [m["text"] for m in h.emu.messages.get(LOG, [])]


def grants(h: Harness, user: str) -> list[tuple[str, str, bool]]:
    """(role, granted_by, revoked) for every grant the directory holds for ``user``."""
    with Session(h.app.directory.engine) as session:
        rows = session.scalars(select(RoleGrantRow).order_by(RoleGrantRow.id)).all()
        found = [r for r in rows if r.link.user_id == user]
        return [(r.role, r.granted_by, r.revoked_at is not None) for r in found]


def audit(h: Harness, event: str) -> list[Any]:
    return [e for e in h.app.directory.audit_trail() if e.event == event]


# --- moderators grant and revoke ----------------------------------------------------------


async def test_a_workspace_admin_grants_a_role(slack: Harness) -> None:
    link(slack, ALICE)
    answer = await ask(slack, ADMIN, f"grant <@{ALICE}|alice> helper")
    assert answer["text"] == "Gave alice (U0ALICE001) the role helper."
    # Invited to every channel of the role.
    for channel in HELPERS:
        assert ALICE in slack.emu.channels[channel].members
    # The user group: read, add, write the whole list back (update replaces it).
    group_calls = [c for c in slack.emu.calls if c.method.startswith("usergroups.")]
    assert [c.method for c in group_calls] == ["usergroups.users.list", "usergroups.users.update"]
    assert group_calls[1].args["users"] == f"{BOB},{ALICE}"
    assert slack.emu.usergroups["S0HELPERS1"] == [BOB, ALICE]
    # The directory is the source of truth, and says who granted it.
    assert grants(slack, ALICE) == [("helper", f"slack:{TEAM}:{ADMIN}", False)]
    assert "➕ admin gave alice (U0ALICE001) the role helper." in log_lines(slack)
    roles = await ask(slack, ADMIN, f"roles <@{ALICE}>")
    assert roles["text"] == "alice (U0ALICE001) has: helper."


async def test_a_role_held_already_is_said_so_and_nothing_is_called(slack: Harness) -> None:
    link(slack, ALICE)
    await ask(slack, ADMIN, f"grant <@{ALICE}> helper")
    calls = len(slack.emu.calls)
    answer = await ask(slack, ADMIN, f"grant <@{ALICE}> helper")
    assert answer["text"] == "alice (U0ALICE001) already has the role helper."
    assert [c.method for c in slack.emu.calls[calls:]] == []


async def test_roles_are_for_verified_members_only(slack: Harness) -> None:
    answer = await ask(slack, ADMIN, f"grant <@{BOB}|bob> helper")
    assert answer["text"] == (
        "U0BOB00001 hasn't verified a phone number, and roles are for verified members only."
    )
    assert slack.emu.calls_to("conversations.invite") == []
    assert grants(slack, BOB) == []


async def test_an_unknown_role_lists_the_roles_there_are(slack: Harness) -> None:
    link(slack, ALICE)
    answer = await ask(slack, ADMIN, f"grant <@{ALICE}> wizard")
    assert answer["text"] == "There is no role called wizard. Roles: helper, verified."
    listing = await ask(slack, PLAIN, "roles")  # anyone may see the names
    assert "• helper: Helps newcomers" in listing["text"]


async def test_someone_who_is_not_a_moderator_is_refused_politely_and_audited(
    slack: Harness,
) -> None:
    link(slack, ALICE)
    answer = await ask(slack, PLAIN, f"grant <@{ALICE}> helper")
    assert answer["text"] == "Sorry, only moderators can do that."
    assert slack.emu.calls_to("conversations.invite") == []
    (refused,) = audit(slack, "refused")
    assert refused.actor == f"slack:{TEAM}:{PLAIN}"
    assert refused.subject == f"slack:{TEAM}:{ALICE}"
    assert refused.details == {"command": "grant"}
    # A workspace admin is a moderator, not an admin.
    whois = await ask(slack, ADMIN, f"whois <@{ALICE}>")
    assert whois["text"] == "Sorry, only admins can do that."
    assert len(audit(slack, "refused")) == 2


async def test_a_demoted_admin_is_refused_once_the_cache_says_so(
    make_settings: Callable[..., Any],
) -> None:
    async with running(make_settings, **settings(moderator_cache_seconds=0)) as h:
        set_up_workspace(h)
        link(h, ALICE)
        assert (await ask(h, ADMIN, f"grant <@{ALICE}> helper"))["text"].startswith("Gave")
        h.emu.users[ADMIN]["is_admin"] = False  # demoted in Slack
        answer = await ask(h, ADMIN, f"revoke <@{ALICE}> helper")
        assert answer["text"] == "Sorry, only moderators can do that."


async def test_revoke_removes_from_the_channels_and_the_group(slack: Harness) -> None:
    link(slack, ALICE)
    await ask(slack, ADMIN, f"grant <@{ALICE}> helper")
    answer = await ask(slack, ADMIN, f"revoke {ALICE} helper")  # a bare id works too
    assert answer["text"] == "Took the role helper from alice (U0ALICE001)."
    kicked = [c.args["channel"] for c in slack.emu.calls_to("conversations.kick")]
    assert kicked == list(HELPERS)
    assert all(ALICE not in slack.emu.channels[c].members for c in HELPERS)
    assert slack.emu.usergroups["S0HELPERS1"] == [BOB]
    assert grants(slack, ALICE) == [("helper", f"slack:{TEAM}:{ADMIN}", True)]
    assert "➖ admin took the role helper from alice (U0ALICE001)." in log_lines(slack)


async def test_a_user_groups_last_member_stays_and_it_is_said_why(slack: Harness) -> None:
    link(slack, ALICE)
    slack.emu.usergroups["S0HELPERS1"] = []
    await ask(slack, ADMIN, f"grant <@{ALICE}> helper")
    assert slack.emu.usergroups["S0HELPERS1"] == [ALICE]
    answer = await ask(slack, ADMIN, f"revoke <@{ALICE}> helper")
    assert "S0HELPERS1: the member is the group's last one" in answer["text"]
    assert slack.emu.usergroups["S0HELPERS1"] == [ALICE]  # not emptied, not disabled
    assert grants(slack, ALICE)[0][2] is True  # the revoke stands in the directory
    (failed,) = audit(slack, "role_undo_failed")
    assert failed.details["steps"] == [["usergroup_remove", "S0HELPERS1", "last_in_usergroup"]]


async def test_a_free_plan_is_said_clearly_and_the_grant_stands(slack: Harness) -> None:
    link(slack, ALICE)
    slack.emu.free_plan = True
    answer = await ask(slack, ADMIN, f"grant <@{ALICE}> helper")
    assert answer["text"].splitlines() == [
        "Gave alice (U0ALICE001) the role helper.",
        "S0HELPERS1: user groups need a paid Slack plan, so the member was not added to it.",
        "The grant is recorded. Fix the bot's rights, then `verifybot roles sync` applies it "
        "again.",
    ]
    assert all(ALICE in slack.emu.channels[c].members for c in HELPERS)  # channels still done
    assert grants(slack, ALICE) == [("helper", f"slack:{TEAM}:{ADMIN}", False)]
    (failed,) = audit(slack, "role_apply_failed")
    assert failed.details == {
        "role": "helper",
        "steps": [["usergroup_add", "S0HELPERS1", "plan_upgrade_required"]],
    }
    assert any(line.startswith("⚠️ 1 step(s) of the role helper") for line in log_lines(slack))


async def test_an_archived_channel_and_one_without_the_bot_are_reported(slack: Harness) -> None:
    link(slack, ALICE)
    slack.emu.channels[HELPERS[0]].archived = True
    slack.emu.channels[HELPERS[1]].bot_in = False
    answer = await ask(slack, ADMIN, f"grant <@{ALICE}> helper")
    assert "C0HELPERS1: the channel is archived." in answer["text"]
    assert "C0HELPERS2: the bot is not in that channel" in answer["text"]
    assert slack.emu.usergroups["S0HELPERS1"] == [BOB, ALICE]


# --- the message shortcut -----------------------------------------------------------------


async def shortcut(h: Harness, user: str, author: str) -> str:
    url = h.emu.new_response_url()
    message = {"user": author, "text": "I can help with onboarding", "ts": "1700000000.000100"}
    body = message_shortcut(
        TEAM, user, GRANT_SHORTCUT, h.emu.new_trigger(), message, response_url=url
    )
    assert (await h.post(body))[0] == 200
    return url


async def test_the_message_shortcut_grants_a_role_to_the_author(slack: Harness) -> None:
    link(slack, ALICE)
    await shortcut(slack, ADMIN, ALICE)
    modal = await slack.modal_with(GRANT_VIEW)
    assert f"Which role should <@{ALICE}> get?" in texts(modal)
    select = next(b for b in modal["blocks"] if b.get("block_id") == ROLE_INPUT)["element"]
    assert [o["value"] for o in select["options"]] == ["helper", "verified"]
    submission = view_submission(TEAM, ADMIN, modal, {}, selected={ROLE_INPUT: "helper"})
    status, ack = await slack.post(submission)
    assert status == 200 and ack["response_action"] == "update"
    assert "One moment" in texts(ack["view"])
    done = await until(lambda: "Gave" in texts(slack.modal()) and slack.modal())
    assert "Gave alice (U0ALICE001) the role helper." in texts(done)
    assert all(ALICE in slack.emu.channels[c].members for c in HELPERS)
    assert grants(slack, ALICE) == [("helper", f"slack:{TEAM}:{ADMIN}", False)]


async def test_the_shortcut_refuses_someone_who_is_not_a_moderator(slack: Harness) -> None:
    link(slack, ALICE)
    url = await shortcut(slack, PLAIN, ALICE)
    (answer,) = await until(lambda: slack.emu.responded(url))
    assert answer["text"] == "Sorry, only moderators can do that."
    assert slack.emu.calls_to("views.open") == []
    assert [e.actor for e in audit(slack, "refused")] == [f"slack:{TEAM}:{PLAIN}"]


# --- verification: AUTO_ROLES and the log channel -----------------------------------------


async def test_verifying_in_the_modal_gives_auto_roles_and_a_log_line(slack: Harness) -> None:
    status, _ = await slack.post(slash_command(TEAM, ALICE, slack.emu.new_trigger()))
    assert status == 200
    phone_view = await slack.modal_with(PHONE_VIEW)
    await slack.post(view_submission(TEAM, ALICE, phone_view, {PHONE_INPUT: PHONE}))
    code_view = await slack.modal_with(CODE_VIEW)
    code = {CODE_INPUT: slack.inbox.last_code}
    status, answer = await slack.post(view_submission(TEAM, ALICE, code_view, code))
    assert answer["response_action"] == "update"
    await until(lambda: ALICE in slack.emu.usergroups["S0VERIFIED"])
    assert ALICE in slack.emu.channels["C0VERIFIED"].members
    assert slack.emu.usergroups["S0VERIFIED"] == [BOB, ALICE]
    assert grants(slack, ALICE) == [("verified", "auto", False)]
    assert log_lines(slack) == ["✅ alice (U0ALICE001) verified their phone number."]


async def test_verifying_in_the_dm_gives_auto_roles_too(slack: Harness) -> None:
    slack.emu.dms[ALICE] = "D0ALICEDM1"

    async def say(text: str) -> None:
        event = {
            "type": "message",
            "channel": "D0ALICEDM1",
            "channel_type": "im",
            "user": ALICE,
            "text": text,
            "ts": "1700000000.000100",
        }
        assert (await slack.post(event_callback(TEAM, event), json_body=True))[0] == 200

    start = block_action(
        TEAM, ALICE, "verifybot.start", slack.emu.new_trigger(), channel="D0ALICEDM1"
    )
    await slack.post(start)
    await until(lambda: slack.emu.dm_messages(ALICE))
    await say(PHONE)
    # As a member would: the code is typed once the bot says it was sent (the "SMS" goes out
    # a moment before the conversation is saved as waiting for it).
    await until(lambda: any("I've sent" in m["text"] for m in slack.emu.dm_messages(ALICE)))
    await say(slack.inbox.last_code)
    await until(lambda: ALICE in slack.emu.channels["C0VERIFIED"].members)
    assert grants(slack, ALICE) == [("verified", "auto", False)]
    assert log_lines(slack) == ["✅ alice (U0ALICE001) verified their phone number."]


async def test_a_display_name_cannot_ping_the_log_channel(slack: Harness) -> None:
    link(slack, ALICE, name="<!channel> alice")
    await ask(slack, ADMIN, f"grant <@{ALICE}> helper")
    (line,) = [line for line in log_lines(slack) if line.startswith("➕")]
    assert "<!channel>" not in line and "&lt;!channel&gt; alice" in line


# --- admins -------------------------------------------------------------------------------


async def test_an_admin_named_in_the_settings_uses_admin_commands(slack: Harness) -> None:
    link(slack, ALICE)
    whois = await ask(slack, OWNER, f"whois <@{ALICE}|alice>")
    lines = whois["text"].splitlines()
    assert lines[0] == "alice (U0ALICE001)"
    assert lines[1].startswith(f"Verified with {MASKED} on ")
    assert "7400123456" not in json.dumps(whois)  # the whole number never shows
    # Every admin is a moderator too.
    grant = await ask(slack, OWNER, f"grant <@{ALICE}> helper")
    assert grant["text"] == "Gave alice (U0ALICE001) the role helper."
    assert "➕ owner gave alice (U0ALICE001) the role helper." in log_lines(slack)


async def test_verified_members_come_a_page_at_a_time(slack: Harness) -> None:
    for n in range(12):
        user = f"U0MEMBER{n:02d}"
        link(slack, user, phone=f"+4474001234{n:02d}", name=f"member{n:02d}")
    first = await ask(slack, OWNER, "verified")
    assert first["text"].startswith("Verified members: 12 (page 1 of 2)")
    assert entries(first) == 10 and "+44•••••34" in first["text"]
    assert buttons(first) == {PAGE_NEXT: "2"}
    second = await press(slack, OWNER, PAGE_NEXT, "2", first)
    assert second["text"].startswith("Verified members: 12 (page 2 of 2)")
    assert entries(second) == 2
    assert buttons(second) == {PAGE_PREVIOUS: "1"}
    assert (await ask(slack, OWNER, "verified 2"))["text"] == second["text"]


async def test_stats(slack: Harness) -> None:
    link(slack, ALICE)
    answer = await ask(slack, OWNER, "stats")
    assert answer["text"].splitlines()[0] == "Verified: 1"
    assert "Text messages sent today: 0" in answer["text"]


async def test_export_sends_a_csv_with_masked_phones_to_the_admins_dm(slack: Harness) -> None:
    link(slack, ALICE)
    link(slack, BOB, phone="+447400654321", name="bob")
    answer = await ask(slack, OWNER, "export")
    assert answer["text"] == "I've sent you the export as a direct message."
    (upload,) = slack.emu.files
    assert upload.channels == (slack.emu.dms[OWNER],)  # the admin's DM, not the channel
    assert upload.filename.startswith("verifybot-slack-") and upload.filename.endswith(".csv")
    assert upload.content is not None
    csv = upload.content.decode()
    assert MASKED in csv and "+44•••••4321" in csv
    assert "7400123456" not in csv and "7400654321" not in csv
    assert slack.emu.dm_messages(OWNER)[-1]["text"] == "2 members. Phone numbers are masked."
    assert [e.actor for e in audit(slack, "exported")] == [f"slack:{TEAM}:{OWNER}"]


async def test_export_without_files_write_says_so(slack: Harness) -> None:
    link(slack, ALICE)
    slack.emu.inject("files.getUploadURLExternal", error="missing_scope")
    answer = await ask(slack, OWNER, "export")
    assert answer["text"] == (
        "I couldn't send you the file (missing_scope). The bot needs the files:write scope."
    )
    assert slack.emu.files == []


async def test_unlink_asks_first_and_cancel_changes_nothing(slack: Harness) -> None:
    link(slack, ALICE)
    asked = await ask(slack, OWNER, f"unlink <@{ALICE}>")
    assert asked["text"].startswith("Remove alice (U0ALICE001)'s verification")
    token = buttons(asked)[UNLINK_CONFIRM]
    assert buttons(asked) == {UNLINK_CONFIRM: token, UNLINK_CANCEL: token}
    cancelled = await press(slack, OWNER, UNLINK_CANCEL, token, asked)
    assert cancelled["text"] == "Nothing was changed." and buttons(cancelled) == {}
    assert slack.app.directory.find_verified(key(ALICE)) is not None
    # The token is gone with the cancel: confirming afterwards does nothing.
    late = await press(slack, OWNER, UNLINK_CONFIRM, token, asked)
    assert late["text"] == "That confirmation has expired or was already used. Ask again."
    assert slack.app.directory.find_verified(key(ALICE)) is not None


async def test_unlink_confirmed_removes_the_verification_and_the_roles(slack: Harness) -> None:
    link(slack, ALICE)
    await ask(slack, OWNER, f"grant <@{ALICE}> helper")
    asked = await ask(slack, OWNER, f"unlink <@{ALICE}>")
    done = await press(slack, OWNER, UNLINK_CONFIRM, buttons(asked)[UNLINK_CONFIRM], asked)
    assert done["text"] == "alice (U0ALICE001) is no longer verified, and their roles are gone."
    assert slack.app.directory.find_verified(key(ALICE)) is None
    assert all(ALICE not in slack.emu.channels[c].members for c in HELPERS)
    assert slack.emu.usergroups["S0HELPERS1"] == [BOB]
    assert "🗑 owner removed alice (U0ALICE001)'s verification and roles." in log_lines(slack)


async def test_only_the_admin_who_asked_can_confirm_an_unlink(slack: Harness) -> None:
    link(slack, ALICE)
    asked = await ask(slack, OWNER, f"unlink <@{ALICE}>")
    token = buttons(asked)[UNLINK_CONFIRM]
    refused = await press(slack, ADMIN, UNLINK_CONFIRM, token, asked)
    assert refused["text"] == "Sorry, only admins can do that."
    assert slack.app.directory.find_verified(key(ALICE)) is not None


# --- what the command understands ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "first_line"),
    [
        ("", "Moderators:"),
        ("help", "Moderators:"),
        ("frobnicate now", "I don't know `frobnicate`."),
        ("grant", "Like this: `/verifybot grant @member role`"),
        (f"grant <@{ALICE}>", "Like this: `/verifybot grant @member role`"),
        ("whois", "Like this: `/verifybot whois @member`"),
        ("unlink", "Like this: `/verifybot unlink @member`"),
        ("whois alice", "I can't tell who `alice` is."),
        ("whois @alice", "I can't tell who `@alice` is."),
    ],
)
async def test_usage(slack: Harness, text: str, first_line: str) -> None:
    answer = await ask(slack, ADMIN, text)
    assert answer["text"].splitlines()[0].startswith(first_line)
    assert slack.emu.calls_to("conversations.invite") == []


async def test_the_help_is_in_the_moderators_language(slack: Harness) -> None:
    slack.emu.users[ADMIN]["locale"] = "es-ES"
    answer = await ask(slack, ADMIN, "ayuda")
    assert answer["text"].startswith("No conozco `ayuda`.\nModeradores:")


# --- SlackRoles and the CLI's way in ------------------------------------------------------


async def test_a_member_of_another_workspace_is_not_touched(slack: Harness) -> None:
    roles = SlackRoles(AsyncWebClient(token=slack.emu.bot_token, base_url=slack.emu.url))
    role = Role("helper", slack=SlackRole(HELPERS, "S0HELPERS1"))
    steps = await roles.apply(MemberKey("slack", "T0ELSEWHERE", ALICE), role)
    assert [(s.action, s.target, s.ok, s.problem) for s in steps] == [
        ("connect", "T0ELSEWHERE", False, "not_connected")
    ]
    assert slack.emu.calls_to("conversations.invite") == []
    # The same member in this workspace: every step done, already being in counts as done.
    slack.emu.channels[HELPERS[0]].members.add(ALICE)
    steps = await roles.apply(key(ALICE), role)
    assert [(s.action, s.ok) for s in steps] == [
        ("channel_invite", True),
        ("channel_invite", True),
        ("usergroup_add", True),
    ]
    undone = await roles.undo(key(ALICE), role)
    assert all(s.ok for s in undone) and len(undone) == 3
    assert await roles.undo(key(ALICE), role) == undone  # not there any more: done


async def test_standalone_needs_the_bot_token(make_settings: Callable[..., Any]) -> None:
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN is not set"):
        async with standalone(make_settings(), Catalogue.load()):
            pass


async def test_standalone_roles_act_on_the_workspace(make_settings: Callable[..., Any]) -> None:
    async with running(make_settings, **settings()) as h:
        set_up_workspace(h)
        async with standalone(h.app.settings, h.app.catalogue) as roles:
            role = Role("verified", slack=SlackRole(("C0VERIFIED",), "S0VERIFIED"))
            steps = await roles.apply(key(ALICE), role)
        assert all(step.ok for step in steps)
        assert slack_members(h) == ({ALICE}, [BOB, ALICE])


def slack_members(h: Harness) -> tuple[set[str], list[str]]:
    return h.emu.channels["C0VERIFIED"].members, h.emu.usergroups["S0VERIFIED"]
