"""Databases for the integration tests: a SQLite file, or a fresh PostgreSQL database
created for one test and dropped after it. Nothing else on the server is touched. And two
workers of one deployment: two bots on the same Redis prefix and the same SQLite file."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bot.app import App
from bot.directory import Directory
from bot.settings import Settings
from bot.verifier.base import Verifier
from tests.conftest import VONAGE_APP_ID, Inbox
from tests.emulators.vonage import VonageEmulator
from verifybot.bootstrap import build_verifier, open_app

#: The SQLite file of ``sqlite_directory``, under the test's tmp_path.
SQLITE_FILE = "directory.db"

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on the server's maintenance database, for CREATE/DROP DATABASE."""
    url = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    engine = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        engine.dispose()
        reason = f"PostgreSQL at {url.render_as_string()} is unreachable: {exc.orig}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI promises a PostgreSQL server: {reason}")
        pytest.skip(reason)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database that only this test uses."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'directory.db'}"
        return
    with fresh_postgres_database(request.getfixturevalue("postgres_admin")) as url:
        yield url


@contextmanager
def fresh_postgres_database(admin: Engine) -> Iterator[str]:
    """Create an empty database on the test server, yield its URL, and drop it afterwards."""
    name = f"verifybot_t_{secrets.token_hex(8)}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def workers(make_settings: Callable[..., Settings], inbox: Inbox) -> AsyncIterator[list[App]]:
    """Two workers, as two processes of one deployment would be, texting into one inbox."""
    settings = make_settings(resend_cooldown_seconds=0)
    async with (
        open_app(settings, show_code=inbox) as one,
        open_app(settings, show_code=inbox) as two,
    ):
        yield [one, two]


@pytest.fixture
def sqlite_directory(tmp_path: Path) -> Iterator[Callable[..., Directory]]:
    """Opens the test's SQLite directory (``tmp_path / SQLITE_FILE``), upgraded, with the
    timeout given; each is closed after the test."""
    opened: list[Directory] = []

    def open_directory(*, timeout: float) -> Directory:
        directory = Directory(f"sqlite:///{tmp_path / SQLITE_FILE}", timeout=timeout)
        directory.upgrade()
        opened.append(directory)
        return directory

    yield open_directory
    for directory in opened:
        directory.close()


@pytest.fixture
def vonage_settings(vonage: VonageEmulator, key_file: Path) -> Callable[..., Settings]:
    """Settings for a v2 verifier against the Vonage emulator (quick timeouts and retries);
    keyword arguments override them."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "_env_file": None,
            "vonage_application_id": VONAGE_APP_ID,
            "vonage_private_key_path": key_file,
            "vonage_api_host": vonage.host,
            "vonage_timeout_seconds": 2,
            "vonage_brand_name": "Acme Club",
            "vonage_retry_wait_seconds": 0.01,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def v2(vonage_settings: Callable[..., Settings]) -> AsyncIterator[Verifier]:
    verifier = build_verifier(vonage_settings())
    yield verifier
    await verifier.aclose()
