"""Moderators and admins on Telegram, end to end: the real python-telegram-bot ``Application``
started by ``adapters.telegram.serve`` against the Bot API emulator, a real Redis and SQLite
behind the core's ``Moderation``. Roles come from settings, in the shape of roles.toml."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.identity import MemberKey
from tests.e2e.conftest import RunBot
from tests.e2e.test_telegram import callback_data, next_message
from tests.emulators.telegram import SentMessage, TelegramEmulator
from tests.emulators.vonage import VonageEmulator

ADA_PHONE = "+447400123456"


@pytest.fixture
def run_bot(run_bot: RunBot) -> RunBot:
    """``run_bot`` from conftest, with the roles (as ``ROLES`` JSON) as its first argument."""

    def run(roles: dict[str, Any] | None = None, **overrides: Any) -> Any:
        return run_bot(roles=json.dumps({"roles": roles or {}}), **overrides)

    return run


def key_of(telegram: TelegramEmulator, user: int) -> MemberKey:
    return MemberKey("telegram", str(telegram.bot_id), str(user))


async def verified(
    app: App, telegram: TelegramEmulator, user: int, *, name: str, phone: str, handle: str
) -> MemberKey:
    """A member who verified ``phone`` earlier, and so has a private chat with the bot."""
    seen = len(telegram.messages_in(user))
    telegram.send_text(user, "/help")
    await telegram.wait_for(lambda: len(telegram.messages_in(user)) > seen)
    key = key_of(telegram, user)
    app.directory.record_verified(
        key,
        phone_e164=phone,
        country="GB",
        display_name=name,
        handle=handle,
        now=datetime.now(UTC),
    )
    return key


def said_in_group(telegram: TelegramEmulator, user: int, group: int, text: str) -> int:
    """The member writes in the group; the message id, for a moderator to reply to."""
    message_id: int = telegram.send_text(user, text, chat_id=group)["message"]["message_id"]
    return message_id


def roles_of(app: App, key: MemberKey) -> tuple[str, ...]:
    link = app.directory.find(key)
    assert link is not None
    return link.roles


def audit(app: App, event: str, subject: str | None = None) -> list[Any]:
    return [e for e in app.directory.audit_trail(subject=subject) if e.event == event]


def helper_role(chat: int, *, title: str | None = None) -> dict[str, Any]:
    telegram = {"chats": [chat], **({"title": title} if title else {})}
    return {"helper": {"description": "Helps newcomers", "telegram": telegram}}


# --- Granting ---------------------------------------------------------------------------------


async def test_a_moderator_grants_by_replying_and_the_member_is_unrestricted_in_the_roles_chat(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    club, helpers = telegram.add_group("Club"), telegram.add_group("Helpers")
    grace, ada = telegram.add_user("Grace"), telegram.add_user("Ada", username="ada")
    telegram.add_admin(club, grace)
    telegram.join(ada, club)  # before the bot runs: not gated
    async with run_bot(helper_role(helpers)) as app:
        ada_key = await verified(app, telegram, ada, name="Ada", phone=ADA_PHONE, handle="ada")
        telegram.join(ada, helpers)  # verified, but never let into Helpers: held there
        await telegram.wait_for(lambda: telegram.member_status(helpers, ada) == "restricted")
        hello = said_in_group(telegram, ada, club, "hello")

        telegram.send_text(grace, "/grant helper", chat_id=club, reply_to=hello)

        answer = await next_message(telegram, club, "the role helper")
        assert answer.text == f"Gave Ada @ada ({ada}) the role helper."
        await telegram.wait_for(lambda: telegram.member_status(helpers, ada) == "member")
        link = app.directory.find(ada_key)
        assert link is not None and link.roles == ("helper",)
        [granted] = audit(app, "role_granted", str(ada_key))
        assert granted.actor == str(key_of(telegram, grace))
        assert granted.details == {"role": "helper"}
        assert app.directory.is_admitted(ada_key, str(helpers))


async def test_a_member_outside_the_roles_chat_is_sent_a_single_use_link_and_titled_on_joining(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    club, helpers = telegram.add_group("Club"), telegram.add_group("Helpers")
    grace, ada = telegram.add_user("Grace"), telegram.add_user("Ada", username="ada")
    telegram.add_admin(club, grace)
    async with run_bot(helper_role(helpers, title="Helper")) as app:
        await verified(app, telegram, ada, name="Ada", phone=ADA_PHONE, handle="ada")

        telegram.send_text(grace, "/grant @Ada helper", chat_id=club)

        await next_message(telegram, club, "Gave Ada @ada")
        invite = await next_message(telegram, ada, "Join Helpers with this link")
        url = invite.text.splitlines()[-1]
        [made] = telegram.invite_links(helpers)
        assert (made["invite_link"], made["member_limit"], made["name"]) == (
            url,
            1,
            "verifybot helper",
        )
        assert made["expire_date"] > datetime.now(UTC).timestamp() + 3600

        telegram.join_by_link(ada, url)

        await telegram.wait_for(
            lambda: (telegram.admin_rights(helpers, ada) or {}).get("custom_title")
        )
        assert telegram.admin_rights(helpers, ada) == {
            "can_be_edited": True,
            "can_manage_chat": True,
            "can_invite_users": True,
            "custom_title": "Helper",
        }
        with pytest.raises(AssertionError, match="used up"):
            telegram.join_by_link(telegram.add_user("Eve"), url)


async def test_an_unknown_username_or_a_missing_role_gets_a_clear_answer(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    club, helpers = telegram.add_group("Club"), telegram.add_group("Helpers")
    grace = telegram.add_user("Grace")
    telegram.add_admin(club, grace)
    async with run_bot(helper_role(helpers)) as app:
        telegram.send_text(grace, "/grant @nobody helper", chat_id=club)
        unknown = await next_message(telegram, club, "@nobody")
        assert unknown.text.startswith("I don't know @nobody.")

        telegram.send_text(grace, "/grant @nobody", chat_id=club)
        usage = await next_message(telegram, club, "To give a role")
        assert "/grant @username <role>" in usage.text

        telegram.send_text(grace, "/roles", chat_id=club)
        listed = await next_message(telegram, club, "Roles moderators can grant")
        assert "• helper: Helps newcomers" in listed.text
        assert audit(app, "role_granted") == []


async def test_roles_are_for_verified_members_only(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    club, helpers = telegram.add_group("Club"), telegram.add_group("Helpers")
    grace, bob = telegram.add_user("Grace"), telegram.add_user("Bob")
    telegram.add_admin(club, grace)
    telegram.join(bob, club)
    async with run_bot(helper_role(helpers), telegram_gate_mode="off") as app:
        hello = said_in_group(telegram, bob, club, "hi")

        telegram.send_text(grace, "/grant helper", chat_id=club, reply_to=hello)

        refusal = await next_message(telegram, club, "hasn't verified")
        assert refusal.text == (
            f"{bob} hasn't verified a phone number, and roles are for verified members only."
        )
        assert app.directory.find(key_of(telegram, bob)) is None
        assert telegram.invite_links(helpers) == []


async def test_someone_who_is_not_a_moderator_is_refused_politely_and_the_attempt_audited(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    club, helpers = telegram.add_group("Club"), telegram.add_group("Helpers")
    bob, ada = telegram.add_user("Bob"), telegram.add_user("Ada", username="ada")
    telegram.join(bob, club)
    telegram.join(ada, club)
    async with run_bot(helper_role(helpers), telegram_gate_mode="off") as app:
        ada_key = await verified(app, telegram, ada, name="Ada", phone=ADA_PHONE, handle="ada")
        hello = said_in_group(telegram, ada, club, "hello")

        telegram.send_text(bob, "/grant helper", chat_id=club, reply_to=hello)
        await next_message(telegram, club, "Sorry, only moderators can do that.")
        telegram.send_text(bob, "/whois @ada")
        await next_message(telegram, bob, "Sorry, only admins can do that.")
        telegram.send_text(bob, "/whois @nobody")  # not told whether @nobody verified
        await next_message(telegram, bob, "Sorry, only admins can do that.", after=1)

        refusals = audit(app, "refused")
        bob_key = str(key_of(telegram, bob))
        assert [(e.actor, e.subject, e.details) for e in reversed(refusals)] == [
            (bob_key, str(ada_key), {"command": "grant"}),
            (bob_key, str(ada_key), {"command": "whois"}),
            (bob_key, f"telegram:{telegram.bot_id}:@nobody", {"command": "whois"}),
        ]
        assert roles_of(app, ada_key) == ()


async def test_an_administrator_of_a_roles_chat_moderates_from_a_private_chat(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    helpers = telegram.add_group("Helpers")
    grace, ada = telegram.add_user("Grace"), telegram.add_user("Ada", username="ada")
    telegram.add_admin(helpers, grace)
    telegram.join(ada, helpers)
    async with run_bot(helper_role(helpers), telegram_gate_mode="off") as app:
        ada_key = await verified(app, telegram, ada, name="Ada", phone=ADA_PHONE, handle="ada")

        telegram.send_text(grace, f"/grant {ada} helper")

        await next_message(telegram, grace, "Gave Ada @ada")
        telegram.send_text(grace, "/roles @ada")
        await next_message(telegram, grace, f"Ada @ada ({ada}) has: helper.")
        assert roles_of(app, ada_key) == ("helper",)


# --- Revoking and titles ----------------------------------------------------------------------


async def test_a_title_is_set_with_the_role_and_revoking_takes_it_back_and_removes_the_member(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    helpers = telegram.add_group("Helpers")
    grace, ada = telegram.add_user("Grace"), telegram.add_user("Ada", username="ada")
    telegram.add_admin(helpers, grace)
    telegram.join(ada, helpers)
    async with run_bot(helper_role(helpers, title="Helper"), telegram_gate_mode="off") as app:
        ada_key = await verified(app, telegram, ada, name="Ada", phone=ADA_PHONE, handle="ada")

        telegram.send_text(grace, "/grant @ada helper", chat_id=helpers)
        await next_message(telegram, helpers, "Gave Ada")
        assert (telegram.admin_rights(helpers, ada) or {}).get("custom_title") == "Helper"

        telegram.send_text(grace, "/revoke @ada helper", chat_id=helpers)

        await next_message(telegram, helpers, "Took the role helper from Ada @ada")
        assert telegram.member_status(helpers, ada) == "left"  # removed, free to rejoin
        assert telegram.admin_rights(helpers, ada) is None
        assert roles_of(app, ada_key) == ()
        promotions = [c.params for c in telegram.calls_to("promoteChatMember")]
        assert promotions == [
            {"chat_id": helpers, "user_id": ada, "can_invite_users": True},
            {"chat_id": helpers, "user_id": ada},  # every right off: demoted
        ]


async def test_revoking_one_role_keeps_the_member_in_a_chat_another_role_opens(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    club = telegram.add_group("Club")
    grace, ada = telegram.add_user("Grace"), telegram.add_user("Ada", username="ada")
    telegram.add_admin(club, grace)
    telegram.join(ada, club)
    roles = {"member": {"telegram": {"chats": [club]}}, **helper_role(club)}
    async with run_bot(roles, telegram_gate_mode="off") as app:
        await verified(app, telegram, ada, name="Ada", phone=ADA_PHONE, handle="ada")
        for command in ("/grant @ada member", "/grant @ada helper", "/revoke @ada helper"):
            seen = len(telegram.messages_in(club))
            telegram.send_text(grace, command, chat_id=club)
            await next_message(telegram, club, "Ada @ada", after=seen)

        assert "Took the role helper" in telegram.messages_in(club)[-1].text
        assert telegram.member_status(club, ada) == "member"
        assert telegram.calls_to("banChatMember") == []
        assert roles_of(app, key_of(telegram, ada)) == ("member",)


async def test_when_the_bot_lacks_a_right_the_reply_names_the_problem_and_it_is_audited(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    club = telegram.add_group("Club")
    helpers = telegram.add_group("Helpers", bot_rights={"can_restrict_members": True})
    grace, ada = telegram.add_user("Grace"), telegram.add_user("Ada", username="ada")
    telegram.add_admin(club, grace)
    async with run_bot(helper_role(helpers), telegram_gate_mode="off") as app:
        ada_key = await verified(app, telegram, ada, name="Ada", phone=ADA_PHONE, handle="ada")

        telegram.send_text(grace, "/grant @ada helper", chat_id=club)

        answer = await next_message(telegram, club, "Gave Ada")
        assert f"{helpers}: the bot lacks the right to do this there (invite_link)." in answer.text
        assert "`verifybot roles sync` applies it again" in answer.text
        [failed] = audit(app, "role_apply_failed", str(ada_key))
        assert failed.details == {
            "role": "helper",
            "steps": [["invite_link", str(helpers), "not_enough_rights"]],
        }
        assert roles_of(app, ada_key) == ("helper",)
        assert not [m for m in telegram.messages_in(ada) if "Join Helpers" in m.text]


# --- Unused invite links of a revoked role ---------------------------------------------------


async def invites_for(telegram: TelegramEmulator, user: int, role: str, count: int) -> list[str]:
    """The invite links the bot sent ``user`` for ``role``, once ``count`` of them came."""

    def sent() -> list[str] | None:
        links = [
            m.text.splitlines()[-1]
            for m in telegram.messages_in(user)
            if m.text.startswith(f"You now have the role {role}. Join ")
        ]
        return links if len(links) >= count else None

    links = await telegram.wait_for(sent)
    assert links is not None
    return links


def revoked(telegram: TelegramEmulator, *chats: int) -> dict[str, bool]:
    """Every invite link made in ``chats``: whether Telegram has it revoked."""
    links = [link for chat in chats for link in telegram.invite_links(chat)]
    return {link["invite_link"]: link["is_revoked"] for link in links}


async def moderate(telegram: TelegramEmulator, moderator: int, chat: int, command: str) -> str:
    """A moderator's command about Ada, and the bot's answer to it."""
    seen = len(telegram.messages_in(chat))
    telegram.send_text(moderator, command, chat_id=chat)
    answer = await next_message(telegram, chat, "Ada @ada", after=seen)
    return answer.text


def two_chat_role(*chats: int) -> dict[str, Any]:
    return {"helper": {"telegram": {"chats": list(chats)}}}


async def test_revoking_a_role_revokes_its_unused_invite_links_in_every_chat(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    club = telegram.add_group("Club")
    helpers, mentors = telegram.add_group("Helpers"), telegram.add_group("Mentors")
    grace, ada = telegram.add_user("Grace"), telegram.add_user("Ada", username="ada")
    telegram.add_admin(club, grace)
    async with run_bot(two_chat_role(helpers, mentors), telegram_gate_mode="restrict") as app:
        ada_key = await verified(app, telegram, ada, name="Ada", phone=ADA_PHONE, handle="ada")
        await moderate(telegram, grace, club, "/grant @ada helper")
        links = await invites_for(telegram, ada, "helper", 2)

        answer = await moderate(telegram, grace, club, "/revoke @ada helper")

        assert answer == f"Took the role helper from Ada @ada ({ada})."
        assert revoked(telegram, helpers, mentors) == dict.fromkeys(links, True)
        calls = telegram.calls_to("revokeChatInviteLink")
        assert sorted((c.params["chat_id"], c.params["invite_link"]) for c in calls) == sorted(
            zip((helpers, mentors), links, strict=True)
        )
        for link in links:
            with pytest.raises(AssertionError, match="was revoked"):
                telegram.join_by_link(ada, link)
        assert telegram.member_status(helpers, ada) == "left"
        assert telegram.member_status(mentors, ada) == "left"
        assert not app.directory.is_admitted(ada_key, str(helpers))
        assert not app.directory.is_admitted(ada_key, str(mentors))


async def test_a_join_by_a_revoked_roles_link_that_got_through_is_held_like_a_strangers(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    club = telegram.add_group("Club")
    helpers, mentors = telegram.add_group("Helpers"), telegram.add_group("Mentors")
    grace, ada = telegram.add_user("Grace"), telegram.add_user("Ada", username="ada")
    telegram.add_admin(club, grace)
    async with run_bot(two_chat_role(helpers, mentors), telegram_gate_mode="restrict") as app:
        ada_key = await verified(app, telegram, ada, name="Ada", phone=ADA_PHONE, handle="ada")
        await moderate(telegram, grace, club, "/grant @ada helper")
        links = await invites_for(telegram, ada, "helper", 2)
        # Telegram fails both revocations, so the links still work there.
        telegram.inject("revokeChatInviteLink", 500, times=2)

        answer = await moderate(telegram, grace, club, "/revoke @ada helper")
        telegram.join_by_link(ada, links[0])

        assert f"{helpers}: the bot could not reach the platform." in answer
        assert "`verifybot roles sync`" in answer
        await telegram.wait_for(lambda: telegram.member_status(helpers, ada) == "restricted")
        assert telegram.permissions(helpers, ada) == dict.fromkeys(
            telegram.permissions(helpers, ada) or {}, False
        )
        assert not app.directory.is_admitted(ada_key, str(helpers))
        [failed] = audit(app, "role_undo_failed", str(ada_key))
        assert [step[0] for step in failed.details["steps"]] == ["revoke_link", "revoke_link"]


async def test_unlinking_a_member_revokes_the_unused_invite_links_of_every_role(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    helpers, mentors = telegram.add_group("Helpers"), telegram.add_group("Mentors")
    root, ada = telegram.add_user("Root"), telegram.add_user("Ada", username="ada")
    async with run_bot(
        two_chat_role(helpers, mentors), telegram_admin_ids=str(root), telegram_gate_mode="restrict"
    ) as app:
        ada_key = await verified(app, telegram, ada, name="Ada", phone=ADA_PHONE, handle="ada")
        telegram.send_text(root, "/grant @ada helper")
        await next_message(telegram, root, "Gave Ada")
        links = await invites_for(telegram, ada, "helper", 2)

        telegram.send_text(root, "/unlink @ada")
        ask = await next_message(telegram, root, "Remove Ada @ada")
        telegram.press(root, ask, callback_data(ask)[0])
        done = f"Ada @ada ({ada}) is no longer verified, and their roles are gone."
        await telegram.wait_for(lambda: telegram.messages_in(root)[-1].text == done)

        assert revoked(telegram, helpers, mentors) == dict.fromkeys(links, True)
        for link in links:
            with pytest.raises(AssertionError, match="was revoked"):
                telegram.join_by_link(ada, link)
        assert app.directory.find_verified(ada_key) is None


async def test_revoking_one_role_leaves_the_links_of_a_role_that_opens_the_same_chat_working(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    club = telegram.add_group("Club")
    helpers, mentors = telegram.add_group("Helpers"), telegram.add_group("Mentors")
    grace, ada = telegram.add_user("Grace"), telegram.add_user("Ada", username="ada")
    telegram.add_admin(club, grace)
    telegram.add_admin(helpers, grace)
    roles = {"member": {"telegram": {"chats": [helpers]}}, **two_chat_role(helpers, mentors)}
    async with run_bot(roles, telegram_gate_mode="restrict") as app:
        await verified(app, telegram, ada, name="Ada", phone=ADA_PHONE, handle="ada")
        await moderate(telegram, grace, club, "/grant @ada member")
        [kept] = await invites_for(telegram, ada, "member", 1)
        await moderate(telegram, grace, club, "/grant @ada helper")
        helper_links = await invites_for(telegram, ada, "helper", 2)

        await moderate(telegram, grace, club, "/revoke @ada helper")

        assert revoked(telegram, helpers, mentors) == {
            kept: False,
            **dict.fromkeys(helper_links, True),
        }
        telegram.join_by_link(ada, kept)
        # A later command in the same chat is handled after the join: the gate has decided.
        answer = await moderate(telegram, grace, helpers, "/roles @ada")
        assert answer == f"Ada @ada ({ada}) has: member."
        assert telegram.member_status(helpers, ada) == "member"  # walked in, not held


# --- Verification, AUTO_ROLES and the log chat ------------------------------------------------


async def test_auto_roles_are_given_on_verification_and_the_log_chat_hears_of_every_change(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    members, log_chat = telegram.add_group("Members"), telegram.add_group("Mods")
    root, ada = telegram.add_user("Root"), telegram.add_user("Ada", username="ada")
    roles = {"verified": {"telegram": {"chats": [members]}}}
    async with run_bot(
        roles,
        auto_roles="verified",
        telegram_log_chat_id=str(log_chat),
        telegram_admin_ids=str(root),
    ) as app:
        telegram.send_text(ada, "/start")
        telegram.send_text(ada, "+44 7400 123456")
        await next_message(telegram, ada, "I've sent a 6-digit code")
        telegram.send_text(ada, vonage.last_code("447400123456"))

        await next_message(telegram, ada, "You're verified")
        invite = await next_message(telegram, ada, "You now have the role verified")
        assert "Join Members with this link" in invite.text
        who = f"Ada @ada ({ada})"
        await next_message(telegram, log_chat, f"✅ {who} verified their phone number.")
        ada_key = key_of(telegram, ada)
        [auto] = audit(app, "role_granted", str(ada_key))
        assert auto.actor == "auto"

        telegram.send_text(root, "/revoke @ada verified")
        await next_message(telegram, log_chat, f"➖ Root took the role verified from {who}.")
        telegram.send_text(root, "/grant @ada verified")
        await next_message(telegram, log_chat, f"➕ Root gave {who} the role verified.")
        telegram.send_text(root, "/unlink @ada")
        ask = await next_message(telegram, root, "Remove Ada @ada")
        telegram.press(root, ask, callback_data(ask)[0])
        await next_message(telegram, log_chat, f"🗑 Root removed {who}'s verification and roles.")
        lines = [m.text[0] for m in telegram.messages_in(log_chat)]
        assert lines == ["✅", "➖", "➕", "🗑"]


async def test_a_join_request_approved_on_verification_also_gives_auto_roles(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    club = telegram.add_group("Club")
    ada = telegram.add_user("Ada", username="ada")
    roles = {"verified": {"telegram": {"chats": [club], "title": "Verified"}}}
    async with run_bot(roles, auto_roles="verified", telegram_gate_mode="join_request") as app:
        telegram.request_join(ada, club)
        await next_message(telegram, ada, "send me your mobile phone number")
        telegram.send_text(ada, "+44 7400 123456")
        await next_message(telegram, ada, "I've sent")
        telegram.send_text(ada, vonage.last_code("447400123456"))

        title = await telegram.wait_for(
            lambda: (telegram.admin_rights(club, ada) or {}).get("custom_title")
        )

        assert title == "Verified"
        assert telegram.join_request_state(club, ada) == "approved"
        assert roles_of(app, key_of(telegram, ada)) == ("verified",)
        assert telegram.invite_links(club) == []  # already in: no link needed


# --- The command line's way in ----------------------------------------------------------------


async def test_standalone_roles_act_on_telegram_outside_the_running_bot(
    make_settings: Callable[..., Any], telegram: TelegramEmulator
) -> None:
    from adapters.telegram.roles import mod_log, standalone
    from bot.flow import Reply
    from bot.roles import Role, TelegramRole
    from bot.settings import ConfigError
    from bot.texts import Catalogue

    helpers, mods = telegram.add_group("Helpers"), telegram.add_group("Mods")
    ada = telegram.add_user("Ada")
    telegram.join(ada, helpers)
    role = Role("helper", telegram=TelegramRole((helpers,), "Helper"))
    settings = make_settings(
        telegram_bot_token=telegram.token,
        telegram_api_base_url=telegram.base_url,
        telegram_log_chat_id=str(mods),
    )
    other_bot = MemberKey("telegram", "42", str(ada))

    async with standalone(settings, Catalogue.load()) as roles:
        applied = await roles.apply(key_of(telegram, ada), role)
        elsewhere = await roles.apply(other_bot, role)
        undone = await roles.undo(key_of(telegram, ada), role)
        log_chat = mod_log(roles, settings, Catalogue.load())
        assert log_chat is not None
        await log_chat.post(Reply("modlog.verified", {"member": "Ada"}))
        assert mod_log(roles, make_settings(), Catalogue.load()) is None

    assert [m.text for m in telegram.messages_in(mods)] == ["✅ Ada verified their phone number."]

    assert [(s.action, s.ok) for s in applied] == [("member", True), ("title", True)]
    assert [(s.action, s.ok, s.problem) for s in elsewhere] == [("connect", False, "not_connected")]
    assert [(s.action, s.ok) for s in undone] == [("title", True), ("remove", True)]
    assert telegram.member_status(helpers, ada) == "left"
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN is not set"):
        async with standalone(make_settings(), Catalogue.load()):
            pass


async def test_standalone_roles_revoke_a_link_and_name_what_stops_them(
    make_settings: Callable[..., Any], telegram: TelegramEmulator
) -> None:
    from datetime import timedelta

    from adapters.telegram.roles import standalone
    from bot.roles import Invite
    from bot.texts import Catalogue

    helpers = telegram.add_group("Helpers")
    weak = telegram.add_group("Weak", bot_rights={"can_restrict_members": True})
    ada = telegram.add_user("Ada")
    settings = make_settings(
        telegram_bot_token=telegram.token, telegram_api_base_url=telegram.base_url
    )
    day = datetime.now(UTC) + timedelta(days=1)

    async with standalone(settings, Catalogue.load()) as roles:
        made = await roles.bot.create_chat_invite_link(helpers, member_limit=1)
        link = Invite(str(helpers), made.invite_link, day)
        revoked = await roles.revoke_invite(key_of(telegram, ada), link)
        unknown = Invite(str(helpers), "https://t.me/+never-made", day)
        forgotten = await roles.revoke_invite(key_of(telegram, ada), unknown)
        refused = await roles.revoke_invite(key_of(telegram, ada), Invite(str(weak), "x", day))
        elsewhere = await roles.revoke_invite(MemberKey("telegram", "42", str(ada)), link)

    assert (revoked.action, revoked.target, revoked.ok) == ("revoke_link", str(helpers), True)
    assert telegram.invite_links(helpers)[0]["is_revoked"] is True
    assert forgotten.ok  # a link Telegram does not know admits nobody: nothing left to do
    assert (refused.ok, refused.problem) == (False, "not_enough_rights")
    assert (elsewhere.ok, elsewhere.problem) == (False, "not_connected")


# --- Admin commands ---------------------------------------------------------------------------


async def test_whois_shows_an_admin_a_masked_phone_only(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    root, ada = telegram.add_user("Root"), telegram.add_user("Ada", username="ada")
    async with run_bot(telegram_admin_ids=str(root)) as app:
        await verified(app, telegram, ada, name="Ada", phone=ADA_PHONE, handle="ada")

        telegram.send_text(root, "/whois @ada")

        answer = await next_message(telegram, root, "Verified with")
        assert answer.text.startswith(f"Ada @ada ({ada})\nVerified with +44•••••3456 on ")
        assert answer.text.endswith("\nRoles: -")
        assert "7400123456" not in answer.text


async def test_verified_members_are_listed_page_by_page_with_buttons(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    root = telegram.add_user("Root")
    async with run_bot(telegram_admin_ids=str(root)) as app:
        for n in range(12):
            app.directory.record_verified(
                key_of(telegram, 900 + n),
                phone_e164=f"+4474001000{n:02d}",
                country="GB",
                display_name=f"Member {n:02d}",
                now=datetime.now(UTC),
            )
        telegram.send_text(root, "/verified")

        first = await next_message(telegram, root, "Verified members: 12 (page 1 of 2)")
        assert first.text.count("\n• ") == 10
        assert "+44•••••" in first.text
        assert callback_data(first) == ["va:page:2"]

        pressed = telegram.press(root, first, "va:page:2")

        await telegram.wait_for(lambda: "page 2 of 2" in telegram.messages_in(root)[-1].text)
        second = telegram.messages_in(root)[-1]
        assert second.message_id == first.message_id and second.edits == 1
        assert second.text.count("\n• ") == 2
        assert callback_data(second) == ["va:page:1"]
        assert telegram.callback_answer(pressed["callback_query"]["id"]) is not None


async def test_stats_counts_verified_members_and_todays_starts(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    root, ada, bob = telegram.add_user("Root"), telegram.add_user("Ada"), telegram.add_user("Bob")
    async with run_bot(telegram_admin_ids=str(root)):
        telegram.send_text(ada, "/start")
        telegram.send_text(ada, "+44 7400 123456")
        await next_message(telegram, ada, "I've sent")
        telegram.send_text(ada, vonage.last_code("447400123456"))
        await next_message(telegram, ada, "You're verified")
        telegram.send_text(bob, "/start")
        telegram.send_text(bob, "+44 7400 654321")
        await next_message(telegram, bob, "I've sent")

        telegram.send_text(root, "/stats")

        stats = await next_message(telegram, root, "Verified:")
        assert stats.text.splitlines() == [
            "Verified: 1",
            "Waiting for a code to be entered (last 24 h): 1",
            "Started today: 2",
            "Text messages sent today: 2",
            "Started today and verified: 50%",
        ]


async def test_export_sends_a_csv_with_masked_phones_in_private_even_when_asked_in_a_group(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    club = telegram.add_group("Club")
    root, ada = telegram.add_user("Root"), telegram.add_user("Ada", username="ada")
    telegram.add_admin(club, root)
    async with run_bot(telegram_admin_ids=str(root), telegram_gate_mode="off") as app:
        await verified(app, telegram, ada, name="Ada", phone=ADA_PHONE, handle="ada")
        telegram.send_text(root, "/help")  # root has a private chat with the bot
        await telegram.wait_for(lambda: telegram.messages_in(root))

        telegram.send_text(root, "/export", chat_id=club)

        await next_message(telegram, club, "I've answered you in our private chat.")

        def document() -> SentMessage | None:
            return next((m for m in telegram.messages_in(root) if m.document), None)

        sent = await telegram.wait_for(document)
        assert sent is not None and sent.document is not None
        assert sent.document.filename.endswith(".csv")
        assert sent.caption == "1 members. Phone numbers are masked."
        rows = list(csv.DictReader(io.StringIO(sent.document.content.decode())))
        assert [(r["user_id"], r["handle"], r["phone"]) for r in rows] == [
            (str(ada), "ada", "+44•••••3456")
        ]
        assert b"7400123456" not in sent.document.content
        assert [e.actor for e in audit(app, "exported")] == [str(key_of(telegram, root))]


async def test_a_lookalike_of_a_desk_command_gets_the_desk_help_and_does_nothing(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    club = telegram.add_group("Club")
    root = telegram.add_user("Root")
    telegram.add_admin(club, root)
    async with run_bot(telegram_admin_ids=str(root), telegram_gate_mode="off") as app:
        # Telegram marks "/export" inside each of these as the command (a combining diaeresis
        # on the t; a zero-width space), so PTB routes them to the desk; neither is /export.
        for typed in ("/export\u0308", "/export\u200b now"):
            seen = len(telegram.messages_in(club))
            telegram.send_text(root, typed, chat_id=club)
            await next_message(telegram, club, "Moderators' commands: /grant", after=seen)

        assert not [m for m in telegram.messages_in(root) if m.document]
        assert audit(app, "exported") == []


async def test_an_admin_who_never_opened_a_private_chat_is_asked_to(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    club = telegram.add_group("Club")
    root = telegram.add_user("Root")
    telegram.add_admin(club, root)
    async with run_bot(telegram_admin_ids=str(root), telegram_gate_mode="off"):
        telegram.send_text(root, "/stats", chat_id=club)

        note = await next_message(telegram, club, "I can't write to you in private yet")
        assert f"https://t.me/{telegram.bot_username}" in note.text
        assert not [m for m in telegram.messages_in(club) if "Verified:" in m.text]


async def test_unlink_asks_first_then_removes_the_verification_and_the_roles_chats(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    helpers = telegram.add_group("Helpers")
    root, ada = telegram.add_user("Root"), telegram.add_user("Ada", username="ada")
    bob = telegram.add_user("Bob", username="bob")
    telegram.join(ada, helpers)
    async with run_bot(
        helper_role(helpers), telegram_admin_ids=str(root), telegram_gate_mode="off"
    ) as app:
        ada_key = await verified(app, telegram, ada, name="Ada", phone=ADA_PHONE, handle="ada")
        bob_key = await verified(
            app, telegram, bob, name="Bob", phone="+447400654321", handle="bob"
        )
        telegram.send_text(root, "/grant @ada helper")
        await next_message(telegram, root, "Gave Ada")

        telegram.send_text(root, "/unlink @bob")
        keep = await next_message(telegram, root, "Remove Bob @bob")
        [confirm, cancel] = callback_data(keep)
        assert confirm.startswith("va:unlink:") and cancel.startswith("va:keep:")
        telegram.press(root, keep, cancel)
        await telegram.wait_for(
            lambda: telegram.messages_in(root)[-1].text == "Nothing was changed."
        )
        assert app.directory.find_verified(bob_key) is not None

        telegram.send_text(root, "/unlink @ada")
        ask = await next_message(telegram, root, "Remove Ada @ada")
        telegram.press(root, ask, callback_data(ask)[0])

        done = f"Ada @ada ({ada}) is no longer verified, and their roles are gone."
        await telegram.wait_for(lambda: telegram.messages_in(root)[-1].text == done)
        assert telegram.messages_in(root)[-1].reply_markup is None
        assert app.directory.find_verified(ada_key) is None
        assert telegram.member_status(helpers, ada) == "left"


async def test_the_command_line_grants_and_unlinks_on_telegram_and_tells_the_log_chat(
    telegram: TelegramEmulator, tmp_path: Path
) -> None:
    import sys

    from bot.directory import Directory
    from tests.conftest import unconfigured_environment

    helpers, mods = telegram.add_group("Helpers"), telegram.add_group("Mods")
    ada = telegram.add_user("Ada", username="ada")
    telegram.join(ada, helpers)
    url = f"sqlite:///{tmp_path / 'verifybot.db'}"
    directory = Directory(url)
    directory.upgrade()
    directory.record_verified(
        key_of(telegram, ada), phone_e164=ADA_PHONE, country="GB", display_name="Ada",
        handle="ada", now=datetime.now(UTC),
    )  # fmt: skip
    directory.close()
    env = unconfigured_environment(
        DATABASE_URL=url,
        ROLES=json.dumps({"roles": helper_role(helpers, title="Helper")}),
        TELEGRAM_BOT_TOKEN=telegram.token,
        TELEGRAM_API_BASE_URL=telegram.base_url,
        TELEGRAM_LOG_CHAT_ID=str(mods),
    )

    async def verifybot(*args: str) -> tuple[int | None, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "verifybot", *args, env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        return process.returncode, out.decode()

    code, out = await verifybot("roles", "grant", "telegram", str(ada), "helper")
    assert code == 0, out
    assert out.strip() == f"Gave Ada @ada ({ada}) the role helper."
    assert (telegram.admin_rights(helpers, ada) or {}).get("custom_title") == "Helper"

    code, out = await verifybot("users", "unlink", "telegram", str(ada), "--yes")
    assert code == 0, out
    assert telegram.member_status(helpers, ada) == "left"
    lines = [m.text for m in telegram.messages_in(mods)]
    assert [line[0] for line in lines] == ["➕", "🗑"]
    assert telegram.token not in out
