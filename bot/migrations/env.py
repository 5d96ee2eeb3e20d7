"""Alembic environment for the directory.

``Directory.upgrade()`` configures Alembic in code and hands over an open connection, inside a
transaction it owns, through ``config.attributes["connection"]``; no alembic.ini is needed.
Without one, the engine is built from the ``sqlalchemy.url`` option.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from bot.directory.directory import lock_migrations
from bot.directory.engine import create_directory_engine
from bot.directory.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    # Two processes migrating at once (two release jobs, a release job and a starting bot):
    # the second waits here, then reads the version the first committed and does nothing.
    # The lock lasts until the caller's transaction ends, so it covers the version stamp.
    lock_migrations(connection)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass config.attributes['connection']")
    engine = create_directory_engine(url, timeout=None)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
