"""``verifybot roles grant|sync`` and ``users unlink`` outside the running bot: the real
command in a subprocess, the real slack-sdk against the Slack emulator. The database says
who holds what; the command line makes the platform match it, and says what it could not do."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.directory import Directory
from bot.identity import MemberKey
from tests.conftest import unconfigured_environment
from tests.e2e.slack_harness import TEAM, find_specs
from tests.emulators.slack import SlackEmulator

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ALICE = "U0ALICE001"
BOB = "U0BOB00001"
ROLES = {
    "roles": {
        "helper": {"slack": {"channels": ["C0HELPERS1"], "usergroup": "S0HELPERS1"}},
        "mentor": {"slack": {"channels": ["C0HELPERS1"]}},
    }
}


async def verifybot(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "verifybot", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator(find_specs() / "slack-web-api.openapi.json") as emu:
        emu.add_user(ALICE, name="alice")
        emu.add_user(BOB, name="bob")
        emu.add_channel("C0HELPERS1", name="helpers")
        emu.add_channel("C0MODLOG01", name="mods")
        emu.usergroups["S0HELPERS1"] = [BOB]
        yield emu
        assert emu.internal_errors == []


@pytest.fixture
def env(slack: SlackEmulator, tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'verifybot.db'}"
    directory = Directory(url)
    directory.upgrade()
    directory.record_verified(
        MemberKey("slack", TEAM, ALICE), phone_e164="+447400123456", country="GB",
        display_name="Alice", now=NOW,
    )  # fmt: skip
    directory.close()
    return unconfigured_environment(
        DATABASE_URL=url,
        ROLES=json.dumps(ROLES),
        SLACK_BOT_TOKEN=slack.bot_token,
        SLACK_API_BASE_URL=slack.url,
        SLACK_LOG_CHANNEL="C0MODLOG01",
    )


async def test_a_grant_from_the_command_line_is_applied_on_slack_and_logged(
    slack: SlackEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    code, out, err = await verifybot(
        "roles", "grant", "slack", ALICE, "helper", env=env, cwd=tmp_path
    )
    assert code == 0, err
    assert out.strip() == f"Gave Alice ({ALICE}) the role helper."
    assert ALICE in slack.channels["C0HELPERS1"].members
    assert slack.usergroups["S0HELPERS1"] == [BOB, ALICE]  # read, added to, written back
    (line,) = [m["text"] for m in slack.messages["C0MODLOG01"]]
    assert "gave Alice" in line and "helper" in line and "(command line)" in line


async def test_sync_reports_an_archived_channel_and_applies_once_it_is_back(
    slack: SlackEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    slack.channels["C0HELPERS1"].archived = True
    code, out, err = await verifybot(
        "roles", "grant", "slack", ALICE, "helper", env=env, cwd=tmp_path
    )
    assert code == 0, err
    assert "C0HELPERS1: the channel is archived." in out
    assert "verifybot roles sync" in out

    code, out, err = await verifybot("roles", "sync", env=env, cwd=tmp_path)
    assert code == 1
    assert f"slack:{TEAM}:{ALICE} helper: C0HELPERS1: the channel is archived." in err
    assert "applied 1 grant(s), 1 step(s) failed" in out

    slack.channels["C0HELPERS1"].archived = False
    code, out, err = await verifybot("roles", "sync", "--platform", "slack", env=env, cwd=tmp_path)
    assert code == 0, err
    assert "applied 1 grant(s), 0 step(s) failed" in out
    assert ALICE in slack.channels["C0HELPERS1"].members


async def test_unlinking_from_the_command_line_undoes_the_roles_on_slack(
    slack: SlackEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    await verifybot("roles", "grant", "slack", ALICE, "helper", env=env, cwd=tmp_path)
    code, out, err = await verifybot(
        "users", "unlink", "slack", ALICE, "--yes", env=env, cwd=tmp_path
    )
    assert code == 0, err
    assert f"Alice ({ALICE}) is no longer verified" in out
    assert ALICE not in slack.channels["C0HELPERS1"].members
    assert slack.usergroups["S0HELPERS1"] == [BOB]
    assert "removed Alice" in slack.messages["C0MODLOG01"][-1]["text"]


async def test_revoking_one_role_keeps_the_channels_another_role_still_opens(
    slack: SlackEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    for role in ("helper", "mentor"):
        await verifybot("roles", "grant", "slack", ALICE, role, env=env, cwd=tmp_path)
    code, _, err = await verifybot(
        "roles", "revoke", "slack", ALICE, "helper", env=env, cwd=tmp_path
    )
    assert code == 0, err
    assert ALICE in slack.channels["C0HELPERS1"].members  # "mentor" still opens it
    assert slack.usergroups["S0HELPERS1"] == [BOB]  # only "helper" gave the group
