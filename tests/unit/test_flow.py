"""The conversation, as a specification: every row of the table, and every event in every
state, with no fakes: ``step`` is a pure function."""

from __future__ import annotations

import inspect
import typing
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import flow
from bot.flow import (
    RULES,
    Action,
    Cancel,
    CancelVerification,
    ChangeNumber,
    CheckCode,
    CheckFailed,
    CheckLost,
    CodeAccepted,
    CodeExpired,
    CodeGiven,
    CodeRejected,
    ContactShared,
    Context,
    Conversation,
    CountLinks,
    CountWrongCode,
    Failure,
    FlowPolicy,
    Help,
    Limited,
    LinkLookedUp,
    LinksCounted,
    LookupLink,
    MemberVerified,
    PhoneBusy,
    PhoneGiven,
    PhoneTaken,
    Purpose,
    Recorded,
    RecordFailed,
    RecordVerified,
    ReleaseClaim,
    Reply,
    Resend,
    ResendCode,
    ResendFailed,
    Resent,
    Reserved,
    ReserveSms,
    SmsPaused,
    Start,
    StartFailed,
    StartVerification,
    State,
    Status,
    Step,
    Text,
    TooManyAttempts,
    VerificationStarted,
    step,
)
from bot.phone import PhonePolicy
from bot.texts import Catalogue

NOW = 1_000_000.0
POLICY = FlowPolicy(phone=PhonePolicy(default_region="GB"), resend_cooldown=30, code_validity=300)
CTX = Context(now=NOW)
PHONE = "+447400123456"

AWAIT_PHONE = Conversation(state=State.AWAIT_PHONE)
AWAIT_CODE = Conversation(
    state=State.AWAIT_CODE, phone=PHONE, country="GB", request_id="req-1",
    code_sent_at=NOW - 60, code_expires_at=NOW + 240,
)  # fmt: skip
VERIFIED = Conversation(state=State.VERIFIED, phone=PHONE, verified_at=NOW - 86400)
STARTING = Conversation(state=State.STARTING, phone=PHONE, country="GB", lease_until=NOW + 30)


def run(
    conv: Conversation, event: flow.Event, ctx: Context = CTX, policy: FlowPolicy = POLICY
) -> Step:
    return step(conv, event, ctx, policy)


def replies(result: Step) -> list[str]:
    return [e.key for e in result.effects if isinstance(e, Reply)]


def commands(result: Step) -> list[object]:
    return [e for e in result.effects if isinstance(e, flow.Command)]


# --- idle -------------------------------------------------------------------------------


def test_start_looks_the_member_up_before_asking_for_a_number() -> None:
    result = run(Conversation(), Start())
    assert result.effects == (LookupLink(Purpose.START),)


def test_an_unknown_member_is_asked_for_a_number_with_a_share_button() -> None:
    result = run(Conversation(), LinkLookedUp(Purpose.START))
    assert result.conversation.state is State.AWAIT_PHONE
    (reply,) = result.effects
    assert isinstance(reply, Reply) and reply.key == "phone.ask"
    assert Action.SHARE_CONTACT in reply.actions


def test_starting_again_while_verified_says_so_and_offers_a_change_of_number() -> None:
    result = run(Conversation(), LinkLookedUp(Purpose.START, PHONE, NOW - 10))
    assert result.conversation.state is State.VERIFIED
    (reply,) = [e for e in result.effects if isinstance(e, Reply)]
    assert reply.key == "verified.already"
    assert reply.params["phone"] == "+44•••••3456"
    assert Action.CHANGE_NUMBER in reply.actions


def test_a_deep_link_start_remembers_the_group_and_reports_an_existing_verification() -> None:
    asked = run(Conversation(), Start(origin="group-42"))
    assert asked.conversation.origin == "group-42"
    result = run(asked.conversation, LinkLookedUp(Purpose.START, PHONE, NOW))
    assert MemberVerified(PHONE, "group-42", fresh=False) in result.effects


def test_status_of_an_unknown_member_is_not_verified_and_keeps_the_conversation_idle() -> None:
    looked = run(Conversation(), Status())
    assert looked.effects == (LookupLink(Purpose.STATUS),)
    result = run(Conversation(), LinkLookedUp(Purpose.STATUS))
    assert result.conversation.state is State.IDLE
    assert replies(result) == ["status.not_verified"]


