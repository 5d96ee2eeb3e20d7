"""The directory's contract, checked against real SQLite and real PostgreSQL alike."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, delete, event, inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from bot.directory import (
    Directory,
    DirectoryConfigError,
    GrantOutcome,
    RecordOutcome,
    create_directory_engine,
)
from bot.directory.directory import alembic_config
from bot.directory.engine import BEGIN_MODE
from bot.directory.models import GrantAdmissionRow, InviteLinkRow, PhoneLinkRow, RoleGrantRow
from bot.identity import MemberKey
from bot.roles import Invite
from tests.integration.conftest import fresh_postgres_database

T0 = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
PHONE = "+447700900123"
OTHER_PHONE = "+447700900456"
ALICE = MemberKey("telegram", "bot1", "1001")
BOB = MemberKey("telegram", "bot1", "1002")
CAROL = MemberKey("slack", "T01", "U03")
GRANTED, ALREADY_HELD, NOT_VERIFIED = GrantOutcome

OpenDirectory = Callable[..., Directory]


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def open_directory(database_url: str) -> Iterator[OpenDirectory]:
    """Open (and later close) upgraded directories on this test's database."""
    opened: list[Directory] = []

    def open_(**kwargs: int) -> Directory:
        directory = Directory(database_url, **kwargs)
        opened.append(directory)
        directory.upgrade()
        return directory

    yield open_
    for directory in opened:
        directory.close()


@pytest.fixture
def directory(open_directory: OpenDirectory) -> Directory:
    return open_directory()


@pytest.fixture
def sqlite_directory(tmp_path: Path) -> Iterator[Directory]:
    directory = Directory(f"sqlite:///{tmp_path / 'directory.db'}")
    directory.upgrade()
    yield directory
    directory.close()


def record(
    directory: Directory, member: MemberKey, phone: str = PHONE, at: datetime = T0
) -> RecordOutcome:
    return directory.record_verified(
        member, phone_e164=phone, country="GB", display_name=f"name {member.user_id}", now=at
    )


# -- schema ---------------------------------------------------------------------------------


def test_upgrade_reaches_head_and_is_idempotent(database_url: str) -> None:
    directory = Directory(database_url)
    try:
        assert directory.revision() is None
        directory.upgrade()
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert head == directory.revision() == "0006"
        directory.upgrade()
        assert directory.revision() == head
        tables = set(inspect(directory.engine).get_table_names())
        assert {"phone_links", "role_grants", "audit_log", "alembic_version"} <= tables
        directory.ping()
    finally:
        directory.close()


def test_migrations_match_the_models(directory: Directory) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from bot.directory.models import Base

    with directory.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


# -- recording and finding ------------------------------------------------------------------


def test_record_then_find_round_trips_every_field(directory: Directory) -> None:
    at = datetime(2025, 6, 7, 10, 11, 12, 345678, tzinfo=timezone(timedelta(hours=2)))
    outcome = directory.record_verified(
        ALICE, phone_e164=PHONE, country="GB", display_name="Alice", now=at
    )
    assert outcome is RecordOutcome.RECORDED
    link = directory.find(ALICE)
    assert link is not None
    assert link.key == ALICE
    assert (link.display_name, link.phone_e164, link.country) == ("Alice", PHONE, "GB")
    assert link.is_phone_verified
    assert link.roles == ()
    for moment in (link.verified_at, link.created_at, link.updated_at):
        assert moment == at
        assert moment is not None
        assert moment.tzinfo is not None
        assert moment.utcoffset() == timedelta(0)
    assert directory.find(BOB) is None


def test_reverifying_with_a_new_phone_updates_in_place(directory: Directory) -> None:
    record(directory, ALICE, PHONE, T0)
    later = T0 + timedelta(days=3)
    assert (
        directory.record_verified(
            ALICE, phone_e164=OTHER_PHONE, country="GB", display_name=None, now=later
        )
        is RecordOutcome.RECORDED
    )
    link = directory.find(ALICE)
    assert link is not None
    assert link.phone_e164 == OTHER_PHONE
    assert link.display_name == "name 1001"  # None keeps the name on file
    assert (link.created_at, link.verified_at, link.updated_at) == (T0, later, later)
    assert len(directory.list_links()) == 1
    assert directory.count_links(PHONE, excluding=BOB) == 0
    assert record(directory, BOB, PHONE) is RecordOutcome.RECORDED  # the old phone is free


