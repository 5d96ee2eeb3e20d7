"""The directory's SQLite dialect: pysqlite, beginning transactions its own way (engine.py
registers it; SQLAlchemy imports this module only for a SQLite URL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import Connection

from bot.directory.engine import BEGIN_MODE

__all__ = ["SQLiteDialect"]

_BEGIN_STATEMENTS: Final = {"IMMEDIATE": "BEGIN IMMEDIATE", "DEFERRED": "BEGIN", "NONE": None}


class SQLiteDialect(SQLiteDialect_pysqlite):
    """pysqlite, each transaction begun as its connection's ``BEGIN_MODE`` says.

    SQLAlchemy's recipe emits BEGIN from a ``"begin"`` event, but any connection event on an
    engine makes it dispatch its events around every statement: ~30 µs of CPU per call, a
    quarter of a member's lone read (bench/README.md). The dialect's own hooks cost nothing.
    """

    supports_statement_cache = True  # SQLAlchemy asks each subclass; it compiles as its base

    def set_connection_execution_options(
        self, connection: Connection, opts: Mapping[str, Any]
    ) -> None:
        super().set_connection_execution_options(connection, opts)
        if BEGIN_MODE in opts:
            # Kept with the pooled connection until it is checked in (``_forget_begin_mode``).
            connection.connection.info[BEGIN_MODE] = opts[BEGIN_MODE]

    def do_begin(self, dbapi_connection: Any) -> None:
        # A deferred transaction that reads and then writes fails with "database is locked"
        # when another writer got in between (39 % lost in DEPENDENCY-NOTES), and the busy
        # timeout cannot help it. BEGIN IMMEDIATE takes the write lock up front, waiting for
        # it under the busy timeout. Immediate is the default so that a forgotten option
        # costs some concurrency rather than lost writes; reads opt into DEFERRED.
        begin = _BEGIN_STATEMENTS[dbapi_connection.info.get(BEGIN_MODE, "IMMEDIATE")]
        if begin is not None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(begin)
            finally:
                cursor.close()
