"""Two ``verifybot db upgrade`` processes started together (two release jobs, or a release job
and a worker migrating at start) end at one schema version, and neither fails."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from bot.directory import Directory, create_directory_engine
from bot.directory.directory import alembic_config, newest_migration
from bot.directory.models import Base
from tests.conftest import unconfigured_environment

#: Fresh databases per backend; a race that a lock prevents may still be won by luck once.
ROUNDS = 4


def upgrade_process(database_url: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "db", "upgrade"],
        env=unconfigured_environment(DATABASE_URL=database_url),
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_upgrades_at_once_end_at_one_version(
    database_url: str, tmp_path: Path, round_: int
) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    first, second = (upgrade_process(database_url, tmp_path) for _ in range(2))
    for process in (first, second):
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
        assert f"is at revision {head}" in stdout

    engine = create_directory_engine(database_url)
    try:
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version"))
            assert [row[0] for row in versions] == [head]
            tables = inspect(connection).get_table_names()
        assert sorted(tables) == sorted([*Base.metadata.tables, "alembic_version"])
    finally:
        engine.dispose()


def test_an_upgrade_waits_for_a_process_holding_the_file_past_its_timeout(
    tmp_path: Path,
) -> None:
    """SQLite: another process holds the file (migrating it, or turning it to WAL) for longer
    than the directory's own timeout. The upgrade waits for it instead of failing the start
    with "database is locked", as a release job racing a worker's start once did on CI."""
    path = tmp_path / "directory.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    directory = Directory(f"sqlite:///{path}", timeout=0.2)
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            directory.upgrade()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    upgrading = threading.Thread(target=upgrade)
    upgrading.start()
    try:
        time.sleep(1.0)  # five times the directory's timeout: a wait, not a failure
        assert errors == []
        assert upgrading.is_alive()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        upgrading.join(60)
    try:
        assert errors == []
        assert directory.revision() == newest_migration()
    finally:
        directory.close()