def test_a_phone_held_by_another_member_is_taken_and_nothing_is_written(
    directory: Directory,
) -> None:
    assert record(directory, ALICE) is RecordOutcome.RECORDED
    assert record(directory, BOB, at=T0 + timedelta(minutes=1)) is RecordOutcome.PHONE_TAKEN
    assert directory.find(BOB) is None
    assert [entry.subject for entry in directory.audit_trail()] == [str(ALICE)]
    assert directory.count_links(PHONE, excluding=BOB) == 1
    assert directory.count_links(PHONE, excluding=ALICE) == 0
    # A member's own link never counts against them.
    assert record(directory, ALICE, at=T0 + timedelta(hours=1)) is RecordOutcome.RECORDED


def test_the_limit_per_phone_is_configurable(open_directory: OpenDirectory) -> None:
    directory = open_directory(max_accounts_per_phone=2)
    assert record(directory, ALICE) is RecordOutcome.RECORDED
    assert record(directory, BOB) is RecordOutcome.RECORDED
    assert record(directory, CAROL) is RecordOutcome.PHONE_TAKEN
    assert directory.count_links(PHONE, excluding=CAROL) == 2
    with pytest.raises(ValueError, match="at least 1"):
        Directory("sqlite:///unused.db", max_accounts_per_phone=0)


def test_an_unverified_link_does_not_hold_the_phone(directory: Directory) -> None:
    record(directory, ALICE)
    assert directory.unverify(ALICE, actor="admin:1", now=T0 + timedelta(minutes=1)) == ()
    assert record(directory, BOB) is RecordOutcome.RECORDED


def test_concurrent_members_racing_for_one_phone_get_it_once(directory: Directory) -> None:
    members = [MemberKey("telegram", "bot1", f"race{i}") for i in range(8)]
    start = threading.Barrier(len(members))
    outcomes: list[RecordOutcome] = []
    errors: list[BaseException] = []

    def race(member: MemberKey) -> None:
        try:
            start.wait()
            outcomes.append(record(directory, member))
        except BaseException as exc:  # surfaced below: a thread cannot fail the test
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(member,)) for member in members]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(outcome.value for outcome in outcomes) == ["phone_taken"] * 7 + ["recorded"]
    holders = [link for link in directory.list_links(verified_only=True) if link.phone_e164]
    assert len(holders) == 1
    assert len(directory.audit_trail()) == 1


def test_one_row_per_platform_scope_and_user(directory: Directory) -> None:
    same_user_other_scope = MemberKey(ALICE.platform, "bot2", ALICE.user_id)
    record(directory, ALICE, PHONE)
    record(directory, same_user_other_scope, OTHER_PHONE)
    assert len(directory.list_links()) == 2
    with Session(directory.engine) as session:
        session.add(PhoneLinkRow(platform=ALICE.platform, scope=ALICE.scope, user_id=ALICE.user_id))
        with pytest.raises(IntegrityError):
            session.commit()


# -- listing --------------------------------------------------------------------------------


def test_list_links_filters_and_orders_newest_verification_first(directory: Directory) -> None:
    dave = MemberKey("telegram", "bot1", "1004")
    record(directory, ALICE, "+447700900001", T0)
    record(directory, BOB, "+447700900002", T0 + timedelta(hours=2))
    record(directory, CAROL, "+447700900003", T0 + timedelta(hours=1))
    record(directory, dave, "+447700900004", T0 + timedelta(hours=3))
    directory.unverify(dave, actor="admin:1", now=T0 + timedelta(hours=4))

    assert [link.key for link in directory.list_links()] == [BOB, CAROL, ALICE, dave]
    assert [link.key for link in directory.list_links(verified_only=True)] == [BOB, CAROL, ALICE]
    assert [link.key for link in directory.list_links(platform="telegram")] == [BOB, ALICE, dave]
    assert [link.key for link in directory.list_links(platform="telegram", verified_only=True)] == [
        BOB,
        ALICE,
    ]
    assert directory.list_links(platform="discord") == []


