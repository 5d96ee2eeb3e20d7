"""The gate's counters (``bot.metrics``): holds, admissions and removals by mode, through
the real gatekeeper on Redis and SQLite (the fixtures of ``test_gate``)."""

from __future__ import annotations

from prometheus_client import REGISTRY
from redis.asyncio import Redis

from bot.directory import Directory
from tests.integration.test_gate import (  # noqa: F401 - fixture
    ADA,
    BOB,
    Clock,
    directory,
    keeper,
    verify,
)

SERIES = [
    ("verifybot_gate_holds_total", "restrict"),
    ("verifybot_gate_holds_total", "join_request"),
    ("verifybot_gate_admissions_total", "restrict"),
    ("verifybot_gate_admissions_total", "walk_in"),
    ("verifybot_gate_removals_total", "join_request"),
    ("verifybot_gate_removals_total", "restrict"),
]


def snapshot() -> dict[str, float]:
    return {
        f"{name}{{{mode}}}": REGISTRY.get_sample_value(name, {"mode": mode}) or 0.0
        for name, mode in SERIES
    }


async def test_holds_admissions_and_removals_are_counted_by_mode(
    redis: Redis,
    key_prefix: str,
    directory: Directory,  # noqa: F811 - the fixture imported above
) -> None:
    clock = Clock()
    gatekeeper = keeper(redis, key_prefix, directory, clock)
    before = snapshot()

    await gatekeeper.arrive(ADA, "-1001", "restrict")
    await gatekeeper.arrive(BOB, "-1001", "join_request")
    verify(directory, ADA)
    await gatekeeper.verified(ADA)  # let in
    assert await gatekeeper.arrive(ADA, "-1001", "restrict") is None  # walks back in
    clock.now += 61
    assert [lapsed.verified for lapsed in await gatekeeper.lapsed()] == [False]  # Bob

    after = snapshot()
    assert {key: after[key] - before[key] for key in after} == {
        "verifybot_gate_holds_total{restrict}": 1,
        "verifybot_gate_holds_total{join_request}": 1,
        "verifybot_gate_admissions_total{restrict}": 1,
        "verifybot_gate_admissions_total{walk_in}": 1,
        "verifybot_gate_removals_total{join_request}": 1,
        "verifybot_gate_removals_total{restrict}": 0,
    }
