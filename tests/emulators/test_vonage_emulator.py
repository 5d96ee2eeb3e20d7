"""The Vonage Verify emulator, driven by the real ``vonage`` SDK (4.9.1) over HTTPS.

TLS: ``monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_bundle)`` is all the SDK needs; requests
reads it per request because the SDK's session keeps ``trust_env``. ``test_tls_trust_*`` proves
it both ways. v2 responses are checked against the official spec
(``/work/shared/specs/vonage-verify-v2.openapi.json``) by the small validator at the bottom
(``jsonschema`` is not installed in the venv, and no dependency is added for it).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import trustme
import vonage_verify_legacy as legacy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client.errors import (
    AuthenticationError,
    HttpRequestError,
    NotFoundError,
    RateLimitedError,
    ServerError,
)
from vonage_verify import SmsChannel, VerifyRequest, VoiceChannel
from vonage_verify_legacy.errors import VerifyError

from tests.emulators.specs import find_specs, spec_missing
from tests.emulators.vonage import VonageEmulator

APP_ID = "5c1e7a52-1f4e-4b7e-9a3c-0d4a2f6b8e91"
API_KEY = "a1b2c3d4"
API_SECRET = "S3cretS3cret0001"
NUMBER = "447700900123"
OTHER = "447700900456"


SPECS = find_specs("vonage-verify-v2.openapi.json")
_spec_missing = spec_missing


# -- fixtures ---------------------------------------------------------------------------------


def _keypair() -> tuple[str, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,  # the SDK refuses PKCS#1
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.fixture(scope="module")
def keys() -> tuple[str, bytes]:
    return _keypair()


@pytest.fixture(scope="module")
def stranger_key() -> str:
    return _keypair()[0]


@pytest.fixture
def emu(keys: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch) -> Iterator[VonageEmulator]:
    with VonageEmulator(
        application_id=APP_ID, public_key_pem=keys[1], api_key=API_KEY, api_secret=API_SECRET
    ) as emulator:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_bundle)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield emulator
    assert emulator.internal_errors == []


def _client(emu: VonageEmulator, auth: Auth, timeout: int = 5) -> Vonage:
    return Vonage(auth, HttpClientOptions(api_host=emu.host, timeout=timeout))


@pytest.fixture
def v2(emu: VonageEmulator, keys: tuple[str, bytes]) -> Vonage:
    return _client(emu, Auth(application_id=APP_ID, private_key=keys[0]))


@pytest.fixture
def v1(emu: VonageEmulator) -> Vonage:
    # A separate client: v2 and legacy calls on one client share a mutable headers dict.
    return _client(emu, Auth(api_key=API_KEY, api_secret=API_SECRET))


def start(client: Vonage, *channels: Any, **options: Any) -> str:
    workflow = list(channels) or [SmsChannel(to=NUMBER)]
    request = VerifyRequest(brand="Acme", workflow=workflow, **options)
    return str(client.verify.start_verification(request).request_id)


def start_legacy(client: Vonage, number: str = NUMBER, **options: Any) -> str:
    request = legacy.VerifyRequest(number=number, brand="Acme", **options)
    return str(client.verify_legacy.start_verification(request).request_id)


def http_error(call: Callable[[], object]) -> requests.Response:
    with pytest.raises(HttpRequestError) as caught:
        call()
    response: requests.Response = caught.value.response
    return response


def legacy_status(call: Callable[[], object]) -> str:
    """The SDK hides a non-zero v1 status inside VerifyError's message."""
    with pytest.raises(VerifyError) as caught:
        call()
    found = re.search(r"'status': '(\d+)'", str(caught.value))
    assert found, str(caught.value)
    return found.group(1)


def token(private_key: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {"application_id": APP_ID, "iat": now, "jti": str(uuid.uuid4()), "exp": now + 900}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, private_key, "RS256")


