"""How the admins' queries scale: /stats, /verified pages and /export over a large directory.

Fills a temporary SQLite database (and PostgreSQL when ``TEST_POSTGRES_URL`` is set: a fresh
database, dropped at the end) with ``--members`` verified members and five audit entries
each (a code sent, a resend, the verification and two grants), then times each query.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert
from sqlalchemy.engine import make_url

from bot.directory import Directory
from bot.directory.models import AuditRow, PhoneLinkRow, RoleGrantRow
from bot.report import export_rows, render

NOW = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


def fill(directory: Directory, members: int) -> None:
    """Bulk rows, as years of use would leave them (the ORM per row would take minutes)."""
    links: list[dict[str, Any]] = []
    audit: list[dict[str, Any]] = []
    grants: list[dict[str, Any]] = []
    for n in range(members):
        at = NOW - timedelta(minutes=n)
        subject = f"telegram:42:{100000 + n}"
        links.append(
            {"id": n + 1, "platform": "telegram", "scope": "42", "user_id": str(100000 + n),
             "display_name": f"Member {n}", "phone_e164": f"+4477{n:08d}", "country": "GB",
             "is_phone_verified": True, "verified_at": at, "created_at": at, "updated_at": at}
        )  # fmt: skip
        for event in ("code_sent", "code_resent", "verified", "role_granted", "role_granted"):
            audit.append({"at": at, "event": event, "actor": subject, "subject": subject,
                          "details": {}})  # fmt: skip
        grants.append(
            {"link_id": n + 1, "role": "verified", "granted_by": "auto", "granted_at": at}
        )
    with directory.engine.begin() as connection:
        for table, rows in ((PhoneLinkRow, links), (AuditRow, audit), (RoleGrantRow, grants)):
            for start in range(0, len(rows), 5000):
                connection.execute(insert(table), rows[start : start + 5000])


def timed(label: str, call: Callable[[], Any], repeat: int = 3) -> None:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    print(f"  {label:<34} {best * 1000:9.1f} ms")


def databases() -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as folder:
        yield "sqlite", f"sqlite:///{Path(folder) / 'bench.db'}"
    server = os.environ.get("TEST_POSTGRES_URL")
    if server:
        admin = create_engine(
            make_url(server).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
        )
        name = f"verifybot_bench_{secrets.token_hex(6)}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield "postgresql", make_url(server).set(database=name).render_as_string(False)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()


def measure(directory: Directory, members: int) -> None:
    where: dict[str, Any] = {"platform": "telegram", "scope": "42"}
    timed("/stats", lambda: directory.stats(**where, now=NOW))
    timed(
        "/verified page 1 (count + 10)",
        lambda: (
            directory.count_members(**where, verified_only=True),
            directory.list_links(**where, verified_only=True, limit=10),
        ),
    )
    timed(
        "/verified last page",
        lambda: directory.list_links(**where, verified_only=True, offset=members - 10, limit=10),
    )
    timed(
        "/export (all rows to CSV)",
        lambda: render(export_rows(directory.list_links(**where)), "csv"),
        repeat=1,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=50_000)
    members = parser.parse_args().members
    for kind, url in databases():
        directory = Directory(url)
        directory.upgrade()
        started = time.perf_counter()
        fill(directory, members)
        print(f"{kind}: {members} members, {members * 5} audit rows "
              f"(filled in {time.perf_counter() - started:.1f} s)")  # fmt: skip
        measure(directory, members)
        directory.close()


if __name__ == "__main__":
    main()
