"""The verification conversation, as a pure state machine.

``step(conversation, event, context, policy)`` returns the next conversation and the
effects to carry out. Nothing here does I/O: the engine (``bot.engine``) runs the
effects, feeds their answers back in as events, and saves the result.

The table ``RULES`` at the bottom is the specification: one row per (state, event), with
the states the row may lead to. ``python -m bot flow`` draws it as a diagram.
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TypeAlias

from bot.phone import PhoneNumber, PhonePolicy, PhoneRefusal, normalise_contact, parse_phone
from bot.privacy import mask_phone


class State(enum.StrEnum):
    IDLE = "idle"
    AWAIT_PHONE = "await_phone"
    #: A short lease while one worker asks Vonage for an SMS; others answer "sending…".
    STARTING = "starting"
    AWAIT_CODE = "await_code"
    VERIFIED = "verified"


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


# --- Events: what the member does -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class Text:
    """Free text; the current step decides whether it is a number, a code or neither."""

    text: str


@dataclass(frozen=True, slots=True)
class PhoneGiven:
    text: str


@dataclass(frozen=True, slots=True)
class ContactShared:
    phone: str
    is_own: bool


@dataclass(frozen=True, slots=True)
class CodeGiven:
    text: str


@dataclass(frozen=True, slots=True)
class Resend:
    pass


@dataclass(frozen=True, slots=True)
class ChangeNumber:
    pass


@dataclass(frozen=True, slots=True)
class Cancel:
    pass


@dataclass(frozen=True, slots=True)
class Status:
    pass


@dataclass(frozen=True, slots=True)
class Help:
    pass


MemberEvent: TypeAlias = (
    Start
    | Text
    | PhoneGiven
    | ContactShared
    | CodeGiven
    | Resend
    | ChangeNumber
    | Cancel
    | Status
    | Help
)


# --- Events: answers to the engine's commands -------------------------------------------


class Purpose(enum.StrEnum):
    START = "start"
    STATUS = "status"
    RESEND = "resend"


@dataclass(frozen=True, slots=True)
class LinkLookedUp:
    purpose: Purpose
    phone: str | None = None
    verified_at: float | None = None


@dataclass(frozen=True, slots=True)
class LinksCounted:
    count: int


@dataclass(frozen=True, slots=True)
class Reserved:
    pass


@dataclass(frozen=True, slots=True)
class Limited:
    retry_at: float


@dataclass(frozen=True, slots=True)
class PhoneBusy:
    """Another member's verification of this number is in progress; nothing was written."""

    retry_at: float


@dataclass(frozen=True, slots=True)
class VerificationStarted:
    request_id: str
    #: Vonage already had a live request for this number (409 / legacy status 10) and it is
    #: this member's own: only the member holding the number's claim ever reaches Vonage.
    adopted: bool = False


class Failure(enum.StrEnum):
    """Why Vonage could not do something. Each value is also a text key suffix."""

    INVALID_NUMBER = "invalid_number"
    NUMBER_BLOCKED = "number_blocked"
    THROTTLED = "throttled"
    BUSY = "busy"
    UNAVAILABLE = "unavailable"
    NO_MORE_RESENDS = "no_more_resends"


@dataclass(frozen=True, slots=True)
class StartFailed:
    failure: Failure


@dataclass(frozen=True, slots=True)
class CodeAccepted:
    pass


@dataclass(frozen=True, slots=True)
class CodeRejected:
    pass


@dataclass(frozen=True, slots=True)
class CodeExpired:
    pass


@dataclass(frozen=True, slots=True)
class TooManyAttempts:
    pass


@dataclass(frozen=True, slots=True)
class CheckFailed:
    failure: Failure


@dataclass(frozen=True, slots=True)
class CheckLost:
    """The check may have reached Vonage, but its answer was lost and could not be found out."""


@dataclass(frozen=True, slots=True)
class Resent:
    pass


@dataclass(frozen=True, slots=True)
class ResendFailed:
    failure: Failure


@dataclass(frozen=True, slots=True)
class Recorded:
    pass


@dataclass(frozen=True, slots=True)
class RecordFailed:
    pass


@dataclass(frozen=True, slots=True)
class PhoneTaken:
    pass


