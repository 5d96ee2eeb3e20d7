"""The catalogue: every language complete, every key the flow can send present."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

import bot.flow
from bot.flow import (
    Action,
    Cancel,
    ChangeNumber,
    CheckFailed,
    CheckLost,
    CodeAccepted,
    CodeExpired,
    CodeGiven,
    CodeRejected,
    ContactShared,
    Context,
    Conversation,
    Date,
    Duration,
    Failure,
    FlowPolicy,
    Help,
    Limited,
    LinkLookedUp,
    LinksCounted,
    PhoneBusy,
    PhoneGiven,
    PhoneTaken,
    Purpose,
    Recorded,
    RecordFailed,
    Reply,
    Resend,
    ResendFailed,
    Resent,
    Reserved,
    SmsPaused,
    Start,
    StartFailed,
    State,
    Status,
    Text,
    TooManyAttempts,
    VerificationStarted,
    step,
)
from bot.phone import PhonePolicy, PhoneRefusal
from bot.texts import REFERENCE, Catalogue, CatalogueError, placeholders

CATALOGUE = Catalogue.load()
REFERENCE_TEXTS = CATALOGUE.languages[REFERENCE]


def flow_reply_keys() -> set[str]:
    """Every reply key the flow sends: each row of its table (and each state's help) run with
    conversations and events that take each of its branches, at moments before and after
    the clock's deadlines."""
    now, phone = 1_000_000.0, "+447400123456"
    code = Conversation(
        state=State.AWAIT_CODE, phone=phone, country="GB", request_id="r",
        code_sent_at=now - 60, code_expires_at=now + 240,
    )  # fmt: skip
    conversations = [
        Conversation(),
        Conversation(state=State.AWAIT_PHONE, phone=phone),
        Conversation(state=State.STARTING, phone=phone, lease_until=now + 30),
        code,
        replace(code, code_sent_at=now),
        replace(code, code_accepted=True),
        replace(code, check_in_doubt=True),
        replace(code, checking_until=now + 20),
        Conversation(state=State.VERIFIED, phone=phone, verified_at=now - 86400),
    ]
    events: list[bot.flow.Event] = [
        Start(), Start("group"), Status(), Help(), Cancel(), ChangeNumber(), Resend(),
        Text("hi"), Text(phone), Text("123"), Text("123456"), Text("+1 000"),
        PhoneGiven(phone), PhoneGiven("nonsense"), ContactShared(phone, is_own=False),
        ContactShared(phone, is_own=True), CodeGiven("abc"), CodeGiven("123456"),
        LinkLookedUp(Purpose.START), LinkLookedUp(Purpose.STATUS),
        LinkLookedUp(Purpose.START, phone),
        LinksCounted(0), LinksCounted(5), Reserved(), Limited(now + 60), PhoneBusy(now + 60),
        SmsPaused(now + 60),
        VerificationStarted("r"), CodeAccepted(), CodeRejected(), CodeExpired(), TooManyAttempts(),
        CheckLost(), Resent(), Recorded(), RecordFailed(), PhoneTaken(),
        *(cls(failure) for cls in (StartFailed, CheckFailed, ResendFailed) for failure in Failure),
    ]  # fmt: skip
    contexts = [
        Context(now),
        Context(now + 1000),
        Context(now, wrong_codes_blocked_until=now + 60),
    ]
    policies = [FlowPolicy(phone=PhonePolicy(default_region="GB")), FlowPolicy(max_wrong_codes=1)]
    keys = {
        effect.key
        for conv, event, ctx, policy in itertools.product(conversations, events, contexts, policies)
        for effect in step(conv, event, ctx, policy).effects
        if isinstance(effect, Reply)
    }
    keys |= {f"phone.{r.value}" for r in PhoneRefusal}
    keys |= {f"failure.{f.value}" for f in Failure}
    return keys


def test_there_are_at_least_two_complete_languages() -> None:
    assert {"en", "es"} <= set(CATALOGUE.languages)


@pytest.mark.parametrize("language", sorted(CATALOGUE.languages))
def test_every_language_has_every_key_with_the_same_placeholders(language: str) -> None:
    texts = CATALOGUE.languages[language]
    assert set(texts) == set(REFERENCE_TEXTS)
    for key, text in REFERENCE_TEXTS.items():
        assert placeholders(texts[key]) == placeholders(text), key


def test_every_reply_the_flow_can_send_has_a_text() -> None:
    keys = flow_reply_keys()
    assert len(keys) > 20
    assert keys <= set(REFERENCE_TEXTS), keys - set(REFERENCE_TEXTS)


def test_every_action_has_a_label() -> None:
    for action in Action:
        assert CATALOGUE.action_label(action, "en")


def test_locales_fall_back_to_the_language_then_the_default() -> None:
    assert CATALOGUE.language_for("es-MX") == "es"
    assert CATALOGUE.language_for("pt-BR") == "en"
    assert CATALOGUE.language_for(None) == "en"
    assert CATALOGUE.text("cancel.done", "es-AR").startswith("Verificación cancelada")


def test_dates_are_rendered_by_the_catalogue_as_a_calendar_day_in_utc() -> None:
    # 2026-03-01 00:30 UTC is still 28 February in New York: the day is UTC's.
    moment = datetime(2026, 3, 1, 0, 30, tzinfo=UTC).timestamp()
    reply = Reply("verified.already", {"phone": "+44•••••3456", "since": Date(moment)})
    assert "(since 2026-03-01)" in CATALOGUE.render(reply, "en")
    assert "(desde 2026-03-01)" in CATALOGUE.render(reply, "es")
    assert CATALOGUE.date(datetime(987, 1, 2, tzinfo=UTC).timestamp()) == "0987-01-02"


def test_durations_are_rendered_in_words_the_member_reads() -> None:
    reply = Reply("limit.sms", {"wait": Duration(600)})
    assert CATALOGUE.render(reply, "en").endswith("try again in 10 min.")
    assert CATALOGUE.duration(45) == "45 s"
    assert CATALOGUE.duration(3 * 3600) == "3 h"


def test_an_operator_folder_can_override_and_add_languages(tmp_path: Path) -> None:
    (tmp_path / "en.toml").write_text('[cancel]\ndone = "Stopped."\n')
    (tmp_path / "fr.toml").write_text('[cancel]\ndone = "Annulé."\n')
    catalogue = Catalogue.load(tmp_path)
    assert catalogue.text("cancel.done", "en") == "Stopped."
    assert catalogue.text("cancel.done", "fr") == "Annulé."
    # A partial translation falls back key by key.
    assert catalogue.text("cancel.nothing", "fr") == REFERENCE_TEXTS["cancel.nothing"]


def test_a_broken_texts_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "en.toml").write_text("[cancel\n")
    with pytest.raises(CatalogueError, match="cannot read texts file"):
        Catalogue.load(tmp_path)


