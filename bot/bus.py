"""What follows a verification: the core's ``MemberVerified``, carried to its handlers.

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

from bot.flow import MemberVerified
from bot.identity import Member

log = structlog.get_logger("verifybot.bus")

#: One thing that follows a verification, for the member who verified.
Handler = Callable[[Member, MemberVerified], Awaitable[None]]


class GatePort(Protocol):
    """A platform's gate: places that hold members until they verify (Telegram's groups)."""

    async def member_verified(
        self, member: Member, *, origin: str | None = None, phone: str | None = None
    ) -> None:
        """Let ``member`` into every place holding them whose rules accept ``phone``;
        ``origin`` is the place that sent them to verify (its rules were the flow's), let in
        even if their arrival there is still to be handled."""


class Bus:
    """Handlers for ``MemberVerified``, by the platform of the member who verified."""

    def __init__(self) -> None:
        self._handlers: dict[str, tuple[Handler, ...]] = {}

    def register(self, platform: str, handlers: Sequence[Handler]) -> None:
        """What follows a verification on ``platform``, in order. A process runs one adapter
        per platform: registering again replaces what an earlier one registered."""
        self._handlers[platform] = tuple(handlers)

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


def gate_handler(gate: GatePort) -> Handler:
    """The gate opens for the member (and for the group that sent them)."""

    async def open_gate(member: Member, verified: MemberVerified) -> None:
        await gate.member_verified(member, origin=verified.origin, phone=verified.phone)

    return open_gate


class VerifiedDesk(Protocol):
    """The moderators' desk as the bus sees it (``bot.moderation.Moderation``)."""

    async def member_verified(self, member: Member, *, fresh: bool = True) -> None: ...


def desk_handler(desk: VerifiedDesk) -> Handler:
    """The desk logs a fresh verification and grants ``AUTO_ROLES``."""

    async def tell_desk(member: Member, verified: MemberVerified) -> None:
        await desk.member_verified(member, fresh=verified.fresh)

    return tell_desk
