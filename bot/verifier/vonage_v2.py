"""Vonage Verify v2 (JWT auth), the default verifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import requests
import structlog
from pydantic import ValidationError
from vonage_http_client.errors import HttpRequestError
from vonage_verify import SmsChannel, VerifyRequest, VoiceChannel
from vonage_verify.enums import Locale

from bot.flow import (
    CheckFailed,
    CheckLost,
    CheckOutcome,
    CodeAccepted,
    CodeExpired,
    CodeRejected,
    Failure,
    ResendFailed,
    ResendOutcome,
    Resent,
    StartFailed,
    StartOutcome,
    TooManyAttempts,
    VerificationStarted,
)
from bot.privacy import mask_phone
from bot.verifier._sdk import (
    SdkRunner,
    SigningAuth,
    VonageOptions,
    answer_lost,
    body_of,
    message_language,
    status_of,
)

log = structlog.get_logger("verifybot.vonage")

T = TypeVar("T")

_OPERATOR_STATUSES = {401: "bad credentials", 402: "no credit", 403: "account not allowed"}
_LOCALES = frozenset(locale.value for locale in Locale)

# What Vonage's HTTP errors mean for a check and for a resend (next_workflow).
_CHECK_ANSWERS: dict[int, CheckOutcome] = {
    400: CodeRejected(),
    404: CodeExpired(),
    410: TooManyAttempts(),
    429: CheckFailed(Failure.THROTTLED),
}
_RESEND_ANSWERS: dict[int, ResendOutcome] = {
    404: CodeExpired(),
    409: ResendFailed(Failure.NO_MORE_RESENDS),
    429: ResendFailed(Failure.THROTTLED),
}


def vonage_locale(locale: str | None) -> Locale | None:
    tag = message_language(locale, _LOCALES)
    return Locale(tag) if tag else None


class VonageVerifier:
    name = "vonage"

    def __init__(
        self,
        auth: SigningAuth,
        options: VonageOptions,
        *,
        channel_timeout: int = 300,
        fallback_channels: tuple[str, ...] = (),
    ) -> None:
        self._sdk = SdkRunner(auth, options, api="verify-v2")
        self._verify = self._sdk.client.verify
        self._verify_once = self._sdk.once.verify
        self._brand = options.brand
        self._code_length = options.code_length
        self._channel_timeout = channel_timeout
        self._fallbacks = fallback_channels
        # Each workflow channel waits channel_timeout before the next; then the request ends.
        self.request_lifetime = float(channel_timeout * (1 + len(fallback_channels)))

    def _request(self, phone: str, locale: str | None) -> VerifyRequest:
        to = phone.removeprefix("+")
        workflow: list[SmsChannel | VoiceChannel] = [SmsChannel(to=to)]
        for channel in self._fallbacks:
            workflow.append(VoiceChannel(to=to) if channel == "voice" else SmsChannel(to=to))
        return VerifyRequest(
            brand=self._brand,
            workflow=workflow,
            locale=vonage_locale(locale),
            channel_timeout=self._channel_timeout,
            code_length=self._code_length,
        )

    async def start(self, phone: str, *, locale: str | None = None) -> StartOutcome:
        masked = mask_phone(phone)
        try:
            request = self._request(phone, locale)
            response = await self._sdk.call_with_retries(self._verify.start_verification, request)
        except ValidationError:
            log.info("verify_start_refused", phone=masked, reason="invalid number for the SDK")
            return StartFailed(Failure.INVALID_NUMBER)
        except HttpRequestError as exc:
            return self._start_error(exc, masked)
        except requests.RequestException as exc:
            log.warning("verify_start_failed", phone=masked, error=exc.__class__.__name__)
            return StartFailed(Failure.UNAVAILABLE)
        log.info("verify_started", phone=masked, request_id=response.request_id)
        return VerificationStarted(response.request_id)

    def _start_error(self, exc: HttpRequestError, masked: str) -> StartOutcome:
        status = status_of(exc)
        if status == 409:
            # A live request for this number. Only the member holding the number's claim
            # reaches Vonage, and the claim outlives any request started under it, so this
            # is the holder's own (typically its POST re-sent after a dropped connection).
            request_id = body_of(exc).get("request_id")
            if isinstance(request_id, str) and request_id:
                log.info("verify_start_adopted", phone=masked, request_id=request_id)
                return VerificationStarted(request_id, adopted=True)
            log.info("verify_start_busy", phone=masked)
            return StartFailed(Failure.BUSY)
        if status in (400, 422):
            log.info("verify_start_refused", phone=masked, status=status)
            return StartFailed(Failure.INVALID_NUMBER)
        if status == 429:
            log.warning("verify_start_throttled", phone=masked)
            return StartFailed(Failure.THROTTLED)
        self._report(status)
        log.warning("verify_start_failed", phone=masked, status=status)
        return StartFailed(Failure.UNAVAILABLE)

    async def check(self, request_id: str, code: str) -> CheckOutcome:
        # Sent once: a re-sent wrong code would spend one of the member's tries, and a
        # re-sent right one answers 404 once the first has completed the request.
        try:
            response = await self._sdk.call(self._verify_once.check_code, request_id, code)
        except HttpRequestError as exc:
            status = status_of(exc)
            log.info("verify_check", request_id=request_id, status=status)
            return _CHECK_ANSWERS.get(status or 0) or self._unavailable(status, CheckFailed)
        except (requests.RequestException, ValidationError) as exc:
            if answer_lost(exc):
                # Verify v2 has no API to ask what became of it: the next check decides.
                log.warning("verify_check_lost", request_id=request_id, error=type(exc).__name__)
                return CheckLost()
            log.warning("verify_check_failed", request_id=request_id, error=type(exc).__name__)
            return CheckFailed(Failure.UNAVAILABLE)
        log.info("verify_check", request_id=request_id, status=response.status)
        return CodeAccepted() if response.status == "completed" else CodeRejected()

    async def resend(self, request_id: str) -> ResendOutcome:
        try:
            await self._sdk.call(self._verify_once.trigger_next_workflow, request_id)
        except HttpRequestError as exc:
            status = status_of(exc)
            log.info("verify_next_workflow", request_id=request_id, status=status)
            return _RESEND_ANSWERS.get(status or 0) or self._unavailable(status, ResendFailed)
        except requests.RequestException as exc:
            log.warning(
                "verify_next_workflow_failed", request_id=request_id, error=type(exc).__name__
            )
            return ResendFailed(Failure.UNAVAILABLE)
        log.info("verify_next_workflow", request_id=request_id, status=200)
        return Resent()

    def _unavailable(self, status: int | None, answer: Callable[[Failure], T]) -> T:
        self._report(status)
        return answer(Failure.UNAVAILABLE)

    async def cancel(self, request_id: str) -> bool:
        try:
            await self._sdk.call(self._verify.cancel_verification, request_id)
        except (HttpRequestError, requests.RequestException) as exc:
            # Best effort: an unanswered request simply expires at Vonage.
            log.info("verify_cancel_failed", request_id=request_id, status=status_of(exc))
            return False
        log.info("verify_cancelled", request_id=request_id)
        return True

    def _report(self, status: int | None) -> None:
        problem = _OPERATOR_STATUSES.get(status or 0)
        if problem:
            self._sdk.operator_problem(problem, status=status)

    async def aclose(self) -> None:
        await self._sdk.aclose()