def test_a_phone_typed_with_no_conversation_is_taken_as_the_start() -> None:
    result = run(Conversation(), PhoneGiven("+44 7400 123456"))
    assert result.conversation.state is State.AWAIT_PHONE
    assert result.effects == (CountLinks(PHONE),)


@pytest.mark.parametrize(
    "typed", ["+44 7400 123456", "07400 123456", "00 44 7400 123456", "my number: +447400123456"]
)
def test_a_number_typed_as_a_first_message_starts_the_verification_with_it(typed: str) -> None:
    result = run(Conversation(), Text(typed))
    assert result.conversation.state is State.AWAIT_PHONE
    assert result.effects == (CountLinks(PHONE),)


@pytest.mark.parametrize(
    ("typed", "key"),
    [("+1 900 555 0100", "phone.type_not_allowed"), ("+999 1234", "phone.invalid")],
)
def test_a_refused_number_as_a_first_message_says_why_and_waits_for_another(
    typed: str, key: str
) -> None:
    result = run(Conversation(), Text(typed))
    assert result.conversation.state is State.AWAIT_PHONE
    assert replies(result) == [key]
    assert commands(result) == []


def _start_words() -> list[str]:
    """What a member may type to ask to start: the Verify button's label in every language
    of the catalogue, the commands, a greeting."""
    catalogue = Catalogue.load()
    labels = {catalogue.text("action.start", language) for language in catalogue.languages}
    return [*sorted(labels | {label.lower() for label in labels}), "/start", "/verify", "hi"]


@pytest.mark.parametrize("typed", _start_words())
def test_other_text_as_a_first_message_is_a_start(typed: str) -> None:
    result = run(Conversation(), Text(typed))
    assert result == run(Conversation(), Start())
    assert result.effects == (LookupLink(Purpose.START),)


# --- await_phone ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    ["+44 7400 123456", "07400 123456", "00 44 7400 123456", "+44 (0)7400-123-456"],
)
def test_common_formats_are_normalised_to_e164(typed: str) -> None:
    result = run(AWAIT_PHONE, Text(typed))
    assert result.conversation.phone == PHONE
    assert result.effects == (CountLinks(PHONE),)


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("hello", "phone.unparseable"),
        ("+44 7400 12", "phone.invalid"),
        ("+1 800 555 0199", "phone.type_not_allowed"),
        ("+44 20 7946 0000", "phone.type_not_allowed"),
    ],
)
def test_unusable_numbers_get_a_specific_reply_and_no_sms(typed: str, key: str) -> None:
    result = run(AWAIT_PHONE, Text(typed))
    assert replies(result) == [key]
    assert commands(result) == []
    assert result.conversation.state is State.AWAIT_PHONE


def test_a_country_outside_the_allowed_list_is_refused() -> None:
    policy = replace(POLICY, phone=PhonePolicy(allowed_countries=frozenset({"US"})))
    assert replies(run(AWAIT_PHONE, Text("+44 7400 123456"), policy=policy)) == [
        "phone.country_not_allowed"
    ]


def test_a_number_held_by_enough_accounts_is_refused_without_saying_by_whom() -> None:
    asked = run(AWAIT_PHONE, Text(PHONE)).conversation
    result = run(asked, LinksCounted(1))
    assert replies(result) == ["phone.taken"]
    (reply,) = [e for e in result.effects if isinstance(e, Reply)]
    assert set(reply.params) == set()
    assert result.conversation.state is State.AWAIT_PHONE
    assert result.conversation.phone is None


def test_a_free_number_takes_a_lease_and_reserves_an_sms() -> None:
    asked = run(AWAIT_PHONE, Text(PHONE)).conversation
    result = run(asked, LinksCounted(0))
    assert result.conversation.state is State.STARTING
    assert result.conversation.lease_until == NOW + POLICY.start_lease
    assert result.effects == (ReserveSms(PHONE, "GB", Purpose.START),)