StartOutcome: TypeAlias = VerificationStarted | StartFailed
CheckOutcome: TypeAlias = (
    CodeAccepted | CodeRejected | CodeExpired | TooManyAttempts | CheckFailed | CheckLost
)
ResendOutcome: TypeAlias = Resent | ResendFailed | CodeExpired
RecordOutcome: TypeAlias = Recorded | RecordFailed | PhoneTaken

Answer: TypeAlias = (
    LinkLookedUp
    | LinksCounted
    | Reserved
    | Limited
    | PhoneBusy
    | StartOutcome
    | CheckOutcome
    | ResendOutcome
    | RecordOutcome
)
Event: TypeAlias = MemberEvent | Answer


# --- Effects -----------------------------------------------------------------------------


class Action(enum.StrEnum):
    """Buttons or commands an adapter offers beside a reply."""

    START = "start"
    SHARE_CONTACT = "share_contact"
    RESEND = "resend"
    CHANGE_NUMBER = "change_number"
    CANCEL = "cancel"


#: What pressing each button means. SHARE_CONTACT is absent: the platform's own contact
#: picker answers it with a ``ContactShared``.
ACTION_EVENTS: Mapping[Action, MemberEvent] = {
    Action.START: Start(),
    Action.RESEND: Resend(),
    Action.CHANGE_NUMBER: ChangeNumber(),
    Action.CANCEL: Cancel(),
}


@dataclass(frozen=True, slots=True)
class Duration:
    """A number of seconds, rendered in the member's language by the catalogue."""

    seconds: int


Param: TypeAlias = str | int | Duration


@dataclass(frozen=True, slots=True)
class Reply:
    key: str
    params: Mapping[str, Param] = field(default_factory=dict)
    actions: tuple[Action, ...] = ()

    @property
    def about_code(self) -> bool:
        """Talks about the code we texted, so it must carry the anti-scam warning."""
        return self.key in CODE_REPLIES


#: Replies about a code we texted or are texting. Scammers impersonate verification bots to
#: harvest login codes, so every one of these is rendered with the catalogue's ``code.warning``.
CODE_REPLIES = frozenset(
    {
        "code.sending",
        "code.checking",
        "code.sent",
        "code.format",
        "code.wrong",
        "code.too_many",
        "code.expired",
        "code.lost",
        "code.lost_ended",
        "resend.wait",
        "resend.done",
        "status.await_code",
        "help.await_code",
        "failure.busy",
        "failure.no_more_resends",
        "limit.wrong_codes",
        "verified.save_failed",
    }
)


@dataclass(frozen=True, slots=True)
class CancelVerification:
    request_id: str
    #: The number whose claim a successful cancel releases.
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class ReleaseClaim:
    """Vonage said the request for ``phone`` is over: free the number for other members, in
    the same write as the state, and only if this member still holds it."""

    phone: str


@dataclass(frozen=True, slots=True)
class CountWrongCode:
    """Add one to the member's daily wrong-code allowance, in the same write as the state."""


@dataclass(frozen=True, slots=True)
class MemberVerified:
    """Tell the platform adapter, e.g. to lift a group restriction."""

    phone: str
    origin: str | None
    #: False when a member verified before is only being sent on to a group (a deep link):
    #: gates still open, but it is not news for the moderators' log.
    fresh: bool = True


# Commands: the engine answers each with an event. A step emits at most one, last.


@dataclass(frozen=True, slots=True)
class LookupLink:
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class CountLinks:
    phone: str


@dataclass(frozen=True, slots=True)
class ReserveSms:
    """Save the conversation and take one SMS from every applicable limit, atomically."""

    phone: str
    country: str | None
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class StartVerification:
    phone: str


@dataclass(frozen=True, slots=True)
class CheckCode:
    request_id: str
    code: str


@dataclass(frozen=True, slots=True)
class ResendCode:
    request_id: str


@dataclass(frozen=True, slots=True)
class RecordVerified:
    phone: str
    country: str | None