def test_list_links_breaks_ties_in_creation_order(directory: Directory) -> None:
    members = [MemberKey("slack", "T01", f"U{i}") for i in range(4)]
    for i, member in enumerate(members):
        record(directory, member, f"+44770090010{i}", T0)
    assert [link.key for link in directory.list_links()] == members


def test_find_user_looks_across_scopes(directory: Directory) -> None:
    in_other_bot = MemberKey(ALICE.platform, "bot2", ALICE.user_id)
    on_other_platform = MemberKey("slack", "T01", ALICE.user_id)
    record(directory, ALICE, PHONE)
    record(directory, in_other_bot, OTHER_PHONE)
    record(directory, on_other_platform, "+447700900789")
    found = directory.find_user(ALICE.platform, ALICE.user_id)
    assert [link.key for link in found] == [ALICE, in_other_bot]
    assert directory.find_user("telegram", "nobody") == []


# -- unverifying, roles, audit ----------------------------------------------------------------


def test_unverify_clears_the_verification_but_keeps_the_row(directory: Directory) -> None:
    record(directory, ALICE)
    later = T0 + timedelta(days=1)
    assert directory.unverify(ALICE, actor="admin:7", now=later) == ()
    link = directory.find(ALICE)
    assert link is not None
    assert not link.is_phone_verified
    assert (link.verified_at, link.phone_e164, link.country) == (None, None, None)
    assert (link.display_name, link.created_at, link.updated_at) == ("name 1001", T0, later)
    newest = directory.audit_trail(subject=str(ALICE))[0]
    assert (newest.event, newest.actor, newest.at) == ("unverified", "admin:7", later)
    assert newest.details == {"phone_masked": "+44•••••0123", "country": "GB"}
    assert directory.unverify(ALICE, actor="admin:7", now=later) is None
    assert directory.unverify(BOB, actor="admin:7", now=later) is None


def test_find_verified_returns_only_a_link_that_vouches_for_a_phone(
    directory: Directory,
) -> None:
    assert directory.find_verified(ALICE) is None
    record(directory, ALICE)
    link = directory.find_verified(ALICE)
    assert link is not None and link.phone_e164 == PHONE
    directory.unverify(ALICE, actor="admin:7", now=T0)
    assert directory.find(ALICE) is not None
    assert directory.find_verified(ALICE) is None


def test_verified_number_says_what_find_verified_says_in_three_columns(
    directory: Directory,
) -> None:
    assert directory.verified_number(ALICE) is None
    record(directory, ALICE)
    link = directory.find_verified(ALICE)
    assert link is not None
    assert directory.verified_number(ALICE) == (PHONE, link.country, link.verified_at)
    directory.unverify(ALICE, actor="admin:7", now=T0)
    assert directory.verified_number(ALICE) is None


def test_only_verified_members_are_admitted_and_admission_is_remembered_once(
    directory: Directory,
) -> None:
    assert directory.admit(ALICE, "-1001", now=T0) is False  # no link yet
    record(directory, ALICE)
    assert directory.is_admitted(ALICE, "-1001") is False
    assert directory.admit(ALICE, "-1001", now=T0) is True
    assert directory.admit(ALICE, "-1001", now=T0) is True
    assert directory.is_admitted(ALICE, "-1001") is True
    assert directory.is_admitted(ALICE, "-1002") is False
    assert directory.is_admitted(BOB, "-1001") is False
    admitted = [e for e in directory.audit_trail(subject=str(ALICE)) if e.event == "admitted"]
    assert [e.details for e in admitted] == [{"place": "-1001"}]


def test_unverifying_forgets_the_admissions(directory: Directory) -> None:
    record(directory, ALICE)
    directory.admit(ALICE, "-1001", now=T0)
    directory.unverify(ALICE, actor="admin:7", now=T0)
    record(directory, ALICE)
    assert directory.is_admitted(ALICE, "-1001") is False


