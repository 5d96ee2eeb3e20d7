"""Every Prometheus metric verifybot exports, in one place (``/metrics``, ``verifybot.ops``).

Module-level objects in prometheus_client's default registry, so each port counts with one
line and the shell serves them all. Labels have low cardinality only: a platform, a reason,
a country's ISO code, an operation or a method name; never a member, a number or a request.

Each worker process counts for itself and is scraped on its own port (README, "Operating
verifybot"): no multiprocess mode, so no shared directory to clean between deploys.
"""

from __future__ import annotations

import functools
import time
from types import TracebackType

from prometheus_client import Counter, Histogram, disable_created_metrics

# A ``_created`` series beside every counter doubles the scrape and says nothing useful here.
disable_created_metrics()  # type: ignore[no-untyped-call]

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0)

# -- the verification funnel, by platform ---------------------------------------------------

CONVERSATIONS_STARTED = Counter(
    "verifybot_conversations_started",
    "Conversations that left idle (or verified) to ask for or screen a number.",
    ["platform"],
)
NUMBERS_REFUSED = Counter(
    "verifybot_numbers_refused",
    "Numbers refused before a code was sent, by reason: invalid, type, country, taken, "
    "busy (another member's verification of it is under way), limited, paused (by the fraud "
    "breaker), blocked (by Vonage).",
    ["platform", "reason"],
)
CODES_SENT = Counter(
    "verifybot_codes_sent",
    "Codes sent: channel sms for a first code, next for a resend (the workflow's next "
    "channel); country as an ISO code.",
    ["platform", "channel", "country"],
)
CODES_CHECKED = Counter(
    "verifybot_codes_checked",
    "Codes checked with Vonage, by result: accepted, wrong, expired, too_many, failed, lost.",
    ["platform", "result"],
)
MEMBERS_VERIFIED = Counter(
    "verifybot_members_verified",
    "Members newly verified (recorded in the directory).",
    ["platform"],
)
CODES_EXPIRED = Counter(
    "verifybot_codes_expired", "Codes that lapsed or that Vonage said had ended.", ["platform"]
)
VERIFICATIONS_CANCELLED = Counter(
    "verifybot_verifications_cancelled", "Conversations the member cancelled.", ["platform"]
)

# -- Vonage -----------------------------------------------------------------------------------

VONAGE_SECONDS = Histogram(
    "verifybot_vonage_request_seconds",
    "Vonage API calls, by operation: start, check, next, cancel, search (legacy).",
    ["operation"],
    buckets=_SLOW,
)
VONAGE_ERRORS = Counter(
    "verifybot_vonage_errors",
    "Vonage calls that failed, by HTTP status (v2), legacy status (v1, as legacy_N) or network.",
    ["operation", "status"],
)
VONAGE_RETRIES = Counter(
    "verifybot_vonage_retries", "Starts sent again after a transient failure.", ["operation"]
)
VONAGE_ADOPTED = Counter(
    "verifybot_vonage_adopted",
    "Starts answered with the number's request already in flight (409 / status 10), adopted.",
)

# -- Redis and the database -----------------------------------------------------------------

REDIS_SECONDS = Histogram(
    "verifybot_redis_seconds", "Redis round trips, by operation.", ["operation"], buckets=_FAST
)
REDIS_ERRORS = Counter("verifybot_redis_errors", "Redis round trips that failed.", ["operation"])
DATABASE_SECONDS = Histogram(
    "verifybot_database_seconds",
    "Directory (SQL) calls, by method, including the wait for a database thread.",
    ["operation"],
    buckets=_FAST,
)
DATABASE_ERRORS = Counter(
    "verifybot_database_errors", "Directory calls that failed or timed out.", ["operation"]
)
DATABASE_LANE_WAITS = Counter(
    "verifybot_database_lane_waits",
    "SQLite calls of a member's path that found the lock held elsewhere, so waited for it "
    "on a directory thread instead of running on the event loop.",
    ["operation"],
)

# -- limits, gates, deliveries, platforms --------------------------------------------------

RATE_LIMIT_HITS = Counter(
    "verifybot_rate_limit_hits",
    "Requests refused by a rate limit, by limit: phone, prefix, country, global, "
    "member_starts, wrong_codes.",
    ["limit"],
)
GATE_HOLDS = Counter("verifybot_gate_holds", "Members held at a group's gate, by mode.", ["mode"])
GATE_ADMISSIONS = Counter(
    "verifybot_gate_admissions",
    "Held members let in after verifying, by mode (walk_in: let in without a hold).",
    ["mode"],
)
GATE_REMOVALS = Counter(
    "verifybot_gate_removals", "Held members whose deadline passed unverified, by mode.", ["mode"]
)
DUPLICATE_DELIVERIES = Counter(
    "verifybot_duplicate_deliveries",
    "Platform deliveries seen before and ignored.",
    ["platform"],
)
FRAUD_TRIPS = Counter(
    "verifybot_fraud_trips",
    "Times the SMS-fraud breaker paused a country or a prefix",
    ["scope"],
)
PLATFORM_CALLS = Counter(
    "verifybot_platform_calls",
    "Calls to the platform's API, by method and outcome: ok, 429, forbidden, bad_request, "
    "error, network.",
    ["platform", "method", "outcome"],
)


class timed:  # lower case: it reads as a function, ``with timed(...):``
    """Time one call into ``histogram`` and count it in ``errors`` if it fails (a
    cancellation is not a failure of the server). A class with the labelled children
    cached: it wraps every Redis round trip (measured: 1.5 us a call, against 8 us for a
    generator-based context manager calling ``labels()`` each time)."""

    __slots__ = ("_errors", "_histogram", "_started")

    def __init__(self, histogram: Histogram, errors: Counter, operation: str) -> None:
        self._histogram, self._errors = _children(histogram, errors, operation)
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._histogram.observe(time.perf_counter() - self._started)
        if kind is not None and issubclass(kind, Exception):
            self._errors.inc()


@functools.cache
def _children(histogram: Histogram, errors: Counter, operation: str) -> tuple[Histogram, Counter]:
    return histogram.labels(operation), errors.labels(operation)
