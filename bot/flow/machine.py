"""The verification conversation, as a pure state machine.

``step(conversation, event, context, policy)`` returns the next conversation and the
effects to carry out. Nothing here does I/O: the engine (``bot.engine``) runs the
effects, feeds their answers back in as events, and saves the result.

The table (``_table`` just below, ``RULES`` once built) is the specification: one row per
(state, event), with the states the row may lead to. The clock's transitions are rows too,
keyed by the ``Tick`` events that ``step`` finds due. ``verifybot flow`` draws the table.
"""

from __future__ import annotations

import enum
import functools
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeAlias

from bot.flow.messages import (
    Action,
    Answer,
    Cancel,
    CancelVerification,
    ChangeNumber,
    CheckCode,
    CheckFailed,
    CheckLeaseLapsed,
    CheckLost,
    CodeAccepted,
    CodeExpired,
    CodeGiven,
    CodeLapsed,
    CodeRejected,
    ContactShared,
    CountLinks,
    CountWrongCode,
    Date,
    Duration,
    Effect,
    Event,
    Limited,
    LinkLookedUp,
    LinksCounted,
    LookupLink,
    MemberSetback,
    MemberVerified,
    Param,
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
    Setback,
    SmsPaused,
    Start,
    StartFailed,
    StartLeaseLapsed,
    StartVerification,
    Status,
    Text,
    Tick,
    TooManyAttempts,
    VerificationStarted,
)
from bot.phone import PhoneNumber, PhonePolicy, PhoneRefusal, normalise_contact, parse_phone
from bot.privacy import mask_phone


class State(enum.StrEnum):
    IDLE = "idle"
    AWAIT_PHONE = "await_phone"
    #: A short lease while one worker asks Vonage for an SMS; others answer "sending…".
    STARTING = "starting"
    AWAIT_CODE = "await_code"
    VERIFIED = "verified"


IDLE, PHONE, STARTING, CODE, VERIFIED = (
    State.IDLE,
    State.AWAIT_PHONE,
    State.STARTING,
    State.AWAIT_CODE,
    State.VERIFIED,
)


# --- The table -----------------------------------------------------------------------------


def _table() -> dict[tuple[State, type], Rule]:
    """Built when the module has loaded (``RULES``), so it can come before its handlers."""
    return {
        # idle: look the member up before asking for a number; they may be verified already.
        (IDLE, Start): _rule(_start),
        (IDLE, Status): _rule(_status),
        (IDLE, LinkLookedUp): _rule(_link_looked_up, PHONE, VERIFIED),
        (IDLE, PhoneGiven): _rule(_phone_given, PHONE),
        (IDLE, ContactShared): _rule(_contact_shared, PHONE),
        (IDLE, Text): _rule(_idle_text, PHONE),
        (IDLE, Cancel): _rule(_nothing_to_cancel),
        # await_phone
        (PHONE, Start): _rule(_await_phone_help),
        (PHONE, Text): _rule(_phone_given),
        (PHONE, PhoneGiven): _rule(_phone_given),
        (PHONE, ContactShared): _rule(_contact_shared),
        (PHONE, LinksCounted): _rule(_links_counted, STARTING),
        (PHONE, ChangeNumber): _rule(_change_number),
        (PHONE, Cancel): _rule(_cancel, IDLE),
        # starting: only the worker holding the lease moves on.
        (STARTING, Reserved): _rule(_reserved_to_start),
        (STARTING, Limited): _rule(_start_limited, PHONE),
        (STARTING, PhoneBusy): _rule(_phone_busy, PHONE),
        (STARTING, SmsPaused): _rule(_start_paused, PHONE),
        (STARTING, VerificationStarted): _rule(_started, CODE),
        (STARTING, StartFailed): _rule(_start_failed, PHONE),
        (STARTING, StartLeaseLapsed): _rule(_start_lease_lapsed, PHONE),
        # await_code: a code to check takes a lease; while it lasts, the member hears
        # "checking…" whatever they send. Every answer to the check ends the lease.
        (CODE, Text): _rule(_unless_checking(_code_typed)),
        (CODE, CodeGiven): _rule(_unless_checking(_code_given)),
        (CODE, CodeAccepted): _rule(_code_accepted),
        (CODE, CodeRejected): _rule(_code_rejected, PHONE),
        (CODE, CodeExpired): _rule(_code_expired, PHONE),
        (CODE, TooManyAttempts): _rule(_too_many, PHONE),
        (CODE, CheckFailed): _rule(_check_failed),
        (CODE, CheckLost): _rule(_check_lost),
        (CODE, Recorded): _rule(_recorded, VERIFIED),
        (CODE, RecordFailed): _rule(_record_failed),
        (CODE, PhoneTaken): _rule(_phone_taken, PHONE),
        (CODE, Resend): _rule(_unless_checking(_resend)),
        (CODE, Reserved): _rule(_reserved_to_resend),
        (CODE, Limited): _rule(_resend_limited),
        (CODE, PhoneBusy): _rule(_phone_busy, PHONE),
        (CODE, SmsPaused): _rule(_resend_paused),
        (CODE, Resent): _rule(_resent),
        (CODE, ResendFailed): _rule(_resend_failed),
        (CODE, Status): _rule(_unless_checking(_code_status)),
        (CODE, Start): _rule(_unless_checking(_code_status)),
        (CODE, ChangeNumber): _rule(_unless_checking(_abandon_code), PHONE),
        (CODE, Cancel): _rule(_unless_checking(_cancel), IDLE),
        # the clock, in this order: a lapsed check lease leaves the code in doubt, so that
        # a code lapsing next says the request may have ended with a right code.
        (CODE, CheckLeaseLapsed): _rule(_check_lease_lapsed),
        (CODE, CodeLapsed): _rule(_code_lapsed, PHONE),
        # verified: starting again checks the directory (the source of truth) and says so, and
        # a deep link from a group tells the adapter that group may let the member in.
        (VERIFIED, Start): _rule(_start),
        (VERIFIED, LinkLookedUp): _rule(_link_looked_up, PHONE, VERIFIED),
        (VERIFIED, ChangeNumber): _rule(_change_number, PHONE),
        (VERIFIED, Cancel): _rule(_nothing_to_cancel),
    }


