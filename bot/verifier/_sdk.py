"""What both Vonage verifiers share: running the synchronous SDK without blocking the loop,
retrying starts on transient failures, sending checks exactly once, JWT signing that does
not re-parse the key, and reporting the operator's problems loudly, once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, TypeVar

import jwt
import requests
import stamina
import structlog
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from requests.adapters import HTTPAdapter
from requests.hooks import default_hooks
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH, select_proxy
from urllib3 import Retry
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError
from urllib3.util.ssl_ import create_urllib3_context
from vonage_http_client import Auth, HttpClient, HttpClientOptions
from vonage_http_client.errors import HttpRequestError
from vonage_verify import Verify
from vonage_verify_legacy import VerifyLegacy

from bot import metrics
from bot.logs import quiet_third_party_loggers
from bot.verifier._loop_http import LoopHttp, NeverSent, on_loop, run_on_loop
from bot.verifier.keys import pkcs8_pem

log = structlog.get_logger("verifybot.vonage")

T = TypeVar("T")


def quiet_sdk_loggers() -> None:
    """The SDK logs request bodies (the phone and the code): its loggers, listed in
    ``bot.logs.QUIET_LOGGERS``, are held quiet even when logging was never configured."""
    quiet_third_party_loggers(floor=logging.getLogger().level, prefix="vonage")


class SigningAuth(Auth):  # type: ignore[misc]
    """``Auth`` that signs with a parsed key and reuses each token until near its expiry.

    The SDK hands PEM bytes to ``jwt.encode`` on every call; with OpenSSL 3 that re-parses
    and validates the RSA key (~30 ms of CPU with the GIL held) per Vonage request.
    """

    def __init__(
        self,
        application_id: str,
        key: RSAPrivateKey,
        *,
        lifetime: int = 900,
        renew_before: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # The SDK still validates the pair; it gets PKCS#8 text, the only form it accepts.
        super().__init__(application_id=application_id, private_key=pkcs8_pem(key))
        self._key = key
        self._lifetime = lifetime
        self._renew_before = renew_before
        self._clock = clock
        self._lock = threading.Lock()
        self._token = b""
        self._expires_at = 0.0

    def generate_application_jwt(self, claims: dict[str, Any] | None = None) -> bytes:
        if claims:
            return self._sign(claims)
        with self._lock:
            if self._clock() >= self._expires_at - self._renew_before:
                self._token = self._sign({})
            return self._token

    def _sign(self, claims: dict[str, Any]) -> bytes:
        iat = int(self._clock())
        payload = {
            "application_id": self.application_id,
            "iat": iat,
            "jti": str(uuid.uuid4()),
            "exp": iat + self._lifetime,
            **claims,
        }
        if not claims:
            self._expires_at = float(payload["exp"])
        token = jwt.encode(payload, self._key, algorithm="RS256", headers={"typ": "JWT"})
        return token.encode()


# Vonage wants a region with the language; these are its usual defaults for a bare one.
_LANGUAGE_DEFAULTS = {
    "en": "en-us", "es": "es-es", "it": "it-it", "fr": "fr-fr", "de": "de-de",
    "ru": "ru-ru", "hi": "hi-in", "pt": "pt-pt", "id": "id-id", "zh": "zh-cn",
}  # fmt: skip


def message_language(locale: str | None, supported: frozenset[str]) -> str | None:
    """The member's locale as one Vonage supports (``pt-BR`` -> ``pt-br``, ``es`` -> ``es-es``)."""
    if not locale:
        return None
    tag = locale.replace("_", "-").lower()
    if tag in supported:
        return tag
    language = tag.split("-")[0]
    default = _LANGUAGE_DEFAULTS.get(language)
    if default in supported:
        return default
    return next((s for s in sorted(supported) if s.split("-")[0] == language), None)


class AnswerLost(requests.RequestException):
    """The request may have reached Vonage, but its answer never reached us."""


def answer_lost(exc: BaseException) -> bool:
    """The request may have been carried out: a dropped answer or a read timeout, not a
    connection that never opened."""
    return isinstance(exc, AnswerLost | requests.ReadTimeout)


def _never_sent(exc: requests.ConnectionError) -> bool:
    if isinstance(exc, NeverSent | requests.ConnectTimeout | requests.exceptions.SSLError):
        return True
    reason = exc.args[0].reason if exc.args and isinstance(exc.args[0], MaxRetryError) else None
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


