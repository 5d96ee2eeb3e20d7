"""Creating the SQLAlchemy engine for the directory: SQLite for one host, PostgreSQL for many."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = ["BEGIN_MODE", "DirectoryConfigError", "create_directory_engine"]

#: Execution option naming how a SQLite transaction begins: ``"IMMEDIATE"`` (the default) or
#: ``"DEFERRED"``. PostgreSQL ignores it.
BEGIN_MODE: Final = "verifybot_sqlite_begin"

_BEGIN_STATEMENTS: Final = {"IMMEDIATE": "BEGIN IMMEDIATE", "DEFERRED": "BEGIN"}
_EXPECTED: Final = "expected sqlite:///path or postgresql://user@host/db"
_PASSWORD: Final = re.compile(r"(://[^:/@]*:)[^@]*@")


class DirectoryConfigError(ValueError):
    """The database URL cannot be used; the message is one sentence fit for an operator."""


def create_directory_engine(url: str) -> Engine:
    """Create the engine for ``url``, tuned for the backend it names.

    Raises :class:`DirectoryConfigError` if ``url`` is not a SQLite or PostgreSQL URL.
    """
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    # A server that does not answer should fail the start-up, not hang it.
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": 10}
    return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)


def _parse(url: str) -> URL:
    shown = _PASSWORD.sub(r"\1***@", url)
    if not url.strip():
        raise DirectoryConfigError(f"DATABASE_URL is empty ({_EXPECTED})")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: e.g. a non-numeric port
        raise DirectoryConfigError(
            f"DATABASE_URL {shown!r} is not a database URL ({_EXPECTED})"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    backend, _, driver = parsed.drivername.partition("+")
    if backend in {"postgresql", "postgres"} and driver in {"", "psycopg"}:
        # "postgres://" is what Heroku and others hand out; psycopg 3 is the driver we ship.
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in {"", "pysqlite"}:
        if parsed.database in {None, "", ":memory:"}:
            # Every pooled connection would get its own empty database, and the race-safety
            # this module promises needs separate connections to one file.
            raise DirectoryConfigError(
                f"DATABASE_URL {shown!r} names an in-memory SQLite database, which is not "
                "supported (use sqlite:///path/to/file.db, a temporary file in tests)"
            )
        return parsed
    raise DirectoryConfigError(
        f"DATABASE_URL {shown!r} uses the unsupported driver {parsed.drivername!r} ({_EXPECTED})"
    )


def _sqlite_engine(url: URL) -> Engine:
    if not url.query.get("uri"):
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take BEGIN away from the sqlite3 module (SQLAlchemy's documented recipe), so that
        # _on_begin below decides how each transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # WAL lets readers run beside the one writer; NORMAL is durable across a crash of
            # the process (only a power loss can drop the last commits) and much faster.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes fails with "database is locked"
        # when another writer got in between (39 % lost in DEPENDENCY-NOTES), and the busy
        # timeout cannot help it. BEGIN IMMEDIATE takes the write lock up front, waiting for
        # it under the busy timeout. Immediate is the default so that a forgotten option
        # costs some concurrency rather than lost writes; reads opt into DEFERRED.
        mode = connection.get_execution_options().get(BEGIN_MODE, "IMMEDIATE")
        connection.exec_driver_sql(_BEGIN_STATEMENTS[mode])

    return engine
