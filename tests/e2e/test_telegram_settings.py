"""One bot, many groups, each with its own rules, set by its own administrators through
``/settings``: the real python-telegram-bot against the Bot API emulator, real Redis and SQLite.
"""

from __future__ import annotations

import time

from bot.app import App
from bot.gate import Hold
from bot.identity import MemberKey
from bot.policy import community_scope
from tests.e2e.conftest import RunBot
from tests.e2e.test_telegram import E164, NUMBER, callback_data, next_message
from tests.e2e.test_telegram_consequences import taken_number_reviewed
from tests.emulators.telegram import SentMessage, TelegramEmulator
from tests.emulators.vonage import VonageEmulator

FR_NUMBER = "+33 6 12 34 56 78"
FR_E164 = "33612345678"


def button(message: SentMessage, op: str, chat: int, name: str) -> str:
    data = f"vs:{op}:{chat}:{name}"
    assert data in callback_data(message)
    return data


async def open_panel(telegram: TelegramEmulator, admin: int, group: int, title: str) -> SentMessage:
    seen = len(telegram.messages_in(admin))
    telegram.send_text(admin, "/settings", chat_id=group)
    await next_message(telegram, group, "I've sent you this group's settings")
    return await next_message(telegram, admin, f"Settings for {title}", after=seen)


