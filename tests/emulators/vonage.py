"""Protocol-faithful emulator of the Vonage Verify API (v2 and legacy v1) over HTTPS.

The real ``vonage`` SDK talks to it unchanged::

    with VonageEmulator(application_id=APP_ID, public_key_pem=pub, api_key=KEY,
                        api_secret=SECRET) as emu:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_bundle)
        client = Vonage(Auth(application_id=APP_ID, private_key=pem),
                        HttpClientOptions(api_host=emu.host, timeout=5))
        rid = client.verify.start_verification(req).request_id
        client.verify.check_code(rid, emu.last_code("447700900123"))

TLS trust: the SDK builds a plain ``requests.Session`` (``trust_env`` on, ``verify`` True), so
``requests`` reads ``REQUESTS_CA_BUNDLE`` on every request; pointing it at ``emu.ca_bundle`` is
enough (``test_vonage_emulator.py`` proves it, and that another CA's bundle is refused).
One trustme CA and one leaf certificate (SAN 127.0.0.1) are made per process and shared by every
emulator, so starting one costs a bind and a thread, not a key generation.

Sources: ``/work/shared/specs/vonage-verify-v2.openapi.json``, ``vonage-verify-v1.openapi.json``
and the facts in ``/work/shared/specs/README.md``. Choices where those are silent or ambiguous:

* v2, wrong codes: the first ``max_wrong_codes - 1`` answer 400; the ``max_wrong_codes``-th wrong
  code ends the request and answers **410** ("An incorrect code has been provided too many times.
  Workflow terminated."), as the README says three wrong codes end a request and the legacy API's
  17 carries the same "Workflow terminated" text on the terminating attempt. Later checks answer
  410 until the request's lifetime (``code_ttl``) is over, then 404.
* legacy, wrong codes: 16, then 17 on the ``max_wrong_codes``-th; afterwards 6 ("no longer
  active"), since the spec says a FAILED request cannot be checked again.
* v2 ``next_workflow`` with no next channel: 409 with an ``ErrorConflict`` body (the only
  non-404 refusal the spec lists for that operation). Finished/unknown/expired: 404.
* v2 DELETE: the spec's "only 30 s after the start" note has no status code attached (DELETE
  documents only 204/401/402/404/500), so v2 cancels any in-flight request with 204.
* legacy ``cmd=cancel``: 19 within ``legacy_cancel_min_age`` seconds of the start (the real API
  uses 30 s; default 0 here so tests are not slowed) and 19 once a second event was triggered.
* v2 start: an unknown top-level property is a 422 (the spec's schema lists the allowed ones);
  ``to`` must be E.164 digits without ``+`` (7-15 digits), ``brand`` is required (the spec's
  ``ErrorInvalidParams`` example is "Brand is required").
* v2 check: any string that is not the code counts as a wrong attempt (even one of the wrong
  length); a missing or non-string ``code`` is a 400 that does not count. A silent_auth first
  step gets a ``check_url`` and no code in the inbox until ``next_workflow``.
* legacy bad credentials answer HTTP 200 with status "4", as every v1 example does.
* v1 and v2 keep separate "in flight" sets: a v1 request does not block a v2 start.
* ``RecordedCall.body`` redacts ``api_secret`` (the real value never lands in test output);
  credentials sent in a legacy body are recorded with ``auth="body"``.
* JWT ``exp``/``iat`` are checked against the wall clock (the SDK signs with ``time.time()``);
  ``now`` only drives verification lifetimes, so a test can jump it forward without making
  every token look expired.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import contextlib
import hmac
import json
import os
import re
import secrets
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import parse_qs, urlsplit

import jwt
import trustme
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tests.emulators._http import JsonHandler, TrackedServer

__all__ = ["Delivery", "RecordedCall", "VonageEmulator"]

_DOCS = "https://developer.vonage.com/en/api-errors"
_E164 = re.compile(r"^[1-9]\d{6,14}$")
_BRAND_FORBIDDEN = re.compile(r"[\\/{}:$]")
_CLIENT_REF = re.compile(r"^[a-zA-Z0-9]{1,40}$")
_CUSTOM_CODE = re.compile(r"^[a-zA-Z0-9]{4,10}$")
_FAULT = re.compile(r"^(500|503|429|timeout|drop_after|drop_before|status:\d+)$")

_V2_TOP_LEVEL = frozenset(
    {
        "locale",
        "channel_timeout",
        "client_ref",
        "code_length",
        "code",
        "brand",
        "template_id",
        "fraud_check",
        "workflow",
    }
)
# channel -> (kind of "to", required properties) from the spec's *Channel schemas.
_V2_CHANNELS: dict[str, tuple[str, frozenset[str]]] = {
    "sms": ("phone", frozenset({"channel", "to"})),
    "voice": ("phone", frozenset({"channel", "to"})),
    "whatsapp": ("phone", frozenset({"channel", "to", "from"})),
    "rcs": ("phone", frozenset({"channel", "to", "from"})),
    "silent_auth": ("phone", frozenset({"channel", "to"})),
    "email": ("email", frozenset({"channel", "to"})),
}
# Legacy workflow_id -> events, from Vonage's "workflows and events" guide.
_LEGACY_WORKFLOWS: dict[int, list[str]] = {
    1: ["sms", "tts", "tts"],
    2: ["sms", "sms", "tts"],
    3: ["tts", "tts"],
    4: ["sms", "sms"],
    5: ["sms", "tts"],
    6: ["sms"],
    7: ["tts"],
}
_LEGACY_LANGS = frozenset(
    {  # the v1 spec's `lg` enum
        "ar-xa",
        "cs-cz",
        "cy-cy",
        "cy-gb",
        "da-dk",
        "de-de",
        "el-gr",
        "en-au",
        "en-gb",
        "en-in",
        "en-us",
        "es-es",
        "es-mx",
        "es-us",
        "fi-fi",
        "fil-ph",
        "fr-ca",
        "fr-fr",
        "hi-in",
        "hu-hu",
        "id-id",
        "is-is",
        "it-it",
        "ja-jp",
        "ko-kr",
        "nb-no",
        "nl-nl",
        "pl-pl",
        "pt-br",
        "pt-pt",
        "ro-ro",
        "ru-ru",
        "sv-se",
        "th-th",
        "tr-tr",
        "vi-vn",
        "yue-cn",
        "zh-cn",
        "zh-tw",
    }
)
_LEGACY_TEXTS: dict[str, str] = {
    "1": "Throttled",
    "2": "Your request is incomplete and missing the mandatory parameter `request_id`",
    "3": "Invalid value for param: request_id",
    "4": "Bad credentials",
    "5": "Internal Error",
    "6": "The Vonage platform was unable to process this message for the following reason: "
    "The request could not be routed.",
    "7": "The number you are trying to verify is blacklisted for verification.",
    "8": "The api_key you supplied is for an account that has been barred from submitting "
    "messages.",
    "9": "Partner quota exceeded",
    "10": "Concurrent verifications to the same number are not allowed",
    "15": "The destination number is not in a supported network",
    "16": "The code provided does not match the expected value",
    "17": "A wrong code was provided too many times. Workflow terminated",
    "19": "No more events are left to execute for the request",
    "20": "This account does not support the parameter: pin_code.",
    "29": "Non-Permitted Destination",
    "101": "No response found",
}
_PRICE = "0.10000000"
_CURRENCY = "EUR"


@dataclass
class RecordedCall:
    """One HTTP request the emulator received, in arrival order."""

    method: str
    path: str  # without the query string
    auth: str  # "jwt", "basic", "body" (legacy credentials in the body) or "none"
    body: dict[str, Any]  # parsed JSON, or form/query values as str (list[str] if repeated)
    status: int = 0  # HTTP status answered; 0 while in progress and if the connection was dropped
    response: Any = None  # parsed JSON answered (None for an empty body or a dropped connection)
    fault: str | None = None  # the injected fault that applied to this call, if any


@dataclass(frozen=True)
class Delivery:
    """A code that reached a destination: one SMS, call or message."""

    request_id: str
    to: str
    channel: str
    code: str


@dataclass
class _Verification:
    request_id: str
    api: Literal["v2", "legacy"]
    steps: list[tuple[str, str]]  # (channel, to) per workflow step
    code: str
    brand: str
    created_at: float
    expires_at: float
    sender_id: str = "verify"
    client_ref: str | None = None
    step: int = 0
    wrong: int = 0
    state: str = "in_progress"  # completed | failed | cancelled | expired
    finalized_at: float | None = None
    checks: list[tuple[float, str, str]] = field(default_factory=list)  # (when, code, VALID|..)
    events: list[tuple[str, str, float]] = field(default_factory=list)  # (event_id, type, when)

    @property
    def destinations(self) -> set[str]:
        return {to for _, to in self.steps}


@dataclass
class _Fault:
    kind: str
    path_prefix: str
    remaining: int


@dataclass
class _Reply:
    status: int = 200
    body: Any = None
    content_type: str = "application/json"
    drop: bool = False


class VonageEmulator:
    """Vonage Verify v2 + legacy v1 over HTTPS on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        *,
        application_id: str,
        public_key_pem: bytes,
        api_key: str,
        api_secret: str,
        max_wrong_codes: int = 3,
    ) -> None:
        self.application_id = application_id
        # Parsed once: PyJWT would otherwise re-parse the PEM on every request.
        public_key = load_pem_public_key(public_key_pem)
        if not isinstance(public_key, RSAPublicKey):
            raise TypeError("public_key_pem must hold an RSA public key (Vonage signs RS256)")
        self._public_key = public_key
        self.api_key = api_key
        self.api_secret = api_secret
        self.max_wrong_codes = max_wrong_codes
        self.timeout_delay: float = 3.0
        self.now: Callable[[], float] = time.time
        self.code_ttl: float = 300.0
        self.legacy_cancel_min_age: float = 0.0
        self.jwt_leeway: float = 5.0  # clock skew tolerated on iat/exp
        self.calls: list[RecordedCall] = []
        self.deliveries: list[Delivery] = []
        self.internal_errors: list[BaseException] = []  # bugs in the emulator itself
        self.host = ""
        self.ca_bundle = ""
        self._lock = threading.RLock()
        self._verifications: dict[str, _Verification] = {}
        self._faults: list[_Fault] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("emulator already started")
        self.ca_bundle, context = _tls_material()
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), self, context)
        self._server = server
        self.host = f"127.0.0.1:{server.server_address[1]}"
        self._thread = server.serve_in_background(f"vonage-emulator-{self.host}")

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # wakes handlers sleeping on a "timeout" fault
        server.stop_serving(thread)
        self._server = self._thread = None

    def __enter__(self) -> VonageEmulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- test helpers ----------------------------------------------------------------------

    def codes_sent_to(self, number: str) -> list[str]:
        """The "inbox": every code delivered (sent or re-sent, any channel), oldest first."""
        key = _destination_key(number)
        with self._lock:
            return [d.code for d in self.deliveries if d.to == key]

    def last_code(self, number: str) -> str:
        codes = self.codes_sent_to(number)
        if not codes:
            raise AssertionError(f"no code was sent to {number!r}")
        return codes[-1]

    def request_ids_to(self, number: str) -> list[str]:
        """Every request (v2 or legacy) created for that destination, oldest first."""
        key = _destination_key(number)
        with self._lock:
            return [v.request_id for v in self._verifications.values() if key in v.destinations]

    def status_of(self, request_id: str) -> str:
        """in_progress, completed, failed, cancelled or expired; KeyError if unknown."""
        with self._lock:
            verification = self._verifications[request_id]
            self._refresh(verification)
            return verification.state

    def expire(self, request_id: str) -> None:
        """End the request's lifetime now: check answers 404 (v2) / 6 (legacy) and the number
        is free again. KeyError if unknown."""
        with self._lock:
            verification = self._verifications[request_id]
            verification.state = "expired"
            verification.expires_at = min(verification.expires_at, self.now())
            verification.finalized_at = verification.finalized_at or self.now()

    def inject(self, fault: str, *, path_prefix: str = "", times: int = 1) -> None:
        """Queue a fault for the next ``times`` requests whose path starts with ``path_prefix``.

        "500"/"503"/"429": that HTTP status (v2 and legacy 429 with an RFC 7807 body, legacy 5xx
        with ``{"status": "5"}``); "timeout": wait ``timeout_delay`` s, then answer normally;
        "drop_after": process, then close without answering; "drop_before": close without
        processing; "status:N" (legacy paths only; v2 requests skip it): HTTP 200 with that
        v1 status (10 carries the number's in-flight request_id). Faults apply in FIFO order.
        """
        if not _FAULT.match(fault):
            raise ValueError(f"unknown fault {fault!r}")
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(_Fault(fault, path_prefix, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Forget calls, deliveries, requests and faults (for a module-scoped emulator)."""
        with self._lock:
            self.calls.clear()
            self.deliveries.clear()
            self.internal_errors.clear()
            self._verifications.clear()
            self._faults.clear()

    # -- request handling (called from handler threads) ------------------------------------

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> _Reply:
        split = urlsplit(target)
        path = split.path
        body, parse_error = _parse_body(headers.get("content-type", ""), raw, split.query)
        auth, credential = _auth_scheme(headers.get("authorization", ""), body)
        call = RecordedCall(method, path, auth, _redact(body))
        with self._lock:
            self.calls.append(call)
            fault = self._take_fault(path)
        call.fault = fault
        if fault == "drop_before":
            return _Reply(drop=True)
        if fault == "timeout" and self._stopping.wait(self.timeout_delay):
            return _Reply(drop=True)  # stopped while "slow": the connection just dies
        try:
            if fault in ("500", "503", "429"):
                reply = _fault_reply(int(fault), legacy=not path.startswith("/v2/"))
            elif fault is not None and fault.startswith("status:"):
                reply = self._legacy_status_fault(fault.removeprefix("status:"), body)
            else:
                reply = self._route(method, path, auth, credential, body, parse_error)
        except Exception as exc:  # a bug here must fail tests, not hang them
            self.internal_errors.append(exc)
            reply = _problem(500, "Internal error", f"{_DOCS}#internal-error", repr(exc))
        if fault == "drop_after":
            reply.drop = True
        # Recorded before the bytes go out, so a client that saw the answer sees the record.
        call.status = 0 if reply.drop else reply.status
        call.response = None if reply.drop else reply.body
        return reply

    def _take_fault(self, path: str) -> str | None:
        legacy = not path.startswith("/v2/")
        for fault in self._faults:
            if not path.startswith(fault.path_prefix):
                continue
            if fault.kind.startswith("status:") and not legacy:
                continue  # legacy-only fault: v2 has no status field to carry it
            fault.remaining -= 1
            if fault.remaining == 0:
                self._faults.remove(fault)
            return fault.kind
        return None

    def _route(
        self,
        method: str,
        path: str,
        auth: str,
        credential: str,
        body: dict[str, Any],
        parse_error: str | None,
    ) -> _Reply:
        if path.startswith("/v2/verify"):
            rest = path.removeprefix("/v2/verify").strip("/")
            parts = rest.split("/") if rest else []
            if len(parts) > 2 or (len(parts) == 2 and parts[1] != "next_workflow"):
                return _not_found("The requested resource does not exist")
            allowed = {0: ("POST",), 1: ("POST", "DELETE"), 2: ("POST",)}[len(parts)]
            if method not in allowed:
                return _problem(
                    405,
                    "Method Not Allowed",
                    f"{_DOCS}#method-not-allowed",
                    f"{method} is not supported on this resource",
                )
            denied = self._v2_auth(auth, credential)
            if denied is not None:
                return denied
            with self._lock:
                if not parts:
                    return self._v2_start(body, parse_error)
                if len(parts) == 2:
                    return self._v2_next_workflow(parts[0])
                if method == "DELETE":
                    return self._v2_cancel(parts[0])
                return self._v2_check(parts[0], body, parse_error)
        legacy = {
            "/verify/json": self._legacy_start,
            "/verify/check/json": self._legacy_check,
            "/verify/control/json": self._legacy_control,
            "/verify/search/json": self._legacy_search,
        }.get(path.rstrip("/"))
        if legacy is None:
            return _not_found("The requested resource does not exist")
        if method not in ("GET", "POST"):  # every v1 endpoint takes GET and POST alike
            return _Reply(405, {"status": "3", "error_text": f"{method} is not supported"})
        if not self._legacy_authorised(auth, credential, body):
            text = "Invalid credentials were provided" if path == "/verify/json" else None
            return _legacy_error("4", text)
        with self._lock:
            return legacy(body)

    # -- auth ------------------------------------------------------------------------------

    def _v2_auth(self, auth: str, credential: str) -> _Reply | None:
        if auth == "basic" and self._basic_ok(credential):
            return None
        if auth != "jwt":
            return _unauthorised("You did not provide correct credentials.")
        try:
            claims = jwt.decode(
                credential,
                self._public_key,
                algorithms=["RS256"],
                leeway=self.jwt_leeway,
                options={"require": ["application_id", "iat", "jti", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            return _problem(
                401,
                "You did not provide correct credentials.",
                f"{_DOCS}#jwt-expired",
                "The JWT provided has expired.",
            )
        except jwt.PyJWTError as exc:
            return _unauthorised(f"Invalid token: {exc}")
        if claims.get("application_id") != self.application_id:
            return _unauthorised("The JWT was not issued for this application.")
        return None

    def _basic_ok(self, credential: str) -> bool:
        expected = f"{self.api_key}:{self.api_secret}"
        return hmac.compare_digest(credential.encode(), expected.encode())

    def _legacy_authorised(self, auth: str, credential: str, body: dict[str, Any]) -> bool:
        if auth == "basic":
            return self._basic_ok(credential)
        if auth == "body":
            key, secret = body.pop("api_key", ""), body.pop("api_secret", "")
            return self._basic_ok(f"{key}:{secret}")
        return False

    # -- v2 --------------------------------------------------------------------------------

    def _v2_start(self, body: dict[str, Any], parse_error: str | None) -> _Reply:
        if parse_error is not None:
            return _invalid_params([("body", parse_error)])
        errors = _validate_v2_start(body)
        if errors:
            return _invalid_params(errors)
        steps = [(str(c["channel"]), _destination_key(str(c["to"]))) for c in body["workflow"]]
        destinations = {to for _, to in steps}
        for other in self._verifications.values():
            self._refresh(other)
            if (
                other.api == "v2"
                and other.state == "in_progress"
                and other.destinations & destinations
            ):
                reply = _problem(
                    409,
                    "Conflict",
                    f"{_DOCS}/verify-v2#conflict",
                    "Concurrent verifications to the same number are not allowed.",
                )
                reply.body["request_id"] = other.request_id
                return reply
        code = body.get("code") or _digits(int(body.get("code_length", 4)))
        now = self.now()
        verification = _Verification(
            request_id=str(uuid.uuid4()),
            api="v2",
            steps=steps,
            code=str(code),
            brand=str(body["brand"]),
            created_at=now,
            expires_at=now + self.code_ttl,
            client_ref=body.get("client_ref"),
        )
        self._verifications[verification.request_id] = verification
        answer: dict[str, Any] = {"request_id": verification.request_id}
        if steps[0][0] == "silent_auth":
            answer["check_url"] = (
                f"https://{self.host}/v2/verify/{verification.request_id}/silent-auth/redirect"
            )
        self._deliver(verification)
        return _Reply(202, answer)

    def _v2_check(self, request_id: str, body: dict[str, Any], parse_error: str | None) -> _Reply:
        verification = self._verifications.get(request_id)
        if verification is None or verification.api != "v2":
            return _v2_gone_or_unknown(request_id)
        self._refresh(verification)
        if verification.state == "failed" and self.now() < verification.expires_at:
            return _too_many()  # terminated, but not yet gone
        if verification.state != "in_progress":
            return _v2_gone_or_unknown(request_id)
        code = body.get("code")
        if parse_error is not None or not isinstance(code, str):
            return _problem(
                400,
                "Invalid Code",
                f"{_DOCS}/verify-v2#invalid-code",
                "A string 'code' is required.",
            )
        if verification.steps[verification.step][0] == "silent_auth":
            return _problem(
                409,
                "Conflict",
                f"{_DOCS}/verify-v2#conflict",
                "The current Verify workflow step does not support a code.",
            )
        if hmac.compare_digest(code.encode(), verification.code.encode()):
            self._finish(verification, "completed")
            return _Reply(200, {"request_id": request_id, "status": "completed"})
        verification.wrong += 1
        if verification.wrong >= self.max_wrong_codes:
            self._finish(verification, "failed")
            return _too_many()
        return _problem(
            400,
            "Invalid Code",
            f"{_DOCS}/verify-v2#invalid-code",
            "The code you provided does not match the expected value.",
        )

    def _v2_next_workflow(self, request_id: str) -> _Reply:
        verification = self._live(request_id, "v2")
        if verification is None:
            return _v2_gone_or_unknown(request_id)
        if verification.step + 1 >= len(verification.steps):
            return _problem(
                409,
                "Conflict",
                f"{_DOCS}/verify-v2#conflict",
                "There are no more workflows to move on to for this request.",
            )
        verification.step += 1
        self._deliver(verification)
        return _Reply(200, None)

    def _v2_cancel(self, request_id: str) -> _Reply:
        verification = self._live(request_id, "v2")
        if verification is None:
            return _v2_gone_or_unknown(request_id)
        self._finish(verification, "cancelled")
        return _Reply(204, None)

    # -- legacy ----------------------------------------------------------------------------

    def _legacy_start(self, body: dict[str, Any]) -> _Reply:
        for name in ("number", "brand"):
            if not _str(body.get(name)):
                return _legacy_error(
                    "2", f"Your request is incomplete and missing the mandatory parameter `{name}`"
                )
        number = _str(body.get("number")).strip().removeprefix("+")
        checks: list[tuple[str, bool]] = [
            ("number", bool(_E164.match(number))),
            ("brand", len(_str(body["brand"])) <= 18),
            ("sender_id", len(_str(body.get("sender_id", ""))) <= 11),
            ("code_length", _str(body.get("code_length", "4")) in ("4", "6")),
            ("lg", _str(body.get("lg", "en-us")) in _LEGACY_LANGS),
            ("pin_expiry", _int_in(body.get("pin_expiry", "300"), 60, 3600)),
            ("next_event_wait", _int_in(body.get("next_event_wait", "300"), 60, 900)),
            ("workflow_id", _int_in(body.get("workflow_id", "1"), 1, 7)),
        ]
        for name, ok in checks:
            if not ok:
                return _legacy_error("3", f"Invalid value for parameter `{name}`")
        if "pin_code" in body:  # off by default on real accounts
            return _legacy_error("20")
        for other in self._verifications.values():
            self._refresh(other)
            if (
                other.api == "legacy"
                and other.state == "in_progress"
                and number in other.destinations
            ):
                return _Reply(
                    200,
                    {
                        "request_id": other.request_id,
                        "status": "10",
                        "error_text": _LEGACY_TEXTS["10"],
                    },
                )
        events = _LEGACY_WORKFLOWS[int(_str(body.get("workflow_id", "1")))]
        pin_expiry = float(_str(body["pin_expiry"])) if "pin_expiry" in body else self.code_ttl
        now = self.now()
        verification = _Verification(
            request_id=uuid.uuid4().hex,
            api="legacy",
            steps=[(e, number) for e in events],
            code=_digits(int(_str(body.get("code_length", "4")))),
            brand=_str(body["brand"]),
            created_at=now,
            expires_at=now + pin_expiry,
            sender_id=_str(body.get("sender_id", "verify")),
        )
        self._verifications[verification.request_id] = verification
        self._deliver(verification)
        return _Reply(200, {"request_id": verification.request_id, "status": "0"})

    def _legacy_check(self, body: dict[str, Any]) -> _Reply:
        for name in ("request_id", "code"):
            if not _str(body.get(name)):
                return _legacy_error(
                    "2", f"Your request is incomplete and missing the mandatory parameter `{name}`"
                )
        request_id, code = _str(body["request_id"]), _str(body["code"])
        if len(request_id) > 32:
            return _legacy_error("3", "Invalid value for param: request_id")
        if not 4 <= len(code) <= 6:
            return _legacy_error("3", "Invalid value for param: code")
        verification = self._live(request_id, "legacy")
        if verification is None:
            return _legacy_error(
                "6",
                "The Vonage platform was unable to process this message for "
                f"the following reason: Request '{request_id}' was not "
                "found or it has been verified already.",
            )
        if hmac.compare_digest(code.encode(), verification.code.encode()):
            verification.checks.append((self.now(), code, "VALID"))
            self._finish(verification, "completed")
            return _Reply(
                200,
                {
                    "request_id": request_id,
                    "event_id": verification.events[-1][0],
                    "status": "0",
                    "price": _PRICE,
                    "currency": _CURRENCY,
                    "estimated_price_messages_sent": "0.03330000",
                },
            )
        verification.checks.append((self.now(), code, "INVALID"))
        verification.wrong += 1
        if verification.wrong >= self.max_wrong_codes:
            self._finish(verification, "failed")
            return _legacy_error("17")
        return _legacy_error("16")

    def _legacy_control(self, body: dict[str, Any]) -> _Reply:
        for name in ("request_id", "cmd"):
            if not _str(body.get(name)):
                return _legacy_error(
                    "2", f"Your request is incomplete and missing the mandatory parameter `{name}`"
                )
        request_id, cmd = _str(body["request_id"]), _str(body["cmd"])
        if cmd not in ("cancel", "trigger_next_event"):
            return _legacy_error("3", "Invalid value for param: cmd")
        verification = self._live(request_id, "legacy")
        if verification is None:
            return _legacy_error(
                "6", f"The requestId '{request_id}' does not exist or its no longer active."
            )
        if cmd == "trigger_next_event":
            if verification.step + 1 >= len(verification.steps):
                return _legacy_error(
                    "19", f"No more events are left to execute for the request ['{request_id}']"
                )
            verification.step += 1
            self._deliver(verification)
            return _Reply(200, {"status": "0", "command": cmd})
        if self.now() - verification.created_at < self.legacy_cancel_min_age:
            return _legacy_error(
                "19",
                f"Verification request ['{request_id}'] can't be "
                f"cancelled within the first {self.legacy_cancel_min_age:g}"
                " seconds.",
            )
        if verification.step > 0:
            return _legacy_error(
                "19",
                f"Verification request  ['{request_id}'] can't be "
                "cancelled now. Too many attempts to re-deliver have "
                "already been made.",
            )
        self._finish(verification, "cancelled")
        return _Reply(200, {"status": "0", "command": cmd})

    def _legacy_search(self, body: dict[str, Any]) -> _Reply:
        many = body.get("request_ids")
        ids = (many if isinstance(many, list) else [many]) if many else []
        single = _str(body.get("request_id"))
        if not ids and not single:
            return _legacy_error("2", "Missing request_id")
        if len(ids) > 10:
            return _legacy_error("3", "Invalid value for param: request_ids")
        found = [
            self._search_entry(v)
            for rid in (ids or [single])
            if (v := self._verifications.get(rid)) is not None and v.api == "legacy"
        ]
        if not found:
            return _Reply(
                200, {"request_id": single, "status": "101", "error_text": _LEGACY_TEXTS["101"]}
            )
        return _Reply(200, {"verification_requests": found} if ids else found[0])

    def _search_entry(self, verification: _Verification) -> dict[str, Any]:
        self._refresh(verification)
        status = {
            "in_progress": "IN PROGRESS",
            "completed": "SUCCESS",
            "failed": "FAILED",
            "expired": "EXPIRED",
            "cancelled": "CANCELLED",
        }[verification.state]
        entry: dict[str, Any] = {
            "request_id": verification.request_id,
            "account_id": self.api_key,
            "number": verification.steps[0][1],
            "sender_id": verification.sender_id,
            "date_submitted": _legacy_time(verification.created_at),
            "status": status,
            "price": _PRICE,
            "currency": _CURRENCY,
            "checks": [
                {"date_received": _legacy_time(t), "code": c, "status": s, "ip_address": ""}
                for t, c, s in verification.checks
            ],
            "events": [{"id": i, "type": kind} for i, kind, _ in verification.events],
            "first_event_date": _legacy_time(verification.events[0][2]),
            "last_event_date": _legacy_time(verification.events[-1][2]),
            "estimated_price_messages_sent": "0.03330000",
        }
        if verification.finalized_at is not None:
            entry["date_finalized"] = _legacy_time(verification.finalized_at)
        return entry

    def _legacy_status_fault(self, status: str, body: dict[str, Any]) -> _Reply:
        reply = _legacy_error(status)
        if status == "10":  # the spec's "concurrent" answer carries the in-flight request_id
            number = _str(body.get("number")).removeprefix("+")
            in_flight = [
                v.request_id
                for v in self._verifications.values()
                if v.api == "legacy" and v.state == "in_progress" and number in v.destinations
            ]
            reply.body["request_id"] = in_flight[-1] if in_flight else uuid.uuid4().hex
        elif status == "7":
            reply.body["network"] = "244523"
        return reply

    # -- shared state ----------------------------------------------------------------------

    def _refresh(self, verification: _Verification) -> None:
        if verification.state == "in_progress" and self.now() >= verification.expires_at:
            verification.state = "expired"
            verification.finalized_at = verification.expires_at

    def _live(self, request_id: str, api: str) -> _Verification | None:
        verification = self._verifications.get(request_id)
        if verification is None or verification.api != api:
            return None
        self._refresh(verification)
        return verification if verification.state == "in_progress" else None

    def _finish(self, verification: _Verification, state: str) -> None:
        verification.state = state
        verification.finalized_at = self.now()

    def _deliver(self, verification: _Verification) -> None:
        channel, to = verification.steps[verification.step]
        verification.events.append((secrets.token_hex(8).upper(), channel, self.now()))
        if channel != "silent_auth":  # silent auth checks the SIM; no code is sent
            self.deliveries.append(
                Delivery(verification.request_id, to, channel, verification.code)
            )


# -- HTTP plumbing ---------------------------------------------------------------------------


class _Server(TrackedServer):
    """TLS is negotiated in each connection's thread, not in the accept loop."""

    def __init__(
        self, address: tuple[str, int], emulator: VonageEmulator, context: ssl.SSLContext
    ) -> None:
        self.emulator = emulator
        self.context = context
        super().__init__(address, _Handler)

    def wrap(self, conn: socket.socket) -> socket.socket:
        return self.context.wrap_socket(conn, server_side=True)


class _Handler(JsonHandler):
    server_version = "vonage-emulator"

    def answer(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any, str] | None:
        reply = cast(_Server, self.server).emulator._handle(method, target, headers, raw)
        return None if reply.drop else (reply.status, reply.body, reply.content_type)


_tls_guard = threading.Lock()
_tls_cache: tuple[str, ssl.SSLContext] | None = None


def _tls_material() -> tuple[str, ssl.SSLContext]:
    """(CA bundle path, server context), made once per process."""
    global _tls_cache
    with _tls_guard:
        if _tls_cache is None:
            ca = trustme.CA()
            leaf = ca.issue_cert("127.0.0.1", "localhost")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            leaf.configure_cert(context)
            fd, path = tempfile.mkstemp(prefix="vonage-emulator-ca-", suffix=".pem")
            os.close(fd)
            ca.cert_pem.write_to_path(path)
            atexit.register(_unlink_quietly, path)
            _tls_cache = (path, context)
        return _tls_cache


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


# -- parsing and validation -----------------------------------------------------------------


def _parse_body(content_type: str, raw: bytes, query: str) -> tuple[dict[str, Any], str | None]:
    """The request's parameters and, for a body that is not what it claims, why."""
    params: dict[str, Any] = _form(query)
    if not raw:
        return params, None
    if "json" in content_type:
        try:
            parsed = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return params, f"malformed JSON: {exc}"
        if not isinstance(parsed, dict):
            return params, "the body must be a JSON object"
        return {**params, **parsed}, None
    try:
        params.update(_form(raw.decode()))
    except UnicodeDecodeError:
        return params, "the body is not UTF-8"
    return params, None


def _form(text: str) -> dict[str, Any]:
    return {
        k: v[0] if len(v) == 1 else v for k, v in parse_qs(text, keep_blank_values=True).items()
    }


def _auth_scheme(header: str, body: dict[str, Any]) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return "jwt", value.strip()
    if scheme.lower() == "basic" and value:
        try:
            return "basic", base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "basic", ""
    if "api_key" in body or "api_secret" in body:
        return "body", ""
    return "none", ""


def _redact(body: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if k == "api_secret" else v) for k, v in body.items()}


def _validate_v2_start(body: dict[str, Any]) -> list[tuple[str, str]]:
    """invalid_parameters for a start request, per the spec's VerificationRequest schema."""
    errors: list[tuple[str, str]] = [
        (k, "Unknown parameter") for k in sorted(body) if k not in _V2_TOP_LEVEL
    ]
    brand = body.get("brand")
    if brand is None:
        errors.append(("brand", "Brand is required"))
    elif not isinstance(brand, str) or not 1 <= len(brand) <= 18:
        errors.append(("brand", "Brand must be a string of 1 to 18 characters"))
    elif _BRAND_FORBIDDEN.search(brand):
        errors.append(("brand", "Brand contains forbidden characters"))
    if "locale" in body and not isinstance(body["locale"], str):
        errors.append(("locale", "Locale must be a string"))
    if "channel_timeout" in body and not _is_int_in(body["channel_timeout"], 15, 900):
        errors.append(("channel_timeout", "Channel timeout must be an integer from 15 to 900"))
    if "code_length" in body and not _is_int_in(body["code_length"], 4, 10):
        errors.append(("code_length", "Code length must be an integer from 4 to 10"))
    if "client_ref" in body and not (
        isinstance(body["client_ref"], str) and _CLIENT_REF.match(body["client_ref"])
    ):
        errors.append(("client_ref", "Client ref must be 1 to 40 alphanumeric characters"))
    if "code" in body and not (isinstance(body["code"], str) and _CUSTOM_CODE.match(body["code"])):
        errors.append(("code", "Code must be 4 to 10 alphanumeric characters"))
    if "template_id" in body and not isinstance(body["template_id"], str):
        errors.append(("template_id", "Template id must be a string"))
    if "fraud_check" in body and not isinstance(body["fraud_check"], bool):
        errors.append(("fraud_check", "Fraud check must be a boolean"))
    workflow = body.get("workflow")
    if workflow is None:
        errors.append(("workflow", "Workflow is required"))
    elif not isinstance(workflow, list) or not 1 <= len(workflow) <= 3:
        errors.append(("workflow", "Workflow must be a list of 1 to 3 channels"))
    else:
        for index, item in enumerate(workflow):
            errors.extend(_validate_channel(f"workflow[{index}]", item, first=index == 0))
    return errors


def _validate_channel(name: str, item: Any, *, first: bool) -> list[tuple[str, str]]:
    if not isinstance(item, dict):
        return [(name, "Each workflow entry must be an object")]
    channel = item.get("channel")
    if channel not in _V2_CHANNELS:
        return [(f"{name}.channel", f"Channel must be one of {sorted(_V2_CHANNELS)}")]
    kind, required = _V2_CHANNELS[str(channel)]
    errors = [(f"{name}.{k}", f"{k} is required") for k in sorted(required) if k not in item]
    to = item.get("to")
    if "to" in item:
        if kind == "phone" and not (isinstance(to, str) and _E164.match(to)):
            errors.append((f"{name}.to", "Must be an E.164 number without a leading + or 00"))
        if kind == "email" and not (isinstance(to, str) and "@" in to):
            errors.append((f"{name}.to", "Must be an email address"))
    if "from" in item and not (isinstance(item["from"], str) and 1 <= len(item["from"]) <= 50):
        errors.append((f"{name}.from", "Invalid sender"))
    if channel == "silent_auth" and not first:
        errors.append((f"{name}.channel", "Silent auth must be the first channel"))
    return errors


def _is_int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _int_in(value: Any, low: int, high: int) -> bool:
    text = _str(value)
    return text.isdigit() and low <= int(text) <= high


def _str(value: Any) -> str:
    """A form value as text (a repeated form key counts as its last value)."""
    if isinstance(value, list):
        value = value[-1] if value else ""
    return "" if value is None else str(value)


def _digits(length: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(length))


def _destination_key(to: str) -> str:
    to = to.strip()
    return to if "@" in to else re.sub(r"\D", "", to)


def _legacy_time(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when))