def raw_v2(
    emu: VonageEmulator, path: str, body: Any, bearer: str | None, method: str = "POST"
) -> requests.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return requests.request(
        method, f"https://{emu.host}{path}", json=body, headers=headers, timeout=5
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# -- transport --------------------------------------------------------------------------------


def test_tls_trust_comes_from_requests_ca_bundle(
    emu: VonageEmulator, v2: Vonage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stranger_ca = tmp_path / "another-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger_ca))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stranger_ca))
    with pytest.raises(requests.exceptions.SSLError):
        start(v2)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_bundle)
    assert start(v2)


def test_stop_is_quick_even_with_idle_keepalive_connections(
    keys: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = VonageEmulator(
        application_id=APP_ID, public_key_pem=keys[1], api_key=API_KEY, api_secret=API_SECRET
    )
    began = time.monotonic()
    emu.start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_bundle)
    session = requests.Session()  # keeps its connection open after the answer
    assert session.get(f"https://{emu.host}/nowhere", timeout=5).status_code == 404
    emu.stop()
    assert time.monotonic() - began < 1.0
    assert not [t for t in threading.enumerate() if t.name.startswith("vonage-emulator")]
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"https://{emu.host}/nowhere", timeout=1)


def test_unknown_path_is_404(emu: VonageEmulator) -> None:
    answer = requests.post(f"https://{emu.host}/v3/verify", json={}, timeout=5)
    assert answer.status_code == 404
    assert emu.calls[-1].status == 404
    assert emu.calls[-1].auth == "none"


# -- v2: the happy path and codes --------------------------------------------------------------


def test_v2_start_and_check_the_right_code(emu: VonageEmulator, v2: Vonage) -> None:
    request_id = start(v2)
    assert uuid.UUID(request_id).version == 4
    codes = emu.codes_sent_to("+" + NUMBER)
    assert len(codes) == 1
    assert re.fullmatch(r"\d{4}", codes[0])  # the spec's default code_length
    result = v2.verify.check_code(request_id, codes[0])
    assert (result.request_id, result.status) == (request_id, "completed")
    assert [(c.method, c.path, c.auth, c.status) for c in emu.calls] == [
        ("POST", "/v2/verify", "jwt", 202),
        ("POST", f"/v2/verify/{request_id}", "jwt", 200),
    ]
    assert emu.calls[0].body == {"brand": "Acme", "workflow": [{"to": NUMBER, "channel": "sms"}]}
    assert emu.calls[1].body == {"code": codes[0]}
    assert emu.status_of(request_id) == "completed"
    # a finished request is "unknown or finished": 404, and the number is free again
    assert http_error(lambda: v2.verify.check_code(request_id, codes[0])).status_code == 404
    assert start(v2) != request_id


def test_v2_code_length_is_honoured(emu: VonageEmulator, v2: Vonage) -> None:
    start(v2, code_length=7)
    assert re.fullmatch(r"\d{7}", emu.last_code(NUMBER))


def test_last_code_without_any_code_is_an_assertion_error(emu: VonageEmulator) -> None:
    with pytest.raises(AssertionError):
        emu.last_code(NUMBER)


def test_v2_wrong_code_is_400_and_the_right_one_still_works(
    emu: VonageEmulator, v2: Vonage
) -> None:
    request_id = start(v2)
    code = emu.last_code(NUMBER)
    wrong = "0000" if code != "0000" else "1111"
    answer = http_error(lambda: v2.verify.check_code(request_id, wrong))
    assert answer.status_code == 400
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json()["title"] == "Invalid Code"
    assert v2.verify.check_code(request_id, code).status == "completed"


def test_v2_third_wrong_code_terminates_with_410(emu: VonageEmulator, v2: Vonage) -> None:
    request_id = start(v2)
    code = emu.last_code(NUMBER)
    wrong = "0000" if code != "0000" else "1111"
    statuses = [
        http_error(lambda: v2.verify.check_code(request_id, wrong)).status_code for _ in range(3)
    ]
    assert statuses == [400, 400, 410]
    # terminated: even the right code is refused, and the number may start again
    assert http_error(lambda: v2.verify.check_code(request_id, code)).status_code == 410
    assert emu.status_of(request_id) == "failed"
    assert start(v2, SmsChannel(to=NUMBER)) != request_id
    # once its lifetime is over the terminated request is gone: 404
    later = time.time() + emu.code_ttl + 1
    emu.now = lambda: later
    assert http_error(lambda: v2.verify.check_code(request_id, code)).status_code == 404


