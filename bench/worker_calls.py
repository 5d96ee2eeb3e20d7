"""CPU of each call a member's conversation makes in worker threads, one call at a time.

What it measures
    The thread CPU (``time.thread_time``: user + system of the calling thread only) of

    - the three Vonage Verify v2 calls of a member (start, a wrong code, the right code),
      through the bot's own SDK clients (``VonageOptions.client``, ``SigningAuth``) against
      the Vonage emulator over HTTPS, verifying against certifi's bundle plus the emulator's
      CA as in production;
    - the four directory calls of a member (``verified_number`` on /start, ``count_links``
      on the number, ``audit`` of the code sent, ``record_verified`` on the right code), on a
      fresh SQLite file, or on PostgreSQL with ``--database-url``.

    Median over ``--members`` (600) members, the first 50 left out. Calls run one after
    another in one thread, so this is a call's own cost, without the contention for the GIL
    that inflates it in the bot (bench/README.md). To compare two versions, alternate runs
    with ``--tree`` pointing at a checkout of each (``git archive REV | tar -x -C DIR``).

        .venv/bin/python bench/worker_calls.py [--members 600] [--tree DIR]
        [--database-url URL] [--only vonage|directory]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SKIP = 50


def timed(into: list[float], call: Callable[[], Any]) -> Any:
    started = time.thread_time()
    try:
        return call()
    finally:
        into.append(time.thread_time() - started)


def vonage_calls(members: int) -> dict[str, list[float]]:
    import certifi
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from vonage_http_client.errors import HttpRequestError
    from vonage_verify import SmsChannel, VerifyRequest

    from bot.verifier._sdk import SigningAuth, VonageOptions, quiet_sdk_loggers
    from tests.conftest import VONAGE_API_KEY, VONAGE_API_SECRET, VONAGE_APP_ID
    from tests.emulators.vonage import VonageEmulator

    quiet_sdk_loggers()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    took: dict[str, list[float]] = defaultdict(list)
    with (
        tempfile.TemporaryDirectory() as tmp,
        VonageEmulator(
            application_id=VONAGE_APP_ID,
            public_key_pem=public,
            api_key=VONAGE_API_KEY,
            api_secret=VONAGE_API_SECRET,
        ) as emulator,
    ):
        bundle = Path(tmp) / "ca-bundle.pem"
        bundle.write_text(Path(certifi.where()).read_text() + Path(emulator.ca_bundle).read_text())
        os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)
        os.environ["NO_PROXY"] = "127.0.0.1,localhost"
        options = VonageOptions(brand="Bench", api_host=emulator.host, timeout=10)
        auth = SigningAuth(VONAGE_APP_ID, key)
        verify = options.client(auth).verify
        once = options.client(auth, send_once=True).verify

        def member(n: int) -> None:
            to = f"4477009{n:05d}"
            request = VerifyRequest(brand="Bench", workflow=[SmsChannel(to=to)], code_length=6)
            started = timed(took["vonage start"], lambda: verify.start_verification(request))
            code = emulator.last_code(to)
            wrong = "1" * 6 if code != "1" * 6 else "2" * 6
            with contextlib.suppress(HttpRequestError):
                timed(
                    took["vonage check, wrong"], lambda: once.check_code(started.request_id, wrong)
                )
            timed(took["vonage check, right"], lambda: once.check_code(started.request_id, code))

        in_thread(member, members)
    return took


def directory_calls(members: int, database_url: str | None) -> dict[str, list[float]]:
    from bot.directory.directory import Directory
    from bot.identity import MemberKey

    took: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Directory(database_url or f"sqlite:///{tmp}/bench.db")
        directory.upgrade()
        run = os.urandom(4).hex()  # another run's rows in the same PostgreSQL database differ

        def member(n: int) -> None:
            key = MemberKey("telegram", f"bench-{run}", str(n))
            phone = f"+4477{int(run, 16) % 100:02d}{n:06d}"
            now = datetime.now(UTC)
            timed(took["directory verified_number"], lambda: directory.verified_number(key))
            timed(
                took["directory count_links"],
                lambda: directory.count_links(phone, excluding=key),
            )
            timed(
                took["directory audit"],
                lambda: directory.audit(
                    "code_sent", actor=str(key), subject=str(key), details={}, now=now
                ),
            )
            timed(
                took["directory record_verified"],
                lambda: directory.record_verified(
                    key, phone_e164=phone, country="GB", display_name="M", now=now
                ),
            )

        try:
            in_thread(member, members)
        finally:
            directory.close()
    return took


def in_thread(member: Callable[[int], None], members: int) -> None:
    """Every member's calls in a thread of its own, as the bot's run: not the main thread."""

    def run() -> None:
        for n in range(members):
            member(n)

    thread = threading.Thread(target=run, name="bench-calls")
    thread.start()
    thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=600)
    parser.add_argument("--tree", type=Path, help="measure this checkout's bot/ instead")
    parser.add_argument("--database-url")
    parser.add_argument("--only", choices=("vonage", "directory"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.tree:
        sys.path.insert(0, str(args.tree.resolve()))
    took: dict[str, list[float]] = {}
    if args.only != "directory":
        took |= vonage_calls(args.members)
    if args.only != "vonage":
        took |= directory_calls(args.members, args.database_url)
    medians = {name: round(statistics.median(v[SKIP:]) * 1e6) for name, v in took.items()}
    print(f"thread CPU per call, µs (median of {args.members - SKIP} members, one at a time):")
    for name, value in medians.items():
        print(f"  {name:30} {value:6}")
    print(json.dumps({"tree": str(args.tree or ROOT), "load": os.getloadavg()[0], **medians}))


if __name__ == "__main__":
    main()
