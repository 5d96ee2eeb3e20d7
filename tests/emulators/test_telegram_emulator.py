"""The Telegram Bot API emulator, driven by the real python-telegram-bot (22.8) over HTTP.

Every test runs against a fresh emulator; the ``emu`` fixture then checks, for every call that
succeeded, that its result conforms to the return type the official spec
(``/work/shared/specs/telegram-bot-api.json``) lists for that method, and that the emulator
recorded no bug of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeChat,
    BotCommandScopeDefault,
    ChatPermissions,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyParameters,
)
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, RetryAfter

from tests.emulators.telegram import (
    SPEC_FILE,
    TelegramEmulator,
    conforms,
    emulated_methods,
    find_specs,
    load_spec,
)

SPECS = find_specs()


@pytest.fixture(autouse=True)
def _spec_present() -> None:
    spec_file = SPECS / SPEC_FILE
    if not spec_file.exists():
        message = f"{spec_file} is not here (set VERIFYBOT_SPECS to the shared/specs folder)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _assert_results_conform(emu: TelegramEmulator) -> None:
    spec = load_spec()
    for call in emu.calls:
        if call.status != 200:
            continue
        returns = spec.methods[call.method]["returns"]
        problems = spec.check_any(returns, call.response["result"], call.method)
        assert not problems, f"{call.method} result does not conform: {problems}"


@pytest.fixture
def emu() -> Iterator[TelegramEmulator]:
    with TelegramEmulator() as emulator:
        yield emulator
        assert not emulator.internal_errors
        _assert_results_conform(emulator)


@pytest.fixture
async def bot(emu: TelegramEmulator) -> AsyncIterator[Bot]:
    async with Bot(emu.token, base_url=emu.base_url, base_file_url=emu.base_file_url) as client:
        yield client


def _raw(emu: TelegramEmulator, method: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{emu.base_url}{emu.token}/{method}", timeout=5, **kwargs)


# -- protocol ---------------------------------------------------------------------------------


async def test_get_me_is_the_bot(emu: TelegramEmulator, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (emu.bot_id, True, "verifybot_test_bot")
    assert me.can_join_groups is True
    assert conforms("User", emu.calls_to("getMe")[-1].response["result"]) == []


async def test_send_message_result_conforms_and_is_recorded(
    emu: TelegramEmulator, bot: Bot
) -> None:
    user = emu.add_user("Ada")
    emu.send_text(user, "/start")
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Verify", callback_data="verify")]])
    sent = await bot.send_message(user, "Welcome", reply_markup=keyboard)

    result = emu.calls_to("sendMessage")[-1].response["result"]
    assert conforms("Message", result) == []
    assert result["from"]["id"] == emu.bot_id
    assert result["reply_markup"] == {
        "inline_keyboard": [[{"text": "Verify", "callback_data": "verify"}]]
    }
    assert sent.message_id == 2  # per-chat ids: the user's /start was 1
    snapshot = emu.last_message(user)
    assert snapshot is not None
    assert (snapshot.text, snapshot.deleted, snapshot.edits) == ("Welcome", False, 0)
    assert emu.calls_to("sendMessage")[-1].params["chat_id"] == user  # decoded, not "7000…"


async def test_unknown_method_is_400_and_method_names_are_case_insensitive(
    emu: TelegramEmulator,
) -> None:
    answer = _raw(emu, "sendMesage", data={"chat_id": "1", "text": "x"})
    assert answer.status_code == 400
    assert answer.json() == {
        "ok": False,
        "error_code": 400,
        "description": 'Bad Request: unknown method "sendMesage"',
    }
    assert _raw(emu, "GETME").json()["result"]["id"] == emu.bot_id


async def test_spec_method_that_is_not_emulated_is_recorded(emu: TelegramEmulator) -> None:
    answer = _raw(emu, "sendDice", data={"chat_id": "1"})
    assert answer.status_code == 400
    assert answer.json()["description"] == "emulator: method sendDice is not emulated"
    assert emu.unemulated == ["sendDice"]


async def test_unknown_parameter_is_400(emu: TelegramEmulator) -> None:
    user = emu.add_user()
    emu.send_text(user, "hi")
    answer = _raw(emu, "sendMessage", data={"chat_id": str(user), "text": "x", "colour": "red"})
    assert answer.status_code == 400
    assert answer.json()["description"] == 'Bad Request: unknown parameter "colour"'
    assert emu.messages_in(user) == []


async def test_missing_required_parameter_is_400(emu: TelegramEmulator, bot: Bot) -> None:
    user = emu.add_user()
    emu.send_text(user, "hi")
    no_text = _raw(emu, "sendMessage", data={"chat_id": str(user)})
    assert (no_text.status_code, no_text.json()["description"]) == (
        400,
        "Bad Request: message text is empty",
    )
    no_chat = _raw(emu, "sendMessage", json={"text": "x"})
    assert no_chat.json()["description"] == 'Bad Request: parameter "chat_id" is required'
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(user, "   ")


async def test_wrong_types_are_400_at_every_depth(emu: TelegramEmulator, bot: Bot) -> None:
    group = emu.add_group()
    user = emu.add_user()
    emu.send_text(user, "hi")
    bad_int = _raw(emu, "banChatMember", data={"chat_id": str(group), "user_id": "abc"})
    assert bad_int.status_code == 400
    assert bad_int.json()["description"].startswith('Bad Request: parameter "user_id" must be')

    bad_bool = _raw(emu, "deleteWebhook", data={"drop_pending_updates": "maybe"})
    assert bad_bool.status_code == 400

    unknown_field = json.dumps({"inline_keyboard": [[{"text": "a", "callback": "x"}]]})
    answer = _raw(
        emu, "sendMessage", data={"chat_id": user, "text": "x", "reply_markup": unknown_field}
    )
    assert answer.status_code == 400
    assert "unknown field 'callback'" in answer.json()["description"]

    wrong_nested = json.dumps({"inline_keyboard": [[{"text": "a", "callback_data": 5}]]})
    answer = _raw(
        emu, "sendMessage", data={"chat_id": user, "text": "x", "reply_markup": wrong_nested}
    )
    assert answer.status_code == 400

    bad_permissions = json.dumps({"can_send_messages": False, "can_fly": True})
    answer = _raw(
        emu,
        "restrictChatMember",
        data={"chat_id": group, "user_id": user, "permissions": bad_permissions},
    )
    assert answer.status_code == 400
    assert "can_fly" in answer.json()["description"]

    bad_scope = json.dumps({"type": "everyone"})
    commands = json.dumps([{"command": "start", "description": "Start"}])
    answer = _raw(emu, "setMyCommands", data={"commands": commands, "scope": bad_scope})
    assert answer.status_code == 400

    with pytest.raises(BadRequest, match=r"(?i)BUTTON_DATA_INVALID"):
        await bot.send_message(
            user,
            "x",
            reply_markup=InlineKeyboardMarkup(
                [[InlineKeyboardButton("a", callback_data="x" * 65)]]
            ),
        )


async def test_json_and_query_string_bodies_are_accepted(emu: TelegramEmulator) -> None:
    user = emu.add_user()
    emu.send_text(user, "hi")
    as_json = _raw(
        emu, "sendMessage", json={"chat_id": user, "text": "json", "protect_content": True}
    )
    assert as_json.json()["ok"] is True
    async with httpx.AsyncClient() as client:
        as_query = await client.get(
            f"{emu.base_url}{emu.token}/sendMessage", params={"chat_id": user, "text": "query"}
        )
    assert as_query.json()["ok"] is True
    assert [m.text for m in emu.messages_in(user)] == ["json", "query"]


async def test_wrong_token_is_401_and_ptb_raises_invalid_token(emu: TelegramEmulator) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{emu.base_url}999:WRONG/getMe")
    assert (answer.status_code, answer.json()) == (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized"},
    )
    with pytest.raises(InvalidToken):
        async with Bot("999:WRONG", base_url=emu.base_url, base_file_url=emu.base_file_url):
            pass


async def test_multipart_bodies_are_accepted(emu: TelegramEmulator, bot: Bot) -> None:
    assert await bot.set_webhook("http://127.0.0.1:9/hook", certificate=b"-----PEM-----")
    info = await bot.get_webhook_info()
    assert info.has_custom_certificate is True
    assert emu.calls_to("setWebhook")[-1].params["certificate"]  # the upload's filename


# -- updates: long polling ----------------------------------------------------------------------


async def test_long_poll_returns_an_update_enqueued_while_waiting(
    emu: TelegramEmulator, bot: Bot
) -> None:
    user = emu.add_user()
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, emu.send_text, user, "/start hello")
    started = time.monotonic()
    updates = await bot.get_updates(timeout=3)
    assert time.monotonic() - started < 2
    assert len(updates) == 1
    message = updates[0].message
    assert message is not None
    assert message.text == "/start hello"
    assert message.entities[0].type == "bot_command"
    assert (message.entities[0].offset, message.entities[0].length) == (0, 6)

    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [updates[0].update_id]  # not confirmed yet
    confirmed = await bot.get_updates(offset=updates[0].update_id + 1, timeout=0)
    assert confirmed == ()
    assert emu.pending_updates == []


async def test_long_poll_times_out_empty(emu: TelegramEmulator, bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == ()
    assert 0.9 <= time.monotonic() - started < 2


async def test_a_second_get_updates_terminates_the_first(emu: TelegramEmulator, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=3))
    await emu.wait_for(lambda: emu.calls_to("getUpdates"))
    await asyncio.sleep(0.05)
    async with Bot(emu.token, base_url=emu.base_url) as second_instance:
        await second_instance.get_updates(timeout=0)
    with pytest.raises(Conflict, match=r"(?i)terminated by other getUpdates request"):
        await first


async def test_allowed_updates_is_remembered_and_chat_member_is_opt_in(
    emu: TelegramEmulator, bot: Bot
) -> None:
    group = emu.add_group()
    ada, bob = emu.add_user("Ada"), emu.add_user("Bob")
    emu.join(ada, group)  # default: chat_member is not delivered, the service message is
    kinds = [next(k for k in u.to_dict() if k != "update_id") for u in await bot.get_updates()]
    assert kinds == ["message"]
    assert emu.dropped_updates[0]["chat_member"]["new_chat_member"]["status"] == "member"

    last = (await bot.get_updates())[-1].update_id
    await bot.get_updates(offset=last + 1, allowed_updates=["message", "chat_member"])
    emu.join(bob, group)
    updates = await bot.get_updates()
    assert [u.chat_member is not None for u in updates] == [True, False]
    change = updates[0].chat_member
    assert change is not None
    assert (change.old_chat_member.status, change.new_chat_member.status) == ("left", "member")
    assert emu.allowed_updates == ["message", "chat_member"]  # remembered without re-sending
    assert emu.member_status(group, bob) == "member"


async def test_set_webhook_ends_a_waiting_poll(emu: TelegramEmulator, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=3))
    await emu.wait_for(lambda: emu.calls_to("getUpdates"))
    await asyncio.sleep(0.05)
    async with Bot(emu.token, base_url=emu.base_url) as other:
        await other.set_webhook("http://127.0.0.1:9/hook")
    with pytest.raises(Conflict, match=r"(?i)terminated by setWebhook request"):
        await poll


async def test_privacy_mode_hides_plain_group_text_from_a_non_admin_bot(
    emu: TelegramEmulator, bot: Bot
) -> None:
    plain, admin = emu.add_group(bot_is_admin=False), emu.add_group()
    user = emu.add_user()
    emu.join(user, plain)
    emu.join(user, admin)
    emu.send_text(user, "hello all", chat_id=plain)
    emu.send_text(user, "/verify", chat_id=plain)
    emu.send_text(user, "hello all", chat_id=admin)
    texts = [(u.message.chat.id, u.message.text) for u in await bot.get_updates() if u.message]
    assert [t for t in texts if t[1]] == [(plain, "/verify"), (admin, "hello all")]
    with pytest.raises(AssertionError, match="not in"):
        emu.send_text(emu.add_user("Eve"), "spam", chat_id=admin)


async def test_redeliver_repeats_the_same_update_id(emu: TelegramEmulator, bot: Bot) -> None:
    user = emu.add_user()
    update = emu.send_text(user, "hi")
    emu.redeliver(update)
    assert [u.update_id for u in await bot.get_updates()] == [update["update_id"]] * 2


# -- updates: webhooks --------------------------------------------------------------------------


class _Hook:
    """A tiny webhook receiver: records (headers, body) and answers ``status``."""

    def __init__(self, status: int = 200, secret: str | None = None) -> None:
        self.status = status
        self.secret = secret
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                given = self.headers.get("X-Telegram-Bot-Api-Secret-Token")
                code = 403 if hook.secret is not None and given != hook.secret else hook.status
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/telegram"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> _Hook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_webhook_delivers_updates_with_the_secret_header(
    emu: TelegramEmulator, bot: Bot
) -> None:
    user = emu.add_user()
    with _Hook(secret="s3cret-token") as hook:
        assert await bot.set_webhook(hook.url, secret_token="s3cret-token")
        update = emu.send_text(user, "/start")
        await emu.wait_for(lambda: emu.webhook_deliveries)
        assert emu.webhook_deliveries == [(update["update_id"], 200)]
        headers, body = hook.received[0]
        assert headers["x-telegram-bot-api-secret-token"] == "s3cret-token"
        assert headers["content-type"] == "application/json"
        assert body == update
        assert conforms("Update", body) == []
        info = await bot.get_webhook_info()
        assert (info.url, info.pending_update_count) == (hook.url, 0)

        with pytest.raises(Conflict, match=r"(?i)webhook is active"):
            await bot.get_updates()
        assert await bot.delete_webhook()
        assert await bot.get_updates() == ()


async def test_webhook_retries_a_failing_endpoint_then_gives_up(
    emu: TelegramEmulator, bot: Bot
) -> None:
    user = emu.add_user()
    with _Hook(status=500) as hook:
        await bot.set_webhook(hook.url)
        update = emu.send_text(user, "hi")
        await emu.wait_for(lambda: len(emu.webhook_deliveries) == 4)
        assert emu.webhook_deliveries == [(update["update_id"], 500)] * 4
        assert "x-telegram-bot-api-secret-token" not in hook.received[0][0]
        info = await emu.wait_for(
            lambda: _sync_webhook_info(emu).get("last_error_message"), timeout=2
        )
        assert info == "Wrong response from the webhook: 500"


def _sync_webhook_info(emu: TelegramEmulator) -> dict[str, Any]:
    result: dict[str, Any] = _raw(emu, "getWebhookInfo").json()["result"]
    return result


async def test_post_to_webhook_sends_an_arbitrary_secret(emu: TelegramEmulator, bot: Bot) -> None:
    with _Hook(secret="right") as hook:
        await bot.set_webhook(hook.url, secret_token="right")
        update = {
            "update_id": 1,
            "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}},
        }
        assert emu.post_to_webhook(update, "wrong") == 403
        assert emu.post_to_webhook(update, None) == 403
        assert emu.post_to_webhook(update, "right") == 200
        assert emu.webhook_deliveries == []  # raw posts are the test's own, not deliveries


async def test_set_webhook_validates_the_secret(emu: TelegramEmulator, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)secret token contains unallowed characters"):
        await bot.set_webhook("http://127.0.0.1:9/x", secret_token="not ok!")


# -- members and rights -------------------------------------------------------------------------


async def test_restrict_unrestrict_ban_unban(emu: TelegramEmulator, bot: Bot) -> None:
    group = emu.add_group()
    user = emu.add_user()
    emu.join(user, group)
    shapes = {
        "member": "ChatMemberMember",
        "restricted": "ChatMemberRestricted",
        "kicked": "ChatMemberBanned",
        "left": "ChatMemberLeft",
    }

    async def status() -> str:
        await bot.get_chat_member(group, user)
        raw = emu.calls_to("getChatMember")[-1].response["result"]
        assert conforms(shapes[raw["status"]], raw) == []
        assert raw["status"] == emu.member_status(group, user)
        return str(raw["status"])

    assert await status() == "member"
    await bot.restrict_chat_member(group, user, ChatPermissions(can_send_messages=False))
    assert await status() == "restricted"
    permissions = emu.permissions(group, user)
    assert permissions is not None
    assert permissions["can_send_messages"] is False
    assert permissions["can_invite_users"] is False  # omitted fields count as False

    await bot.restrict_chat_member(group, user, ChatPermissions.all_permissions())
    assert await status() == "member"
    assert emu.permissions(group, user) is None

    await bot.ban_chat_member(group, user)
    assert await status() == "kicked"
    await bot.unban_chat_member(group, user, only_if_banned=True)
    assert await status() == "left"

    emu.join(user, group)
    await bot.unban_chat_member(group, user, only_if_banned=True)  # not banned: nothing happens
    assert await status() == "member"
    await bot.unban_chat_member(group, user)  # without only_if_banned it removes the member
    assert await status() == "left"


async def test_a_ban_lasts_until_its_until_date_or_forever(emu: TelegramEmulator, bot: Bot) -> None:
    group = emu.add_group()
    ada, bob, cy = emu.add_user("Ada"), emu.add_user("Bob"), emu.add_user("Cy")
    for user in (ada, bob, cy):
        emu.join(user, group)
    in_a_week = int(time.time()) + 7 * 86400

    await bot.ban_chat_member(group, ada, until_date=in_a_week)
    await bot.ban_chat_member(group, bob)
    # banChatMember: "If user is banned for more than 366 days or less than 30 seconds from
    # the current time they are considered to be banned forever".
    await bot.ban_chat_member(group, cy, until_date=int(time.time()) + 5)

    assert emu.banned_until(group, ada) == in_a_week
    assert emu.banned_until(group, bob) == 0
    assert emu.banned_until(group, cy) == 0
    with pytest.raises(AssertionError, match="banned"):
        emu.join(ada, group)


async def test_a_forum_has_topics_and_messages_name_theirs(emu: TelegramEmulator, bot: Bot) -> None:
    forum, plain = emu.add_group("Forum", forum=True), emu.add_group("Plain")
    ada = emu.add_user("Ada")
    emu.join(ada, forum)
    emu.join(ada, plain)
    topic = emu.add_topic(forum, "Help")

    update = emu.send_text(ada, "/verify", chat_id=forum, topic=topic)
    general = emu.send_text(ada, "hello", chat_id=forum)

    assert conforms("Update", update) == []
    message = update["message"]
    assert message["chat"]["is_forum"] is True
    assert (message["message_thread_id"], message["is_topic_message"]) == (topic, True)
    # Live servers make a topic's messages reply to its creation message.
    assert message["reply_to_message"]["forum_topic_created"]["name"] == "Help"
    assert "message_thread_id" not in general["message"]
    sent = await bot.send_message(forum, "answer", message_thread_id=topic)
    assert (sent.message_thread_id, sent.is_topic_message) == (topic, True)
    assert emu.messages_in(forum)[-1].message_thread_id == topic
    to_general = await bot.send_message(forum, "welcome")
    assert to_general.message_thread_id is None
    with pytest.raises(BadRequest, match=r"(?i)message thread not found"):
        await bot.send_message(forum, "nowhere", message_thread_id=topic + 100)
    with pytest.raises(BadRequest, match=r"(?i)message thread not found"):
        await bot.send_message(plain, "not a forum", message_thread_id=topic)
    with pytest.raises(AssertionError, match="not a forum"):
        emu.add_topic(plain, "Help")


async def test_other_sending_permissions_imply_sending_messages(
    emu: TelegramEmulator, bot: Bot
) -> None:
    group = emu.add_group()
    user = emu.add_user()
    emu.join(user, group)
    await bot.restrict_chat_member(group, user, ChatPermissions(can_send_other_messages=True))
    assert (emu.permissions(group, user) or {})["can_send_messages"] is True
    await bot.restrict_chat_member(
        group,
        user,
        ChatPermissions(can_send_other_messages=True),
        use_independent_chat_permissions=True,
    )
    assert (emu.permissions(group, user) or {})["can_send_messages"] is False


async def test_not_enough_rights_is_a_bad_request(emu: TelegramEmulator, bot: Bot) -> None:
    plain = emu.add_group(bot_is_admin=False)
    limited = emu.add_group(bot_rights={"can_invite_users": True})
    user = emu.add_user()
    for group in (plain, limited):
        emu.join(user, group)
        with pytest.raises(BadRequest, match=r"(?i)not enough rights to restrict/unrestrict"):
            await bot.restrict_chat_member(group, user, ChatPermissions(can_send_messages=False))
        with pytest.raises(BadRequest, match=r"(?i)not enough rights to restrict/unrestrict"):
            await bot.ban_chat_member(group, user)
        assert emu.member_status(group, user) == "member"
    newcomer = emu.add_user("Bob")
    emu.request_join(newcomer, plain)
    with pytest.raises(BadRequest, match=r"(?i)not enough rights to manage join requests"):
        await bot.approve_chat_join_request(plain, newcomer)
    with pytest.raises(BadRequest, match=r"(?i)not enough rights to manage chat invite link"):
        await bot.create_chat_invite_link(plain)


async def test_administrators_cannot_be_restricted(emu: TelegramEmulator, bot: Bot) -> None:
    group = emu.add_group()
    admin = emu.add_user("Grace")
    emu.add_admin(group, admin)
    with pytest.raises(BadRequest, match=r"(?i)user is an administrator of the chat"):
        await bot.ban_chat_member(group, admin)
    admins = await bot.get_chat_administrators(group)
    assert {a.status for a in admins} == {"creator", "administrator"}
    assert emu.bot_id in {a.user.id for a in admins}
    with pytest.raises(BadRequest, match=r"(?i)user not found"):
        await bot.get_chat_member(group, 42)
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(-1009999, "x")


async def test_join_requests_approve_and_decline(emu: TelegramEmulator, bot: Bot) -> None:
    group = emu.add_group()
    ada, bob = emu.add_user("Ada"), emu.add_user("Bob")
    update = emu.request_join(ada, group)
    assert conforms("Update", update) == []
    assert update["chat_join_request"]["user_chat_id"] == ada
    assert emu.join_request_state(group, ada) == "pending"

    await bot.send_message(ada, "Please verify")  # allowed through user_chat_id
    await bot.approve_chat_join_request(group, ada)
    assert emu.join_request_state(group, ada) == "approved"
    assert emu.member_status(group, ada) == "member"
    with pytest.raises(BadRequest, match=r"(?i)HIDE_REQUESTER_MISSING"):
        await bot.approve_chat_join_request(group, ada)
    with pytest.raises(Forbidden, match=r"(?i)can't initiate conversation"):
        await bot.send_message(ada, "the window closed with the request")

    emu.request_join(bob, group)
    await bot.decline_chat_join_request(group, bob)
    assert emu.join_request_state(group, bob) == "declined"
    assert emu.member_status(group, bob) == "left"
    with pytest.raises(BadRequest, match=r"(?i)HIDE_REQUESTER_MISSING"):
        await bot.decline_chat_join_request(group, bob)


async def test_invite_links(emu: TelegramEmulator, bot: Bot) -> None:
    group = emu.add_group()
    link = await bot.create_chat_invite_link(group, name="verify", creates_join_request=True)
    assert link.creates_join_request is True
    assert link.invite_link.startswith("https://t.me/+")
    with pytest.raises(BadRequest, match=r"(?i)member limit"):
        await bot.create_chat_invite_link(group, member_limit=1, creates_join_request=True)


async def test_a_single_use_invite_link_admits_one_member(emu: TelegramEmulator, bot: Bot) -> None:
    group = emu.add_group()
    ada, bob = emu.add_user("Ada"), emu.add_user("Bob")
    expires = int(time.time()) + 86400
    link = await bot.create_chat_invite_link(
        group, name="verifybot helper", expire_date=expires, member_limit=1
    )
    assert (link.member_limit, link.name) == (1, "verifybot helper")
    assert int(link.expire_date.timestamp()) == expires  # type: ignore[union-attr]

    update = emu.join_by_link(ada, link.invite_link)

    assert conforms("Update", update) == []
    assert update["chat_member"]["new_chat_member"]["status"] == "member"
    assert update["chat_member"]["invite_link"]["name"] == "verifybot helper"
    assert emu.member_status(group, ada) == "member"
    with pytest.raises(AssertionError, match="used up"):
        emu.join_by_link(bob, link.invite_link)
    assert emu.invite_links(group)[0]["member_limit"] == 1


async def test_a_revoked_invite_link_admits_nobody(emu: TelegramEmulator, bot: Bot) -> None:
    group, other = emu.add_group(), emu.add_group()
    ada = emu.add_user("Ada")
    link = await bot.create_chat_invite_link(group, name="verifybot helper", member_limit=1)

    revoked = await bot.revoke_chat_invite_link(group, link.invite_link)

    assert (revoked.invite_link, revoked.is_revoked, revoked.name) == (
        link.invite_link,
        True,
        "verifybot helper",
    )
    assert emu.invite_links(group)[0]["is_revoked"] is True
    with pytest.raises(AssertionError, match="was revoked"):
        emu.join_by_link(ada, link.invite_link)
    assert emu.member_status(group, ada) == "left"
    again = await bot.revoke_chat_invite_link(group, link.invite_link)
    assert again.is_revoked is True
    with pytest.raises(BadRequest, match=r"(?i)INVITE_HASH_EXPIRED"):
        await bot.revoke_chat_invite_link(other, link.invite_link)  # not that chat's link
    weak = emu.add_group(bot_rights={"can_restrict_members": True})
    with pytest.raises(BadRequest, match=r"(?i)not enough rights to manage chat invite link"):
        await bot.revoke_chat_invite_link(weak, link.invite_link)


async def test_promote_a_member_set_a_title_then_demote(emu: TelegramEmulator, bot: Bot) -> None:
    group = emu.add_group()
    ada = emu.add_user("Ada")
    emu.join(ada, group)

    assert await bot.promote_chat_member(group, ada, can_invite_users=True)
    await bot.get_chat_member(group, ada)
    shape = emu.calls_to("getChatMember")[-1].response["result"]
    assert conforms("ChatMemberAdministrator", shape) == []
    assert (shape["status"], shape["can_be_edited"]) == ("administrator", True)
    rights = {"can_be_edited": True, "can_manage_chat": True, "can_invite_users": True}
    assert emu.admin_rights(group, ada) == rights

    assert await bot.set_chat_administrator_custom_title(group, ada, "helper")
    assert (emu.admin_rights(group, ada) or {})["custom_title"] == "helper"

    assert await bot.promote_chat_member(group, ada)  # every right False: a member again
    assert emu.member_status(group, ada) == "member"
    assert emu.admin_rights(group, ada) is None
    assert await bot.promote_chat_member(group, ada)  # demoting a member changes nothing
    assert emu.member_status(group, ada) == "member"


async def test_promotion_refusals_use_the_live_servers_words(
    emu: TelegramEmulator, bot: Bot
) -> None:
    group = emu.add_group()
    weak = emu.add_group(bot_rights={"can_invite_users": True, "can_restrict_members": True})
    ada, grace, outsider = emu.add_user("Ada"), emu.add_user("Grace"), emu.add_user("Out")
    emu.join(ada, group)
    emu.join(ada, weak)
    emu.add_admin(group, grace)
    admins = await bot.get_chat_administrators(group)
    owner = next(a.user.id for a in admins if a.status == "creator")

    cases: list[tuple[int, int, dict[str, Any], str]] = [
        (weak, ada, {"can_invite_users": True}, "not enough rights"),
        (group, ada, {"can_change_info": True}, "right_forbidden"),
        (group, grace, {"can_invite_users": True}, "chat_admin_required"),
        (group, owner, {"can_invite_users": True}, "can't remove chat owner"),
        (group, emu.bot_id, {"can_invite_users": True}, "can't promote self"),
        (group, outsider, {"can_invite_users": True}, "user_not_participant"),
    ]
    for chat, user, rights, words in cases:
        with pytest.raises(BadRequest) as refused:
            await bot.promote_chat_member(chat, user, **rights)
        assert refused.value.message.lower() == words, (user, rights)
    with pytest.raises(BadRequest, match=r"(?i)chat_admin_required"):
        await bot.set_chat_administrator_custom_title(group, grace, "boss")
    assert emu.member_status(group, ada) == "member"


async def test_a_group_message_can_reply_to_another(emu: TelegramEmulator, bot: Bot) -> None:
    group = emu.add_group()
    ada, grace = emu.add_user("Ada"), emu.add_user("Grace")
    emu.join(ada, group)
    emu.add_admin(group, grace)
    said = emu.send_text(ada, "hello", chat_id=group)["message"]

    update = emu.send_text(grace, "/grant helper", chat_id=group, reply_to=said["message_id"])

    assert conforms("Update", update) == []
    replied = update["message"]["reply_to_message"]
    assert (replied["message_id"], replied["from"]["id"]) == (said["message_id"], ada)
    with pytest.raises(AssertionError, match="no message 999"):
        emu.send_text(grace, "/grant helper", chat_id=group, reply_to=999)


async def test_send_document_uploads_a_file(emu: TelegramEmulator, bot: Bot) -> None:
    ada, stranger = emu.add_user("Ada"), emu.add_user("Stranger")
    emu.send_text(ada, "/start")
    content = "platform,user_id,phone\ntelegram,1,+44•••••3456\n".encode()

    sent = await bot.send_document(
        ada, InputFile(content, filename="members.csv"), caption="2 members"
    )

    result = emu.calls_to("sendDocument")[-1].response["result"]
    assert conforms("Message", result) == []
    assert sent.document is not None and sent.document.file_name == "members.csv"
    assert sent.caption == "2 members"
    snapshot = emu.last_message(ada)
    assert snapshot is not None and snapshot.document is not None
    assert (snapshot.document.filename, snapshot.document.content) == ("members.csv", content)
    assert snapshot.document.mime_type == "text/csv"
    assert snapshot.caption == "2 members"
    with pytest.raises(BadRequest, match=r"(?i)file must be non-empty"):
        await bot.send_document(ada, InputFile(b"", filename="empty.csv"))
    with pytest.raises(Forbidden, match=r"(?i)can't initiate conversation"):
        await bot.send_document(stranger, InputFile(content, filename="members.csv"))


# -- private chats ------------------------------------------------------------------------------


async def test_private_chat_rules(emu: TelegramEmulator, bot: Bot) -> None:
    user = emu.add_user()
    with pytest.raises(Forbidden, match=r"(?i)bot can't initiate conversation with a user"):
        await bot.send_message(user, "hello")
    emu.send_text(user, "/start")
    await bot.send_message(user, "hello")

    update = emu.block_bot(user)
    assert conforms("Update", update) == []
    assert update["my_chat_member"]["new_chat_member"]["status"] == "kicked"
    with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
        await bot.send_message(user, "still there?")
    assert emu.member_status(user, emu.bot_id) == "kicked"

    emu.send_text(user, "back again")  # writing to the bot unblocks it
    await bot.send_message(user, "welcome back")
    kinds = [next(k for k in u.to_dict() if k != "update_id") for u in await bot.get_updates()]
    assert kinds == ["message", "my_chat_member", "my_chat_member", "message"]


async def test_adding_and_removing_the_bot_sends_it_my_chat_member(
    emu: TelegramEmulator, bot: Bot
) -> None:
    group = emu.add_group("Chess club", bot_is_admin=False)
    owner = emu.add_user("Owner")
    emu.add_admin(group, owner)
    emu.remove_bot(group, by=owner)

    added = emu.add_bot(group, by=owner)
    removed = emu.remove_bot(group, by=owner)

    for update in (added, removed):
        assert conforms("Update", update) == []
        assert update["my_chat_member"]["chat"]["id"] == group
        assert update["my_chat_member"]["from"]["id"] == owner
    assert added["my_chat_member"]["new_chat_member"]["status"] == "administrator"
    assert removed["my_chat_member"]["new_chat_member"]["status"] == "left"
    assert emu.member_status(group, emu.bot_id) == "left"
    kinds = {next(k for k in u.to_dict() if k != "update_id") for u in await bot.get_updates()}
    assert kinds == {"my_chat_member"}


async def test_contact_and_callback_updates(emu: TelegramEmulator, bot: Bot) -> None:
    user = emu.add_user()
    emu.send_text(user, "/start")
    keyboard = ReplyKeyboardMarkup([[KeyboardButton("Share", request_contact=True)]])
    await bot.send_message(user, "Share your number", reply_markup=keyboard)
    snapshot = emu.last_message(user)
    assert snapshot is not None
    assert snapshot.reply_markup is not None
    assert snapshot.reply_markup["keyboard"][0][0]["request_contact"] is True
    assert "reply_markup" not in emu.calls_to("sendMessage")[-1].response["result"]

    own = emu.share_contact(user, "+447700900123", contact_user_id=user)
    other = emu.share_contact(user, "+447700900456", contact_user_id=None, first_name="Bob")
    assert own["message"]["contact"]["user_id"] == user
    assert "user_id" not in other["message"]["contact"]

    sent = await bot.send_message(
        user,
        "Pick",
        reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="yes")]]),
    )
    pressed = emu.press(user, sent.message_id, "yes")
    assert conforms("Update", pressed) == []
    with pytest.raises(AssertionError, match="no button"):
        emu.press(user, sent.message_id, "no")
    query_id = pressed["callback_query"]["id"]
    assert emu.callback_answer(query_id) is None
    await bot.answer_callback_query(query_id, text="Thanks")
    assert emu.callback_answer(query_id) == {
        "text": "Thanks",
        "show_alert": False,
        "url": None,
        "cache_time": 0,
    }
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(query_id)
    updates = await bot.get_updates()
    assert all(conforms("Update", u.to_dict()) == [] for u in updates)


async def test_edit_and_delete(emu: TelegramEmulator, bot: Bot) -> None:
    user = emu.add_user()
    emu.send_text(user, "/start")
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data="go")]])
    sent = await bot.send_message(user, "Step 1", reply_markup=keyboard)
    await bot.edit_message_text("Step 2", chat_id=user, message_id=sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("Step 2", chat_id=user, message_id=sent.message_id)
    await bot.edit_message_reply_markup(user, sent.message_id, reply_markup=keyboard)
    snapshot = emu.last_message(user)
    assert snapshot is not None
    assert (snapshot.text, snapshot.edits, snapshot.reply_markup) == (
        "Step 2",
        2,
        keyboard.to_dict(),
    )

    reply = await bot.send_message(user, "re", reply_parameters=ReplyParameters(sent.message_id))
    assert reply.reply_to_message is not None
    assert reply.reply_to_message.message_id == sent.message_id

    await bot.delete_message(user, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await bot.delete_message(user, sent.message_id)
    await bot.delete_messages(user, [reply.message_id, 999])
    assert [m.deleted for m in emu.messages_in(user)] == [True, True]
    with pytest.raises(BadRequest, match=r"(?i)message can't be edited"):
        await bot.edit_message_text("x", chat_id=user, message_id=1)  # the user's /start


async def test_parse_modes(emu: TelegramEmulator, bot: Bot) -> None:
    user = emu.add_user()
    emu.send_text(user, "/start")
    sent = await bot.send_message(user, "<b>Code</b> &amp; more", parse_mode="HTML")
    assert sent.text == "Code & more"
    assert emu.last_message(user).text == "<b>Code</b> &amp; more"  # type: ignore[union-attr]
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message(user, "<b>open", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)character '\.' is reserved"):
        await bot.send_message(user, "Your code is 1234.", parse_mode="MarkdownV2")
    ok = await bot.send_message(user, r"Your *code* is 1234\.", parse_mode="MarkdownV2")
    assert ok.text == "Your *code* is 1234."


# -- faults, commands, chats --------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_injected_429_raises_retry_after(emu: TelegramEmulator, bot: Bot) -> None:
    user = emu.add_user()
    emu.send_text(user, "/start")
    emu.inject("sendMessage", 429, retry_after=7)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(user, "x")
    assert "Retry in 7 seconds" in str(caught.value)  # (.retry_after warns about its type)
    body = emu.calls_to("sendMessage")[-1].response
    assert body == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 7",
        "parameters": {"retry_after": 7},
    }
    await bot.send_message(user, "x")  # one-shot
    emu.inject("*", 502, times=2)
    for _ in range(2):
        with pytest.raises(Exception, match="Bad Gateway"):
            await bot.get_me()


async def test_commands_are_stored_per_scope_and_language(emu: TelegramEmulator, bot: Bot) -> None:
    group = emu.add_group()
    await bot.set_my_commands([BotCommand("start", "Start")])
    await bot.set_my_commands([BotCommand("verify", "Verify")], scope=BotCommandScopeChat(group))
    await bot.set_my_commands([BotCommand("start", "Commencer")], language_code="fr")
    assert emu.commands() == [{"command": "start", "description": "Start"}]
    assert emu.commands({"type": "default"}) == emu.commands()
    assert emu.commands({"type": "chat", "chat_id": group}) == [
        {"command": "verify", "description": "Verify"}
    ]
    assert emu.commands(language_code="fr")[0]["description"] == "Commencer"
    scoped = await bot.get_my_commands(scope=BotCommandScopeChat(group))
    assert [c.command for c in scoped] == ["verify"]
    assert await bot.get_my_commands(language_code="de") == ()  # no fallback, like the live API
    await bot.delete_my_commands(scope=BotCommandScopeDefault())
    assert emu.commands() == []
    with pytest.raises(BadRequest, match=r"(?i)BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand("Start!", "bad")])


async def test_get_chat_returns_full_info(emu: TelegramEmulator, bot: Bot) -> None:
    group = emu.add_group("Readers")
    user = emu.add_user("Ada", username="ada")
    info = await bot.get_chat(group)
    assert (info.title, info.type) == ("Readers", "supergroup")
    assert info.permissions is not None
    assert info.permissions.can_send_messages is True
    private = await bot.get_chat(user)
    assert (private.type, private.username) == ("private", "ada")


# -- the emulator against the spec --------------------------------------------------------------


def test_every_emulated_method_and_parameter_is_in_the_spec() -> None:
    spec = load_spec()
    for method, reads in emulated_methods().items():
        assert method in spec.methods, method
        assert reads <= set(spec.fields(method)), (method, reads - set(spec.fields(method)))


def test_conforms_finds_what_is_wrong() -> None:
    user = {"id": 1, "is_bot": False, "first_name": "Ada"}
    assert conforms("User", user) == []
    assert conforms("User", {"id": 1, "is_bot": False}) == [
        "User: missing required field 'first_name'"
    ]
    assert conforms("User", {**user, "nick": "x"}) == ["User: unknown field 'nick'"]
    assert conforms("User", {**user, "id": "1"}) == ["User.id: expected Integer, got String"]
    assert conforms("User", {**user, "is_bot": 0}) == ["User.is_bot: expected Boolean, got Integer"]
    assert conforms("ChatMember", {"status": "member", "user": user}) == []
    assert conforms("ChatMember", {"status": "kicked", "user": user}) == [
        "ChatMember: missing required field 'until_date'"
    ]
    assert conforms("ChatMember", {"status": "boss", "user": user})
    assert conforms("Array of BotCommand", [{"command": "a", "description": "b"}]) == []
    assert conforms("Array of BotCommand", [{"command": "a"}])


def test_a_missing_spec_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="VERIFYBOT_SPECS"):
        load_spec(tmp_path / SPEC_FILE)


def test_wait_until_reports_recent_calls_on_timeout(emu: TelegramEmulator) -> None:
    _raw(emu, "getMe")
    with pytest.raises(AssertionError, match="getMe 200"):
        emu.wait_until(lambda: False, timeout=0.05)


# -- latency and Telegram's per-group message budget ------------------------------------------


async def test_every_call_takes_the_answer_delay_and_takes_effect_halfway(
    emu: TelegramEmulator, bot: Bot
) -> None:
    group, user = emu.add_group(), emu.add_user()
    emu.join(user, group)
    emu.answer_delay = 0.2
    emu.answer_delays["getMe"] = 0.0

    started = time.time()
    await bot.restrict_chat_member(group, user, ChatPermissions.no_permissions())
    answered = time.time()
    await bot.get_me()

    call = emu.calls_to("restrictChatMember")[-1]
    assert answered - started >= 0.2
    assert call.at + 0.1 <= call.applied_at <= answered - 0.1
    assert emu.calls_to("getMe")[-1].applied_at - emu.calls_to("getMe")[-1].at < 0.1
    emu.inject("sendMessage", 400)
    with pytest.raises(BadRequest):
        await bot.send_message(user, "x")
    assert emu.calls_to("sendMessage")[-1].applied_at == 0.0  # refused: never took effect


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_a_group_gets_20_messages_a_minute_then_429_with_retry_after(
    emu: TelegramEmulator, bot: Bot
) -> None:
    group, other, user = emu.add_group(), emu.add_group(), emu.add_user()
    emu.send_text(user, "/start")
    for n in range(20):
        await bot.send_message(group, f"welcome {n}")

    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(group, "one too many")

    assert "Retry in 3 seconds" in str(caught.value)  # a message's share of the minute
    assert emu.calls_to("sendMessage")[-1].response["parameters"] == {"retry_after": 3}
    await bot.send_message(other, "another group has its own budget")
    await bot.send_message(user, "a private chat is not a group")
    await bot.delete_message(group, 1)  # deleting is not sending
    emu.join(user, group)
    await bot.restrict_chat_member(group, user, ChatPermissions.no_permissions())
    assert len(emu.messages_in(group)) == 20

    emu.group_messages_per_minute = None
    await bot.send_message(group, "no budget")


async def test_a_join_posts_its_service_message_beside_the_chat_member_update(
    emu: TelegramEmulator, bot: Bot
) -> None:
    group, user = emu.add_group(), emu.add_user("Ada")
    await bot.get_updates(allowed_updates=["message", "chat_member"], timeout=0)

    emu.join(user, group)

    updates = await bot.get_updates(timeout=0)
    kinds = [(u.chat_member is not None, u.message is not None) for u in updates]
    assert kinds == [(True, False), (False, True)]
    service = updates[1].message
    assert service is not None and service.chat.id == group
    assert [m.id for m in service.new_chat_members] == [user]