def _help_by_state() -> dict[State, Handler]:
    """What any other member event hears, per state: that step's help. Never silence."""
    return {
        IDLE: _idle_help,
        PHONE: _await_phone_help,
        STARTING: _sending,
        CODE: _unless_checking(_await_code_help),
        VERIFIED: _already_verified,
    }


@dataclass(frozen=True, slots=True)
class Rule:
    handler: Handler
    #: Every state this row may lead to (the current state is always allowed).
    leads_to: frozenset[State] = frozenset()


def _rule(handler: Handler, *leads_to: State) -> Rule:
    return Rule(handler, frozenset(leads_to))


#: When each clock event is due, in the order ``step`` applies them (each sees the last's
#: result). A due tick does something only where the table has a row for it.
_DUE: tuple[tuple[Tick, Callable[[Conversation, Context], bool]], ...] = (
    (StartLeaseLapsed(), lambda conv, ctx: (conv.lease_until or 0) <= ctx.now),
    (
        CheckLeaseLapsed(),
        lambda conv, ctx: conv.checking_until is not None and conv.checking_until <= ctx.now,
    ),
    (
        CodeLapsed(),
        lambda conv, ctx: (
            (conv.code_expires_at or 0) <= ctx.now
            and not conv.code_accepted
            and not _checking(conv, ctx)
        ),
    ),
)


# --- What the machine keeps and takes ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Conversation:
    state: State = State.IDLE
    phone: str | None = None
    country: str | None = None
    request_id: str | None = None
    lease_until: float | None = None
    code_sent_at: float | None = None
    code_expires_at: float | None = None
    wrong_codes: int = 0
    #: Vonage accepted the code but the directory write failed: the next try only records.
    code_accepted: bool = False
    #: A check's answer was lost: Vonage may have accepted the code, so a "not found" next
    #: time cannot be called an expiry.
    check_in_doubt: bool = False
    #: A short lease while one worker checks a code with Vonage; other copies of the code
    #: answer "checking…" and call nothing. Saved before Vonage is called.
    checking_until: float | None = None
    verified_at: float | None = None
    #: Where the member came from (a Telegram deep link names the group that asked).
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class FlowPolicy:
    phone: PhonePolicy = field(default_factory=PhonePolicy)
    code_length: int = 6
    code_validity: float = 300.0
    max_wrong_codes: int = 3
    resend_cooldown: float = 30.0
    start_lease: float = 45.0
    #: Outlasts one check at Vonage (and, after a lost answer, the look-up of what it did).
    check_lease: float = 45.0
    max_accounts_per_phone: int = 1