def test_someone_elses_contact_is_refused() -> None:
    result = run(AWAIT_PHONE, ContactShared("447400123456", is_own=False))
    assert replies(result) == ["phone.contact_not_own"]
    assert commands(result) == []


def test_the_members_own_contact_counts_as_the_number_even_without_a_plus() -> None:
    result = run(AWAIT_PHONE, ContactShared("447400123456", is_own=True))
    assert result.effects == (CountLinks(PHONE),)


def test_cancel_while_asking_for_a_number_ends_the_conversation() -> None:
    result = run(AWAIT_PHONE, Cancel())
    assert result.conversation == Conversation()
    assert replies(result) == ["cancel.done"]


# --- starting ---------------------------------------------------------------------------


def test_a_reserved_sms_is_requested_from_vonage() -> None:
    assert run(STARTING, Reserved()).effects == (StartVerification(PHONE),)


def test_a_rate_limited_member_is_told_when_to_try_again() -> None:
    result = run(STARTING, Limited(retry_at=NOW + 600))
    assert result.conversation.state is State.AWAIT_PHONE
    (reply,) = [e for e in result.effects if isinstance(e, Reply)]
    assert reply.key == "limit.sms"
    assert reply.params["wait"] == flow.Duration(600)


def test_a_member_whose_number_s_block_is_paused_is_told_when_to_try_again() -> None:
    result = run(STARTING, SmsPaused(retry_at=NOW + 6 * 3600))
    assert result.conversation.state is State.AWAIT_PHONE
    (reply,) = [e for e in result.effects if isinstance(e, Reply)]
    assert reply.key == "limit.paused"
    assert reply.params["wait"] == flow.Duration(6 * 3600)
    assert not [e for e in result.effects if isinstance(e, StartVerification)]


def test_a_paused_resend_keeps_the_code_already_sent() -> None:
    result = run(AWAIT_CODE, SmsPaused(retry_at=NOW + 60))
    assert result.conversation == AWAIT_CODE
    assert replies(result) == ["limit.paused"]


def test_a_started_verification_waits_for_the_code() -> None:
    result = run(STARTING, VerificationStarted("req-9"))
    conv = result.conversation
    assert conv.state is State.AWAIT_CODE
    assert (conv.request_id, conv.code_sent_at, conv.code_expires_at) == ("req-9", NOW, NOW + 300)
    (reply,) = [e for e in result.effects if isinstance(e, Reply)]
    assert reply.key == "code.sent"
    assert reply.actions == (Action.RESEND, Action.CHANGE_NUMBER, Action.CANCEL)


@pytest.mark.parametrize("failure", list(Failure))
def test_a_failed_start_goes_back_to_the_number_with_a_reason(failure: Failure) -> None:
    result = run(STARTING, StartFailed(failure))
    assert result.conversation.state is State.AWAIT_PHONE
    assert replies(result) == [f"failure.{failure.value}"]


@pytest.mark.parametrize("event", [Text("+447400123456"), Start(), Cancel(), Text("123456")])
def test_while_a_code_is_being_sent_other_messages_hear_sending(event: flow.Event) -> None:
    result = run(STARTING, event)
    assert result.conversation == STARTING
    assert replies(result) == ["code.sending"]


def test_a_lapsed_lease_lets_the_member_try_again() -> None:
    result = run(STARTING, Text("+44 7400 123456"), Context(now=NOW + 31))
    assert result.effects == (CountLinks(PHONE),)


# --- await_code -------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["123456", "123 456", " 12 34 56 ", "١٢٣٤٥٦", "１２３ ４５６"])
def test_a_code_with_spaces_is_checked(typed: str) -> None:
    assert run(AWAIT_CODE, Text(typed)).effects == (CheckCode("req-1", "123456"),)


@pytest.mark.parametrize("typed", ["12345", "1234567", "12345a"])
def test_a_code_of_the_wrong_shape_is_not_sent_to_vonage(typed: str) -> None:
    result = run(AWAIT_CODE, CodeGiven(typed))
    assert commands(result) == []
    assert replies(result) == ["code.format"]


def test_text_that_is_not_a_code_gets_help_for_the_code_step() -> None:
    result = run(AWAIT_CODE, Text("what now?"))
    assert replies(result) == ["help.await_code"]


