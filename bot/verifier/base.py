"""The port through which the engine asks for codes to be sent and checked."""

from __future__ import annotations

from typing import Protocol

from bot.flow import CheckOutcome, ResendOutcome, StartOutcome


class Verifier(Protocol):
    """Sends a code to a phone and checks what the member typed.

    Every method returns a flow event and never raises for anything Vonage answers:
    operator problems (credentials, credit) become ``Failure.UNAVAILABLE`` after one loud
    log line.
    """

    name: str
    #: The longest a request started now can stay live at the provider, in seconds: the
    #: number's claim must outlive it, so that a 409 / status 10 is always the holder's own.
    request_lifetime: float

    async def start(self, phone: str, *, locale: str | None = None) -> StartOutcome: ...

    async def check(self, request_id: str, code: str) -> CheckOutcome: ...

    async def resend(self, request_id: str) -> ResendOutcome: ...

    async def cancel(self, request_id: str) -> bool:
        """True when the provider confirmed the request is over."""
        ...

    async def aclose(self) -> None: ...
