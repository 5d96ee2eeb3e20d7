"""The Vonage SDK's calls run on the event loop (bot/verifier/_loop_http.py): no worker
thread, a loop that keeps serving others while Vonage is slow, the concurrency bound kept,
and failures that are classified as before and name no URL. The real SDK against the
TLS emulator."""

from __future__ import annotations

import asyncio
import threading
import traceback
from asyncio import sslproto
from collections.abc import AsyncIterator, Callable
from typing import Any

import certifi
import pytest
import requests
from vonage_http_client import Auth
from vonage_http_client.errors import HttpRequestError

from bot.flow import CodeAccepted, CodeRejected, Failure, StartFailed, VerificationStarted
from bot.settings import Settings
from bot.verifier._loop_http import LoopHttp, run_on_loop, wait_on_loop
from bot.verifier._sdk import SigningAuth, VonageApis, VonageOptions
from bot.verifier.base import Verifier
from tests.conftest import VONAGE_API_KEY, VONAGE_API_SECRET, VONAGE_APP_ID
from tests.emulators.vonage import VonageEmulator
from verifybot.bootstrap import build_verifier
from verifybot.cli import TLS_READ_BUFFER, run_async

PHONES = [f"+4474001234{n:02d}" for n in range(6)]


def in_progress(vonage: VonageEmulator) -> int:
    return sum(1 for call in list(vonage.calls) if call.status == 0)


def digits(phone: str) -> str:
    return phone.removeprefix("+")


async def test_a_verification_starts_no_worker_thread(v2: Verifier, vonage: VonageEmulator) -> None:
    running = set(threading.enumerate())
    started = await v2.start(PHONES[0])
    assert isinstance(started, VerificationStarted)
    assert await v2.check(started.request_id, "000000") == CodeRejected()
    code = vonage.last_code(digits(PHONES[0]))
    assert await v2.check(started.request_id, code) == CodeAccepted()
    started_since = set(threading.enumerate()) - running
    assert [t.name for t in started_since if t.name.startswith("verify-v2")] == []


async def test_the_loop_serves_others_while_vonage_is_slow(
    v2: Verifier, vonage: VonageEmulator
) -> None:
    vonage.timeout_delay = 1.0
    vonage.inject("timeout", path_prefix="/v2/verify")  # only the first start is slow
    slow = asyncio.create_task(v2.start(PHONES[0]))
    await asyncio.sleep(0.05)
    fast = asyncio.create_task(v2.start(PHONES[1]))
    done, _ = await asyncio.wait({slow, fast}, return_when=asyncio.FIRST_COMPLETED)
    assert done == {fast}
    assert isinstance(fast.result(), VerificationStarted)
    assert isinstance(await slow, VerificationStarted)


async def test_no_more_calls_are_in_flight_than_the_concurrency_allows(
    vonage_settings: Callable[..., Settings], vonage: VonageEmulator
) -> None:
    verifier = build_verifier(vonage_settings(vonage_max_concurrency=2))
    vonage.timeout_delay = 0.3
    vonage.inject("timeout", times=len(PHONES))
    try:
        starts = asyncio.gather(*(verifier.start(phone) for phone in PHONES))
        most = 0
        while not starts.done():
            most = max(most, in_progress(vonage))
            await asyncio.sleep(0.02)
        assert all(isinstance(outcome, VerificationStarted) for outcome in await starts)
    finally:
        await verifier.aclose()
    assert most == 2
    assert len(vonage.calls) == len(PHONES)


async def test_a_cancelled_call_gives_back_its_place(
    vonage_settings: Callable[..., Settings], vonage: VonageEmulator
) -> None:
    verifier = build_verifier(vonage_settings(vonage_max_concurrency=1))
    vonage.timeout_delay = 1.0
    vonage.inject("timeout")
    try:
        stuck = asyncio.create_task(verifier.start(PHONES[0]))
        for _ in range(500):  # until the emulator holds it
            if in_progress(vonage):
                break
            await asyncio.sleep(0.01)
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        # the one place is free again, and the client's connections still work
        assert isinstance(await verifier.start(PHONES[1]), VerificationStarted)
    finally:
        await verifier.aclose()