def test_a_right_code_is_recorded_before_the_member_hears_verified() -> None:
    accepted = run(AWAIT_CODE, CodeAccepted())
    # Vonage's "accepted" ends its request, so the number's claim is released as well.
    assert accepted.effects == (ReleaseClaim(PHONE), RecordVerified(PHONE, "GB"))
    assert replies(accepted) == []
    done = run(accepted.conversation, Recorded())
    assert done.conversation.state is State.VERIFIED
    assert done.conversation.verified_at == NOW
    assert MemberVerified(PHONE, None) in done.effects
    assert replies(done) == ["verified.done"]


def test_when_the_record_fails_the_conversation_is_kept_and_the_next_code_only_records() -> None:
    accepted = run(AWAIT_CODE, CodeAccepted()).conversation
    failed = run(accepted, RecordFailed())
    assert replies(failed) == ["verified.save_failed"]
    assert failed.conversation.state is State.AWAIT_CODE
    again = run(failed.conversation, Text("123456"))
    assert again.effects == (RecordVerified(PHONE, "GB"),)


def test_an_accepted_code_awaiting_its_record_does_not_expire() -> None:
    accepted = run(AWAIT_CODE, CodeAccepted()).conversation
    late = Context(now=NOW + 10_000)
    assert run(accepted, Text("123456"), late).effects == (RecordVerified(PHONE, "GB"),)


def test_a_wrong_code_says_how_many_tries_are_left_and_counts_against_the_daily_limit() -> None:
    result = run(AWAIT_CODE, CodeRejected())
    assert result.conversation.wrong_codes == 1
    assert CountWrongCode() in result.effects
    (reply,) = [e for e in result.effects if isinstance(e, Reply)]
    assert (reply.key, reply.params["tries_left"]) == ("code.wrong", 2)


def test_the_third_wrong_code_ends_the_request() -> None:
    conv = replace(AWAIT_CODE, wrong_codes=2)
    result = run(conv, CodeRejected())
    assert result.conversation.state is State.AWAIT_PHONE
    assert replies(result) == ["code.too_many"]


@pytest.mark.parametrize(
    ("answer", "key"), [(TooManyAttempts(), "code.too_many"), (CodeExpired(), "code.expired")]
)
def test_vonage_ending_the_request_goes_back_to_the_number(answer: flow.Event, key: str) -> None:
    result = run(AWAIT_CODE, answer)
    assert result.conversation.state is State.AWAIT_PHONE
    assert replies(result) == [key]
    # Only "too many" follows a wrong code; an expiry does not count against the member.
    assert (CountWrongCode() in result.effects) is isinstance(answer, TooManyAttempts)
    # The request is over at Vonage: the number is free for other members again.
    assert ReleaseClaim(PHONE) in result.effects


def test_a_wrong_code_keeps_the_number_claimed() -> None:
    for conv in (AWAIT_CODE, replace(AWAIT_CODE, wrong_codes=2)):
        result = run(conv, CodeRejected())
        assert not any(isinstance(e, ReleaseClaim) for e in result.effects)


@pytest.mark.parametrize("conv", [STARTING, AWAIT_CODE])
def test_a_number_another_member_is_verifying_is_in_progress_for_a_while(
    conv: Conversation,
) -> None:
    result = run(conv, PhoneBusy(retry_at=NOW + 400))
    assert result.conversation == Conversation(state=State.AWAIT_PHONE)
    (reply,) = [e for e in result.effects if isinstance(e, Reply)]
    # When, but never who.
    assert (reply.key, dict(reply.params)) == ("phone.in_progress", {"wait": flow.Duration(400)})
    assert commands(result) == []


def test_an_adopted_request_is_the_members_code_step() -> None:
    result = run(STARTING, VerificationStarted("req-9", adopted=True))
    assert result.conversation.state is State.AWAIT_CODE
    assert result.conversation.request_id == "req-9"
    assert replies(result) == ["code.sent"]


