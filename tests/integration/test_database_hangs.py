"""A PostgreSQL that stops answering mid-conversation, as in a network partition: every member
still hears back within a few seconds, nothing they did is lost, and the bot recovers by itself
when the network heals.

The partition is a TCP proxy between the bot and the real PostgreSQL that keeps accepting
connections but stops relaying bytes: the kernel still acknowledges everything, so neither
TCP keepalives nor the server's statement_timeout can end the wait. Only the directory's own
bound does."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import structlog
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from bot.app import App
from bot.engine import Outcome
from bot.flow import Start, Text
from bot.gate import Gate, Gatekeeper
from bot.identity import Member, MemberKey
from bot.logs import configure_logging
from tests.conftest import Inbox
from tests.integration.conftest import fresh_postgres_database
from verifybot.bootstrap import open_app

pytestmark = pytest.mark.postgres

T = TypeVar("T")

#: DATABASE_TIMEOUT_SECONDS for these tests; before the fix a member waited as long as the
#: partition lasted.
TIMEOUT = 1.5
#: How long a member may wait for a reply while the database hangs: generous, and still far
#: below the 20 s members waited before.
BOUND = 3 * TIMEOUT
#: Long enough for anything to finish once the network is back.
HEALED = 30.0

ALICE = Member(MemberKey("telegram", "bot1", "1001"), display_name="Alice", locale="en")
PHONE = "+44 7400 123456"


class PartitionProxy:
    """A TCP proxy, on its own thread and event loop like a real network, that can stop
    relaying: while partitioned, new connections are accepted and never reach the server, and
    bytes on open ones are held back. ``heal()`` lets everything through again."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    def __enter__(self) -> PartitionProxy:
        self._thread.start()
        self._server = self._submit(self._start())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self._submit(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def partition(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def _submit(self, work: Awaitable[T]) -> T:
        async def run() -> T:
            return await work

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    async def _start(self) -> asyncio.Server:
        self._flowing.set()
        return await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._flowing.wait()
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            try:
                await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
            finally:
                up_writer.close()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()
        writer.close()


@pytest.fixture(autouse=True)
def production_logging() -> Iterator[None]:
    """Logs rendered as the bot renders them. structlog's unconfigured default prints rich
    tracebacks with every local variable, which takes seconds per failure on the event loop."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("WARNING", "console")
    try:
        yield
    finally:
        root.handlers[:], root.level = saved
        structlog.reset_defaults()


@pytest.fixture
def proxy(postgres_admin: Engine) -> Iterator[tuple[PartitionProxy, str]]:
    """A fresh database of this test's own, reached through a proxy that can partition."""
    with fresh_postgres_database(postgres_admin) as url:
        parsed = make_url(url)
        with PartitionProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
            through = parsed.set(host="127.0.0.1", port=proxy.port)
            yield proxy, through.render_as_string(hide_password=False)


@pytest.fixture
async def bot(
    proxy: tuple[PartitionProxy, str], make_settings: Callable[..., Any], inbox: Inbox
) -> AsyncIterator[App]:
    settings = make_settings(database_url=proxy[1], database_timeout_seconds=TIMEOUT)
    async with open_app(settings, show_code=inbox) as app:
        try:
            yield app
        finally:
            proxy[0].heal()  # let stuck threads finish before the bot and its loop close


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


def member(n: int) -> Member:
    return Member(MemberKey("telegram", "bot1", str(2000 + n)), locale="en")


def keys(outcome: Outcome) -> list[str]:
    return [reply.key for reply in outcome.replies]


async def within(seconds: float, work: Awaitable[T]) -> T:
    """``work``'s result; the test fails (rather than hangs) if it takes longer."""
    return await asyncio.wait_for(work, seconds)


async def test_members_are_answered_within_seconds_while_the_database_hangs(
    bot: App, proxy: tuple[PartitionProxy, str]
) -> None:
    network = proxy[0]
    assert keys(await within(HEALED, bot.engine.handle(ALICE, Start()))) == ["phone.ask"]

    network.partition()
    # /start reads the directory (is this member verified already?).
    stuck = await within(BOUND, bot.engine.handle(member(0), Start()))
    assert keys(stuck) == ["error.internal"]
    # A number is counted against the directory's links before any SMS goes out.
    number = await within(BOUND, bot.engine.handle(ALICE, Text(PHONE)))
    assert keys(number) == ["error.internal"]
    # More members at once than the directory has threads and connections: none waits on
    # another's stuck call.
    crowd = await within(
        BOUND, asyncio.gather(*(bot.engine.handle(member(n), Start()) for n in range(1, 25)))
    )
    assert {tuple(keys(outcome)) for outcome in crowd} == {("error.internal",)}
    # Status displays and gates read the directory too.
    with pytest.raises(TimeoutError):
        await within(BOUND, bot.engine.verification(ALICE.key))

    network.heal()
    # Nothing was lost: each member's next message goes through as if nothing happened.
    again = await within(HEALED, bot.engine.handle(member(0), Start()))
    assert keys(again) == ["phone.ask"]
    sent = await within(HEALED, bot.engine.handle(ALICE, Text(PHONE)))
    assert keys(sent) == ["code.sent"]


async def test_a_right_code_whose_record_times_out_is_recorded_on_the_next_try(
    bot: App, proxy: tuple[PartitionProxy, str], inbox: Inbox
) -> None:
    network = proxy[0]
    await within(HEALED, bot.engine.handle(ALICE, Start()))
    assert keys(await within(HEALED, bot.engine.handle(ALICE, Text(PHONE)))) == ["code.sent"]

    network.partition()
    unsaved = await within(BOUND, bot.engine.handle(ALICE, Text(inbox.last_code)))
    assert keys(unsaved) == ["verified.save_failed"]
    assert unsaved.verified is None

    network.heal()
    saved = await within(HEALED, bot.engine.handle(ALICE, Text(inbox.last_code)))
    assert keys(saved) == ["verified.done"]
    link = await within(HEALED, bot.engine.verification(ALICE.key))
    assert link is not None and link.phone_e164 == "+447400123456"


async def test_the_gate_holds_a_newcomer_it_cannot_look_up_and_lets_in_one_who_verified(
    bot: App, proxy: tuple[PartitionProxy, str], inbox: Inbox
) -> None:
    network, place = proxy[0], "-100123"
    await within(HEALED, bot.engine.handle(ALICE, Start()))
    await within(HEALED, bot.engine.handle(ALICE, Text(PHONE)))

    network.partition()
    # Whether the newcomer was admitted before is unknown: closed, not open.
    hold = await within(BOUND, bot.gatekeeper.arrive(ALICE.key, place, "restrict"))
    assert hold is not None and hold.member == ALICE.key
    network.heal()
    assert keys(await within(HEALED, bot.engine.handle(ALICE, Text(inbox.last_code)))) == [
        "verified.done"
    ]

    network.partition()
    # Recording the admission times out, but the member verified: they are let in.
    released = await within(BOUND, bot.gatekeeper.verified(ALICE.key))
    assert [held.place for held in released] == [place]


async def test_a_lapsed_hold_waits_for_the_database_to_say_whether_the_member_verified(
    bot: App, proxy: tuple[PartitionProxy, str]
) -> None:
    network, now = proxy[0], [1_000_000.0]
    gatekeeper = Gatekeeper(
        Gate(bot.store.redis, prefix=bot.settings.redis_prefix),
        bot.directory,
        admit_anywhere=False,
        timeout=60,
        clock=lambda: now[0],
    )
    await within(HEALED, gatekeeper.arrive(ALICE.key, "-100123", "restrict"))
    now[0] += 120

    network.partition()
    # Neither removed (they may have verified) nor forgotten.
    assert await within(BOUND, gatekeeper.lapsed()) == []

    network.heal()
    lapsed = await within(HEALED, gatekeeper.lapsed())
    assert [(item.hold.member, item.verified) for item in lapsed] == [(ALICE.key, False)]
