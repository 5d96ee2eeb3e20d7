"""Creating the SQLAlchemy engine for the directory: SQLite for one host, PostgreSQL for many."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import registry
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

__all__ = [
    "BEGIN_MODE",
    "POOL_CAPACITY",
    "DirectoryConfigError",
    "create_directory_engine",
    "create_lane_engine",
]

#: Execution option naming how a SQLite transaction begins: ``"IMMEDIATE"`` (the default),
#: ``"DEFERRED"``, or ``"NONE"`` for one read statement, which SQLite runs as a transaction of
#: its own (one consistent snapshot) with no BEGIN and COMMIT to pay for. PostgreSQL ignores it.
BEGIN_MODE: Final = "verifybot_sqlite_begin"

_EXPECTED: Final = "expected sqlite:///path or postgresql://user@host/db"
_PASSWORD: Final = re.compile(r"(://[^:/@]*:)[^@]*@")

_POOL_SIZE: Final = 5
_MAX_OVERFLOW: Final = 10
#: Connections one engine may hold at once (SQLAlchemy's defaults, spelt out): the directory
#: runs at most this many calls at a time, so no call of its own waits for the pool.
POOL_CAPACITY: Final = _POOL_SIZE + _MAX_OVERFLOW
#: How long a migration waits for another process's migration (SQLite's busy timeout).
_MIGRATION_WAIT_MS: Final = 10 * 60 * 1000


class DirectoryConfigError(ValueError):
    """The database URL cannot be used; the message is one sentence fit for an operator."""


def create_directory_engine(url: str, *, timeout: float | None = 5.0) -> Engine:
    """Create the engine for ``url``, tuned for the backend it names.

    ``timeout`` bounds, in seconds, each wait on the database: connecting, checking a
    connection out of the pool, a statement (a lock wait included) and, on SQLite, the write
    lock. ``None`` is for migrations, which may take long and wait for each other.

    Raises :class:`DirectoryConfigError` if ``url`` is not a SQLite or PostgreSQL URL.
    """
    parsed = _parse(url)
    pool: dict[str, Any] = {"pool_size": _POOL_SIZE, "max_overflow": _MAX_OVERFLOW}
    if timeout is not None:
        pool["pool_timeout"] = timeout
    if parsed.get_backend_name() == "sqlite":
        busy_ms = _MIGRATION_WAIT_MS if timeout is None else round(timeout * 1000)
        return _sqlite_engine(parsed, busy_ms=busy_ms, **pool)
    return create_engine(
        parsed, pool_pre_ping=True, connect_args=_postgresql_args(parsed, timeout), **pool
    )


def create_lane_engine(url: str) -> Engine | None:
    """For a SQLite ``url``, an engine of one connection that never waits: no busy timeout
    (a lock held elsewhere fails at once, "database is locked") and no automatic checkpoint
    (the directory has one run on its threads). ``None`` for PostgreSQL, whose calls may
    always wait on the network. Only the event loop's thread uses it (``Directory.run_here``).
    """
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    return _sqlite_engine(parsed, busy_ms=0, autocheckpoint=False, poolclass=StaticPool)


def _postgresql_args(url: URL, timeout: float | None) -> dict[str, Any]:
    """libpq parameters that keep a partitioned or hung server from holding a thread forever.

    A hung TCP connection never reaches the server, so the server's statement_timeout alone
    cannot end the wait: TCP keepalives find a dead idle connection and tcp_user_timeout
    drops one whose sent data goes unacknowledged (libpq "Parameter Key Words";
    tcp_user_timeout is in milliseconds, connect_timeout in whole seconds, at least 2).
    Anything already in the URL's query wins.
    """
    # A server that does not answer should fail the start-up, not hang it.
    seconds = 10 if timeout is None else max(2, math.ceil(timeout))
    args: dict[str, Any] = {
        "connect_timeout": seconds,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": seconds * 1000,
    }
    args = {name: value for name, value in args.items() if name not in url.query}
    if timeout is not None:
        ms = round(timeout * 1000)
        # A stuck client must not keep its row and advisory locks from other workers either.
        limits = f"-c statement_timeout={ms} -c idle_in_transaction_session_timeout={2 * ms}"
        given = url.query.get("options")
        # This replaces the URL's own options, so they go along, last: the last -c wins.
        args["options"] = f"{limits} {given}" if isinstance(given, str) else limits
    return args


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


#: pysqlite with the directory's BEGIN (bot/directory/_sqlite.py), imported only for SQLite.
_SQLITE_DRIVER: Final = "sqlite+verifybot"
registry.register("sqlite.verifybot", "bot.directory._sqlite", "SQLiteDialect")


def _sqlite_engine(url: URL, *, busy_ms: int, autocheckpoint: bool = True, **pool: Any) -> Engine:
    if not url.query.get("uri"):
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url.set(drivername=_SQLITE_DRIVER), **pool)

    # Pool events: unlike connection events, they cost nothing per statement.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take BEGIN away from the sqlite3 module (SQLAlchemy's documented recipe), so that
        # SQLiteDialect.do_begin (_sqlite.py) decides how each transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # First: switching a new file to WAL needs a lock that another process opening
            # it at the same moment may hold.
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            # WAL lets readers run beside the one writer; NORMAL is durable across a crash of
            # the process (only a power loss can drop the last commits) and much faster.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            if not autocheckpoint:
                cursor.execute("PRAGMA wal_autocheckpoint=0")
        finally:
            cursor.close()

    @event.listens_for(engine, "checkin")
    def _forget_begin_mode(_dbapi: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
        # A mode belongs to one checkout, as execution options to one Connection.
        record.info.pop(BEGIN_MODE, None)

    return engine