async def test_two_groups_each_set_their_own_rules_through_settings(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    alice, bob = telegram.add_user("Alice"), telegram.add_user("Bob")
    chess, books = telegram.add_group("Chess club"), telegram.add_group("Book club")
    telegram.add_admin(chess, alice)
    telegram.add_admin(books, bob)
    carol, dave = telegram.add_user("Carol"), telegram.add_user("Dave")
    async with run_bot() as app:
        for admin in (alice, bob):
            telegram.send_text(admin, "/settings")  # opens the private chat; no group known yet
            await next_message(telegram, admin, "I don't know of any group you administer")

        # Chess club: join requests, 5 minutes to verify, then a week's ban.
        panel = await open_panel(telegram, alice, chess, "Chess club")
        telegram.press(alice, panel, button(panel, "c", chess, "gate_mode"))
        await next_message(telegram, alice, "Gate is now join_request (was restrict)")
        telegram.press(alice, panel, button(panel, "c", chess, "verify_timeout"))
        await next_message(telegram, alice, "Time to verify is now 5m (was 0)")
        for _ in range(3):  # kick -> mute -> ban:1d -> ban:7d
            telegram.press(alice, panel, button(panel, "c", chess, "consequence"))
        await next_message(telegram, alice, "If not verified is now ban:7d (was ban:1d)")
        await telegram.wait_for(lambda: "Gate: join_request" in str(panel_now(telegram, panel)))

        # Book club: stays restrict, mutes, blocks French numbers and greets in its own words.
        panel = await open_panel(telegram, bob, books, "Book club")
        telegram.press(bob, panel, button(panel, "c", books, "consequence"))
        await next_message(telegram, bob, "If not verified is now mute (was kick)")
        telegram.press(bob, panel, button(panel, "a", books, "blocked_countries"))
        question = await next_message(telegram, bob, "Reply to this message with Blocked countries")
        assert question.reply_markup == {"force_reply": True, "selective": True}
        telegram.send_text(bob, "FR, Narnia", reply_to=question.message_id)
        await next_message(telegram, bob, "unknown country code(s) NARNIA (use ISO codes: GB, US)")
        telegram.send_text(bob, "FR", reply_to=question.message_id)
        await next_message(telegram, bob, "Blocked countries is now FR (was none)")
        telegram.press(bob, panel, button(panel, "a", books, "welcome"))
        question = await next_message(telegram, bob, "Reply to this message with Welcome text")
        telegram.send_text(bob, "Read the <b>rules</b> first.", reply_to=question.message_id)
        await next_message(telegram, bob, "Welcome text is now Read the <b>rules</b> first.")

        chess_policy = await app.policies.policy_for(community_scope("telegram", str(chess)))
        books_policy = await app.policies.policy_for(community_scope("telegram", str(books)))
        assert (chess_policy.gate_mode, chess_policy.verify_timeout) == ("join_request", 300)
        assert str(chess_policy.consequence) == "ban:7d"
        assert chess_policy.blocked_countries == frozenset()
        assert (books_policy.gate_mode, str(books_policy.consequence)) == ("restrict", "mute")
        assert books_policy.blocked_countries == {"FR"}
        trail = app.directory.audit_trail(subject=community_scope("telegram", str(books)))
        assert {(e.details["field"], e.details["old"], e.details["new"]) for e in trail} == {
            ("consequence", "kick", "mute"),
            ("blocked_countries", "", "FR"),
            ("welcome", "", "Read the <b>rules</b> first."),
        }
        assert {e.actor for e in trail} == {f"telegram:{telegram.bot_id}:{bob}"}

        # Each group's gate follows its own mode: Chess club asks, Book club mutes.
        telegram.request_join(carol, chess)
        await next_message(telegram, carol, "You asked to join Chess club")
        telegram.join(dave, books)
        welcome = await next_message(telegram, books, "Welcome, Dave")
        assert welcome.text.endswith("\n\nRead the <b>rules</b> first.")  # plain text, as typed
        assert telegram.member_status(books, dave) == "restricted"
        # ...and gives newcomers its own time: five minutes in Chess club, no limit in Book club.
        carol_hold = await hold_of(app, telegram, chess, carol)
        dave_hold = await hold_of(app, telegram, books, dave)
        assert carol_hold is not None and carol_hold.deadline is not None
        assert 250 < carol_hold.deadline - time.time() <= 300
        assert dave_hold is not None and dave_hold.deadline is None

        # A French number: refused for Book club, accepted for Chess club.
        telegram.send_text(dave, f"/start g{books}")
        await next_message(telegram, dave, "send me your mobile phone number")
        telegram.send_text(dave, FR_NUMBER)
        await next_message(telegram, dave, "Numbers from that country can't be used")
        await next_message(telegram, carol, "send me your mobile phone number")
        telegram.send_text(carol, FR_NUMBER)
        await next_message(telegram, carol, "I've sent a 6-digit code")
        assert [d.to for d in vonage.deliveries] == [FR_E164]

        # Dave verifies with a number Book club accepts, and is let in.
        telegram.send_text(dave, NUMBER)
        await next_message(telegram, dave, "I've sent")
        telegram.send_text(dave, vonage.last_code(E164))
        await next_message(telegram, dave, "You can now take part in Book club")


async def hold_of(app: App, telegram: TelegramEmulator, place: int, user: int) -> Hold | None:
    """The member's hold at the group's gate, as the gate keeps it in Redis."""
    member = MemberKey("telegram", str(telegram.bot_id), str(user))
    raw = await app.store.redis.get(app.store.keys.gate_hold(Hold(str(place), member, "").field))
    return Hold.from_json(raw) if raw else None


def panel_now(telegram: TelegramEmulator, panel: SentMessage) -> SentMessage | None:
    return next(
        (m for m in telegram.messages_in(panel.chat_id) if m.message_id == panel.message_id), None
    )


async def test_settings_are_refused_to_anyone_who_does_not_administer_the_group(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    alice, mallory = telegram.add_user("Alice"), telegram.add_user("Mallory")
    chess = telegram.add_group("Chess club")
    telegram.add_admin(chess, alice)
    telegram.join(mallory, chess)
    # Telegram is asked at every press (MODERATOR_CACHE_SECONDS=0: nothing remembered).
    async with run_bot(telegram_gate_mode="off", moderator_cache_seconds=0) as app:
        telegram.send_text(mallory, "/settings", chat_id=chess)
        await next_message(telegram, chess, "Only this group's administrators")
        assert telegram.messages_in(mallory) == []

        # A modified client sends a button's data for a group Mallory does not administer.
        telegram.send_text(mallory, "/settings")
        listed = await next_message(telegram, mallory, "I don't know of any group")
        telegram.press(mallory, listed, f"vs:c:{chess}:gate_mode", forged=True)
        await next_message(telegram, mallory, "Only this group's administrators")

        # An admin who never opened a private chat with the bot is told how.
        telegram.send_text(alice, "/settings", chat_id=chess)
        await next_message(telegram, chess, "I can't write to you in private yet")

        # An admin's panel stops working the moment they are no longer an admin.
        telegram.send_text(alice, "/start")
        await next_message(telegram, alice, "phone number")
        panel = await open_panel(telegram, alice, chess, "Chess club")
        telegram.demote(chess, alice)
        telegram.press(alice, panel, button(panel, "c", chess, "gate_mode"))
        await next_message(telegram, alice, "Only this group's administrators")

        scope = community_scope("telegram", str(chess))
        assert app.directory.community_policy(scope).overrides == {}
        refusals = app.directory.audit_trail(subject=scope)
        assert [(e.event, e.actor.rsplit(":", 1)[1]) for e in reversed(refusals)] == [
            ("policy_refused", str(mallory)),
            ("policy_refused", str(mallory)),
            ("policy_refused", str(alice)),
        ]


async def test_the_bot_knows_the_groups_it_is_added_to_and_lists_those_you_administer(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    alice = telegram.add_user("Alice")
    chess = telegram.add_group("Chess club", bot_is_admin=False)
    books = telegram.add_group("Book club", bot_is_admin=False)
    telegram.add_admin(chess, alice)
    telegram.add_admin(books, alice)
    telegram.remove_bot(chess, by=alice)
    telegram.remove_bot(books, by=alice)
    async with run_bot(telegram_gate_mode="off") as app:
        telegram.add_bot(chess, by=alice)
        telegram.add_bot(books, by=alice)
        await telegram.wait_for(lambda: len(app.directory.groups()) == 2)
        telegram.remove_bot(books, by=alice)
        await telegram.wait_for(lambda: len(app.directory.groups()) == 1)

        telegram.send_text(alice, "/settings")
        listed = await next_message(telegram, alice, "Which group's settings?")
        assert callback_data(listed) == [f"vs:o:{chess}"]
        telegram.press(alice, listed, f"vs:o:{chess}")
        await telegram.wait_for(
            lambda: "Settings for Chess club" in (panel_now(telegram, listed) or listed).text
        )

        # The group's language greets members whose own language has no translation.
        panel = panel_now(telegram, listed)
        assert panel is not None
        telegram.press(alice, panel, button(panel, "c", chess, "default_language"))
        await next_message(telegram, alice, "Language is now es (was en)")
        amelie = telegram.add_user("Amélie", language_code="fr")
        telegram.send_text(amelie, f"/start g{chess}")
        await next_message(telegram, amelie, "envíame tu número de móvil")
        telegram.send_text(amelie, "/help")  # still verifying for Chess club
        await next_message(telegram, amelie, "Envía tu número de móvil")


async def test_a_number_one_group_blocks_does_not_open_it_when_verified_through_another(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    chess, books = telegram.add_group("Chess club"), telegram.add_group("Book club")
    dave = telegram.add_user("Dave")
    async with run_bot() as app:
        await app.policies.change(
            community_scope("telegram", str(books)), "blocked_countries", "FR", actor="test"
        )
        telegram.join(dave, books)
        await telegram.wait_for(lambda: telegram.member_status(books, dave) == "restricted")
        telegram.join(dave, chess)
        await telegram.wait_for(lambda: telegram.member_status(chess, dave) == "restricted")

        # Verified through Chess club's button, with a number Book club blocks.
        telegram.send_text(dave, f"/start g{chess}")
        await next_message(telegram, dave, "send me your mobile phone number")
        telegram.send_text(dave, FR_NUMBER)
        await next_message(telegram, dave, "I've sent")
        telegram.send_text(dave, vonage.last_code(FR_E164))
        await next_message(telegram, dave, "You can now take part in Chess club")
        assert telegram.member_status(chess, dave) == "member"
        assert telegram.member_status(books, dave) == "restricted"

        # Book club's own button: that number is not good enough there, so a new one is asked.
        seen = len(telegram.messages_in(dave))
        telegram.send_text(dave, f"/start g{books}")
        await next_message(telegram, dave, "Numbers from that country can't be used", after=seen)
        telegram.send_text(dave, NUMBER)
        await next_message(telegram, dave, "I've sent", after=seen)
        telegram.send_text(dave, vonage.last_code(E164))
        await next_message(telegram, dave, "You can now take part in Book club")
        assert telegram.member_status(books, dave) == "member"


async def test_each_group_deals_with_the_unverified_by_the_consequence_its_admin_chose(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    alice = telegram.add_user("Alice")
    chess, books = telegram.add_group("Chess club"), telegram.add_group("Book club")
    telegram.add_admin(chess, alice)
    erin, fred = telegram.add_user("Erin"), telegram.add_user("Fred")
    async with run_bot() as app:
        telegram.send_text(alice, "/settings")
        await next_message(telegram, alice, "I don't know of any group")
        panel = await open_panel(telegram, alice, chess, "Chess club")
        telegram.press(alice, panel, button(panel, "c", chess, "consequence"))
        await next_message(telegram, alice, "If not verified is now mute (was kick)")
        # Shorter than any button offers, as a test needs; the same rules otherwise.
        for group in (chess, books):
            scope = community_scope("telegram", str(group))
            await app.policies.change(scope, "verify_timeout", "2", actor="test")

        telegram.join(erin, chess)
        telegram.join(fred, books)
        await telegram.wait_for(lambda: telegram.member_status(books, fred) == "left", timeout=8)
        # Erin never opened a private chat, so the bot's word to her is refused, but tried.
        await telegram.wait_for(
            lambda: [c for c in telegram.calls_to("sendMessage") if c.params["chat_id"] == erin],
            timeout=8,
        )
        notice = next(c for c in telegram.calls_to("sendMessage") if c.params["chat_id"] == erin)
        assert "you stay in Chess club without being able to post" in notice.params["text"]

        assert telegram.member_status(chess, erin) == "restricted"  # muted: stays, silent
        assert [c.params["user_id"] for c in telegram.calls_to("banChatMember")] == [fred]


async def test_settings_in_a_forum_topic_answer_in_that_topic(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    alice, mallory = telegram.add_user("Alice"), telegram.add_user("Mallory")
    forum = telegram.add_group("Forum", forum=True)
    topic = telegram.add_topic(forum, "Admins")
    telegram.add_admin(forum, alice)
    telegram.join(mallory, forum)
    async with run_bot(telegram_gate_mode="off"):
        telegram.send_text(alice, "/start")
        await next_message(telegram, alice, "phone number")
        telegram.send_text(alice, "/settings", chat_id=forum, topic=topic)
        line = await next_message(telegram, forum, "I've sent you this group's settings")
        assert line.message_thread_id == topic
        await next_message(telegram, alice, "Settings for Forum")

        telegram.send_text(mallory, "/settings", chat_id=forum, topic=topic)
        refused = await next_message(telegram, forum, "Only this group's administrators")
        assert refused.message_thread_id == topic

        telegram.send_text(alice, "/settings", chat_id=forum)  # in General: answered there
        await telegram.wait_for(
            lambda: len([m for m in telegram.messages_in(forum) if "sent you" in m.text]) == 2
        )
        assert telegram.messages_in(forum)[-1].message_thread_id is None


async def test_a_group_sends_its_reviews_and_verifications_to_its_own_log_chat(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    alice = telegram.add_user("Alice")
    chess, mods = telegram.add_group("Chess club"), telegram.add_group("Moderators")
    chess_log = telegram.add_group("Chess log")
    foreign = telegram.add_group("Someone else's chat")  # the bot is there, Alice is not admin
    botless = telegram.add_group("Alice's other chat")  # Alice is admin, the bot is not there
    for chat in (chess, chess_log, botless):
        telegram.add_admin(chat, alice)
    telegram.remove_bot(botless, by=alice)
    async with run_bot(telegram_log_chat_id=str(mods)) as app:
        telegram.send_text(alice, "/start")
        await next_message(telegram, alice, "phone number")
        panel = await open_panel(telegram, alice, chess, "Chess club")
        # Auto roles are the operator's (``verifybot policy set``), never offered here.
        assert not [data for data in callback_data(panel) if data.endswith(":auto_roles")]
        telegram.press(alice, panel, button(panel, "a", chess, "log_chat"))
        question = await next_message(telegram, alice, "Reply to this message with Log chat")
        assert str(mods) not in question.text
        telegram.send_text(alice, "#mods", reply_to=question.message_id)
        await next_message(telegram, alice, "use a chat id like -1001234567890")
        for chat in (foreign, botless):
            seen = len(telegram.messages_in(alice))
            telegram.send_text(alice, str(chat), reply_to=question.message_id)
            await next_message(telegram, alice, f"I can't post to {chat}", after=seen)
        scope = community_scope("telegram", str(chess))
        assert app.directory.community_policy(scope).overrides == {}
        telegram.send_text(alice, str(chess_log), reply_to=question.message_id)
        # The operator's log chat is not the group admin's to know: it shows as none.
        assert f"Log chat: {mods}" not in str(panel_now(telegram, panel))
        await next_message(telegram, alice, f"Log chat is now {chess_log} (was none)")

        # Cy verifies for no group: the process-wide log chat hears of it.
        ada, entry = await taken_number_reviewed(telegram, vonage, chess, chess_log)
        await next_message(telegram, mods, "✅ Cy")
        assert not any("another account" in m.text for m in telegram.messages_in(mods))
        # Chess club's review entry is in Chess log, decided there by its administrator.
        telegram.press(alice, entry, callback_data(entry)[0])
        await next_message(telegram, ada, "A moderator approved you")
        assert telegram.member_status(chess, ada) == "member"

        # A verification for Chess club is logged in Chess log only.
        dave = telegram.add_user("Dave")
        telegram.join(dave, chess)
        telegram.send_text(dave, f"/start g{chess}")
        await next_message(telegram, dave, "phone number")
        telegram.send_text(dave, FR_NUMBER)
        await next_message(telegram, dave, "I've sent a 6-digit code")
        telegram.send_text(dave, vonage.last_code(FR_E164))
        await next_message(telegram, dave, "You can now take part in Chess club")
        await next_message(telegram, chess_log, "✅ Dave")
        assert not any("Dave" in m.text for m in telegram.messages_in(mods))
