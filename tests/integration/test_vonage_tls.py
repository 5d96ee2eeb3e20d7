"""The Vonage clients' TLS: one context for all of a client's connections, verification kept."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import certifi
import pytest
import requests
from vonage_http_client import Auth

from bot.verifier._sdk import VonageApis, VonageOptions
from tests.conftest import VONAGE_API_KEY, VONAGE_API_SECRET
from tests.emulators.vonage import VonageEmulator


def _client(vonage: VonageEmulator, *, send_once: bool = False) -> VonageApis:
    options = VonageOptions(brand="Test", api_host=vonage.host, rest_host=vonage.host)
    return options.client(
        Auth(api_key=VONAGE_API_KEY, api_secret=VONAGE_API_SECRET), send_once=send_once
    )


def _get_at_once(session: requests.Session, url: str, times: int) -> list[int]:
    with ThreadPoolExecutor(times) as threads:
        return list(threads.map(lambda _: session.get(url, timeout=10).status_code, range(times)))


@pytest.mark.parametrize("send_once", [False, True])
def test_a_clients_connections_share_one_tls_context(
    vonage: VonageEmulator, send_once: bool
) -> None:
    session = _client(vonage, send_once=send_once).http_client._session
    vonage.inject("timeout", times=8)  # each request holds its connection a while
    vonage.timeout_delay = 0.3
    _get_at_once(session, f"https://{vonage.host}/v2/verify/x", 8)

    pools = session.get_adapter(f"https://{vonage.host}").poolmanager.pools
    # urllib3's container refuses plain iteration (not thread-safe); keys() is a copy
    [pool] = [pools[key] for key in pools.keys()]  # noqa: SIM118
    connections = [c for c in list(pool.pool.queue) if c is not None and c.sock is not None]
    assert len(connections) > 1
    assert len({id(c.sock.context) for c in connections}) == 1
    assert all(c.ca_certs is None for c in connections)  # the bundle is not loaded again


def test_another_client_shares_the_context_too(vonage: VonageEmulator) -> None:
    first = _client(vonage).http_client._session.get_adapter("https://x")
    second = _client(vonage, send_once=True).http_client._session.get_adapter("https://x")
    assert first._tls is second._tls


def test_a_server_the_bundle_does_not_vouch_for_is_refused(
    vonage: VonageEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # not the emulator's CA
    session = _client(vonage).http_client._session
    with pytest.raises(requests.exceptions.SSLError):
        session.get(f"https://{vonage.host}/v2/verify/x", timeout=10)