def test_roles_are_granted_revoked_and_shown_on_the_link(directory: Directory) -> None:
    assert directory.grant_role(ALICE, "member", granted_by="bot", now=T0) is NOT_VERIFIED
    record(directory, ALICE)
    assert directory.grant_role(ALICE, "member", granted_by="bot", now=T0) is GRANTED
    assert directory.grant_role(ALICE, "member", granted_by="bot", now=T0) is ALREADY_HELD
    assert directory.grant_role(ALICE, "chat", granted_by="bot", now=T0) is GRANTED
    link = directory.find(ALICE)
    assert link is not None
    assert link.roles == ("chat", "member")
    assert directory.revoke_role(ALICE, "member", revoked_by="admin:7", now=T0) is True
    assert directory.revoke_role(ALICE, "member", revoked_by="admin:7", now=T0) is False
    link = directory.find(ALICE)
    assert link is not None
    assert link.roles == ("chat",)
    assert [e.event for e in directory.audit_trail(subject=str(ALICE))] == [
        "role_revoked",
        "role_granted",
        "role_granted",
        "verified",
    ]


# -- what a role grant opened ---------------------------------------------------------------


def test_a_roles_admission_lasts_while_the_role_is_held_and_another_roles_stays(
    directory: Directory,
) -> None:
    assert directory.admit_for_role(ALICE, "-1001", "helper", now=T0) is False  # not verified
    record(directory, ALICE)
    assert directory.admit_for_role(ALICE, "-1001", "helper", now=T0) is False  # no grant
    for role in ("helper", "member"):
        directory.grant_role(ALICE, role, granted_by="mod", now=T0)
    assert directory.admit_for_role(ALICE, "-1001", "helper", now=T0) is True
    assert directory.admit_for_role(ALICE, "-1001", "helper", now=T0) is True  # once
    assert directory.admit_for_role(ALICE, "-1002", "helper", now=T0) is True
    assert directory.admit_for_role(ALICE, "-1001", "member", now=T0) is True
    directory.admit(ALICE, "-1003", now=T0)  # the gate's own admission, after verifying
    assert directory.is_admitted(BOB, "-1001") is False

    directory.revoke_role(ALICE, "helper", revoked_by="mod", now=T0)

    assert directory.is_admitted(ALICE, "-1002") is False  # only helper opened it
    assert directory.is_admitted(ALICE, "-1001") is True  # member still opens it
    assert directory.admit_for_role(ALICE, "-1002", "helper", now=T0) is False
    directory.revoke_role(ALICE, "member", revoked_by="mod", now=T0)
    assert directory.is_admitted(ALICE, "-1001") is False
    assert directory.is_admitted(ALICE, "-1003") is True  # no role recorded it
    with directory.engine.connect() as connection:
        assert connection.execute(select(GrantAdmissionRow.id)).all() == []


def test_the_links_of_a_revoked_grant_are_to_revoke_until_the_platform_confirms(
    directory: Directory,
) -> None:
    record(directory, ALICE)
    directory.grant_role(ALICE, "helper", granted_by="mod", now=T0)
    directory.grant_role(ALICE, "member", granted_by="mod", now=T0)
    day = T0 + timedelta(days=1)
    helps = Invite("-1001", "https://t.me/+a", day)
    mentors = Invite("-1002", "https://t.me/+b", day)
    brief = Invite("-1002", "https://t.me/+brief", T0 + timedelta(hours=1))
    kept = Invite("-1001", "https://t.me/+kept", day)
    for role, invite in (("helper", helps), ("helper", mentors), ("helper", brief)):
        assert directory.record_invite(ALICE, role, invite, now=T0) is True
    assert directory.record_invite(ALICE, "member", kept, now=T0) is True
    assert directory.invites_to_revoke(ALICE, now=T0) == []  # every grant stands
    assert directory.invite_withdrawn(helps.url) is False

    directory.revoke_role(ALICE, "helper", revoked_by="mod", now=T0)

    later = T0 + timedelta(hours=2)  # the brief link has expired: it admits nobody
    assert directory.invites_to_revoke(ALICE, "helper", now=later) == [helps, mentors]
    assert directory.invites_to_revoke(ALICE, "member", now=later) == []
    assert directory.invites_to_revoke(BOB, now=later) == []
    assert directory.invite_withdrawn(helps.url) is True
    assert directory.invite_withdrawn(kept.url) is False
    assert directory.invite_withdrawn("https://t.me/+unknown") is False
    directory.invite_revoked(helps.url, now=later)
    assert directory.invites_to_revoke(ALICE, now=later) == [mentors]
    # A link made while the grant was being revoked is not recorded: it must go at once.
    late = Invite("-1001", "https://t.me/+late", day)
    assert directory.record_invite(ALICE, "helper", late, now=later) is False

    assert directory.unverify(ALICE, actor="admin:7", now=later) == ("member",)
    assert directory.invites_to_revoke(ALICE, now=later) == [mentors, kept]


