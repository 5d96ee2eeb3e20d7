"""Vonage Verify v1 ("legacy", API key and secret). Deprecated by Vonage; used only when
no application is configured.

The legacy API answers HTTP 200 with a string ``status``; the SDK raises ``VerifyError``
for any non-zero one with the response only inside the message, so we read it back out.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import requests
import structlog
from pydantic import ValidationError
from vonage_http_client import Auth
from vonage_http_client.errors import HttpRequestError
from vonage_verify_legacy import VerifyRequest
from vonage_verify_legacy.errors import VerifyError
from vonage_verify_legacy.language_codes import LanguageCode

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
    VonageOptions,
    answer_lost,
    is_transient,
    message_language,
    status_of,
)

log = structlog.get_logger("verifybot.vonage")

_LANGUAGES = frozenset(code.value for code in LanguageCode)
_WORKFLOW_EVENTS = 3
_NEXT_EVENT_WAIT = 300
_DETAILS = re.compile(r"details: (\{.*\})\s*$", re.DOTALL)

# Statuses that are the operator's to fix, not the member's.
_OPERATOR = {"4": "bad credentials", "8": "account barred", "9": "no credit"}
_THROTTLED = {"1": Failure.THROTTLED}
_CHECK_ANSWERS: dict[str, CheckOutcome] = {
    "16": CodeRejected(),  # wrong code
    "17": TooManyAttempts(),  # wrong code, the last allowed: the request is over
    "6": CodeExpired(),  # not found or no longer active
}
_RESEND_ANSWERS: dict[str, ResendOutcome] = {
    "6": CodeExpired(),
    "19": ResendFailed(Failure.NO_MORE_RESENDS),  # no events left to advance to
}
# What the search API's request status says about a check whose answer was lost.
_SEARCH_ANSWERS: dict[str, CheckOutcome] = {
    "SUCCESS": CodeAccepted(),
    "FAILED": TooManyAttempts(),
    "EXPIRED": CodeExpired(),
    "CANCELLED": CodeExpired(),
}
_START_FAILURES = {
    "1": Failure.THROTTLED,
    # "2" (a missing parameter) is our request's fault, not the member's: unavailable.
    "3": Failure.INVALID_NUMBER,
    "7": Failure.NUMBER_BLOCKED,
    "15": Failure.NUMBER_BLOCKED,
    "29": Failure.NUMBER_BLOCKED,
}


def legacy_response(exc: VerifyError) -> dict[str, Any]:
    """The response dict the SDK folded into the error message."""
    match = _DETAILS.search(str(exc))
    if match:
        try:
            value = ast.literal_eval(match.group(1))
        except (ValueError, SyntaxError):
            return {}
        if isinstance(value, dict):
            return value
    return {}


def _legacy_transient(exc: Exception) -> bool:
    if isinstance(exc, VerifyError):
        return str(legacy_response(exc).get("status")) in ("1", "5")  # throttled, internal
    return is_transient(exc)


class VonageLegacyVerifier:
    name = "vonage-legacy"

    def __init__(
        self, *, api_key: str, api_secret: str, options: VonageOptions, pin_expiry: int = 300
    ) -> None:
        if options.code_length not in (4, 6):
            raise ValueError("CODE_LENGTH must be 4 or 6 with the legacy Verify API")
        auth = Auth(api_key=api_key, api_secret=api_secret)
        self._sdk = SdkRunner(auth, options, api="verify-legacy")
        self._verify = self._sdk.client.verify_legacy
        self._verify_once = self._sdk.once.verify_legacy
        self._brand = options.brand
        self._code_length = options.code_length
        self._pin_expiry = max(60, min(3600, pin_expiry))
        # Workflow 1 (we send no workflow_id): SMS, then two calls, next_event_wait (default
        # 300 s) apart; the request lives until its code expires or the workflow has run.
        self.request_lifetime = float(max(self._pin_expiry, _WORKFLOW_EVENTS * _NEXT_EVENT_WAIT))
        log.warning(
            "vonage_legacy_verify",
            message="using the legacy Verify API (v1), which Vonage has deprecated; "
            "set VONAGE_APPLICATION_ID and a private key to use Verify v2",
        )

    async def start(self, phone: str, *, locale: str | None = None) -> StartOutcome:
        masked = mask_phone(phone)
        try:
            language = message_language(locale, _LANGUAGES)
            request = VerifyRequest(
                number=phone.removeprefix("+"),
                brand=self._brand,
                code_length=self._code_length,
                pin_expiry=self._pin_expiry,
                lg=LanguageCode(language) if language else None,
            )
            response = await self._sdk.call_with_retries(
                self._verify.start_verification, request, transient=_legacy_transient
            )
        except ValidationError:
            return StartFailed(Failure.INVALID_NUMBER)
        except VerifyError as exc:
            body = legacy_response(exc)
            status = str(body.get("status"))
            if status == "10" and body.get("request_id"):
                # A live request for this number: the claim holder's own (see VonageVerifier).
                log.info("verify_start_adopted", phone=masked, request_id=body["request_id"])
                return VerificationStarted(str(body["request_id"]), adopted=True)
            log.info("verify_start_refused", phone=masked, status=status)
            return StartFailed(self._failure(status, _START_FAILURES, default=Failure.UNAVAILABLE))
        except (HttpRequestError, requests.RequestException) as exc:
            log.warning("verify_start_failed", phone=masked, status=status_of(exc))
            return StartFailed(Failure.UNAVAILABLE)
        log.info("verify_started", phone=masked, request_id=response.request_id)
        return VerificationStarted(response.request_id)

    async def check(self, request_id: str, code: str) -> CheckOutcome:
        # Sent once (see VonageVerifier.check); a lost answer is looked up, not guessed.
        try:
            await self._sdk.call(self._verify_once.check_code, request_id, code)
        except VerifyError as exc:
            status = str(legacy_response(exc).get("status"))
            log.info("verify_check", request_id=request_id, status=status)
            known = _CHECK_ANSWERS.get(status)
            return known or CheckFailed(self._failure(status, _THROTTLED))
        except (HttpRequestError, requests.RequestException, ValidationError) as exc:
            if answer_lost(exc):
                log.warning("verify_check_lost", request_id=request_id, error=type(exc).__name__)
                return await self._what_became_of(request_id, code)
            log.warning("verify_check_failed", request_id=request_id, error=type(exc).__name__)
            return CheckFailed(Failure.UNAVAILABLE)
        log.info("verify_check", request_id=request_id, status="0")
        return CodeAccepted()

    async def _what_became_of(self, request_id: str, code: str) -> CheckOutcome:
        """Ask the search API what the lost check did. Only Vonage's own word counts."""
        try:
            found = await self._sdk.call(self._verify.search, request_id)
        except (VerifyError, HttpRequestError, requests.RequestException, ValidationError) as exc:
            log.warning("verify_search_failed", request_id=request_id, error=type(exc).__name__)
            return CheckLost()
        if isinstance(found, list):  # one id asked, one answer expected
            found = found[0] if len(found) == 1 else None
        status = getattr(found, "status", None)
        answer = _SEARCH_ANSWERS.get(str(status))
        if answer is None and status == "IN PROGRESS":
            # Still live: if Vonage recorded our code as a wrong try, it was wrong; if it
            # recorded nothing, the check may never have arrived (or may yet): unknown.
            checks = getattr(found, "checks", None) or []
            ours = [c for c in checks if c.code == code]
            if ours and ours[-1].status == "INVALID":
                answer = CodeRejected()
        log.info("verify_search", request_id=request_id, status=status, resolved=answer is not None)
        return answer or CheckLost()

    async def resend(self, request_id: str) -> ResendOutcome:
        try:
            await self._sdk.call(self._verify_once.trigger_next_event, request_id)
        except VerifyError as exc:
            status = str(legacy_response(exc).get("status"))
            log.info("verify_next_event", request_id=request_id, status=status)
            answer = _RESEND_ANSWERS.get(status)
            return answer or ResendFailed(self._failure(status, _THROTTLED))
        except (HttpRequestError, requests.RequestException) as exc:
            log.warning("verify_next_event_failed", request_id=request_id, status=status_of(exc))
            return ResendFailed(Failure.UNAVAILABLE)
        log.info("verify_next_event", request_id=request_id, status="0")
        return Resent()

    async def cancel(self, request_id: str) -> bool:
        try:
            await self._sdk.call(self._verify.cancel_verification, request_id)
        except (VerifyError, HttpRequestError, requests.RequestException) as exc:
            # Legacy refuses cancels in the first 30 s (status 19); the request then expires.
            log.info("verify_cancel_failed", request_id=request_id, error=type(exc).__name__)
            return False
        log.info("verify_cancelled", request_id=request_id)
        return True

    def _failure(
        self, status: str, known: dict[str, Failure], default: Failure = Failure.UNAVAILABLE
    ) -> Failure:
        if status in _OPERATOR:
            self._sdk.operator_problem(_OPERATOR[status], status=status)
        if status == "29":
            self._sdk.operator_problem("demo mode: number not whitelisted", status=status)
        return known.get(status, default)

    async def aclose(self) -> None:
        await self._sdk.aclose()
