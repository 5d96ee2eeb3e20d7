"""Where a member's message is handled: ``await engine.handle(member, event, render=…)``.

(Besides it, adapters read through the engine: ``verification`` for gates and status
displays, ``first_delivery`` to drop a redelivered update that is not a message, and
``conversation`` for a display of where the member stands.)

It loads the member's conversation, runs ``flow.step``, carries out the effects through
the ports (store, directory, verifier), feeds their answers back into ``step`` and saves
the result, atomically. Adapters never touch Redis, Vonage or the database themselves.
Once the adapter has rendered the replies, a verification goes to the bus (``bot.bus``),
whose handlers open gates, tell the moderators' log and grant auto roles; so does a trip of
the SMS-fraud breaker (``bot.fraud``), which rides on the SMS's reservation.

State is durable before the outside world hears of it: before a turn's first call to
Vonage or the directory's write, a conversation that changed is committed (compare-and-set
on its version), so a second worker sees the lease and a conflict is simply replayed.

Round trips to Redis per message: one to load (with the duplicate guard), one to save;
a phone number costs one more, to take from the SMS limits and the number's claim under a
lease before Vonage is called. Releasing a claim rides on the save. A message that changes
nothing is not saved. A code takes the check's lease with its load.

A worker keeps a copy of each conversation it wrote or read lately (``Store.recall``). A
message that is not a code starts from that copy, without a load, when its first write can
check the copy whole and guard the delivery in the same script: a phone number then costs
the reservation and the save. If the copy is stale, that write returns the conversation as
stored and the message is handled again from it; a turn that would reach Vonage, the
directory's write or its end without writing loads instead, like any other.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import structlog

from bot import metrics
from bot.bus import Bus
from bot.directory import AsyncDirectory, Directory, PhoneLink, RecordOutcome
from bot.flow import (
    Answer,
    CancelVerification,
    CheckCode,
    Command,
    Context,
    Conversation,
    CountLinks,
    CountWrongCode,
    Effect,
    Event,
    FlowPolicy,
    Limited,
    LinkLookedUp,
    LinksCounted,
    LookupLink,
    MemberEvent,
    MemberSetback,
    MemberVerified,
    PhoneBusy,
    PhoneTaken,
    Recorded,
    RecordFailed,
    RecordVerified,
    ReleaseClaim,
    Reply,
    ResendCode,
    Resent,
    Reserved,
    ReserveSms,
    SmsPaused,
    Start,
    StartVerification,
    State,
    Status,
    VerificationStarted,
    might_check,
    screen_phone,
    step,
)
from bot.fraud import Breaker, FraudHit, Pause
from bot.funnel import count_turn
from bot.identity import Member, MemberKey
from bot.limits import Limits
from bot.metrics import FRAUD_TRIPS
from bot.policy import Policies, PolicyRead, scope_for
from bot.privacy import mask_phone
from bot.store import (
    BreakerTripped,
    Claim,
    ClaimHeld,
    CommitResult,
    Committed,
    Conflict,
    Copy,
    Duplicate,
    Hit,
    KnownLink,
    LimitReached,
    Remember,
    ScopePaused,
    Snapshot,
    Stale,
    Store,
)
from bot.verifier.base import Verifier

log = structlog.get_logger("verifybot.engine")

_ATTEMPTS = 3
#: States in which ``Start`` names the place the member verifies for (``flow.machine``).
_STARTABLE = frozenset({State.IDLE, State.VERIFIED})
#: A number's claim outlives the provider's request by this much on top of the start lease
#: (the request may begin that late): clocks and queues are never exact.
_CLAIM_MARGIN = 30.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the adapter shows and does after one message."""

    replies: tuple[Reply, ...] = ()
    state: State = State.IDLE
    #: Set when this message completed a verification (or found one, for a deep link).
    verified: MemberVerified | None = None
    #: The delivery was seen before: acknowledge it and do nothing.
    duplicate: bool = False
    #: The state before this message, so an adapter can tidy up what it showed for it.
    previous: State = State.IDLE
    #: The community's language, for a member whose own language has no translation.
    language: str | None = None
    #: Why a verification did not go through, for the gate and the moderators (``bot.bus``).
    setbacks: tuple[MemberSetback, ...] = ()
    #: Countries or prefixes this message's SMS found below the conversion and paused.
    trips: tuple[Pause, ...] = ()