def test_a_new_link_prunes_the_expired_ones(directory: Directory) -> None:
    record(directory, ALICE)
    directory.grant_role(ALICE, "helper", granted_by="mod", now=T0)
    old = Invite("-1001", "https://t.me/+old", T0 + timedelta(hours=1))
    new = Invite("-1001", "https://t.me/+new", T0 + timedelta(days=2))
    directory.record_invite(ALICE, "helper", old, now=T0)
    directory.record_invite(ALICE, "helper", new, now=T0 + timedelta(days=1))
    with directory.engine.connect() as connection:
        urls = connection.execute(select(InviteLinkRow.url)).scalars().all()
    assert urls == [new.url]


def test_migration_0004_downgrades_and_upgrades_again(directory: Directory) -> None:
    from alembic import command

    def run(step: Callable[[Any, str], None], target: str) -> None:
        with directory.engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            step(config, target)

    run(command.downgrade, "0003")
    assert directory.revision() == "0003"
    tables = set(inspect(directory.engine).get_table_names())
    assert not {"grant_admissions", "invite_links"} & tables
    run(command.upgrade, "head")
    assert directory.revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert {"grant_admissions", "invite_links"} <= set(inspect(directory.engine).get_table_names())


def test_deleting_a_link_deletes_its_grants(directory: Directory) -> None:
    record(directory, ALICE)
    directory.grant_role(ALICE, "member", granted_by="bot", now=T0)
    with directory.engine.begin() as connection:
        connection.execute(delete(PhoneLinkRow))
        assert connection.execute(select(RoleGrantRow.id)).all() == []


def test_audit_trail_is_newest_first_filtered_and_limited(directory: Directory) -> None:
    for minute in range(5):
        directory.audit(
            "note",
            actor="admin:1",
            subject=str(ALICE if minute % 2 else BOB),
            details={"n": minute},
            now=T0 + timedelta(minutes=minute),
        )
    directory.audit("bare", actor="bot", subject=str(BOB), now=T0 + timedelta(minutes=9))
    trail = directory.audit_trail()
    assert [entry.details.get("n") for entry in trail] == [None, 4, 3, 2, 1, 0]
    assert trail[0].details == {}
    assert trail[0].at == T0 + timedelta(minutes=9)
    assert [e.details["n"] for e in directory.audit_trail(subject=str(ALICE))] == [3, 1]
    assert len(directory.audit_trail(limit=2)) == 2


def test_the_audit_log_never_holds_a_full_phone_number(directory: Directory) -> None:
    record(directory, ALICE, PHONE)
    record(directory, ALICE, OTHER_PHONE, T0 + timedelta(minutes=1))
    record(directory, BOB, OTHER_PHONE, T0 + timedelta(minutes=2))  # taken: not audited
    directory.unverify(ALICE, actor="admin:1", now=T0 + timedelta(minutes=3))
    with directory.engine.connect() as connection:
        raw = connection.execute(text("SELECT CAST(details AS TEXT) FROM audit_log")).scalars()
        stored = [json.loads(details) for details in raw]
    assert len(stored) == 3
    for details in stored:
        dumped = json.dumps(details, ensure_ascii=False)
        for phone in (PHONE, OTHER_PHONE):
            assert phone[3:] not in dumped  # not even the national number
        assert details["phone_masked"].startswith("+44•••••")