@dataclass(frozen=True, slots=True)
class Context:
    now: float
    #: When the member's daily wrong-code allowance frees up, if it is used up.
    wrong_codes_blocked_until: float | None = None


@dataclass(frozen=True, slots=True)
class Step:
    conversation: Conversation
    effects: tuple[Effect, ...] = ()


#: Each handler takes the event type its row names (tests/unit/test_flow.py checks that every
#: row's event type fits its handler's annotation).
Handler: TypeAlias = Callable[..., Step]


class FlowInvariantError(RuntimeError):
    """A conversation reached a row without the data that row needs: a bug, not input."""


# --- The step function -----------------------------------------------------------------


def step(conversation: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    """Advance ``conversation`` by the clock, then by one ``event``."""
    ticked = _tick(conversation, ctx, policy)
    result = _apply(ticked.conversation, event, ctx, policy)
    return Step(result.conversation, ticked.effects + result.effects)


def _tick(conv: Conversation, ctx: Context, policy: FlowPolicy) -> Step:
    """Apply the clock: every tick that is due and has a row in the current state."""
    effects: tuple[Effect, ...] = ()
    for tick, due in _DUE:
        if (conv.state, type(tick)) in RULES and due(conv, ctx):
            ticked = _apply(conv, tick, ctx, policy)
            conv, effects = ticked.conversation, effects + ticked.effects
    return Step(conv, effects)


def _apply(conv: Conversation, event: Event | Tick, ctx: Context, policy: FlowPolicy) -> Step:
    rule = RULES.get((conv.state, type(event)))
    if rule is not None:
        handler = rule.handler
    elif isinstance(event, Answer):
        handler = _stale
    else:
        handler = HELP_BY_STATE[conv.state]
    try:
        return handler(conv, event, ctx, policy)
    except FlowInvariantError:
        return _stale(conv, event, ctx, policy)


# --- Handlers ------------------------------------------------------------------------------


def _await_phone(conv: Conversation) -> Conversation:
    return Conversation(state=State.AWAIT_PHONE, origin=conv.origin)


def _masked(phone: str | None) -> str:
    return mask_phone(phone) if phone else ""


_CODE_ACTIONS = (Action.RESEND, Action.CHANGE_NUMBER, Action.CANCEL)


def _ask_phone(conv: Conversation) -> Step:
    return Step(conv, (Reply("phone.ask", actions=(Action.SHARE_CONTACT, Action.CANCEL)),))


def _code_reply(key: str, conv: Conversation, ctx: Context, **params: Param) -> Reply:
    expires_in = int(max(0.0, (conv.code_expires_at or ctx.now) - ctx.now))
    return Reply(
        key,
        {"phone": _masked(conv.phone), "expires_in": Duration(expires_in), **params},
        _CODE_ACTIONS,
    )


# idle


def _look_up(conv: Conversation, purpose: Purpose) -> Step:
    return Step(conv, (LookupLink(purpose),))


def _start(conv: Conversation, event: Start, ctx: Context, policy: FlowPolicy) -> Step:
    # A deep link names where the member came from; a plain start forgets any earlier one.
    return _look_up(replace(conv, origin=event.origin), Purpose.START)


def _status(conv: Conversation, event: Status, ctx: Context, policy: FlowPolicy) -> Step:
    return _look_up(conv, Purpose.STATUS)


def _link_looked_up(
    conv: Conversation, event: LinkLookedUp, ctx: Context, policy: FlowPolicy
) -> Step:
    if event.phone is not None and event.purpose is Purpose.START and conv.origin:
        # The group that sent them has its own rules: a number verified for another group
        # lets them in here only if these rules accept it too; otherwise they verify anew.
        refusal = screen_phone(event.phone, policy)
        if isinstance(refusal, Reply):
            return Step(Conversation(state=State.AWAIT_PHONE, origin=conv.origin), (refusal,))
    if event.phone is not None:
        verified = Conversation(
            state=State.VERIFIED,
            phone=event.phone,
            country=event.country,
            verified_at=event.verified_at,
            origin=conv.origin,
        )
        effects: tuple[Effect, ...] = ()
        if event.purpose is Purpose.START and conv.origin:
            # Verified elsewhere already: the group that sent them may still need to know.
            effects = (MemberVerified(event.phone, conv.origin, fresh=False),)
        return Step(verified, (*effects, _already_verified_reply(verified)))
    if event.purpose is Purpose.STATUS:
        return Step(conv, (Reply("status.not_verified", actions=(Action.START,)),))
    return _ask_phone(replace(conv, state=State.AWAIT_PHONE))


def _nothing_to_cancel(conv: Conversation, event: Cancel, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(conv, (Reply("cancel.nothing"),))


def _idle_text(conv: Conversation, event: Text, ctx: Context, policy: FlowPolicy) -> Step:
    """A first message: a number (even one the policy refuses, which then says why) starts
    with that number; anything else ("hi", "verify", "verificar", "/start") is a start."""
    if parse_phone(event.text, policy.phone) is PhoneRefusal.UNPARSEABLE:
        return _look_up(conv, Purpose.START)
    return _phone_given(conv, event, ctx, policy)


# await_phone


def _phone_given(
    conv: Conversation, event: PhoneGiven | Text, ctx: Context, policy: FlowPolicy
) -> Step:
    return _screen(conv, event.text, policy)


def _contact_shared(
    conv: Conversation, event: ContactShared, ctx: Context, policy: FlowPolicy
) -> Step:
    if not event.is_own:
        return Step(conv, (Reply("phone.contact_not_own", actions=(Action.SHARE_CONTACT,)),))
    return _screen(conv, normalise_contact(event.phone), policy)


def _screen(conv: Conversation, text: str, policy: FlowPolicy) -> Step:
    if conv.state is not State.AWAIT_PHONE:  # most numbers (and typos) come in await_phone
        conv = replace(conv, state=State.AWAIT_PHONE)
    parsed = screen_phone(text, policy)
    if isinstance(parsed, Reply):
        return Step(conv, (parsed,))
    conv = replace(conv, phone=parsed.e164, country=parsed.country)
    return Step(conv, (CountLinks(parsed.e164),))


def screen_phone(text: str, policy: FlowPolicy) -> PhoneNumber | Reply:
    """The number, or the reply refusing it, by policy alone (no limits, no lookups).

    Slack's modal shows this inline before acknowledging a submission."""
    parsed = parse_phone(text, policy.phone)
    if isinstance(parsed, PhoneRefusal):
        return Reply(f"phone.{parsed.value}", actions=(Action.SHARE_CONTACT,))
    return parsed


def _links_counted(
    conv: Conversation, event: LinksCounted, ctx: Context, policy: FlowPolicy
) -> Step:
    if event.count >= policy.max_accounts_per_phone:
        return _phone_taken(conv, event, ctx, policy)
    starting = replace(conv, state=State.STARTING, lease_until=ctx.now + policy.start_lease)
    return Step(starting, (ReserveSms(_phone(conv), conv.country, Purpose.START),))


def _phone_taken(
    conv: Conversation, event: PhoneTaken | LinksCounted, ctx: Context, policy: FlowPolicy
) -> Step:
    # Never say who holds it.
    reply = Reply("phone.taken", actions=(Action.SHARE_CONTACT,))
    return Step(_await_phone(conv), (reply, _setback(conv, Setback.PHONE_TAKEN)))


def _await_phone_help(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(conv, (Reply("help.await_phone", actions=(Action.SHARE_CONTACT, Action.CANCEL)),))


def _cancel(conv: Conversation, event: Cancel, ctx: Context, policy: FlowPolicy) -> Step:
    effects = _cancel_request(conv)
    return Step(Conversation(), (*effects, Reply("cancel.done", actions=(Action.START,))))


def _cancel_request(conv: Conversation) -> tuple[Effect, ...]:
    """End the member's live request at Vonage, unless it already accepted the code."""
    if conv.request_id and not conv.code_accepted:
        return (CancelVerification(conv.request_id, conv.phone),)
    return ()


def _change_number(
    conv: Conversation, event: ChangeNumber, ctx: Context, policy: FlowPolicy
) -> Step:
    return _ask_phone(_await_phone(conv))


# starting


def _reserved_to_start(
    conv: Conversation, event: Reserved, ctx: Context, policy: FlowPolicy
) -> Step:
    return Step(conv, (StartVerification(_phone(conv)),))


def _start_limited(conv: Conversation, event: Limited, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(_await_phone(conv), (_sms_limit_reply(event, ctx), _setback(conv, Setback.LIMITED)))


def _sms_limit_reply(event: Limited, ctx: Context) -> Reply:
    return Reply("limit.sms", {"wait": Duration(_seconds_until(event.retry_at, ctx))})


def _paused_reply(event: SmsPaused, ctx: Context) -> Reply:
    return Reply("limit.paused", {"wait": Duration(_seconds_until(event.retry_at, ctx))})


def _start_paused(conv: Conversation, event: SmsPaused, ctx: Context, policy: FlowPolicy) -> Step:
    # Not "too many codes": the member did nothing wrong, their number's block is paused.
    return Step(_await_phone(conv), (_paused_reply(event, ctx),))


def _phone_busy(conv: Conversation, event: PhoneBusy, ctx: Context, policy: FlowPolicy) -> Step:
    # Never say who holds it; say when the number is free again at the latest.
    wait = Duration(_seconds_until(event.retry_at, ctx))
    reply = Reply("phone.in_progress", {"wait": wait}, (Action.SHARE_CONTACT,))
    return Step(_await_phone(conv), (reply,))


def _started(
    conv: Conversation, event: VerificationStarted, ctx: Context, policy: FlowPolicy
) -> Step:
    waiting = replace(
        conv,
        state=State.AWAIT_CODE,
        request_id=event.request_id,
        lease_until=None,
        code_sent_at=ctx.now,
        code_expires_at=ctx.now + policy.code_validity,
        wrong_codes=0,
        code_accepted=False,
        check_in_doubt=False,
    )
    return Step(waiting, (_code_reply("code.sent", waiting, ctx, length=policy.code_length),))


def _start_failed(conv: Conversation, event: StartFailed, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(_await_phone(conv), (Reply(f"failure.{event.failure.value}"),))


def _start_lease_lapsed(
    conv: Conversation, event: StartLeaseLapsed, ctx: Context, policy: FlowPolicy
) -> Step:
    # The worker died before Vonage answered: the member may simply try again.
    return Step(_await_phone(conv))


def _sending(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(conv, (Reply("code.sending"),))


# await_code


def _code_typed(conv: Conversation, event: Text, ctx: Context, policy: FlowPolicy) -> Step:
    """Free text while a code is awaited: a code if it is digits, else the step's help."""
    if not _is_digits(_code_in(event.text)):
        return _await_code_help(conv, event, ctx, policy)
    return _check(conv, _code_in(event.text), ctx, policy)


def _code_given(conv: Conversation, event: CodeGiven, ctx: Context, policy: FlowPolicy) -> Step:
    """A code the member said is a code (a form field, a command): never help, say the form."""
    if not _is_digits(_code_in(event.text)):
        return Step(conv, (_code_reply("code.format", conv, ctx, length=policy.code_length),))
    return _check(conv, _code_in(event.text), ctx, policy)


def _code_in(text: str) -> str:
    """Keyboards in many languages type their own digits (٤٥٦, ４５６); Vonage wants ASCII."""
    compact = "".join(text.split())
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in compact)


def _is_digits(code: str) -> bool:
    return code.isascii() and code.isdigit()


def might_check(event: Event, policy: FlowPolicy) -> bool:
    """Whether ``event`` is a code the flow would check if a code is awaited: the engine
    takes the check's lease with its load then, instead of a commit of its own."""
    if not isinstance(event, Text | CodeGiven):
        return False
    code = _code_in(event.text)
    return _is_digits(code) and len(code) == policy.code_length


def _check(conv: Conversation, code: str, ctx: Context, policy: FlowPolicy) -> Step:
    if len(code) != policy.code_length:
        return Step(conv, (_code_reply("code.format", conv, ctx, length=policy.code_length),))
    if conv.code_accepted:
        return Step(conv, (RecordVerified(_phone(conv), conv.country),))
    blocked = ctx.wrong_codes_blocked_until
    if blocked is not None and blocked > ctx.now:
        wait = Duration(_seconds_until(blocked, ctx))
        reply = Reply("limit.wrong_codes", {"wait": wait}, _CODE_ACTIONS)
        return Step(conv, (reply, _setback(conv, Setback.LIMITED)))
    # One check per member at a time: the lease is saved before Vonage is called.
    checking = replace(conv, checking_until=ctx.now + policy.check_lease)
    return Step(checking, (CheckCode(_request_id(conv), code),))


def _checking(conv: Conversation, ctx: Context) -> bool:
    return conv.checking_until is not None and conv.checking_until > ctx.now


def _unless_checking(handler: Handler) -> Handler:
    """While a check of this member's code is out, their messages hear "checking…" and call
    nothing: a second check of a right code would be told the request is gone, and a
    cancel or a change of number must not end a request the check may be completing."""

    @functools.wraps(handler)
    def guarded(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
        if _checking(conv, ctx):
            return Step(conv, (Reply("code.checking"),))
        return handler(conv, event, ctx, policy)

    return guarded


def _checked(conv: Conversation) -> Conversation:
    """The check answered: the lease is over."""
    return replace(conv, checking_until=None)


def _code_accepted(
    conv: Conversation, event: CodeAccepted, ctx: Context, policy: FlowPolicy
) -> Step:
    phone = _phone(conv)
    return Step(
        replace(_checked(conv), code_accepted=True),
        (ReleaseClaim(phone), RecordVerified(phone, conv.country)),
    )


def _code_rejected(
    conv: Conversation, event: CodeRejected, ctx: Context, policy: FlowPolicy
) -> Step:
    wrong = conv.wrong_codes + 1
    left = policy.max_wrong_codes - wrong
    if left <= 0:
        failed = _setback(conv, Setback.FAILED)
        return Step(_await_phone(conv), (CountWrongCode(), Reply("code.too_many"), failed))
    # A live request answered: whatever the lost check was, it did not complete it.
    conv = replace(_checked(conv), wrong_codes=wrong, check_in_doubt=False)
    return Step(conv, (CountWrongCode(), _code_reply("code.wrong", conv, ctx, tries_left=left)))


def _code_expired(conv: Conversation, event: CodeExpired, ctx: Context, policy: FlowPolicy) -> Step:
    failed = _setback(conv, Setback.FAILED)
    return Step(_await_phone(conv), (ReleaseClaim(_phone(conv)), _ended_reply(conv), failed))


def _code_lapsed(conv: Conversation, event: CodeLapsed, ctx: Context, policy: FlowPolicy) -> Step:
    # Expired by the clock, without asking Vonage.
    return Step(_await_phone(conv), (_ended_reply(conv), _setback(conv, Setback.FAILED)))


def _check_lease_lapsed(
    conv: Conversation, event: CheckLeaseLapsed, ctx: Context, policy: FlowPolicy
) -> Step:
    # Its worker died mid-check: the code may have been accepted. Nobody knows.
    return Step(replace(conv, checking_until=None, check_in_doubt=True))


def _ended_reply(conv: Conversation) -> Reply:
    """The request is gone. After a lost answer that may be because the code was right."""
    key = "code.lost_ended" if conv.check_in_doubt else "code.expired"
    return Reply(key, actions=(Action.SHARE_CONTACT,))


def _too_many(conv: Conversation, event: TooManyAttempts, ctx: Context, policy: FlowPolicy) -> Step:
    # Vonage answers the last allowed wrong code with "too many" (410 / status 17).
    release = ReleaseClaim(_phone(conv))
    failed = _setback(conv, Setback.FAILED)
    return Step(_await_phone(conv), (release, CountWrongCode(), Reply("code.too_many"), failed))


def _check_failed(conv: Conversation, event: CheckFailed, ctx: Context, policy: FlowPolicy) -> Step:
    conv = _checked(conv)
    return Step(conv, (Reply(f"failure.{event.failure.value}", actions=_CODE_ACTIONS),))


def _check_lost(conv: Conversation, event: CheckLost, ctx: Context, policy: FlowPolicy) -> Step:
    # Keep the request; never guess. The next check's answer decides.
    conv = replace(_checked(conv), check_in_doubt=True)
    return Step(conv, (_code_reply("code.lost", conv, ctx),))


def _recorded(conv: Conversation, event: Recorded, ctx: Context, policy: FlowPolicy) -> Step:
    phone = _phone(conv)
    verified = Conversation(
        state=State.VERIFIED,
        phone=phone,
        country=conv.country,
        verified_at=ctx.now,
        origin=conv.origin,
    )
    return Step(
        verified,
        (MemberVerified(phone, conv.origin), Reply("verified.done", {"phone": _masked(phone)})),
    )


def _record_failed(
    conv: Conversation, event: RecordFailed, ctx: Context, policy: FlowPolicy
) -> Step:
    # Keep everything: the code was right, only our write failed. The next try records.
    return Step(conv, (Reply("verified.save_failed", {"length": policy.code_length}),))


def _abandon_code(
    conv: Conversation, event: ChangeNumber, ctx: Context, policy: FlowPolicy
) -> Step:
    """Another number while a code is awaited: the request for this one ends first."""
    asked = _ask_phone(_await_phone(conv))
    return Step(asked.conversation, _cancel_request(conv) + asked.effects)


def _resend(conv: Conversation, event: Resend, ctx: Context, policy: FlowPolicy) -> Step:
    ready_at = (conv.code_sent_at or 0) + policy.resend_cooldown
    if ready_at > ctx.now:
        wait = Duration(_seconds_until(ready_at, ctx))
        return Step(conv, (_code_reply("resend.wait", conv, ctx, wait=wait),))
    return Step(conv, (ReserveSms(_phone(conv), conv.country, Purpose.RESEND),))


def _reserved_to_resend(
    conv: Conversation, event: Reserved, ctx: Context, policy: FlowPolicy
) -> Step:
    return Step(conv, (ResendCode(_request_id(conv)),))


def _resend_limited(conv: Conversation, event: Limited, ctx: Context, policy: FlowPolicy) -> Step:
    # The code already sent still works: keep waiting for it.
    reply = replace(_sms_limit_reply(event, ctx), actions=_CODE_ACTIONS)
    return Step(conv, (reply, _setback(conv, Setback.LIMITED)))


def _resend_paused(conv: Conversation, event: SmsPaused, ctx: Context, policy: FlowPolicy) -> Step:
    # As for a limit: the code already sent still works.
    return Step(conv, (replace(_paused_reply(event, ctx), actions=_CODE_ACTIONS),))


def _resent(conv: Conversation, event: Resent, ctx: Context, policy: FlowPolicy) -> Step:
    conv = replace(conv, code_sent_at=ctx.now, code_expires_at=ctx.now + policy.code_validity)
    return Step(conv, (_code_reply("resend.done", conv, ctx),))


def _resend_failed(
    conv: Conversation, event: ResendFailed, ctx: Context, policy: FlowPolicy
) -> Step:
    return Step(conv, (_code_reply(f"failure.{event.failure.value}", conv, ctx),))


def _await_code_help(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(conv, (_code_reply("help.await_code", conv, ctx, length=policy.code_length),))


def _code_status(
    conv: Conversation, event: Status | Start, ctx: Context, policy: FlowPolicy
) -> Step:
    return Step(conv, (_code_reply("status.await_code", conv, ctx, length=policy.code_length),))


# verified


def _already_verified_reply(conv: Conversation) -> Reply:
    since: Param = "" if conv.verified_at is None else Date(conv.verified_at)
    return Reply(
        "verified.already",
        {"phone": _masked(conv.phone), "since": since},
        (Action.CHANGE_NUMBER,),
    )


def _already_verified(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(conv, (_already_verified_reply(conv),))


# fallbacks


def _idle_help(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(conv, (Reply("help.idle", actions=(Action.START,)),))


def _stale(conv: Conversation, event: Event | Tick, ctx: Context, policy: FlowPolicy) -> Step:
    """An answer for a step the member has already left (after a lapse, say)."""
    return Step(conv, (Reply("help.stale"),))


def _setback(conv: Conversation, setback: Setback) -> MemberSetback:
    """For the gate and the moderators: after the member's reply, never instead of it."""
    return MemberSetback(setback, conv.origin)


def _phone(conv: Conversation) -> str:
    if conv.phone is None:
        raise FlowInvariantError(f"{conv.state} without a phone")
    return conv.phone


def _request_id(conv: Conversation) -> str:
    if conv.request_id is None:
        raise FlowInvariantError(f"{conv.state} without a request id")
    return conv.request_id


def _seconds_until(when: float, ctx: Context) -> int:
    return max(1, int(when - ctx.now + 0.999))


RULES: dict[tuple[State, type], Rule] = _table()
HELP_BY_STATE: dict[State, Handler] = _help_by_state()
