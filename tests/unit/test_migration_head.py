"""The directory skips alembic when the database is at the newest migration; "newest" is read
from the migrations' file names, which must agree with alembic's own view of the head."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from bot.directory.directory import alembic_config, newest_migration


def test_the_newest_migration_by_file_name_is_alembics_head() -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert newest_migration() == head