def test_naive_datetimes_are_refused(directory: Directory) -> None:
    naive = datetime(2025, 1, 1)  # naive on purpose
    with pytest.raises(ValueError, match="tz-aware"):
        directory.record_verified(
            ALICE, phone_e164=PHONE, country=None, display_name=None, now=naive
        )
    with pytest.raises(ValueError, match="tz-aware"):
        directory.audit("note", actor="a", subject="s", now=naive)


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "foo",
        "",
        "mysql://user@host/db",
        "postgresql+asyncpg://user:hunter2@host/db",
        "sqlite://",
        "sqlite:///:memory:",
        "http://[::1",
    ],
)
def test_an_unusable_url_is_a_config_error(url: str) -> None:
    with pytest.raises(DirectoryConfigError) as raised:
        Directory(url)
    message = str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert message.startswith("DATABASE_URL")
    assert "\n" not in message
    assert "hunter2" not in message


def test_postgresql_urls_get_the_psycopg_driver() -> None:
    for url in ("postgresql://u@h/db", "postgres://u@h/db", "postgresql+psycopg://u@h/db"):
        engine = create_directory_engine(url)
        assert engine.url.drivername == "postgresql+psycopg"
        engine.dispose()


def test_ping_raises_when_the_server_is_unreachable() -> None:
    directory = Directory("postgresql://nobody@127.0.0.1:9/none?connect_timeout=2")
    try:
        with pytest.raises(OperationalError):
            directory.ping()
    finally:
        directory.close()


@pytest.mark.postgres
def test_postgresql_sessions_carry_the_timeouts_and_the_url_still_wins(
    postgres_admin: Engine,
) -> None:
    with fresh_postgres_database(postgres_admin) as url:
        settings = "statement_timeout", "idle_in_transaction_session_timeout", "application_name"
        shown = {}
        for query in ("", "?options=-c%20statement_timeout%3D9s%20-c%20application_name%3Dops"):
            directory = Directory(url + query, timeout=1.5)
            try:
                with directory.engine.connect() as connection:
                    shown[query] = [
                        connection.exec_driver_sql(f"SHOW {name}").scalar() for name in settings
                    ]
            finally:
                directory.close()
        plain, overridden = shown.values()
        assert plain[:2] == ["1500ms", "3s"]
        assert overridden == ["9s", "3s", "ops"]


def test_a_database_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        Directory("sqlite:///unused.db", timeout=0)


# -- SQLite specifics -----------------------------------------------------------------------


def test_sqlite_creates_the_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "directory.db"
    directory = Directory(f"sqlite:///{path}")
    try:
        directory.upgrade()
        assert path.exists()
    finally:
        directory.close()


def test_sqlite_runs_in_wal_mode_with_the_pragmas(sqlite_directory: Directory) -> None:
    with sqlite_directory.engine.connect() as connection:
        pragma = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 1,
        "busy_timeout": 5000,  # the directory's timeout, 5 s by default
        "foreign_keys": 1,
    }


def test_sqlite_writes_begin_immediate_reads_deferred_and_a_lone_read_needs_no_begin(
    sqlite_directory: Directory,
) -> None:
    # No connection event on the engine: SQLAlchemy would dispatch events around every
    # statement (engine.py); BEGIN comes from the dialect, so it is traced in sqlite3 itself.
    assert not sqlite_directory.engine._has_events
    statements: list[str] = []

    @event.listens_for(sqlite_directory.engine, "checkout")
    def capture(dbapi_connection: sqlite3.Connection, *_: object) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    record(sqlite_directory, ALICE)
    assert statements[0] == "BEGIN IMMEDIATE"
    statements.clear()
    sqlite_directory.audit("code_sent", actor=str(ALICE), subject=str(ALICE), now=T0)
    assert statements[0] == "BEGIN IMMEDIATE"  # one statement, but a write all the same
    statements.clear()
    sqlite_directory.find(ALICE)
    assert statements[0] == "BEGIN"
    # One SELECT is a transaction of its own in SQLite: a member's look-ups pay no BEGIN.
    statements.clear()
    assert sqlite_directory.count_links(PHONE, excluding=BOB) == 1
    assert sqlite_directory.verified_number(ALICE) is not None
    assert [statement.split()[0] for statement in statements] == ["SELECT", "SELECT"]