def test_a_lost_answer_keeps_the_request_and_says_it_is_not_known_yet() -> None:
    result = run(AWAIT_CODE, CheckLost())
    assert result.conversation == replace(AWAIT_CODE, check_in_doubt=True)
    (reply,) = [e for e in result.effects if isinstance(e, Reply)]
    assert reply.key == "code.lost" and reply.about_code
    assert reply.actions == (Action.RESEND, Action.CHANGE_NUMBER, Action.CANCEL)
    # Not a wrong code, not the end of the request.
    assert CountWrongCode() not in result.effects
    assert not any(isinstance(e, ReleaseClaim) for e in result.effects)


IN_DOUBT = replace(AWAIT_CODE, check_in_doubt=True)


def test_after_a_lost_answer_a_gone_request_is_never_called_expired() -> None:
    result = run(IN_DOUBT, CodeExpired())
    assert result.conversation.state is State.AWAIT_PHONE
    assert replies(result) == ["code.lost_ended"]
    assert ReleaseClaim(PHONE) in result.effects
    assert not any(isinstance(e, (MemberVerified, RecordVerified)) for e in result.effects)


def test_after_a_lost_answer_the_clock_does_not_say_expired_either() -> None:
    late = Context(now=NOW + 241)
    result = run(IN_DOUBT, CodeGiven("123456"), late)
    assert replies(result)[0] == "code.lost_ended"
    assert commands(result) == []


def test_after_a_lost_answer_the_next_answer_decides() -> None:
    typed = run(IN_DOUBT, CodeGiven("123456"))
    assert commands(typed) == [CheckCode("req-1", "123456")]
    wrong = run(IN_DOUBT, CodeRejected())
    assert replies(wrong) == ["code.wrong"] and not wrong.conversation.check_in_doubt
    right = run(IN_DOUBT, CodeAccepted())
    assert commands(right) == [RecordVerified(PHONE, "GB")]
    too_many = run(IN_DOUBT, TooManyAttempts())
    assert replies(too_many) == ["code.too_many"]


def test_without_a_lost_answer_a_gone_request_is_expired() -> None:
    assert replies(run(AWAIT_CODE, CodeExpired())) == ["code.expired"]


def test_a_check_that_could_not_be_made_keeps_the_code_step() -> None:
    result = run(AWAIT_CODE, CheckFailed(Failure.UNAVAILABLE))
    assert result.conversation == AWAIT_CODE
    assert replies(result) == ["failure.unavailable"]


def test_a_code_past_its_validity_is_expired_without_asking_vonage() -> None:
    result = run(AWAIT_CODE, Text("123456"), Context(now=NOW + 241))
    assert commands(result) == []
    assert result.conversation.state is State.AWAIT_PHONE
    assert replies(result)[0] == "code.expired"


# One check per member at a time: a second worker with a copy of the code must not ask
# Vonage again (a right code's second check finds the request gone).

CHECKING = replace(AWAIT_CODE, checking_until=NOW + 20)


def test_a_code_to_check_takes_a_lease_that_the_engine_saves_before_asking_vonage() -> None:
    result = run(AWAIT_CODE, Text("123456"))
    assert result.conversation == replace(AWAIT_CODE, checking_until=NOW + POLICY.check_lease)
    assert result.effects == (CheckCode("req-1", "123456"),)


@pytest.mark.parametrize(
    "event",
    [
        Text("123456"), CodeGiven("123456"), Text("hello"), Help(), Status(), Start(),
        Resend(), ChangeNumber(), Cancel(), PhoneGiven("+447400999999"),
    ],
)  # fmt: skip
def test_while_a_code_is_checked_every_message_hears_checking_and_calls_nothing(
    event: flow.Event,
) -> None:
    result = run(CHECKING, event)
    # No check, resend or cancel, and the number's claim is not released under the check.
    assert result.conversation == CHECKING
    assert result.effects == (Reply("code.checking"),)
    assert Reply("code.checking").about_code  # rendered with the anti-scam warning


@pytest.mark.parametrize(
    "answer",
    [
        CodeAccepted(), CodeRejected(), CodeExpired(), TooManyAttempts(),
        CheckFailed(Failure.UNAVAILABLE), CheckLost(),
    ],
)  # fmt: skip
def test_every_answer_to_the_check_ends_its_lease(answer: flow.Event) -> None:
    result = run(CHECKING, answer)
    assert result.conversation.checking_until is None
    assert result.effects  # answered as without a lease
    assert replies(result) != ["code.checking"]


