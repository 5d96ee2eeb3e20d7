"""Redis behind Sentinel loses its primary while members are mid-flow.

A real primary, a replica and three sentinels (``tests.sentinels``); the engine connects
through REDIS_SENTINELS as the bot does, with the real vonage SDK against the Vonage emulator
and a real SQLite directory. The primary is killed with SIGKILL while half the members wait
for their code and the other half are about to type their number. Every message gets a
reply (the "try again" one while there is no primary), no number gets a second SMS, and every
member who types the right code once Redis is back is verified.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from bot.app import App
from bot.flow import Conversation, MemberEvent, PhoneGiven, Start, State, Text
from bot.identity import Member, MemberKey
from bot.store import Claim, Committed, Store
from tests.conftest import VONAGE_APP_ID
from tests.emulators.vonage import VonageEmulator
from tests.sentinels import MASTER, ReplicatedRedis
from verifybot.bootstrap import open_app

MEMBERS = 20
TRY_AGAIN = "error.internal"
#: Seconds a member keeps retrying one step; generous for a loaded machine, not a target.
PATIENCE = 60.0


def member(index: int) -> Member:
    return Member(MemberKey("telegram", "bot1", str(7000 + index)), display_name=f"M{index}")


def phone(index: int) -> str:
    return f"+4474009{index:05d}"


@pytest.fixture
def replicated(tmp_path: Path) -> Any:
    with ReplicatedRedis(tmp_path / "redis") as servers:
        yield servers


@pytest.fixture
async def bot(
    replicated: ReplicatedRedis,
    make_settings: Callable[..., Any],
    vonage: VonageEmulator,
    key_file: Path,
) -> AsyncIterator[App]:
    settings = make_settings(
        redis_url=None,
        redis_sentinels=replicated.sentinels,
        redis_sentinel_master=MASTER,
        vonage_application_id=VONAGE_APP_ID,
        vonage_private_key_path=key_file,
        vonage_api_host=vonage.host,
        vonage_timeout_seconds=2,
        vonage_retry_wait_seconds=0.01,
        # Twenty numbers from one block: not what the limits or the fraud breaker are about.
        limit_sms_per_prefix="100/1d",
        fraud_min_sends=100,
    )
    async with open_app(settings) as app:
        yield app


class Members:
    """Each member sends a message until the conversation reaches the state wanted, as a
    member does who reads "try again"; every reply is kept."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.heard: dict[int, list[str]] = {}
        self.silent: list[tuple[int, str]] = []

    async def until(self, index: int, event: MemberEvent, state: State) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PATIENCE
        while True:
            outcome = await self.app.engine.handle(member(index), event)
            keys = [reply.key for reply in outcome.replies]
            if not keys:
                self.silent.append((index, type(event).__name__))
            self.heard.setdefault(index, []).extend(keys)
            if outcome.state is state and TRY_AGAIN not in keys:
                return
            assert loop.time() < deadline, (index, self.heard[index])
            await asyncio.sleep(0.05)

    def tried_again(self) -> int:
        return sum(Counter(keys)[TRY_AGAIN] for keys in self.heard.values())


async def test_members_mid_flow_through_a_failover_get_replies_one_sms_and_are_verified(
    bot: App, replicated: ReplicatedRedis, vonage: VonageEmulator
) -> None:
    members = Members(bot)
    waiting, typing = range(MEMBERS // 2), range(MEMBERS // 2, MEMBERS)
    await asyncio.gather(*(members.until(i, Start(), State.AWAIT_PHONE) for i in range(MEMBERS)))
    await asyncio.gather(
        *(members.until(i, PhoneGiven(phone(i)), State.AWAIT_CODE) for i in waiting)
    )
    replicated.wait_for_replica_sync()
    # The premise for the scripts: the replica has not got them; the new primary is sent
    # them again after its first NOSCRIPT.
    with replicated.client(replicated.replica_port) as replica:
        assert replica.info("memory")["number_of_cached_scripts"] == 0

    replicated.kill_primary()

    async def type_number_then_code(index: int) -> None:
        await members.until(index, PhoneGiven(phone(index)), State.AWAIT_CODE)
        await members.until(index, Text(vonage.last_code(phone(index))), State.VERIFIED)

    async def type_code(index: int) -> None:
        await members.until(index, Text(vonage.last_code(phone(index))), State.VERIFIED)

    with capture_logs() as logs:
        await asyncio.gather(*map(type_number_then_code, typing), *map(type_code, waiting))

    assert members.silent == []
    # The premise: messages came while there was no primary, and were told to try again.
    assert members.tried_again() > 0
    assert replicated.primary_port_now() == replicated.replica_port
    for index in range(MEMBERS):
        assert len(vonage.codes_sent_to(phone(index))) == 1, (index, members.heard[index])
        link = bot.directory.find(member(index).key)
        assert link is not None and link.is_phone_verified, index
        assert link.phone_e164 == phone(index)
    # The new primary has no replica left: the numbers typed after the failover waited for
    # one in vain, said so, and were sent all the same.
    behind = [e for e in logs if e["event"] == "replica_behind"]
    assert behind and {(e["acked"], e["log_level"]) for e in behind} == {(0, "warning")}


async def test_a_claim_waits_for_a_replica_and_without_one_is_logged_and_kept(
    redis: Redis, key_prefix: str
) -> None:
    """Under Sentinel the store waits for a replica before Vonage is called; a primary with
    no replica (this test's plain Redis) costs the wait, a warning, and nothing else."""
    store = Store(redis, prefix=key_prefix, replicas=1, replica_timeout=0.05)
    alice = MemberKey("telegram", "bot1", "1")
    starting = Conversation(state=State.STARTING, phone=phone(1))
    with capture_logs() as logs:
        plain = await store.commit(alice, Conversation(state=State.AWAIT_PHONE), version=0, now=1)
        claimed = await store.commit(
            alice, starting, version=1, now=2, claim=Claim(phone(1), ttl=60)
        )
    # held=False: no gate holds alice (the save says so, for the bus)
    assert (plain, claimed) == (Committed(1, held=False), Committed(2, held=False))
    (behind,) = [e for e in logs if e["event"] == "replica_behind"]  # the claim only
    assert (behind["acked"], behind["wanted"], behind["log_level"]) == (0, 1, "warning")
    assert (await store.load(alice, now=3)).conversation == starting
