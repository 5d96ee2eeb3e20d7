"""Two workers, one Redis, one PostgreSQL: the deployment the README recommends, end to end.

Two real ``verifybot run telegram --webhook`` processes share this test's Redis prefix and a
PostgreSQL database made for it. A round-robin forwarder (the test's load balancer) hands
each webhook POST from the Bot API emulator to the next worker, so a member's two copies of
their number, and a redelivered update, are handled by different processes at the same time.
The members' replies, the Vonage emulator's requests and the database say what happened.

The Bot API emulator delivers webhook updates one at a time, in order (the live server may use
up to ``max_connections`` at once); the workers answer each POST as soon as it is queued, so
their handling overlaps all the same.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest
from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import VONAGE_APP_ID, unconfigured_environment
from tests.e2e.test_telegram import free_port
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.vonage import VonageEmulator
from tests.integration.conftest import database_url, postgres_admin  # noqa: F401 - fixtures

MEMBERS = 50
SECRET = "two-workers_Secret-1"
WAIT = 60.0  # seconds for a whole wave; generous for a loaded CI runner, never a speed target

ASKED = "send me your mobile phone number"
SENT = "I've sent a 6-digit code"
#: What the second copy of a number hears: it came while the first was with Vonage
#: ("starting"), or after the code went out (the code step's help). Never a second code.
SECOND_COPIES = ("Sending your code", "Please type the 6-digit code")
SECOND_COPY = "(second copy of the number)"
VERIFIED = "You're verified"
#: What the second copy of a code hears: one check per member at a time.
CHECKING = "I'm checking your code"
ALREADY = "You're already verified"
KEYBOARD_CLOSED = "Thanks."


class RoundRobin:
    """The load balancer in front of the workers: each POST goes to the next worker in turn,
    headers and body unchanged, and the worker's status goes back to Telegram."""

    def __init__(self, workers: list[str]) -> None:
        self.workers = workers
        #: (update_id, worker index) for every POST forwarded, in arrival order.
        self.routes: list[tuple[int, int]] = []
        self.errors: list[str] = []
        self.url = ""
        self._turn = itertools.count()
        self._client = httpx.AsyncClient(timeout=10)
        self._server: asyncio.Server | None = None

    def workers_of(self, update_id: int) -> list[int]:
        """The workers that were handed this update, in order."""
        return [worker for uid, worker in self.routes if uid == update_id]

    async def __aenter__(self) -> RoundRobin:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self._client.aclose()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.rstrip("\r\n").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            worker = next(self._turn) % len(self.workers)
            self.routes.append((json.loads(body)["update_id"], worker))
            passed = {
                name: value
                for name, value in headers.items()
                if name in ("content-type", "x-telegram-bot-api-secret-token")
            }
            try:
                answer = await self._client.request(
                    method, self.workers[worker] + target, content=body, headers=passed
                )
                status, payload = answer.status_code, answer.content
            except httpx.HTTPError as exc:  # a worker that does not answer is a 502, as nginx says
                self.errors.append(f"worker {worker}: {exc!r}")
                status, payload = HTTPStatus.BAD_GATEWAY, b""
            reason = HTTPStatus(status).phrase
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except Exception as exc:  # a broken forwarder must fail the test, loudly
            self.errors.append(f"forwarder: {exc!r}")
        finally:
            writer.close()


class Worker:
    """One ``verifybot run telegram --webhook`` process; its output goes to a file, so that a
    full pipe can never stall it."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def exited(self) -> bool:
        return self.process is not None and self.process.returncode is not None


@asynccontextmanager
async def workers(envs: list[dict[str, str]], cwd: Path) -> AsyncIterator[list[Worker]]:
    """Start one worker per environment, all at once (as a deploy does); SIGTERM them after."""
    started = [Worker(cwd / f"worker{index}.log") for index in range(len(envs))]
    try:
        for worker, env in zip(started, envs, strict=True):
            with worker.log.open("wb") as log:
                worker.process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "verifybot", "run", "telegram", "--webhook",
                    env=env, cwd=cwd, stdout=log, stderr=log,
                )  # fmt: skip
        yield started
    finally:
        for worker in started:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in started:
            if worker.process is not None:
                with suppress(TimeoutError):
                    await asyncio.wait_for(worker.process.wait(), timeout=20)
                if worker.process.returncode is None:
                    worker.process.kill()
                    await worker.process.wait()


def phone_of(index: int) -> tuple[str, str]:
    """Member ``index``'s number as typed, and in E.164."""
    e164 = f"4474001{index:05d}"
    return f"+44 7400 1{index:05d}", e164


def replies(telegram: TelegramEmulator, member: int) -> list[str]:
    """What the member read, without the bare keyboard-closing notes."""
    return [m.text for m in telegram.messages_in(member) if m.text != KEYBOARD_CLOSED]


def starts_to(vonage: VonageEmulator, e164: str) -> int:
    """Verify v2 start requests for this number that reached Vonage (answered or not)."""
    return sum(
        1
        for call in vonage.calls
        if call.method == "POST"
        and call.path.rstrip("/") == "/v2/verify"
        and any(step.get("to") == e164 for step in call.body.get("workflow", []))
    )


