"""The directory: who verified which phone number, their roles, and the audit log.

It is synchronous; the async bot calls it through ``AsyncDirectory`` (bot/directory/facade.py),
on the directory's own threads and, on a member's path, within its timeout; on SQLite, a
member's Core calls run on the event loop first (``run_here``), and only go to the threads to
wait for a lock held elsewhere. Every method is one short transaction on its own connection,
so one ``Directory`` may be shared by threads.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

import structlog
from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Select,
    bindparam,
    delete,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError

if TYPE_CHECKING:  # alembic is loaded only to migrate: 11 MiB a running bot does without
    from alembic.config import Config

    # The ORM (5.6 MiB) is loaded by the first call of a method marked @_uses_orm (_load_orm):
    # a member's path runs Core statements on bot.directory.tables only.
    from sqlalchemy.orm import Session, selectinload, sessionmaker

    from bot.directory.models import (
        AdmissionRow,
        AuditRow,
        CommunityPolicyRow,
        GrantAdmissionRow,
        InviteLinkRow,
        PhoneLinkRow,
        RoleGrantRow,
        TelegramGroupRow,
    )

from bot.directory.engine import (
    BEGIN_MODE,
    POOL_CAPACITY,
    create_directory_engine,
    create_lane_engine,
)
from bot.directory.tables import audit_log, community_policies, phone_links
from bot.identity import MemberKey
from bot.privacy import mask_phone
from bot.roles import Invite

__all__ = [
    "AuditEntry",
    "Directory",
    "DirectoryTimeout",
    "GrantOutcome",
    "Group",
    "PhoneLink",
    "PolicyChange",
    "RecordOutcome",
    "Stats",
    "StoredPolicy",
    "alembic_config",
    "lock_migrations",
]

MIGRATIONS: Final = Path(__file__).resolve().parents[1] / "migrations"


class DirectoryTimeout(TimeoutError):
    """The database did not answer within the directory's timeout."""


class RecordOutcome(enum.Enum):
    RECORDED = "recorded"
    PHONE_TAKEN = "phone_taken"


class GrantOutcome(enum.Enum):
    GRANTED = "granted"
    ALREADY_HELD = "already_held"
    #: Roles are for verified members only.
    NOT_VERIFIED = "not_verified"


@dataclass(frozen=True, slots=True)
class PhoneLink:
    """A member's row as the rest of the bot sees it: a plain value, detached from the ORM."""

    platform: str
    scope: str
    user_id: str
    display_name: str | None
    phone_e164: str | None
    country: str | None
    is_phone_verified: bool
    verified_at: datetime | None
    created_at: datetime
    updated_at: datetime
    roles: tuple[str, ...] = ()  # active (unrevoked) role names, sorted
    handle: str | None = None  # platform username, lower-case, without "@"

    @property
    def key(self) -> MemberKey:
        return MemberKey(self.platform, self.scope, self.user_id)


@dataclass(frozen=True, slots=True)
class Stats:
    """One community's numbers for ``/stats``; "today" is the UTC day of ``now``."""

    verified: int
    #: Members who were sent a code in the last day and have not verified.
    pending: int
    #: Members sent a first code today, how many of them are verified now, and SMS sent.
    started_today: int
    converted_today: int
    sms_today: int

    @property
    def conversion(self) -> float | None:
        return self.converted_today / self.started_today if self.started_today else None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    event: str
    actor: str
    subject: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """The fields one community overrode, as the settings file writes them, and how many
    changes made them (0 for a community that never changed anything)."""

    overrides: dict[str, str]
    revision: int = 0


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """One field of a community's policy, changed: as it read before and after."""

    field: str
    old: str
    new: str
    stored: StoredPolicy


@dataclass(frozen=True, slots=True)
class Group:
    """A group the bot is in."""

    chat_id: str
    title: str | None


def alembic_config() -> Config:
    """Alembic's configuration, built in code so that an installed wheel needs no alembic.ini."""
    from alembic.config import Config

    config = Config()
    # set_main_option interpolates "%(name)s", so a literal "%" in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return config


_P = ParamSpec("_P")
_T = TypeVar("_T")

log = structlog.get_logger("verifybot.directory")


def _uses_orm(method: Callable[_P, _T]) -> Callable[_P, _T]:
    """Mark a method that builds ORM statements or loads rows as objects: the ORM's names in
    this module are bound on its first call (``_load_orm``)."""

    @functools.wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        if "PhoneLinkRow" not in globals():
            _load_orm()
        return method(*args, **kwargs)

    return call


def _load_orm() -> None:
    """Import the ORM and bind the names this module imports only for type checking (above)."""
    from sqlalchemy import orm

    import bot.directory.models as models  # not "from bot.directory": no import cycle

    names = {name: getattr(models, name) for name in models.__all__ if name != "Base"}
    names.update(Session=orm.Session, selectinload=orm.selectinload, sessionmaker=orm.sessionmaker)
    globals().update(names)  # one update: another thread sees all of them or none