def test_an_unknown_default_language_is_a_clear_error() -> None:
    with pytest.raises(CatalogueError, match="DEFAULT_LANGUAGE 'xx'"):
        Catalogue.load(default="xx")


def test_every_reply_about_a_texted_code_carries_the_warning() -> None:
    about_code = {
        key
        for key in REFERENCE_TEXTS
        if key.split(".")[0] in ("code", "resend") and key != "code.warning"
    }
    assert about_code | {"status.await_code", "help.await_code"} <= bot.flow.CODE_REPLIES
    assert set(REFERENCE_TEXTS) >= bot.flow.CODE_REPLIES
    warning = CATALOGUE.text("code.warning", "en")
    for key in bot.flow.CODE_REPLIES:
        reply = Reply(key, {"length": 6, "phone": "+44•••••3456", "expires_in": Duration(300),
                            "tries_left": 2, "wait": Duration(30)})  # fmt: skip
        assert CATALOGUE.render(reply, "en").endswith("\n" + warning), key
    assert warning not in CATALOGUE.render(Reply("phone.ask"), "en")


@pytest.mark.parametrize("language", sorted(CATALOGUE.languages))
def test_on_telegram_the_warning_says_it_is_not_a_telegram_login_code(language: str) -> None:
    reply = Reply("code.wrong", {"tries_left": 2})
    telegram = CATALOGUE.render(reply, language, variant="telegram")
    assert CATALOGUE.text("telegram.code.warning", language) in telegram
    assert "Telegram" in telegram
    assert "Telegram" not in CATALOGUE.render(reply, language)


def test_a_variant_falls_back_to_the_plain_text() -> None:
    plain = CATALOGUE.render(Reply("cancel.done"), "es")
    assert CATALOGUE.render(Reply("cancel.done"), "es", variant="telegram") == plain
    assert CATALOGUE.render(Reply("cancel.done"), "es", variant="nowhere") == plain
