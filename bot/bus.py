"""What follows a verification: the core's ``MemberVerified``, carried to its handlers
(and, the same way, a trip of the SMS-fraud breaker, which the moderators' log hears of).

The engine publishes each verification here once the member has seen their reply; the
shell's bootstrap registers, per platform, what follows it (the platform's gate lets the
member in, then the moderators' desk logs it and grants ``AUTO_ROLES``). So no adapter has
to remember those steps after ``engine.handle``, and none can forget one.

Handlers run one after another in the order registered. One that fails is logged and the
others still run: a group that cannot be opened must not cost the member their auto roles.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog

from bot.flow import MemberSetback, MemberVerified
from bot.fraud import Pause
from bot.identity import Member

log = structlog.get_logger("verifybot.bus")

#: One thing that follows a verification, for the member who verified.
Handler = Callable[[Member, MemberVerified], Awaitable[None]]
#: One thing that follows a failed verification (too many wrong codes, a limit, a number
#: another account holds), for that member.
SetbackHandler = Callable[[Member, MemberSetback], Awaitable[None]]
#: What follows a trip of the fraud breaker that ``Member``'s request for an SMS found.
TripHandler = Callable[[Member, Pause], Awaitable[None]]


class GatePort(Protocol):
    """A platform's gate: places that hold members until they verify (Telegram's groups)."""

    async def member_verified(
        self, member: Member, *, origin: str | None = None, phone: str | None = None
    ) -> None:
        """Let ``member`` into every place holding them whose rules accept ``phone``;
        ``origin`` is the place that sent them to verify (its rules were the flow's), let in
        even if their arrival there is still to be handled."""


class SetbackPort(Protocol):
    """A platform's gate as a failed verification reaches it: it may deal with the member at
    once (``ban_after_failures``) or ask the moderators to review them."""

    async def member_set_back(self, member: Member, setback: MemberSetback) -> None: ...


class Bus:
    """Handlers for ``MemberVerified`` and ``MemberSetback``, by the member's platform."""

    def __init__(self) -> None:
        self._handlers: dict[str, tuple[Handler, ...]] = {}
        self._setback_handlers: dict[str, tuple[SetbackHandler, ...]] = {}
        self._trip_handlers: dict[str, TripHandler] = {}

    def register(self, platform: str, handlers: Sequence[Handler]) -> None:
        """What follows a verification on ``platform``, in order. A process runs one adapter
        per platform: registering again replaces what an earlier one registered."""
        self._handlers[platform] = tuple(handlers)

    def register_setbacks(self, platform: str, handlers: Sequence[SetbackHandler]) -> None:
        """What follows a failed verification on ``platform``; replaces an earlier list."""
        self._setback_handlers[platform] = tuple(handlers)

    async def publish_setback(self, member: Member, setback: MemberSetback) -> None:
        """Run every setback handler for the member's platform; never raises."""
        for handler in self._setback_handlers.get(member.key.platform, ()):
            try:
                await handler(member, setback)
            except Exception:
                log.exception(
                    "setback_handler_failed",
                    member=str(member.key),
                    setback=setback.setback.value,
                )

    async def publish(self, member: Member, verified: MemberVerified) -> None:
        """Run every handler for the member's platform; never raises."""
        for handler in self._handlers.get(member.key.platform, ()):
            try:
                await handler(member, verified)
            except Exception:
                log.exception(
                    "verified_handler_failed",
                    member=str(member.key),
                    handler=getattr(handler, "__qualname__", type(handler).__name__),
                )

    def on_trip(self, platform: str, handler: TripHandler) -> None:
        """What follows a trip of the fraud breaker found on ``platform`` (its log)."""
        self._trip_handlers[platform] = handler

    async def tripped(self, member: Member, pause: Pause) -> None:
        """Tell the member's platform the breaker tripped; never raises."""
        handler = self._trip_handlers.get(member.key.platform)
        if handler is None:
            return
        try:
            await handler(member, pause)
        except Exception:
            log.exception("trip_handler_failed", member=str(member.key))


def gate_handler(gate: GatePort) -> Handler:
    """The gate opens for the member (and for the group that sent them)."""

    async def open_gate(member: Member, verified: MemberVerified) -> None:
        if not verified.held and verified.origin is None:
            return  # nothing to release, no group to tell: no round trip
        await gate.member_verified(member, origin=verified.origin, phone=verified.phone)

    return open_gate


def setback_handler(port: SetbackPort) -> SetbackHandler:
    """The gate deals with a member who failed, or queues them for the moderators."""

    async def set_back(member: Member, setback: MemberSetback) -> None:
        await port.member_set_back(member, setback)

    return set_back


class VerifiedDesk(Protocol):
    """The moderators' desk as the bus sees it (``bot.moderation.Moderation``)."""

    async def member_verified(
        self, member: Member, *, fresh: bool = True, origin: str | None = None
    ) -> None: ...


def desk_handler(desk: VerifiedDesk) -> Handler:
    """The desk logs a fresh verification and grants ``AUTO_ROLES``."""

    async def tell_desk(member: Member, verified: MemberVerified) -> None:
        await desk.member_verified(member, fresh=verified.fresh, origin=verified.origin)

    return tell_desk