def test_max_wrong_codes_is_configurable(
    keys: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    with VonageEmulator(
        application_id=APP_ID,
        public_key_pem=keys[1],
        api_key=API_KEY,
        api_secret=API_SECRET,
        max_wrong_codes=1,
    ) as emu:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_bundle)
        client = _client(emu, Auth(application_id=APP_ID, private_key=keys[0]))
        request_id = start(client)
        wrong = "0000" if emu.last_code(NUMBER) != "0000" else "1111"
        assert http_error(lambda: client.verify.check_code(request_id, wrong)).status_code == 410


def test_v2_expired_request_is_404_and_frees_the_number(emu: VonageEmulator, v2: Vonage) -> None:
    first = start(v2)
    emu.expire(first)
    assert http_error(lambda: v2.verify.check_code(first, emu.last_code(NUMBER))).status_code == 404
    second = start(v2)  # no 409: the expired request is no longer in flight
    code = emu.last_code(NUMBER)
    later = time.time() + emu.code_ttl + 1  # now by the clock instead of expire()
    emu.now = lambda: later
    assert http_error(lambda: v2.verify.check_code(second, code)).status_code == 404
    assert emu.status_of(second) == "expired"


def test_v2_unknown_request_is_404_everywhere(v2: Vonage) -> None:
    unknown = str(uuid.uuid4())
    with pytest.raises(NotFoundError):
        v2.verify.check_code(unknown, "1234")
    with pytest.raises(NotFoundError):
        v2.verify.trigger_next_workflow(unknown)
    with pytest.raises(NotFoundError):
        v2.verify.cancel_verification(unknown)


def test_v2_concurrent_start_is_409_with_the_in_flight_request_id(
    emu: VonageEmulator, v2: Vonage
) -> None:
    first = start(v2)
    answer = http_error(lambda: start(v2))
    assert answer.status_code == 409
    assert answer.json()["request_id"] == first
    assert len(emu.codes_sent_to(NUMBER)) == 1
    # a later channel to the same number conflicts too; another number does not
    clash = http_error(lambda: start(v2, SmsChannel(to=OTHER), VoiceChannel(to=NUMBER)))
    assert clash.json()["request_id"] == first
    assert start(v2, SmsChannel(to=OTHER)) != first


def test_v2_next_workflow_resends_the_same_code(emu: VonageEmulator, v2: Vonage) -> None:
    request_id = start(v2, SmsChannel(to=NUMBER), VoiceChannel(to=NUMBER))
    v2.verify.trigger_next_workflow(request_id)
    assert emu.calls[-1].status == 200
    codes = emu.codes_sent_to(NUMBER)
    assert codes == [codes[0]] * 2
    assert [d.channel for d in emu.deliveries] == ["sms", "voice"]
    # no channel left: 409 (spec: ErrorResponse409NextWorkflow)
    assert http_error(lambda: v2.verify.trigger_next_workflow(request_id)).status_code == 409
    assert v2.verify.check_code(request_id, codes[-1]).status == "completed"


def test_v2_cancel(emu: VonageEmulator, v2: Vonage) -> None:
    request_id = start(v2)
    assert v2.verify.cancel_verification(request_id) is None
    assert emu.calls[-1].status == 204
    assert emu.status_of(request_id) == "cancelled"
    assert (
        http_error(lambda: v2.verify.check_code(request_id, emu.last_code(NUMBER))).status_code
        == 404
    )
    assert http_error(lambda: v2.verify.cancel_verification(request_id)).status_code == 404
    assert start(v2) != request_id


# -- v2: authentication and validation ---------------------------------------------------------


def test_v2_refuses_a_jwt_signed_with_another_key(emu: VonageEmulator, stranger_key: str) -> None:
    intruder = _client(emu, Auth(application_id=APP_ID, private_key=stranger_key))
    with pytest.raises(AuthenticationError) as caught:
        start(intruder)
    assert caught.value.response.status_code == 401
    assert emu.request_ids_to(NUMBER) == []
    assert emu.codes_sent_to(NUMBER) == []


