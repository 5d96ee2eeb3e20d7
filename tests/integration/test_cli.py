"""The ``verifybot`` command line, run as an operator would, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from bot.directory import Directory
from bot.directory.directory import alembic_config
from bot.identity import MemberKey
from tests.conftest import unconfigured_environment

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


environment = unconfigured_environment


def verifybot(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "verifybot", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def members(database_url: str) -> str:
    directory = Directory(database_url)
    directory.upgrade()
    directory.record_verified(
        MemberKey("telegram", "bot1", "1001"), phone_e164="+447400123456", country="GB",
        display_name="Alice", now=NOW,
    )  # fmt: skip
    directory.record_verified(
        MemberKey("slack", "T1", "U2"), phone_e164="+14155552671", country="US",
        display_name="Bob", now=NOW,
    )  # fmt: skip
    directory.close()
    return database_url


def test_users_list_in_every_format_masks_phones(members: str, tmp_path: Path) -> None:
    env = environment(DATABASE_URL=members)
    table = verifybot("users", "list", env=env, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "+44•••••3456" in table.stdout and "Alice" in table.stdout
    assert "7400123456" not in table.stdout

    as_json = json.loads(
        verifybot("users", "list", "--format", "json", env=env, cwd=tmp_path).stdout
    )
    assert {row["user_id"] for row in as_json} == {"1001", "U2"}
    assert all(row["verified"] for row in as_json)

    slack_csv = verifybot(
        "users", "list", "--platform", "slack", "--format", "csv", env=env, cwd=tmp_path
    )
    rows = list(csv.DictReader(io.StringIO(slack_csv.stdout)))
    assert [(r["platform"], r["user_id"], r["phone"]) for r in rows] == [
        ("slack", "U2", "+1•••••2671")
    ]


def test_users_show_one_member(members: str, tmp_path: Path) -> None:
    env = environment(DATABASE_URL=members)
    shown = verifybot(
        "users", "show", "telegram", "1001", "--format", "json", env=env, cwd=tmp_path
    )
    assert shown.returncode == 0, shown.stderr
    (row,) = json.loads(shown.stdout)
    assert (row["scope"], row["phone"], row["verified_at"]) == (
        "bot1",
        "+44•••••3456",
        NOW.isoformat(),
    )
    missing = verifybot("users", "show", "telegram", "nobody", env=env, cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "verifybot: no member nobody on telegram"


def test_db_upgrade_creates_the_schema(database_url: str, tmp_path: Path) -> None:
    result = verifybot("db", "upgrade", env=environment(DATABASE_URL=database_url), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert f"is at revision {head}" in result.stdout
    assert Directory(database_url).revision() == head


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "sqlite:////proc/verifybot/y.db"}, "cannot open the database"),
        ({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/db"}, "cannot open the database"),
        ({"REDIS_URL": "localhost"}, "REDIS_URL: must start with redis://"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "cannot reach Redis at redis://127.0.0.1:1/0"),
        ({"VONAGE_APPLICATION_ID": "a1b2c3d4-0000-4000-8000-0123456789ab",
          "VONAGE_PRIVATE_KEY_PATH": "/nonexistent/key"}, "cannot read it"),
    ],
)  # fmt: skip
def test_bad_configuration_is_one_line_never_a_traceback(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = verifybot("db", "upgrade", env=environment(**env), cwd=tmp_path)
    if "VONAGE" in "".join(env) or "redis://" in env.get("REDIS_URL", ""):
        result = verifybot("console", env=environment(**env), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_doctor_reports_each_check(tmp_path: Path, redis_url: str) -> None:
    env = environment(DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}", REDIS_URL=redis_url)
    healthy = verifybot("doctor", env=env, cwd=tmp_path)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    for name in ("settings", "texts", "vonage", "redis", "database"):
        assert f"✓ {name}:" in healthy.stdout
    assert "sandbox" in healthy.stdout
    assert (
        "✓ health: /healthz /readyz /metrics on 0.0.0.0: Telegram (long polling) nowhere "
        "(HEALTH_PORT is unset); Slack HTTP mode PORT 8080, Socket Mode nowhere (HEALTH_PORT "
        "is unset)"
    ) in healthy.stdout
    served = verifybot("doctor", env={**env, "HEALTH_PORT": "9102"}, cwd=tmp_path)
    assert "Telegram (long polling) HEALTH_PORT 9102;" in served.stdout
    assert "Socket Mode HEALTH_PORT 9102" in served.stdout
    hooked = {**env, "HEALTH_PORT": "9102", "TELEGRAM_WEBHOOK_URL": "https://x.org/tg"}
    assert "Telegram (webhook) PORT 8080;" in verifybot("doctor", env=hooked, cwd=tmp_path).stdout
    broken = environment(
        REDIS_URL="redis://127.0.0.1:1/0",
        VONAGE_APPLICATION_ID="not-an-id",
        VONAGE_PRIVATE_KEY="x",
        DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}",
    )
    sick = verifybot("doctor", env=broken, cwd=tmp_path)
    assert sick.returncode == 1
    assert "✗ redis: cannot reach Redis at redis://127.0.0.1:1/0" in sick.stdout
    assert "✗ vonage: VONAGE_APPLICATION_ID 'not-an-id' is not an application id" in sick.stdout


def test_run_telegram_refuses_to_start_without_what_it_needs(tmp_path: Path) -> None:
    no_token = verifybot("run", "telegram", env=environment(), cwd=tmp_path)
    assert no_token.returncode == 2
    assert no_token.stderr.strip().splitlines() == [
        "verifybot: TELEGRAM_BOT_TOKEN is not set: create a bot with @BotFather and put its "
        "token in .env (see config/.env.example)"
    ]
    token = environment(TELEGRAM_BOT_TOKEN="123:abc")
    no_url = verifybot("run", "telegram", "--webhook", env=token, cwd=tmp_path)
    assert no_url.returncode == 2 and "TELEGRAM_WEBHOOK_URL" in no_url.stderr
    hooked = environment(TELEGRAM_BOT_TOKEN="123:abc", TELEGRAM_WEBHOOK_URL="https://x.org/tg")
    no_secret = verifybot("run", "telegram", env=hooked, cwd=tmp_path)
    assert no_secret.returncode == 2 and "TELEGRAM_WEBHOOK_SECRET" in no_secret.stderr
    wrong_flag = verifybot("run", "telegram", "--socket", env=token, cwd=tmp_path)
    assert wrong_flag.returncode == 2 and "--socket is for slack" in wrong_flag.stderr
    unknown = verifybot("run", "irc", env=environment(), cwd=tmp_path)
    assert unknown.returncode == 2 and "irc" in unknown.stderr


def test_a_health_port_in_use_is_one_line(tmp_path: Path, redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = environment(
            TELEGRAM_BOT_TOKEN="123:abc",
            REDIS_URL=redis_url,
            DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}",
            LISTEN_HOST="127.0.0.1",
            HEALTH_PORT=str(port),
        )
        result = verifybot("run", "telegram", env=env, cwd=tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"verifybot: cannot listen on HEALTH_PORT {port}: "), last
    assert last.endswith("address already in use")
    assert "Traceback" not in result.stderr


def test_help_explains_every_command(tmp_path: Path) -> None:
    result = verifybot("--help", env=environment(), cwd=tmp_path)
    for command in ("console", "run", "doctor", "users", "db", "flow"):
        assert command in result.stdout
    console = verifybot("console", "--help", env=environment(), cwd=tmp_path)
    assert "sandbox verifier" in console.stdout
