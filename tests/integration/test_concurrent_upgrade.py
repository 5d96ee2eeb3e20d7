"""Two ``verifybot db upgrade`` processes started together (two release jobs, or a release job
and a worker migrating at start) end at one schema version, and neither fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from bot.directory import create_directory_engine
from bot.directory.directory import alembic_config
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
