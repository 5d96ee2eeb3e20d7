"""Bot API calls over aiohttp, for the running bot.

PTB's own ``HTTPXRequest`` spends most of a busy bot's CPU in httpcore's connection pool,
which polls every pooled socket on every request (DEPENDENCY-NOTES; encode/httpcore#924). A
raid keeps dozens of calls in flight at once, so that cost grows with the raid: profiled with
py-spy at 30 joins/s and 100 ms per call, the pool scan was over a third of the event loop's
time. aiohttp's connector hands out a free connection without scanning the others. PTB takes
any ``BaseRequest``; this one keeps ``HTTPXRequest``'s timeouts and errors (TimedOut,
NetworkError), so nothing above it can tell the difference.

A call without files is posted as one JSON body (the Bot API takes either): PTB's form body
JSON-encodes each value, then aiohttp URL-encodes the lot, which was a quarter of a send's
CPU (bench/README.md).
"""

from __future__ import annotations

from typing import Any

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData
from telegram.request._requestparameter import RequestParameter

from bot import metrics


class AiohttpRequest(BaseRequest):
    """``BaseRequest`` over one ``aiohttp.ClientSession`` with up to ``connections`` open."""

    def __init__(
        self,
        *,
        connections: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        self._connections = connections
        self._timeouts = {
            "read": read_timeout,
            "write": write_timeout,
            "connect": connect_timeout,
            "pool": pool_timeout,
        }
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        #: A call's bounds when it names none (nearly every call): built once, not per call.
        self._default_timeout = _client_timeout(
            pool_timeout, connect_timeout, write_timeout, read_timeout
        )

    @property
    def read_timeout(self) -> float | None:
        return self._timeouts["read"]

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data is not None and request_data.contains_files
        if (
            not files
            and isinstance(read_timeout, DefaultValue)
            and isinstance(write_timeout, DefaultValue)
            and isinstance(connect_timeout, DefaultValue)
            and isinstance(pool_timeout, DefaultValue)
        ):
            timeout = self._default_timeout
        else:
            write = self._pick(write_timeout, "write")
            if files and isinstance(write_timeout, DefaultValue):
                write = self._media_write_timeout
            timeout = _client_timeout(
                self._pick(pool_timeout, "pool"),
                self._pick(connect_timeout, "connect"),
                write,
                self._pick(read_timeout, "read"),
            )
        api_method = url.rpartition("/")[2]  # a Bot API method name: never a member's data
        try:
            async with session.request(
                method, url, data=_body(request_data), timeout=timeout
            ) as response:
                answer = response.status, await response.read()
        except TimeoutError as err:
            metrics.PLATFORM_CALLS.labels("telegram", api_method, "network").inc()
            raise TimedOut from err
        except aiohttp.ClientError as err:
            metrics.PLATFORM_CALLS.labels("telegram", api_method, "network").inc()
            raise NetworkError(f"aiohttp.{type(err).__name__}: {err}") from err
        metrics.PLATFORM_CALLS.labels("telegram", api_method, outcome_of(answer[0])).inc()
        return answer

    def _pick(self, given: ODVInput[float], name: str) -> float | None:
        return self._timeouts[name] if isinstance(given, DefaultValue) else given


def outcome_of(status: int) -> str:
    """A Bot API answer's outcome, as ``verifybot_platform_calls`` labels it."""
    return _OUTCOMES.get(status, "ok" if status < 300 else "error")


_OUTCOMES = {429: "429", 403: "forbidden", 400: "bad_request"}


def _client_timeout(
    pool: float | None, connect: float | None, write: float | None, read: float | None
) -> aiohttp.ClientTimeout:
    # aiohttp has no write timeout of its own: the whole call is bounded by the sum.
    parts = (pool, connect, write, read)
    return aiohttp.ClientTimeout(
        total=None if None in parts else sum(p for p in parts if p is not None),
        connect=None if pool is None or connect is None else pool + connect,
        sock_connect=connect,
        sock_read=read,
    )


def _body(request_data: RequestData | None) -> aiohttp.JsonPayload | aiohttp.FormData | None:
    """The parameters as one JSON object, or, with files, multipart with every value
    JSON-encoded (as PTB sends them)."""
    if request_data is None:
        return None
    if not request_data.contains_files:
        return aiohttp.JsonPayload(request_data.parameters)
    form = aiohttp.FormData()
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, (filename, content, mime_type) in request_data.multipart_data.items():
        form.add_field(name, content, filename=filename, content_type=mime_type)
    return form


def json_request(values: dict[str, Any]) -> RequestData:
    """A call's parameters, already plain JSON values (no files), as ``BaseRequest.post``
    takes them: without ``RequestParameter.from_input``'s conversion of each one."""
    return RequestData([RequestParameter(name, value, None) for name, value in values.items()])