def test_sqlite_write_transaction_holds_the_write_lock_from_its_start(
    sqlite_directory: Directory,
) -> None:
    database = sqlite_directory.engine.url.database
    assert database is not None
    other = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        with sqlite_directory.engine.begin() as connection:
            connection.execute(text("SELECT 1"))  # nothing written yet
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        with sqlite_directory.engine.connect() as connection:
            connection.execution_options(**{BEGIN_MODE: "DEFERRED"})
            with connection.begin():
                connection.execute(text("SELECT count(*) FROM phone_links"))
                other.execute("BEGIN IMMEDIATE")  # a reader does not block a writer
                other.execute("ROLLBACK")
    finally:
        other.close()


# -- moderators' queries ---------------------------------------------------------------------


def test_a_member_is_found_by_handle_case_insensitively_within_their_scope(
    directory: Directory,
) -> None:
    directory.record_verified(
        ALICE, phone_e164=PHONE, country="GB", display_name="Alice", handle="@Alice_B", now=T0
    )
    found = directory.find_by_handle("telegram", "bot1", "@alice_b")
    assert found is not None and found.key == ALICE and found.handle == "alice_b"
    assert directory.find_by_handle("telegram", "bot2", "alice_b") is None
    assert directory.find_by_handle("telegram", "bot1", "bob") is None


def test_unverifying_revokes_every_role_in_the_same_commit(directory: Directory) -> None:
    record(directory, ALICE)
    directory.grant_role(ALICE, "member", granted_by="mod", now=T0)
    directory.grant_role(ALICE, "chat", granted_by="mod", now=T0)
    assert directory.unverify(ALICE, actor="admin:7", now=T0) == ("chat", "member")
    link = directory.find(ALICE)
    assert link is not None and link.roles == ()
    events = [e.event for e in directory.audit_trail(subject=str(ALICE))]
    assert events[:3] == ["unverified", "role_revoked", "role_revoked"]
    assert directory.grant_role(ALICE, "chat", granted_by="mod", now=T0) is NOT_VERIFIED


def test_links_come_in_pages_with_a_count(directory: Directory) -> None:
    members = [MemberKey("telegram", "bot1", str(2000 + n)) for n in range(7)]
    for n, member in enumerate(members):
        directory.record_verified(
            member,
            phone_e164=f"+4477009001{n:02d}",
            country="GB",
            display_name=None,
            now=T0 + timedelta(minutes=n),
        )
    record(directory, CAROL)
    assert directory.count_members(platform="telegram", scope="bot1", verified_only=True) == 7
    first = directory.list_links(platform="telegram", scope="bot1", offset=0, limit=3)
    last = directory.list_links(platform="telegram", scope="bot1", offset=6, limit=3)
    assert [link.user_id for link in first] == ["2006", "2005", "2004"]  # newest first
    assert [link.user_id for link in last] == ["2000"]


def test_stats_count_members_codes_and_conversions_for_one_community(
    directory: Directory,
) -> None:
    noon = datetime(2025, 1, 2, 12, 0, tzinfo=UTC)
    yesterday = noon - timedelta(hours=13)

    def sent(member: MemberKey, at: datetime, event: str = "code_sent") -> None:
        directory.audit(event, actor=str(member), subject=str(member), now=at)

    sent(ALICE, yesterday)  # started yesterday, verified today: verified, not "today"
    record(directory, ALICE)
    sent(BOB, noon - timedelta(hours=2))  # started today, verified
    sent(BOB, noon - timedelta(hours=1), "code_resent")
    directory.record_verified(
        BOB, phone_e164=OTHER_PHONE, country="GB", display_name=None, now=noon
    )
    dave = MemberKey("telegram", "bot1", "1004")
    sent(dave, noon - timedelta(hours=3))  # started today, still waiting
    sent(CAROL, noon)  # another platform
    stats = directory.stats(platform="telegram", scope="bot1", now=noon)
    assert (stats.verified, stats.pending, stats.started_today) == (2, 1, 2)
    assert (stats.converted_today, stats.sms_today) == (1, 3)
    assert stats.conversion == 0.5
    assert directory.stats(platform="slack", scope=None, now=noon).started_today == 1
