"""The verification funnel, counted from what one engine turn saw (``bot.metrics``).

The engine hands over every event and effect of a turn that stood (a replayed turn is
counted by its replay only), and this module says what they mean for the funnel.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot import metrics
from bot.flow import (
    CheckCode,
    CheckFailed,
    CheckLost,
    CodeAccepted,
    CodeExpired,
    CodeRejected,
    Effect,
    Event,
    Limited,
    MemberVerified,
    Purpose,
    Reply,
    Resent,
    ReserveSms,
    SmsPaused,
    State,
    TooManyAttempts,
    VerificationStarted,
)

#: Why a number was refused, by the reply that says so.
REFUSALS = {
    "phone.unparseable": "invalid",
    "phone.needs_country_code": "invalid",
    "phone.invalid": "invalid",
    "phone.contact_not_own": "invalid",
    "failure.invalid_number": "invalid",
    "phone.type_not_allowed": "type",
    "phone.country_not_allowed": "country",
    "phone.taken": "taken",
    "phone.in_progress": "busy",
    "failure.number_blocked": "blocked",
}
CHECK_RESULTS: dict[type, str] = {
    CodeAccepted: "accepted",
    CodeRejected: "wrong",
    CodeExpired: "expired",
    TooManyAttempts: "too_many",
    CheckFailed: "failed",
    CheckLost: "lost",
}
_COUNTED = frozenset(
    {ReserveSms, Reply, Limited, SmsPaused, VerificationStarted, Resent, MemberVerified, CheckCode}
    | set(CHECK_RESULTS)
)
_EXPIRED = frozenset({"code.expired", "code.lost_ended"})
_IN_FLOW = frozenset({State.AWAIT_PHONE, State.STARTING, State.AWAIT_CODE})


def count_turn(platform: str, before: State, after: State, seen: Sequence[Event | Effect]) -> None:
    """Count one turn: ``seen`` in order, events and the effects ``step`` answered them with."""
    if before not in _IN_FLOW and after in _IN_FLOW:
        metrics.CONVERSATIONS_STARTED.labels(platform).inc()
    reserved: ReserveSms | None = None
    checking = False
    for item in seen:
        if type(item) not in _COUNTED:  # most of a turn; skipped cheaply
            continue
        if isinstance(item, ReserveSms):
            reserved = item
        elif isinstance(item, Reply):
            _count_reply(platform, item.key)
        elif isinstance(item, Limited | SmsPaused) and reserved is not None:
            if reserved.purpose is Purpose.START:
                reason = "limited" if isinstance(item, Limited) else "paused"
                metrics.NUMBERS_REFUSED.labels(platform, reason).inc()
        elif isinstance(item, VerificationStarted) and not item.adopted:
            country = reserved.country if reserved and reserved.country else "unknown"
            metrics.CODES_SENT.labels(platform, "sms", country).inc()
        elif isinstance(item, Resent):
            country = reserved.country if reserved and reserved.country else "unknown"
            metrics.CODES_SENT.labels(platform, "next", country).inc()
        elif isinstance(item, MemberVerified) and item.fresh:
            metrics.MEMBERS_VERIFIED.labels(platform).inc()
        elif isinstance(item, CheckCode):
            checking = True
        elif checking and type(item) in CHECK_RESULTS:
            metrics.CODES_CHECKED.labels(platform, CHECK_RESULTS[type(item)]).inc()
            checking = False


def _count_reply(platform: str, key: str) -> None:
    reason = REFUSALS.get(key)
    if reason is not None:
        metrics.NUMBERS_REFUSED.labels(platform, reason).inc()
    elif key in _EXPIRED:
        metrics.CODES_EXPIRED.labels(platform).inc()
    elif key == "cancel.done":
        metrics.VERIFICATIONS_CANCELLED.labels(platform).inc()
    elif key == "limit.wrong_codes":
        metrics.RATE_LIMIT_HITS.labels("wrong_codes").inc()
