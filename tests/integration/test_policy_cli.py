"""``verifybot policy show|set|reset``, run as an operator would: the same ``Policies`` as
``/settings`` (parsed alike, audited, and every worker's cached copy replaced at once)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.directory import Directory
from bot.policy import CommunityPolicy, Policies
from tests.conftest import unconfigured_environment
from tests.integration.test_cli import verifybot
from tests.integration.test_policies import Clock

GROUP = "telegram:-1001234567890"
ROLES = {"roles": {"helper": {"telegram": {"chats": [-1001]}}, "elder": {}}}


@pytest.fixture
def env(tmp_path: Path, redis_url: str, key_prefix: str) -> dict[str, str]:
    return unconfigured_environment(
        REDIS_URL=redis_url,
        REDIS_PREFIX=key_prefix,
        DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}",
        TELEGRAM_LOG_CHAT_ID="-100999",
        AUTO_ROLES="elder",
        ROLES=json.dumps(ROLES),
    )


def shown(env: dict[str, str], cwd: Path) -> dict[str, tuple[str, str]]:
    result = verifybot("policy", "show", GROUP, "--format", "json", env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return {row["field"]: (row["value"], row["from"]) for row in json.loads(result.stdout)}


async def test_an_operator_sets_shows_and_resets_a_group_s_fields_and_workers_see_it_at_once(
    env: dict[str, str], tmp_path: Path, redis: Redis, key_prefix: str
) -> None:
    before = shown(env, tmp_path)
    assert before["log_chat"] == ("-100999", "default")
    assert before["auto_roles"] == ("elder", "default")
    assert before["gate_mode"] == ("restrict", "default")
    # A worker has the group's policy cached (Redis and its own copy) before the change.
    directory = Directory(env["DATABASE_URL"])
    clock = Clock()
    worker = Policies(
        redis, directory, {"telegram": CommunityPolicy()}, prefix=key_prefix, clock=clock
    )
    assert (await worker.policy_for(GROUP)).auto_roles == ()

    for field, value in (("auto_roles", "helper"), ("log_chat", "-100555")):
        result = verifybot("policy", "set", GROUP, field, value, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{GROUP}: log_chat is now -100555 (was -100999)"
    after = shown(env, tmp_path)
    assert after["auto_roles"] == ("helper", "community")
    assert after["log_chat"] == ("-100555", "community")
    clock.now += 1  # past the worker's own copy: Redis already has the change
    assert (await worker.policy_for(GROUP)).auto_roles == ("helper",)

    reset = verifybot("policy", "reset", GROUP, "log_chat", env=env, cwd=tmp_path)
    assert reset.returncode == 0, reset.stderr
    assert shown(env, tmp_path)["log_chat"] == ("-100999", "default")

    trail = directory.audit_trail(subject=GROUP)
    directory.close()
    assert [(e.details["field"], e.details["new"]) for e in reversed(trail)] == [
        ("auto_roles", "helper"),
        ("log_chat", "-100555"),
        ("log_chat", "-100999"),  # back to the default
    ]
    assert {e.actor.split(":")[0] for e in trail} == {"cli"}
    assert all(e.actor.endswith(f":{getpass.getuser()}") for e in trail)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("set", "-1001234", "gate_mode", "off"), "'-1001234' is not a community: use telegram:"),
        (("set", GROUP, "colour", "red"), "unknown policy field 'colour' (one of gate_mode,"),
        (("set", GROUP, "gate_mode", "sometimes"), "'sometimes' is not one of restrict, join_"),
        (("set", GROUP, "log_chat", "#mods"), "use a chat id like -1001234567890 or a channel"),
        (("set", GROUP, "auto_roles", "admin"), "undefined role(s) admin (elder, helper)"),
        (("reset", "irc:#chan", "gate_mode"), "'irc:#chan' is not a community"),
    ],
)
def test_bad_input_is_refused_in_one_line_with_exit_2(
    env: dict[str, str], tmp_path: Path, args: tuple[str, ...], problem: str
) -> None:
    result = verifybot("policy", *args, env=env, cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"verifybot: {problem}")
    directory = Directory(env["DATABASE_URL"])
    try:
        directory.upgrade()
        assert directory.community_policy(GROUP).overrides == {}
    finally:
        directory.close()