class Directory:
    """The SQL source of truth for verified members, over SQLite or PostgreSQL."""

    def __init__(self, url: str, *, max_accounts_per_phone: int = 1, timeout: float = 5.0) -> None:
        if max_accounts_per_phone < 1:
            raise ValueError(
                f"max_accounts_per_phone must be at least 1, not {max_accounts_per_phone}"
            )
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout}")
        self._url = url
        self._engine = create_directory_engine(url, timeout=timeout)
        self._sessions: sessionmaker[Session] | None = None  # made with the ORM, when needed
        self._sqlite_gate = threading.RLock() if self._engine.dialect.name == "sqlite" else None
        self._write_gate: contextlib.AbstractContextManager[object] = (
            self._sqlite_gate or contextlib.nullcontext()
        )
        self._lane_engine = create_lane_engine(url)
        self._lane = threading.local()
        self._lane_owner: int | None = None
        self._lane_writes = 0
        self._max_accounts_per_phone = max_accounts_per_phone
        self.timeout = timeout
        # Its own threads, no more than the pool has connections: a call stuck on a hung
        # server holds one of these, never one of asyncio's default threads, and a call
        # that cannot start before its timeout is cancelled, never run late.
        self._threads = ThreadPoolExecutor(POOL_CAPACITY, thread_name_prefix="directory")

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def threads(self) -> ThreadPoolExecutor:
        """Where ``AsyncDirectory`` runs this directory's calls."""
        return self._threads

    # -- schema -------------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Bring the schema to the newest migration, in one transaction; safe to repeat, and
        safe to run from several processes at once (see migrations/env.py)."""
        try:
            if self.revision() == newest_migration():
                return  # the usual start: nothing to do, and alembic is not even imported
        except OperationalError as exc:
            # SQLite's "database is locked" past this engine's timeout: another process holds
            # the file, migrating it (or making it WAL). The migration below waits for it and
            # then finds the schema as that process left it.
            if "locked" not in str(exc.orig):
                raise
        from alembic import command

        # Its own engine, without the timeouts: a migration may take long, and may have to
        # wait for another process's migration to finish.
        engine = create_directory_engine(self._url, timeout=None)
        try:
            with engine.begin() as connection:
                config = alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        finally:
            engine.dispose()

    def revision(self) -> str | None:
        """The migration the database is at, or None before the first ``upgrade()``."""
        with self._engine.connect() as connection:
            connection.execution_options(**{BEGIN_MODE: "DEFERRED"})
            if not inspect(connection).has_table(_VERSION_TABLE):
                return None
            query = select(text("version_num")).select_from(text(_VERSION_TABLE))
            found = connection.scalar(query)
            return None if found is None else str(found)

    @property
    def has_lane(self) -> bool:
        """Whether ``run_here`` may be tried (SQLite): see ``AsyncDirectory``."""
        return self._lane_engine is not None

    def run_here(self, call: Callable[[], _T]) -> _T:
        """Run ``call`` (one of this directory's Core methods) on this thread, on the lane's
        connection, which never waits: raises ``WouldWait`` instead of waiting for the write
        gate or SQLite's lock, having changed nothing.

        A member's SQLite call costs far less CPU here than on a thread, where each time
        sqlite3 hands the GIL back and forth with a busy event loop costs more than the
        statement (bench/README.md, "A member's SQLite calls on the event loop").
        """
        if self._lane_owner is None:
            self._lane_owner = threading.get_ident()
        elif self._lane_owner != threading.get_ident():
            raise WouldWait  # the lane's one connection belongs to the first loop's thread
        self._lane.on = True
        try:
            return call()
        except OperationalError as exc:
            if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                raise WouldWait from None
            raise
        finally:
            self._lane.on = False

    def _checkpoint(self) -> None:
        """Copy the WAL into the database without waiting for anyone (``PASSIVE``), as SQLite's
        automatic checkpoint would have at the lane's commits: here, on a directory thread,
        the disk's fsync never holds the event loop. A checkpoint that readers or a writer
        cut short is finished by the next one."""
        try:
            with self._engine.connect() as connection:
                # No BEGIN: SQLite refuses to checkpoint inside a transaction.
                connection.execution_options(**{BEGIN_MODE: "NONE"})
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        except OperationalError as exc:
            log.warning("directory_checkpoint_failed", error=str(exc.orig))

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self._one_statement(write=False) as connection:
            connection.execute(text("SELECT 1"))

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self._lane_engine is not None:
            self._lane_engine.dispose()
        self._engine.dispose()

    # -- phone links --------------------------------------------------------------------------

    def count_links(self, phone_e164: str, *, excluding: MemberKey) -> int:
        """How many other members hold a verified link to ``phone_e164``."""
        with self._one_statement(write=False) as connection:
            return _count_links(connection, phone_e164, excluding=excluding)

    def verified_number(self, member: MemberKey) -> tuple[str, str | None, datetime | None] | None:
        """``member``'s verified number, its country and when, if they are verified now: what a
        member's message needs, in one Core statement (no ORM objects, no role grants)."""
        with self._one_statement(write=False) as connection:
            row = connection.execute(_VERIFIED_NUMBER, _member_params(member)).first()
        if row is None or row.phone_e164 is None:
            return None
        return row.phone_e164, row.country, row.verified_at

    def record_verified(
        self,
        member: MemberKey,
        *,
        phone_e164: str,
        country: str | None,
        display_name: str | None,
        now: datetime,
        handle: str | None = None,
        max_accounts: int | None = None,
    ) -> RecordOutcome:
        """Record that ``member`` proved they hold ``phone_e164``, unless the phone is taken.

        The count and the write are one transaction that no other writer of this phone can
        interleave with, so two members racing for the same phone cannot both get it.
        ``display_name=None`` keeps the name already on file. ``max_accounts`` is the
        community's own limit, else the directory's.
        """
        limit = self._max_accounts_per_phone if max_accounts is None else max_accounts
        _require_aware(now)
        # Core statements on one connection: this runs once per verification, on the member's
        # path, and the ORM's session, identity map and flush cost more than the SQL itself.
        values: dict[str, Any] = {
            "phone_e164": phone_e164,
            "country": country,
            "is_phone_verified": True,
            "verified_at": now,
            "updated_at": now,
        }
        if display_name is not None:
            values["display_name"] = display_name
        if handle is not None:
            values["handle"] = handle.lstrip("@").lower()
        with self._connection(write=True) as connection:
            # Members first, then phones: a fixed order, so the locks cannot deadlock.
            _lock(connection, f"member:{member}", f"phone:{phone_e164}")
            taken = _count_links(connection, phone_e164, excluding=member)
            if taken >= limit:
                return RecordOutcome.PHONE_TAKEN
            link_id = connection.scalar(_LINK_ID, _member_params(member))
            if link_id is None:
                new = {"platform": member.platform, "scope": member.scope, "created_at": now}
                new["user_id"] = member.user_id
                connection.execute(_INSERT_LINK, [{**new, **values}])
            else:
                connection.execute(_UPDATE_LINK, {**values, "b_link_id": link_id})
            audit = {"phone_masked": mask_phone(phone_e164), "country": country}
            connection.execute(
                _INSERT_AUDIT,
                [
                    {
                        "at": now,
                        "event": "verified",
                        "actor": str(member),
                        "subject": str(member),
                        "details": audit,
                    }
                ],
            )
            return RecordOutcome.RECORDED

    @_uses_orm
    def unverify(self, member: MemberKey, *, actor: str, now: datetime) -> tuple[str, ...] | None:
        """Withdraw ``member``'s verification and roles; the roles revoked, or None if unverified.

        The row, its display name and its role history stay. The phone number goes too: a
        number we no longer vouch for is not worth keeping (the audit keeps it masked). Roles
        are for verified members only, so their active grants are revoked in the same commit.
        """
        _require_aware(now)
        with self._transaction(write=True) as session:
            _lock(session.connection(), f"member:{member}")
            link = _link_row(session, member)
            if link is None or not link.is_phone_verified:
                return None
            masked = mask_phone(link.phone_e164) if link.phone_e164 else None
            revoked = _revoke(session, link, None, by=actor, now=now)
            # Admissions vouched for by this number go with it: a rejoin asks again.
            session.execute(delete(AdmissionRow).where(AdmissionRow.link_id == link.id))
            details = {"phone_masked": masked, "country": link.country}
            link.is_phone_verified = False
            link.verified_at = None
            link.phone_e164 = None
            link.country = None
            link.updated_at = now
            session.add(
                AuditRow(
                    at=now, event="unverified", actor=actor, subject=str(member), details=details
                )
            )
            return revoked

    @_uses_orm
    def find(self, member: MemberKey) -> PhoneLink | None:
        with self._transaction(write=False) as session:
            row = session.scalars(_links().where(*_is(member))).one_or_none()
            return None if row is None else _to_link(row)

    def find_verified(self, member: MemberKey) -> PhoneLink | None:
        """``member``'s link if it vouches for a phone number now, else None."""
        link = self.find(member)
        if link is None or not link.is_phone_verified or link.phone_e164 is None:
            return None
        return link

    @_uses_orm
    def find_by_handle(self, platform: str, scope: str, handle: str) -> PhoneLink | None:
        """The member known by ``@handle`` on ``platform`` in ``scope`` (case-insensitive)."""
        query = (
            _links()
            .where(
                PhoneLinkRow.platform == platform,
                PhoneLinkRow.scope == scope,
                PhoneLinkRow.handle == handle.lstrip("@").lower(),
            )
            .order_by(PhoneLinkRow.updated_at.desc())
            .limit(1)
        )
        with self._transaction(write=False) as session:
            row = session.scalars(query).one_or_none()
            return None if row is None else _to_link(row)

    @_uses_orm
    def find_user(self, platform: str, user_id: str) -> list[PhoneLink]:
        """The member's links in every scope (every bot or workspace) of ``platform``."""
        query = (
            _links()
            .where(PhoneLinkRow.platform == platform, PhoneLinkRow.user_id == user_id)
            .order_by(PhoneLinkRow.id)
        )
        with self._transaction(write=False) as session:
            return [_to_link(row) for row in session.scalars(query)]

    @_uses_orm
    def list_links(
        self,
        *,
        platform: str | None = None,
        scope: str | None = None,
        verified_only: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[PhoneLink]:
        """Links, most recently verified first, then unverified ones; ties in creation order."""
        # NULLS LAST spelt out: PostgreSQL puts NULLs first in DESC order, SQLite last.
        query = _links().order_by(PhoneLinkRow.verified_at.desc().nulls_last(), PhoneLinkRow.id)
        query = query.where(*_within(platform, scope, verified_only)).offset(offset).limit(limit)
        with self._transaction(write=False) as session:
            return [_to_link(row) for row in session.scalars(query)]

    @_uses_orm
    def count_members(
        self, *, platform: str | None = None, scope: str | None = None, verified_only: bool = False
    ) -> int:
        query = select(func.count(PhoneLinkRow.id)).where(*_within(platform, scope, verified_only))
        with self._transaction(write=False) as session:
            return session.scalar(query) or 0

    @_uses_orm
    def stats(self, *, platform: str, scope: str | None, now: datetime) -> Stats:
        """Counts for ``/stats``, from the links and the audit log's ``code_sent`` entries."""
        _require_aware(now)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        prefix = f"{platform}:{scope}:" if scope is not None else f"{platform}:"
        subject = PhoneLinkRow.platform + ":" + PhoneLinkRow.scope + ":" + PhoneLinkRow.user_id
        verified_subjects = select(subject).where(PhoneLinkRow.is_phone_verified)
        sent = AuditRow.event.in_(("code_sent", "code_resent"))
        ours = AuditRow.subject.startswith(prefix, autoescape=True)

        def members(*where: Any) -> Select[int]:
            first = select(AuditRow.subject).where(ours, AuditRow.event == "code_sent", *where)
            return select(func.count()).select_from(first.distinct().subquery())

        with self._transaction(write=False) as session:
            return Stats(
                verified=self.count_members(platform=platform, scope=scope, verified_only=True),
                pending=session.scalar(
                    members(
                        AuditRow.at >= now - timedelta(days=1),
                        AuditRow.subject.not_in(verified_subjects),
                    )
                )
                or 0,
                started_today=session.scalar(members(AuditRow.at >= midnight)) or 0,
                converted_today=session.scalar(
                    members(AuditRow.at >= midnight, AuditRow.subject.in_(verified_subjects))
                )
                or 0,
                sms_today=session.scalar(
                    select(func.count(AuditRow.id)).where(ours, sent, AuditRow.at >= midnight)
                )
                or 0,
            )

    # -- admissions to gated groups -------------------------------------------------------------

    @_uses_orm
    def admit(self, member: MemberKey, place: str, *, now: datetime) -> bool:
        """Remember that verified ``member`` was let into ``place``; False if not verified."""
        _require_aware(now)
        with self._transaction(write=True) as session:
            _lock(session.connection(), f"member:{member}")
            link = _link_row(session, member)
            if link is None or not link.is_phone_verified:
                return False
            known = session.scalar(
                select(AdmissionRow.id).where(
                    AdmissionRow.link_id == link.id, AdmissionRow.place == place
                )
            )
            if known is None:
                session.add(AdmissionRow(link_id=link.id, place=place, admitted_at=now))
                session.add(
                    AuditRow(
                        at=now,
                        event="admitted",
                        actor="bot",
                        subject=str(member),
                        details={"place": place},
                    )
                )
            return True

    @_uses_orm
    def is_admitted(self, member: MemberKey, place: str) -> bool:
        """Whether ``member`` is verified and was let into ``place`` before, by the gate or by
        a role they still hold."""
        query = (
            select(AdmissionRow.id)
            .join(PhoneLinkRow, AdmissionRow.link_id == PhoneLinkRow.id)
            .where(*_is(member), PhoneLinkRow.is_phone_verified, AdmissionRow.place == place)
        )
        by_role = (
            select(GrantAdmissionRow.id)
            .join(RoleGrantRow, GrantAdmissionRow.grant_id == RoleGrantRow.id)
            .join(PhoneLinkRow, RoleGrantRow.link_id == PhoneLinkRow.id)
            .where(
                *_is(member),
                PhoneLinkRow.is_phone_verified,
                RoleGrantRow.revoked_at.is_(None),
                GrantAdmissionRow.place == place,
            )
        )
        with self._transaction(write=False) as session:
            return session.scalar(query.union_all(by_role).limit(1)) is not None

    # -- what a role grant opened: admissions and invite links ----------------------------------

    @_uses_orm
    def admit_for_role(self, member: MemberKey, place: str, role: str, *, now: datetime) -> bool:
        """Remember that ``member``'s grant of ``role`` opens ``place``, until it is revoked;
        False if they hold no such grant (it was revoked meanwhile)."""
        _require_aware(now)
        with self._transaction(write=True) as session:
            _lock(session.connection(), f"member:{member}")
            grant = _active_grant(session, member, role)
            if grant is None:
                return False
            known = session.scalar(
                select(GrantAdmissionRow.id).where(
                    GrantAdmissionRow.grant_id == grant.id, GrantAdmissionRow.place == place
                )
            )
            if known is None:
                session.add(GrantAdmissionRow(grant_id=grant.id, place=place, admitted_at=now))
            return True

    @_uses_orm
    def record_invite(self, member: MemberKey, role: str, invite: Invite, *, now: datetime) -> bool:
        """Remember a link made for ``member``'s grant of ``role``, so revoking it revokes the
        link. False if the grant is gone (revoked while the link was made): revoke it now."""
        _require_aware(now)
        with self._transaction(write=True) as session:
            # Links past their expiry admit nobody: nothing to revoke, nothing to keep.
            session.execute(delete(InviteLinkRow).where(InviteLinkRow.expires_at < now))
            _lock(session.connection(), f"member:{member}")
            grant = _active_grant(session, member, role)
            if grant is None:
                return False
            session.add(
                InviteLinkRow(
                    grant_id=grant.id,
                    place=invite.place,
                    url=invite.url,
                    created_at=now,
                    expires_at=invite.expires_at,
                )
            )
            return True

    @_uses_orm
    def invites_to_revoke(
        self, member: MemberKey, role: str | None = None, *, now: datetime
    ) -> list[Invite]:
        """Links made for ``member``'s revoked grants (of ``role``, or of any) that may still
        let someone in: not expired, and not yet revoked on the platform."""
        query = _unrevoked_invites(now).where(*_is(member))
        if role is not None:
            query = query.where(RoleGrantRow.role == role)
        with self._transaction(write=False) as session:
            return [invite for invite, _, _ in _invites(session, query)]

    @_uses_orm
    def pending_revocations(
        self, *, platform: str | None = None, now: datetime
    ) -> list[tuple[MemberKey, str, Invite]]:
        """Every member's links still to revoke (a platform refused earlier), with the role."""
        query = _unrevoked_invites(now)
        if platform is not None:
            query = query.where(PhoneLinkRow.platform == platform)
        with self._transaction(write=False) as session:
            return [(member, role, invite) for invite, member, role in _invites(session, query)]

    @_uses_orm
    def invite_revoked(self, url: str, *, now: datetime) -> None:
        """The platform confirmed that the link ``url`` admits nobody any more."""
        _require_aware(now)
        with self._transaction(write=True) as session:
            session.execute(
                update(InviteLinkRow)
                .where(InviteLinkRow.url == url, InviteLinkRow.revoked_at.is_(None))
                .values(revoked_at=now)
            )

    @_uses_orm
    def invite_withdrawn(self, url: str) -> bool:
        """Whether the link ``url`` was made for a role grant that has since been revoked: a
        join by it proves nothing about the member."""
        query = (
            select(RoleGrantRow.revoked_at)
            .join(InviteLinkRow, InviteLinkRow.grant_id == RoleGrantRow.id)
            .where(InviteLinkRow.url == url)
        )
        with self._transaction(write=False) as session:
            return session.scalar(query) is not None

    # -- roles --------------------------------------------------------------------------------

    @_uses_orm
    def grant_role(
        self, member: MemberKey, role: str, *, granted_by: str, now: datetime
    ) -> GrantOutcome:
        """Record that verified ``member`` was given ``role``, unless they hold it already."""
        _require_aware(now)
        with self._transaction(write=True) as session:
            _lock(session.connection(), f"member:{member}")
            link = _link_row(session, member)
            if link is None or not link.is_phone_verified:
                return GrantOutcome.NOT_VERIFIED
            if any(g.role == role and g.revoked_at is None for g in link.grants):
                return GrantOutcome.ALREADY_HELD
            link.grants.append(RoleGrantRow(role=role, granted_by=granted_by, granted_at=now))
            session.add(
                AuditRow(
                    at=now,
                    event="role_granted",
                    actor=granted_by,
                    subject=str(member),
                    details={"role": role},
                )
            )
            return GrantOutcome.GRANTED

    @_uses_orm
    def revoke_role(self, member: MemberKey, role: str, *, revoked_by: str, now: datetime) -> bool:
        """Mark ``member``'s active grant of ``role`` revoked; False if there was none."""
        _require_aware(now)
        with self._transaction(write=True) as session:
            _lock(session.connection(), f"member:{member}")
            link = _link_row(session, member)
            return link is not None and bool(_revoke(session, link, role, by=revoked_by, now=now))

    # -- communities' policies and the groups the bot is in -----------------------------------

    def community_policy(self, scope: str) -> StoredPolicy:
        # Core: a running bot reads this for every community it has not cached (bot.policy).
        with self._one_statement(write=False) as connection:
            row = connection.execute(_COMMUNITY_POLICY, {"b_scope": scope}).first()
        if row is None:
            return StoredPolicy({})
        return StoredPolicy(dict(row.overrides), row.revision)

    @_uses_orm
    def change_community_policy(
        self,
        scope: str,
        field: str,
        value: str | None,
        *,
        default: str,
        actor: str,
        now: datetime,
    ) -> PolicyChange:
        """Set one field of ``scope``'s policy (``None``: back to the default, which reads
        ``default``) and audit who changed what, from what to what, in one transaction."""
        _require_aware(now)
        with self._transaction(write=True) as session:
            _lock(session.connection(), f"policy:{scope}")
            row = session.get(CommunityPolicyRow, scope)
            if row is None:
                row = CommunityPolicyRow(scope=scope, overrides={}, revision=0, updated_by=actor)
                session.add(row)
            overrides = dict(row.overrides)
            old = overrides.get(field, default)
            if value is None:
                overrides.pop(field, None)
            else:
                overrides[field] = value
            new = value if value is not None else default
            row.overrides = overrides
            row.revision = (row.revision or 0) + 1
            row.updated_at, row.updated_by = now, actor
            session.add(
                AuditRow(
                    at=now,
                    event="policy_changed",
                    actor=actor,
                    subject=scope,
                    details={"field": field, "old": old, "new": new},
                )
            )
            return PolicyChange(field, old, new, StoredPolicy(overrides, row.revision))

    @_uses_orm
    def record_group(self, chat_id: str, title: str | None, *, now: datetime) -> None:
        """The bot is in this group (added, or seen there): remember it and its title."""
        _require_aware(now)
        with self._transaction(write=True) as session:
            row = session.get(TelegramGroupRow, chat_id)
            if row is None:
                session.add(TelegramGroupRow(chat_id=chat_id, title=title, updated_at=now))
            else:
                row.title, row.updated_at = title, now

    @_uses_orm
    def forget_group(self, chat_id: str) -> None:
        """The bot was removed from this group."""
        with self._transaction(write=True) as session:
            session.execute(delete(TelegramGroupRow).where(TelegramGroupRow.chat_id == chat_id))

    @_uses_orm
    def groups(self) -> list[Group]:
        query = select(TelegramGroupRow).order_by(TelegramGroupRow.title, TelegramGroupRow.chat_id)
        with self._transaction(write=False) as session:
            return [Group(row.chat_id, row.title) for row in session.scalars(query)]

    # -- audit log ----------------------------------------------------------------------------

    def audit(
        self,
        event: str,
        *,
        actor: str,
        subject: str,
        details: dict[str, Any] | None = None,
        now: datetime,
    ) -> None:
        """Append to the audit log. Callers mask phone numbers themselves (``mask_phone``)."""
        _require_aware(now)
        row = {"at": now, "event": event, "actor": actor, "subject": subject}
        with self._one_statement(write=True) as connection:
            connection.execute(_INSERT_AUDIT, [{**row, "details": details or {}}])

    @_uses_orm
    def audit_trail(self, *, subject: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest ``limit`` entries, newest first, optionally about one subject."""
        query = select(AuditRow).order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit)
        if subject is not None:
            query = query.where(AuditRow.subject == subject)
        with self._transaction(write=False) as session:
            return [
                AuditEntry(
                    at=row.at,
                    event=row.event,
                    actor=row.actor,
                    subject=row.subject,
                    details=dict(row.details),
                )
                for row in session.scalars(query)
            ]

    # -- helpers ------------------------------------------------------------------------------

    @contextmanager
    def _connection(self, *, write: bool) -> Iterator[Connection]:
        """A Core connection in one transaction (as ``_transaction``, without a Session): for
        several statements that must commit together, on a member's path."""
        with self._connect(write=write) as connection:
            connection.execution_options(**{BEGIN_MODE: "IMMEDIATE" if write else "DEFERRED"})
            with connection.begin():
                yield connection

    @contextmanager
    def _one_statement(self, *, write: bool) -> Iterator[Connection]:
        """A Core connection for a single statement, which both backends run as a transaction
        of its own: on PostgreSQL in autocommit, without the BEGIN and COMMIT round trips; on
        SQLite a read without BEGIN (as much CPU as the statement), a write still behind the
        write gate and BEGIN IMMEDIATE, as every SQLite write (DEPENDENCY-NOTES)."""
        options: dict[str, str]
        if self._engine.dialect.name == "postgresql":
            options = {"isolation_level": "AUTOCOMMIT"}
        else:
            options = {BEGIN_MODE: "IMMEDIATE" if write else "NONE"}
        with self._connect(write=write) as connection:
            connection.execution_options(**options)
            with connection.begin():
                yield connection

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        """A connection for a Core method: the lane's inside ``run_here``, else the pool's.
        A writer holds this process's write gate either way."""
        if not getattr(self._lane, "on", False) or self._lane_engine is None:
            gate = self._write_gate if write else contextlib.nullcontext()
            with gate, self._engine.connect() as connection:
                yield connection
            return
        lock = self._sqlite_gate
        if write and (lock is None or not lock.acquire(blocking=False)):
            raise WouldWait
        try:
            with self._lane_engine.connect() as connection:
                yield connection
        finally:
            if write and lock is not None:
                lock.release()
        if write:
            self._lane_writes += 1
            if self._lane_writes % _CHECKPOINT_EVERY == 0:
                with contextlib.suppress(RuntimeError):  # closed: SQLite checkpoints at close
                    self._threads.submit(self._checkpoint)

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Session]:
        """A session in one transaction, committed at the end unless an exception escapes.

        On SQLite, writes begin IMMEDIATE (see engine.py) and reads plain BEGIN, so readers
        never queue behind the write lock.
        """
        # SQLite makes waiting writers poll for its lock (sleeps up to 100 ms, no queue), so
        # under load some starve past busy_timeout. Queue this process's writers here
        # instead; other processes still meet busy_timeout. PostgreSQL needs no such gate.
        if getattr(self._lane, "on", False):
            raise WouldWait  # the ORM's methods always run on the directory's threads
        if self._sessions is None:
            _load_orm()
            self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        gate = self._write_gate if write else contextlib.nullcontext()
        with gate, self._sessions() as session:
            # The option must be set as the connection is checked out: it is read at BEGIN.
            session.connection(execution_options={BEGIN_MODE: "IMMEDIATE" if write else "DEFERRED"})
            yield session
            session.commit()


class WouldWait(Exception):
    """``Directory.run_here`` would have had to wait: run the call on the directory's threads."""


#: Lane writes between two checkpoints: each writes a few pages, and SQLite's own automatic
#: checkpoint comes at 1,000 pages of WAL.
_CHECKPOINT_EVERY: Final = 200


#: Where alembic keeps the revision a database is at (its default table).
_VERSION_TABLE: Final = "alembic_version"


def newest_migration() -> str | None:
    """The head revision, by the migrations' file names (``0004_invite_links.py`` is revision
    "0004"; tests/unit/test_migration_head.py holds that to alembic's own view)."""
    names = (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    return max((path.name[:4] for path in names), default=None)


def lock_migrations(connection: Connection) -> None:
    """Make a second migrating process wait for the first, until its transaction ends.

    PostgreSQL gets an advisory lock; SQLite's migration transaction is BEGIN IMMEDIATE
    (engine.py), which already holds the database's one write lock.
    """
    _lock(connection, "migrations")


def _lock(connection: Connection, *names: str) -> None:
    """Serialise writers of the same member or phone on PostgreSQL, until the commit.

    Why an advisory lock: the race is between two members who both find *no* verified link
    to a phone yet, and SELECT ... FOR UPDATE cannot lock rows that do not exist. SERIALIZABLE
    would catch it but fail one side, needing a retry loop; a transaction-level advisory lock
    keyed on the phone makes the second writer wait for the first and then count again,
    and is released by COMMIT or ROLLBACK, never leaked. SQLite needs nothing here: BEGIN
    IMMEDIATE already admits one writer at a time.
    """
    if connection.dialect.name != "postgresql":
        return
    for name in names:
        connection.execute(_ADVISORY_LOCK, {"b_key": _lock_key(name)})


_ADVISORY_LOCK: Final = select(func.pg_advisory_xact_lock(bindparam("b_key", type_=BigInteger)))


def _lock_key(name: str) -> int:
    # A stable signed 64-bit key; a collision only makes two writers wait for each other.
    digest = hashlib.blake2b(f"verifybot:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _revoke(
    session: Session, link: PhoneLinkRow, role: str | None, *, by: str, now: datetime
) -> tuple[str, ...]:
    """Mark ``link``'s active grants of ``role`` (or of every role) revoked, and audit each."""
    revoked: set[str] = set()
    withdrawn: list[int] = []
    for grant in link.grants:
        if grant.revoked_at is None and role in (None, grant.role):
            grant.revoked_at, grant.revoked_by = now, by
            revoked.add(grant.role)
            withdrawn.append(grant.id)
    # The groups these grants opened close with them: a rejoin there is a stranger's.
    if withdrawn:
        session.execute(delete(GrantAdmissionRow).where(GrantAdmissionRow.grant_id.in_(withdrawn)))
    for name in sorted(revoked):
        session.add(
            AuditRow(
                at=now,
                event="role_revoked",
                actor=by,
                subject=f"{link.platform}:{link.scope}:{link.user_id}",
                details={"role": name},
            )
        )
    return tuple(sorted(revoked))


if TYPE_CHECKING:
    _InviteRows = Select[InviteLinkRow, str, str, str, str]


def _unrevoked_invites(now: datetime) -> _InviteRows:
    """Links made for revoked grants that may still admit someone, oldest first."""
    _require_aware(now)
    return (
        select(
            InviteLinkRow,
            PhoneLinkRow.platform,
            PhoneLinkRow.scope,
            PhoneLinkRow.user_id,
            RoleGrantRow.role,
        )
        .join(RoleGrantRow, InviteLinkRow.grant_id == RoleGrantRow.id)
        .join(PhoneLinkRow, RoleGrantRow.link_id == PhoneLinkRow.id)
        .where(
            RoleGrantRow.revoked_at.is_not(None),
            InviteLinkRow.revoked_at.is_(None),
            InviteLinkRow.expires_at > now,
        )
        .order_by(InviteLinkRow.id)
    )


def _invites(session: Session, query: _InviteRows) -> list[tuple[Invite, MemberKey, str]]:
    return [
        (Invite(row.place, row.url, row.expires_at), MemberKey(platform, scope, user_id), role)
        for row, platform, scope, user_id, role in session.execute(query)
    ]


def _active_grant(session: Session, member: MemberKey, role: str) -> RoleGrantRow | None:
    link = _link_row(session, member)
    if link is None or not link.is_phone_verified:
        return None
    return next((g for g in link.grants if g.role == role and g.revoked_at is None), None)


def _within(platform: str | None, scope: str | None, verified_only: bool) -> list[Any]:
    where: list[Any] = []
    if platform is not None:
        where.append(PhoneLinkRow.platform == platform)
    if scope is not None:
        where.append(PhoneLinkRow.scope == scope)
    if verified_only:
        where.append(PhoneLinkRow.is_phone_verified)
    return where


# The statements of a member's path, built once with bound parameters: building a statement
# and its cache key each call cost more CPU than SQLite running it. The "b_" names keep the
# parameters apart from the columns an insert or update sets.
_COUNT_LINKS: Final = select(func.count(phone_links.c.id)).where(
    phone_links.c.phone_e164 == bindparam("b_phone"),
    phone_links.c.is_phone_verified,
    or_(
        phone_links.c.platform != bindparam("b_platform"),
        phone_links.c.scope != bindparam("b_scope"),
        phone_links.c.user_id != bindparam("b_user_id"),
    ),
)
_THIS_MEMBER: Final = (
    phone_links.c.platform == bindparam("b_platform"),
    phone_links.c.scope == bindparam("b_scope"),
    phone_links.c.user_id == bindparam("b_user_id"),
)
_VERIFIED_NUMBER: Final = select(
    phone_links.c.phone_e164, phone_links.c.country, phone_links.c.verified_at
).where(*_THIS_MEMBER, phone_links.c.is_phone_verified)
_LINK_ID: Final = select(phone_links.c.id).where(*_THIS_MEMBER)
_INSERT_LINK: Final = insert(phone_links)
_UPDATE_LINK: Final = update(phone_links).where(phone_links.c.id == bindparam("b_link_id"))
_INSERT_AUDIT: Final = insert(audit_log)
_COMMUNITY_POLICY: Final = select(
    community_policies.c.overrides, community_policies.c.revision
).where(community_policies.c.scope == bindparam("b_scope"))


def _member_params(member: MemberKey) -> dict[str, str]:
    return {"b_platform": member.platform, "b_scope": member.scope, "b_user_id": member.user_id}


def _count_links(connection: Connection, phone_e164: str, *, excluding: MemberKey) -> int:
    params = {**_member_params(excluding), "b_phone": phone_e164}
    return connection.scalar(_COUNT_LINKS, params) or 0


def _links() -> Select[PhoneLinkRow]:
    return select(PhoneLinkRow).options(selectinload(PhoneLinkRow.grants))


def _is(member: MemberKey) -> tuple[Any, ...]:
    return (
        PhoneLinkRow.platform == member.platform,
        PhoneLinkRow.scope == member.scope,
        PhoneLinkRow.user_id == member.user_id,
    )


def _link_row(session: Session, member: MemberKey) -> PhoneLinkRow | None:
    return session.scalars(_links().where(*_is(member))).one_or_none()


def _to_link(row: PhoneLinkRow) -> PhoneLink:
    return PhoneLink(
        platform=row.platform,
        scope=row.scope,
        user_id=row.user_id,
        display_name=row.display_name,
        phone_e164=row.phone_e164,
        country=row.country,
        is_phone_verified=row.is_phone_verified,
        verified_at=row.verified_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        roles=tuple(sorted({g.role for g in row.grants if g.revoked_at is None})),
        handle=row.handle,
    )


def _require_aware(now: datetime) -> None:
    # Checked up front for a clear error; UTCDateTime would refuse it too, but wrapped.
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be a tz-aware datetime, not {now!r}")
