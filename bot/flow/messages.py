"""The messages of the verification conversation: what goes into ``step`` and what comes out.

Events are what the member does and the engine's answers to commands; effects are what the
engine must carry out (replies, commands, and the writes that ride with the state). Every
message is a small frozen dataclass, and each family is one union: ``isinstance`` takes it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

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
class SmsPaused:
    """The fraud breaker paused SMS to the number's country or prefix until ``retry_at``."""

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
    | SmsPaused
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


@dataclass(frozen=True, slots=True)
class Date:
    """A moment, rendered as a calendar day in the member's language by the catalogue."""

    timestamp: float


Param: TypeAlias = str | int | Duration | Date


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


class Setback(enum.StrEnum):
    """Why a verification did not go through, as the gate and the moderators see it."""

    #: Too many wrong codes, or the code expired: counted towards ``ban_after_failures``.
    FAILED = "failed"
    #: A rate limit said to wait.
    LIMITED = "limited"
    #: The number is another account's.
    PHONE_TAKEN = "phone_taken"


@dataclass(frozen=True, slots=True)
class MemberSetback:
    """Tell what follows (the gate, the moderators' review queue) that a verification failed."""

    setback: Setback
    origin: str | None = None


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
    Reply
    | CancelVerification
    | ReleaseClaim
    | CountWrongCode
    | MemberVerified
    | MemberSetback
    | Command
)


# --- The clock -------------------------------------------------------------------------
# Nobody sends these: ``step`` finds them due from the conversation's own deadlines before
# it looks at the event, and the table says what each does in each state.


@dataclass(frozen=True, slots=True)
class StartLeaseLapsed:
    """The worker asking Vonage for an SMS held its lease too long (it died, say)."""


@dataclass(frozen=True, slots=True)
class CheckLeaseLapsed:
    """The worker checking a code held its lease too long: Vonage may have accepted it."""


@dataclass(frozen=True, slots=True)
class CodeLapsed:
    """The code outlived its validity, and no check of it is out."""


Tick: TypeAlias = StartLeaseLapsed | CheckLeaseLapsed | CodeLapsed