class _SharedTlsAdapter(HTTPAdapter):
    """Every connection of the pool verifies with one TLS context, the CA bundle loaded once.

    Left alone, urllib3 builds a context per connection and loads the bundle into it:
    certifi's costs ~0.6 MiB and ~20 ms of CPU per connection, held while it lives, and a
    client keeps up to ``max_workers`` (bench/README.md).
    """

    def __init__(self, tls: ssl.SSLContext, loop_http: LoopHttp | None, **kwargs: Any) -> None:
        self._tls = tls  # before HTTPAdapter.__init__, which builds the pool manager
        self._loop_http = loop_http
        super().__init__(**kwargs)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        """Inside ``run_on_loop``, aiohttp carries the request (the client has no proxy, or
        ``VonageOptions.client`` gave it no ``loop_http``); elsewhere requests' own path."""
        if self._loop_http is not None and on_loop():
            return _utf8_json(self._loop_http.send(request, timeout, self._tls))
        return super().send(request, stream, timeout, verify, cert, proxies)

    def init_poolmanager(self, *args: Any, **pool_kwargs: Any) -> None:
        super().init_poolmanager(*args, ssl_context=self._tls, **pool_kwargs)

    def cert_verify(self, conn: Any, url: str, verify: bool | str, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        if conn.conn_kw.get("ssl_context") is self._tls:  # not a proxy's pool
            conn.ca_certs = conn.ca_cert_dir = None  # else loaded again on each connect

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        return _utf8_json(super().build_response(req, resp))


def _utf8_json(response: requests.Response) -> requests.Response:
    """JSON is UTF-8 (RFC 8259). requests names no charset for Vonage's error bodies
    (application/problem+json), so the SDK's ``response.text`` on every 4xx, a wrong code
    among them, would guess one with charset_normalizer."""
    if response.encoding is None and _JSON_TYPE.search(response.headers.get("Content-Type", "")):
        response.encoding = "utf-8"
    return response


_JSON_TYPE = re.compile(r"^application/(?:[\w.-]+\+)?json\s*(?:;|$)", re.IGNORECASE)


@functools.cache
def _tls_context(bundle: str) -> ssl.SSLContext:
    """What requests would verify with, for ``bundle`` (a CA file or directory)."""
    context = create_urllib3_context()
    if os.path.isdir(bundle):
        context.load_verify_locations(capath=bundle)
    else:
        context.load_verify_locations(cafile=bundle)
    return context


class _ApiSession(requests.Session):
    """A ``Session`` that prepares the SDK's requests from its settings as they are, instead
    of merging them again on every call.

    ``Session.request`` builds two cookie jars and runs headers, params, hooks, proxies and
    verify through ``merge_setting`` (a runtime ``Protocol`` check per value on Python 3.11)
    for each request: about 10 % of the CPU a Vonage call costs its thread (bench/README.md).
    The SDK passes only headers, a timeout and one of json, data or params, and the session's
    settings do not change once the client is built (``_read_environment_once``). ``send``
    still does the rest: hooks, cookies, redirects. Any other call takes requests' own path.
    """

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        others = args or not kwargs.keys() <= _SDK_REQUEST_ARGUMENTS
        if others or self.trust_env or self.auth is not None or self.params:
            return super().request(method, url, *args, **kwargs)
        headers = CaseInsensitiveDict(self.headers)
        headers.update(kwargs.get("headers") or {})
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=(method.decode() if isinstance(method, bytes) else method).upper(),
            url=url.decode() if isinstance(url, bytes) else url,
            headers={name: value for name, value in headers.items() if value is not None},
            # None, not requests' {}, when absent: the same request, without a runtime
            # Protocol check and an encoding pass over an empty dict (45 -> 30 µs per call)
            data=kwargs.get("data") or None,
            params=kwargs.get("params") or None,
            cookies=self.cookies,
            hooks=default_hooks(),
            json=kwargs.get("json"),
        )
        return self.send(
            prepared,
            timeout=kwargs.get("timeout"),
            allow_redirects=True,
            proxies=dict(self.proxies),
            stream=self.stream,
            verify=self.verify,
            cert=self.cert,
        )


#: What vonage-http-client 1.5's ``make_request`` passes to ``Session.request``.
_SDK_REQUEST_ARGUMENTS = frozenset({"headers", "timeout", "json", "data", "params"})