def test_a_check_whose_lease_lapsed_may_have_been_accepted_so_the_code_is_in_doubt() -> None:
    # Its worker died mid-check: nobody knows what Vonage did with the code.
    late = Context(now=NOW + 21)
    retyped = run(CHECKING, Text("123456"), late)
    assert commands(retyped) == [CheckCode("req-1", "123456")]
    assert retyped.conversation.check_in_doubt
    assert retyped.conversation.checking_until == NOW + 21 + POLICY.check_lease
    assert replies(run(retyped.conversation, CodeExpired(), late)) == ["code.lost_ended"]
    # Past the code's validity too: ended, but never called expired.
    ended = run(CHECKING, Text("123456"), Context(now=NOW + 241))
    assert replies(ended)[0] == "code.lost_ended" and commands(ended) == []


def test_a_code_does_not_expire_while_vonage_is_checking_it() -> None:
    checking = replace(CHECKING, code_expires_at=NOW - 1)
    assert run(checking, Text("123456")).effects == (Reply("code.checking"),)
    accepted = run(checking, CodeAccepted())
    assert commands(accepted) == [RecordVerified(PHONE, "GB")]


def test_a_member_over_the_daily_wrong_code_limit_is_told_when_to_come_back() -> None:
    ctx = Context(now=NOW, wrong_codes_blocked_until=NOW + 3600)
    result = run(AWAIT_CODE, Text("123456"), ctx)
    assert commands(result) == []
    assert replies(result) == ["limit.wrong_codes"]


def test_resend_is_refused_during_the_cooldown() -> None:
    conv = replace(AWAIT_CODE, code_sent_at=NOW - 10)
    result = run(conv, Resend())
    (reply,) = [e for e in result.effects if isinstance(e, Reply)]
    assert (reply.key, reply.params["wait"]) == ("resend.wait", flow.Duration(20))


def test_resend_after_the_cooldown_reserves_an_sms_then_asks_vonage() -> None:
    reserved = run(AWAIT_CODE, Resend())
    assert reserved.effects == (ReserveSms(PHONE, "GB", Purpose.RESEND),)
    assert run(AWAIT_CODE, Reserved()).effects == (ResendCode("req-1"),)
    resent = run(AWAIT_CODE, Resent())
    assert resent.conversation.code_sent_at == NOW
    assert resent.conversation.code_expires_at == NOW + 300
    assert replies(resent) == ["resend.done"]


def test_no_more_resends_keeps_the_code_step() -> None:
    result = run(AWAIT_CODE, ResendFailed(Failure.NO_MORE_RESENDS))
    assert result.conversation == AWAIT_CODE
    assert replies(result) == ["failure.no_more_resends"]


def test_change_number_cancels_the_request_and_asks_again() -> None:
    result = run(AWAIT_CODE, ChangeNumber())
    assert result.conversation.state is State.AWAIT_PHONE
    assert result.effects[0] == CancelVerification("req-1", PHONE)
    assert replies(result) == ["phone.ask"]
    # The number stays claimed: only a cancel Vonage confirms frees it (the engine's call).
    assert not any(isinstance(e, ReleaseClaim) for e in result.effects)


def test_cancel_cancels_the_request_and_forgets_the_conversation() -> None:
    result = run(AWAIT_CODE, Cancel())
    assert result.conversation == Conversation()
    assert CancelVerification("req-1", PHONE) in result.effects


def test_the_phone_is_taken_between_code_and_record() -> None:
    result = run(replace(AWAIT_CODE, code_accepted=True), PhoneTaken())
    assert result.conversation.state is State.AWAIT_PHONE
    assert replies(result) == ["phone.taken"]


# --- verified ---------------------------------------------------------------------------


@pytest.mark.parametrize("event", [Text("hi"), Status(), Help()])
def test_a_verified_member_is_told_so(event: flow.Event) -> None:
    result = run(VERIFIED, event)
    assert result.conversation == VERIFIED
    assert replies(result) == ["verified.already"]