@dataclass
class Deployment:
    """The emulators, the load balancer, and the workers behind it."""

    telegram: TelegramEmulator
    vonage: VonageEmulator
    balancer: RoundRobin
    workers: list[Worker]
    database_url: str

    def duplicates_logged(self) -> int:
        return sum(w.output().count('"duplicate_delivery"') for w in self.workers)

    async def wait_for_replies(self, members: list[int], before: dict[int, int], n: int) -> None:
        """Until every member has at least ``n`` replies more than ``before``."""

        def answered() -> bool:
            return all(len(replies(self.telegram, m)) >= before[m] + n for m in members)

        answered.__name__ = f"every member got {n} more replies"
        await self.telegram.wait_for(answered, timeout=WAIT)


@pytest.fixture
async def deployment(
    telegram: TelegramEmulator,
    vonage: VonageEmulator,
    key_file: Path,
    redis_url: str,
    key_prefix: str,
    database_url: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> AsyncIterator[Deployment]:
    """Two workers on one Redis prefix and one PostgreSQL database, behind a round robin that
    Telegram's webhook points at. Afterwards: both stopped cleanly, with nothing logged at
    ERROR, and every webhook POST was answered 200 (so Telegram retried nothing)."""
    ports = [free_port(), free_port()]
    async with RoundRobin([f"http://127.0.0.1:{port}" for port in ports]) as balancer:
        common = {
            "TELEGRAM_BOT_TOKEN": telegram.token,
            "TELEGRAM_API_BASE_URL": telegram.base_url,
            "TELEGRAM_WEBHOOK_URL": f"{balancer.url}/telegram",
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "LISTEN_HOST": "127.0.0.1",
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": key_prefix,
            "DATABASE_URL": database_url,
            "VERIFIER": "vonage",
            "VONAGE_APPLICATION_ID": VONAGE_APP_ID,
            "VONAGE_PRIVATE_KEY_PATH": str(key_file),
            "VONAGE_API_HOST": vonage.host,
            "VONAGE_TIMEOUT_SECONDS": "5",
            # Fifty numbers from one block; the per-block budget is not what this test is about,
            # nor is the fraud breaker (fifty codes to one block before any is entered is what
            # a pumping attack looks like: tests/integration/test_fraud_breaker.py).
            "LIMIT_SMS_PER_PREFIX": "100/1d",
            "FRAUD_MIN_SENDS": "100",
            "LOG_FORMAT": "json",
        }
        envs = [
            unconfigured_environment(**common, PORT=str(port), DATA_DIR=str(tmp_path / f"d{i}"))
            for i, port in enumerate(ports)
        ]
        async with workers(envs, tmp_path) as running:

            def both_listening() -> bool:
                if any(w.exited for w in running):
                    logs = "\n".join(w.output()[-3000:] for w in running)
                    raise AssertionError(f"a worker exited:\n{logs}")
                return len(telegram.calls_to("setWebhook")) >= len(running)

            await telegram.wait_for(both_listening, timeout=WAIT)
            yield Deployment(telegram, vonage, balancer, running, database_url)

    for worker in running:
        output = worker.output()
        assert worker.process is not None and worker.process.returncode == 0, output[-3000:]
        assert "Traceback" not in output, output[-5000:]
        assert '"level": "error"' not in output, output[-5000:]
        assert '"level": "critical"' not in output, output[-5000:]
        assert private_data_in(output, vonage) == []
    assert balancer.errors == []
    assert {status for _, status in telegram.webhook_deliveries} == {200}


def private_data_in(output: str, vonage: VonageEmulator) -> list[str]:
    """Every number (as typed, and in E.164) and every code sent that appears in ``output``."""
    typed = [phone_of(index)[0] for index in range(MEMBERS)]
    found = [number for number in typed if number in output]
    for delivery in vonage.deliveries:
        found += [delivery.to] if delivery.to in output else []
        found += re.findall(rf"\b{delivery.code}\b", output)
    return found


pytestmark = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


async def test_fifty_members_through_two_workers_get_one_code_per_number_and_verify_once(
    deployment: Deployment,
) -> None:
    """Each member: /start, their number twice, the code; some updates redelivered. Exactly
    one Vonage start and one SMS per number, one reply per update (a redelivery gets none),
    and one verified link and one ``verified`` audit entry per member in PostgreSQL."""
    telegram, vonage, balancer = deployment.telegram, deployment.vonage, deployment.balancer
    members = [telegram.add_user(f"Member {index}") for index in range(MEMBERS)]
    redelivered: list[int] = []

    def redeliver(update: dict[str, Any]) -> None:
        # Right after the original, so the round robin hands the copy to the other worker.
        telegram.redeliver(update)
        redelivered.append(update["update_id"])

    def seen() -> dict[int, int]:
        return {member: len(replies(telegram, member)) for member in members}

    # /start; every fifth one is delivered twice.
    before = seen()
    for index, member in enumerate(members):
        update = telegram.send_text(member, "/start")
        if index % 5 == 0:
            redeliver(update)
    await deployment.wait_for_replies(members, before, 1)

    # The number, typed twice: two updates, handed to two workers. Every fifth member's
    # second copy is also redelivered.
    before = seen()
    pairs: list[tuple[int, int]] = []
    for index, member in enumerate(members):
        typed, _ = phone_of(index)
        first = telegram.send_text(member, typed)
        second = telegram.send_text(member, typed)
        pairs.append((first["update_id"], second["update_id"]))
        if index % 5 == 1:
            redeliver(second)
    await deployment.wait_for_replies(members, before, 2)

    # The right code; every fifth one is delivered twice.
    before = seen()
    for index, member in enumerate(members):
        update = telegram.send_text(member, vonage.last_code(phone_of(index)[1]))
        if index % 5 == 2:
            redeliver(update)
    await deployment.wait_for_replies(members, before, 1)

    # Every redelivery was recognised as one by the worker that got the later copy.
    def every_redelivery_logged_as_duplicate() -> bool:
        return deployment.duplicates_logged() >= len(redelivered)

    await telegram.wait_for(every_redelivery_logged_as_duplicate, timeout=WAIT)
    assert deployment.duplicates_logged() == len(redelivered)

    # The premise: the two copies of a number, and an update and its redelivery, were each
    # handed to different workers.
    for first_copy, second_copy in pairs:
        assert balancer.workers_of(first_copy)[0] != balancer.workers_of(second_copy)[0]
    for update_id in redelivered:
        assert sorted(balancer.workers_of(update_id)) == [0, 1]

    for index, member in enumerate(members):
        e164 = phone_of(index)[1]
        # One reply per update handled: a redelivery that was handled shows up here.
        assert Counter(map(kind, replies(telegram, member))) == {
            ASKED: 1,
            SENT: 1,
            SECOND_COPY: 1,
            VERIFIED: 1,
        }, (index, replies(telegram, member))
        assert starts_to(vonage, e164) == 1, index
        assert len(vonage.codes_sent_to(e164)) == 1, index
    assert_directory(
        deployment.database_url,
        telegram.bot_id,
        {member: phone_of(index)[1] for index, member in enumerate(members)},
    )


async def test_a_right_code_typed_twice_on_two_workers_verifies_and_is_never_called_expired(
    deployment: Deployment,
) -> None:
    """An impatient member sends the code again before the answer comes; the round robin
    hands the copies to different workers, which check it with Vonage at the same time."""
    telegram, vonage = deployment.telegram, deployment.vonage
    members = [telegram.add_user(f"Member {index}") for index in range(10)]
    for member in members:
        telegram.send_text(member, "/start")
    await deployment.wait_for_replies(members, dict.fromkeys(members, 0), 1)
    for index, member in enumerate(members):
        telegram.send_text(member, phone_of(index)[0])
    await deployment.wait_for_replies(members, dict.fromkeys(members, 1), 1)

    before = {member: len(replies(telegram, member)) for member in members}
    for index, member in enumerate(members):
        code = vonage.last_code(phone_of(index)[1])
        telegram.send_text(member, code)
        telegram.send_text(member, code)
    await deployment.wait_for_replies(members, before, 2)

    for index, member in enumerate(members):
        answers = replies(telegram, member)[before[member] :]
        assert not [a for a in answers if "expired" in a], (index, answers)
        assert sum(VERIFIED in a for a in answers) == 1, (index, answers)
        # The other copy came while the first was with Vonage, or after it was verified.
        others = [a for a in answers if VERIFIED not in a]
        assert all(CHECKING in a or ALREADY in a for a in others), (index, answers)
    assert_directory(
        deployment.database_url,
        telegram.bot_id,
        {member: phone_of(index)[1] for index, member in enumerate(members)},
    )


def kind(reply: str) -> str:
    """Which of the expected replies this is (or the reply itself, if unexpected)."""
    for expected in (ASKED, SENT, VERIFIED):
        if expected in reply:
            return expected
    return SECOND_COPY if reply.startswith(SECOND_COPIES) else reply


def assert_directory(url: str, bot_id: int, members: dict[int, str]) -> None:
    """Each member verified exactly once: one link with their number, one ``verified`` and
    one ``code_sent`` entry in the audit log."""
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as connection:
            links = connection.execute(
                text(
                    "SELECT user_id, phone_e164, is_phone_verified FROM phone_links"
                    " WHERE platform = 'telegram' AND scope = :scope"
                ),
                {"scope": str(bot_id)},
            ).all()
            audit = connection.execute(
                text("SELECT subject, event FROM audit_log WHERE event IN :events").bindparams(
                    bindparam("events", expanding=True)
                ),
                {"events": ["verified", "code_sent"]},
            ).all()
    finally:
        engine.dispose()
    assert sorted((row.user_id, row.phone_e164, row.is_phone_verified) for row in links) == sorted(
        (str(user), f"+{e164}", True) for user, e164 in members.items()
    )
    assert Counter((row.subject, row.event) for row in audit) == {
        (f"telegram:{bot_id}:{user}", event): 1
        for user in members
        for event in ("verified", "code_sent")
    }