@dataclass(slots=True)
class _Turn:
    """One attempt at handling a message against one loaded version."""

    member: Member
    ctx: Context
    #: The rules of the community the member is verifying for, for this message.
    policy: FlowPolicy
    language: str | None
    conversation: Conversation
    version: int
    saved: Conversation
    replies: list[Reply] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    #: Codes and verifications counted for the fraud breaker, in the same write.
    fraud: list[FraudHit] = field(default_factory=list)
    #: Trips of the breaker, kept across replays of the message (each is reported once).
    trips: list[Pause] = field(default_factory=list)
    cancels: list[CancelVerification] = field(default_factory=list)
    #: A number whose request Vonage has ended: its claim is released with the save.
    release: str | None = None
    verified: MemberVerified | None = None
    setbacks: list[MemberSetback] = field(default_factory=list)
    #: Something outside Redis happened (Vonage, the DB), so a conflict cannot be replayed.
    external: bool = False
    #: The directory's answer kept in Redis for this member, if any (read with the load).
    known: KnownLink | None = None
    #: An answer of the directory to keep, written with the next commit.
    remember: Remember | None = None
    #: Every event and effect of the turn, in order, for the funnel's counters.
    seen: list[Event | Effect] = field(default_factory=list)
    #: The worker's copy the turn started from, until a commit has checked it.
    copy: Copy | None = None
    #: The delivery to guard with that commit (a turn that loaded has guarded it).
    guard: str | None = None

    def committed(self, version: int) -> None:
        """The conversation, the counted hits and what was to be remembered are saved."""
        self.version, self.saved = version, self.conversation
        self.hits, self.fraud, self.remember = [], [], None


#: How an adapter shows an outcome to the member (its replies, its keyboards or views).
Render = Callable[[Outcome], Awaitable[None]]


class _Again(Exception):
    """The turn is to be handled again, and nothing external happened yet."""


class _Replay(_Again):
    """Another worker saved the conversation first."""


class _Unchecked(_Again):
    """A turn started from the worker's copy would go on without a write that checks it."""