def test_a_verified_member_starting_again_is_checked_against_the_directory() -> None:
    looked = run(VERIFIED, Start(origin="group-7"))
    assert looked.effects == (LookupLink(Purpose.START),)
    still = run(looked.conversation, LinkLookedUp(Purpose.START, PHONE, NOW - 86400))
    assert still.conversation.state is State.VERIFIED
    assert MemberVerified(PHONE, "group-7", fresh=False) in still.effects
    assert replies(still) == ["verified.already"]


def test_a_member_unverified_meanwhile_is_asked_for_a_number_again() -> None:
    looked = run(VERIFIED, Start())
    result = run(looked.conversation, LinkLookedUp(Purpose.START))
    assert result.conversation.state is State.AWAIT_PHONE
    assert replies(result) == ["phone.ask"]


def test_change_of_number_means_verifying_again() -> None:
    result = run(VERIFIED, ChangeNumber())
    assert result.conversation.state is State.AWAIT_PHONE
    assert replies(result) == ["phone.ask"]


# --- the whole table --------------------------------------------------------------------

CONVERSATIONS = {
    State.IDLE: Conversation(),
    State.AWAIT_PHONE: replace(AWAIT_PHONE, phone=PHONE, country="GB"),
    State.STARTING: STARTING,
    State.AWAIT_CODE: AWAIT_CODE,
    State.VERIFIED: VERIFIED,
}

texts = st.text(max_size=30)
EVENTS = st.one_of(
    st.builds(Start, st.none() | st.text(max_size=10)),
    st.builds(Text, texts),
    st.builds(PhoneGiven, texts),
    st.builds(ContactShared, texts, st.booleans()),
    st.builds(CodeGiven, texts),
    st.sampled_from([Resend(), ChangeNumber(), Cancel(), Status(), Help()]),
    st.builds(LinkLookedUp, st.sampled_from(list(Purpose)), st.none() | st.just(PHONE)),
    st.builds(LinksCounted, st.integers(0, 3)),
    st.sampled_from([Reserved(), CodeAccepted(), CodeRejected(), CodeExpired(), TooManyAttempts()]),
    st.just(CheckLost()),
    st.sampled_from([Resent(), Recorded(), RecordFailed(), PhoneTaken()]),
    st.builds(Limited, st.floats(NOW, NOW + 86400)),
    st.builds(SmsPaused, st.floats(NOW, NOW + 86400)),
    st.builds(VerificationStarted, st.text(min_size=1, max_size=36)),
    st.builds(StartFailed, st.sampled_from(list(Failure))),
    st.builds(CheckFailed, st.sampled_from(list(Failure))),
    st.builds(ResendFailed, st.sampled_from(list(Failure))),
)
CATALOGUE = Catalogue.load()


#: (conversation, seconds later, the state the clock has left it in when the event arrives):
#: a start lease lapses after 30 s, a code after 240 s, unless a check of it is still out.
MOMENTS = [
    *((conv, elapsed, state) for state, conv in CONVERSATIONS.items() for elapsed in (0, 20)),
    (Conversation(), 1000, State.IDLE),
    (CONVERSATIONS[State.AWAIT_PHONE], 1000, State.AWAIT_PHONE),
    (STARTING, 29.9, State.STARTING),
    (STARTING, 30, State.AWAIT_PHONE),
    (STARTING, 1000, State.AWAIT_PHONE),
    (AWAIT_CODE, 239.9, State.AWAIT_CODE),
    (AWAIT_CODE, 240, State.AWAIT_PHONE),
    (AWAIT_CODE, 1000, State.AWAIT_PHONE),
    (VERIFIED, 1000, State.VERIFIED),
    (CHECKING, 10, State.AWAIT_CODE),
    (CHECKING, 30, State.AWAIT_CODE),  # the check's lease lapsed: in doubt, not ended
    (replace(CHECKING, code_expires_at=NOW + 5), 10, State.AWAIT_CODE),  # a check is out
    (replace(CHECKING, code_expires_at=NOW + 5), 20, State.AWAIT_PHONE),
    (IN_DOUBT, 100, State.AWAIT_CODE),
    (IN_DOUBT, 240, State.AWAIT_PHONE),
]


