"""CPU cost of the JWT behind every Vonage Verify v2 request: stock SDK auth vs ``SigningAuth``.

What it measures
    Every Verify v2 request (start, check, cancel, resend) carries ``Authorization: Bearer
    <JWT>``, made by ``Auth.create_jwt_auth_string()``. Per call, in CPU time
    (``time.process_time``, not wall time):

    a. stock ``vonage_http_client.Auth(application_id, private_key=<PKCS#8 PEM>)``: vonage-jwt
       keeps the PEM text and hands it to ``jwt.encode`` each time, so the RSA key is parsed
       and *validated* on every call;
    b. ``bot.verifier._sdk.SigningAuth(application_id, key_object)`` in steady state: the
       token is reused until 60 s before its ``exp`` (so one signature per ~14 minutes);
    c. ``SigningAuth._sign({})``: the same, forced to sign every time (RS256 from the
       already-parsed key), to split the cost into parse vs sign vs reuse;

    plus two diagnostic rows: ``load_pem_private_key`` alone, and the same with
    ``unsafe_skip_rsa_key_validation=True``, which shows the time is key *validation*
    (never do that in production; parse once instead).

    It then runs cProfile over (a) and prints the top entries (by own time and cumulative),
    so the hot spot is seen in a profiler rather than inferred from reading the SDK.

    Finally it shows that the cost holds the GIL, which is what hurts an asyncio bot even
    though ``SdkRunner`` runs the SDK in a thread pool: a 1 ms asyncio ticker runs while a
    worker thread makes the calls, and the ticker's worst lateness is reported.

How
    A fresh 2048-bit RSA key from ``cryptography``. Each case runs 5 rounds of about
    0.25 s of CPU; the table shows the median per-call CPU over the rounds. The ceiling is
    1 / (CPU per call): Vonage requests per second one core could sign, with nothing else
    to do. Runs in ~9 s.

        .venv/bin/python bench/jwt_signing.py

Measured 2026-11-25 (2-core Linux VM; Python 3.11.7, cryptography 50.0.2, OpenSSL 4.0.3,
PyJWT 2.15.1, vonage-http-client 1.5.2, vonage-jwt 1.1.5)::

    case                                         CPU/call   ceiling/core
    (a) stock Auth (parse + validate + sign)     35.1 ms        29 calls/s
    (b) SigningAuth, cached token (steady)       0.39 us      2.6M calls/s
    (c) SigningAuth._sign({}) (sign only)        0.35 ms      2.9k calls/s
        load_pem_private_key alone               34.0 ms        29 calls/s
        load_pem_private_key, skip validation    12.8 us       78k calls/s

    parse + validate ~34.7 ms, sign ~0.35 ms, reuse ~0.4 us: stock is ~100x the cost of
    signing from the parsed key. A verification needs at least two Vonage calls (start,
    check), so the stock SDK alone caps a bot near 14 verifications/s per core.

    cProfile, 20 stock calls: 0.700 s of 0.728 s (96 %) is own time in
    {built-in method keys.load_pem_private_key}, reached through
    jwt.algorithms.RSAAlgorithm.prepare_key; RSAPrivateKey.sign is 0.014 s.

    GIL check, 1 ms asyncio ticker beside a worker thread: stock Auth -> worst lateness
    45 ms, median 36 ms (the loop is frozen for each whole parse); SigningAuth._sign ->
    worst 2.7 ms, median 0.12 ms.

    Across runs here the stock figure varied 32-37 ms and (c) 0.32-0.35 ms.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import platform
import pstats
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from cryptography.hazmat.backends.openssl import backend
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from vonage_http_client import Auth

from bot.verifier._sdk import SigningAuth
from bot.verifier.keys import pkcs8_pem

APPLICATION_ID = "a1b2c3d4-0000-4000-8000-0123456789ab"
ROUNDS = 5
ROUND_CPU_SECONDS = 0.25
PROFILE_CALLS = 20
STALL_CALLS = 10


@dataclass(frozen=True)
class Result:
    label: str
    cpu_per_call: float  # seconds
    wall_per_call: float  # seconds
    calls: int

    @property
    def ceiling(self) -> float:
        return 1.0 / self.cpu_per_call if self.cpu_per_call > 0 else float("inf")


def _calibrate(fn: Callable[[], object]) -> int:
    """How many calls make roughly one round of ROUND_CPU_SECONDS."""
    n = 1
    while True:
        start = time.process_time()
        for _ in range(n):
            fn()
        spent = time.process_time() - start
        if spent >= 0.02:
            return max(1, int(n * ROUND_CPU_SECONDS / spent))
        n *= 4


def measure(label: str, fn: Callable[[], object]) -> Result:
    fn()  # warm: fills SigningAuth's cache, imports, first-call costs
    n = _calibrate(fn)
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(ROUNDS):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            fn()
        cpu.append((time.process_time() - c0) / n)
        wall.append((time.perf_counter() - w0) / n)
    return Result(label, statistics.median(cpu), statistics.median(wall), n * ROUNDS)


def _fmt_time(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds * 1e6:8.2f} us"


def _fmt_rate(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:6.1f}M"
    if rate >= 1e4:
        return f"{rate / 1e3:6.1f}k"
    return f"{rate:7.0f}"


def print_table(results: list[Result]) -> None:
    print(f"{'case':<46}{'CPU/call':>12}{'wall/call':>12}{'ceiling/core':>16}{'calls':>9}")
    for r in results:
        print(
            f"{r.label:<46}{_fmt_time(r.cpu_per_call):>12}{_fmt_time(r.wall_per_call):>12}"
            f"{_fmt_rate(r.ceiling):>10} /s   {r.calls:>7}"
        )


def profile_stock(stock: Auth) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(PROFILE_CALLS):
        stock.create_jwt_auth_string()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(6)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(10)
    # Trim pstats' blank lines and long site-packages paths so the table stays readable.
    for line in out.getvalue().splitlines():
        if line.strip():
            print("   ", line.replace(_site_packages(), "…/"))
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    parse = sum(v[2] for (_f, _l, name), v in raw.items() if "load_pem_private_key" in name)
    print(
        f"    => {parse:.3f} s of {total:.3f} s profiled ({parse / total:.0%}) is own time in "
        f"load_pem_private_key, over {PROFILE_CALLS} calls"
    )


def _site_packages() -> str:
    import jwt

    path = jwt.__file__
    return path[: path.index("jwt/__init__.py")] if "jwt/__init__.py" in path else "\0"


async def _worst_loop_lateness(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """Run ``fn`` ``calls`` times in a worker thread (as SdkRunner does) while a 1 ms
    asyncio ticker runs; return the ticker's worst and median lateness, in seconds."""
    loop = asyncio.get_running_loop()
    done = threading.Event()

    def work() -> None:
        for _ in range(calls):
            fn()
        done.set()

    lateness: list[float] = []
    future = loop.run_in_executor(None, work)
    while not done.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.001)
        lateness.append(time.perf_counter() - before - 0.001)
    await future
    return max(lateness), statistics.median(lateness)


