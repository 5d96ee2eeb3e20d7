"""``verifybot users export|unlink`` and ``verifybot roles list|grant|revoke|sync``, run as an
operator would, on SQLite and PostgreSQL. No platform token is set here, so grants are recorded
and reported as not applied; tests/e2e covers the platforms."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.directory import Directory
from bot.identity import MemberKey
from tests.integration.test_cli import environment, verifybot

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ALICE = MemberKey("telegram", "bot1", "1001")
ROLES = {
    "roles": {
        "helper": {"description": "Helps newcomers", "telegram": {"chats": [-1001]}},
        "verified": {"slack": {"channels": ["C01"], "usergroup": "S01"}},
    }
}


@pytest.fixture
def database(database_url: str) -> str:
    directory = Directory(database_url)
    directory.upgrade()
    directory.record_verified(
        ALICE, phone_e164="+447400123456", country="GB", display_name="=HYPERLINK(1)", now=NOW
    )
    directory.record_verified(
        MemberKey("slack", "T1", "U2"), phone_e164="+14155552671", country="US",
        display_name="Bob", now=NOW,
    )  # fmt: skip
    directory.close()
    return database_url


@pytest.fixture
def env(database: str) -> dict[str, str]:
    return environment(DATABASE_URL=database, ROLES=json.dumps(ROLES))


def audit(database: str) -> list[tuple[str, str]]:
    directory = Directory(database)
    try:
        return [(e.event, e.actor) for e in directory.audit_trail()]
    finally:
        directory.close()


def test_export_masks_phones_and_revealing_them_is_audited(
    database: str, env: dict[str, str], tmp_path: Path
) -> None:
    masked = verifybot("users", "export", env=env, cwd=tmp_path)
    assert masked.returncode == 0, masked.stderr
    rows = list(csv.DictReader(io.StringIO(masked.stdout)))
    assert [(r["user_id"], r["phone"]) for r in rows] == [
        ("1001", "+44•••••3456"),
        ("U2", "+1•••••2671"),
    ]
    # A member's chosen name never runs as a spreadsheet formula.
    assert rows[0]["display_name"] == "'=HYPERLINK(1)"

    out = tmp_path / "members.json"
    revealed = verifybot(
        "users", "export", "--reveal-phones", "--platform", "slack", "--format", "json",
        "--output", str(out), env=env, cwd=tmp_path,
    )  # fmt: skip
    assert revealed.returncode == 0, revealed.stderr
    assert [row["phone"] for row in json.loads(out.read_text())] == ["+14155552671"]
    events = audit(database)
    assert [event for event, _ in events[:2]] == ["phones_revealed", "exported"]
    assert all(actor.startswith("cli:") for _, actor in events[:2])


def test_roles_are_listed_with_what_they_open(env: dict[str, str], tmp_path: Path) -> None:
    listed = verifybot("roles", "list", "--format", "json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [
        (r["role"], r["telegram_chats"], r["slack_usergroup"]) for r in json.loads(listed.stdout)
    ] == [
        ("helper", "-1001", ""),
        ("verified", "", "S01"),
    ]
    none = verifybot("roles", "list", env=environment(ROLES='{"roles": {}}'), cwd=tmp_path)
    assert "no roles defined" in none.stdout


def test_grant_and_revoke_are_recorded_and_say_what_was_not_applied(
    database: str, env: dict[str, str], tmp_path: Path
) -> None:
    granted = verifybot("roles", "grant", "telegram", "1001", "helper", env=env, cwd=tmp_path)
    assert granted.returncode == 0, granted.stderr
    assert "Gave =HYPERLINK(1) (1001) the role helper." in granted.stdout
    assert "not connected to telegram" in granted.stdout
    shown = json.loads(
        verifybot(
            "users", "show", "telegram", "1001", "--format", "json", env=env, cwd=tmp_path
        ).stdout
    )
    assert shown[0]["roles"] == ["helper"]
    revoked = verifybot("roles", "revoke", "telegram", "1001", "helper", env=env, cwd=tmp_path)
    assert revoked.returncode == 0 and "Took the role helper" in revoked.stdout
    assert [event for event, _ in audit(database)[:2]] == ["role_revoked", "role_granted"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("telegram", "1001", "boss"), "There is no role called boss. Roles: helper, verified."),
        (("telegram", "999", "helper"), "verifybot: no member 999 on telegram"),
    ],
)
def test_a_grant_that_cannot_be_is_refused_with_exit_1(
    env: dict[str, str], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    refused = verifybot("roles", "grant", *args, env=env, cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip() == message


def test_unlink_asks_first_then_removes_verification_and_roles(
    database: str, env: dict[str, str], tmp_path: Path
) -> None:
    verifybot("roles", "grant", "telegram", "1001", "helper", env=env, cwd=tmp_path)
    kept = subprocess.run(
        [sys.executable, "-m", "verifybot", "users", "unlink", "telegram", "1001"],
        input="n\n", env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert "Remove the verification and roles of telegram:bot1:1001?" in kept.stdout
    assert kept.returncode == 1 and "nothing was changed" in kept.stderr
    unlinked = verifybot("users", "unlink", "telegram", "1001", "--yes", env=env, cwd=tmp_path)
    assert unlinked.returncode == 0, unlinked.stderr
    assert "is no longer verified" in unlinked.stdout
    directory = Directory(database)
    try:
        link = directory.find(ALICE)
    finally:
        directory.close()
    assert link is not None and not link.is_phone_verified and link.roles == ()


def test_sync_without_platform_tokens_says_what_it_skipped(
    env: dict[str, str], tmp_path: Path
) -> None:
    verifybot("roles", "grant", "telegram", "1001", "helper", env=env, cwd=tmp_path)
    synced = verifybot("roles", "sync", env=env, cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert "skipped telegram: its bot token is not set here" in synced.stderr
    assert "applied 0 grant(s), 0 step(s) failed" in synced.stdout


def test_a_broken_roles_file_is_one_line(tmp_path: Path) -> None:
    broken = verifybot(
        "roles", "list", env=environment(ROLES_FILE=str(tmp_path / "nope.toml")), cwd=tmp_path
    )
    assert broken.returncode == 2
    assert broken.stderr.strip().splitlines() == [
        f"verifybot: ROLES_FILE {tmp_path / 'nope.toml'} does not exist"
    ]
