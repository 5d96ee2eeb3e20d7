"""The Vonage SDK's HTTP, carried by aiohttp on the event loop instead of a worker thread.

The SDK is synchronous: it builds a request, hands it to ``requests``, and parses the
answer. ``run_on_loop`` runs such a call in a greenlet on the event loop's own thread; when
the SDK's session reaches its adapter, ``LoopHttp.send`` passes the prepared request to
aiohttp and switches back to the loop until the answer is in (the bridge SQLAlchemy's
asyncio support is built on). The SDK's validation, models and errors are unchanged.

Why: in a worker thread, each call cost about 1.25 ms of CPU at 200 members in flight
against about 0.7 ms alone, the rest lost to GIL hand-offs between the threads and the
loop, and urllib3 with http.client cost about three times what aiohttp does per request
(bench/README.md, "The Vonage calls on the event loop").
"""

from __future__ import annotations

import contextvars
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import requests
from greenlet import getcurrent, greenlet
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from yarl import URL

T = TypeVar("T")


class _OnLoop(greenlet):
    """A greenlet running an SDK call for ``run_on_loop``; its adapter may wait on the loop."""


class _Wait:
    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable


async def run_on_loop(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on this thread, in a greenlet that ``wait_on_loop`` may suspend.

    A task cancelled while the call waits raises ``CancelledError`` inside the call, so the
    SDK's own ``with`` blocks unwind as they would after an error."""
    runner = _OnLoop(fn)
    runner.gr_context = contextvars.copy_context()
    asked = runner.switch(*args)
    while isinstance(asked, _Wait) and not runner.dead:
        try:
            answer = await asked.awaitable
        except BaseException as exc:  # handed to the call, which decides
            asked = runner.throw(exc)
        else:
            asked = runner.switch(answer)
    return asked  # type: ignore[no-any-return]


def on_loop() -> bool:
    """Whether this code runs inside ``run_on_loop`` (and so may ``wait_on_loop``)."""
    return isinstance(getcurrent(), _OnLoop)


def wait_on_loop(awaitable: Awaitable[T]) -> T:
    """Suspend the ``run_on_loop`` call until ``awaitable`` is done, and return its result."""
    current = getcurrent()
    if not isinstance(current, _OnLoop) or current.parent is None:
        raise RuntimeError("wait_on_loop outside run_on_loop")
    return current.parent.switch(_Wait(awaitable))  # type: ignore[no-any-return]


class NeverSent(requests.ConnectionError):
    """No connection could be opened: nothing reached Vonage."""


class LoopHttp:
    """One aiohttp session for a verifier's clients, opened on first use inside the loop
    that runs the bot (``verifybot.bootstrap.open_app`` builds a verifier per loop).

    At most ``limit`` connections are open at once. ``SdkRunner`` admits no more calls than
    that, so no request waits for a pooled connection inside its connect timeout."""

    def __init__(self, *, limit: int, connect_retries: int) -> None:
        self._limit = limit
        self._connect_retries = connect_retries
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _opened(self) -> aiohttp.ClientSession:
        if self._closed:  # the verifier is shutting down: nothing more goes out
            raise NeverSent("Vonage request not sent: the verifier is closed")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                # requests decompresses, and the SDK's headers are all sent as they are
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session

    def send(
        self, request: requests.PreparedRequest, timeout: Any, tls: ssl.SSLContext
    ) -> requests.Response:
        """Called by the adapter inside ``run_on_loop``."""
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        # sock_connect times the TCP and TLS handshakes only; connect adds the name lookup
        # (no call waits for a pooled connection: SdkRunner admits no more than the pool).
        limits = aiohttp.ClientTimeout(
            total=None,
            connect=None if connect is None else 2 * connect,
            sock_connect=connect,
            sock_read=read,
        )
        return wait_on_loop(self._send(request, limits, tls))

    async def _send(
        self, request: requests.PreparedRequest, limits: aiohttp.ClientTimeout, tls: ssl.SSLContext
    ) -> requests.Response:
        body = request.body.encode() if isinstance(request.body, str) else request.body
        method, url = request.method or "GET", request.url or ""
        session = self._opened()  # before the try: requests' errors are OSErrors too
        for attempt in range(self._connect_retries + 1):
            try:
                async with session.request(
                    method,
                    URL(url, encoded=True),
                    headers=_as_text(request.headers),
                    data=body,
                    timeout=limits,
                    ssl=tls,
                    allow_redirects=False,
                ) as answer:
                    content = await answer.read()
                    return _response(request, answer, content)
            # Only the kind of failure is named: aiohttp's own texts can carry the URL with
            # its query, which the SDK fills with whatever a call sends as query parameters.
            except aiohttp.ClientConnectorCertificateError as exc:
                raise requests.exceptions.SSLError(_failed(exc), request=request) from None
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                if attempt == self._connect_retries:
                    if isinstance(exc, aiohttp.ConnectionTimeoutError):
                        raise requests.ConnectTimeout(_failed(exc), request=request) from None
                    raise NeverSent(_failed(exc), request=request) from None
            except aiohttp.SocketTimeoutError as exc:
                raise requests.ReadTimeout(_failed(exc), request=request) from None
            except (aiohttp.ClientError, OSError) as exc:
                raise requests.ConnectionError(_failed(exc), request=request) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()


def _failed(exc: BaseException) -> str:
    errno = getattr(exc, "errno", None)
    return f"Vonage request failed: {type(exc).__name__}" + (f" (errno {errno})" if errno else "")


def _as_text(headers: Any) -> dict[str, str]:
    """Header values as aiohttp takes them: text. ``http.client`` sends bytes as they are
    and text as Latin-1, so bytes are read back as Latin-1 (the SDK's ``Authorization``)."""
    return {
        name: value.decode("latin-1") if isinstance(value, bytes) else value
        for name, value in headers.items()
    }


def _response(
    request: requests.PreparedRequest, answer: aiohttp.ClientResponse, content: bytes
) -> requests.Response:
    response = requests.Response()
    response.status_code = answer.status
    response.reason = answer.reason or ""
    response.headers = CaseInsensitiveDict(answer.headers)
    response._content = content
    response._content_consumed = True  # type: ignore[attr-defined]
    response.url = request.url or ""
    response.request = request
    response.encoding = get_encoding_from_headers(response.headers)
    return response