def main() -> None:
    print(
        f"Python {platform.python_version()}, cryptography {version('cryptography')}, "
        f"{backend.openssl_version_text()}, PyJWT {version('pyjwt')}, "
        f"vonage-http-client {version('vonage-http-client')}, vonage-jwt {version('vonage-jwt')}"
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = pkcs8_pem(key)
    pem_bytes = pem.encode()
    stock = Auth(application_id=APPLICATION_ID, private_key=pem)
    signing = SigningAuth(APPLICATION_ID, key)

    # The two must produce equivalent tokens; a benchmark of a broken signer proves nothing.
    import jwt

    public = key.public_key()
    for token in (stock.generate_application_jwt(), signing.generate_application_jwt()):
        claims = jwt.decode(token, public, algorithms=["RS256"])
        assert claims["application_id"] == APPLICATION_ID

    def parse_only() -> object:
        return serialization.load_pem_private_key(pem_bytes, password=None)

    def parse_unvalidated() -> object:
        return serialization.load_pem_private_key(
            pem_bytes, password=None, unsafe_skip_rsa_key_validation=True
        )

    print("\nPer-call CPU (median of 5 rounds), and the Vonage calls/s one core could sign:\n")
    results = [
        measure("(a) stock Auth (parse + validate + sign)", stock.create_jwt_auth_string),
        measure("(b) SigningAuth, cached token (steady)", signing.create_jwt_auth_string),
        measure("(c) SigningAuth._sign({}) (sign only)", lambda: signing._sign({})),
        measure("    load_pem_private_key alone", parse_only),
        measure("    load_pem_private_key, skip validation", parse_unvalidated),
    ]
    print_table(results)
    a, b, c = results[0], results[1], results[2]
    print(
        f"\nparse+validate ~ {(a.cpu_per_call - c.cpu_per_call) * 1e3:.1f} ms, "
        f"sign ~ {c.cpu_per_call * 1e3:.2f} ms, reuse ~ {b.cpu_per_call * 1e6:.2f} us per call; "
        f"stock / SigningAuth(sign every time) = {a.cpu_per_call / c.cpu_per_call:.0f}x"
    )

    print(f"\ncProfile of {PROFILE_CALLS} stock Auth.create_jwt_auth_string() calls:\n")
    profile_stock(stock)

    print("\nasyncio 1 ms ticker while a worker thread signs (GIL check), ~0.3 s each:")
    for label, fn, calls in (
        ("stock Auth", stock.create_jwt_auth_string, STALL_CALLS),
        ("SigningAuth._sign", lambda: signing._sign({}), STALL_CALLS * 100),
    ):
        worst, median = asyncio.run(_worst_loop_lateness(fn, calls))
        print(
            f"    {label:<18} x{calls:<5} worst lateness {worst * 1e3:6.1f} ms, "
            f"median {median * 1e3:5.2f} ms"
        )


if __name__ == "__main__":
    main()
