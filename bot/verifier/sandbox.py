"""A verifier for local use: no network, and the code is shown to the operator.

It behaves as Vonage does, so a console demo meets the same outcomes as production:
wrong codes with a limit of three, expiry, resends, and one request per number at a time.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from bot.flow import (
    CheckOutcome,
    CodeAccepted,
    CodeExpired,
    CodeRejected,
    Failure,
    ResendFailed,
    ResendOutcome,
    Resent,
    StartOutcome,
    TooManyAttempts,
    VerificationStarted,
)
from bot.privacy import mask_phone

log = structlog.get_logger("verifybot.sandbox")


@dataclass(slots=True)
class _Request:
    phone: str
    code: str
    expires_at: float
    wrong: int = 0
    resends: int = 0
    terminated: bool = False


class SandboxVerifier:
    name = "sandbox"

    def __init__(
        self,
        show: Callable[[str], None],
        *,
        code_length: int = 6,
        validity: float = 300.0,
        max_wrong: int = 3,
        max_resends: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._show = show
        self._code_length = code_length
        self._validity = validity
        self._max_wrong = max_wrong
        self._max_resends = max_resends
        self._clock = clock
        self._requests: dict[str, _Request] = {}
        self.request_lifetime = float(validity)

    def _live(self, request_id: str) -> _Request | None:
        request = self._requests.get(request_id)
        if request is not None and request.expires_at <= self._clock():
            del self._requests[request_id]
            return None
        return request

    def _deliver(self, request: _Request) -> None:
        # The operator's side of the demo, by design: this is the "SMS".
        self._show(f"[sandbox] code for {mask_phone(request.phone)}: {request.code}")

    async def start(self, phone: str, *, locale: str | None = None) -> StartOutcome:
        for request_id in list(self._requests):
            request = self._live(request_id)
            if request is not None and request.phone == phone and not request.terminated:
                # As Vonage's 409: the live request is the claim holder's own; adopt it.
                log.info("verify_start_adopted", phone=mask_phone(phone), request_id=request_id)
                return VerificationStarted(request_id, adopted=True)
        code = "".join(secrets.choice("0123456789") for _ in range(self._code_length))
        request_id = str(uuid.uuid4())
        self._requests[request_id] = _Request(phone, code, self._clock() + self._validity)
        self._deliver(self._requests[request_id])
        return VerificationStarted(request_id)

    async def check(self, request_id: str, code: str) -> CheckOutcome:
        request = self._live(request_id)
        if request is None:
            return CodeExpired()
        if request.terminated:
            return TooManyAttempts()
        if secrets.compare_digest(code, request.code):
            del self._requests[request_id]
            return CodeAccepted()
        request.wrong += 1
        # As Vonage (410 / legacy 17): the last allowed wrong code ends the request.
        if request.wrong >= self._max_wrong:
            request.terminated = True
            return TooManyAttempts()
        return CodeRejected()

    async def resend(self, request_id: str) -> ResendOutcome:
        request = self._live(request_id)
        if request is None or request.terminated:
            return CodeExpired()
        if request.resends >= self._max_resends:
            return ResendFailed(Failure.NO_MORE_RESENDS)
        request.resends += 1
        self._deliver(request)
        return Resent()

    async def cancel(self, request_id: str) -> bool:
        return self._requests.pop(request_id, None) is not None

    async def aclose(self) -> None:
        self._requests.clear()