# -- answers ---------------------------------------------------------------------------------


def _problem(status: int, title: str, type_: str, detail: str) -> _Reply:
    """An RFC 7807 body, as every v2 error in the spec is."""
    return _Reply(
        status,
        {"title": title, "type": type_, "detail": detail, "instance": str(uuid.uuid4())},
        "application/problem+json",
    )


def _unauthorised(detail: str) -> _Reply:
    return _problem(401, "Unauthorized", f"{_DOCS}#unauthorized", detail)


def _not_found(detail: str) -> _Reply:
    return _problem(404, "Not Found", f"{_DOCS}/verify-v2#request-not-found", detail)


def _v2_gone_or_unknown(request_id: str) -> _Reply:
    return _not_found(f"Request '{request_id}' was not found or it has been verified already.")


def _too_many() -> _Reply:
    return _problem(
        410,
        "Invalid Code",
        f"{_DOCS}/verify-v2#expired",
        "An incorrect code has been provided too many times. Workflow terminated.",
    )


def _invalid_params(errors: list[tuple[str, str]]) -> _Reply:
    reply = _problem(
        422,
        "Invalid params",
        f"{_DOCS}#invalid-params",
        "The value of one or more parameters is invalid.",
    )
    reply.body["invalid_parameters"] = [{"name": n, "reason": r} for n, r in errors]
    return reply


def _legacy_error(status: str, text: str | None = None) -> _Reply:
    body = {"status": status, "error_text": text or _LEGACY_TEXTS.get(status, "Error")}
    return _Reply(200, body)  # v1 reports every business error inside an HTTP 200


def _fault_reply(status: int, *, legacy: bool) -> _Reply:
    if status == 429:
        return _problem(
            429, "Rate Limit Hit", f"{_DOCS}#throttled", "Please wait, then retry your request"
        )
    if legacy:
        return _Reply(status, {"status": "5", "error_text": "Internal Error"})
    if status == 503:
        return _problem(
            503,
            "Service Unavailable",
            f"{_DOCS}#service-unavailable",
            "The service is temporarily unavailable. Please retry later.",
        )
    return _problem(
        500,
        "Internal error",
        f"{_DOCS}#internal-error",
        "There was an error processing your request in the Platform.",
    )