class _SendOnceAdapter(_SharedTlsAdapter):
    """Turns "the connection dropped after the request went out" into ``AnswerLost``.

    vonage-http-client 1.5's ``make_request`` re-sends any request whose connection ended
    in ``RemoteDisconnected``, up to ``pool_maxsize`` times (measured against the emulator:
    a check re-sent after Vonage had completed it answers 404). It only catches
    ``requests.ConnectionError``, so this exception passes through it untouched.
    """

    def send(self, request: Any, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            return super().send(request, *args, **kwargs)
        except requests.ConnectionError as exc:
            if _never_sent(exc):
                raise
            raise AnswerLost(str(exc), request=request) from exc


@dataclass(frozen=True, slots=True)
class VonageOptions:
    """What both Vonage verifiers are configured with."""

    brand: str
    api_host: str = "api.nexmo.com"
    rest_host: str = "rest.nexmo.com"
    timeout: int = 10
    code_length: int = 6
    max_workers: int = 8
    start_attempts: int = 3
    retry_wait: float = 0.5

    def client(
        self, auth: Auth, *, send_once: bool = False, loop_http: LoopHttp | None = None
    ) -> VonageApis:
        """One client per API (the SDK shares a mutable headers dict between APIs on a
        client). ``send_once``: never re-send a request whose answer was lost; for calls
        whose repetition is not harmless (a check spends a try, a resend an SMS).
        ``loop_http``: carry its requests on the event loop when called by ``run_on_loop``,
        unless the environment names a proxy for Vonage (then requests' own path, in a
        thread, goes through it)."""
        client = VonageApis(
            HttpClient(
                auth,
                HttpClientOptions(
                    api_host=self.api_host,
                    rest_host=self.rest_host,
                    timeout=self.timeout,
                    pool_connections=1,
                    pool_maxsize=self.max_workers,
                    max_retries=_CONNECT_RETRIES,
                ),
                _SDK_VERSION,
            )
        )
        client.http_client._session.close()
        session = client.http_client._session = _ApiSession()
        _read_environment_once(session, self.api_host)
        bundle = session.verify if isinstance(session.verify, str) else DEFAULT_CA_BUNDLE_PATH
        if select_proxy(f"https://{self.api_host}", session.proxies) is not None:
            loop_http = None
        client.on_loop = loop_http is not None
        # The SDK's session is private and has no option for it or either adapter; tests
        # pin them (tests/integration/test_engine_lost_answers.py counts the checks sent).
        adapter = _SendOnceAdapter if send_once else _SharedTlsAdapter
        session.mount(
            "https://",
            adapter(
                _tls_context(bundle),
                loop_http,
                pool_connections=1,
                pool_maxsize=self.max_workers,
                # as the SDK's own adapter, and for a check: never re-send once it went out
                max_retries=Retry(
                    total=_CONNECT_RETRIES, read=False if send_once else None, backoff_factor=0.1
                ),
            ),
        )
        return client


def _read_environment_once(session: requests.Session, host: str) -> None:
    """Take what requests takes from the environment (proxies, NO_PROXY, a CA bundle) once,
    here, instead of on every request.

    With ``trust_env`` on, requests scans ``os.environ`` four times per request for proxies
    and looks for a ~/.netrc: ~120 µs of CPU per Vonage call with 40 variables, half the
    SDK's whole cost per call, and more in a container's larger environment (~400 µs with
    190). Both Verify APIs only call ``api_host``, so its answer holds for every call. The
    reading is requests' own (``merge_environment_settings``), asked once.
    """
    found = session.merge_environment_settings(f"https://{host}", {}, None, None, None)
    session.proxies = found["proxies"]
    session.verify = found["verify"]
    session.trust_env = False


class VonageApis:
    """The two Verify APIs over one HTTP client, as the SDK's ``Vonage`` object offers them.

    Not ``vonage.Vonage`` itself: importing it loads every Vonage API (video, voice,
    messages, ...), about 9 MiB of pydantic models a verification bot never uses.
    """

    def __init__(self, http_client: HttpClient) -> None:
        self.http_client = http_client
        #: Whether ``SdkRunner`` may call it with ``run_on_loop`` (``VonageOptions.client``).
        self.on_loop = False
        self.verify = Verify(http_client)
        self.verify_legacy = VerifyLegacy(http_client)


#: What the SDK's own client says in its User-Agent.
_SDK_VERSION = version("vonage")

#: urllib3 retries a POST only where nothing was sent (a connection that never opened).
_CONNECT_RETRIES = 1


def status_of(exc: BaseException) -> int | None:
    if isinstance(exc, HttpRequestError):
        return int(exc.response.status_code)
    return None


def body_of(exc: HttpRequestError) -> dict[str, Any]:
    try:
        body = exc.response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def is_transient(exc: Exception) -> bool:
    """Worth trying again: the network, Vonage's own errors, or its rate limit."""
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    status = status_of(exc)
    return status is not None and (status == 429 or status >= 500)


#: The metrics' name for each SDK method the verifiers call (``bot.metrics``).
OPERATIONS = {
    "start_verification": "start",
    "check_code": "check",
    "trigger_next_workflow": "next",
    "trigger_next_event": "next",
    "cancel_verification": "cancel",
    "search": "search",
}


def error_status(exc: BaseException) -> str:
    """How ``verifybot_vonage_errors`` names a failure: the HTTP status, the legacy API's
    own status (``legacy_N``), or ``network``."""
    status = status_of(exc)
    if status is not None:
        return str(status)
    if isinstance(exc, requests.RequestException):
        return "network"
    legacy = _LEGACY_STATUS.search(str(exc))
    return f"legacy_{legacy.group(1)}" if legacy else type(exc).__name__


_LEGACY_STATUS = re.compile(r"'status': '(\d+)'")


class SdkRunner:
    """Runs the SDK's calls on the event loop (``run_on_loop``), or in a thread pool when a
    proxy takes requests' own path, at most ``max_workers`` at once, and retries what may
    be retried."""

    def __init__(self, auth: Auth, options: VonageOptions, *, api: str) -> None:
        quiet_sdk_loggers()
        self._http = LoopHttp(limit=options.max_workers, connect_retries=_CONNECT_RETRIES)
        self.client = options.client(auth, loop_http=self._http)
        #: For checks and resends: sent exactly once, a lost answer is ``AnswerLost``.
        self.once = options.client(auth, send_once=True, loop_http=self._http)
        self.api = api
        self._pool = ThreadPoolExecutor(
            max_workers=options.max_workers, thread_name_prefix=f"{api}-"
        )
        self._on_loop = asyncio.Semaphore(options.max_workers)
        self._attempts = options.start_attempts
        self._retry_wait = options.retry_wait
        self._reported: set[str] = set()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        operation = OPERATIONS.get(getattr(fn, "__name__", ""), "other")
        started = time.perf_counter()
        try:
            if self.client.on_loop:
                async with self._on_loop:  # a call waiting here holds no greenlet yet
                    return await run_on_loop(fn, *args)
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args))
        except Exception as exc:
            metrics.VONAGE_ERRORS.labels(operation, error_status(exc)).inc()
            raise
        finally:
            metrics.VONAGE_SECONDS.labels(operation).observe(time.perf_counter() - started)

    async def call_with_retries(
        self,
        fn: Callable[..., T],
        *args: Any,
        transient: Callable[[Exception], bool] = is_transient,
    ) -> T:
        """Only for starting a verification: a re-sent start is answered 409 / status 10
        with the first request's id, which the caller adopts, so it never sends two SMS."""
        async for attempt in stamina.retry_context(
            on=transient,
            attempts=self._attempts,
            timeout=None,
            wait_initial=self._retry_wait,
            wait_max=self._retry_wait * 8,
            wait_jitter=self._retry_wait,
        ):
            if attempt.num > 1:
                metrics.VONAGE_RETRIES.labels(OPERATIONS.get(fn.__name__, "other")).inc()
            with attempt:
                return await self.call(fn, *args)
        raise AssertionError("unreachable: stamina re-raises the last failure")  # pragma: no cover

    def operator_problem(self, problem: str, **details: Any) -> None:
        """Bad credentials, no credit, a barred account: loud, but once per process."""
        if problem in self._reported:
            return
        self._reported.add(problem)
        log.critical(
            "vonage_operator_problem",
            api=self.api,
            problem=problem,
            hint="members are told verification is temporarily unavailable until this is fixed",
            **details,
        )

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        await self._http.aclose()