def test_v2_refuses_an_expired_jwt(
    emu: VonageEmulator, v2: Vonage, keys: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = v2.http_client.auth
    past = int(time.time()) - 3600
    monkeypatch.setattr(
        auth,
        "create_jwt_auth_string",
        lambda: b"Bearer " + (auth.generate_application_jwt({"iat": past, "exp": past + 900})),
    )
    with pytest.raises(AuthenticationError) as caught:
        start(v2)
    assert "expired" in caught.value.response.json()["detail"]
    assert emu.request_ids_to(NUMBER) == []


@pytest.mark.parametrize(
    "claims",
    [
        {"application_id": "someone-else"},
        {"jti": None},
        {"iat": None},
        {"exp": None},
        {"application_id": None},
    ],
    ids=["other-app", "no-jti", "no-iat", "no-exp", "no-app"],
)
def test_v2_requires_every_jwt_claim(
    emu: VonageEmulator, keys: tuple[str, bytes], claims: dict[str, Any]
) -> None:
    body = {"brand": "Acme", "workflow": [{"channel": "sms", "to": NUMBER}]}
    assert raw_v2(emu, "/v2/verify", body, token(keys[0], **claims)).status_code == 401
    assert raw_v2(emu, "/v2/verify", body, token(keys[0])).status_code == 202  # control


def test_v2_without_credentials_or_with_hs256_is_401(emu: VonageEmulator) -> None:
    body = {"brand": "Acme", "workflow": [{"channel": "sms", "to": NUMBER}]}
    assert raw_v2(emu, "/v2/verify", body, None).status_code == 401
    forged = jwt.encode(
        {
            "application_id": APP_ID,
            "iat": int(time.time()),
            "jti": "x",
            "exp": int(time.time()) + 60,
        },
        "guess" * 8,
        "HS256",
    )
    assert raw_v2(emu, "/v2/verify", body, forged).status_code == 401
    assert emu.codes_sent_to(NUMBER) == []


def test_v2_accepts_basic_auth_as_the_spec_allows(emu: VonageEmulator) -> None:
    # Without an application_id the SDK itself falls back to Basic auth for v2.
    client = _client(emu, Auth(api_key=API_KEY, api_secret=API_SECRET))
    request_id = start(client)
    assert emu.calls[-1].auth == "basic"
    assert client.verify.check_code(request_id, emu.last_code(NUMBER)).status == "completed"
    wrong = _client(emu, Auth(api_key=API_KEY, api_secret="not-the-secret"))
    with pytest.raises(AuthenticationError):
        start(wrong, SmsChannel(to=OTHER))


@pytest.mark.parametrize(
    ("body", "bad"),
    [
        (
            {"brand": "Acme", "workflow": [{"channel": "sms", "to": NUMBER}], "colour": "red"},
            "colour",
        ),
        ({"brand": "Acme", "workflow": [{"channel": "sms", "to": "+" + NUMBER}]}, "workflow[0].to"),
        (
            {"brand": "Acme", "workflow": [{"channel": "sms", "to": "07700900123"}]},
            "workflow[0].to",
        ),
        ({"workflow": [{"channel": "sms", "to": NUMBER}]}, "brand"),
        ({"brand": "Acme", "workflow": []}, "workflow"),
        ({"brand": "Acme", "workflow": [{"channel": "fax", "to": NUMBER}]}, "workflow[0].channel"),
        (
            {"brand": "Acme", "workflow": [{"channel": "whatsapp", "to": NUMBER}]},
            "workflow[0].from",
        ),
        (
            {"brand": "Acme", "code_length": 3, "workflow": [{"channel": "sms", "to": NUMBER}]},
            "code_length",
        ),
        (
            {"brand": "Acme", "channel_timeout": 5, "workflow": [{"channel": "sms", "to": NUMBER}]},
            "channel_timeout",
        ),
        ({"brand": "A/B", "workflow": [{"channel": "sms", "to": NUMBER}]}, "brand"),
    ],
    ids=[
        "unknown-property",
        "plus-prefix",
        "national-format",
        "no-brand",
        "empty-workflow",
        "unknown-channel",
        "whatsapp-without-from",
        "code-length",
        "channel-timeout",
        "brand-slash",
    ],
)
def test_v2_start_validation_is_422(
    emu: VonageEmulator, keys: tuple[str, bytes], body: dict[str, Any], bad: str
) -> None:
    answer = raw_v2(emu, "/v2/verify", body, token(keys[0]))
    assert answer.status_code == 422
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert bad in [p["name"] for p in answer.json()["invalid_parameters"]]
    assert emu.deliveries == []


# -- legacy (v1) -------------------------------------------------------------------------------


def test_legacy_start_and_check(emu: VonageEmulator, v1: Vonage) -> None:
    request_id = start_legacy(v1)
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    code = emu.last_code(NUMBER)
    assert re.fullmatch(r"\d{4}", code)
    result = v1.verify_legacy.check_code(request_id, code)
    assert (result.request_id, result.status, result.currency) == (request_id, "0", "EUR")
    assert result.event_id
    assert float(result.price) > 0
    assert [(c.path, c.auth, c.status) for c in emu.calls] == [
        ("/verify/json", "basic", 200),
        ("/verify/check/json", "basic", 200),
    ]
    assert emu.calls[0].body == {"number": NUMBER, "brand": "Acme"}
    assert emu.calls[1].body == {"request_id": request_id, "code": code}
    assert legacy_status(lambda: v1.verify_legacy.check_code(request_id, code)) == "6"


def test_legacy_code_length_six(emu: VonageEmulator, v1: Vonage) -> None:
    start_legacy(v1, code_length=6)
    assert re.fullmatch(r"\d{6}", emu.last_code(NUMBER))
    assert emu.calls[-1].body["code_length"] == "6"  # form values arrive as strings


def test_legacy_wrong_codes_16_then_17_then_6(emu: VonageEmulator, v1: Vonage) -> None:
    request_id = start_legacy(v1)
    code = emu.last_code(NUMBER)
    wrong = "0000" if code != "0000" else "1111"
    statuses = [
        legacy_status(lambda: v1.verify_legacy.check_code(request_id, wrong)) for _ in range(3)
    ]
    assert statuses == ["16", "16", "17"]
    assert legacy_status(lambda: v1.verify_legacy.check_code(request_id, code)) == "6"
    assert {c.status for c in emu.calls} == {200}  # v1 errors travel in HTTP 200


def test_legacy_unknown_and_expired_are_6(emu: VonageEmulator, v1: Vonage) -> None:
    assert legacy_status(lambda: v1.verify_legacy.check_code(uuid.uuid4().hex, "1234")) == "6"
    request_id = start_legacy(v1)
    emu.expire(request_id)
    code = emu.last_code(NUMBER)
    assert legacy_status(lambda: v1.verify_legacy.check_code(request_id, code)) == "6"


def test_legacy_missing_and_invalid_parameters(emu: VonageEmulator) -> None:
    url = f"https://{emu.host}/verify/json"
    auth = (API_KEY, API_SECRET)
    missing = requests.post(url, data={"number": NUMBER}, auth=auth, timeout=5).json()
    assert missing["status"] == "2"
    assert "brand" in missing["error_text"]
    invalid = requests.post(url, data={"number": "12", "brand": "Acme"}, auth=auth, timeout=5)
    assert invalid.json()["status"] == "3"
    bad_length = requests.post(
        url, data={"number": NUMBER, "brand": "Acme", "code_length": "5"}, auth=auth, timeout=5
    )
    assert bad_length.json()["status"] == "3"
    assert emu.deliveries == []


def test_legacy_concurrent_is_10_with_the_in_flight_request_id(
    emu: VonageEmulator, v1: Vonage
) -> None:
    first = start_legacy(v1)
    with pytest.raises(VerifyError) as caught:
        start_legacy(v1)
    assert "'status': '10'" in str(caught.value)
    assert emu.calls[-1].response["request_id"] == first
    assert len(emu.codes_sent_to(NUMBER)) == 1


def test_legacy_control(emu: VonageEmulator, v1: Vonage) -> None:
    request_id = start_legacy(v1)
    triggered = v1.verify_legacy.trigger_next_event(request_id)
    assert (triggered.status, triggered.command) == ("0", "trigger_next_event")
    codes = emu.codes_sent_to(NUMBER)
    assert codes == [codes[0]] * 2
    # after a second event the real API refuses to cancel
    assert legacy_status(lambda: v1.verify_legacy.cancel_verification(request_id)) == "19"

    fresh = start_legacy(v1, number=OTHER)
    cancelled = v1.verify_legacy.cancel_verification(fresh)
    assert (cancelled.status, cancelled.command) == ("0", "cancel")
    assert legacy_status(lambda: v1.verify_legacy.check_code(fresh, emu.last_code(OTHER))) == "6"
    assert legacy_status(lambda: v1.verify_legacy.cancel_verification(fresh)) == "6"

    sms_only = start_legacy(v1, number=OTHER, workflow_id=6)
    assert legacy_status(lambda: v1.verify_legacy.trigger_next_event(sms_only)) == "19"


def test_legacy_cancel_min_age_is_switchable(emu: VonageEmulator, v1: Vonage) -> None:
    emu.legacy_cancel_min_age = 30.0  # the real API's rule
    request_id = start_legacy(v1)
    with pytest.raises(VerifyError, match="first 30 seconds"):
        v1.verify_legacy.cancel_verification(request_id)
    later = time.time() + 31
    emu.now = lambda: later
    assert v1.verify_legacy.cancel_verification(request_id).status == "0"


def test_legacy_bad_credentials_are_status_4_in_http_200(emu: VonageEmulator) -> None:
    intruder = _client(emu, Auth(api_key=API_KEY, api_secret="wrong-secret"))
    assert legacy_status(lambda: start_legacy(intruder)) == "4"
    assert (emu.calls[-1].auth, emu.calls[-1].status) == ("basic", 200)
    assert emu.deliveries == []


def test_legacy_accepts_credentials_in_the_body(emu: VonageEmulator) -> None:
    answer = requests.post(
        f"https://{emu.host}/verify/json",
        timeout=5,
        data={"api_key": API_KEY, "api_secret": API_SECRET, "number": NUMBER, "brand": "Acme"},
    )
    assert answer.json()["status"] == "0"
    assert emu.calls[-1].auth == "body"
    assert emu.calls[-1].body["api_secret"] == "***"  # never echoed into test output


def test_legacy_search(emu: VonageEmulator, v1: Vonage) -> None:
    request_id = start_legacy(v1)
    assert v1.verify_legacy.search(request_id).status == "IN PROGRESS"
    v1.verify_legacy.check_code(request_id, emu.last_code(NUMBER))
    found = v1.verify_legacy.search(request_id)
    assert (found.status, found.number) == ("SUCCESS", NUMBER)
    assert [c.status for c in found.checks] == ["VALID"]
    both = v1.verify_legacy.search([request_id, start_legacy(v1, number=OTHER)])
    assert [s.status for s in both] == ["SUCCESS", "IN PROGRESS"]
    with pytest.raises(VerifyError, match="101"):
        v1.verify_legacy.search(uuid.uuid4().hex)
    assert emu.calls[-1].method == "GET"


# -- injected faults -----------------------------------------------------------------------------


def test_injected_http_errors_on_v2(emu: VonageEmulator, v2: Vonage) -> None:
    emu.inject("500")
    with pytest.raises(ServerError) as server_error:
        start(v2)
    assert server_error.value.response.json()["title"] == "Internal error"
    emu.inject("429")
    with pytest.raises(RateLimitedError):
        start(v2)
    emu.inject("503")
    assert http_error(lambda: start(v2)).status_code == 503
    assert emu.deliveries == []  # a failed answer created nothing
    request_id = start(v2)  # each fault was used once
    assert [c.fault for c in emu.calls] == ["500", "429", "503", None]

    emu.inject("500", path_prefix="/v2/verify/", times=2)  # checks only, not the start
    code = emu.last_code(NUMBER)
    for _ in range(2):
        with pytest.raises(ServerError):
            v2.verify.check_code(request_id, code)
    assert v2.verify.check_code(request_id, code).status == "completed"


def test_injected_http_errors_on_legacy(emu: VonageEmulator, v1: Vonage) -> None:
    emu.inject("500", path_prefix="/verify")
    with pytest.raises(ServerError):
        start_legacy(v1)
    emu.inject("429", path_prefix="/verify")
    with pytest.raises(RateLimitedError):
        start_legacy(v1)
    emu.inject("status:9")
    assert legacy_status(lambda: start_legacy(v1)) == "9"
    assert emu.deliveries == []
    request_id = start_legacy(v1)
    emu.inject("status:4", path_prefix="/verify/check")
    assert legacy_status(lambda: v1.verify_legacy.check_code(request_id, "1234")) == "4"


def test_legacy_only_faults_skip_v2_and_unknown_faults_are_refused(
    emu: VonageEmulator, v2: Vonage, v1: Vonage
) -> None:
    emu.inject("status:9")
    start(v2)  # not consumed by a v2 call
    assert legacy_status(lambda: start_legacy(v1)) == "9"
    with pytest.raises(ValueError, match="unknown fault"):
        emu.inject("502")


def test_injected_timeout(emu: VonageEmulator, keys: tuple[str, bytes]) -> None:
    emu.timeout_delay = 1.3
    slow = _client(emu, Auth(application_id=APP_ID, private_key=keys[0]), timeout=1)
    emu.inject("timeout", path_prefix="/v2/verify")
    with pytest.raises(requests.exceptions.ReadTimeout):
        start(slow)
    assert len(emu.calls) == 1  # the SDK does not re-send after a read timeout
    # the server still did the work after its delay, like a slow real one
    wait_for(lambda: emu.calls[0].status == 202)
    first = emu.calls[0].response["request_id"]
    answer = http_error(lambda: start(slow))
    assert (answer.status_code, answer.json()["request_id"]) == (409, first)
    assert len(emu.codes_sent_to(NUMBER)) == 1


def test_drop_after_v2_the_sdk_resends_and_gets_409_with_the_first_request_id(
    emu: VonageEmulator, v2: Vonage
) -> None:
    emu.inject("drop_after", path_prefix="/v2/verify")
    answer = http_error(lambda: start(v2))
    starts = [c for c in emu.calls if c.path == "/v2/verify"]
    assert [c.status for c in starts] == [0, 409]  # exactly one re-send
    assert starts[0].body == starts[1].body  # the very same request, re-sent
    assert emu.request_ids_to(NUMBER) == [answer.json()["request_id"]]
    assert len(emu.codes_sent_to(NUMBER)) == 1


def test_drop_after_legacy_the_sdk_resends_and_gets_10_with_the_first_request_id(
    emu: VonageEmulator, v1: Vonage
) -> None:
    emu.inject("drop_after", path_prefix="/verify/json")
    assert legacy_status(lambda: start_legacy(v1)) == "10"
    starts = [c for c in emu.calls if c.path == "/verify/json"]
    assert [c.status for c in starts] == [0, 200]
    assert emu.request_ids_to(NUMBER) == [starts[1].response["request_id"]]
    assert len(emu.codes_sent_to(NUMBER)) == 1


def test_the_sdk_gives_up_after_ten_drops(emu: VonageEmulator, v2: Vonage) -> None:
    # Its RemoteDisconnected loop makes pool_maxsize (10) attempts; urllib3 adds none for POST.
    emu.inject("drop_before", times=20)
    with pytest.raises(requests.exceptions.ConnectionError, match="RemoteDisconnected"):
        start(v2)
    assert [c.status for c in emu.calls] == [0] * 10
    assert emu.request_ids_to(NUMBER) == []


def test_drop_before_the_sdk_resends_and_succeeds(emu: VonageEmulator, v2: Vonage) -> None:
    emu.inject("drop_before", path_prefix="/v2/verify")
    request_id = start(v2)
    assert [c.status for c in emu.calls] == [0, 202]
    assert emu.request_ids_to(NUMBER) == [request_id]
    assert len(emu.codes_sent_to(NUMBER)) == 1


# -- every v2 answer against the official spec ---------------------------------------------------


def test_every_v2_response_matches_the_spec(
    emu: VonageEmulator, v2: Vonage, keys: tuple[str, bytes], stranger_key: str
) -> None:
    spec_file = SPECS / "vonage-verify-v2.openapi.json"
    if not spec_file.exists():
        _spec_missing(spec_file)
    spec = json.loads(spec_file.read_text())

    def attempt(call: Callable[[], object]) -> None:
        with contextlib.suppress(HttpRequestError):
            call()

    request_id = start(v2, SmsChannel(to=NUMBER), VoiceChannel(to=NUMBER))
    code = emu.last_code(NUMBER)
    wrong = "0000" if code != "0000" else "1111"
    attempt(lambda: start(v2))  # 409
    v2.verify.trigger_next_workflow(request_id)  # 200, no body
    attempt(lambda: v2.verify.trigger_next_workflow(request_id))  # 409
    for _ in range(3):
        attempt(lambda: v2.verify.check_code(request_id, wrong))  # 400, 400, 410
    attempt(lambda: v2.verify.check_code(str(uuid.uuid4()), code))  # 404
    other = start(v2, SmsChannel(to=OTHER))
    v2.verify.check_code(other, emu.last_code(OTHER))  # 200
    cancelled = start(v2, SmsChannel(to=OTHER))
    v2.verify.cancel_verification(cancelled)  # 204
    attempt(lambda: v2.verify.cancel_verification(cancelled))  # 404
    attempt(lambda: start(_client(emu, Auth(application_id=APP_ID, private_key=stranger_key))))
    raw_v2(
        emu,
        "/v2/verify",
        {"brand": "Acme", "workflow": [{"channel": "sms", "to": "+1"}]},
        token(keys[0]),
    )  # 422
    raw_v2(
        emu,
        "/v2/verify",
        {"brand": "Acme"},
        token(keys[0], iat=int(time.time()) - 999, exp=int(time.time()) - 99),
    )  # 401
    emu.inject("429", path_prefix="/v2/verify", times=1)
    attempt(lambda: start(v2))
    emu.inject("500", path_prefix="/v2/verify", times=1)
    attempt(lambda: start(v2))

    seen: set[int] = set()
    for call in emu.calls:
        operation = _operation(spec, call.method, call.path)
        answers = operation["responses"]
        assert str(call.status) in answers, f"{call.status} undocumented for {call.path}"
        problems = _validate(call.response, _response_schema(spec, answers[str(call.status)]), spec)
        assert problems == [], (call.method, call.path, call.status, call.response)
        seen.add(call.status)
    assert seen >= {200, 202, 204, 400, 401, 404, 409, 410, 422, 429, 500}


def test_the_spec_validator_can_fail() -> None:
    spec_file = SPECS / "vonage-verify-v2.openapi.json"
    if not spec_file.exists():
        _spec_missing(spec_file)
    spec = json.loads(spec_file.read_text())
    check = _operation(spec, "POST", "/v2/verify/x")["responses"]
    assert _validate({"title": "Invalid Code"}, _response_schema(spec, check["400"]), spec)
    assert _validate({"request_id": 5}, _response_schema(spec, check["200"]), spec)
    started = _operation(spec, "POST", "/v2/verify")["responses"]
    assert _validate(None, _response_schema(spec, started["202"]), spec)
    assert _validate({"x": 1}, None, spec)  # a body where the spec has none


def _operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    rest = path.removeprefix("/v2/verify").strip("/").split("/")
    template = {0: "/", 1: "/{request_id}", 2: "/{request_id}/next_workflow"}[
        len([p for p in rest if p])
    ]
    operation: dict[str, Any] = spec["paths"][template][method.lower()]
    return operation


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _response_schema(spec: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any] | None:
    content = _resolve(spec, answer).get("content")
    if not content:
        return None  # e.g. 204, and next_workflow's bare 200
    media = content.get("application/problem+json") or content["application/json"]
    schema: dict[str, Any] = media["schema"]
    return schema


def _validate(
    value: Any, schema: dict[str, Any] | None, spec: dict[str, Any], where: str = "$"
) -> list[str]:
    """The JSON-schema subset the spec uses. Returns problems; [] means valid."""
    if schema is None:
        return [] if value is None else [f"{where}: the spec documents no body"]
    schema = _resolve(spec, schema)
    for keyword in ("oneOf", "anyOf"):
        if keyword in schema:
            # "at least one": the spec's 409 next_workflow alternatives (ErrorConflict and
            # ErrorConflictTriggerNext) are structurally identical, so strict oneOf could
            # never pass there.
            results = [_validate(value, s, spec, where) for s in schema[keyword]]
            if all(results):
                return [f"{where}: matches no {keyword} alternative: {results}"]
    kinds: dict[str, Callable[[Any], bool]] = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    }
    kind = schema.get("type") or ("object" if "properties" in schema else None)
    if kind is not None and not kinds[kind](value):
        return [f"{where}: expected {kind}, got {value!r}"]
    problems: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{where}: shorter than {schema['minLength']}")
        if len(value) > schema.get("maxLength", len(value)):
            problems.append(f"{where}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{where}: does not match {schema['pattern']}")
    if isinstance(value, dict):
        problems += [f"{where}: missing {k}" for k in schema.get("required", []) if k not in value]
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problems += _validate(value[name], sub, spec, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += _validate(item, schema["items"], spec, f"{where}[{index}]")
    return problems