Command: TypeAlias = (
    LookupLink
    | CountLinks
    | ReserveSms
    | StartVerification
    | CheckCode
    | ResendCode
    | RecordVerified
)
Effect: TypeAlias = (
    Reply | CancelVerification | ReleaseClaim | CountWrongCode | MemberVerified | Command
)
COMMAND_TYPES: tuple[type, ...] = (
    LookupLink,
    CountLinks,
    ReserveSms,
    StartVerification,
    CheckCode,
    ResendCode,
    RecordVerified,
)


# --- Inputs that are not events ------------------------------------------------------


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


#: Each handler takes the event type its row names; the table checks the pairing.
Handler: TypeAlias = Callable[..., Step]


# --- The step function -----------------------------------------------------------------


def step(conversation: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    """Advance ``conversation`` by one ``event``."""
    conversation, notices = _lapse(conversation, ctx)
    rule = RULES.get((conversation.state, type(event)))
    handler = rule.handler if rule else _help
    try:
        result = handler(conversation, event, ctx, policy)
    except FlowInvariantError:
        # An answer for a step the member has already left (a lapsed lease, say).
        result = Step(conversation, (Reply("help.stale"),))
    return Step(result.conversation, notices + result.effects)


def _lapse(conv: Conversation, ctx: Context) -> tuple[Conversation, tuple[Effect, ...]]:
    """Apply the clock: a code past its validity is expired without asking Vonage, unless a
    check of it is still out. A check whose lease lapsed (its worker died) may have been
    accepted: nobody knows, so the code is in doubt."""
    if conv.state is State.STARTING and (conv.lease_until or 0) <= ctx.now:
        return _await_phone(conv), ()
    if conv.checking_until is not None and conv.checking_until <= ctx.now:
        conv = replace(conv, checking_until=None, check_in_doubt=True)
    lapsed = (conv.code_expires_at or 0) <= ctx.now and not conv.code_accepted
    lapsed = lapsed and not _checking(conv, ctx)
    if conv.state is State.AWAIT_CODE and lapsed:
        return _await_phone(conv), (_ended_reply(conv),)
    return conv, ()


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


def _lookup(purpose: Purpose) -> Handler:
    def handler(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
        origin = event.origin if isinstance(event, Start) else conv.origin
        return Step(replace(conv, origin=origin), (LookupLink(purpose),))

    return handler


def _link_looked_up(
    conv: Conversation, event: LinkLookedUp, ctx: Context, policy: FlowPolicy
) -> Step:
    if event.phone is not None:
        verified = Conversation(
            state=State.VERIFIED,
            phone=event.phone,
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


def _nothing_to_cancel(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(conv, (Reply("cancel.nothing"),))


def _idle_text(conv: Conversation, event: Text, ctx: Context, policy: FlowPolicy) -> Step:
    """A first message: a number (even one the policy refuses, which then says why) starts
    with that number; anything else ("hi", "verify", "verificar", "/start") is a start."""
    if parse_phone(event.text, policy.phone) is PhoneRefusal.UNPARSEABLE:
        return _lookup(Purpose.START)(conv, event, ctx, policy)
    return _phone_given(conv, event, ctx, policy)


# await_phone


def _phone_given(
    conv: Conversation, event: PhoneGiven | Text | ContactShared, ctx: Context, policy: FlowPolicy
) -> Step:
    if isinstance(event, ContactShared):
        if not event.is_own:
            return Step(conv, (Reply("phone.contact_not_own", actions=(Action.SHARE_CONTACT,)),))
        text = normalise_contact(event.phone)
    else:
        text = event.text
    conv = replace(conv, state=State.AWAIT_PHONE)
    parsed = screen_phone(text, policy)
    if isinstance(parsed, Reply):
        return Step(conv, (parsed,))
    return _check_links(conv, parsed)


def screen_phone(text: str, policy: FlowPolicy) -> PhoneNumber | Reply:
    """The number, or the reply refusing it, by policy alone (no limits, no lookups).

    Slack's modal shows this inline before acknowledging a submission."""
    parsed = parse_phone(text, policy.phone)
    if isinstance(parsed, PhoneRefusal):
        return Reply(f"phone.{parsed.value}", actions=(Action.SHARE_CONTACT,))
    return parsed


def _check_links(conv: Conversation, phone: PhoneNumber) -> Step:
    conv = replace(conv, phone=phone.e164, country=phone.country)
    return Step(conv, (CountLinks(phone.e164),))


def _links_counted(
    conv: Conversation, event: LinksCounted, ctx: Context, policy: FlowPolicy
) -> Step:
    if event.count >= policy.max_accounts_per_phone:
        return _phone_taken(conv, event, ctx, policy)
    starting = replace(conv, state=State.STARTING, lease_until=ctx.now + policy.start_lease)
    return Step(starting, (ReserveSms(_phone(conv), conv.country, Purpose.START),))


def _phone_taken(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    # Never say who holds it.
    return Step(_await_phone(conv), (Reply("phone.taken", actions=(Action.SHARE_CONTACT,)),))


def _await_phone_help(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(conv, (Reply("help.await_phone", actions=(Action.SHARE_CONTACT, Action.CANCEL)),))


def _cancel(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    effects: tuple[Effect, ...] = ()
    if conv.request_id and not conv.code_accepted:
        effects = (CancelVerification(conv.request_id, conv.phone),)
    return Step(Conversation(), (*effects, Reply("cancel.done", actions=(Action.START,))))


def _change_number(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    effects: tuple[Effect, ...] = ()
    if conv.state is State.AWAIT_CODE and conv.request_id and not conv.code_accepted:
        effects = (CancelVerification(conv.request_id, conv.phone),)
    asked = _ask_phone(_await_phone(conv))
    return Step(asked.conversation, effects + asked.effects)


# starting


def _reserved(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    if conv.state is State.AWAIT_CODE:
        return Step(conv, (ResendCode(_request_id(conv)),))
    return Step(conv, (StartVerification(_phone(conv)),))


def _limited(conv: Conversation, event: Limited, ctx: Context, policy: FlowPolicy) -> Step:
    wait = Reply("limit.sms", {"wait": Duration(_seconds_until(event.retry_at, ctx))})
    if conv.state is State.AWAIT_CODE:
        return Step(conv, (replace(wait, actions=_CODE_ACTIONS),))
    return Step(_await_phone(conv), (wait,))


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


def _sending(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(conv, (Reply("code.sending"),))


# await_code


def _code_given(
    conv: Conversation, event: CodeGiven | Text, ctx: Context, policy: FlowPolicy
) -> Step:
    code = _ascii_digits("".join(event.text.split()))
    if not (code.isascii() and code.isdigit()):
        if isinstance(event, Text):
            return _await_code_help(conv, event, ctx, policy)
        return Step(conv, (_code_reply("code.format", conv, ctx, length=policy.code_length),))
    if len(code) != policy.code_length:
        return Step(conv, (_code_reply("code.format", conv, ctx, length=policy.code_length),))
    if conv.code_accepted:
        return Step(conv, (RecordVerified(_phone(conv), conv.country),))
    blocked = ctx.wrong_codes_blocked_until
    if blocked is not None and blocked > ctx.now:
        wait = Duration(_seconds_until(blocked, ctx))
        return Step(conv, (Reply("limit.wrong_codes", {"wait": wait}, _CODE_ACTIONS),))
    # One check per member at a time: the lease is saved before Vonage is called.
    checking = replace(conv, checking_until=ctx.now + policy.check_lease)
    return Step(checking, (CheckCode(_request_id(conv), code),))


def _checking(conv: Conversation, ctx: Context) -> bool:
    return conv.checking_until is not None and conv.checking_until > ctx.now


def _unless_checking(handler: Handler) -> Handler:
    """While a check of this member's code is out, their messages hear "checking…" and call
    nothing: a second check of a right code would be told the request is gone, and a
    cancel or a change of number must not end a request the check may be completing."""

    def guarded(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
        if _checking(conv, ctx):
            return Step(conv, (Reply("code.checking"),))
        return handler(conv, event, ctx, policy)

    return guarded


def _checked(conv: Conversation) -> Conversation:
    """The check answered: the lease is over."""
    return replace(conv, checking_until=None)


def _ascii_digits(text: str) -> str:
    """Keyboards in many languages type their own digits (٤٥٦, ４５６); Vonage wants ASCII."""
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)


def _code_accepted(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    phone = _phone(conv)
    return Step(
        replace(_checked(conv), code_accepted=True),
        (ReleaseClaim(phone), RecordVerified(phone, conv.country)),
    )


def _code_rejected(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    wrong = conv.wrong_codes + 1
    left = policy.max_wrong_codes - wrong
    if left <= 0:
        return Step(_await_phone(conv), (CountWrongCode(), Reply("code.too_many")))
    # A live request answered: whatever the lost check was, it did not complete it.
    conv = replace(_checked(conv), wrong_codes=wrong, check_in_doubt=False)
    return Step(conv, (CountWrongCode(), _code_reply("code.wrong", conv, ctx, tries_left=left)))


def _code_expired(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(_await_phone(conv), (ReleaseClaim(_phone(conv)), _ended_reply(conv)))


def _ended_reply(conv: Conversation) -> Reply:
    """The request is gone. After a lost answer that may be because the code was right."""
    key = "code.lost_ended" if conv.check_in_doubt else "code.expired"
    return Reply(key, actions=(Action.SHARE_CONTACT,))


def _too_many(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    # Vonage answers the last allowed wrong code with "too many" (410 / status 17).
    release = ReleaseClaim(_phone(conv))
    return Step(_await_phone(conv), (release, CountWrongCode(), Reply("code.too_many")))


def _check_failed(conv: Conversation, event: CheckFailed, ctx: Context, policy: FlowPolicy) -> Step:
    conv = _checked(conv)
    return Step(conv, (Reply(f"failure.{event.failure.value}", actions=_CODE_ACTIONS),))


def _check_lost(conv: Conversation, event: CheckLost, ctx: Context, policy: FlowPolicy) -> Step:
    # Keep the request; never guess. The next check's answer decides.
    conv = replace(_checked(conv), check_in_doubt=True)
    return Step(conv, (_code_reply("code.lost", conv, ctx),))


def _recorded(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
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


def _record_failed(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    # Keep everything: the code was right, only our write failed. The next try records.
    return Step(conv, (Reply("verified.save_failed", {"length": policy.code_length}),))


def _resend(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    ready_at = (conv.code_sent_at or 0) + policy.resend_cooldown
    if ready_at > ctx.now:
        wait = Duration(_seconds_until(ready_at, ctx))
        return Step(conv, (_code_reply("resend.wait", conv, ctx, wait=wait),))
    return Step(conv, (ReserveSms(_phone(conv), conv.country, Purpose.RESEND),))


def _resent(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    conv = replace(conv, code_sent_at=ctx.now, code_expires_at=ctx.now + policy.code_validity)
    return Step(conv, (_code_reply("resend.done", conv, ctx),))


def _resend_failed(
    conv: Conversation, event: ResendFailed, ctx: Context, policy: FlowPolicy
) -> Step:
    return Step(conv, (_code_reply(f"failure.{event.failure.value}", conv, ctx),))


def _await_code_help(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(conv, (_code_reply("help.await_code", conv, ctx, length=policy.code_length),))


def _code_status(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(conv, (_code_reply("status.await_code", conv, ctx, length=policy.code_length),))


# verified


def _already_verified_reply(conv: Conversation) -> Reply:
    return Reply(
        "verified.already",
        {"phone": _masked(conv.phone), "since": _date(conv.verified_at)},
        (Action.CHANGE_NUMBER,),
    )


def _already_verified(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(conv, (_already_verified_reply(conv),))


# fallbacks


def _help(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    """Whatever does not fit the current step gets that step's help. Never silence."""
    if isinstance(event, COMMAND_ANSWER_TYPES):
        # An answer that arrives for a step the member has left (e.g. after a lapse).
        return Step(conv, (Reply("help.stale"),))
    return HELP_BY_STATE[conv.state](conv, event, ctx, policy)


def _idle_help(conv: Conversation, event: Event, ctx: Context, policy: FlowPolicy) -> Step:
    return Step(conv, (Reply("help.idle", actions=(Action.START,)),))


HELP_BY_STATE: dict[State, Handler] = {
    State.IDLE: _idle_help,
    State.AWAIT_PHONE: _await_phone_help,
    State.STARTING: _sending,
    State.AWAIT_CODE: _unless_checking(_await_code_help),
    State.VERIFIED: _already_verified,
}

COMMAND_ANSWER_TYPES: tuple[type, ...] = (
    LinkLookedUp,
    LinksCounted,
    Reserved,
    Limited,
    PhoneBusy,
    VerificationStarted,
    StartFailed,
    CodeAccepted,
    CodeRejected,
    CodeExpired,
    TooManyAttempts,
    CheckFailed,
    CheckLost,
    Resent,
    ResendFailed,
    Recorded,
    RecordFailed,
    PhoneTaken,
)
MEMBER_EVENT_TYPES: tuple[type, ...] = (
    Start,
    Text,
    PhoneGiven,
    ContactShared,
    CodeGiven,
    Resend,
    ChangeNumber,
    Cancel,
    Status,
    Help,
)


class FlowInvariantError(RuntimeError):
    """A conversation reached a row without the data that row needs: a bug, not input."""


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


def _date(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


# --- The table -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    handler: Handler
    #: Every state this row may lead to (the current state is always allowed).
    leads_to: frozenset[State] = frozenset()


def _rule(handler: Handler, *leads_to: State) -> Rule:
    return Rule(handler, frozenset(leads_to))


IDLE, PHONE, STARTING, CODE, VERIFIED = (
    State.IDLE,
    State.AWAIT_PHONE,
    State.STARTING,
    State.AWAIT_CODE,
    State.VERIFIED,
)

RULES: dict[tuple[State, type], Rule] = {
    # idle: look the member up before asking for a number; they may be verified already.
    (IDLE, Start): _rule(_lookup(Purpose.START)),
    (IDLE, Status): _rule(_lookup(Purpose.STATUS)),
    (IDLE, LinkLookedUp): _rule(_link_looked_up, PHONE, VERIFIED),
    (IDLE, PhoneGiven): _rule(_phone_given, PHONE),
    (IDLE, ContactShared): _rule(_phone_given, PHONE),
    (IDLE, Text): _rule(_idle_text, PHONE),
    (IDLE, Cancel): _rule(_nothing_to_cancel),
    # await_phone
    (PHONE, Start): _rule(_await_phone_help),
    (PHONE, Text): _rule(_phone_given),
    (PHONE, PhoneGiven): _rule(_phone_given),
    (PHONE, ContactShared): _rule(_phone_given),
    (PHONE, LinksCounted): _rule(_links_counted, STARTING),
    (PHONE, ChangeNumber): _rule(_change_number),
    (PHONE, Cancel): _rule(_cancel, IDLE),
    # starting: only the worker holding the lease moves on.
    (STARTING, Reserved): _rule(_reserved),
    (STARTING, Limited): _rule(_limited, PHONE),
    (STARTING, PhoneBusy): _rule(_phone_busy, PHONE),
    (STARTING, VerificationStarted): _rule(_started, CODE),
    (STARTING, StartFailed): _rule(_start_failed, PHONE),
    # await_code: a code to check takes a lease; while it lasts, the member hears
    # "checking…" whatever they send. Every answer to the check ends the lease.
    (CODE, Text): _rule(_unless_checking(_code_given)),
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
    (CODE, Reserved): _rule(_reserved),
    (CODE, Limited): _rule(_limited),
    (CODE, PhoneBusy): _rule(_phone_busy, PHONE),
    (CODE, Resent): _rule(_resent),
    (CODE, ResendFailed): _rule(_resend_failed),
    (CODE, Status): _rule(_unless_checking(_code_status)),
    (CODE, Start): _rule(_unless_checking(_code_status)),
    (CODE, ChangeNumber): _rule(_unless_checking(_change_number), PHONE),
    (CODE, Cancel): _rule(_unless_checking(_cancel), IDLE),
    # verified: starting again checks the directory (the source of truth) and says so, and
    # a deep link from a group tells the adapter that group may let the member in.
    (VERIFIED, Start): _rule(_lookup(Purpose.START)),
    (VERIFIED, LinkLookedUp): _rule(_link_looked_up, PHONE, VERIFIED),
    (VERIFIED, ChangeNumber): _rule(_change_number, PHONE),
    (VERIFIED, Cancel): _rule(_nothing_to_cancel),
}
