"""What the Vonage clients' transport sends and keeps: the same requests as requests' own
``Session.request`` would, over one kept-alive TLS connection per thread."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from vonage_http_client.errors import HttpRequestError
from vonage_verify import SmsChannel, VerifyRequest

from bot.verifier._sdk import SigningAuth, VonageApis, VonageOptions, _ApiSession
from tests.conftest import VONAGE_APP_ID
from tests.emulators.vonage import VonageEmulator


class _Recorder(BaseAdapter):
    """Keeps what a session hands its adapter, and answers nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[requests.PreparedRequest, dict[str, Any]]] = []

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        kwargs = {"stream": stream, "timeout": timeout, "verify": verify, "cert": cert}
        self.sent.append((request, {**kwargs, "proxies": proxies}))
        response = requests.Response()
        response.status_code, response._content, response.request = 200, b"{}", request
        return response

    def close(self) -> None:
        pass


def _prepared(session: requests.Session, **call: Any) -> tuple[Any, ...]:
    recorder = _Recorder()
    session.mount("https://", recorder)
    session.proxies = {"http": "http://proxy.example:3128"}
    session.trust_env = False
    session.request(**call)
    [(request, kwargs)] = recorder.sent
    return request.method, request.url, dict(request.headers), request.body, kwargs


# As vonage-http-client's make_request calls it: JSON (v2), a form and a query (legacy).
_CALLS: list[dict[str, Any]] = [
    {"json": {"brand": "Acme", "workflow": [{"channel": "sms", "to": "447700900123"}]}},
    {"data": {"request_id": "abc", "code": "1234", "api_key": "k", "api_secret": "s"}},
    {"params": {"request_id": "abc", "api_key": "k", "api_secret": "s"}},
]


@pytest.mark.parametrize("body", _CALLS)
def test_the_sdks_requests_are_prepared_as_requests_itself_would(body: dict[str, Any]) -> None:
    call = {
        "method": "POST" if "params" not in body else "GET",
        "url": "https://api.example/v2/verify",
        "headers": {"User-Agent": "vonage-python-sdk", "Authorization": b"Bearer x.y.z"},
        "timeout": 7,
        **body,
    }
    assert _prepared(_ApiSession(), **call) == _prepared(requests.Session(), **call)


def test_other_calls_take_requests_own_path() -> None:
    call = {"method": "GET", "url": "https://api.example/", "allow_redirects": False}
    assert _prepared(_ApiSession(), **call) == _prepared(requests.Session(), **call)


def _v2(vonage: VonageEmulator, vonage_key: Any) -> VonageApis:
    options = VonageOptions(brand="Test", api_host=vonage.host)
    return options.client(SigningAuth(VONAGE_APP_ID, vonage_key), send_once=True)


def test_every_call_goes_over_one_kept_alive_tls_connection(
    vonage: VonageEmulator, vonage_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    handshakes = 0
    server = vonage._server
    assert server is not None
    wrap = server.wrap

    def counted(conn: socket.socket) -> socket.socket:
        nonlocal handshakes
        handshakes += 1
        return wrap(conn)

    monkeypatch.setattr(server, "wrap", counted)
    verify = _v2(vonage, vonage_key).verify
    for n in range(5):
        started = verify.start_verification(
            VerifyRequest(brand="Test", workflow=[SmsChannel(to=f"44770090012{n}")])
        )
        with pytest.raises(HttpRequestError):
            verify.check_code(started.request_id, "0000")
    assert len(vonage.calls) == 10
    assert handshakes == 1


def test_a_json_error_body_is_read_as_utf8_without_guessing(
    vonage: VonageEmulator, vonage_key: Any
) -> None:
    with pytest.raises(HttpRequestError) as raised:
        _v2(vonage, vonage_key).verify.check_code("5a1b6c1e-0000-4000-8000-000000000000", "1")
    response = raised.value.response
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.encoding == "utf-8"