@settings(max_examples=1500, deadline=None)
@given(moment=st.sampled_from(MOMENTS), event=EVENTS)
def test_every_event_in_every_state_is_answered_and_stays_on_the_table(
    moment: tuple[Conversation, float, State], event: flow.Event
) -> None:
    conv, elapsed, clocked = moment
    result = step(conv, event, Context(now=NOW + elapsed), POLICY)
    # The lapse of a lease or a code may move the conversation first; then the row applies.
    rule = RULES.get((clocked, type(event)))
    allowed = {clocked, *(rule.leads_to if rule else ())}
    assert result.conversation.state in allowed
    # Never silence: a reply, or a command whose answer will produce one.
    assert any(isinstance(e, Reply | flow.Command) for e in result.effects)
    # At most one command, and it comes last.
    cmds = commands(result)
    assert len(cmds) <= 1
    if cmds:
        assert result.effects[-1] is cmds[0]
    # Every reply exists in every language and gets all its placeholders.
    for reply in (e for e in result.effects if isinstance(e, Reply)):
        for language in CATALOGUE.languages:
            assert CATALOGUE.render(reply, language)


def test_every_row_names_a_member_event_a_command_answer_or_a_clock_tick() -> None:
    for _, event_type in RULES:
        assert issubclass(event_type, flow.MemberEvent | flow.Answer | flow.Tick), event_type


def test_every_row_hands_its_handler_the_event_type_the_handler_takes() -> None:
    for (state, event_type), rule in RULES.items():
        takes = typing.get_type_hints(inspect.unwrap(rule.handler))["event"]
        assert issubclass(event_type, takes), (state, event_type, takes)


# --- setbacks: what the gate and the moderators hear of a failed verification -------------


def setbacks(result: Step) -> list[flow.Setback]:
    return [e.setback for e in result.effects if isinstance(e, flow.MemberSetback)]


FROM_CLUB = replace(AWAIT_CODE, origin="-1001")


@pytest.mark.parametrize(
    ("conv", "event", "expected"),
    [
        (replace(FROM_CLUB, wrong_codes=2), CodeRejected(), [flow.Setback.FAILED]),
        (FROM_CLUB, TooManyAttempts(), [flow.Setback.FAILED]),
        (FROM_CLUB, CodeExpired(), [flow.Setback.FAILED]),
        (replace(STARTING, origin="-1001"), Limited(retry_at=NOW + 600), [flow.Setback.LIMITED]),
        (FROM_CLUB, Limited(retry_at=NOW + 600), [flow.Setback.LIMITED]),
        (FROM_CLUB, flow.PhoneTaken(), [flow.Setback.PHONE_TAKEN]),
        # A wrong code with tries left, or a right one, is no setback.
        (FROM_CLUB, CodeRejected(), []),
        (FROM_CLUB, CodeAccepted(), []),
    ],
)
def test_a_failed_verification_is_told_to_what_follows(
    conv: Conversation, event: flow.Event, expected: list[flow.Setback]
) -> None:
    result = run(conv, event)
    assert setbacks(result) == expected
    for effect in result.effects:
        if isinstance(effect, flow.MemberSetback):
            assert effect.origin == "-1001"  # the group the member was verifying for
    if expected:  # after the member's own reply, never instead of it
        assert replies(result)


def test_a_code_that_lapses_by_the_clock_is_a_failure() -> None:
    late = Context(now=NOW + 10_000)
    assert setbacks(run(FROM_CLUB, Status(), late)) == [flow.Setback.FAILED]


def test_the_daily_wrong_code_limit_is_a_setback_for_review() -> None:
    blocked = Context(now=NOW, wrong_codes_blocked_until=NOW + 3600)
    result = run(FROM_CLUB, Text("123456"), blocked)
    assert replies(result) == ["limit.wrong_codes"]
    assert setbacks(result) == [flow.Setback.LIMITED]


def test_a_number_already_linked_to_enough_accounts_is_a_setback() -> None:
    asked = replace(AWAIT_PHONE, phone=PHONE, country="GB", origin="-1001")
    assert setbacks(run(asked, LinksCounted(1))) == [flow.Setback.PHONE_TAKEN]
