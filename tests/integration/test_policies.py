"""Communities' policies on a real Redis and a real SQLite or PostgreSQL: stored as the fields a
community changed, audited, and seen by every worker within a second of a change."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.consequence import Consequence
from bot.directory import Directory
from bot.policy import LOCAL_SECONDS, CommunityPolicy, Policies

GROUP = "telegram:-1001234"
OTHER = "telegram:-1005678"
DEFAULTS = {
    "telegram": CommunityPolicy(verify_timeout=3600, log_chat="-100999"),
    "slack": CommunityPolicy(log_chat="C0LOG"),
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def directory(database_url: str) -> Iterator[Directory]:
    directory = Directory(database_url)
    directory.upgrade()
    yield directory
    directory.close()


def worker(redis: Redis, directory: Directory, key_prefix: str, clock: Clock) -> Policies:
    return Policies(redis, directory, DEFAULTS, prefix=key_prefix, clock=clock)


async def test_a_community_that_set_nothing_lives_by_its_platform_s_defaults(
    redis: Redis, directory: Directory, key_prefix: str
) -> None:
    policies = worker(redis, directory, key_prefix, Clock())
    assert await policies.policy_for(GROUP) == DEFAULTS["telegram"]
    assert await policies.policy_for("slack:T0TEAM") == DEFAULTS["slack"]


async def test_only_the_fields_a_community_changed_are_stored_and_the_rest_follow_defaults(
    redis: Redis, directory: Directory, key_prefix: str
) -> None:
    policies = worker(redis, directory, key_prefix, Clock())
    await policies.change(GROUP, "gate_mode", "join_request", actor="telegram:1:7")
    await policies.change(GROUP, "consequence", "ban:7d", actor="telegram:1:7")

    assert directory.community_policy(GROUP).overrides == {
        "gate_mode": "join_request",
        "consequence": "ban:7d",
    }
    mine = await policies.policy_for(GROUP)
    assert (mine.gate_mode, mine.consequence) == ("join_request", Consequence("ban", 7 * 86400))
    assert mine.verify_timeout == 3600  # the default, still
    assert await policies.policy_for(OTHER) == DEFAULTS["telegram"]


async def test_every_change_is_audited_with_who_what_old_and_new(
    redis: Redis, directory: Directory, key_prefix: str
) -> None:
    policies = worker(redis, directory, key_prefix, Clock())
    assert await policies.change(GROUP, "verify_timeout", "15m", actor="telegram:1:7") == (
        "1h",
        "15m",
    )
    assert await policies.change(GROUP, "verify_timeout", None, actor="telegram:1:8") == (
        "15m",
        "1h",
    )

    trail = directory.audit_trail(subject=GROUP)
    assert [(e.event, e.actor, e.details) for e in trail] == [
        ("policy_changed", "telegram:1:8", {"field": "verify_timeout", "old": "15m", "new": "1h"}),
        ("policy_changed", "telegram:1:7", {"field": "verify_timeout", "old": "1h", "new": "15m"}),
    ]
    assert directory.community_policy(GROUP).overrides == {}


async def test_a_bad_value_changes_nothing_and_says_why_in_one_line(
    redis: Redis, directory: Directory, key_prefix: str
) -> None:
    policies = worker(redis, directory, key_prefix, Clock())
    with pytest.raises(ValueError, match=r"unknown country code\(s\) NARNIA"):
        await policies.change(GROUP, "allowed_countries", "GB,Narnia", actor="telegram:1:7")
    assert directory.community_policy(GROUP).revision == 0
    assert directory.audit_trail(subject=GROUP) == []


async def test_a_change_reaches_another_worker_once_its_own_copy_lapses(
    redis: Redis, directory: Directory, key_prefix: str
) -> None:
    clock = Clock()
    first, second = (worker(redis, directory, key_prefix, clock) for _ in range(2))
    assert (await second.policy_for(GROUP)).blocked_countries == frozenset()  # copied

    await first.change(GROUP, "blocked_countries", "FR", actor="telegram:1:7")

    assert (await first.policy_for(GROUP)).blocked_countries == {"FR"}  # at once, here
    clock.now += LOCAL_SECONDS + 0.01  # LOCAL_SECONDS < 1 s: "within a second"
    assert (await second.policy_for(GROUP)).blocked_countries == {"FR"}


async def test_a_reader_that_raced_a_change_cannot_put_the_old_policy_back(
    redis: Redis, directory: Directory, key_prefix: str
) -> None:
    clock = Clock()
    writer, reader = (worker(redis, directory, key_prefix, clock) for _ in range(2))
    await writer.change(GROUP, "gate_mode", "off", actor="telegram:1:7")
    stale = directory.community_policy(GROUP)  # read just before the next change...
    await writer.change(GROUP, "gate_mode", "join_request", actor="telegram:1:7")
    await reader._cache(GROUP, stale)  # ...and cached just after it

    clock.now += 1
    assert (await reader.policy_for(GROUP)).gate_mode == "join_request"


async def test_the_cache_is_rebuilt_from_the_directory_when_redis_forgot_it(
    redis: Redis, directory: Directory, key_prefix: str
) -> None:
    clock = Clock()
    policies = worker(redis, directory, key_prefix, clock)
    await policies.change(GROUP, "max_accounts_per_phone", "3", actor="telegram:1:7")
    await redis.delete(f"{key_prefix}policy:{GROUP}")
    clock.now += 1
    assert (await policies.policy_for(GROUP)).max_accounts_per_phone == 3
    assert await redis.ttl(f"{key_prefix}policy:{GROUP}") > 0


def test_the_groups_the_bot_is_in_are_kept_as_it_is_added_and_removed(
    directory: Directory,
) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    directory.record_group("-1001", "Chess club", now=now)
    directory.record_group("-1002", "Book club", now=now)
    directory.record_group("-1001", "Chess club (new name)", now=now)
    directory.forget_group("-1002")
    assert [(g.chat_id, g.title) for g in directory.groups()] == [
        ("-1001", "Chess club (new name)")
    ]


def test_migration_0006_downgrades_and_upgrades_again(directory: Directory) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from bot.directory.directory import alembic_config

    def run(step: Callable[[Any, str], None], target: str) -> None:
        with directory.engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            step(config, target)

    run(command.downgrade, "0004")
    assert not {"community_policies", "telegram_groups"} & set(
        inspect(directory.engine).get_table_names()
    )
    run(command.upgrade, "head")
    assert {"community_policies", "telegram_groups"} <= set(
        inspect(directory.engine).get_table_names()
    )