async def test_a_server_the_bundle_does_not_vouch_for_is_refused_and_never_sent(
    vonage_settings: Callable[..., Settings],
    vonage: VonageEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # not the emulator's CA
    verifier = build_verifier(vonage_settings())
    try:
        assert await verifier.start(PHONES[0]) == StartFailed(Failure.UNAVAILABLE)
    finally:
        await verifier.aclose()
    assert vonage.calls == []


@pytest.fixture
async def loop_http() -> AsyncIterator[LoopHttp]:
    carrier = LoopHttp(limit=2, connect_retries=1)
    yield carrier
    await carrier.aclose()


def _client(vonage: VonageEmulator, auth: Auth, loop_http: LoopHttp) -> VonageApis:
    options = VonageOptions(brand="Test", api_host=vonage.host, rest_host=vonage.host)
    return options.client(auth, loop_http=loop_http)


async def test_a_json_error_body_is_read_as_utf8_without_guessing(
    vonage: VonageEmulator, vonage_key: Any, loop_http: LoopHttp
) -> None:
    client = _client(vonage, SigningAuth(VONAGE_APP_ID, vonage_key), loop_http)
    assert client.on_loop
    with pytest.raises(HttpRequestError) as raised:
        await run_on_loop(client.verify.check_code, "5a1b6c1e-0000-4000-8000-000000000000", "1")
    response = raised.value.response
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.encoding == "utf-8"


async def test_a_failure_names_neither_the_url_nor_a_secret(
    vonage: VonageEmulator, loop_http: LoopHttp
) -> None:
    # a legacy search's query string carries the request id
    client = _client(vonage, Auth(api_key=VONAGE_API_KEY, api_secret=VONAGE_API_SECRET), loop_http)
    vonage.stop()  # nothing listens
    with pytest.raises(requests.ConnectionError) as raised:
        await run_on_loop(client.verify_legacy.search, "abcdef0123456789abcdef0123456789")
    told = "".join(traceback.format_exception(raised.value))
    assert "Vonage request failed: ClientConnectorError" in told
    assert VONAGE_API_SECRET not in told
    assert "/verify/search" not in told


async def test_a_closed_verifier_sends_nothing_more(
    vonage_settings: Callable[..., Settings], vonage: VonageEmulator
) -> None:
    verifier = build_verifier(vonage_settings())
    await verifier.aclose()  # as at shutdown, with a member's turn still running
    assert await verifier.start(PHONES[0]) == StartFailed(Failure.UNAVAILABLE)
    assert vonage.calls == []


def test_a_proxy_in_the_environment_keeps_requests_own_path(
    vonage: VonageEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:3128")
    auth = Auth(api_key=VONAGE_API_KEY, api_secret=VONAGE_API_SECRET)
    client = _client(vonage, auth, LoopHttp(limit=2, connect_retries=1))
    assert not client.on_loop  # aiohttp is not told about it: requests, in a thread, uses it


def test_the_bots_tls_reads_use_a_small_buffer_and_still_verify(
    vonage_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", 256 * 1024)  # asyncio's; restored after
    outcomes: list[object] = []

    async def start() -> None:
        verifier = build_verifier(vonage_settings())
        try:
            outcomes.append(await verifier.start(PHONES[0]))
        finally:
            await verifier.aclose()

    run_async(start)  # as every verifybot command that runs the bot
    assert sslproto.SSLProtocol.max_size == TLS_READ_BUFFER == 32 * 1024
    assert [type(outcome) for outcome in outcomes] == [VerificationStarted]


def test_waiting_on_the_loop_outside_a_call_is_refused() -> None:
    async def nothing() -> None:
        return None

    awaitable = nothing()
    with pytest.raises(RuntimeError, match="outside run_on_loop"):
        wait_on_loop(awaitable)
    awaitable.close()