class _Stale(_Again):
    """The worker's copy was stale: the conversation as stored, its delivery guarded."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot


class _Duplicate(Exception):
    """The first commit of a turn started from the worker's copy found its delivery seen."""


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        directory: Directory,
        verifier: Verifier,
        policy: FlowPolicy,
        limits: Limits,
        clock: Callable[[], float] = time.time,
        bus: Bus | None = None,
        policies: Policies | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        self.store = store
        self.directory = AsyncDirectory.bounded(directory)
        self.verifier = verifier
        #: The process-wide part of every conversation's policy (and, without ``policies``,
        #: all of it); each community's own rules go on top, per message.
        self.policy = policy
        self.policies = policies
        self.limits = limits
        self.clock = clock
        self.breaker = breaker if breaker is not None else Breaker()
        #: What follows a verification; the shell registers its handlers.
        self.bus = bus if bus is not None else Bus()

    async def handle(
        self,
        member: Member,
        event: MemberEvent,
        *,
        delivery_id: str | None = None,
        render: Render | None = None,
    ) -> Outcome:
        """Handle one member message: ``render`` shows the outcome (not for a duplicate),
        then a verification goes to the bus, so the member hears "verified" before the gate
        opens. A failure of the handling becomes a polite reply. ``render``'s own failure is
        raised to the adapter after the bus has run: the directory has the member verified,
        and a lost reply must not keep a group shut.
        """
        try:
            outcome = await self._outcome(member, event, delivery_id)
            if outcome.duplicate:
                return outcome
            try:
                if render is not None:
                    await render(outcome)
            finally:
                for pause in outcome.trips:
                    await self.bus.tripped(member, pause)
                if outcome.verified is not None:
                    await self.bus.publish(member, outcome.verified)
                for setback in outcome.setbacks:
                    await self.bus.publish_setback(member, setback)
        except asyncio.CancelledError:
            # Cut short by a stop whose grace ran out: the update comes again (polling
            # fetches it on the next start) and must not be taken for a duplicate.
            if delivery_id is not None:
                with suppress(Exception):
                    await self.store.forget_delivery(member.key, delivery_id)
            raise
        return outcome

    async def _outcome(
        self, member: Member, event: MemberEvent, delivery_id: str | None
    ) -> Outcome:
        try:
            return await self._handle(member, event, delivery_id)
        except Exception:
            log.exception(
                "handle_failed", member=str(member.key), message_kind=type(event).__name__
            )
            if delivery_id is not None:
                try:
                    await self.store.forget_delivery(member.key, delivery_id)
                except Exception:  # already failing; the first error is logged
                    log.warning("forget_delivery_failed", member=str(member.key))
            return Outcome((Reply("error.internal"),))

    async def _rules(
        self, member: Member, origin: str | None, read: PolicyRead | None = None
    ) -> tuple[FlowPolicy, str | None]:
        """The conversation's policy and language for the community ``origin`` names (a
        group's deep link or join request), else the member's own scope (a Slack team).
        ``read``: the community's Redis copy as the load read it, if it did."""
        if self.policies is None:
            return self.policy, None
        community = await self.policies.policy_for(scope_for(member.key, origin), read)
        return community.flow_policy(self.policy), community.default_language

    async def conversation(self, member: Member) -> Conversation:
        """The member's conversation as it stands, for status displays."""
        snapshot = await self.store.load(member.key, now=self.clock())
        return snapshot.conversation

    def screen_phone(self, text: str) -> Reply | None:
        """Why this number would be refused by policy, if it would; no I/O, for inline forms."""
        refusal = screen_phone(text, self.policy)
        return refusal if isinstance(refusal, Reply) else None

    async def first_delivery(self, key: MemberKey, delivery_id: str) -> bool:
        """True the first time a platform delivery that is not a message is seen."""
        first = await self.store.first_delivery(key, delivery_id)
        if not first:
            _report_duplicate(key, delivery_id)
        return first

    async def verification(self, key: MemberKey) -> PhoneLink | None:
        """The member's verified phone link, or None: for gates and status displays."""
        return await self.directory.find_verified(key)

    async def _handle(self, member: Member, event: MemberEvent, delivery_id: str | None) -> Outcome:
        own_lease: float | None = None
        trips: list[Pause] = []
        # Guarded by the turn's first round trip: its load, or the commit that checks a copy.
        guard = delivery_id
        code = might_check(event, self.policy)
        copy = None if code else self._copy_for(member, event)
        given: Snapshot | None = None  # the conversation as a stale copy's commit found it
        for attempt in range(_ATTEMPTS + (copy is not None)):
            now = self.clock()
            # A code to check takes its lease with the load: no commit of its own before
            # Vonage. The flow's ``_check`` sets the same ``checking_until``.
            lease = now + self.policy.check_lease if code else None
            # A lapsed copy of the community's policy is read with the load, not after it:
            # the community a Start names, else the member's own (right unless the
            # conversation names another, which then costs a read of its own).
            guess = event.origin if isinstance(event, Start) else None
            read = None
            if copy is None and self.policies is not None:
                read = self.policies.to_read(scope_for(member.key, guess))
            if copy is not None:  # with the policy as this process has it (_copy_for)
                snapshot, read = Snapshot(False, copy[0].conversation, copy[0].version), copy[1]
            elif given is not None:
                snapshot, given = given, None
            else:
                snapshot = await self.store.load(
                    member.key,
                    now=now,
                    delivery_id=guard,
                    peek=self.limits.wrong_codes(member.key),
                    lease_until=lease if own_lease is None else None,
                    also=read.key if read else None,
                )
                guard = None
                if snapshot.duplicate:
                    _report_duplicate(member.key, delivery_id)
                    return Outcome(duplicate=True)
                if read is not None and read.key is not None:  # else nothing was read
                    read = replace(read, value=snapshot.also)
            wait = max(snapshot.waits, default=0.0)
            ctx = Context(now=now, wrong_codes_blocked_until=now + wait if wait > 0 else None)
            loaded = saved = snapshot.conversation
            if snapshot.leased and lease is not None:
                own_lease, saved = lease, replace(loaded, checking_until=lease)
            elif own_lease is not None and abs((loaded.checking_until or 0) - own_lease) < 0.01:
                # A replay after this message leased (Redis keeps times to 0.1 ms): the lease
                # is its own, not another worker's. A check renews it with a commit.
                loaded = replace(loaded, checking_until=None)
            policy, language = await self._rules(member, _origin(event, loaded), read)
            turn = _Turn(
                member,
                ctx,
                policy,
                language,
                loaded,
                snapshot.version,
                saved,
                trips=trips,
                known=snapshot.known,
            )
            if copy is not None:
                turn.copy, turn.guard, copy = copy[0], guard, None
            before, again = turn.conversation.state, False
            try:
                return await self._run(turn, event)
            except _Replay:
                again = True
                log.info("conversation_replayed", member=str(member.key), attempt=attempt + 1)
            except _Stale as stale:
                again, given = True, stale.snapshot
                log.debug("conversation_copy_stale", member=str(member.key))
            except _Unchecked:
                again = True
            except _Duplicate:
                again = True
                _report_duplicate(member.key, delivery_id)
                return Outcome(duplicate=True)
            finally:
                guard = turn.guard  # still set only if a copy's turn wrote nothing
                if not again:  # a turn handled again is counted then
                    count_turn(member.key.platform, before, turn.conversation.state, turn.seen)
        raise RuntimeError("conversation kept changing under us")

    def _copy_for(
        self, member: Member, event: MemberEvent
    ) -> tuple[Copy, PolicyRead | None] | None:
        """The worker's copy of the conversation to start from, with the community's policy
        as this process has it, unless that policy has lapsed here (the load reads it). Not
        for a code: its lease is taken with the load."""
        copy = self.store.recall(member.key)
        if copy is None or self.policies is None:
            return None if copy is None else (copy, None)
        read = self.policies.to_read(scope_for(member.key, _origin(event, copy.conversation)))
        return None if read.key is not None else (copy, read)

    async def _run(self, turn: _Turn, event: Event) -> Outcome:
        before = turn.conversation.state
        effects: deque[Effect] = deque()
        self._advance(turn, event, effects)
        while effects:
            effect = effects.popleft()
            if isinstance(effect, Reply):
                turn.replies.append(effect)
            elif isinstance(effect, CountWrongCode):
                turn.hits += [
                    Hit(limit, "record") for limit in self.limits.wrong_codes(turn.member.key)
                ]
            elif isinstance(effect, CancelVerification):
                turn.cancels.append(effect)
            elif isinstance(effect, ReleaseClaim):
                turn.release = effect.phone
            elif isinstance(effect, MemberVerified):
                turn.verified = effect
                if effect.fresh:  # counted where the verified state is saved
                    country = turn.conversation.country
                    turn.fraud += self.breaker.for_verified(effect.phone, country)
            elif isinstance(effect, MemberSetback):
                turn.setbacks.append(effect)
            else:
                self._advance(turn, await self._command(turn, effect), effects)
        try:
            await self._save(turn)
        except (_Again, _Duplicate):
            raise
        except Exception as exc:
            if turn.verified is None:
                raise
            # The directory, the source of truth, has the member verified: say so, and let
            # gates open. Only the conversation is stale; it lapses or is looked up again.
            log.warning(
                "conversation_save_failed",
                member=str(turn.member.key),
                error=type(exc).__name__,
                state_to=turn.conversation.state.value,
            )
        for cancel in turn.cancels:
            # Only a cancel Vonage confirmed ends the request; otherwise it may still be live
            # and the claim stays until it has certainly lapsed.
            if await self.verifier.cancel(cancel.request_id) and cancel.phone:
                await self.store.release_claim(turn.member.key, cancel.phone)
        if turn.conversation.state is not before:
            log.debug(
                "conversation_moved",
                member=str(turn.member.key),
                state_from=before.value,
                state_to=turn.conversation.state.value,
            )
        return Outcome(
            tuple(turn.replies),
            turn.conversation.state,
            turn.verified,
            previous=before,
            language=turn.language,
            setbacks=tuple(turn.setbacks),
            trips=tuple(turn.trips),
        )

    def _advance(self, turn: _Turn, event: Event, effects: deque[Effect]) -> None:
        result = step(turn.conversation, event, turn.ctx, turn.policy)
        turn.conversation = result.conversation
        turn.seen += (event, *result.effects)
        effects.extend(result.effects)

    async def _command(self, turn: _Turn, command: Command) -> Answer:
        key = turn.member.key
        if isinstance(command, ReserveSms):
            hits = self.limits.for_sms(key, command.phone, command.country, command.purpose)
            claim = Claim(command.phone, self._claim_ttl())
            fraud = self.breaker.for_sms(command.phone, command.country)
            return await self._reserve(turn, hits, claim, fraud, command.country)
        if isinstance(command, LookupLink):
            known = turn.known
            if known is None and turn.copy is not None:
                raise _Unchecked  # the load reads what is kept, rather than the directory
            if known is None:  # nothing kept: ask the directory, and keep its answer
                known = await self._look_up(key)
                turn.remember = Remember(known, "fill")
            if known.phone is None:
                return LinkLookedUp(command.purpose)
            return LinkLookedUp(command.purpose, known.phone, known.verified_at, known.country)
        if isinstance(command, CountLinks):
            count = await self.directory.count_links(command.phone, excluding=key)
            return LinksCounted(count)
        if not turn.external:
            await self._make_durable(turn)
        turn.external = True
        if isinstance(command, StartVerification):
            started = await self.verifier.start(command.phone, locale=turn.member.locale)
            if isinstance(started, VerificationStarted) and not started.adopted:
                await self._audit_sms(turn, "code_sent", command.phone)
            elif isinstance(started, VerificationStarted):
                metrics.VONAGE_ADOPTED.inc()
            return started
        if isinstance(command, CheckCode):
            return await self.verifier.check(command.request_id, command.code)
        if isinstance(command, ResendCode):
            resent = await self.verifier.resend(command.request_id)
            if isinstance(resent, Resent):
                await self._audit_sms(turn, "code_resent", None)
            return resent
        if isinstance(command, RecordVerified):
            return await self._record(turn, command)
        raise TypeError(f"unknown command {command!r}")  # pragma: no cover

    async def _look_up(self, key: MemberKey) -> KnownLink:
        found = await self.directory.verified_number(key)
        if found is None:
            return KnownLink(None)
        phone, country, verified_at = found
        return KnownLink(phone, country, verified_at.timestamp() if verified_at else None)

    def _claim_ttl(self) -> float:
        return self.verifier.request_lifetime + self.policy.start_lease + _CLAIM_MARGIN

    async def _reserve(
        self,
        turn: _Turn,
        hits: list[Hit],
        claim: Claim,
        fraud: list[FraudHit],
        country: str | None,
    ) -> Answer:
        """Save the lease, take from the limits, take (or refresh) the number's claim and
        pass the fraud breaker in one atomic write, before Vonage."""
        result = await self._commit(
            turn, turn.version, [*turn.hits, *hits], [*turn.fraud, *fraud], claim
        )
        if isinstance(result, Conflict):
            if turn.external:
                raise RuntimeError("conflict after an external call")  # pragma: no cover
            raise _Replay
        if isinstance(result, LimitReached):
            metrics.RATE_LIMIT_HITS.labels(result.limit).inc()
            log.info("rate_limited", member=str(turn.member.key), wait=round(result.wait, 1))
            return Limited(turn.ctx.now + result.wait)
        if isinstance(result, ClaimHeld):
            # Say when, never who: the reply names no member.
            log.info("phone_in_progress", member=str(turn.member.key), wait=round(result.wait))
            return PhoneBusy(turn.ctx.now + result.wait)
        if isinstance(result, ScopePaused):
            log.info("sms_paused", member=str(turn.member.key), wait=round(result.wait))
            return SmsPaused(turn.ctx.now + result.wait)
        if isinstance(result, BreakerTripped):
            for pause in result.pauses:
                _report_trip(pause, country)
            turn.trips += result.pauses
            return SmsPaused(turn.ctx.now + result.wait)
        turn.committed(result.version)
        return Reserved()

    async def _make_durable(self, turn: _Turn) -> None:
        """Commit what changed before the first external call of the turn: another worker
        then sees it (a check's lease, say), and a conflict is replayed, as nothing outside
        Redis has happened yet. A reserved SMS is committed already: no extra round trip."""
        if turn.conversation == turn.saved and not turn.hits and not turn.fraud:
            if turn.copy is not None:
                raise _Unchecked
            return
        result = await self._commit(turn, turn.version, turn.hits, turn.fraud)
        if isinstance(result, Conflict):
            raise _Replay
        if not isinstance(result, Committed):  # only counted hits here: nothing can refuse
            raise RuntimeError(f"unexpected commit result {result!r}")  # pragma: no cover
        turn.committed(result.version)

    async def _commit(
        self,
        turn: _Turn,
        version: int,
        hits: list[Hit],
        fraud: list[FraudHit],
        claim: Claim | None = None,
    ) -> CommitResult:
        """``Store.commit`` of the turn's conversation over ``version``; the first commit of
        a turn started from the worker's copy checks that copy and guards the delivery."""
        result = await self.store.commit(
            turn.member.key,
            turn.conversation,
            version=version,
            now=turn.ctx.now,
            hits=hits,
            claim=claim,
            remember=turn.remember,
            fraud=fraud,
            expect=turn.copy,
            delivery_id=turn.guard,
        )
        if isinstance(result, Duplicate):
            raise _Duplicate
        turn.copy = turn.guard = None
        if isinstance(result, Stale):
            raise _Stale(result.snapshot)
        return result

    async def _audit_sms(self, turn: _Turn, event: str, phone: str | None) -> None:
        """A code went out: the audit log is where ``/stats`` counts members and SMS."""
        key = str(turn.member.key)
        details = {"phone_masked": mask_phone(phone)} if phone else {}
        try:
            await self.directory.audit(
                event,
                actor=key,
                subject=key,
                details=details,
                now=datetime.fromtimestamp(turn.ctx.now, UTC),
            )
        except Exception:  # the SMS is out; a missing statistic must not undo the conversation
            log.exception("audit_failed", member=key, audit_event=event)

    async def _record(self, turn: _Turn, command: RecordVerified) -> Answer:
        # Durable before announced: the member hears "verified" only after this commits.
        try:
            outcome = await self.directory.record_verified(
                turn.member.key,
                phone_e164=command.phone,
                country=command.country,
                display_name=turn.member.display_name,
                handle=turn.member.handle,
                now=datetime.fromtimestamp(turn.ctx.now, UTC),
                max_accounts=turn.policy.max_accounts_per_phone,
            )
        except Exception:
            log.exception("record_verified_failed", member=str(turn.member.key))
            return RecordFailed()
        if outcome is RecordOutcome.PHONE_TAKEN:
            log.info("phone_taken_at_record", member=str(turn.member.key))
            return PhoneTaken()
        log.info("member_verified", member=str(turn.member.key))
        # Every worker's next message knows it from Redis (unless an unlink came since).
        turn.remember = Remember(KnownLink(command.phone, command.country, turn.ctx.now), "set")
        return Recorded()

    async def _save(self, turn: _Turn) -> None:
        unchanged = turn.conversation == turn.saved and not turn.hits and not turn.fraud
        if unchanged and turn.release is None and turn.remember is None:
            if turn.copy is not None:
                raise _Unchecked
            return
        release = Claim(turn.release) if turn.release else None
        if await self._commit_over(turn, turn.version, release):
            return
        if not turn.external:
            raise _Replay
        if turn.verified is not None:
            await self._verification_stands(turn, release)
            return
        # Another message from this member moved the conversation while we talked to
        # Vonage or the DB. Theirs stands; tell the member where things are now.
        log.warning("conversation_changed_concurrently", member=str(turn.member.key))
        if turn.release:  # Vonage's word that the request is over stands all the same
            await self.store.release_claim(turn.member.key, turn.release)
        snapshot = await self.store.load(turn.member.key, now=turn.ctx.now)
        status = step(snapshot.conversation, Status(), turn.ctx, turn.policy)
        turn.conversation = snapshot.conversation
        turn.replies = [e for e in status.effects if isinstance(e, Reply)] or [Reply("help.stale")]
        turn.cancels = []

    async def _verification_stands(self, turn: _Turn, release: Claim | None) -> None:
        """The directory, the source of truth, recorded the member while another message
        moved the conversation: write the verified conversation over whatever is there."""
        log.warning("verified_over_concurrent_change", member=str(turn.member.key))
        for _ in range(_ATTEMPTS):
            snapshot = await self.store.load(turn.member.key, now=turn.ctx.now)
            if await self._commit_over(turn, snapshot.version, release):
                return
        # The caller still says "verified": the directory has it; only Redis is stale.
        raise RuntimeError("conversation kept changing under a verification")

    async def _commit_over(self, turn: _Turn, version: int, release: Claim | None) -> bool:
        """Save the turn's conversation (and its limit hits and claim release) over
        ``version``; False when another write got there first."""
        result = await self._commit(turn, version, turn.hits, turn.fraud, release)
        if not isinstance(result, Committed):
            return False
        turn.committed(result.version)
        if turn.verified is not None and not result.held:
            # Read after the directory's write, so a join handled after it finds the member
            # verified; only a join whose own check straddles both is missed, as it was
            # when the release came after the reply.
            turn.verified = replace(turn.verified, held=False)
        return True


def _origin(event: Event, conversation: Conversation) -> str | None:
    """As the table has it: a start from idle or verified names (or forgets) the place that
    sent the member; otherwise the conversation's place stands."""
    if isinstance(event, Start) and conversation.state in _STARTABLE:
        return event.origin
    return conversation.origin


def _report_duplicate(key: MemberKey, delivery_id: str | None) -> None:
    metrics.DUPLICATE_DELIVERIES.labels(key.platform).inc()
    log.info("duplicate_delivery", member=str(key), delivery_id=delivery_id)


def _report_trip(pause: Pause, country: str | None) -> None:
    """Once per trip (only the commit that tripped is told): the operator's alarm, with the
    prefix masked like a number, and the metric."""
    scope = pause.scope
    log.critical(
        "fraud_breaker_tripped",
        scope=scope.kind,
        country=scope.subject if scope.kind == "country" else country or "unknown",
        prefix=scope.masked if scope.kind == "prefix" else None,
        sent=pause.sent,
        verified=pause.verified,
        conversion=round(pause.conversion, 3),
        paused_until=datetime.fromtimestamp(pause.until, UTC).isoformat(timespec="seconds"),
    )
    FRAUD_TRIPS.labels(scope=scope.kind).inc()
